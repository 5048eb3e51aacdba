BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Get-InstanceInfo')
}

BeforeAll {
    # State shared with the mocks. Mock bodies run inside the tested script's scopes (its
    # $script: scope and StrictMode), so they reach it through one unqualified, uniquely
    # named variable; $script: here is this file's scope.
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Get-InstanceInfo'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Get-InstanceInfo'
    Import-PsDriverModule

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VHD' -Parameter 'Path'
    Add-CommandStub -Name 'Get-VMDvdDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMNetworkAdapter' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMNetworkAdapterVlan' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMComPort' -Parameter 'VM'
    Add-CommandStub -Name 'Measure-VM' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMNetworkAdapterAcl' -Parameter 'VMNetworkAdapter'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Get-InstanceInfo' {
    BeforeEach {
        $PsdTest.Uuid = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f'
        $PsdTest.VM = [pscustomobject]@{
            Name                    = 'instance-00000001'
            Id                      = [guid]'0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b'
            Notes                   = "$($PsdTest.Uuid)`r`nmanaged by OpenStack"
            State                   = 'Running'
            ProcessorCount          = 4
            MemoryStartup           = 4GB
            MemoryAssigned          = 3GB
            DynamicMemoryEnabled    = $true
            Uptime                  = [timespan]::FromSeconds(3600.7)
            Generation              = 2
            ResourceMeteringEnabled = $true
        }
        $PsdTest.FakeVMs = @($PsdTest.VM, [pscustomobject]@{ Name = 'instance-000000010'; Id = [guid]::NewGuid() })
        $PsdTest.Adapter1 = [pscustomobject]@{
            Name = '3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b'; Id = 'Microsoft:A\1'; MacAddress = 'FA163E010203'; SwitchName = 'br-int'
        }
        $PsdTest.Adapter2 = [pscustomobject]@{
            Name = 'Network Adapter'; Id = 'Microsoft:A\2'; MacAddress = '000000000000'; SwitchName = ''
        }
        Mock Get-VM -ModuleName PsDriver { @($PsdTest.FakeVMs | Where-Object { $_.Name -like @($Name)[0] }) } -ParameterFilter { $null -ne $Name }
        Mock Get-VMHardDiskDrive {
            [pscustomobject]@{ Path = 'C:\Instances\instance-00000001\root.vhdx'; ControllerType = 'SCSI'; ControllerNumber = 0; ControllerLocation = 0; DiskNumber = $null }
            [pscustomobject]@{ Path = 'Disk 3 2.00 GB Bus 0 Lun 1 Target 0'; ControllerType = 'SCSI'; ControllerNumber = 0; ControllerLocation = 1; DiskNumber = 3 }
            [pscustomobject]@{ Path = 'C:\Instances\instance-00000001\eph0.vhdx'; ControllerType = 'SCSI'; ControllerNumber = 0; ControllerLocation = 2; DiskNumber = $null }
        } -RemoveParameterType 'VM'
        Mock Get-VHD {
            [pscustomobject]@{ VhdFormat = 'VHDX'; VhdType = 'Differencing'; ParentPath = 'C:\Instances\_base\image.vhdx'; Size = 20GB; FileSize = 300MB }
        } -ParameterFilter { $Path -like '*root.vhdx' }
        Mock Get-VHD { throw 'The system cannot find the file specified.' } -ParameterFilter { $Path -like '*eph0.vhdx' }
        Mock Get-VMDvdDrive {
            [pscustomobject]@{ Path = 'C:\Instances\instance-00000001\configdrive.iso'; ControllerType = 'SCSI'; ControllerNumber = 0; ControllerLocation = 3 }
            [pscustomobject]@{ Path = $null; ControllerType = 'SCSI'; ControllerNumber = 0; ControllerLocation = 4 }
        } -RemoveParameterType 'VM'
        Mock Get-VMNetworkAdapter { $PsdTest.Adapter1; $PsdTest.Adapter2 } -RemoveParameterType 'VM'
        Mock Get-VMNetworkAdapterVlan -ModuleName PsDriver {
            [pscustomobject]@{ ParentAdapter = $PsdTest.Adapter1; OperationMode = 'Access'; AccessVlanId = 101 }
            [pscustomobject]@{ ParentAdapter = $PsdTest.Adapter2; OperationMode = 'Untagged'; AccessVlanId = 0 }
        } -RemoveParameterType 'VM'
        Mock Get-VMComPort {
            [pscustomobject]@{ Name = 'COM 1'; Path = "\\.\pipe\$($PsdTest.Uuid)_rw" }
            [pscustomobject]@{ Name = 'COM 2'; Path = '' }
        } -RemoveParameterType 'VM'
        # The documented properties of the report (AvgCPU, AvgRAM, ... are only its table headings).
        Mock Measure-VM {
            [pscustomobject]@{
                AverageProcessorUsage = 1200; AverageMemoryUsage = 2048; MinimumMemoryUsage = 1024
                MaximumMemoryUsage = 3072; TotalDiskAllocation = 20480
                AggregatedDiskDataRead = 512; AggregatedDiskDataWritten = 256; AggregatedAverageNormalizedIOPS = 40
                MeteringDuration = [timespan]::FromMinutes(90)
                NetworkMeteredTrafficReport = @(
                    [pscustomobject]@{ Direction = 'Inbound'; TotalTraffic = 10 }
                    [pscustomobject]@{ Direction = 'Outbound'; TotalTraffic = 7 }
                    [pscustomobject]@{ Direction = 'Inbound'; TotalTraffic = 5 }
                    [pscustomobject]@{ Direction = 'Both'; TotalTraffic = 1000 }
                )
                HardDiskMetrics = @(
                    [pscustomobject]@{
                        VirtualHardDisk = [pscustomobject]@{ Path = 'C:\Instances\instance-00000001\root.vhdx' }
                        DataRead = 500; DataWritten = 200; NormalizedIOCount = 64000; AverageNormalizedIOPS = 40
                    }
                    [pscustomobject]@{
                        VirtualHardDisk = [pscustomobject]@{ Path = 'C:\Instances\instance-00000001\eph0.vhdx' }
                        DataRead = 12; DataWritten = 56; NormalizedIOCount = 900; AverageNormalizedIOPS = 0
                    }
                )
            }
        } -RemoveParameterType 'VM'
        # The metering ACLs Enable-VMResourceMetering adds to every adapter, and an allow rule.
        Mock Get-VMNetworkAdapterAcl {
            if (@($VMNetworkAdapter)[0].Name -ne $PsdTest.Adapter1.Name) {
                return
            }
            [pscustomobject]@{ Action = 'Meter'; Direction = 'Inbound'; RemoteAddress = '0.0.0.0/0'; MeteredMegabytes = 10 }
            [pscustomobject]@{ Action = 'Meter'; Direction = 'Inbound'; RemoteAddress = '::/0'; MeteredMegabytes = 5 }
            [pscustomobject]@{ Action = 'Meter'; Direction = 'Outbound'; RemoteAddress = '0.0.0.0/0'; MeteredMegabytes = 7 }
            [pscustomobject]@{ Action = 'Allow'; Direction = 'Inbound'; RemoteAddress = '10.0.0.0/8'; MeteredMegabytes = 99 }
        } -RemoveParameterType 'VMNetworkAdapter'
    }

    It 'describes the VM' {
        $result = & $script:ScriptPath -Name 'instance-00000001'
        Assert-MatchesContract $result
        $result.name | Should -Be 'instance-00000001'
        $result.vm_id | Should -Be '0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b'
        $result.instance_uuid | Should -Be $PsdTest.Uuid
        $result.state | Should -Be 'Running'
        $result.vcpus | Should -Be 4
        $result.memory_mb | Should -Be 4096
        $result.memory_assigned_mb | Should -Be 3072
        $result.dynamic_memory_enabled | Should -BeTrue
        $result.uptime_seconds | Should -Be 3600
        $result.generation | Should -Be 2
        $result.notes | Should -Be $PsdTest.VM.Notes
        $result.metrics | Should -BeNullOrEmpty
        Should -Invoke Measure-VM -Times 0 -Exactly
    }

    It 'reports virtual, pass-through and unreadable disks' {
        $disks = (& $script:ScriptPath -Name 'instance-00000001').disks
        $disks.Count | Should -Be 3
        $disks[0].format | Should -Be 'VHDX'
        $disks[0].vhd_type | Should -Be 'Differencing'
        $disks[0].parent_path | Should -Be 'C:\Instances\_base\image.vhdx'
        $disks[0].size_bytes | Should -Be 20GB
        $disks[0].file_size_bytes | Should -Be 300MB
        $disks[0].disk_number | Should -BeNullOrEmpty
        $disks[1].disk_number | Should -Be 3
        $disks[1].format | Should -BeNullOrEmpty
        $disks[2].controller_location | Should -Be 2
        $disks[2].size_bytes | Should -BeNullOrEmpty
        Should -Invoke Get-VHD -Times 2 -Exactly
    }

    It 'reports DVD drives, adapters and serial ports' {
        $result = & $script:ScriptPath -Name 'instance-00000001'
        $result.dvd_drives[0].path | Should -Be 'C:\Instances\instance-00000001\configdrive.iso'
        $result.dvd_drives[1].path | Should -BeNullOrEmpty
        $result.nics[0].name | Should -Be '3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b'
        $result.nics[0].mac | Should -BeExactly 'fa:16:3e:01:02:03'
        $result.nics[0].switch | Should -Be 'br-int'
        $result.nics[0].vlan | Should -Be 101
        $result.nics[0].connected | Should -BeTrue
        $result.nics[1].mac | Should -BeNullOrEmpty
        $result.nics[1].switch | Should -BeNullOrEmpty
        $result.nics[1].vlan | Should -BeNullOrEmpty
        $result.nics[1].connected | Should -BeFalse
        $result.serial_ports[0].port | Should -Be 1
        $result.serial_ports[0].path | Should -Be "\\.\pipe\$($PsdTest.Uuid)_rw"
        $result.serial_ports[1].port | Should -Be 2
        $result.serial_ports[1].path | Should -BeNullOrEmpty
    }

    It 'adds Measure-VM figures with -IncludeMetrics' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -IncludeMetrics
        Assert-MatchesContract $result
        $result.metrics.cpu_average_mhz | Should -Be 1200
        $result.metrics.memory_maximum_mb | Should -Be 3072
        $result.metrics.disk_read_mb | Should -Be 512
        $result.metrics.network_inbound_mb | Should -Be 15
        # Both-direction traffic cannot be split: it counts in neither direction.
        $result.metrics.network_outbound_mb | Should -Be 7
        $result.metrics.metering_duration_seconds | Should -Be 5400
    }

    It 'fails loudly on a report without the documented property <Missing>' -ForEach @(
        @{ Missing = 'AverageProcessorUsage' }
        @{ Missing = 'TotalDiskAllocation' }
        @{ Missing = 'NetworkMeteredTrafficReport' }
    ) {
        $PsdTest.Missing = $Missing
        Mock Measure-VM {
            $report = [ordered]@{
                AvgCPU = 1200; AvgRAM = 2048; TotalDisk = 20480
                AverageProcessorUsage = 1200; AverageMemoryUsage = 2048; MinimumMemoryUsage = 1024
                MaximumMemoryUsage = 3072; TotalDiskAllocation = 20480
                AggregatedDiskDataRead = 512; AggregatedDiskDataWritten = 256; AggregatedAverageNormalizedIOPS = 40
                MeteringDuration = [timespan]::FromMinutes(90); NetworkMeteredTrafficReport = @()
            }
            $report.Remove($PsdTest.Missing)
            [pscustomobject]$report
        } -RemoveParameterType 'VM'

        $failure = { & $script:ScriptPath -Name 'instance-00000001' -IncludeMetrics } | Should -Throw -ErrorId 'PsDriver.MeteringPropertyMissing' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'InvalidResult'
        $failure.Exception.Message | Should -BeLike "*'$Missing'*"
    }

    It 'breaks the counters down by disk and adapter' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -IncludeMetrics
        Assert-MatchesContract $result
        $result.device_metrics.disks.Count | Should -Be 2
        $result.device_metrics.disks[0].path | Should -Be 'C:\Instances\instance-00000001\root.vhdx'
        $result.device_metrics.disks[0].read_mb | Should -Be 500
        $result.device_metrics.disks[0].written_mb | Should -Be 200
        $result.device_metrics.disks[0].normalized_io_count | Should -Be 64000
        $result.device_metrics.disks[1].written_mb | Should -Be 56
        $result.device_metrics.nics.Count | Should -Be 2
        $result.device_metrics.nics[0].name | Should -Be $PsdTest.Adapter1.Name
        $result.device_metrics.nics[0].inbound_mb | Should -Be 15
        $result.device_metrics.nics[0].outbound_mb | Should -Be 7
        $result.device_metrics.nics[1].inbound_mb | Should -Be 0
    }

    It 'gives null device metrics without -IncludeMetrics or when they cannot be read' {
        (& $script:ScriptPath -Name 'instance-00000001').device_metrics | Should -BeNullOrEmpty
        Mock Get-VMNetworkAdapterAcl { throw 'Access denied.' } -RemoveParameterType 'VMNetworkAdapter'
        $result = & $script:ScriptPath -Name 'instance-00000001' -IncludeMetrics
        Assert-MatchesContract $result
        $result.metrics.disk_read_mb | Should -Be 512
        $result.device_metrics | Should -BeNullOrEmpty
    }

    It 'gives null metrics when resource metering is off' {
        $PsdTest.VM.ResourceMeteringEnabled = $false
        $result = & $script:ScriptPath -Name 'instance-00000001' -IncludeMetrics
        Assert-MatchesContract $result
        $result.metrics | Should -BeNullOrEmpty
        Should -Invoke Measure-VM -Times 0 -Exactly
    }

    It 'gives null metrics when Measure-VM fails' {
        Mock Measure-VM { throw 'metering unavailable' } -RemoveParameterType 'VM'
        $result = & $script:ScriptPath -Name 'instance-00000001' -IncludeMetrics
        Assert-MatchesContract $result
        $result.metrics | Should -BeNullOrEmpty
    }

    It 'returns empty lists for a VM without devices' {
        Mock Get-VMHardDiskDrive { } -RemoveParameterType 'VM'
        Mock Get-VMDvdDrive { } -RemoveParameterType 'VM'
        Mock Get-VMNetworkAdapter { } -RemoveParameterType 'VM'
        Mock Get-VMNetworkAdapterVlan -ModuleName PsDriver { } -RemoveParameterType 'VM'
        Mock Get-VMComPort { } -RemoveParameterType 'VM'
        $PsdTest.VM.Notes = $null
        $result = & $script:ScriptPath -Name 'instance-00000001'
        Assert-MatchesContract $result
        $json = ConvertTo-Json -InputObject $result -Depth 20 -Compress
        $json | Should -Match '"disks":\[\]'
        $json | Should -Match '"nics":\[\]'
        $result.notes | Should -BeExactly ''
        $result.instance_uuid | Should -BeNullOrEmpty
    }

    It 'matches the name exactly, without wildcards' {
        $PsdTest.FakeVMs = @(
            [pscustomobject]@{ Name = 'vm1'; Id = [guid]::NewGuid() }
            $PsdTest.VM
        )
        $PsdTest.VM.Name = 'vm[1]'
        $result = & $script:ScriptPath -Name 'vm[1]'
        $result.name | Should -Be 'vm[1]'
        # Hyper-V compares a name without an unescaped wildcard literally, backticks included,
        # so the lookup must be a real pattern: the escaped name followed by '*'.
        Should -Invoke Get-VM -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter { @($Name)[0] -ceq 'vm`[1`]*' }
    }

    It 'reports a host that cannot be asked instead of a missing VM' {
        Mock Get-VM -ModuleName PsDriver { throw [System.InvalidOperationException]::new('The Virtual Machine Management service is not running.') }
        $failure = { & $script:ScriptPath -Name 'instance-00000001' } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Not -Be 'PsDriver.VMNotFound'
        $failure.Exception.Message | Should -Match 'Virtual Machine Management service'
    }

    It 'fails with ObjectNotFound for a missing VM' {
        $failure = { & $script:ScriptPath -Name 'instance-00000099' } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $failure.Exception.Message | Should -Match 'instance-00000099'
    }

    It 'fails with InvalidOperation when two VMs share the name' {
        $PsdTest.FakeVMs = @($PsdTest.VM, $PsdTest.VM)
        $failure = { & $script:ScriptPath -Name 'instance-00000001' } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNameNotUnique'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
