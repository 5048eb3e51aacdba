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

.EXAMPLE
    .\Add-InstanceNetworkAdapter.ps1 -Name instance-00000001 `
        -Id 3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b -MacAddress fa:16:3e:01:02:03 -SwitchName br-int

.OUTPUTS
    One object: name (the VM), created (a new adapter was added),
    nic {name, mac, switch, vlan, connected}.
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
    [int]$VlanId = 0
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

function ConvertTo-HyperVMac {
    <#
    .SYNOPSIS
        'fa:16:3e:01:02:03' (or with dashes, or bare) -> 'FA163E010203'; $null if not a MAC.
    #>
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Mac
    )
    if ([string]::IsNullOrWhiteSpace($Mac)) {
        return $null
    }
    $text = $Mac.Trim()
    if ($text -notmatch '^(?:[0-9a-fA-F]{2}([:-]?)){5}[0-9a-fA-F]{2}$') {
        return $null
    }
    ($text -replace '[:-]', '').ToUpperInvariant()
}

function ConvertTo-MacString {
    <#
    .SYNOPSIS
        'FA163E010203' -> 'fa:16:3e:01:02:03'; $null for an empty or all-zero address.
    #>
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Mac
    )
    $hex = ([string]$Mac) -replace '[^0-9a-fA-F]', ''
    if ($hex.Length -ne 12 -or $hex -eq '000000000000') {
        return $null
    }
    $hex = $hex.ToLowerInvariant()
    (0..5 | ForEach-Object { $hex.Substring($_ * 2, 2) }) -join ':'
}

function Get-VlanMap {
    <#
    .SYNOPSIS
        VLAN settings of all the VM's adapters (one call), keyed by adapter id.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $map = @{}
    foreach ($vlan in @(Get-VMNetworkAdapterVlan -VM $VM)) {
        if ($null -ne $vlan -and $null -ne $vlan.ParentAdapter) {
            $map[[string]$vlan.ParentAdapter.Id] = $vlan
        }
    }
    $map
}

function Get-AccessVlanId {
    <#
    .SYNOPSIS
        The adapter's access VLAN id, or $null when untagged or in another mode.
    #>
    param(
        [Parameter(Mandatory)]
        [hashtable]$VlanMap,

        [Parameter(Mandatory)]
        [object]$Adapter
    )
    $vlan = $VlanMap[[string]$Adapter.Id]
    if ($null -ne $vlan -and $vlan.OperationMode.ToString() -eq 'Access') {
        return [int]$vlan.AccessVlanId
    }
    $null
}

function Get-NicRecord {
    param(
        [Parameter(Mandatory)]
        [object]$Adapter,

        [Parameter(Mandatory)]
        [hashtable]$VlanMap
    )
    $switchName = $null
    if (-not [string]::IsNullOrEmpty($Adapter.SwitchName)) {
        $switchName = [string]$Adapter.SwitchName
    }
    [ordered]@{
        name      = [string]$Adapter.Name
        mac       = ConvertTo-MacString -Mac $Adapter.MacAddress
        'switch'  = $switchName
        vlan      = Get-AccessVlanId -VlanMap $VlanMap -Adapter $Adapter
        connected = ($null -ne $switchName)
    }
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

$mac = ConvertTo-HyperVMac -Mac $MacAddress
if ($null -eq $mac) {
    throw (New-ErrorRecord -Message "'$MacAddress' is not a MAC address." -Category InvalidArgument -ErrorId 'PsDriver.InvalidMacAddress' -Target $MacAddress)
}

$vm = Get-TargetVM -Name $Name
$adapter = @(Get-VMNetworkAdapter -VM $vm | Where-Object { $_.Name -eq $Id }) | Select-Object -First 1
$created = $false

if ($PSCmdlet.ShouldProcess("virtual machine '$Name'", "Add network adapter '$Id'")) {
    if ($null -eq $adapter) {
        Assert-NicHotplug -VM $vm -Operation 'add'
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
        $adapter = Invoke-NicChange -Description "add network adapter '$Id'" -VM $vm -Change {
            Add-VMNetworkAdapter @addArgs
        }
        $created = $true
    }
    else {
        if ((ConvertTo-HyperVMac -Mac $adapter.MacAddress) -ne $mac -or $adapter.DynamicMacAddressEnabled) {
            Invoke-NicChange -Description "set the MAC address of network adapter '$Id'" -VM $vm -Change {
                Set-VMNetworkAdapter -VMNetworkAdapter $adapter -StaticMacAddress $mac -Confirm:$false
            }
        }
        if (-not [string]::IsNullOrEmpty($SwitchName) -and $adapter.SwitchName -ne $SwitchName) {
            Invoke-NicChange -Description "connect network adapter '$Id' to switch '$SwitchName'" -VM $vm -Change {
                Connect-VMNetworkAdapter -VMNetworkAdapter $adapter -SwitchName $SwitchName -Confirm:$false
            }
        }
    }
    if ($VlanId -gt 0) {
        $current = Get-AccessVlanId -VlanMap (Get-VlanMap -VM $vm) -Adapter $adapter
        if ($current -ne $VlanId) {
            Invoke-NicChange -Description "set VLAN $VlanId on network adapter '$Id'" -VM $vm -Change {
                Set-VMNetworkAdapterVlan -VMNetworkAdapter $adapter -Access -VlanId $VlanId -Confirm:$false
            }
        }
    }
}

$nic = $null
$final = @(Get-VMNetworkAdapter -VM $vm | Where-Object { $_.Name -eq $Id }) | Select-Object -First 1
if ($null -ne $final) {
    $nic = Get-NicRecord -Adapter $final -VlanMap (Get-VlanMap -VM $vm)
}

[ordered]@{
    name    = [string]$vm.Name
    created = $created
    nic     = $nic
}
