<#
.SYNOPSIS
    Makes sure a virtual machine has one correctly set up network adapter
    per Neutron port (plug_vifs), in one call for all ports.

.DESCRIPTION
    For each entry of Nics:
      - an adapter named after the port id is added if missing, with the
        port's MAC as static MAC (created);
      - an existing adapter gets the port's MAC if it differs or is
        dynamic (updated);
      - with switch set, the adapter is connected to that virtual switch if
        it is not already (updated); switch absent or null leaves the
        connection alone (an L2 agent may manage it);
      - with vlan set, 0 makes the adapter untagged and 1-4094 puts it in
        access mode on that VLAN (updated); vlan absent or null leaves the
        VLAN setting alone;
      - with ovs_bridge set (VIF type ovs, Open vSwitch for Windows), the
        adapter is added to that bridge as a port named after the port id,
        with the external ids Neutron's OVS agent reads (iface-id,
        attached-mac, iface-status, vm-uuid), by ovs-vsctl --may-exist
        add-port, so repeating it changes nothing. ovs-vsctl refuses a
        bridge that does not exist: InvalidOperation /
        PsDriver.OvsVsctlFailed; ovs-vsctl not found: ObjectNotFound /
        PsDriver.OvsVsctlNotFound (checked before anything is changed).
    Adapters not listed are left alone.

    All entries are checked before anything is changed: an entry without
    an id or with a bad MAC is an error of category InvalidArgument with
    error id PsDriver.InvalidNicSpec; a generation 1 VM that is not Off and
    misses an adapter is an error of category InvalidOperation with error
    id PsDriver.NicHotplugUnsupported (generation 1 VMs cannot hot-add
    adapters; generation 2 VMs can). Hyper-V refusing a change (for example
    a MAC change while running): InvalidOperation /
    PsDriver.NicOperationFailed. Missing VM: ObjectNotFound /
    PsDriver.VMNotFound.

    MAC addresses in the result are lower case, colon separated
    (fa:16:3e:01:02:03); vlan is the access VLAN id or null when untagged.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER Nics
    The ports: objects or hashtables with id (Neutron port id, the adapter
    name), mac (fa:16:3e:01:02:03, dashes or bare hex also accepted),
    switch (virtual switch name or null), vlan (0-4094 or null) and
    ovs_bridge (Open vSwitch bridge name or null).

.PARAMETER InstanceUuid
    The instance UUID, written as the vm-uuid external id of Open vSwitch
    ports. Required when an entry has ovs_bridge.

.PARAMETER OvsVsctlPath
    The ovs-vsctl program ([hyperv] ovs_vsctl_path); empty: ovs-vsctl.exe
    found on PATH. Used only when an entry has ovs_bridge.

.EXAMPLE
    .\Connect-InstanceNetworkAdapter.ps1 -Name instance-00000001 -Nics @(
        @{ id = '3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b'; mac = 'fa:16:3e:01:02:03'; switch = 'br-int'; vlan = 101 }
    )

