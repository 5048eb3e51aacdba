<#
.SYNOPSIS
    Adds a network adapter for one Neutron port to a virtual machine (or
    brings an existing one in line).

.DESCRIPTION
    The adapter is named after the Neutron port id and gets the port's MAC
    address as a static MAC. With SwitchName it is connected to that
    virtual switch; without, it stays disconnected (an L2 agent connects
    it). With VlanId 1-4094 it is set to access mode on that VLAN; 0 or no
    VlanId leaves a new adapter untagged and an existing one unchanged.

    If the VM already has an adapter with that name, nothing is added: its
    MAC, switch and VLAN are set as requested (created is false), which
    makes the call safe to repeat.

    With OvsBridge (VIF type ovs, Open vSwitch for Windows) the adapter is
    then added to that bridge as a port named after the port id, with the
    external ids Neutron's OVS agent reads (iface-id, attached-mac,
    iface-status, vm-uuid), by ovs-vsctl --may-exist add-port. ovs-vsctl
    not found: ObjectNotFound / PsDriver.OvsVsctlNotFound (before anything
    is changed). ovs-vsctl failing (a missing bridge, for example):
    InvalidOperation / PsDriver.OvsVsctlFailed, and an adapter this call
    added is removed again.

    Generation 2 VMs take new adapters while running (Windows Server 2016
    and later). Generation 1 VMs only while Off: otherwise an error of
    category InvalidOperation with error id PsDriver.NicHotplugUnsupported.
    Hyper-V refusing a change: InvalidOperation / PsDriver.NicOperationFailed.
    A MAC that is not six hex pairs: InvalidArgument / PsDriver.InvalidMacAddress.
    Missing VM: ObjectNotFound / PsDriver.VMNotFound.

    MAC addresses in the result are lower case, colon separated
    (fa:16:3e:01:02:03). vlan is the access VLAN id or null when untagged.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER Id
    The Neutron port id; used as the adapter name.

.PARAMETER MacAddress
    The port's MAC address: fa:16:3e:01:02:03, FA-16-3E-01-02-03 or
    FA163E010203.

.PARAMETER SwitchName
    The virtual switch to connect the adapter to. Optional.

.PARAMETER VlanId
    Access VLAN id (1-4094); 0 or absent for untagged. Optional.

.PARAMETER OvsBridge
    The Open vSwitch bridge to add the adapter to as a port. Optional.

.PARAMETER InstanceUuid
    The instance UUID (the vm-uuid external id); required with OvsBridge.

.PARAMETER OvsVsctlPath
    The ovs-vsctl program ([hyperv] ovs_vsctl_path); empty: ovs-vsctl.exe
    found on PATH. Used only with OvsBridge.

