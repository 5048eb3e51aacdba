# PsDriver helpers: failover cluster roles of instances (FailoverClusters module).
# Dot-sourced by PsDriver.psm1; the bridge inlines the functions of this file that a
# wrapped script uses (psdriver/bridge/helpers.py). Functions only: no other statements.

function Get-PsDriverCluster {
    <#
    .SYNOPSIS
        Imports FailoverClusters and returns the cluster this host is a node of.

    .DESCRIPTION
        A host without the FailoverClusters module, or whose cluster service
        is not running, is not a node of a running failover cluster:
        ResourceUnavailable / PsDriver.ClusterUnavailable with the module's
        own message.
    #>
    [CmdletBinding()]
    [OutputType([object])]
    param()
    try {
        Import-Module -Name 'FailoverClusters' -ErrorAction Stop -Verbose:$false
        FailoverClusters\Get-Cluster
    }
    catch {
        throw (New-PsDriverErrorRecord -Message "$env:COMPUTERNAME is not a node of a running failover cluster: $($_.Exception.Message)" -Category ResourceUnavailable -ErrorId 'PsDriver.ClusterUnavailable' -Target $env:COMPUTERNAME -InnerException $_.Exception)
    }
}

function Find-PsDriverClusterGroup {
    <#
    .SYNOPSIS
        The cluster group (clustered role) named Name, or $null when there is none.

    .PARAMETER Name
        The group name; psdriver names the role of an instance after its VM.
    #>
    [CmdletBinding()]
    [OutputType([object])]
    param(
        [Parameter(Mandatory)]
        [string]$Name
    )
    try {
        FailoverClusters\Get-ClusterGroup -Name $Name
    }
    catch {
        if ($_.CategoryInfo.Category -eq [System.Management.Automation.ErrorCategory]::ObjectNotFound) {
            return $null
        }
        throw
    }
}

function ConvertTo-PsDriverClusterGroupRecord {
    <#
    .SYNOPSIS
        The fields of a ClusterGroup that the driver reads, as a plain record.

    .PARAMETER Group
        A Microsoft.FailoverClusters.PowerShell.ClusterGroup.
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
    param(
        [Parameter(Mandatory)]
        [object]$Group
    )
    $owner = $Group.OwnerNode
    [ordered]@{
        name               = [string]$Group.Name
        owner_node         = if ($null -eq $owner) { $null } else { [string]$owner.Name }
        state              = [string]$Group.State
        failover_threshold = [long]$Group.FailoverThreshold
        failover_period    = [long]$Group.FailoverPeriod
        auto_failback      = ([int]$Group.AutoFailbackType -eq 1)
        persistent_state   = ([int]$Group.PersistentState -eq 1)
    }
}
