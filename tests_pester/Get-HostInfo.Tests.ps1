# Pester 5 tests of Get-HostInfo.ps1. Hyper-V and CIM cmdlets are mocked; the
# kernel32 calls (processor features, disk space) need Windows.

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Get-HostInfo'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Get-HostInfo'

    Add-CommandStub -Name 'Get-VMHost'
    Add-CommandStub -Name 'Get-VMHostNumaNode'
    Add-CommandStub -Name 'Get-VM'
    Add-CommandStub -Name 'Get-VMHostAssignableDevice'
    Add-CommandStub -Name 'Get-VMAssignableDevice' -Parameter 'VM'
    Add-CommandStub -Name 'Get-HgsClientConfiguration'
    Add-CommandStub -Name 'Initialize-ShieldedVM'
    # The guarded-host check is the helper Get-PsDriverHostGuardianState: its commands are
    # mocked in the module's scope.
    Import-PsDriverModule
    Add-CommandStub -Name 'Get-PnpDeviceProperty' -Parameter 'InstanceId', 'KeyName'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Get-HostInfo' -Skip:(-not $IsWindows) {
    BeforeEach {
        Mock Get-CimInstance -ParameterFilter { $ClassName -eq 'Win32_OperatingSystem' } -MockWith {
            [pscustomobject]@{
                Caption            = 'Microsoft Windows Server 2022 Datacenter'
                Version            = '10.0.20348'
                FreePhysicalMemory = 8GB / 1KB
                LastBootUpTime     = (Get-Date).AddHours(-2)
            }
        }
        Mock Get-CimInstance -ParameterFilter { $ClassName -eq 'Win32_ComputerSystem' } -MockWith {
            [pscustomobject]@{ TotalPhysicalMemory = 64GB }
        }
        Mock Get-CimInstance -ParameterFilter { $ClassName -eq 'Win32_Processor' } -MockWith {
            foreach ($i in 1..2) {
                [pscustomobject]@{
                    Manufacturer              = 'GenuineIntel'
                    Name                      = 'Intel(R) Xeon(R) Gold 6338'
                    Architecture              = 9
                    NumberOfCores             = 8
                    NumberOfLogicalProcessors = 16
                }
            }
        }
        Mock Get-VMHost -MockWith {
            [pscustomobject]@{ LogicalProcessorCount = 32; VirtualHardDiskPath = $env:TEMP }
        }
        Mock Get-VMHostNumaNode -MockWith {
            foreach ($i in 0..1) {
                [pscustomobject]@{ NodeId = $i; ProcessorsAvailability = @(0) * 16; MemoryTotal = 32768; MemoryAvailable = 4096 }
            }
        }
        # One GPU free for assignment, one assigned to a VM.
        Mock Get-VMHostAssignableDevice -MockWith {
            [pscustomobject]@{ InstanceID = 'PCIP\VEN_10DE&DEV_1EB8&SUBSYS_12A210DE&REV_A1\6&2B1C0D3E&0&0000'; LocationPath = 'PCIROOT(0)#PCI(0300)#PCI(0000)' }
        }
        Mock Get-VM -MockWith { [pscustomobject]@{ Name = 'instance-00000001' } }
        Mock Get-VMAssignableDevice -MockWith {
            [pscustomobject]@{ InstanceID = 'PCIP\VEN_8086&DEV_0D58&SUBSYS_00018086&REV_02\6&1A2B3C4D&0&0008'; LocationPath = 'PCIROOT(0)#PCI(0100)#PCI(0000)' }
        } -RemoveParameterType 'VM'
        Mock Get-HgsClientConfiguration -ModuleName PsDriver -MockWith { throw 'The HgsClient module is not installed.' }
        Mock Get-PnpDeviceProperty -MockWith {
            $bus = 3
            if ($InstanceId -like '*VEN_8086*') {
                $bus = 1
            }
            switch ($KeyName) {
                'DEVPKEY_Device_LocationInfo' { [pscustomobject]@{ Data = "PCI bus $bus, device 0, function 0" } }
                'DEVPKEY_Device_Numa_Node' { [pscustomobject]@{ Data = 1 } }
            }
        }
        Mock Get-NetIPAddress -MockWith {
            [pscustomobject]@{ IPAddress = '127.0.0.1' }
            [pscustomobject]@{ IPAddress = '169.254.10.20' }
            [pscustomobject]@{ IPAddress = '192.0.2.10' }
            [pscustomobject]@{ IPAddress = '::1' }
            [pscustomobject]@{ IPAddress = 'fe80::1c2d:3e4f:5a6b:7c8d%12' }
            [pscustomobject]@{ IPAddress = '2001:db8::10' }
        }
    }

    It 'reports topology, memory and NUMA nodes from the host and keeps the contract' {
        $result = & $script:ScriptPath -InstancesPath $env:TEMP
        $result['logical_processors'] | Should -Be 32
        $result['cpu']['sockets'] | Should -Be 2
        $result['cpu']['cores'] | Should -Be 8
        $result['cpu']['threads'] | Should -Be 2
        $result['memory_mb_total'] | Should -Be 65536
        $result['numa_nodes'].Count | Should -Be 2
        $result['ip_addresses'] | Should -Be @('192.0.2.10', '2001:db8::10')
        $result['instances_path']['exists'] | Should -BeTrue
        Test-Json -Json ($result | ConvertTo-Json -Depth 10) -Schema $script:ResultSchema | Should -BeTrue
    }

    It 'reports the devices prepared for Discrete Device Assignment, free and assigned' {
        $result = & $script:ScriptPath -InstancesPath $env:TEMP
        $devices = @($result['assignable_devices'])
        $devices.Count | Should -Be 2
        $devices[0]['vendor_id'] | Should -BeExactly '10de'
        $devices[0]['product_id'] | Should -BeExactly '1eb8'
        $devices[0]['address'] | Should -BeExactly '0000:03:00.0'
        $devices[0]['numa_node'] | Should -Be 1
        $devices[0]['location_path'] | Should -Be 'PCIROOT(0)#PCI(0300)#PCI(0000)'
        $devices[0]['assigned_to'] | Should -BeNullOrEmpty
        $devices[1]['assigned_to'] | Should -Be 'instance-00000001'
        $devices[1]['address'] | Should -BeExactly '0000:01:00.0'
        Should -Invoke Get-PnpDeviceProperty -ParameterFilter { $InstanceId -like 'PCI\VEN_10DE*' }
        Test-Json -Json ($result | ConvertTo-Json -Depth 10) -Schema $script:ResultSchema | Should -BeTrue
    }

    It 'reports a guarded host that offers virtual TPMs and shielded VMs' {
        Mock Get-Command -ParameterFilter { $Name -eq 'Hyper-V\Enable-VMTPM' } -MockWith {
            [pscustomobject]@{ Name = $Name }
        }
        Mock Get-Command -ModuleName PsDriver -ParameterFilter { $Name -in @('Get-HgsClientConfiguration', 'Initialize-ShieldedVM') } -MockWith {
            [pscustomobject]@{ Name = $Name }
        }
        Mock Get-HgsClientConfiguration -ModuleName PsDriver { [pscustomobject]@{ IsHostGuarded = $true; Mode = 'HostGuardianService' } }
        $result = & $script:ScriptPath -InstancesPath $env:TEMP
        $result['security']['vtpm'] | Should -BeTrue
        $result['security']['host_guarded'] | Should -BeTrue
        $result['security']['hgs_mode'] | Should -Be 'HostGuardianService'
        $result['security']['shielded_vm_tools'] | Should -BeTrue
        Test-Json -Json ($result | ConvertTo-Json -Depth 10) -Schema $script:ResultSchema | Should -BeTrue
    }

    It 'reports no guarded fabric without the HgsClient module' {
        Mock Get-Command -ModuleName PsDriver -ParameterFilter { $Name -in @('Get-HgsClientConfiguration', 'Initialize-ShieldedVM') } -MockWith { }
        $result = & $script:ScriptPath -InstancesPath $env:TEMP
        $result['security']['host_guarded'] | Should -BeFalse
        $result['security']['hgs_mode'] | Should -BeNullOrEmpty
        $result['security']['shielded_vm_tools'] | Should -BeFalse
    }

    It 'measures the nearest existing parent of a missing instances path' {
        $missing = Join-Path -Path $env:TEMP -ChildPath ('psdriver-missing-' + [guid]::NewGuid())
        $result = & $script:ScriptPath -InstancesPath $missing
        $result['instances_path']['exists'] | Should -BeFalse
        $result['instances_path']['total_gb'] | Should -BeGreaterThan 0
    }

    It 'defaults to the host virtual hard disk path' {
        $result = & $script:ScriptPath
        $result['instances_path']['path'] | Should -BeExactly $env:TEMP
    }
}
