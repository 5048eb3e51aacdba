<#
.SYNOPSIS
    Removes the network adapter of one Neutron port from a virtual machine.

.DESCRIPTION
    Removes the adapter named after the Neutron port id. If the VM has no
    such adapter nothing is done (removed is false), so the call is safe to
    repeat.

    With OvsPort (VIF type ovs, Open vSwitch for Windows) the Open vSwitch
    port named after the port id is first deleted from whichever bridge
    holds it (ovs-vsctl --if-exists del-port; a missing port is fine).
    ovs-vsctl not found: ObjectNotFound / PsDriver.OvsVsctlNotFound;
    ovs-vsctl failing: InvalidOperation / PsDriver.OvsVsctlFailed.

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

.PARAMETER OvsPort
    The port is also an Open vSwitch port (named after the port id):
    delete it.

.PARAMETER OvsVsctlPath
    The ovs-vsctl program ([hyperv] ovs_vsctl_path); empty: ovs-vsctl.exe
    found on PATH. Used only with OvsPort.

.EXAMPLE
    .\Remove-InstanceNetworkAdapter.ps1 -Name instance-00000001 -Id 3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b

.OUTPUTS
    One object: name (the VM), id, removed (an adapter was removed),
    ovs_port_removed (OvsPort was given: the Open vSwitch port is gone).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Id,

    [switch]$OvsPort,

    [AllowNull()]
    [AllowEmptyString()]
    [string]$OvsVsctlPath
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$ovsVsctl = $null
if ($OvsPort) {
    $ovsVsctl = Resolve-PsDriverOvsVsctl -Path $OvsVsctlPath
}

$vm = Get-PsDriverVM -Name $Name
$adapters = @(Hyper-V\Get-VMNetworkAdapter -VM $vm | Where-Object { $_.Name -eq $Id })
$removed = $false

if ($OvsPort -and $PSCmdlet.ShouldProcess("Open vSwitch port '$Id'", 'Delete')) {
    Remove-PsDriverOvsPort -OvsVsctl $ovsVsctl -Port $Id
}

if ($adapters.Count -gt 0 -and $PSCmdlet.ShouldProcess("virtual machine '$Name'", "Remove network adapter '$Id'")) {
    Assert-PsDriverNicHotplug -VM $vm -Operation 'remove'
    Invoke-PsDriverNicChange -Description "remove network adapter '$Id'" -VM $vm -Change {
        Hyper-V\Remove-VMNetworkAdapter -VMNetworkAdapter $adapters -Confirm:$false
    }
    $removed = $true
}

[ordered]@{
    name             = [string]$vm.Name
    id               = $Id
    removed          = $removed
    ovs_port_removed = [bool]$OvsPort
}
