BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Get-ClusterInstanceState')
}

BeforeAll {
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'ClusterTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Get-ClusterInstanceState'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Get-ClusterInstanceState'
    Import-PsDriverModule
    Add-FakeClusterCommandStub
}

AfterAll {
    Remove-CommandStub
}

Describe 'Get-ClusterInstanceState' {
    BeforeEach {
        $PsdTest.NoCluster = $false
        $PsdTest.Nodes = [ordered]@{ HV01 = 'Up'; HV02 = 'Down'; HV03 = 'Paused' }
        $PsdTest.Vms = @()
        $PsdTest.Groups = @(
            New-FakeClusterGroup -Name 'Cluster Group' -GroupType 'Cluster'
            New-FakeClusterGroup -Name 'instance-00000001' -Owner 'HV01'
            New-FakeClusterGroup -Name 'instance-00000002' -Owner 'HV03'
            New-FakeClusterGroup -Name 'Available Storage' -GroupType 'AvailableStorage'
        )
        Register-FakeClusterHost
    }

    It 'reports every node and every VM group with one call of each cmdlet' {
        $result = & $script:ScriptPath
        Assert-MatchesContract $result
        $result.cluster_name | Should -Be 'hvcluster'
        @($result.nodes).Count | Should -Be 3
        ($result.nodes | Where-Object { $_.name -eq 'HV02' }).state | Should -Be 'Down'
        @($result.groups).Count | Should -Be 2
        ($result.groups | Where-Object { $_.name -eq 'instance-00000002' }).owner_node | Should -Be 'HV03'
        Should -Invoke Get-ClusterGroup -Times 1 -Exactly
        Should -Invoke Get-ClusterNode -Times 1 -Exactly
    }

    It 'keeps only the named groups with -Name, case-insensitively' {
        $result = & $script:ScriptPath -Name 'INSTANCE-00000002'
        Assert-MatchesContract $result
        @($result.groups).Count | Should -Be 1
        $result.groups[0].name | Should -Be 'instance-00000002'
    }

    It 'returns an empty group list on a cluster without VMs' {
        $PsdTest.Groups = @()
        $result = & $script:ScriptPath
        Assert-MatchesContract $result
        @($result.groups).Count | Should -Be 0
    }

    It 'fails with ResourceUnavailable / PsDriver.ClusterUnavailable off a cluster' {
        $PsdTest.NoCluster = $true
        $failure = { & $script:ScriptPath } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeLike 'PsDriver.ClusterUnavailable*'
        $failure.CategoryInfo.Category | Should -Be 'ResourceUnavailable'
        $failure.Exception.Message | Should -BeLike '*not a node of a running failover cluster*'
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
