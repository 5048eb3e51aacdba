<#
.SYNOPSIS
    Takes a virtual machine out of the failover cluster: removes its
    clustered role and the role's resources, keeping the VM itself.

.DESCRIPTION
    Runs Remove-ClusterGroup -RemoveResources on the role named after the
    VM. The virtual machine stays on the node that owns it, as an ordinary
    Hyper-V VM that can then be deleted, migrated or resized. A VM that is
    not a clustered role is not an error (removed is then false), so the
    call can be repeated.

    Errors: not a node of a running cluster: ResourceUnavailable /
    PsDriver.ClusterUnavailable.

.PARAMETER Name
    The name of the virtual machine (the instance name), which is the name
    of its clustered role.

.EXAMPLE
    .\Remove-InstanceClusterRole.ps1 -Name instance-00000001

.OUTPUTS
    One object: name, removed (false when there was no such role),
    owner_node (the node that owned the role, or null).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverCluster' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$null = Get-PsDriverCluster
$group = Find-PsDriverClusterGroup -Name $Name
$owner = $null
$removed = $false
if ($null -ne $group) {
    $owner = (ConvertTo-PsDriverClusterGroupRecord -Group $group).owner_node
    if ($PSCmdlet.ShouldProcess("clustered role '$Name'", 'Remove from the failover cluster')) {
        FailoverClusters\Remove-ClusterGroup -Name $group.Name -RemoveResources -Force -Confirm:$false
        $removed = $true
    }
}

[ordered]@{
    name       = $Name
    removed    = $removed
    owner_node = $owner
}
