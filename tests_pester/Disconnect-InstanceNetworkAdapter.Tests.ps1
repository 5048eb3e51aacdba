BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Disconnect-InstanceNetworkAdapter')
}

BeforeAll {
    # State shared with the mocks (see Remove-InstanceNetworkAdapter.Tests.ps1).
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Disconnect-InstanceNetworkAdapter'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Disconnect-InstanceNetworkAdapter'
    Import-PsDriverModule

    Add-FakeNicCommandStub
    Add-CommandStub -Name 'Disconnect-VMNetworkAdapter' -Parameter @('VMNetworkAdapter')
}

AfterAll {
    Remove-CommandStub
}

Describe 'Disconnect-InstanceNetworkAdapter' {
    BeforeEach {
        # Open vSwitch: the helpers run the native ovs-vsctl; here they are stand-ins.
        Mock Resolve-PsDriverOvsVsctl { 'C:\Program Files\Open vSwitch\bin\ovs-vsctl.exe' }
        Mock Add-PsDriverOvsPort { }
        Mock Remove-PsDriverOvsPort { }
        Register-FakeNicHost
        $PsdTest.Adapters = @(
            New-FakeAdapter -Name $PsdTest.Port1 -Mac 'FA163E010203' -SwitchName 'br-int' -Vlan 10
            New-FakeAdapter -Name $PsdTest.Port2 -Mac 'FA163E0A0B0C' -SwitchName 'external'
        )
        Mock Disconnect-VMNetworkAdapter {
            foreach ($adapter in @($VMNetworkAdapter)) {
                $adapter.SwitchName = ''
            }
        } -RemoveParameterType 'VMNetworkAdapter'
    }

    It 'disconnects the adapters on the switch and keeps them on the VM' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id @($PsdTest.Port1) -SwitchName 'br-int'
        Assert-MatchesContract $result
        $result.vm_found | Should -BeTrue
        @($result.disconnected) | Should -Be @($PsdTest.Port1)
        @($PsdTest.Adapters).Count | Should -Be 2
        $PsdTest.Adapters[0].SwitchName | Should -Be ''
        $PsdTest.Adapters[0].MacAddress | Should -Be 'FA163E010203'
        $PsdTest.Vlans[$PsdTest.Adapters[0].Id] | Should -Be 10
        Should -Invoke Remove-VMNetworkAdapter -Times 0 -Exactly
    }

    It 'leaves an adapter on another switch alone and reports it' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id @($PsdTest.Port2) -SwitchName 'br-int'
        Assert-MatchesContract $result
        @($result.not_connected) | Should -Be @($PsdTest.Port2)
        $PsdTest.Adapters[1].SwitchName | Should -Be 'external'
        Should -Invoke Disconnect-VMNetworkAdapter -Times 0 -Exactly
    }

    It 'is safe to repeat: missing adapters and a missing VM are not errors' {
        $null = & $script:ScriptPath -Name 'instance-00000001' -Id @($PsdTest.Port1) -SwitchName 'br-int'
        $again = & $script:ScriptPath -Name 'instance-00000001' -Id @($PsdTest.Port1, $PsdTest.Port3) -SwitchName 'br-int'
        Assert-MatchesContract $again
        @($again.not_connected) | Should -Be @($PsdTest.Port1)
        @($again.missing) | Should -Be @($PsdTest.Port3)
        $gone = & $script:ScriptPath -Name 'instance-00000099' -Id @($PsdTest.Port1) -SwitchName 'br-int'
        Assert-MatchesContract $gone
        $gone.vm_found | Should -BeFalse
        Should -Invoke Disconnect-VMNetworkAdapter -Times 1 -Exactly
    }

    It 'reports Hyper-V refusing the change as InvalidOperation' {
        Mock Disconnect-VMNetworkAdapter { throw 'The operation failed.' } -RemoveParameterType 'VMNetworkAdapter'
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Id @($PsdTest.Port1) -SwitchName 'br-int' } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NicOperationFailed'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
    }

    It 'changes nothing with -WhatIf' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id @($PsdTest.Port1) -SwitchName 'br-int' -WhatIf
        Assert-MatchesContract $result
        @($result.disconnected).Count | Should -Be 0
        $PsdTest.Adapters[0].SwitchName | Should -Be 'br-int'
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $PsdTest.Adapters = @(New-FakeAdapter -Name @($params.Id)[0] -Mac 'FA163E010203' -SwitchName $params.SwitchName)
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
        @($result.disconnected).Count | Should -Be 1
    }

    It 'deletes the OvsPortId ports, also when the VM is gone' {
        $result = & $script:ScriptPath -Name 'instance-gone' -Id @() -OvsPortId @('p1', 'p2')
        Assert-MatchesContract $result
        $result.ovs_ports | Should -Be @('p1', 'p2')
        Should -Invoke Remove-PsDriverOvsPort -Times 2 -Exactly
    }

    It 'refuses port ids to disconnect without SwitchName' {
        { & $script:ScriptPath -Name 'instance-00000001' -Id @('p1') } | Should -Throw -ErrorId 'PsDriver.InvalidNicSpec*'
    }
}
