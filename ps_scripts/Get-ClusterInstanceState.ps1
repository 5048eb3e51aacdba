<#
.SYNOPSIS
    Reports the failover cluster this host is a node of: its nodes and the
    owner node of every clustered virtual machine, in one call.

.DESCRIPTION
    Built for the failover watcher of the cluster driver, which polls it:
    one Get-Cluster, one Get-ClusterNode and one Get-ClusterGroup call,
    whatever the number of clustered virtual machines, so a poll costs the
    same with ten or a thousand instances. Only groups of type
    VirtualMachine are reported (the cluster's own groups and other roles
    are left out); psdriver names the role of an instance after its VM,
    so a group name is an instance name.

    Errors: a host without the FailoverClusters module, or whose cluster
    service is not running: ResourceUnavailable / PsDriver.ClusterUnavailable.

.PARAMETER Name
    Report only the groups with these names (exact, case-insensitive);
    every VirtualMachine group when omitted.

.EXAMPLE
    .\Get-ClusterInstanceState.ps1

    Lists the nodes and the clustered virtual machines with their owners.

.OUTPUTS
    One object: cluster_name; node_name (this node); nodes = list of
    {name, state (Up, Down, Paused, Joining)}; groups = list of {name,
    owner_node (null when the group has no owner), state (Online, Offline,
    Failed, PartialOnline, Pending), failover_threshold, failover_period
    (hours), auto_failback (AutoFailbackType is Allow), persistent_state}.
#>
[CmdletBinding()]
param(
    [string[]]$Name = @()
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverCluster' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$cluster = Get-PsDriverCluster
$wanted = [System.Collections.Generic.HashSet[string]]::new([System.StringComparer]::OrdinalIgnoreCase)
foreach ($item in $Name) {
    [void]$wanted.Add($item)
}

$nodes = [System.Collections.Generic.List[object]]::new()
foreach ($node in @(FailoverClusters\Get-ClusterNode)) {
    $nodes.Add([ordered]@{
            name  = [string]$node.Name
            state = [string]$node.State
        })
}

$groups = [System.Collections.Generic.List[object]]::new()
foreach ($group in @(FailoverClusters\Get-ClusterGroup)) {
    if ([string]$group.GroupType -ne 'VirtualMachine') {
        continue
    }
    if ($wanted.Count -gt 0 -and -not $wanted.Contains([string]$group.Name)) {
        continue
    }
    $groups.Add((ConvertTo-PsDriverClusterGroupRecord -Group $group))
}

[ordered]@{
    cluster_name = [string]$cluster.Name
    node_name    = [string]$env:COMPUTERNAME
    nodes        = @($nodes)
    groups       = @($groups)
}
