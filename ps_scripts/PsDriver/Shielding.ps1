# PsDriver helpers: shielded virtual machines (Host Guardian Service client, shielding data,
# template disks, provisioning).
# Dot-sourced by PsDriver.psm1; the bridge inlines the functions of this file that a
# wrapped script uses (psdriver/bridge/helpers.py). Functions only: no other statements.

function Get-PsDriverHostGuardianState {
    <#
    .SYNOPSIS
        Whether this host can run shielded VMs: guarded by a Host Guardian Service, with the shielded VM cmdlets.

    .DESCRIPTION
        Reads Get-HgsClientConfiguration (module HgsClient): IsHostGuarded and
        Mode (HostGuardianService or Local). A host without the HgsClient
        module, or whose configuration cannot be read, is not guarded.
        shielded_vm_tools tells whether the ShieldedVMProvisioning cmdlets
        (Initialize-ShieldedVM) are installed. Returns an ordered dictionary
        host_guarded, mode (null when unknown), shielded_vm_tools, error
        (why the configuration could not be read, else null).
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
    param()
    $state = [ordered]@{
        host_guarded      = $false
        mode              = $null
        shielded_vm_tools = $null -ne (Get-Command -Name 'Initialize-ShieldedVM' -ErrorAction SilentlyContinue)
        error             = $null
    }
    if ($null -eq (Get-Command -Name 'Get-HgsClientConfiguration' -ErrorAction SilentlyContinue)) {
        $state.error = 'the HgsClient module (Get-HgsClientConfiguration) is not installed'
        return $state
    }
    try {
        $configuration = Get-HgsClientConfiguration
        $state.host_guarded = [bool]$configuration.IsHostGuarded
        if ($null -ne $configuration.Mode) {
            $state.mode = [string]$configuration.Mode
        }
    }
    catch {
        $state.error = "cannot read the Host Guardian Service client configuration: $($_.Exception.Message)"
    }
    $state
}

function Assert-PsDriverGuardedHost {
    <#
    .SYNOPSIS
        Throws PsDriver.HostNotGuarded (ResourceUnavailable) unless this host can provision shielded VMs.

    .DESCRIPTION
        Needs IsHostGuarded true and Mode HostGuardianService (a host in local
        mode holds no keys a Host Guardian Service released), and the
        ShieldedVMProvisioning cmdlets.
    #>
    [CmdletBinding()]
    param()
    $state = Get-PsDriverHostGuardianState
    $why = $null
    if (-not $state.shielded_vm_tools) {
        $why = 'the shielded VM provisioning cmdlets (Initialize-ShieldedVM) are not installed'
    }
    elseif (-not $state.host_guarded) {
        $why = 'it is not guarded (Get-HgsClientConfiguration IsHostGuarded is false'
        if ($null -ne $state.error) {
            $why = "it is not guarded ($($state.error)"
        }
        $why += ')'
    }
    elseif ($state.mode -ne 'HostGuardianService') {
        $why = "its Host Guardian Service client is in mode '$($state.mode)', not HostGuardianService"
    }
    if ($null -ne $why) {
        throw (New-PsDriverErrorRecord -Message "This host cannot run shielded virtual machines: $why." -Category ResourceUnavailable -ErrorId 'PsDriver.HostNotGuarded' -Target $env:COMPUTERNAME)
    }
}

function Get-PsDriverShieldingKeyProtector {
    <#
    .SYNOPSIS
        The raw key protector of a shielding data file (.pdk); PsDriver.InvalidShieldingData (InvalidData) if it is not one.

    .PARAMETER ShieldingDataFilePath
        The shielding data file.
    #>
    [CmdletBinding()]
    [OutputType([byte[]])]
    param(
        [Parameter(Mandatory)]
        [string]$ShieldingDataFilePath
    )
    if (-not (Test-Path -LiteralPath $ShieldingDataFilePath -PathType Leaf)) {
        throw (New-PsDriverErrorRecord -Message "The shielding data file '$ShieldingDataFilePath' was not found." -Category ObjectNotFound -ErrorId 'PsDriver.ShieldingDataNotFound' -Target $ShieldingDataFilePath)
    }
    try {
        $keyProtector = Get-KeyProtectorFromShieldingDataFile -ShieldingDataFilePath $ShieldingDataFilePath
    }
    catch {
        throw (New-PsDriverErrorRecord -Message "The shielding data cannot be read: $($_.Exception.Message)" -Category InvalidData -ErrorId 'PsDriver.InvalidShieldingData' -Target $ShieldingDataFilePath -InnerException $_.Exception)
    }
    , [byte[]]@($keyProtector)
}

