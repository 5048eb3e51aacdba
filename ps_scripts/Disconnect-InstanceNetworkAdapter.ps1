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

    Safe to repeat: a missing VM, a missing adapter or an adapter that is
    already disconnected is not an error (reported in vm_found, missing and
    not_connected). Hyper-V refusing the change: InvalidOperation /
    PsDriver.NicOperationFailed.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER Id
    The Neutron port ids (the adapter names). An empty list does nothing.

.PARAMETER SwitchName
    The virtual switch the adapters were connected to ([hyperv]
    vswitch_name).

.EXAMPLE
    .\Disconnect-InstanceNetworkAdapter.ps1 -Name instance-00000001 -Id 3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b -SwitchName br-int

.OUTPUTS
    One object: name (the VM), vm_found (false: no such VM, nothing done),
    disconnected (port ids whose adapter was disconnected), not_connected
    (port ids whose adapter was not connected to SwitchName), missing (port
    ids without an adapter on the VM).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [AllowEmptyCollection()]
    [string[]]$Id,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$SwitchName
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Find-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$disconnected = [System.Collections.Generic.List[string]]::new()
$notConnected = [System.Collections.Generic.List[string]]::new()
$missing = [System.Collections.Generic.List[string]]::new()
$vms = @(Find-PsDriverVM -Name $Name)
$vmFound = $vms.Count -gt 0

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
}
