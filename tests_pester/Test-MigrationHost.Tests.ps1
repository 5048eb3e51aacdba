BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Test-MigrationHost')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Test-MigrationHost'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Test-MigrationHost'
    Import-PsDriverModule

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'
    Add-CommandStub -Name 'Get-VMHost'
    Add-CommandStub -Name 'Get-VMMigrationNetwork'
    Add-CommandStub -Name 'Get-VMHostSupportedVersion'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMDvdDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMProcessor' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMNetworkAdapter' -Parameter 'VM'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Test-MigrationHost' {
    BeforeEach {
        $script:Root = New-TestRoot
        $script:PsdTest = @{ Enabled = $true }
        Mock Get-VMHost {
            [pscustomobject]@{
                VirtualMachineMigrationEnabled             = $PsdTest.Enabled
                VirtualMachineMigrationAuthenticationType  = 'Kerberos'
                UseAnyNetworkForMigration                  = $false
                MaximumVirtualMachineMigrations            = 2
            }
        }
        Mock Get-VMMigrationNetwork { [pscustomobject]@{ Subnet = '192.0.2.0/24' } }
        Mock Get-VMHostSupportedVersion { [pscustomobject]@{ Version = [version]'9.0' }; [pscustomobject]@{ Version = [version]'10.0' } }
        Mock Get-CimInstance { [pscustomobject]@{ Manufacturer = 'GenuineIntel' } }
        Mock Get-VM { [pscustomobject]@{ Name = 'instance-0000002a'; Id = [guid]::NewGuid(); Version = '10.0'; Generation = 2; State = 'Running' } }
        Mock Get-VMHardDiskDrive { [pscustomobject]@{ Path = 'C:\x\root.vhdx'; DiskNumber = $null }; [pscustomobject]@{ Path = $null; DiskNumber = 3 } }
        Mock Get-VMDvdDrive { [pscustomobject]@{ Path = 'C:\x\configdrive.iso' } }
        Mock Get-VMProcessor { [pscustomobject]@{ CompatibilityForMigrationEnabled = $true } }
        Mock Get-VMNetworkAdapter { [pscustomobject]@{ SwitchName = 'external' } }
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $params = ConvertTo-TestValue -Value $Example -Root $script:Root
        $null = New-Item -ItemType Directory -Path $params['InstancesPath'] -Force

        $result = & $script:ScriptPath @params

        Assert-MatchesContract -Result $result
    }

    It 'reports the settings, versions and the VM constraints' {
        $result = & $script:ScriptPath -InstancesPath $script:Root -VMName 'instance-0000002a'

        $result.authentication | Should -Be 'Kerberos'
        @($result.migration_networks) | Should -Be @('192.0.2.0/24')
        @($result.supported_versions) | Should -Be @('9.0', '10.0')
        $result.processor_vendor | Should -Be 'GenuineIntel'
        $result.vm.passthrough_disks | Should -Be 1
        $result.vm.limit_cpu_features | Should -BeTrue
        @($result.vm.switches) | Should -Be @('external')
        $result.probe_exists | Should -BeNullOrEmpty
    }

    It 'creates, finds and removes the probe file' {
        (& $script:ScriptPath -InstancesPath $script:Root -Probe Create -ProbeFile 'p.tmp').probe_exists | Should -BeTrue
        (& $script:ScriptPath -InstancesPath $script:Root -Probe Check -ProbeFile 'p.tmp').probe_exists | Should -BeTrue
        (& $script:ScriptPath -InstancesPath $script:Root -Probe Remove -ProbeFile 'p.tmp').probe_exists | Should -BeFalse
        (& $script:ScriptPath -InstancesPath $script:Root -Probe Check -ProbeFile 'p.tmp').probe_exists | Should -BeFalse
    }

    It 'refuses a probe name with a folder in it' {
        { & $script:ScriptPath -InstancesPath $script:Root -Probe Create -ProbeFile '..\evil.tmp' } | Should -Throw -ErrorId 'PsDriver.InvalidProbeFile'
    }
}
