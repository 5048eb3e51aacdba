BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'New-Instance')

    # Each stage is one Hyper-V or file operation of a full spawn; the spawn is made to fail there.
    # 'Name#n' is the n-th call of that command.
    $Gen2Stages = @(
        'New-VHD', 'Resize-VHD', 'New-VHD#2', 'New-VM', 'Set-VM', 'Remove-VMNetworkAdapter', 'Set-VMProcessor',
        'Set-VMMemory', 'Set-VMFirmware', 'Add-VMHardDiskDrive', 'Add-VMHardDiskDrive#2', 'Add-VMDvdDrive',
        'Set-VMFirmware#2', 'Add-VMNetworkAdapter', 'Add-VMNetworkAdapter#2', 'Set-VMNetworkAdapterVlan',
        'Set-VMComPort', 'Enable-VMResourceMetering', 'Start-VM'
    ) | ForEach-Object { @{ Stage = $_ } }
    $Gen1Stages = @(
        'Copy-Item', 'Resize-VHD', 'New-VHD', 'New-VHD#2', 'New-VM', 'Set-VM', 'Remove-VMDvdDrive',
        'Set-VMProcessor', 'Set-VMMemory', 'Add-VMScsiController', 'Add-VMHardDiskDrive', 'Add-VMHardDiskDrive#3',
        'Add-VMHardDiskDrive#4', 'Set-VMBios', 'Add-VMNetworkAdapter', 'Start-VM'
    ) | ForEach-Object { @{ Stage = $_ } }
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'New-Instance'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'New-Instance'
    $script:SpecSchema = (Get-TestContract -ScriptName 'New-Instance')['x-spec-schema'] | ConvertTo-Json -Depth 100
    # The console logger is launched by Start-PsDriverConsoleLogger of the shared module
    # (tested with Start-InstanceConsoleLogger.Tests.ps1); here it is mocked.
    Import-PsDriverModule
    $script:Uuid = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f'
    $script:ConfigDriveBase64 = [System.Convert]::ToBase64String([System.Text.Encoding]::ASCII.GetBytes('CD001 config-2'))

    function Get-FakeVhd {
        param(
            [Parameter(Mandatory)]
            [string]$Path
        )
        $PsdTest.Vhds[(Get-FakeKey -Path $Path)]
    }

    # Records the call; throws the injected failure when this is the stage under test.
    function Invoke-FakeStep {
        param(
            [Parameter(Mandatory)]
            [string]$Step
        )
        $count = 1
        if ($PsdTest.CallCounts.ContainsKey($Step)) {
            $count = $PsdTest.CallCounts[$Step] + 1
        }
        $PsdTest.CallCounts[$Step] = $count
        $PsdTest.Calls.Add("$Step#$count")
        if ($PsdTest.FailAt -eq $Step -or $PsdTest.FailAt -eq "$Step#$count") {
            $exception = [System.IO.IOException]::new("Injected failure in $Step")
            throw [System.Management.Automation.ErrorRecord]::new($exception, 'Fake.InjectedFailure',
                [System.Management.Automation.ErrorCategory]::ResourceBusy, $Step)
        }
    }

    # A generation 2 spawn that uses every feature, under $Root.
    function New-Gen2Spec {
        param(
            [Parameter(Mandatory)]
            [string]$Root
        )
        $base = Join-Path -Path $Root -ChildPath '_base'
        $image = Join-Path -Path $base -ChildPath 'image.vhdx'
        $null = New-FakeDisk -Path $image -Size 2GB
        [ordered]@{
            name                 = 'instance-0000002a'
            instance_uuid        = $script:Uuid
            instance_dir         = Join-Path -Path $Root -ChildPath 'instance-0000002a'
            generation           = 2
            secure_boot          = [ordered]@{ enabled = $true; template = 'MicrosoftUEFICertificateAuthority' }
            vcpus                = 2
            memory_mb            = 4096
            dynamic_memory_ratio = 1.5
            root_disk            = [ordered]@{ source = $image; cow = $true; format = 'vhdx'; size_gb = 20 }
            ephemerals           = @([ordered]@{ size_gb = 10; format = 'vhdx' })
            nics                 = @(
                [ordered]@{ id = 'port-1'; mac = 'fa:16:3e:01:02:03'; switch = 'br-int'; vlan = $null }
                [ordered]@{ id = 'port-2'; mac = 'fa:16:3e:0a:0b:0c'; switch = 'external'; vlan = 120 }
            )
            serial_ports         = @([ordered]@{ port = 1; pipe = "$($script:Uuid)_ro" })
            config_drive         = [ordered]@{ content_base64 = $script:ConfigDriveBase64; format = 'iso'; as_dvd = $true }
            enable_metrics       = $true
            power_on             = $true
            console_log          = [ordered]@{ path = Join-Path -Path $Root -ChildPath 'instance-0000002a/console.log' }
        }
    }

    # A generation 1 spawn: copied vhd root, IDE ephemeral, SCSI swap, vhd config drive.
    function New-Gen1Spec {
        param(
            [Parameter(Mandatory)]
            [string]$Root
        )
        $base = Join-Path -Path $Root -ChildPath '_base'
        $image = Join-Path -Path $base -ChildPath 'image.vhd'
        $null = New-FakeDisk -Path $image -Size 10GB
        [ordered]@{
            name          = 'instance-0000002b'
            instance_uuid = '0B9A6F3C-1D2E-4F50-8A7B-9C0D1E2F3A4B'
            instance_dir  = Join-Path -Path $Root -ChildPath 'instance-0000002b'
            generation    = 1
            vcpus         = 4
            memory_mb     = 8192
            root_disk     = [ordered]@{ source = $image; cow = $false; format = 'vhd'; size_gb = 40 }
            ephemerals    = @([ordered]@{ size_gb = 5; format = 'vhd'; controller = 'ide' })
            swap          = [ordered]@{ size_mb = 1024; format = 'vhd' }
            nics          = @([ordered]@{ id = 'port-3'; mac = 'FA-16-3E-11-22-33' })
            config_drive  = [ordered]@{ content_base64 = $script:ConfigDriveBase64; format = 'vhd'; as_dvd = $false }
            notes_extra   = 'project 6f1e2d3c'
            power_on      = $true
        }
    }

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'
    Add-CommandStub -Name 'New-VM' -Parameter 'Name', 'Generation', 'Path', 'MemoryStartupBytes', '-NoVHD'
    Add-CommandStub -Name 'Set-VM' -Parameter 'VM', 'Notes', 'AutomaticStartAction', 'AutomaticStopAction', 'SnapshotFileLocation', 'SmartPagingFilePath', 'AutomaticCheckpointsEnabled', 'GuestControlledCacheTypes', 'LowMemoryMappedIoSpace', 'HighMemoryMappedIoSpace'
    Add-CommandStub -Name 'Add-VMAssignableDevice' -Parameter 'VM', 'LocationPath'
    Add-CommandStub -Name 'Remove-VM' -Parameter 'VM', '-Force'
    Add-CommandStub -Name 'Start-VM' -Parameter 'VM'
    Add-CommandStub -Name 'Stop-VM' -Parameter 'VM', '-TurnOff', '-Force'
    Add-CommandStub -Name 'Get-VMNetworkAdapter' -Parameter 'VM'
    Add-CommandStub -Name 'Remove-VMNetworkAdapter' -Parameter 'VMNetworkAdapter'
    Add-CommandStub -Name 'Add-VMNetworkAdapter' -Parameter 'VM', 'Name', 'StaticMacAddress', 'SwitchName', '-Passthru'
    Add-CommandStub -Name 'Set-VMNetworkAdapterVlan' -Parameter 'VMNetworkAdapter', '-Access', 'VlanId'
    Add-CommandStub -Name 'Get-VMDvdDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Remove-VMDvdDrive' -Parameter 'VMDvdDrive'
    Add-CommandStub -Name 'Add-VMDvdDrive' -Parameter 'VM', 'ControllerNumber', 'ControllerLocation', 'Path', '-Passthru'
    Add-CommandStub -Name 'Add-VMHardDiskDrive' -Parameter 'VM', 'ControllerType', 'ControllerNumber', 'ControllerLocation', 'Path', 'DiskNumber', '-Passthru'
    Add-CommandStub -Name 'Add-VMScsiController' -Parameter 'VM'
    Add-CommandStub -Name 'Set-VMProcessor' -Parameter 'VM', 'Count', 'CompatibilityForMigrationEnabled', 'MaximumCountPerNumaNode', 'ExposeVirtualizationExtensions'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Set-VMKeyProtector' -Parameter 'VM', '-NewLocalKeyProtector', 'KeyProtector'
    Add-CommandStub -Name 'Set-VMSecurityPolicy' -Parameter 'VM', 'Shielded'
    # Shielded VMs: HgsClient, ShieldedVMDataFile and ShieldedVMProvisioning.
    Add-CommandStub -Name 'Get-HgsClientConfiguration'
    Add-CommandStub -Name 'Get-KeyProtectorFromShieldingDataFile' -Parameter 'ShieldingDataFilePath'
    Add-CommandStub -Name 'Save-VolumeSignatureCatalog' -Parameter 'TemplateDiskPath', 'VolumeSignatureCatalogPath'
    Add-CommandStub -Name 'Test-ShieldingDataApplicability' -Parameter 'ShieldingDataFilePath', 'VolumeSignatureCatalogPath'
    Add-CommandStub -Name 'New-ShieldedVMSpecializationDataFile' -Parameter 'ShieldedVMSpecializationDataFilePath', 'SpecializationDataPairs'
    Add-CommandStub -Name 'Initialize-ShieldedVM' -Parameter 'VM', 'ShieldingDataFilePath', 'ShieldedVMSpecializationDataFilePath'
    Add-CommandStub -Name 'Get-ShieldedVMProvisioningStatus' -Parameter 'VM'
    Add-CommandStub -Name 'Enable-VMTPM' -Parameter 'VM'
    Add-CommandStub -Name 'Set-VMHardDiskDrive' -Parameter 'VMHardDiskDrive', 'MaximumIOPS'
    Add-CommandStub -Name 'Set-VMMemory' -Parameter 'VM', 'DynamicMemoryEnabled', 'StartupBytes', 'MinimumBytes', 'MaximumBytes', 'MaximumAmountPerNumaNodeBytes'
    Add-CommandStub -Name 'Set-VMFirmware' -Parameter 'VM', 'EnableSecureBoot', 'SecureBootTemplate', 'FirstBootDevice'
    Add-CommandStub -Name 'Set-VMBios' -Parameter 'VM', 'StartupOrder'
    Add-CommandStub -Name 'Set-VMComPort' -Parameter 'VM', 'Number', 'Path'
    Add-CommandStub -Name 'Enable-VMResourceMetering' -Parameter 'VM'
    Add-CommandStub -Name 'New-VHD' -Parameter 'Path', 'ParentPath', 'SizeBytes', '-Differencing', '-Dynamic'
    Add-CommandStub -Name 'Resize-VHD' -Parameter 'Path', 'SizeBytes'
    Add-CommandStub -Name 'Get-VHD' -Parameter 'Path'
}

