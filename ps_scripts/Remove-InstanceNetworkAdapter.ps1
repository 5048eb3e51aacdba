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

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$vm = Get-PsDriverVM -Name $Name
$adapters = @(Hyper-V\Get-VMNetworkAdapter -VM $vm | Where-Object { $_.Name -eq $Id })
$removed = $false

if ($adapters.Count -gt 0 -and $PSCmdlet.ShouldProcess("virtual machine '$Name'", "Remove network adapter '$Id'")) {
    Assert-PsDriverNicHotplug -VM $vm -Operation 'remove'
    Invoke-PsDriverNicChange -Description "remove network adapter '$Id'" -VM $vm -Change {
        Hyper-V\Remove-VMNetworkAdapter -VMNetworkAdapter $adapters -Confirm:$false
    }
    $removed = $true
}

[ordered]@{
    name    = [string]$vm.Name
    id      = $Id
    removed = $removed
}
