<#
.SYNOPSIS
    Live migrates a clustered virtual machine to another node of its
    cluster, waiting at most TimeoutSeconds.

.DESCRIPTION
    Runs Move-ClusterVirtualMachineRole -MigrationType Live on the role
    named after the VM (the cluster moves the running VM, its storage stays
    where every node sees it). When the role is still not owned by Node
    after TimeoutSeconds, the migration is cancelled
    (Move-ClusterVirtualMachineRole -Cancel) and the call fails. A role
    already owned by Node is not moved (moved is then false).

    Errors: not a node of a running cluster: ResourceUnavailable /
    PsDriver.ClusterUnavailable. No role of that name: ObjectNotFound /
    PsDriver.ClusterGroupNotFound. The cluster refused or failed the
    migration (for example Node is not Up): InvalidOperation /
    PsDriver.ClusterMoveFailed. Not done in time: OperationTimeout /
    PsDriver.ClusterMoveTimeout.

.PARAMETER Name
    The name of the virtual machine (the instance name), which is the name
    of its clustered role.

.PARAMETER Node
    The cluster node to move the virtual machine to.

.PARAMETER TimeoutSeconds
    Seconds to wait for the migration ([hyperv]
    instance_live_migration_timeout), 1 to 86400; default 300.

.EXAMPLE
    .\Move-InstanceClusterRole.ps1 -Name instance-00000001 -Node HV02 -TimeoutSeconds 300

.OUTPUTS
    One object: name, source_node (the owner before the call), owner_node,
    state, failover_threshold, failover_period, auto_failback,
    persistent_state (as the group now is), moved (false when it already
    was on Node).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Node,

    [ValidateRange(1, 86400)]
    [int]$TimeoutSeconds = 300
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverCluster' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$null = Get-PsDriverCluster
$group = Find-PsDriverClusterGroup -Name $Name
if ($null -eq $group) {
    throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' is not a clustered role." -Category ObjectNotFound -ErrorId 'PsDriver.ClusterGroupNotFound' -Target $Name)
}
$source = (ConvertTo-PsDriverClusterGroupRecord -Group $group).owner_node
$moved = $false
if ($source -ne $Node) {
    try {
        $null = FailoverClusters\Move-ClusterVirtualMachineRole -Name $group.Name -Node $Node -MigrationType Live -Wait $TimeoutSeconds
    }
    catch {
        throw (New-PsDriverErrorRecord -Message "Live migration of '$Name' from $source to ${Node} failed: $($_.Exception.Message)" -Category InvalidOperation -ErrorId 'PsDriver.ClusterMoveFailed' -Target $Name -InnerException $_.Exception)
    }
    $group = FailoverClusters\Get-ClusterGroup -Name $group.Name
    if ((ConvertTo-PsDriverClusterGroupRecord -Group $group).owner_node -ne $Node) {
        try {
            $null = FailoverClusters\Move-ClusterVirtualMachineRole -Name $group.Name -Cancel
        }
        catch {
            Write-Warning "Cancelling the live migration of '$Name' failed: $($_.Exception.Message)"
        }
        throw (New-PsDriverErrorRecord -Message "Live migration of '$Name' to $Node did not finish within $TimeoutSeconds s; it was cancelled." -Category OperationTimeout -ErrorId 'PsDriver.ClusterMoveTimeout' -Target $Name)
    }
    $moved = $true
}

$record = ConvertTo-PsDriverClusterGroupRecord -Group $group
$record['source_node'] = $source
$record['moved'] = $moved
$record
