BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Get-InstanceSummary')
}

BeforeAll {
    # State shared with the mocks. Mock bodies run inside the tested script's scopes (its
    # $script: scope and StrictMode), so they reach it through one unqualified, uniquely
    # named variable; $script: here is this file's scope.
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Get-InstanceSummary'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Get-InstanceSummary'
    Import-PsDriverModule

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'

    function New-FakeVM {
        param(
            [string]$Name,
            [AllowNull()]
            [object]$Notes,
            [string]$State = 'Running',
            [long]$MemoryAssigned = 2GB,
            [double]$UptimeSeconds = 125.9,
            [int]$Generation = 2
        )
        [pscustomobject]@{
            Name           = $Name
            Id             = [guid]::NewGuid()
            Notes          = $Notes
            State          = $State
            ProcessorCount = 2
            MemoryAssigned = $MemoryAssigned
            MemoryStartup  = 2GB
            Uptime         = [timespan]::FromSeconds($UptimeSeconds)
            Generation     = $Generation
        }
    }
}

AfterAll {
    Remove-CommandStub
}

Describe 'Get-InstanceSummary' {
    BeforeEach {
        $PsdTest.Uuid = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f'
        $PsdTest.FakeVMs = @(
            New-FakeVM -Name 'instance-00000001' -Notes $PsdTest.Uuid
            New-FakeVM -Name 'admin-vm' -Notes 'build server, do not touch' -State 'Off' -MemoryAssigned 0 -UptimeSeconds 0 -Generation 1
            New-FakeVM -Name 'no-notes' -Notes $null -State 'Saved'
        )
        Mock Get-VM { $PsdTest.FakeVMs }
    }

    It 'lists every VM with one Get-VM call' {
        $result = & $script:ScriptPath
        Assert-MatchesContract $result
        $result.vms.Count | Should -Be 3
        Should -Invoke Get-VM -Times 1 -Exactly
    }

    It 'reports the fields of a Nova VM' {
        $vm = (& $script:ScriptPath).vms[0]
        $vm.name | Should -Be 'instance-00000001'
        $vm.instance_uuid | Should -Be $PsdTest.Uuid
        $vm.vm_id | Should -Be $PsdTest.FakeVMs[0].Id.ToString()
        $vm.state | Should -Be 'Running'
        $vm.vcpus | Should -Be 2
        $vm.memory_mb | Should -Be 2048
        $vm.memory_startup_mb | Should -Be 2048
        $vm.uptime_seconds | Should -Be 125
        $vm.generation | Should -Be 2
    }

    It 'gives a null instance_uuid to VMs without a UUID in their notes' {
        $vms = (& $script:ScriptPath).vms
        $vms[1].instance_uuid | Should -BeNullOrEmpty
        $vms[1].state | Should -Be 'Off'
        $vms[1].memory_mb | Should -Be 0
        $vms[2].instance_uuid | Should -BeNullOrEmpty
    }

    It 'keeps only Nova VMs with -NovaOnly' {
        $result = & $script:ScriptPath -NovaOnly
        Assert-MatchesContract $result
        @($result.vms).Count | Should -Be 1
        $result.vms[0].name | Should -Be 'instance-00000001'
    }

    It 'returns an empty list for a host without VMs' {
        $PsdTest.FakeVMs = @()
        $result = & $script:ScriptPath
        Assert-MatchesContract $result
        @($result.vms).Count | Should -Be 0
        ConvertTo-Json -InputObject $result -Depth 5 -Compress | Should -Be '{"vms":[]}'
    }

    It 'reads the UUID from notes written as <Label>' -ForEach @(
        @{ Label = 'a bare UUID'; Notes = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f'; Expected = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f' }
        @{ Label = 'upper case in braces'; Notes = '{4F5C9A1E-2B7D-4C3E-9F10-6A8B2C4D5E6F}'; Expected = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f' }
        @{ Label = 'a labelled first line'; Notes = 'openstack-instance-uuid: 4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f'; Expected = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f' }
        @{ Label = 'several lines'; Notes = "  4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f `r`nCreated by OpenStack"; Expected = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f' }
        @{ Label = 'a UUID on the second line only'; Notes = "hello`n4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f"; Expected = $null }
        @{ Label = 'a UUID inside text'; Notes = 'vm 4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f'; Expected = $null }
        @{ Label = 'a UUID without dashes'; Notes = '4f5c9a1e2b7d4c3e9f106a8b2c4d5e6f'; Expected = $null }
        @{ Label = 'blank'; Notes = '   '; Expected = $null }
    ) {
        $PsdTest.FakeVMs = @(New-FakeVM -Name 'vm' -Notes $Notes)
        $result = & $script:ScriptPath
        Assert-MatchesContract $result
        if ($null -eq $Expected) {
            $result.vms[0].instance_uuid | Should -BeNullOrEmpty
        }
        else {
            $result.vms[0].instance_uuid | Should -BeExactly $Expected
        }
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