.OUTPUTS
    One object: name (the VM), nics (one {name, mac, switch, vlan,
    connected} per listed port, in the order given), created (ids of the
    adapters added), updated (ids of existing adapters changed), ovs_ports
    (ids of the adapters made Open vSwitch ports).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [AllowEmptyCollection()]
    [psobject[]]$Nics,

    [AllowNull()]
    [AllowEmptyString()]
    [string]$InstanceUuid,

    [AllowNull()]
    [AllowEmptyString()]
    [string]$OvsVsctlPath
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Get-SpecValue {
    <#
    .SYNOPSIS
        A field of a NIC entry (dictionary or object), or $null when absent.

    .DESCRIPTION
        The decoded input document holds JSON objects as OrderedDictionary
        (PowerShell 7, keys compared case-insensitively) or
        Dictionary[string, object] (Windows PowerShell 5.1, case-sensitive
        keys); the keys are compared one by one, case-insensitively, so an
        entry reads the same on both.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$Spec,

        [Parameter(Mandatory)]
        [string]$Field
    )
    $base = $Spec
    if ($Spec -is [psobject]) {
        $base = $Spec.PSObject.BaseObject
    }
    if ($base -is [System.Collections.IDictionary]) {
        foreach ($key in $base.Keys) {
            if ([string]$key -eq $Field) {
                return $base[$key]
            }
        }
        return $null
    }
    $property = $Spec.PSObject.Properties[$Field]
    if ($null -eq $property) {
        return $null
    }
    $property.Value
}

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$wanted = [System.Collections.Generic.List[object]]::new()
$index = 0
foreach ($spec in $Nics) {
    $index++
    if ($null -eq $spec) {
        throw (New-PsDriverErrorRecord -Message "Nics entry $index is null." -Category InvalidArgument -ErrorId 'PsDriver.InvalidNicSpec' -Target $index)
    }
    $portId = [string](Get-SpecValue -Spec $spec -Field 'id')
    $rawMac = [string](Get-SpecValue -Spec $spec -Field 'mac')
    $mac = ConvertTo-PsDriverHyperVMac -Mac $rawMac
    if ([string]::IsNullOrWhiteSpace($portId) -or $null -eq $mac) {
        throw (New-PsDriverErrorRecord -Message "Nics entry $index needs an id and a MAC address (got id '$portId', mac '$rawMac')." -Category InvalidArgument -ErrorId 'PsDriver.InvalidNicSpec' -Target $index)
    }
    $switchValue = Get-SpecValue -Spec $spec -Field 'switch'
    $switchName = $null
    if (-not [string]::IsNullOrEmpty([string]$switchValue)) {
        $switchName = [string]$switchValue
    }
    $vlanValue = Get-SpecValue -Spec $spec -Field 'vlan'
    $vlanId = $null
    if ($null -ne $vlanValue) {
        $vlanNumber = 0
        if (-not [int]::TryParse([string]$vlanValue, [ref]$vlanNumber) -or $vlanNumber -lt 0 -or $vlanNumber -gt 4094) {
            throw (New-PsDriverErrorRecord -Message "Nics entry $index has VLAN '$vlanValue'; expected 0 to 4094 or null." -Category InvalidArgument -ErrorId 'PsDriver.InvalidNicSpec' -Target $index)
        }
        $vlanId = $vlanNumber
    }
    $ovsBridge = [string](Get-SpecValue -Spec $spec -Field 'ovs_bridge')
    if ([string]::IsNullOrEmpty($ovsBridge)) {
        $ovsBridge = $null
    }
    $wanted.Add([pscustomobject]@{
            Id         = $portId
            Mac        = $mac
            SwitchName = $switchName
            VlanId     = $vlanId
            OvsBridge  = $ovsBridge
        })
}

$ovsVsctl = $null
$instanceGuid = [guid]::Empty
if (@($wanted | Where-Object { $null -ne $_.OvsBridge }).Count -gt 0) {
    if (-not [guid]::TryParse([string]$InstanceUuid, [ref]$instanceGuid)) {
        throw (New-PsDriverErrorRecord -Message "Open vSwitch ports need the instance UUID (got '$InstanceUuid')." -Category InvalidArgument -ErrorId 'PsDriver.InvalidNicSpec' -Target $InstanceUuid)
    }
    $ovsVsctl = Resolve-PsDriverOvsVsctl -Path $OvsVsctlPath
}

$vm = Get-PsDriverVM -Name $Name
$adapters = @(Hyper-V\Get-VMNetworkAdapter -VM $vm)
$vlanMap = Get-PsDriverVlanMap -VM $vm

$missing = @($wanted | Where-Object {
        $portId = $_.Id
        @($adapters | Where-Object { $_.Name -eq $portId }).Count -eq 0
    })
if ($missing.Count -gt 0) {
    Assert-PsDriverNicHotplug -VM $vm -Operation 'add'
}

$created = [System.Collections.Generic.List[string]]::new()
$updated = [System.Collections.Generic.List[string]]::new()
$ovsPorts = [System.Collections.Generic.List[string]]::new()

