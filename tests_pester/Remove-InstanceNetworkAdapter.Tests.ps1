BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Remove-InstanceNetworkAdapter')
}

BeforeAll {
    # State shared with the mocks. Mock bodies run inside the tested script's scopes (its
    # $script: scope and StrictMode), so they reach it through one unqualified, uniquely
    # named variable; $script: here is this file's scope.
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Remove-InstanceNetworkAdapter'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Remove-InstanceNetworkAdapter'
    Import-PsDriverModule

    Add-FakeNicCommandStub
}

AfterAll {
    Remove-CommandStub
}

Describe 'Remove-InstanceNetworkAdapter' {
    BeforeEach {
        # Open vSwitch: the helpers run the native ovs-vsctl; here they are stand-ins.
        Mock Resolve-PsDriverOvsVsctl { 'C:\Program Files\Open vSwitch\bin\ovs-vsctl.exe' }
        Mock Add-PsDriverOvsPort { }
        Mock Remove-PsDriverOvsPort { }
        Register-FakeNicHost
        $PsdTest.Adapters = @(
            New-FakeAdapter -Name $PsdTest.Port1 -Mac 'FA163E010203' -SwitchName 'br-int'
            New-FakeAdapter -Name $PsdTest.Port2 -Mac 'FA163E0A0B0C' -SwitchName 'br-int'
        )
    }

    It 'removes the adapter named after the port' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1
        Assert-MatchesContract $result
        $result.name | Should -Be 'instance-00000001'
        $result.id | Should -Be $PsdTest.Port1
        $result.removed | Should -BeTrue
        @($PsdTest.Adapters).Count | Should -Be 1
        $PsdTest.Adapters[0].Name | Should -Be $PsdTest.Port2
    }

    It 'does nothing when the adapter is already gone' {
        $PsdTest.Generation = 1
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port3
        Assert-MatchesContract $result
        $result.removed | Should -BeFalse
        @($PsdTest.Adapters).Count | Should -Be 2
        Should -Invoke Remove-VMNetworkAdapter -Times 0 -Exactly
    }

    It 'refuses to hot-remove from a running generation 1 VM' {
        $PsdTest.Generation = 1
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NicHotplugUnsupported'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
        @($PsdTest.Adapters).Count | Should -Be 2
    }

    It 'removes from a generation 1 VM that is off' {
        $PsdTest.Generation = 1
        $PsdTest.State = 'Off'
        (& $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1).removed | Should -BeTrue
    }

    It 'reports Hyper-V refusing the removal as InvalidOperation' {
        Mock Remove-VMNetworkAdapter { throw 'The operation failed.' } -RemoveParameterType 'VMNetworkAdapter'
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NicOperationFailed'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
    }

    It 'fails with ObjectNotFound for a missing VM' {
        $failure = { & $script:ScriptPath -Name 'instance-00000099' -Id $PsdTest.Port1 } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'changes nothing with -WhatIf' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -WhatIf
        Assert-MatchesContract $result
        $result.removed | Should -BeFalse
        @($PsdTest.Adapters).Count | Should -Be 2
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
        $result.removed | Should -BeTrue
    }

    It 'deletes the Open vSwitch port with OvsPort' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -OvsPort
        Assert-MatchesContract $result
        $result.ovs_port_removed | Should -BeTrue
        Should -Invoke Remove-PsDriverOvsPort -Times 1 -Exactly -ParameterFilter { $Port -ceq $PsdTest.Port1 }
    }
}
