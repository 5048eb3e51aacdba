BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Add-InstanceClusterRole')
}

BeforeAll {
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'ClusterTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Add-InstanceClusterRole'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Add-InstanceClusterRole'
    Import-PsDriverModule
    Add-FakeClusterCommandStub
}

AfterAll {
    Remove-CommandStub
}

Describe 'Add-InstanceClusterRole' {
    BeforeEach {
        $PsdTest.NoCluster = $false
        $PsdTest.Nodes = [ordered]@{ HV01 = 'Up'; HV02 = 'Up' }
        $PsdTest.Vms = @('instance-00000001')
        $PsdTest.Groups = @()
        Register-FakeClusterHost
    }

    It 'adds the VM as a role named after it and sets the failover policy' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -MaxFailoverCount 2 -FailoverPeriod 12 -AutoFailback $true
        Assert-MatchesContract $result
        $result.added | Should -BeTrue
        $result.name | Should -Be 'instance-00000001'
        $result.failover_threshold | Should -Be 2
        $result.failover_period | Should -Be 12
        $result.auto_failback | Should -BeTrue
        $result.persistent_state | Should -BeTrue
        Should -Invoke Add-ClusterVirtualMachineRole -Times 1 -Exactly -ParameterFilter { $VMName -eq 'instance-00000001' -and $Name -eq 'instance-00000001' }
        $PsdTest.Groups[0].AutoFailbackType | Should -Be 1
    }

    It 'sets AutoFailbackType Prevent when AutoFailback is false' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -AutoFailback $false
        $result.auto_failback | Should -BeFalse
        $PsdTest.Groups[0].AutoFailbackType | Should -Be 0
    }

    It 'keeps an existing role and only sets its policy again' {
        $PsdTest.Groups = @(New-FakeClusterGroup -Name 'instance-00000001')
        $result = & $script:ScriptPath -Name 'instance-00000001' -MaxFailoverCount 3
        Assert-MatchesContract $result
        $result.added | Should -BeFalse
        $result.failover_threshold | Should -Be 3
        Should -Invoke Add-ClusterVirtualMachineRole -Times 0 -Exactly
    }

    It 'removes the role it created when the policy cannot be set' {
        Register-TestMock -CommandName 'Add-ClusterVirtualMachineRole' -MockWith {
            $group = New-FakeClusterGroup -Name $Name
            $group | Add-Member -MemberType ScriptProperty -Name FailoverThreshold -Value { 1 } -SecondValue { throw 'access denied' } -Force
            $PsdTest.Groups = @($PsdTest.Groups) + $group
            $group
        }
        { & $script:ScriptPath -Name 'instance-00000001' } | Should -Throw '*access denied*'
        Should -Invoke Remove-ClusterGroup -Times 1 -Exactly -ParameterFilter { $RemoveResources -and $Force }
        @($PsdTest.Groups).Count | Should -Be 0
    }

    It 'fails with ObjectNotFound / PsDriver.VMNotFound for a missing VM' {
        $failure = { & $script:ScriptPath -Name 'instance-00000009' } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeLike 'PsDriver.VMNotFound*'
        Should -Invoke Add-ClusterVirtualMachineRole -Times 0 -Exactly
    }

    It 'fails with PsDriver.ClusterUnavailable off a cluster' {
        $PsdTest.NoCluster = $true
        $failure = { & $script:ScriptPath -Name 'instance-00000001' } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeLike 'PsDriver.ClusterUnavailable*'
    }

    It 'refuses a MaxFailoverCount of <Value>' -ForEach @(@{ Value = 0 }, @{ Value = -1 }) {
        { & $script:ScriptPath -Name 'instance-00000001' -MaxFailoverCount $Value } | Should -Throw
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
