BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Move-InstanceClusterRole')
}

BeforeAll {
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'ClusterTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Move-InstanceClusterRole'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Move-InstanceClusterRole'
    Import-PsDriverModule
    Add-FakeClusterCommandStub
}

AfterAll {
    Remove-CommandStub
}

Describe 'Move-InstanceClusterRole' {
    BeforeEach {
        $PsdTest.NoCluster = $false
        $PsdTest.SlowMove = $false
        $PsdTest.Nodes = [ordered]@{ HV01 = 'Up'; SIMHV02 = 'Up'; HV03 = 'Down' }
        $PsdTest.Vms = @()
        $PsdTest.Groups = @(
            New-FakeClusterGroup -Name 'instance-00000001' -Owner 'HV01'
        )
        Register-FakeClusterHost
    }

    It 'live migrates the role and waits at most TimeoutSeconds' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Node 'SIMHV02' -TimeoutSeconds 120
        Assert-MatchesContract $result
        $result.moved | Should -BeTrue
        $result.source_node | Should -Be 'HV01'
        $result.owner_node | Should -Be 'SIMHV02'
        Should -Invoke Move-ClusterVirtualMachineRole -Times 1 -Exactly -ParameterFilter { $MigrationType -eq 'Live' -and $Wait -eq 120 -and $Node -eq 'SIMHV02' }
    }

    It 'does not move a role already on the node' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Node 'HV01'
        Assert-MatchesContract $result
        $result.moved | Should -BeFalse
        Should -Invoke Move-ClusterVirtualMachineRole -Times 0 -Exactly
    }

    It 'cancels and fails with PsDriver.ClusterMoveTimeout when the move is not done in time' {
        $PsdTest.SlowMove = $true
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Node 'SIMHV02' -TimeoutSeconds 1 } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeLike 'PsDriver.ClusterMoveTimeout*'
        $failure.CategoryInfo.Category | Should -Be 'OperationTimeout'
        Should -Invoke Move-ClusterVirtualMachineRole -Times 1 -Exactly -ParameterFilter { $Cancel }
    }

    It 'fails with PsDriver.ClusterMoveFailed when the cluster refuses' {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Node 'HV03' } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeLike 'PsDriver.ClusterMoveFailed*'
        $failure.Exception.Message | Should -BeLike '*not Up*'
    }

    It 'fails with PsDriver.ClusterGroupNotFound for a VM that is no clustered role' {
        $failure = { & $script:ScriptPath -Name 'instance-00000009' -Node 'SIMHV02' } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeLike 'PsDriver.ClusterGroupNotFound*'
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
