BeforeDiscovery {
    $contractFile = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts/Add-InstanceNetworkAdapter.contract.json'
    $exampleIndex = 0
    $Examples = @((Get-Content -LiteralPath $contractFile -Raw | ConvertFrom-Json -AsHashtable)['examples'] | ForEach-Object {
            $exampleIndex++
            @{ Index = $exampleIndex; Example = $_ }
        })
}

BeforeAll {
    # State shared with the mocks. Mock bodies run inside the tested script's scopes (its
    # $script: scope and StrictMode), so they reach it through one unqualified, uniquely
    # named variable; $script: here is this file's scope.
    $script:PsdTest = @{}
    $script:ScriptsDir = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts'
    $script:ScriptPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Add-InstanceNetworkAdapter.ps1'
    $contractPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Add-InstanceNetworkAdapter.contract.json'
    $script:ResultSchema = (Get-Content -LiteralPath $contractPath -Raw | ConvertFrom-Json -AsHashtable)['result'] |
        ConvertTo-Json -Depth 100
    $script:Stubs = [System.Collections.Generic.List[string]]::new()

    # Stand-ins for cmdlets missing on this machine (no Hyper-V module), so that Mock can replace them.
    # A leading '-' declares a switch.
    function Add-CommandStub {
        param(
            [Parameter(Mandatory)]
            [string]$Name,

            [string[]]$Parameter = @()
        )
        if (Get-Command -Name $Name -ErrorAction SilentlyContinue) {
            return
        }
        $declared = @($Parameter | ForEach-Object {
                if ($_.StartsWith('-')) {
                    '[switch]$' + $_.Substring(1)
                }
                else {
                    '$' + $_
                }
            }) -join ', '
        $definition = '[CmdletBinding(SupportsShouldProcess)] param(' + $declared + ')'
        Set-Item -Path ('function:global:' + $Name) -Value ([scriptblock]::Create($definition))
        $script:Stubs.Add($Name)
    }

    # Exactly one result object, valid against the contract's JSON Schema.
    function Assert-MatchesContract {
        param(
            [AllowNull()]
            [object]$Result
        )
        @($Result).Count | Should -Be 1
        $json = ConvertTo-Json -InputObject $Result -Depth 20
        $problems = $null
        $valid = Test-Json -Json $json -Schema $script:ResultSchema -ErrorVariable problems -ErrorAction SilentlyContinue
        $valid | Should -BeTrue -Because ('the result must match the contract: ' + ($problems -join '; ') + "`n" + $json)
    }

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'
    Add-CommandStub -Name 'Get-VMNetworkAdapter' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMNetworkAdapterVlan' -Parameter 'VM'
    Add-CommandStub -Name 'Add-VMNetworkAdapter' -Parameter 'VM', 'Name', 'StaticMacAddress', 'SwitchName', '-Passthru'
    Add-CommandStub -Name 'Set-VMNetworkAdapter' -Parameter 'VMNetworkAdapter', 'StaticMacAddress'
    Add-CommandStub -Name 'Connect-VMNetworkAdapter' -Parameter 'VMNetworkAdapter', 'SwitchName'
    Add-CommandStub -Name 'Set-VMNetworkAdapterVlan' -Parameter 'VMNetworkAdapter', '-Access', 'VlanId', '-Untagged'
    Add-CommandStub -Name 'Remove-VMNetworkAdapter' -Parameter 'VMNetworkAdapter'

    $PsdTest.Port1 = '3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b'
    $PsdTest.Port2 = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d'
    $PsdTest.Port3 = '11111111-2222-4333-8444-555555555555'

    function New-FakeAdapter {
        param(
            [string]$Name,
            [string]$Mac,
            [string]$SwitchName = '',
            [int]$Vlan = 0
        )
        $PsdTest.AdapterKey++
        $adapter = [pscustomobject]@{
            Name                     = $Name
            Id                       = "Microsoft:0B9A6F3C\$($PsdTest.AdapterKey)"
            MacAddress               = $Mac
            SwitchName               = $SwitchName
            DynamicMacAddressEnabled = $false
        }
        $PsdTest.Vlans[$adapter.Id] = $Vlan
        $adapter
    }
}

AfterAll {
    foreach ($stub in $script:Stubs) {
        Remove-Item -Path ('function:global:' + $stub) -ErrorAction SilentlyContinue
    }
}

Describe 'Add-InstanceNetworkAdapter' {
    BeforeEach {
        $PsdTest.AdapterKey = 0
        $PsdTest.Vlans = @{}
        $PsdTest.State = 'Running'
        $PsdTest.Generation = 2
        $PsdTest.Switches = @('br-int', 'external')
        $PsdTest.Adapters = @()
        Mock Get-VM {
            if ($null -ne $Name -and 'instance-00000001' -notlike @($Name)[0]) {
                return
            }
            [pscustomobject]@{
                Name       = 'instance-00000001'
                Id         = [guid]'0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b'
                State      = $PsdTest.State
                Generation = $PsdTest.Generation
            }
        }
        Mock Get-VMNetworkAdapter { @($PsdTest.Adapters) } -RemoveParameterType 'VM'
        Mock Get-VMNetworkAdapterVlan {
            foreach ($adapter in @($PsdTest.Adapters)) {
                $vlan = [int]$PsdTest.Vlans[$adapter.Id]
                $mode = 'Untagged'
                if ($vlan -gt 0) {
                    $mode = 'Access'
                }
                [pscustomobject]@{ ParentAdapter = $adapter; OperationMode = $mode; AccessVlanId = $vlan }
            }
        } -RemoveParameterType 'VM'
        Mock Add-VMNetworkAdapter {
            if (-not [string]::IsNullOrEmpty($SwitchName) -and $SwitchName -notin $PsdTest.Switches) {
                throw "Cannot find virtual switch '$SwitchName'."
            }
            $adapter = New-FakeAdapter -Name $Name -Mac $StaticMacAddress -SwitchName $SwitchName
            $PsdTest.Adapters = @($PsdTest.Adapters) + $adapter
            if ($Passthru) {
                $adapter
            }
        } -RemoveParameterType 'VM'
        Mock Set-VMNetworkAdapter {
            if ($PsdTest.State -ne 'Off') {
                throw 'The MAC address of a running virtual machine cannot be changed.'
            }
            @($VMNetworkAdapter)[0].MacAddress = $StaticMacAddress
            @($VMNetworkAdapter)[0].DynamicMacAddressEnabled = $false
        } -RemoveParameterType 'VMNetworkAdapter'
        Mock Connect-VMNetworkAdapter { @($VMNetworkAdapter)[0].SwitchName = $SwitchName } -RemoveParameterType 'VMNetworkAdapter'
        Mock Set-VMNetworkAdapterVlan {
            if ($Untagged) {
                $PsdTest.Vlans[@($VMNetworkAdapter)[0].Id] = 0
            }
            else {
                $PsdTest.Vlans[@($VMNetworkAdapter)[0].Id] = [int]$VlanId
            }
        } -RemoveParameterType 'VMNetworkAdapter'
        Mock Remove-VMNetworkAdapter {
            $ids = @($VMNetworkAdapter | ForEach-Object { $_.Id })
            $PsdTest.Adapters = @($PsdTest.Adapters | Where-Object { $_.Id -notin $ids })
        } -RemoveParameterType 'VMNetworkAdapter'
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
}
