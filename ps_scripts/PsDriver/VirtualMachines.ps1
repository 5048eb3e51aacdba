# PsDriver helpers: finding, starting, stopping and removing virtual machines.
# Dot-sourced by PsDriver.psm1; the bridge inlines the functions of this file that a
# wrapped script uses (psdriver/bridge/helpers.py). Functions only: no other statements.

function Find-PsDriverVM {
    <#
    .SYNOPSIS
        Every VM named exactly Name: none, one or (against the rules) several.

    .DESCRIPTION
        Get-VM -Name takes a wildcard pattern. The escaped name followed by '*'
        matches the name literally (brackets too) and, being a pattern, never
        reports "not found": an error here is a real failure (service down,
        access denied) and stops the caller instead of passing for a missing
        VM. The names found are then compared with Name exactly (ignoring
        case, as Hyper-V does).

    .PARAMETER Name
        The exact name of the virtual machine.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Name
    )
    $pattern = [System.Management.Automation.WildcardPattern]::Escape($Name) + '*'
    @(Hyper-V\Get-VM -Name $pattern -ErrorAction Stop | Where-Object { $_.Name -eq $Name })
}

function Get-PsDriverVM {
    <#
    .SYNOPSIS
        The one VM named exactly Name.

    .DESCRIPTION
        Looks the VM up with Find-PsDriverVM. No such VM: ObjectNotFound /
        PsDriver.VMNotFound, or $null with -AllowMissing. Several VMs of that
        name: InvalidOperation / PsDriver.VMNameNotUnique.

    .PARAMETER Name
        The exact name of the virtual machine.

    .PARAMETER AllowMissing
        Return $null instead of failing when there is no such VM.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Name,

        [switch]$AllowMissing
    )
    $found = @(Find-PsDriverVM -Name $Name)
    if ($found.Count -gt 1) {
        throw (New-PsDriverErrorRecord -Message "$($found.Count) virtual machines are named '$Name'; the name must be unique." -Category InvalidOperation -ErrorId 'PsDriver.VMNameNotUnique' -Target $Name)
    }
    if ($found.Count -eq 1) {
        return $found[0]
    }
    if (-not $AllowMissing) {
        throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' was not found on this host." -Category ObjectNotFound -ErrorId 'PsDriver.VMNotFound' -Target $Name)
    }
    $null
}

function Get-PsDriverVMState {
    <#
    .SYNOPSIS
        The VM's state now (asked again with Get-VM -Id), by name: Running, Off, Saved, ...

    .PARAMETER VM
        The VM, as Get-VM returned it.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    (Hyper-V\Get-VM -Id $VM.Id -ErrorAction Stop).State.ToString()
}

function ConvertTo-PsDriverInstanceUuid {
    <#
    .SYNOPSIS
        The instance UUID recorded on the first line of VM Notes, or $null.

    .DESCRIPTION
        Writers put the UUID in its canonical form (lower case, 8-4-4-4-12)
        on the first line, as compute-hyperv did. When reading, surrounding
        whitespace, upper case hex digits, enclosing braces and a leading
        "openstack-instance-uuid:" label are tolerated. The UUID comes back in
        lower case.

    .PARAMETER Notes
        The VM Notes.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Notes
    )
    if ([string]::IsNullOrWhiteSpace($Notes)) {
        return $null
    }
    $firstLine = ($Notes -split "\r?\n", 2)[0].Trim()
    $pattern = '^(?:openstack-instance-uuid:\s*)?\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$'
    $match = [regex]::Match($firstLine, $pattern)
    if (-not $match.Success) {
        return $null
    }
    return $match.Groups[1].Value.ToLowerInvariant()
}

function Remove-PsDriverVM {
    <#
    .SYNOPSIS
        Turns a VM off hard unless it is off or saved, then removes it with its checkpoints.

    .DESCRIPTION
        A VM that is Off or Saved (or OffCritical / SavedCritical, when its
        storage is unavailable) is removed as it is: Stop-VM refuses those
        states and Remove-VM drops a saved state. A VM in any other state is
        turned off first (Stop-VM -TurnOff). Checkpoints are removed, not
        merged. The VM's files stay.

    .PARAMETER VM
        The VM, as Get-VM returned it (its State is the one acted on).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    if ($VM.State.ToString() -notin @('Off', 'Saved', 'OffCritical', 'SavedCritical')) {
        Hyper-V\Stop-VM -VM $VM -TurnOff -Force -Confirm:$false
    }
    Hyper-V\Remove-VM -VM $VM -Force -Confirm:$false
}

function Stop-PsDriverVM {
    <#
    .SYNOPSIS
        Turns a VM off hard: nothing when Off, the saved state discarded when Saved, else Stop-VM -TurnOff.

    .PARAMETER VM
        The VM, as Get-VM returned it (its state is asked again).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $state = Get-PsDriverVMState -VM $VM
    if ($state -eq 'Off') {
        return
    }
    if ($state -eq 'Saved') {
        Hyper-V\Remove-VMSavedState -VM $VM -Confirm:$false
        return
    }
    Hyper-V\Stop-VM -VM $VM -TurnOff -Force -Confirm:$false
}

function Start-PsDriverVM {
    <#
    .SYNOPSIS
        Runs a VM: Resume-VM when Paused, Start-VM when Off or Saved, nothing otherwise.

    .PARAMETER VM
        The VM, as Get-VM returned it (its state is asked again).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $state = Get-PsDriverVMState -VM $VM
    if ($state -eq 'Paused') {
        Hyper-V\Resume-VM -VM $VM -Confirm:$false
    }
    elseif ($state -in @('Off', 'Saved')) {
        Hyper-V\Start-VM -VM $VM -Confirm:$false
    }
}

function Get-PsDriverSecureBootTemplate {
    <#
    .SYNOPSIS
        The secure boot template names this host's Hyper-V offers for Set-VMFirmware -SecureBootTemplate.

    .DESCRIPTION
        MicrosoftWindows and MicrosoftUEFICertificateAuthority exist on every
        supported host; OpenSourceShieldedVM only from Windows Server 1709
        (build 16299), so not on Windows Server 2016 (build 14393).

    .PARAMETER Build
        The Windows build number (default: this host's).
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [int]$Build = [System.Environment]::OSVersion.Version.Build
    )
    'MicrosoftWindows'
    'MicrosoftUEFICertificateAuthority'
    if ($Build -ge 16299) {
        'OpenSourceShieldedVM'
    }
}
