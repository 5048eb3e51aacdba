# Fake failover cluster for the Pester tests of the cluster scripts: dot-source it in
# BeforeAll after PsDriverTestHelpers.ps1. State lives in $PsdTest: Nodes (name -> state),
# Groups (list of fake ClusterGroup objects), Vms (names of the VMs on this node),
# NoCluster (Get-Cluster fails as on a host whose cluster service is not running).

function Add-FakeClusterCommandStub {
    Add-CommandStubSet -Commands ([ordered]@{
            'Get-Cluster'                   = @('Name')
            'Get-ClusterNode'               = @('Name')
            'Get-ClusterGroup'              = @('Name', 'VMId')
            'Add-ClusterVirtualMachineRole' = @('Name', 'VMName', 'VMId')
            'Remove-ClusterGroup'           = @('Name', '-RemoveResources', '-Force')
            'Move-ClusterVirtualMachineRole' = @('Name', 'Node', 'MigrationType', 'Wait', '-Cancel')
            'Get-VM'                        = @('Name', 'Id')
        })
}

function New-FakeClusterGroup {
    param(
        [Parameter(Mandatory)]
        [string]$Name,

        [string]$Owner = 'HV01',

        [string]$GroupType = 'VirtualMachine'
    )
    [pscustomobject]@{
        Name              = $Name
        GroupType         = $GroupType
        OwnerNode         = [pscustomobject]@{ Name = $Owner }
        State             = 'Online'
        FailoverThreshold = [uint32]4294967295
        FailoverPeriod    = [uint32]6
        AutoFailbackType  = [uint32]0
        PersistentState   = [uint32]0
    }
}

function New-FakeObjectNotFound {
    param([string]$Name)
    [System.Management.Automation.ErrorRecord]::new(
        [System.InvalidOperationException]::new("The cluster group '$Name' was not found."),
        'ClusterGroupNotFound', [System.Management.Automation.ErrorCategory]::ObjectNotFound, $Name)
}

function Register-FakeClusterHost {
    Register-TestMock -CommandName 'Import-Module' -ParameterFilter { $Name -eq 'FailoverClusters' } -MockWith {
        if ($PsdTest.NoCluster) {
            throw "The specified module 'FailoverClusters' was not loaded because no valid module file was found in any module directory."
        }
    }
    Register-TestMock -CommandName 'Get-Cluster' -MockWith { [pscustomobject]@{ Name = 'hvcluster' } }
    Register-TestMock -CommandName 'Get-ClusterNode' -MockWith {
        foreach ($key in $PsdTest.Nodes.Keys) {
            [pscustomobject]@{ Name = $key; State = $PsdTest.Nodes[$key] }
        }
    }
    Register-TestMock -CommandName 'Get-ClusterGroup' -MockWith {
        if ($null -eq $Name) {
            return $PsdTest.Groups
        }
        $found = @($PsdTest.Groups | Where-Object { $_.Name -eq @($Name)[0] })
        if ($found.Count -eq 0) {
            throw (New-FakeObjectNotFound -Name @($Name)[0])
        }
        $found[0]
    }
    Register-TestMock -CommandName 'Add-ClusterVirtualMachineRole' -MockWith {
        $group = New-FakeClusterGroup -Name $Name
        $PsdTest.Groups = @($PsdTest.Groups) + $group
        $group
    }
    Register-TestMock -CommandName 'Remove-ClusterGroup' -MockWith {
        $PsdTest.Groups = @($PsdTest.Groups | Where-Object { $_.Name -ne @($Name)[0] })
    }
    Register-TestMock -CommandName 'Move-ClusterVirtualMachineRole' -MockWith {
        if ($Cancel) {
            return
        }
        if ($PsdTest.Nodes[$Node] -ne 'Up') {
            throw "The cluster node '$Node' is not Up."
        }
        if (-not $PsdTest.SlowMove) {
            foreach ($group in @($PsdTest.Groups | Where-Object { $_.Name -eq $Name })) {
                $group.OwnerNode = [pscustomobject]@{ Name = $Node }
            }
        }
    }
    Register-TestMock -CommandName 'Get-VM' -MockWith {
        foreach ($vmName in $PsdTest.Vms) {
            if ($vmName -like @($Name)[0]) {
                [pscustomobject]@{ Name = $vmName; Id = [guid]::NewGuid(); State = 'Running' }
            }
        }
    }
}
