BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Add-InstanceNetworkAdapter')
}

BeforeAll {
    # State shared with the mocks. Mock bodies run inside the tested script's scopes (its
    # $script: scope and StrictMode), so they reach it through one unqualified, uniquely
    # named variable; $script: here is this file's scope.
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Add-InstanceNetworkAdapter'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Add-InstanceNetworkAdapter'
    Import-PsDriverModule

    Add-FakeNicCommandStub
}

AfterAll {
    Remove-CommandStub
}

Describe 'Add-InstanceNetworkAdapter' {
    BeforeEach {
        # Open vSwitch: the helpers run the native ovs-vsctl; here they are stand-ins.
        Mock Resolve-PsDriverOvsVsctl { 'C:\Program Files\Open vSwitch\bin\ovs-vsctl.exe' }
        Mock Add-PsDriverOvsPort { }
        Mock Remove-PsDriverOvsPort { }
        Register-FakeNicHost
    }

    It 'adds an adapter named after the port with its MAC, switch and VLAN' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress 'fa:16:3e:01:02:03' `
            -SwitchName 'br-int' -VlanId 101
        Assert-MatchesContract $result
        $result.name | Should -Be 'instance-00000001'
        $result.created | Should -BeTrue
        $result.nic.name | Should -Be $PsdTest.Port1
        $result.nic.mac | Should -BeExactly 'fa:16:3e:01:02:03'
        $result.nic.switch | Should -Be 'br-int'
        $result.nic.vlan | Should -Be 101
        $result.nic.connected | Should -BeTrue
        Should -Invoke Add-VMNetworkAdapter -Times 1 -Exactly -ParameterFilter {
            $Name -eq $PsdTest.Port1 -and $StaticMacAddress -eq 'FA163E010203' -and $SwitchName -eq 'br-int'
        }
        Should -Invoke Set-VMNetworkAdapterVlan -Times 1 -Exactly -ParameterFilter { $Access -and $VlanId -eq 101 }
    }

    It 'leaves a new adapter disconnected and untagged without SwitchName and VlanId' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress 'FA-16-3E-01-02-03'
        Assert-MatchesContract $result
        $result.nic.connected | Should -BeFalse
        $result.nic.switch | Should -BeNullOrEmpty
        $result.nic.vlan | Should -BeNullOrEmpty
        Should -Invoke Add-VMNetworkAdapter -Times 1 -Exactly -ParameterFilter { [string]::IsNullOrEmpty($SwitchName) }
        Should -Invoke Set-VMNetworkAdapterVlan -Times 0 -Exactly
    }

    It 'accepts the MAC address as <Mac>' -ForEach @(
        @{ Mac = 'fa:16:3e:01:02:03' }
        @{ Mac = 'FA-16-3E-01-02-03' }
        @{ Mac = 'fa163e010203' }
    ) {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress $Mac
        $result.nic.mac | Should -BeExactly 'fa:16:3e:01:02:03'
    }

    It 'refuses <Mac> as a MAC address' -ForEach @(
        @{ Mac = 'fa:16:3e:01:02' }
        @{ Mac = 'not-a-mac' }
        @{ Mac = 'fa:16:3e:01:02:0g' }
    ) {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress $Mac } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.InvalidMacAddress'
        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        Should -Invoke Add-VMNetworkAdapter -Times 0 -Exactly
    }

    It 'refuses to hot-add to a running generation 1 VM' {
        $PsdTest.Generation = 1
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress 'fa:16:3e:01:02:03' } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NicHotplugUnsupported'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $failure.Exception.Message | Should -Match 'generation 1'
        Should -Invoke Add-VMNetworkAdapter -Times 0 -Exactly
    }

    It 'adds to a generation 1 VM that is off' {
        $PsdTest.Generation = 1
        $PsdTest.State = 'Off'
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress 'fa:16:3e:01:02:03'
        $result.created | Should -BeTrue
    }

    It 'brings an existing adapter in line instead of adding a second one' {
        $PsdTest.Adapters = @(New-FakeAdapter -Name $PsdTest.Port1 -Mac 'FA163E010203' -SwitchName 'external')
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress 'fa:16:3e:01:02:03' -SwitchName 'br-int'
        Assert-MatchesContract $result
        $result.created | Should -BeFalse
        $result.nic.switch | Should -Be 'br-int'
        @($PsdTest.Adapters).Count | Should -Be 1
        Should -Invoke Add-VMNetworkAdapter -Times 0 -Exactly
        Should -Invoke Set-VMNetworkAdapter -Times 0 -Exactly
        Should -Invoke Connect-VMNetworkAdapter -Times 1 -Exactly
    }

    It 'reports Hyper-V refusing a MAC change on a running VM as InvalidOperation' {
        $PsdTest.Adapters = @(New-FakeAdapter -Name $PsdTest.Port1 -Mac 'FA163E999999' -SwitchName 'br-int')
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress 'fa:16:3e:01:02:03' } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NicOperationFailed'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $failure.Exception.Message | Should -Match 'cannot be changed'
    }

    It 'reports Hyper-V refusing the new adapter as InvalidOperation' {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress 'fa:16:3e:01:02:03' -SwitchName 'nope' } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NicOperationFailed'
        $failure.Exception.Message | Should -Match "Cannot find virtual switch 'nope'"
    }

    It 'fails with ObjectNotFound for a missing VM' {
        $failure = { & $script:ScriptPath -Name 'instance-00000099' -Id $PsdTest.Port1 -MacAddress 'fa:16:3e:01:02:03' } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'changes nothing with -WhatIf' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress 'fa:16:3e:01:02:03' -WhatIf
        Assert-MatchesContract $result
        $result.created | Should -BeFalse
        $result.nic | Should -BeNullOrEmpty
        Should -Invoke Add-VMNetworkAdapter -Times 0 -Exactly
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }

    It 'makes the adapter an Open vSwitch port with OvsBridge' {
        $PsdTest.Adapters = @()
        $result = & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress 'fa:16:3e:01:02:03' -SwitchName 'br-int' -OvsBridge 'br-int' -InstanceUuid '6f1b3c2a-8d4e-4f5a-9b6c-7d8e9f0a1b2c'
        Assert-MatchesContract $result
        $result.ovs_bridge | Should -Be 'br-int'
        Should -Invoke Add-PsDriverOvsPort -Times 1 -Exactly -ParameterFilter { $Bridge -ceq 'br-int' -and $Port -ceq $PsdTest.Port1 }
    }

    It 'removes the adapter it added when ovs-vsctl fails' {
        $PsdTest.Adapters = @()
        Mock Add-PsDriverOvsPort { throw 'ovs-vsctl: no bridge named br-x' }
        { & $script:ScriptPath -Name 'instance-00000001' -Id $PsdTest.Port1 -MacAddress 'fa:16:3e:01:02:03' -OvsBridge 'br-x' -InstanceUuid '6f1b3c2a-8d4e-4f5a-9b6c-7d8e9f0a1b2c' } | Should -Throw '*no bridge named br-x*'
        Should -Invoke Remove-VMNetworkAdapter -Times 1 -Exactly
    }
}