if ($wanted.Count -gt 0 -and $PSCmdlet.ShouldProcess("virtual machine '$Name'", "Plug $($wanted.Count) network adapter(s)")) {
    foreach ($want in $wanted) {
        $adapter = @($adapters | Where-Object { $_.Name -eq $want.Id }) | Select-Object -First 1
        $changedThis = $false
        if ($null -eq $adapter) {
            $addArgs = @{
                VM               = $vm
                Name             = $want.Id
                StaticMacAddress = $want.Mac
                Passthru         = $true
                Confirm          = $false
            }
            if ($null -ne $want.SwitchName) {
                $addArgs['SwitchName'] = $want.SwitchName
            }
            $adapter = Invoke-PsDriverNicChange -Description "add network adapter '$($want.Id)'" -VM $vm -Change {
                Hyper-V\Add-VMNetworkAdapter @addArgs
            }
            $created.Add($want.Id)
        }
        else {
            if ((ConvertTo-PsDriverHyperVMac -Mac $adapter.MacAddress) -ne $want.Mac -or $adapter.DynamicMacAddressEnabled) {
                Invoke-PsDriverNicChange -Description "set the MAC address of network adapter '$($want.Id)'" -VM $vm -Change {
                    Hyper-V\Set-VMNetworkAdapter -VMNetworkAdapter $adapter -StaticMacAddress $want.Mac -Confirm:$false
                }
                $changedThis = $true
            }
            if ($null -ne $want.SwitchName -and $adapter.SwitchName -ne $want.SwitchName) {
                Invoke-PsDriverNicChange -Description "connect network adapter '$($want.Id)' to switch '$($want.SwitchName)'" -VM $vm -Change {
                    Hyper-V\Connect-VMNetworkAdapter -VMNetworkAdapter $adapter -SwitchName $want.SwitchName -Confirm:$false
                }
                $changedThis = $true
            }
        }
        if ($null -ne $want.VlanId) {
            $current = $null
            if ($created -notcontains $want.Id) {
                $current = Get-PsDriverAccessVlanId -VlanMap $vlanMap -Adapter $adapter
            }
            if ($want.VlanId -eq 0 -and $null -ne $current) {
                Invoke-PsDriverNicChange -Description "make network adapter '$($want.Id)' untagged" -VM $vm -Change {
                    Hyper-V\Set-VMNetworkAdapterVlan -VMNetworkAdapter $adapter -Untagged -Confirm:$false
                }
                $changedThis = $true
            }
            elseif ($want.VlanId -gt 0 -and $current -ne $want.VlanId) {
                Invoke-PsDriverNicChange -Description "set VLAN $($want.VlanId) on network adapter '$($want.Id)'" -VM $vm -Change {
                    Hyper-V\Set-VMNetworkAdapterVlan -VMNetworkAdapter $adapter -Access -VlanId $want.VlanId -Confirm:$false
                }
                $changedThis = $true
            }
        }
        if ($changedThis -and $created -notcontains $want.Id) {
            $updated.Add($want.Id)
        }
        if ($null -ne $want.OvsBridge) {
            Add-PsDriverOvsPort -OvsVsctl $ovsVsctl -Bridge $want.OvsBridge -Port $want.Id -MacAddress $want.Mac -InstanceUuid $instanceGuid
            $ovsPorts.Add($want.Id)
        }
    }
}

$finalAdapters = @(Hyper-V\Get-VMNetworkAdapter -VM $vm)
$finalVlans = Get-PsDriverVlanMap -VM $vm
$records = [System.Collections.Generic.List[object]]::new()
foreach ($want in $wanted) {
    $adapter = @($finalAdapters | Where-Object { $_.Name -eq $want.Id }) | Select-Object -First 1
    if ($null -ne $adapter) {
        $records.Add((Get-PsDriverNicRecord -Adapter $adapter -VlanMap $finalVlans))
    }
}

[ordered]@{
    name      = [string]$vm.Name
    nics      = @($records)
    created   = @($created)
    updated   = @($updated)
    ovs_ports = @($ovsPorts)
}