AfterAll {
    Remove-CommandStub
}

Describe 'New-Instance' {
    BeforeEach {
        # Open vSwitch: the helpers run the native ovs-vsctl; here they are stand-ins.
        Mock Resolve-PsDriverOvsVsctl { 'C:\Program Files\Open vSwitch\bin\ovs-vsctl.exe' }
        Mock Add-PsDriverOvsPort { }
        Mock Remove-PsDriverOvsPort { }
        # Shared with the mocks. Mock bodies run inside the tested script's scopes (its $script: scope
        # and StrictMode), so they reach this state through one unqualified, uniquely named variable.
        $script:PsdTest = @{
            Vms        = [System.Collections.Generic.List[object]]::new()
            Vhds       = @{}
            Calls      = [System.Collections.Generic.List[string]]::new()
            CallCounts = @{}
            FailAt     = $null
        }

        # Find-PsDriverVM, Get-PsDriverVMState and, in the rollback, Remove-PsDriverVM (PsDriver.psm1)
        # ask for and remove the VM; the console logger starts in Invoke-PsDriverConsoleLogger.
        Mock Get-VM -ModuleName PsDriver {
            if ($PesterBoundParameters.ContainsKey('Id')) {
                return @($PsdTest.Vms | Where-Object { $_.Id -eq $Id })
            }
            if ($PesterBoundParameters.ContainsKey('Name')) {
                return @($PsdTest.Vms | Where-Object { $_.Name -like @($Name)[0] })
            }
            $PsdTest.Vms.ToArray()
        }
        Mock New-VM {
            Invoke-FakeStep -Step 'New-VM'
            $vm = [pscustomobject]@{
                Name       = $Name
                Id         = [guid]::NewGuid()
                State      = 'Off'
                Generation = [int]$Generation
                Notes      = ''
            }
            $PsdTest.Vms.Add($vm)
            $vm
        }
        Mock Set-VM {
            Invoke-FakeStep -Step 'Set-VM'
            @($VM)[0].Notes = $Notes
        } -RemoveParameterType 'VM'
        Mock Remove-VM -ModuleName PsDriver {
            Invoke-FakeStep -Step 'Remove-VM'
            Remove-FakeVM -VM $VM
        } -RemoveParameterType 'VM'
        Mock Start-VM {
            Invoke-FakeStep -Step 'Start-VM'
            @($VM)[0].State = 'Running'
        } -RemoveParameterType 'VM'
        Mock Stop-VM -ModuleName PsDriver {
            Invoke-FakeStep -Step 'Stop-VM'
            @($VM)[0].State = 'Off'
        } -RemoveParameterType 'VM'
        Mock Get-VMNetworkAdapter {
            [pscustomobject]@{ Name = 'Network Adapter'; VMName = @($VM)[0].Name }
        } -RemoveParameterType 'VM'
        Mock Remove-VMNetworkAdapter { Invoke-FakeStep -Step 'Remove-VMNetworkAdapter' } -RemoveParameterType 'VMNetworkAdapter'
        Mock Add-VMNetworkAdapter {
            Invoke-FakeStep -Step 'Add-VMNetworkAdapter'
            [pscustomobject]@{ Name = $Name; MacAddress = $StaticMacAddress; SwitchName = $SwitchName }
        } -RemoveParameterType 'VM'
        Mock Set-VMNetworkAdapterVlan { Invoke-FakeStep -Step 'Set-VMNetworkAdapterVlan' } -RemoveParameterType 'VMNetworkAdapter'
        Mock Get-VMDvdDrive {
            if (@($VM)[0].Generation -eq 1) {
                [pscustomobject]@{ ControllerNumber = 1; ControllerLocation = 0; Path = $null }
            }
        } -RemoveParameterType 'VM'
        Mock Remove-VMDvdDrive { Invoke-FakeStep -Step 'Remove-VMDvdDrive' } -RemoveParameterType 'VMDvdDrive'
        Mock Add-VMDvdDrive {
            Invoke-FakeStep -Step 'Add-VMDvdDrive'
            [pscustomobject]@{ ControllerNumber = $ControllerNumber; ControllerLocation = $ControllerLocation; Path = $Path }
        } -RemoveParameterType 'VM'
        Mock Add-VMHardDiskDrive {
            Invoke-FakeStep -Step 'Add-VMHardDiskDrive'
            [pscustomobject]@{
                ControllerType     = $ControllerType
                ControllerNumber   = $ControllerNumber
                ControllerLocation = $ControllerLocation
                Path               = $Path
            }
        } -RemoveParameterType 'VM'
        Mock Add-VMScsiController { Invoke-FakeStep -Step 'Add-VMScsiController' } -RemoveParameterType 'VM'
        Mock Set-VMProcessor { Invoke-FakeStep -Step 'Set-VMProcessor' } -RemoveParameterType 'VM'
        Mock Set-VMMemory { Invoke-FakeStep -Step 'Set-VMMemory' } -RemoveParameterType 'VM'
        Mock Set-VMFirmware { Invoke-FakeStep -Step 'Set-VMFirmware' } -RemoveParameterType 'VM', 'FirstBootDevice'
        Mock Set-VMBios { Invoke-FakeStep -Step 'Set-VMBios' } -RemoveParameterType 'VM'
        Mock Set-VMComPort { Invoke-FakeStep -Step 'Set-VMComPort' } -RemoveParameterType 'VM'
        Mock Enable-VMResourceMetering { Invoke-FakeStep -Step 'Enable-VMResourceMetering' } -RemoveParameterType 'VM'
        Mock New-VHD {
            # The file appears before the operation can fail, as a half-written disk would.
            $null = New-Item -ItemType File -Path $Path -Force
            Invoke-FakeStep -Step 'New-VHD'
            if ($PesterBoundParameters.ContainsKey('ParentPath')) {
                $parent = Get-FakeVhd -Path $ParentPath
                $null = New-FakeDisk -Path $Path -Size $parent.Size -Type 'Differencing' -Parent $ParentPath
            }
            else {
                $null = New-FakeDisk -Path $Path -Size $SizeBytes
            }
            Get-FakeVhd -Path $Path
        }
        Mock Resize-VHD {
            Invoke-FakeStep -Step 'Resize-VHD'
            $vhd = Get-FakeVhd -Path $Path
            if ($null -eq $vhd) {
                $null = New-FakeDisk -Path $Path -Size $SizeBytes
            }
            else {
                $vhd.Size = $SizeBytes
            }
        }
        Mock Get-VHD {
            $vhd = Get-FakeVhd -Path $Path
            if ($null -eq $vhd) {
                throw "'$Path' is not a virtual hard disk."
            }
            $vhd
        }
        Mock Start-PsDriverConsoleLogger -ModuleName PsDriver {
            Invoke-FakeStep -Step 'Start-PsDriverConsoleLogger'
            [ordered]@{ started = $true; running = $true; pid = 4242 }
        }
        Mock Stop-PsDriverConsoleLogger { Invoke-FakeStep -Step 'Stop-PsDriverConsoleLogger' }
        # Only the failure is faked; otherwise the real Copy-Item copies the file.
        Mock Copy-Item {
            $null = New-Item -ItemType File -Path $Destination -Force
            Invoke-FakeStep -Step 'Copy-Item'
        } -ParameterFilter { $PsdTest.FailAt -eq 'Copy-Item' }
    }

    Context 'contract examples' {
        It 'example <Index> is a valid spec' -ForEach $Examples {
            $json = $Example['Spec'] | ConvertTo-Json -Depth 20
            $problems = $null
            $valid = Test-Json -Json $json -Schema $script:SpecSchema -ErrorVariable problems -ErrorAction SilentlyContinue
            $valid | Should -BeTrue -Because ($problems -join '; ')
        }

        It 'example <Index> spawns and matches the contract' -ForEach $Examples {
            $root = New-TestRoot
            $spec = ConvertTo-TestValue -Value $Example['Spec'] -Root $root
            $rootDisk = $spec['root_disk']
            if ($null -ne $rootDisk -and $null -ne $rootDisk['source']) {
                if ($rootDisk['source'] -match '\.iso$') {
                    $null = New-Item -ItemType File -Path $rootDisk['source'] -Force
                }
                else {
                    $null = New-FakeDisk -Path $rootDisk['source'] -Size 1GB
                }
            }

            $result = & $script:ScriptPath -Spec $spec

            Assert-MatchesContract -Result $result
            $result.name | Should -Be $spec['name']
            $result.instance_uuid | Should -Be ([string]$spec['instance_uuid']).ToLowerInvariant()
            $PsdTest.Vms.Count | Should -Be 1
            @($PsdTest.Vms)[0].Notes.Split("`n")[0] | Should -Be $result.instance_uuid
            Test-Path -LiteralPath $spec['instance_dir'] -PathType Container | Should -BeTrue
        }
    }

    Context 'a full generation 2 spawn' {
        BeforeEach {
            $script:Root = New-TestRoot
            $script:Spec = New-Gen2Spec -Root $script:Root
        }

        It 'creates the folder, a differencing root grown to the flavor size, the ephemeral and the config drive' {
            $result = & $script:ScriptPath -Spec $script:Spec

            Assert-MatchesContract -Result $result
            $dir = $script:Spec['instance_dir']
            $rootPath = Join-Path -Path $dir -ChildPath 'root.vhdx'
            $ephPath = Join-Path -Path $dir -ChildPath 'eph0.vhdx'
            $configPath = Join-Path -Path $dir -ChildPath 'configdrive.iso'
            $result.root_disk_path | Should -Be $rootPath
            @($result.created) | Should -Be @($dir, $rootPath, $ephPath, $configPath)
            @($result.reused).Count | Should -Be 0
            (Get-FakeVhd -Path $rootPath).VhdType | Should -Be 'Differencing'
            (Get-FakeVhd -Path $rootPath).Size | Should -Be 20GB
            (Get-FakeVhd -Path $ephPath).Size | Should -Be 10GB
            [System.IO.File]::ReadAllBytes($configPath) | Should -Be ([System.Convert]::FromBase64String($script:ConfigDriveBase64))
            Should -Invoke New-VHD -Times 1 -Exactly -ParameterFilter { $Differencing -and $ParentPath -eq $script:Spec['root_disk']['source'] }
            Should -Invoke Resize-VHD -Times 1 -Exactly -ParameterFilter { $SizeBytes -eq 20GB }
        }

        It 'configures the VM and starts it' {
            $result = & $script:ScriptPath -Spec $script:Spec

            $result.state | Should -Be 'Running'
            $result.vm_id | Should -Be @($PsdTest.Vms)[0].Id.ToString()
            $result.generation | Should -Be 2
            @($PsdTest.Vms)[0].Notes | Should -Be $script:Uuid
            Should -Invoke New-VM -Times 1 -Exactly -ParameterFilter {
                $Name -eq 'instance-0000002a' -and $Generation -eq 2 -and $NoVHD -and $Path -eq $script:Root
            }
            Should -Invoke Set-VM -Times 1 -Exactly -ParameterFilter {
                $AutomaticStartAction -eq 'Nothing' -and $SnapshotFileLocation -eq $script:Spec['instance_dir'] -and
                $SmartPagingFilePath -eq $script:Spec['instance_dir']
            }
            Should -Invoke Remove-VMNetworkAdapter -Times 1 -Exactly
            Should -Invoke Set-VMProcessor -Times 1 -Exactly -ParameterFilter { $Count -eq 2 -and $CompatibilityForMigrationEnabled -eq $false }
            Should -Invoke Set-VMFirmware -Times 1 -Exactly -ParameterFilter {
                $EnableSecureBoot -eq 'On' -and $SecureBootTemplate -eq 'MicrosoftUEFICertificateAuthority'
            }
            Should -Invoke Set-VMFirmware -Times 1 -Exactly -ParameterFilter { $null -ne $FirstBootDevice -and $FirstBootDevice.ControllerLocation -eq 0 }
            Should -Invoke Add-VMScsiController -Times 0 -Exactly
            Should -Invoke Enable-VMResourceMetering -Times 1 -Exactly
            Should -Invoke Start-VM -Times 1 -Exactly
        }

        It 'enables dynamic memory with startup = minimum = memory_mb / ratio, rounded down to even' {
            $null = & $script:ScriptPath -Spec $script:Spec

            # 4096 / 1.5 = 2730.67 -> 2730
            Should -Invoke Set-VMMemory -Times 1 -Exactly -ParameterFilter {
                $DynamicMemoryEnabled -eq $true -and $StartupBytes -eq 2730MB -and $MinimumBytes -eq 2730MB -and $MaximumBytes -eq 4096MB
            }
            Should -Invoke New-VM -Times 1 -Exactly -ParameterFilter { $MemoryStartupBytes -eq 2730MB }
        }

        It 'places the drives on SCSI 0: root at 0, then ephemerals, then the config drive' {
            $result = & $script:ScriptPath -Spec $script:Spec

            $drives = @($result.drives)
            $drives.Count | Should -Be 3
            $drives[0].role | Should -Be 'root'
            $drives[0].controller_type | Should -Be 'SCSI'
            $drives[0].controller_location | Should -Be 0
            $drives[1].role | Should -Be 'ephemeral'
            $drives[1].index | Should -Be 0
            $drives[1].controller_location | Should -Be 1
            $drives[2].role | Should -Be 'config_drive'
            $drives[2].drive_type | Should -Be 'dvd'
            $drives[2].controller_location | Should -Be 2
            Should -Invoke Add-VMHardDiskDrive -Times 1 -Exactly -ParameterFilter {
                $ControllerType -eq 'SCSI' -and $ControllerNumber -eq 0 -and $ControllerLocation -eq 0 -and $Path -like '*root.vhdx'
            }
            Should -Invoke Add-VMDvdDrive -Times 1 -Exactly -ParameterFilter { $ControllerLocation -eq 2 -and $Path -like '*configdrive.iso' }
        }

        It 'names each adapter after its port, with the static MAC, switch and VLAN' {
            $null = & $script:ScriptPath -Spec $script:Spec

            Should -Invoke Add-VMNetworkAdapter -Times 1 -Exactly -ParameterFilter {
                $Name -eq 'port-1' -and $StaticMacAddress -eq 'FA163E010203' -and $SwitchName -eq 'br-int'
            }
            Should -Invoke Add-VMNetworkAdapter -Times 1 -Exactly -ParameterFilter {
                $Name -eq 'port-2' -and $StaticMacAddress -eq 'FA163E0A0B0C' -and $SwitchName -eq 'external'
            }
            Should -Invoke Set-VMNetworkAdapterVlan -Times 1 -Exactly -ParameterFilter { $Access -and $VlanId -eq 120 }
        }

        It 'connects COM 1 to the named pipe' {
            $null = & $script:ScriptPath -Spec $script:Spec

            Should -Invoke Set-VMComPort -Times 1 -Exactly -ParameterFilter {
                $Number -eq 1 -and $Path -eq "\\.\pipe\$($script:Uuid)_ro"
            }
        }

        It 'starts the console logger on the _ro pipe before the VM starts' {
            $result = & $script:ScriptPath -Spec $script:Spec

            Assert-MatchesContract -Result $result
            $script:LogPath = $script:Spec['console_log']['path']
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter {
                $PipePath -eq "\\.\pipe\$($script:Uuid)_ro" -and $LogPath -eq $script:LogPath -and $MaxLogBytes -eq 524288 -and
                $VMId -eq @($PsdTest.Vms)[0].Id.ToString() -and $VMName -eq 'instance-0000002a'
            }
            $PsdTest.Calls.IndexOf('Start-PsDriverConsoleLogger#1') | Should -BeLessThan $PsdTest.Calls.IndexOf('Start-VM#1')
            $result.console_logger.pipe_path | Should -Be "\\.\pipe\$($script:Uuid)_ro"
            $result.console_logger.log_path | Should -Be $script:LogPath
            $result.console_logger.started | Should -BeTrue
            $result.console_logger.running | Should -BeTrue
            $result.console_logger.pid | Should -Be 4242
            $result.console_logger.error | Should -BeNullOrEmpty
        }

        It 'passes max_bytes to the logger and starts it for a VM that stays off' {
            $script:Spec['console_log']['max_bytes'] = 65536
            $script:Spec['power_on'] = $false

            $null = & $script:ScriptPath -Spec $script:Spec

            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter { $MaxLogBytes -eq 65536 }
        }

        It 'goes on with a warning when the console logger cannot start' {
            Mock Start-PsDriverConsoleLogger -ModuleName PsDriver { throw 'Win32_Process.Create returned 2' }

            $output = @(& $script:ScriptPath -Spec $script:Spec 3>&1)
            $warnings = @($output | Where-Object { $_ -is [System.Management.Automation.WarningRecord] })
            $result = @($output | Where-Object { $_ -isnot [System.Management.Automation.WarningRecord] })[0]

            Assert-MatchesContract -Result $result
            $result.state | Should -Be 'Running'
            $result.console_logger.started | Should -BeFalse
            $result.console_logger.running | Should -BeFalse
            $result.console_logger.error | Should -BeLike '*returned 2*'
            @($warnings).Count | Should -Be 1
            Should -Invoke Stop-PsDriverConsoleLogger -Times 0 -Exactly
        }

        It 'reports why there is no console log for a VM without a serial port pipe' {
            $script:Spec['serial_ports'] = @()

            $result = & $script:ScriptPath -Spec $script:Spec 3>$null

            Assert-MatchesContract -Result $result
            $result.console_logger.pipe_path | Should -BeNullOrEmpty
            $result.console_logger.error | Should -BeLike '*no serial port*'
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 0 -Exactly
        }

        It 'starts no console logger without console_log' {
            $script:Spec.Remove('console_log')

            $result = & $script:ScriptPath -Spec $script:Spec

            Assert-MatchesContract -Result $result
            $result.console_logger | Should -BeNullOrEmpty
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 0 -Exactly
        }

        It 'leaves the VM off when power_on is false' {
            $script:Spec['power_on'] = $false

            $result = & $script:ScriptPath -Spec $script:Spec

            $result.state | Should -Be 'Off'
            Should -Invoke Start-VM -Times 0 -Exactly
        }

        It 'turns secure boot off when it is not requested' {
            $script:Spec.Remove('secure_boot')

            $null = & $script:ScriptPath -Spec $script:Spec

            Should -Invoke Set-VMFirmware -Times 1 -Exactly -ParameterFilter { $EnableSecureBoot -eq 'Off' }
        }

        It 'sets the vNUMA limits with static memory' {
            $script:Spec['dynamic_memory_ratio'] = 1
            $script:Spec['vnuma'] = [ordered]@{ enabled = $true; max_processors_per_node = 1; max_memory_per_node_mb = 2048 }

            $null = & $script:ScriptPath -Spec $script:Spec

            Should -Invoke Set-VMProcessor -Times 1 -Exactly -ParameterFilter { $MaximumCountPerNumaNode -eq 1 }
            Should -Invoke Set-VMMemory -Times 1 -Exactly -ParameterFilter {
                $DynamicMemoryEnabled -eq $false -and $StartupBytes -eq 4096MB -and $MaximumAmountPerNumaNodeBytes -eq 2048MB
            }
        }

        It 'exposes virtualization extensions with static memory' {
            $script:Spec['dynamic_memory_ratio'] = 1
            $script:Spec['nested_virtualization'] = $true

            $result = & $script:ScriptPath -Spec $script:Spec

            Assert-MatchesContract -Result $result
            Should -Invoke Set-VMProcessor -Times 1 -Exactly -ParameterFilter { $ExposeVirtualizationExtensions -eq $true }
            Should -Invoke Set-VMMemory -Times 1 -Exactly -ParameterFilter { $DynamicMemoryEnabled -eq $false }
        }

        It 'refuses nested virtualization with dynamic memory before changing anything' {
            $script:Spec['dynamic_memory_ratio'] = 2
            $script:Spec['nested_virtualization'] = $true

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.InvalidSpec'

            Should -Invoke New-VM -Times 0 -Exactly
        }

        It 'limits the IOPS of the root and ephemeral disks, not of the config drive' {
            $script:Spec['disk_max_iops'] = 500
            $dir = $script:Spec['instance_dir']
            Mock Get-VMHardDiskDrive {
                [pscustomobject]@{ Path = (Join-Path -Path $dir -ChildPath 'root.vhdx') }
                [pscustomobject]@{ Path = (Join-Path -Path $dir -ChildPath 'eph0.vhdx') }
                [pscustomobject]@{ Path = 'D:\Volumes\data.vhdx' }
            } -RemoveParameterType 'VM'
            Mock Set-VMHardDiskDrive { } -RemoveParameterType 'VMHardDiskDrive'

            $null = & $script:ScriptPath -Spec $script:Spec

            Should -Invoke Set-VMHardDiskDrive -Times 2 -Exactly -ParameterFilter { $MaximumIOPS -eq 500 }
            Should -Invoke Set-VMHardDiskDrive -Times 0 -Exactly -ParameterFilter { @($VMHardDiskDrive)[0].Path -like 'D:*' }
        }

        It 'gives the VM a virtual TPM sealed with a local key protector' {
            $script:Spec['tpm'] = [ordered]@{ key_protector = 'local' }
            Mock Set-VMKeyProtector { Invoke-FakeStep -Step 'Set-VMKeyProtector' } -RemoveParameterType 'VM'
            Mock Enable-VMTPM { Invoke-FakeStep -Step 'Enable-VMTPM' } -RemoveParameterType 'VM'

            $result = & $script:ScriptPath -Spec $script:Spec

            Assert-MatchesContract -Result $result
            Should -Invoke Set-VMKeyProtector -Times 1 -Exactly -ParameterFilter { $NewLocalKeyProtector }
            Should -Invoke Enable-VMTPM -Times 1 -Exactly
            $PsdTest.Calls.IndexOf('Set-VMKeyProtector#1') | Should -BeLessThan $PsdTest.Calls.IndexOf('Enable-VMTPM#1')
        }

        It 'refuses a virtual TPM without secure boot before changing anything' {
            $script:Spec.Remove('secure_boot')
            $script:Spec['tpm'] = [ordered]@{ key_protector = 'local' }

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.InvalidSpec'

            Should -Invoke New-VM -Times 0 -Exactly
        }

        It 'assigns PCI devices with the memory-mapped I/O space they need' {
            $script:Spec['dynamic_memory_ratio'] = 1
            $script:Spec['automatic_stop_action'] = 'TurnOff'
            $script:Spec['assignable_devices'] = @([ordered]@{ location_path = 'PCIROOT(0)#PCI(0300)#PCI(0000)' })
            $script:Spec['mmio_space'] = [ordered]@{ low_mb = 3072; high_mb = 33280 }
            Mock Add-VMAssignableDevice { Invoke-FakeStep -Step 'Add-VMAssignableDevice' } -RemoveParameterType 'VM'

            $result = & $script:ScriptPath -Spec $script:Spec

            Assert-MatchesContract -Result $result
            Should -Invoke Set-VM -Times 1 -Exactly -ParameterFilter {
                $GuestControlledCacheTypes -eq $true -and $LowMemoryMappedIoSpace -eq 3GB -and $HighMemoryMappedIoSpace -eq 33280MB
            }
            Should -Invoke Add-VMAssignableDevice -Times 1 -Exactly -ParameterFilter { $LocationPath -eq 'PCIROOT(0)#PCI(0300)#PCI(0000)' }
        }

        It 'refuses devices without automatic stop action TurnOff before changing anything' {
            $script:Spec['dynamic_memory_ratio'] = 1
            $script:Spec['automatic_stop_action'] = 'Save'
            $script:Spec['assignable_devices'] = @([ordered]@{ location_path = 'PCIROOT(0)#PCI(0300)#PCI(0000)' })

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.InvalidSpec'

            Should -Invoke New-VM -Times 0 -Exactly
        }

        It 'reports a device that is not free as ResourceUnavailable and removes the VM' {
            $script:Spec['dynamic_memory_ratio'] = 1
            $script:Spec['automatic_stop_action'] = 'TurnOff'
            $script:Spec['assignable_devices'] = @([ordered]@{ location_path = 'PCIROOT(0)#PCI(0300)#PCI(0000)' })
            Mock Add-VMAssignableDevice { throw 'The device is already assigned to another virtual machine.' } -RemoveParameterType 'VM'

            $failure = { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -PassThru

            $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.DeviceUnavailable'
            $failure.CategoryInfo.Category | Should -Be 'ResourceUnavailable'
            $failure.Exception.Message | Should -Match 'already assigned'
            $PsdTest.Vms.Count | Should -Be 0
        }

        It 'sets no IOPS limit without disk_max_iops' {
            Mock Set-VMHardDiskDrive { } -RemoveParameterType 'VMHardDiskDrive'

            $null = & $script:ScriptPath -Spec $script:Spec

            Should -Invoke Set-VMHardDiskDrive -Times 0 -Exactly
            Should -Invoke Set-VMProcessor -Times 0 -Exactly -ParameterFilter { $ExposeVirtualizationExtensions }
        }

        It 'accepts the spec as a JSON string' {
            $json = $script:Spec | ConvertTo-Json -Depth 10

            $result = & $script:ScriptPath -Spec $json

            Assert-MatchesContract -Result $result
            $result.state | Should -Be 'Running'
        }

        It 'keeps date-like strings of a JSON string spec as strings on every PowerShell' {
            # ConvertFrom-Json of PowerShell 6+ would make DateTime values of these.
            $script:Spec['notes_extra'] = '2024-05-01T10:00:00Z'
            $json = $script:Spec | ConvertTo-Json -Depth 10

            $result = & $script:ScriptPath -Spec $json

            Assert-MatchesContract -Result $result
            @($PsdTest.Vms)[0].Notes | Should -Be "0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b`n2024-05-01T10:00:00Z"
        }

        It 'reuses disk files that already exist and never deletes them' {
            $dir = $script:Spec['instance_dir']
            $rootPath = Join-Path -Path $dir -ChildPath 'root.vhdx'
            $null = New-FakeDisk -Path $rootPath -Size 20GB -Type 'Differencing' -Parent $script:Spec['root_disk']['source']
            $PsdTest.FailAt = 'Start-VM'

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'Fake.InjectedFailure'

            Test-Path -LiteralPath $rootPath -PathType Leaf | Should -BeTrue
            Test-Path -LiteralPath (Join-Path -Path $dir -ChildPath 'eph0.vhdx') | Should -BeFalse
            Test-Path -LiteralPath (Join-Path -Path $dir -ChildPath 'configdrive.iso') | Should -BeFalse
            Test-Path -LiteralPath $dir -PathType Container | Should -BeTrue
            Should -Invoke New-VHD -Times 0 -Exactly -ParameterFilter { $Path -eq $rootPath }
            Should -Invoke Resize-VHD -Times 0 -Exactly
        }

        It 'reports a reused root disk' {
            $rootPath = Join-Path -Path $script:Spec['instance_dir'] -ChildPath 'root.vhdx'
            $null = New-FakeDisk -Path $rootPath -Size 20GB -Type 'Differencing' -Parent $script:Spec['root_disk']['source']

            $result = & $script:ScriptPath -Spec $script:Spec

            Assert-MatchesContract -Result $result
            @($result.reused) | Should -Be @($rootPath)
            @($result.created) | Should -Not -Contain $rootPath
        }
    }

    Context 'a generation 1 spawn' {
        BeforeEach {
            $script:Root = New-TestRoot
            $script:Spec = New-Gen1Spec -Root $script:Root
        }

        It 'copies the image, grows it, and lays out IDE and SCSI as compute-hyperv did' {
            $result = & $script:ScriptPath -Spec $script:Spec

            Assert-MatchesContract -Result $result
            $dir = $script:Spec['instance_dir']
            $rootPath = Join-Path -Path $dir -ChildPath 'root.vhd'
            Test-Path -LiteralPath $rootPath -PathType Leaf | Should -BeTrue
            Should -Invoke New-VHD -Times 0 -Exactly -ParameterFilter { $Path -eq $rootPath }
            Should -Invoke Resize-VHD -Times 1 -Exactly -ParameterFilter { $Path -eq $rootPath -and $SizeBytes -eq 40GB }
            $drives = @($result.drives)
            ($drives | ForEach-Object { '{0}:{1}:{2}:{3}' -f $_.role, $_.controller_type, $_.controller_number, $_.controller_location }) |
                Should -Be @('root:IDE:0:0', 'ephemeral:IDE:0:1', 'swap:SCSI:0:0', 'config_drive:IDE:1:0')
            $drives[3].drive_type | Should -Be 'disk'
            Should -Invoke Add-VMScsiController -Times 1 -Exactly
            Should -Invoke Remove-VMDvdDrive -Times 1 -Exactly
            Should -Invoke Set-VMBios -Times 1 -Exactly -ParameterFilter { @($StartupOrder)[0] -eq 'IDE' }
            Should -Invoke Set-VMFirmware -Times 0 -Exactly
        }

        It 'writes the UUID in lower case on the first Notes line and notes_extra after it' {
            $null = & $script:ScriptPath -Spec $script:Spec

            @($PsdTest.Vms)[0].Notes | Should -Be "0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b`nproject 6f1e2d3c"
        }

        It 'creates a swap disk of size_mb' {
            $null = & $script:ScriptPath -Spec $script:Spec

            (Get-FakeVhd -Path (Join-Path -Path $script:Spec['instance_dir'] -ChildPath 'swap.vhd')).Size | Should -Be 1024MB
        }

        It 'boots from a volume at IDE 0:0, with a data volume on SCSI' {
            $script:Spec.Remove('root_disk')
            $share = Join-Path -Path $script:Root -ChildPath 'share/volume-data.vhdx'
            $script:Spec['volumes'] = @(
                [ordered]@{ disk_number = 3; boot = $true }
                [ordered]@{ path = $share }
            )

            $result = & $script:ScriptPath -Spec $script:Spec

            Assert-MatchesContract -Result $result
            $volumes = @($result.drives | Where-Object { $_.role -eq 'volume' })
            ($volumes | ForEach-Object { '{0}:{1}:{2}' -f $_.controller_type, $_.controller_number, $_.controller_location }) |
                Should -Be @('IDE:0:0', 'SCSI:0:1')
            $volumes[0].path | Should -BeNullOrEmpty
            $volumes[1].path | Should -Be $share
            Should -Invoke Add-VMHardDiskDrive -Times 1 -Exactly -ParameterFilter { $DiskNumber -eq 3 -and $ControllerType -eq 'IDE' }
            Should -Invoke Set-VMBios -Times 1 -Exactly -ParameterFilter { @($StartupOrder)[0] -eq 'IDE' }
        }

        It 'limits the IOPS of a volume file with max_iops' {
            $share = Join-Path -Path $script:Root -ChildPath 'share/volume-data.vhdx'
            $script:Spec['volumes'] = @([ordered]@{ path = $share; max_iops = 300 })
            Mock Set-VMHardDiskDrive { } -RemoveParameterType 'VMHardDiskDrive'

            $null = & $script:ScriptPath -Spec $script:Spec

            Should -Invoke Set-VMHardDiskDrive -Times 1 -Exactly -ParameterFilter { $MaximumIOPS -eq 300 }
        }

        It 'refuses max_iops on a pass-through volume' {
            $script:Spec.Remove('root_disk')
            $script:Spec['volumes'] = @([ordered]@{ disk_number = 3; boot = $true; max_iops = 300 })

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.InvalidSpec'
        }

        It 'refuses a boot volume next to a root disk' {
            $script:Spec['volumes'] = @([ordered]@{ disk_number = 3; boot = $true })

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.InvalidSpec'
            Should -Invoke Add-VMHardDiskDrive -Times 0 -Exactly
        }

        It 'boots an iso root from CD first and attaches it as a DVD' {
            $iso = Join-Path -Path $script:Root -ChildPath '_base/image.iso'
            $null = New-Item -ItemType File -Path $iso -Force
            $script:Spec['root_disk'] = [ordered]@{ source = $iso; format = 'iso'; size_gb = 40 }
            $script:Spec.Remove('config_drive')

            $result = & $script:ScriptPath -Spec $script:Spec

            Assert-MatchesContract -Result $result
            @($result.drives)[0].drive_type | Should -Be 'dvd'
            Should -Invoke Add-VMDvdDrive -Times 1 -Exactly -ParameterFilter { $ControllerNumber -eq 0 -and $ControllerLocation -eq 0 }
            Should -Invoke Set-VMBios -Times 1 -Exactly -ParameterFilter { @($StartupOrder)[0] -eq 'CD' }
            Should -Invoke Resize-VHD -Times 0 -Exactly
        }
    }

    Context 'rollback' {
        It 'generation 2: a failure in <Stage> removes everything created, then raises the original error' -ForEach $Gen2Stages {
            $root = New-TestRoot
            $spec = New-Gen2Spec -Root $root
            $PsdTest.FailAt = $Stage

            $failure = { & $script:ScriptPath -Spec $spec } | Should -Throw -ErrorId 'Fake.InjectedFailure' -PassThru

            $expectedCall = $Stage
            if ($Stage -notmatch '#') {
                $expectedCall = "$Stage#1"
            }
            $PsdTest.Calls | Should -Contain $expectedCall
            $failure.CategoryInfo.Category | Should -Be 'ResourceBusy'
            $failure.Exception.Message | Should -Be "Injected failure in $($Stage -replace '#.*$', '')"
            $PsdTest.Vms.Count | Should -Be 0
            Test-Path -LiteralPath $spec['instance_dir'] | Should -BeFalse
            Test-Path -LiteralPath $spec['root_disk']['source'] -PathType Leaf | Should -BeTrue
            @(Get-ChildItem -LiteralPath $root).Name | Should -Be @('_base')
            @(Get-ChildItem -LiteralPath (Join-Path -Path $root -ChildPath '_base')).Name | Should -Be @('image.vhdx')
        }

        It 'generation 1: a failure in <Stage> removes everything created, then raises the original error' -ForEach $Gen1Stages {
            $root = New-TestRoot
            $spec = New-Gen1Spec -Root $root
            $PsdTest.FailAt = $Stage

            $failure = { & $script:ScriptPath -Spec $spec } | Should -Throw -ErrorId 'Fake.InjectedFailure' -PassThru

            $expectedCall = $Stage
            if ($Stage -notmatch '#') {
                $expectedCall = "$Stage#1"
            }
            $PsdTest.Calls | Should -Contain $expectedCall
            $failure.CategoryInfo.Category | Should -Be 'ResourceBusy'
            $PsdTest.Vms.Count | Should -Be 0
            Test-Path -LiteralPath $spec['instance_dir'] | Should -BeFalse
            @(Get-ChildItem -LiteralPath (Join-Path -Path $root -ChildPath '_base')).Name | Should -Be @('image.vhd')
        }

        It 'removes the VM after New-VM fails half way' {
            $root = New-TestRoot
            $spec = New-Gen2Spec -Root $root
            Mock New-VM {
                $PsdTest.Vms.Add([pscustomobject]@{ Name = $Name; Id = [guid]::NewGuid(); State = 'Off'; Generation = 2; Notes = '' })
                Invoke-FakeStep -Step 'New-VM'
            }
            $PsdTest.FailAt = 'New-VM'

            { & $script:ScriptPath -Spec $spec } | Should -Throw -ErrorId 'Fake.InjectedFailure'

            $PsdTest.Vms.Count | Should -Be 0
            Should -Invoke Remove-VM -ModuleName PsDriver -Times 1 -Exactly
        }

        It 'stops the console logger it started when a later step fails' {
            $root = New-TestRoot
            $spec = New-Gen2Spec -Root $root
            $PsdTest.FailAt = 'Start-VM'

            { & $script:ScriptPath -Spec $spec } | Should -Throw -ErrorId 'Fake.InjectedFailure'

            Should -Invoke Stop-PsDriverConsoleLogger -Times 1 -Exactly -ParameterFilter {
                $VMName -eq 'instance-0000002a' -and -not [string]::IsNullOrEmpty($VMId)
            }
            $PsdTest.Calls.IndexOf('Stop-PsDriverConsoleLogger#1') | Should -BeLessThan $PsdTest.Calls.IndexOf('Remove-VM#1')
            $PsdTest.Vms.Count | Should -Be 0
        }

        It 'deletes the Open vSwitch ports it added when a later step fails' {
            $root = New-TestRoot
            $spec = New-Gen2Spec -Root $root
            $spec['nics'][0]['ovs_bridge'] = 'br-int'
            Mock Start-VM {
                $PsdTest.FailAt = 'Start-VM'
                Invoke-FakeStep -Step 'Start-VM'
            } -RemoveParameterType 'VM'

            { & $script:ScriptPath -Spec $spec } | Should -Throw -ErrorId 'Fake.InjectedFailure'

            Should -Invoke Add-PsDriverOvsPort -Times 1 -Exactly -ParameterFilter {
                $Bridge -ceq 'br-int' -and $Port -ceq 'port-1' -and $InstanceUuid -eq [guid]$spec['instance_uuid']
            }
            Should -Invoke Remove-PsDriverOvsPort -Times 1 -Exactly -ParameterFilter { $Port -ceq 'port-1' }
            $PsdTest.Vms.Count | Should -Be 0
        }

        It 'turns a running VM off before removing it' {
            $root = New-TestRoot
            $spec = New-Gen2Spec -Root $root
            Mock Start-VM {
                @($VM)[0].State = 'Running'
                $PsdTest.FailAt = 'Start-VM'
                Invoke-FakeStep -Step 'Start-VM'
            } -RemoveParameterType 'VM'

            { & $script:ScriptPath -Spec $spec } | Should -Throw -ErrorId 'Fake.InjectedFailure'

            Should -Invoke Stop-VM -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter { $TurnOff -and $Force }
            Should -Invoke Remove-VM -ModuleName PsDriver -Times 1 -Exactly
            $PsdTest.Vms.Count | Should -Be 0
        }

        It 'removes a VM left <State> without turning it off first' -ForEach @(
            @{ State = 'Saved' }
            @{ State = 'OffCritical' }
        ) {
            $root = New-TestRoot
            $spec = New-Gen2Spec -Root $root
            $PsdTest.LeftIn = $State
            Mock Start-VM {
                @($VM)[0].State = $PsdTest.LeftIn
                $PsdTest.FailAt = 'Start-VM'
                Invoke-FakeStep -Step 'Start-VM'
            } -RemoveParameterType 'VM'

            { & $script:ScriptPath -Spec $spec } | Should -Throw -ErrorId 'Fake.InjectedFailure'

            Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
            Should -Invoke Remove-VM -ModuleName PsDriver -Times 1 -Exactly
            $PsdTest.Vms.Count | Should -Be 0
        }

        It 'finds its VM again when the name has wildcard characters' {
            $root = New-TestRoot
            $spec = New-Gen2Spec -Root $root
            $spec['name'] = 'instance-[2a]'
            $PsdTest.Vms.Add([pscustomobject]@{ Name = 'instance-[2a]-old'; Id = [guid]::NewGuid(); State = 'Off'; Generation = 2; Notes = '' })
            $PsdTest.FailAt = 'Set-VMMemory'

            { & $script:ScriptPath -Spec $spec } | Should -Throw -ErrorId 'Fake.InjectedFailure'

            @($PsdTest.Vms | ForEach-Object { $_.Name }) | Should -Be @('instance-[2a]-old')
            Should -Invoke Get-VM -ModuleName PsDriver -ParameterFilter { @($Name)[0] -ceq 'instance-`[2a`]*' }
        }

        It 'warns when it cannot look for its VM and still raises the original error' {
            $root = New-TestRoot
            $spec = New-Gen2Spec -Root $root
            $PsdTest.FailAt = 'Set-VMMemory'
            Mock Get-VM -ModuleName PsDriver {
                if ($PsdTest.Vms.Count -gt 0) {
                    throw [System.InvalidOperationException]::new('The Virtual Machine Management service is not running.')
                }
            } -ParameterFilter { $null -ne $Name }

            $records = [System.Collections.Generic.List[object]]::new()
            $failure = $null
            try {
                & $script:ScriptPath -Spec $spec 3>&1 | ForEach-Object { $records.Add($_) }
            }
            catch {
                $failure = $_
            }

            $failure.FullyQualifiedErrorId | Should -Be 'Fake.InjectedFailure'
            @($records | Where-Object { $_ -is [System.Management.Automation.WarningRecord] } | ForEach-Object { $_.Message }) |
                Should -Contain "Cleanup after the failed spawn could not remove VM 'instance-0000002a': The Virtual Machine Management service is not running."
        }

        It 'keeps an instance folder that existed before' {
            $root = New-TestRoot
            $spec = New-Gen2Spec -Root $root
            $dir = $spec['instance_dir']
            $null = New-Item -ItemType Directory -Path $dir -Force
            $keep = Join-Path -Path $dir -ChildPath 'console.log'
            Set-Content -LiteralPath $keep -Value 'previous boot'
            $PsdTest.FailAt = 'Set-VMMemory'

            { & $script:ScriptPath -Spec $spec } | Should -Throw -ErrorId 'Fake.InjectedFailure'

            Test-Path -LiteralPath $dir -PathType Container | Should -BeTrue
            @(Get-ChildItem -LiteralPath $dir).Name | Should -Be @('console.log')
        }
    }

    Context 'never shrink' {
        BeforeEach {
            $script:Root = New-TestRoot
            $script:Spec = New-Gen2Spec -Root $script:Root
        }

        It 'refuses a root disk smaller than the image and changes nothing' {
            $null = New-FakeDisk -Path $script:Spec['root_disk']['source'] -Size 30GB

            $failure = { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.RootDiskTooSmall' -PassThru

            $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $failure.Exception.Message | Should -BeLike '*20 GB*'
            $failure.Exception.Message | Should -BeLike "*$(30GB)*"
            $failure.Exception.Message | Should -BeLike '*never shrunk*'
            Test-Path -LiteralPath $script:Spec['instance_dir'] | Should -BeFalse
            Should -Invoke New-VM -Times 0 -Exactly
            Should -Invoke New-VHD -Times 0 -Exactly
        }

        It 'refuses it for a copied image too' {
            $gen1 = New-Gen1Spec -Root $script:Root
            $gen1['root_disk']['size_gb'] = 5

            { & $script:ScriptPath -Spec $gen1 } | Should -Throw -ErrorId 'PsDriver.RootDiskTooSmall'

            Test-Path -LiteralPath $gen1['instance_dir'] | Should -BeFalse
        }

        It 'does not resize when the sizes are equal' {
            $null = New-FakeDisk -Path $script:Spec['root_disk']['source'] -Size 20GB

            $null = & $script:ScriptPath -Spec $script:Spec

            Should -Invoke Resize-VHD -Times 0 -Exactly
        }

        It 'refuses to grow a vhd differencing disk' {
            $gen1 = New-Gen1Spec -Root $script:Root
            $gen1['root_disk']['cow'] = $true

            $failure = { & $script:ScriptPath -Spec $gen1 } | Should -Throw -ErrorId 'PsDriver.DifferencingVhdResize' -PassThru

            $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
            Should -Invoke New-VHD -Times 0 -Exactly
        }
    }

    Context 'checks before any change' {
        BeforeEach {
            $script:Root = New-TestRoot
            $script:Spec = New-Gen2Spec -Root $script:Root
        }

        It 'refuses a spec with <Case>' -ForEach @(
            @{ Case = 'an unknown field'; Field = 'colour'; Value = 'blue' }
            @{ Case = 'a string for a boolean'; Field = 'power_on'; Value = 'false' }
            @{ Case = 'an odd memory size'; Field = 'memory_mb'; Value = 1025 }
            @{ Case = 'a generation 3'; Field = 'generation'; Value = 3 }
            @{ Case = 'a bad UUID'; Field = 'instance_uuid'; Value = 'not-a-uuid' }
            @{ Case = 'a relative instance folder'; Field = 'instance_dir'; Value = 'instances\x' }
            @{ Case = 'vNUMA with dynamic memory'; Field = 'vnuma'; Value = @{ enabled = $true } }
            @{ Case = 'a bad MAC'; Field = 'nics'; Value = @(@{ id = 'p'; mac = 'zz:16:3e:01:02:03' }) }
            @{ Case = 'a repeated port id'; Field = 'nics'; Value = @(@{ id = 'p'; mac = 'fa:16:3e:01:02:03' }, @{ id = 'p'; mac = 'fa:16:3e:01:02:04' }) }
            @{ Case = 'an IDE disk on generation 2'; Field = 'ephemerals'; Value = @(@{ size_gb = 1; format = 'vhdx'; controller = 'ide' }) }
            @{ Case = 'an iso config drive as a disk'; Field = 'config_drive'; Value = @{ content_base64 = 'Q0QwMDE='; format = 'iso'; as_dvd = $false } }
            @{ Case = 'config drive content that is not base64'; Field = 'config_drive'; Value = @{ content_base64 = '***'; format = 'iso'; as_dvd = $true } }
            @{ Case = 'COM port 3'; Field = 'serial_ports'; Value = @(@{ port = 3; pipe = 'x' }) }
            @{ Case = 'a vhd root on generation 2'; Field = 'root_disk'; Value = @{ source = $null; format = 'vhd'; size_gb = 10 } }
            @{ Case = 'a relative console log'; Field = 'console_log'; Value = @{ path = 'console.log' } }
            @{ Case = 'a tiny console log'; Field = 'console_log'; Value = @{ path = 'C:\x\console.log'; max_bytes = 100 } }
        ) {
            $script:Spec[$Field] = $Value

            $failure = { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.InvalidSpec' -PassThru

            $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $failure.Exception.Message | Should -BeLike "*spec.$Field*"
            Test-Path -LiteralPath $script:Spec['instance_dir'] | Should -BeFalse
            Should -Invoke New-VM -Times 0 -Exactly
        }

        It 'refuses a third IDE disk on generation 1 with a config drive' {
            $gen1 = New-Gen1Spec -Root $script:Root
            $gen1['ephemerals'] = @(
                [ordered]@{ size_gb = 1; format = 'vhd'; controller = 'ide' }
                [ordered]@{ size_gb = 1; format = 'vhd'; controller = 'ide' }
                [ordered]@{ size_gb = 1; format = 'vhd'; controller = 'ide' }
            )

            { & $script:ScriptPath -Spec $gen1 } | Should -Throw -ErrorId 'PsDriver.InvalidSpec'
        }

        It 'refuses the secure boot template <Template> on a host that lacks it, before creating anything' -ForEach @(
            @{ Template = 'OpenSourceShieldedVM' }
        ) {
            # Windows Server 2016 (build 14393): OpenSourceShieldedVM came with 1709.
            Mock Get-PsDriverSecureBootTemplate { 'MicrosoftWindows'; 'MicrosoftUEFICertificateAuthority' }
            $script:Spec['secure_boot'] = [ordered]@{ enabled = $true; template = $Template }

            $failure = { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.SecureBootTemplateUnavailable' -PassThru

            $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $failure.Exception.Message | Should -BeLike "*'$Template' is not available on this host*MicrosoftWindows, MicrosoftUEFICertificateAuthority*"
            Should -Invoke New-VM -Times 0 -Exactly
            Test-Path -LiteralPath $script:Spec['instance_dir'] | Should -BeFalse
        }

        It 'accepts OpenSourceShieldedVM where the host offers it' {
            Mock Get-PsDriverSecureBootTemplate { 'MicrosoftWindows'; 'MicrosoftUEFICertificateAuthority'; 'OpenSourceShieldedVM' }
            $script:Spec['secure_boot'] = [ordered]@{ enabled = $true; template = 'OpenSourceShieldedVM' }

            $null = & $script:ScriptPath -Spec $script:Spec

            Should -Invoke Set-VMFirmware -Times 1 -Exactly -ParameterFilter { $SecureBootTemplate -eq 'OpenSourceShieldedVM' }
        }

        It 'refuses a VM name that already exists' {
            $PsdTest.Vms.Add([pscustomobject]@{ Name = 'instance-0000002a'; Id = [guid]::NewGuid(); State = 'Off'; Generation = 2; Notes = '' })

            $failure = { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.VMExists' -PassThru

            $failure.CategoryInfo.Category | Should -Be 'ResourceExists'
            Should -Invoke New-VM -Times 0 -Exactly
            $PsdTest.Vms.Count | Should -Be 1
        }

        It 'refuses a name only a wildcard pattern would match, and nothing else' {
            $PsdTest.Vms.Add([pscustomobject]@{ Name = 'instance-[2a]'; Id = [guid]::NewGuid(); State = 'Off'; Generation = 2; Notes = '' })
            $script:Spec['name'] = 'instance-[2a]'

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.VMExists'

            Should -Invoke New-VM -Times 0 -Exactly
        }

        It 'stops when the host cannot list its VMs, before creating anything' {
            Mock Get-VM -ModuleName PsDriver { throw [System.InvalidOperationException]::new('The Virtual Machine Management service is not running.') }

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw '*Virtual Machine Management service*'

            Should -Invoke New-VM -Times 0 -Exactly
            Test-Path -LiteralPath $script:Spec['instance_dir'] | Should -BeFalse
        }

        It 'reports a missing image' {
            $script:Spec['root_disk']['source'] = Join-Path -Path $script:Root -ChildPath '_base/missing.vhdx'

            $failure = { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.ImageNotFound' -PassThru

            $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
            Test-Path -LiteralPath $script:Spec['instance_dir'] | Should -BeFalse
        }

        It 'changes nothing with -WhatIf and reports the plan' {
            $result = & $script:ScriptPath -Spec $script:Spec -WhatIf

            Assert-MatchesContract -Result $result
            $result.state | Should -Be 'NotCreated'
            $result.vm_id | Should -BeNullOrEmpty
            @($result.created).Count | Should -Be 0
            @($result.drives).Count | Should -Be 3
            Test-Path -LiteralPath $script:Spec['instance_dir'] | Should -BeFalse
            Should -Invoke New-VM -Times 0 -Exactly
            Should -Invoke New-VHD -Times 0 -Exactly
        }
    }

    Context 'a shielded VM' {
        BeforeEach {
            $script:Root = New-TestRoot
            $script:Spec = New-Gen2Spec -Root $script:Root
            $script:Spec['secure_boot'] = [ordered]@{ enabled = $true; template = 'MicrosoftWindows' }
            $dir = $script:Spec['instance_dir']
            # The driver wrote the shielding data into the instance folder before the call.
            $script:DataFile = New-TestFile -Path (Join-Path -Path $dir -ChildPath 'shielding.pdk')
            $script:Spec['shielding'] = [ordered]@{
                data_file              = $script:DataFile
                specialization         = [ordered]@{ '@ComputerName@' = 'vm-1' }
                provisioning_timeout_s = 60
                poll_interval_s        = 1
            }
            $PsdTest['JobStates'] = [System.Collections.Generic.Queue[int]]::new([int[]]@(4, 4, 7))
            Mock Get-HgsClientConfiguration -ModuleName PsDriver {
                [pscustomobject]@{ IsHostGuarded = $true; Mode = 'HostGuardianService' }
            }
            Mock Get-KeyProtectorFromShieldingDataFile -ModuleName PsDriver { [byte[]]@(0, 0, 36, 52) }
            Mock Save-VolumeSignatureCatalog -ModuleName PsDriver {
                $null = New-Item -ItemType File -Path $VolumeSignatureCatalogPath -Force
            }
            Mock Test-ShieldingDataApplicability -ModuleName PsDriver { $true }
            Mock Set-VMKeyProtector { Invoke-FakeStep -Step 'Set-VMKeyProtector' } -RemoveParameterType 'VM'
            Mock Set-VMSecurityPolicy { Invoke-FakeStep -Step 'Set-VMSecurityPolicy' } -RemoveParameterType 'VM'
            Mock Enable-VMTPM { Invoke-FakeStep -Step 'Enable-VMTPM' } -RemoveParameterType 'VM'
            Mock New-ShieldedVMSpecializationDataFile {
                $null = New-Item -ItemType File -Path $ShieldedVMSpecializationDataFilePath -Force
            }
            Mock Initialize-ShieldedVM {
                Invoke-FakeStep -Step 'Initialize-ShieldedVM'
                @($VM)[0].State = 'Running'
                [pscustomobject]@{ JobState = 4 }
            } -RemoveParameterType 'VM'
            Mock Get-ShieldedVMProvisioningStatus -ModuleName PsDriver {
                [pscustomobject]@{ JobState = $PsdTest.JobStates.Dequeue(); ErrorDescription = 'The template disk is not trusted.' }
            } -RemoveParameterType 'VM'
            Mock Start-Sleep -ModuleName PsDriver { }
        }

        It 'takes the key protector from the shielding data, provisions and waits, and deletes the files' {
            $result = & $script:ScriptPath -Spec $script:Spec

            Assert-MatchesContract -Result $result
            $result.shielding.provisioned | Should -BeTrue
            $result.state | Should -Be 'Running'
            Should -Invoke Set-VMKeyProtector -Times 1 -Exactly -ParameterFilter { (@($KeyProtector) -join ',') -eq '0,0,36,52' }
            Should -Invoke Set-VMSecurityPolicy -Times 1 -Exactly -ParameterFilter { $Shielded -eq $true }
            Should -Invoke Enable-VMTPM -Times 1 -Exactly
            Should -Invoke New-ShieldedVMSpecializationDataFile -Times 1 -Exactly -ParameterFilter { $SpecializationDataPairs['@ComputerName@'] -eq 'vm-1' }
            Should -Invoke Initialize-ShieldedVM -Times 1 -Exactly -ParameterFilter { $ShieldingDataFilePath -eq $script:DataFile }
            Should -Invoke Get-ShieldedVMProvisioningStatus -ModuleName PsDriver -Times 3 -Exactly
            Should -Invoke Start-VM -Times 0 -Exactly
            $PsdTest.Calls.IndexOf('Set-VMKeyProtector#1') | Should -BeLessThan $PsdTest.Calls.IndexOf('Enable-VMTPM#1')
            @(Get-ChildItem -LiteralPath $script:Spec['instance_dir'] -Filter '*.pdk').Count | Should -Be 0
            @(Get-ChildItem -LiteralPath $script:Spec['instance_dir'] -Filter '*.fsk').Count | Should -Be 0
            @(Get-ChildItem -LiteralPath $script:Spec['instance_dir'] -Filter '*.vsc').Count | Should -Be 0
        }

        It 'refuses a host that is not guarded before anything is created, leaving no folder' {
            Mock Get-HgsClientConfiguration -ModuleName PsDriver {
                [pscustomobject]@{ IsHostGuarded = $false; Mode = 'HostGuardianService' }
            }

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.HostNotGuarded'

            Should -Invoke New-VM -Times 0 -Exactly
            Test-Path -LiteralPath $script:Spec['instance_dir'] | Should -BeFalse
        }

        It 'refuses an image that is not a template disk before the VM is created' {
            Mock Save-VolumeSignatureCatalog -ModuleName PsDriver { throw 'The disk has no volume signature catalog.' }

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.NotATemplateDisk'

            Should -Invoke New-VM -Times 0 -Exactly
            Test-Path -LiteralPath $script:Spec['instance_dir'] | Should -BeFalse
        }

        It 'refuses shielding data that does not trust the template disk' {
            Mock Test-ShieldingDataApplicability -ModuleName PsDriver { $false }

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.ShieldingDataNotApplicable'

            Should -Invoke New-VM -Times 0 -Exactly
        }

        It 'removes the VM when the provisioning fails' {
            $PsdTest['JobStates'] = [System.Collections.Generic.Queue[int]]::new([int[]]@(4, 10))

            $failure = { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -PassThru

            $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.ShieldedProvisioningFailed'
            $failure.Exception.Message | Should -Match 'The template disk is not trusted'
            $PsdTest.Vms.Count | Should -Be 0
            Test-Path -LiteralPath $script:Spec['instance_dir'] | Should -BeFalse
        }

        It 'refuses shielding combined with a local virtual TPM' {
            $script:Spec['tpm'] = [ordered]@{ key_protector = 'local' }

            { & $script:ScriptPath -Spec $script:Spec } | Should -Throw -ErrorId 'PsDriver.InvalidSpec'

            Should -Invoke New-VM -Times 0 -Exactly
        }
    }

    Context 'boot from volume' {
        It 'creates no root disk and keeps the root slot free' {
            $root = New-TestRoot
            $spec = New-Gen2Spec -Root $root
            $spec['root_disk'] = $null

            $result = & $script:ScriptPath -Spec $spec

            Assert-MatchesContract -Result $result
            $result.root_disk_path | Should -BeNullOrEmpty
            @($result.drives | Where-Object { $_.role -eq 'root' }).Count | Should -Be 0
            @($result.drives | Where-Object { $_.controller_type -eq 'SCSI' -and $_.controller_location -eq 0 }).Count | Should -Be 0
            Should -Invoke Set-VMFirmware -Times 0 -Exactly -ParameterFilter { $null -ne $FirstBootDevice }
        }

        It 'creates an empty root disk when there is no image but a size' {
            $root = New-TestRoot
            $spec = New-Gen2Spec -Root $root
            $spec['root_disk'] = [ordered]@{ source = $null; format = 'vhdx'; size_gb = 8 }

            $result = & $script:ScriptPath -Spec $spec

            (Get-FakeVhd -Path $result.root_disk_path).Size | Should -Be 8GB
            Should -Invoke New-VHD -Times 1 -Exactly -ParameterFilter { $Dynamic -and $SizeBytes -eq 8GB -and $Path -eq $result.root_disk_path }
        }
    }
}