.EXAMPLE
    .\Add-InstanceNetworkAdapter.ps1 -Name instance-00000001 `
        -Id 3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b -MacAddress fa:16:3e:01:02:03 -SwitchName br-int

.OUTPUTS
    One object: name (the VM), created (a new adapter was added),
    nic {name, mac, switch, vlan, connected}, ovs_bridge (the Open vSwitch
    bridge the adapter is a port of, null without OvsBridge).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Id,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$MacAddress,

    [string]$SwitchName,

    [ValidateRange(0, 4094)]
    [int]$VlanId = 0,

    [AllowNull()]
    [AllowEmptyString()]
    [string]$OvsBridge,

    [AllowNull()]
    [AllowEmptyString()]
    [string]$InstanceUuid,

    [AllowNull()]
    [AllowEmptyString()]
    [string]$OvsVsctlPath
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$mac = ConvertTo-PsDriverHyperVMac -Mac $MacAddress
if ($null -eq $mac) {
    throw (New-PsDriverErrorRecord -Message "'$MacAddress' is not a MAC address." -Category InvalidArgument -ErrorId 'PsDriver.InvalidMacAddress' -Target $MacAddress)
}

$ovsVsctl = $null
$instanceGuid = [guid]::Empty
if (-not [string]::IsNullOrEmpty($OvsBridge)) {
    if (-not [guid]::TryParse([string]$InstanceUuid, [ref]$instanceGuid)) {
        throw (New-PsDriverErrorRecord -Message "Open vSwitch ports need the instance UUID (got '$InstanceUuid')." -Category InvalidArgument -ErrorId 'PsDriver.InvalidNicSpec' -Target $InstanceUuid)
    }
    $ovsVsctl = Resolve-PsDriverOvsVsctl -Path $OvsVsctlPath
}

$vm = Get-PsDriverVM -Name $Name
$adapter = @(Hyper-V\Get-VMNetworkAdapter -VM $vm | Where-Object { $_.Name -eq $Id }) | Select-Object -First 1
$created = $false

if ($PSCmdlet.ShouldProcess("virtual machine '$Name'", "Add network adapter '$Id'")) {
    if ($null -eq $adapter) {
        Assert-PsDriverNicHotplug -VM $vm -Operation 'add'
        $addArgs = @{
            VM               = $vm
            Name             = $Id
            StaticMacAddress = $mac
            Passthru         = $true
            Confirm          = $false
        }
        if (-not [string]::IsNullOrEmpty($SwitchName)) {
            $addArgs['SwitchName'] = $SwitchName
        }
        $adapter = Invoke-PsDriverNicChange -Description "add network adapter '$Id'" -VM $vm -Change {
            Hyper-V\Add-VMNetworkAdapter @addArgs
        }
        $created = $true
    }
    else {
        if ((ConvertTo-PsDriverHyperVMac -Mac $adapter.MacAddress) -ne $mac -or $adapter.DynamicMacAddressEnabled) {
            Invoke-PsDriverNicChange -Description "set the MAC address of network adapter '$Id'" -VM $vm -Change {
                Hyper-V\Set-VMNetworkAdapter -VMNetworkAdapter $adapter -StaticMacAddress $mac -Confirm:$false
            }
        }
        if (-not [string]::IsNullOrEmpty($SwitchName) -and $adapter.SwitchName -ne $SwitchName) {
            Invoke-PsDriverNicChange -Description "connect network adapter '$Id' to switch '$SwitchName'" -VM $vm -Change {
                Hyper-V\Connect-VMNetworkAdapter -VMNetworkAdapter $adapter -SwitchName $SwitchName -Confirm:$false
            }
        }
    }
    if ($VlanId -gt 0) {
        $current = Get-PsDriverAccessVlanId -VlanMap (Get-PsDriverVlanMap -VM $vm) -Adapter $adapter
        if ($current -ne $VlanId) {
            Invoke-PsDriverNicChange -Description "set VLAN $VlanId on network adapter '$Id'" -VM $vm -Change {
                Hyper-V\Set-VMNetworkAdapterVlan -VMNetworkAdapter $adapter -Access -VlanId $VlanId -Confirm:$false
            }
        }
    }
    if ($null -ne $ovsVsctl) {
        try {
            Add-PsDriverOvsPort -OvsVsctl $ovsVsctl -Bridge $OvsBridge -Port $Id -MacAddress $mac -InstanceUuid $instanceGuid
        }
        catch {
            if ($created) {
                Hyper-V\Remove-VMNetworkAdapter -VMNetworkAdapter $adapter -Confirm:$false
            }
            throw
        }
    }
}

$nic = $null
$final = @(Hyper-V\Get-VMNetworkAdapter -VM $vm | Where-Object { $_.Name -eq $Id }) | Select-Object -First 1
if ($null -ne $final) {
    $nic = Get-PsDriverNicRecord -Adapter $final -VlanMap (Get-PsDriverVlanMap -VM $vm)
}

[ordered]@{
    name       = [string]$vm.Name
    created    = $created
    nic        = $nic
    ovs_bridge = $(if ($null -ne $ovsVsctl) { $OvsBridge } else { $null })
}
