<#
.SYNOPSIS
    Disconnects the network adapters of Neutron ports from the virtual
    switch plug_vifs connected them to (unplug_vifs), in one call for all
    ports.

.DESCRIPTION
    For each port id in Id, the adapter named after it is disconnected
    from the virtual switch SwitchName (Disconnect-VMNetworkAdapter) if it
    is connected to that switch. The adapter itself stays on the VM, with
    its MAC and VLAN; an adapter connected to another switch (moved there by
    an L2 agent or an administrator) is left alone.

    Each port id in OvsPortId (VIF type ovs, Open vSwitch for Windows) is
    deleted from whichever Open vSwitch bridge holds it (ovs-vsctl
    --if-exists del-port), whether or not the VM still exists.

    Safe to repeat: a missing VM, a missing adapter, an adapter that is
    already disconnected or a missing Open vSwitch port is not an error
    (reported in vm_found, missing and not_connected). Hyper-V refusing the
    change: InvalidOperation / PsDriver.NicOperationFailed; Id not empty
    without SwitchName: InvalidArgument / PsDriver.InvalidNicSpec;
    ovs-vsctl not found: ObjectNotFound / PsDriver.OvsVsctlNotFound (before
    anything is changed); ovs-vsctl failing: InvalidOperation /
    PsDriver.OvsVsctlFailed.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER Id
    The Neutron port ids (the adapter names) to disconnect from
    SwitchName. An empty list disconnects nothing.

.PARAMETER SwitchName
    The virtual switch the adapters were connected to ([hyperv]
    vswitch_name); required when Id is not empty.

.PARAMETER OvsPortId
    The Neutron port ids (the Open vSwitch port names) to delete from Open
    vSwitch. Absent or empty: ovs-vsctl is not run.

.PARAMETER OvsVsctlPath
    The ovs-vsctl program ([hyperv] ovs_vsctl_path); empty: ovs-vsctl.exe
    found on PATH.

.EXAMPLE
    .\Disconnect-InstanceNetworkAdapter.ps1 -Name instance-00000001 -Id 3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b -SwitchName br-int

.OUTPUTS
    One object: name (the VM), vm_found (false: no such VM, nothing done),
    disconnected (port ids whose adapter was disconnected), not_connected
    (port ids whose adapter was not connected to SwitchName), missing (port
    ids without an adapter on the VM), ovs_ports (the OvsPortId entries,
    none of which is an Open vSwitch port any more).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [AllowEmptyCollection()]
    [string[]]$Id,

    [AllowNull()]
    [AllowEmptyString()]
    [string]$SwitchName,

    [AllowNull()]
    [AllowEmptyCollection()]
    [string[]]$OvsPortId = @(),

    [AllowNull()]
    [AllowEmptyString()]
    [string]$OvsVsctlPath
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Find-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

if (@($Id).Count -gt 0 -and [string]::IsNullOrEmpty($SwitchName)) {
    throw (New-PsDriverErrorRecord -Message 'Disconnecting network adapters needs the virtual switch name (SwitchName).' -Category InvalidArgument -ErrorId 'PsDriver.InvalidNicSpec' -Target $Name)
}
$ovsPorts = @($OvsPortId | Where-Object { -not [string]::IsNullOrEmpty($_) })
$ovsVsctl = $null
if ($ovsPorts.Count -gt 0) {
    $ovsVsctl = Resolve-PsDriverOvsVsctl -Path $OvsVsctlPath
}

$disconnected = [System.Collections.Generic.List[string]]::new()
$notConnected = [System.Collections.Generic.List[string]]::new()
$missing = [System.Collections.Generic.List[string]]::new()
$vms = @(Find-PsDriverVM -Name $Name)
$vmFound = $vms.Count -gt 0

foreach ($port in $ovsPorts) {
    if ($PSCmdlet.ShouldProcess("Open vSwitch port '$port'", 'Delete')) {
        Remove-PsDriverOvsPort -OvsVsctl $ovsVsctl -Port $port
    }
}

if ($vmFound) {
    $vm = $vms[0]
    $adapters = @(Hyper-V\Get-VMNetworkAdapter -VM $vm)
    foreach ($port in @($Id)) {
        $named = @($adapters | Where-Object { $_.Name -eq $port })
        if ($named.Count -eq 0) {
            $missing.Add($port)
            continue
        }
        $onSwitch = @($named | Where-Object { -not [string]::IsNullOrEmpty($_.SwitchName) -and $_.SwitchName -eq $SwitchName })
        if ($onSwitch.Count -eq 0) {
            $notConnected.Add($port)
            continue
        }
        if ($PSCmdlet.ShouldProcess("virtual machine '$Name'", "Disconnect network adapter '$port' from switch '$SwitchName'")) {
            Invoke-PsDriverNicChange -Description "disconnect network adapter '$port' from switch '$SwitchName'" -VM $vm -Change {
                Hyper-V\Disconnect-VMNetworkAdapter -VMNetworkAdapter $onSwitch -Confirm:$false
            }
            $disconnected.Add($port)
        }
    }
}

[ordered]@{
    name          = $Name
    vm_found      = $vmFound
    disconnected  = @($disconnected)
    not_connected = @($notConnected)
    missing       = @($missing)
    ovs_ports     = @($ovsPorts)
}