function Assert-PsDriverTemplateDisk {
    <#
    .SYNOPSIS
        Throws unless a disk is a signed template disk the shielding data file trusts.

    .DESCRIPTION
        Save-VolumeSignatureCatalog extracts the disk's volume signature
        catalog (it refuses a disk that Protect-TemplateDisk did not sign:
        PsDriver.NotATemplateDisk), Test-ShieldingDataApplicability checks it
        against the volume ID qualifiers of the shielding data (not trusted:
        PsDriver.ShieldingDataNotApplicable); both InvalidArgument. The
        catalog file is removed afterwards. Test-ShieldingDataApplicability's
        output is not documented: an error or a $false result count as not
        applicable.

    .PARAMETER TemplateDiskPath
        The VHDX the VM boots from (the cached image).

    .PARAMETER ShieldingDataFilePath
        The shielding data file.

    .PARAMETER CatalogPath
        Where to write the volume signature catalog (.vsc) meanwhile.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$TemplateDiskPath,

        [Parameter(Mandatory)]
        [string]$ShieldingDataFilePath,

        [Parameter(Mandatory)]
        [string]$CatalogPath
    )
    try {
        try {
            Save-VolumeSignatureCatalog -TemplateDiskPath $TemplateDiskPath -VolumeSignatureCatalogPath $CatalogPath
        }
        catch {
            throw (New-PsDriverErrorRecord -Message "The root disk image '$TemplateDiskPath' is not a signed shielded VM template disk (Protect-TemplateDisk): $($_.Exception.Message)" -Category InvalidArgument -ErrorId 'PsDriver.NotATemplateDisk' -Target $TemplateDiskPath -InnerException $_.Exception)
        }
        $reason = 'its volume signature catalog matches no volume ID qualifier of the shielding data'
        $applicable = $true
        try {
            $answer = @(Test-ShieldingDataApplicability -ShieldingDataFilePath $ShieldingDataFilePath -VolumeSignatureCatalogPath $CatalogPath)
            if ($answer -contains $false) {
                $applicable = $false
            }
        }
        catch {
            $applicable = $false
            $reason = $_.Exception.Message
        }
        if (-not $applicable) {
            throw (New-PsDriverErrorRecord -Message "The shielding data cannot be used with the template disk '$TemplateDiskPath': $reason." -Category InvalidArgument -ErrorId 'PsDriver.ShieldingDataNotApplicable' -Target $TemplateDiskPath)
        }
    }
    finally {
        if (Test-Path -LiteralPath $CatalogPath -PathType Leaf) {
            Remove-Item -LiteralPath $CatalogPath -Force -Confirm:$false
        }
    }
}

function Wait-PsDriverShieldedProvisioning {
    <#
    .SYNOPSIS
        Waits for the provisioning Initialize-ShieldedVM started; returns the seconds it took.

    .DESCRIPTION
        Polls Get-ShieldedVMProvisioningStatus. Its result is a CimInstance
        of the provisioning job; the docs do not list its properties, and
        this reads the standard ones of a CIM_ConcreteJob: JobState (7
        Completed; 8 Terminated, 9 Killed and 10 Exception ended without
        success; the others, such as 4 Running, are still going) and
        ErrorDescription. A failed provisioning, or a status without
        JobState, is PsDriver.ShieldedProvisioningFailed (InvalidResult),
        one still going after TimeoutSeconds
        PsDriver.ShieldedProvisioningTimeout (OperationTimeout).

    .PARAMETER VM
        The VM being provisioned.

    .PARAMETER TimeoutSeconds
        The longest wait.

    .PARAMETER PollSeconds
        The pause between two polls.
    #>
    [CmdletBinding()]
    [OutputType([double])]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [ValidateRange(1, 86400)]
        [int]$TimeoutSeconds,

        [Parameter(Mandatory)]
        [ValidateRange(1, 600)]
        [int]$PollSeconds
    )
    $clock = [System.Diagnostics.Stopwatch]::StartNew()
    while ($true) {
        $job = @(Get-ShieldedVMProvisioningStatus -VM $VM) | Select-Object -First 1
        $stateProperty = $null
        if ($null -ne $job) {
            $stateProperty = $job.PSObject.Properties['JobState']
        }
        if ($null -eq $stateProperty) {
            throw (New-PsDriverErrorRecord -Message "Provisioning the shielded virtual machine '$($VM.Name)': Get-ShieldedVMProvisioningStatus returned no JobState." -Category InvalidResult -ErrorId 'PsDriver.ShieldedProvisioningFailed' -Target $VM.Name)
        }
        $jobState = [int]$stateProperty.Value
        if ($jobState -eq 7) {
            return $clock.Elapsed.TotalSeconds
        }
        if ($jobState -in @(8, 9, 10)) {
            $detail = $null
            $errorProperty = $job.PSObject.Properties['ErrorDescription']
            if ($null -ne $errorProperty) {
                $detail = [string]$errorProperty.Value
            }
            if ([string]::IsNullOrWhiteSpace($detail)) {
                $detail = "the provisioning job ended in state $jobState"
            }
            throw (New-PsDriverErrorRecord -Message "Provisioning the shielded virtual machine '$($VM.Name)' failed: $detail" -Category InvalidResult -ErrorId 'PsDriver.ShieldedProvisioningFailed' -Target $VM.Name)
        }
        if ($clock.Elapsed.TotalSeconds + $PollSeconds -gt $TimeoutSeconds) {
            throw (New-PsDriverErrorRecord -Message "Provisioning the shielded virtual machine '$($VM.Name)' did not finish within $TimeoutSeconds seconds." -Category OperationTimeout -ErrorId 'PsDriver.ShieldedProvisioningTimeout' -Target $VM.Name)
        }
        Start-Sleep -Seconds $PollSeconds
    }
}
