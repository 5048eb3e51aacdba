BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Remove-InstanceClusterRole')
}

BeforeAll {
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'ClusterTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Remove-InstanceClusterRole'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Remove-InstanceClusterRole'
    Import-PsDriverModule
    Add-FakeClusterCommandStub
}

AfterAll {
    Remove-CommandStub
}

Describe 'Remove-InstanceClusterRole' {
    BeforeEach {
        $PsdTest.NoCluster = $false
        $PsdTest.Nodes = [ordered]@{ HV01 = 'Up'; HV02 = 'Up' }
        $PsdTest.Vms = @('instance-00000001')
        $PsdTest.Groups = @(New-FakeClusterGroup -Name 'instance-00000001' -Owner 'HV02')
        Register-FakeClusterHost
    }

    It 'removes the role with its resources, without a prompt' {
        $result = & $script:ScriptPath -Name 'instance-00000001'
        Assert-MatchesContract $result
        $result.removed | Should -BeTrue
        $result.owner_node | Should -Be 'HV02'
        Should -Invoke Remove-ClusterGroup -Times 1 -Exactly -ParameterFilter { $RemoveResources -and $Force -and @($Name)[0] -eq 'instance-00000001' }
        @($PsdTest.Groups).Count | Should -Be 0
    }

    It 'is not an error for a VM that is no clustered role' {
        $PsdTest.Groups = @()
        $result = & $script:ScriptPath -Name 'instance-00000001'
        Assert-MatchesContract $result
        $result.removed | Should -BeFalse
        $result.owner_node | Should -BeNullOrEmpty
        Should -Invoke Remove-ClusterGroup -Times 0 -Exactly
    }

    It 'fails with PsDriver.ClusterUnavailable off a cluster' {
        $PsdTest.NoCluster = $true
        $failure = { & $script:ScriptPath -Name 'instance-00000001' } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeLike 'PsDriver.ClusterUnavailable*'
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
