<#
.SYNOPSIS
    Makes a virtual machine of this node a clustered role that fails over
    to another node, with the failover policy of the compute service.

.DESCRIPTION
    Runs Add-ClusterVirtualMachineRole for the VM (the role is named after
    the VM), then sets on the new cluster group what compute-hyperv set:
    FailoverThreshold (MaxFailoverCount failovers allowed within
    FailoverPeriod hours), FailoverPeriod, AutoFailbackType (Allow when
    AutoFailback, else Prevent) and PersistentState (the cluster brings the
    role back to the state it was in). The VM's files must be on storage
    every node sees (a Cluster Shared Volume or an SMB share).

    A VM that already is a clustered role keeps it: only the policy is set
    again (a retried operation is not an error). When setting the policy of
    a role this call created fails, the role is removed again (the VM
    itself stays) and the error is reported.

    Errors: missing VM: ObjectNotFound / PsDriver.VMNotFound. Not a node of
    a running cluster: ResourceUnavailable / PsDriver.ClusterUnavailable.

.PARAMETER Name
    The exact name of the virtual machine (the instance name).

.PARAMETER MaxFailoverCount
    Failovers allowed within FailoverPeriod hours ([hyperv]
    max_failover_count); past it the cluster leaves the role Failed.

.PARAMETER FailoverPeriod
    Hours over which MaxFailoverCount applies ([hyperv] failover_period).

.PARAMETER AutoFailback
    Let the cluster move the role back to its preferred node when that
    node is up again ([hyperv] auto_failback).

.EXAMPLE
    .\Add-InstanceClusterRole.ps1 -Name instance-00000001 -MaxFailoverCount 1 -FailoverPeriod 6 -AutoFailback $true

.OUTPUTS
    One object: name, owner_node, state, failover_threshold,
    failover_period, auto_failback, persistent_state (as set on the
    group), added (false when the VM already was a clustered role).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [ValidateRange(1, 2147483647)]
    [int]$MaxFailoverCount = 1,

    [ValidateRange(1, 2147483647)]
    [int]$FailoverPeriod = 6,

    [bool]$AutoFailback = $true
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverCluster' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$null = Get-PsDriverCluster
$vm = Get-PsDriverVM -Name $Name

$group = Find-PsDriverClusterGroup -Name $vm.Name
$added = $null -eq $group
if ($added) {
    $group = FailoverClusters\Add-ClusterVirtualMachineRole -VMName $vm.Name -Name $vm.Name
}
try {
    $group.FailoverThreshold = [uint32]$MaxFailoverCount
    $group.FailoverPeriod = [uint32]$FailoverPeriod
    $group.AutoFailbackType = [uint32]$(if ($AutoFailback) { 1 } else { 0 })
    $group.PersistentState = [uint32]1
}
catch {
    $failure = $_
    if ($added) {
        try {
            FailoverClusters\Remove-ClusterGroup -Name $vm.Name -RemoveResources -Force -Confirm:$false
        }
        catch {
            Write-Warning "Removing the clustered role '$($vm.Name)' after a failure failed too: $($_.Exception.Message)"
        }
    }
    throw $failure
}

$record = ConvertTo-PsDriverClusterGroupRecord -Group (FailoverClusters\Get-ClusterGroup -Name $vm.Name)
$record['added'] = $added
$record
