# PsDriver helpers: network adapter records and changes.
# Dot-sourced by PsDriver.psm1; the bridge inlines the functions of this file that a
# wrapped script uses (psdriver/bridge/helpers.py). Functions only: no other statements.

# An adapter is named after its Neutron port id. MAC addresses reach Hyper-V as
# 'FA163E010203' and leave the scripts as 'fa:16:3e:01:02:03'.

function ConvertTo-PsDriverHyperVMac {
    <#
    .SYNOPSIS
        'fa:16:3e:01:02:03' (or with dashes, or bare) -> 'FA163E010203'; $null if not a MAC.

    .PARAMETER Mac
        The MAC address as a caller wrote it.
    #>
    [CmdletBinding()]
    [OutputType([string])]
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

function ConvertTo-PsDriverMacString {
    <#
    .SYNOPSIS
        'FA163E010203' -> 'fa:16:3e:01:02:03'; $null for an empty or all-zero address.

    .PARAMETER Mac
        The MAC address as Hyper-V reports it.
    #>
    [CmdletBinding()]
    [OutputType([string])]
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

function Get-PsDriverVlanMap {
    <#
    .SYNOPSIS
        VLAN settings of all the VM's adapters (one call), keyed by adapter id.

    .PARAMETER VM
        The VM.
    #>
    [CmdletBinding()]
    [OutputType([hashtable])]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $map = @{}
    foreach ($vlan in @(Hyper-V\Get-VMNetworkAdapterVlan -VM $VM)) {
        if ($null -ne $vlan -and $null -ne $vlan.ParentAdapter) {
            $map[[string]$vlan.ParentAdapter.Id] = $vlan
        }
    }
    $map
}

function Get-PsDriverAccessVlanId {
    <#
    .SYNOPSIS
        The adapter's access VLAN id, or $null when untagged or in another mode.

    .PARAMETER VlanMap
        What Get-PsDriverVlanMap returned for the adapter's VM.

    .PARAMETER Adapter
        The network adapter.
    #>
    [CmdletBinding()]
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

function Get-PsDriverNicRecord {
    <#
    .SYNOPSIS
        The result record of one adapter: name, mac, switch, vlan, connected.

    .PARAMETER Adapter
        The network adapter.

    .PARAMETER VlanMap
        What Get-PsDriverVlanMap returned for the adapter's VM.
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
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
        mac       = ConvertTo-PsDriverMacString -Mac $Adapter.MacAddress
        'switch'  = $switchName
        vlan      = Get-PsDriverAccessVlanId -VlanMap $VlanMap -Adapter $Adapter
        connected = ($null -ne $switchName)
    }
}

function Assert-PsDriverNicHotplug {
    <#
    .SYNOPSIS
        Throws PsDriver.NicHotplugUnsupported when adapters cannot be added or removed now.

    .DESCRIPTION
        Generation 2 VMs take and give up adapters while running (Windows
        Server 2016 and later); generation 1 VMs only while Off. Otherwise:
        InvalidOperation / PsDriver.NicHotplugUnsupported.

    .PARAMETER VM
        The VM.

    .PARAMETER Operation
        What is being done, for the message: add or remove.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [string]$Operation
    )
    $state = $VM.State.ToString()
    if ($state -ne 'Off' -and [int]$VM.Generation -eq 1) {
        throw (New-PsDriverErrorRecord -Message "Cannot $Operation a network adapter on virtual machine '$($VM.Name)' while it is ${state}: generation 1 virtual machines do not support network adapter hot plug; turn the virtual machine off first." -Category InvalidOperation -ErrorId 'PsDriver.NicHotplugUnsupported' -Target $VM.Name)
    }
}

function Invoke-PsDriverNicChange {
    <#
    .SYNOPSIS
        Runs one adapter change; a Hyper-V refusal becomes PsDriver.NicOperationFailed.

    .DESCRIPTION
        The change's output is passed on. Any failure becomes
        InvalidOperation / PsDriver.NicOperationFailed, with the description,
        the VM's name and state and Hyper-V's own message.

    .PARAMETER Description
        What the change does, for the message ("add network adapter 'x'").

    .PARAMETER VM
        The VM.

    .PARAMETER Change
        The Hyper-V cmdlet call.
    #>
    [CmdletBinding()]
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
        throw (New-PsDriverErrorRecord -Message $message -Category InvalidOperation -ErrorId 'PsDriver.NicOperationFailed' -Target $VM.Name)
    }
}
