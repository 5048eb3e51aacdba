BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Connect-InstanceNetworkAdapter')
}

BeforeAll {
    # State shared with the mocks. Mock bodies run inside the tested script's scopes (its
    # $script: scope and StrictMode), so they reach it through one unqualified, uniquely
    # named variable; $script: here is this file's scope.
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Connect-InstanceNetworkAdapter'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Connect-InstanceNetworkAdapter'
    Import-PsDriverModule

    Add-FakeNicCommandStub
}

AfterAll {
    Remove-CommandStub
}

Describe 'Connect-InstanceNetworkAdapter' {
    BeforeEach {
        # Open vSwitch: the helpers run the native ovs-vsctl; here they are stand-ins.
        Mock Resolve-PsDriverOvsVsctl { 'C:\Program Files\Open vSwitch\bin\ovs-vsctl.exe' }
        Mock Add-PsDriverOvsPort { }
        Mock Remove-PsDriverOvsPort { }
        Register-FakeNicHost
    }

    It 'adds missing adapters and fixes existing ones in one call' {
        $PsdTest.Adapters = @(
            New-FakeAdapter -Name $PsdTest.Port1 -Mac 'FA163E010203' -SwitchName 'br-int' -Vlan 101
            New-FakeAdapter -Name $PsdTest.Port2 -Mac 'FA163E0A0B0C' -SwitchName 'external' -Vlan 7
        )
        $nics = @(
            [pscustomobject]@{ id = $PsdTest.Port1; mac = 'fa:16:3e:01:02:03'; switch = 'br-int'; vlan = 101 }
            [pscustomobject]@{ id = $PsdTest.Port2; mac = 'fa:16:3e:0a:0b:0c'; switch = 'br-int'; vlan = 102 }
            [pscustomobject]@{ id = $PsdTest.Port3; mac = 'fa:16:3e:55:55:55'; switch = 'br-int'; vlan = 103 }
        )
        $result = & $script:ScriptPath -Name 'instance-00000001' -Nics $nics
        Assert-MatchesContract $result
        $result.created | Should -Be @($PsdTest.Port3)
        $result.updated | Should -Be @($PsdTest.Port2)
        $result.nics.Count | Should -Be 3
        $result.nics[0].name | Should -Be $PsdTest.Port1
        $result.nics[1].switch | Should -Be 'br-int'
        $result.nics[1].vlan | Should -Be 102
        $result.nics[2].name | Should -Be $PsdTest.Port3
        $result.nics[2].mac | Should -BeExactly 'fa:16:3e:55:55:55'
        $result.nics[2].vlan | Should -Be 103
        Should -Invoke Get-VMNetworkAdapter -Times 2 -Exactly
        Should -Invoke Add-VMNetworkAdapter -Times 1 -Exactly
        Should -Invoke Connect-VMNetworkAdapter -Times 1 -Exactly
        Should -Invoke Set-VMNetworkAdapter -Times 0 -Exactly
    }

    It 'changes nothing when every adapter is already right' {
        $PsdTest.Adapters = @(New-FakeAdapter -Name $PsdTest.Port1 -Mac 'FA163E010203' -SwitchName 'br-int' -Vlan 101)
        $result = & $script:ScriptPath -Name 'instance-00000001' -Nics @(
            @{ id = $PsdTest.Port1; mac = 'fa:16:3e:01:02:03'; switch = 'br-int'; vlan = 101 }
        )
        Assert-MatchesContract $result
        @($result.created).Count | Should -Be 0
        @($result.updated).Count | Should -Be 0
        Should -Invoke Add-VMNetworkAdapter -Times 0 -Exactly
        Should -Invoke Connect-VMNetworkAdapter -Times 0 -Exactly
        Should -Invoke Set-VMNetworkAdapterVlan -Times 0 -Exactly
    }

    It 'reads entries decoded as Windows PowerShell 5.1 dictionaries and ordered tables' {
        # The bridge's JSON decoding yields Dictionary[string, object] on 5.1 (case-sensitive
        # keys) and OrderedDictionary on 7; both must be read alike, whatever the key case.
        $PsdTest.Adapters = @(New-FakeAdapter -Name $PsdTest.Port1 -Mac 'FA163E010203' -SwitchName 'br-int' -Vlan 101)
        $first = [System.Collections.Generic.Dictionary[string, object]]::new()
        $first['Id'] = $PsdTest.Port1
        $first['MAC'] = 'fa:16:3e:01:02:03'
        $first['switch'] = 'br-int'
        $first['Vlan'] = 101
        $second = [ordered]@{ id = $PsdTest.Port2; mac = 'fa:16:3e:0a:0b:0c'; switch = 'br-int' }
        $result = & $script:ScriptPath -Name 'instance-00000001' -Nics @($first, $second)
        Assert-MatchesContract $result
        $result.created | Should -Be @($PsdTest.Port2)
        @($result.updated).Count | Should -Be 0
        $result.nics[0].vlan | Should -Be 101
        $result.nics[1].switch | Should -Be 'br-int'
    }

    It 'leaves switch and VLAN alone when they are null or absent, and untags with vlan 0' {
        $PsdTest.Adapters = @(
            New-FakeAdapter -Name $PsdTest.Port1 -Mac 'FA163E010203' -SwitchName 'external' -Vlan 101
            New-FakeAdapter -Name $PsdTest.Port2 -Mac 'FA163E0A0B0C' -SwitchName 'external' -Vlan 7
        )
        $result = & $script:ScriptPath -Name 'instance-00000001' -Nics @(
            @{ id = $PsdTest.Port1; mac = 'fa:16:3e:01:02:03'; switch = $null; vlan = $null }
            @{ id = $PsdTest.Port2; mac = 'fa:16:3e:0a:0b:0c'; vlan = 0 }
        )
        Assert-MatchesContract $result
        $result.nics[0].switch | Should -Be 'external'
        $result.nics[0].vlan | Should -Be 101
        $result.nics[1].vlan | Should -BeNullOrEmpty
        $result.updated | Should -Be @($PsdTest.Port2)
        Should -Invoke Set-VMNetworkAdapterVlan -Times 1 -Exactly -ParameterFilter { $Untagged }
    }

    It 'sets the MAC of an adapter of a VM that is off' {
        $PsdTest.State = 'Off'
        $PsdTest.Adapters = @(New-FakeAdapter -Name $PsdTest.Port1 -Mac '00155D000001')
        $PsdTest.Adapters[0].DynamicMacAddressEnabled = $true
        $result = & $script:ScriptPath -Name 'instance-00000001' -Nics @(@{ id = $PsdTest.Port1; mac = 'fa:16:3e:01:02:03' })
        $result.nics[0].mac | Should -BeExactly 'fa:16:3e:01:02:03'
        $result.updated | Should -Be @($PsdTest.Port1)
    }

    It 'refuses a missing adapter on a running generation 1 VM before changing anything' {
        $PsdTest.Generation = 1
        $PsdTest.Adapters = @(New-FakeAdapter -Name $PsdTest.Port1 -Mac 'FA163E010203' -SwitchName 'external')
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Nics @(
                @{ id = $PsdTest.Port1; mac = 'fa:16:3e:01:02:03'; switch = 'br-int' }
                @{ id = $PsdTest.Port2; mac = 'fa:16:3e:0a:0b:0c' }
            ) } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NicHotplugUnsupported'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
        Should -Invoke Connect-VMNetworkAdapter -Times 0 -Exactly
        Should -Invoke Add-VMNetworkAdapter -Times 0 -Exactly
    }

    It 'reconnects existing adapters of a running generation 1 VM' {
        $PsdTest.Generation = 1
        $PsdTest.Adapters = @(New-FakeAdapter -Name $PsdTest.Port1 -Mac 'FA163E010203' -SwitchName 'external')
        $result = & $script:ScriptPath -Name 'instance-00000001' -Nics @(@{ id = $PsdTest.Port1; mac = 'fa:16:3e:01:02:03'; switch = 'br-int' })
        $result.nics[0].switch | Should -Be 'br-int'
    }

    It 'refuses an invalid entry (<Label>) before looking at the VM' -ForEach @(
        @{ Label = 'no id'; Nic = @{ mac = 'fa:16:3e:01:02:03' } }
        @{ Label = 'bad MAC'; Nic = @{ id = 'port'; mac = 'fa:16' } }
        @{ Label = 'VLAN out of range'; Nic = @{ id = 'port'; mac = 'fa:16:3e:01:02:03'; vlan = 5000 } }
        @{ Label = 'VLAN not a number'; Nic = @{ id = 'port'; mac = 'fa:16:3e:01:02:03'; vlan = 'ten' } }
    ) {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Nics @($Nic) } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.InvalidNicSpec'
        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        Should -Invoke Get-VM -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'accepts an empty list' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Nics @()
        Assert-MatchesContract $result
        ConvertTo-Json -InputObject $result -Depth 5 -Compress |
            Should -Be '{"name":"instance-00000001","nics":[],"created":[],"updated":[]}'
    }

    It 'reports Hyper-V refusing a change as InvalidOperation' {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Nics @(@{ id = $PsdTest.Port1; mac = 'fa:16:3e:01:02:03'; switch = 'nope' }) } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NicOperationFailed'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
    }

    It 'fails with ObjectNotFound for a missing VM' {
        $failure = { & $script:ScriptPath -Name 'instance-00000099' -Nics @(@{ id = $PsdTest.Port1; mac = 'fa:16:3e:01:02:03' }) } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'changes nothing with -WhatIf' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Nics @(@{ id = $PsdTest.Port1; mac = 'fa:16:3e:01:02:03' }) -WhatIf
        Assert-MatchesContract $result
        @($result.nics).Count | Should -Be 0
        Should -Invoke Add-VMNetworkAdapter -Times 0 -Exactly
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
        @($result.nics).Count | Should -Be @($params['Nics']).Count
    }

    It 'makes an ovs_bridge entry an Open vSwitch port with the instance UUID' {
        $PsdTest.Adapters = @()
        $uuid = '6f1b3c2a-8d4e-4f5a-9b6c-7d8e9f0a1b2c'
        $result = & $script:ScriptPath -Name 'instance-00000001' -InstanceUuid $uuid -Nics @(
            @{ id = $PsdTest.Port1; mac = 'fa:16:3e:01:02:03'; switch = 'br-int'; ovs_bridge = 'br-int' }
            @{ id = $PsdTest.Port2; mac = 'fa:16:3e:0a:0b:0c'; switch = 'br-int' }
        )
        Assert-MatchesContract $result
        $result.ovs_ports | Should -Be @($PsdTest.Port1)
        Should -Invoke Add-PsDriverOvsPort -Times 1 -Exactly -ParameterFilter {
            $Bridge -ceq 'br-int' -and $Port -ceq $PsdTest.Port1 -and $MacAddress -ceq 'FA163E010203' -and $InstanceUuid -eq [guid]'6f1b3c2a-8d4e-4f5a-9b6c-7d8e9f0a1b2c'
        }
    }

    It 'refuses an ovs_bridge entry without the instance UUID before changing anything' {
        $PsdTest.Adapters = @()
        { & $script:ScriptPath -Name 'instance-00000001' -Nics @(
                @{ id = $PsdTest.Port1; mac = 'fa:16:3e:01:02:03'; ovs_bridge = 'br-int' }
            ) } | Should -Throw -ErrorId 'PsDriver.InvalidNicSpec*'
        Should -Invoke Add-VMNetworkAdapter -Times 0 -Exactly
        Should -Invoke Add-PsDriverOvsPort -Times 0 -Exactly
    }
}
