<#
.SYNOPSIS
    Removes the network adapter of one Neutron port from a virtual machine.

.DESCRIPTION
    Removes the adapter named after the Neutron port id. If the VM has no
    such adapter nothing is done (removed is false), so the call is safe to
    repeat.

    Generation 2 VMs allow removing adapters while running (Windows Server
    2016 and later). Generation 1 VMs only while Off: otherwise an error of
    category InvalidOperation with error id PsDriver.NicHotplugUnsupported.
    Hyper-V refusing the removal: InvalidOperation /
    PsDriver.NicOperationFailed. Missing VM: ObjectNotFound /
    PsDriver.VMNotFound.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER Id
    The Neutron port id (the adapter name).

.EXAMPLE
    .\Remove-InstanceNetworkAdapter.ps1 -Name instance-00000001 -Id 3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b

.OUTPUTS
    One object: name (the VM), id, removed (an adapter was removed).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Id
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function New-ErrorRecord {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Message,

        [Parameter(Mandatory)]
        [System.Management.Automation.ErrorCategory]$Category,

        [Parameter(Mandatory)]
        [string]$ErrorId,

        [object]$Target
    )
    $exception = [System.InvalidOperationException]::new($Message)
    [System.Management.Automation.ErrorRecord]::new($exception, $ErrorId, $Category, $Target)
}

function Get-TargetVM {
    <#
    .SYNOPSIS
        Returns the one VM named exactly $Name, or throws PsDriver.VMNotFound.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Name
    )
    # Get-VM -Name takes a wildcard pattern. The escaped name followed by '*'
    # matches the name literally (brackets too) and, being a pattern, never
    # reports "not found": an error here is a real failure (service down,
    # access denied) and stops the script instead of passing for a missing VM.
    $pattern = [System.Management.Automation.WildcardPattern]::Escape($Name) + '*'
    $found = @(Get-VM -Name $pattern | Where-Object { $_.Name -eq $Name })
    if ($found.Count -eq 0) {
        throw (New-ErrorRecord -Message "Virtual machine '$Name' was not found on this host." -Category ObjectNotFound -ErrorId 'PsDriver.VMNotFound' -Target $Name)
    }
    if ($found.Count -gt 1) {
        throw (New-ErrorRecord -Message "$($found.Count) virtual machines are named '$Name'; the name must be unique." -Category InvalidOperation -ErrorId 'PsDriver.VMNameNotUnique' -Target $Name)
    }
    $found[0]
}

function Assert-NicHotplug {
    <#
    .SYNOPSIS
        Throws PsDriver.NicHotplugUnsupported when adapters cannot be added or removed now.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [string]$Operation
    )
    $state = $VM.State.ToString()
    if ($state -ne 'Off' -and [int]$VM.Generation -eq 1) {
        throw (New-ErrorRecord -Message "Cannot $Operation a network adapter on virtual machine '$($VM.Name)' while it is ${state}: generation 1 virtual machines do not support network adapter hot plug; turn the virtual machine off first." -Category InvalidOperation -ErrorId 'PsDriver.NicHotplugUnsupported' -Target $VM.Name)
    }
}

function Invoke-NicChange {
    <#
    .SYNOPSIS
        Runs one adapter change; a Hyper-V refusal becomes PsDriver.NicOperationFailed.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Description,

        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [scriptblock]$Change
    )
    try {
        & $Change
    }
    catch {
        $message = "Cannot {0} on virtual machine '{1}' (state {2}): {3}" -f $Description, $VM.Name, $VM.State.ToString(), $_.Exception.Message
        throw (New-ErrorRecord -Message $message -Category InvalidOperation -ErrorId 'PsDriver.NicOperationFailed' -Target $VM.Name)
    }
}

$vm = Get-TargetVM -Name $Name
$adapters = @(Get-VMNetworkAdapter -VM $vm | Where-Object { $_.Name -eq $Id })
$removed = $false

if ($adapters.Count -gt 0 -and $PSCmdlet.ShouldProcess("virtual machine '$Name'", "Remove network adapter '$Id'")) {
    Assert-NicHotplug -VM $vm -Operation 'remove'
    Invoke-NicChange -Description "remove network adapter '$Id'" -VM $vm -Change {
        Remove-VMNetworkAdapter -VMNetworkAdapter $adapters -Confirm:$false
    }
    $removed = $true
}

[ordered]@{
    name    = [string]$vm.Name
    id      = $Id
    removed = $removed
}
