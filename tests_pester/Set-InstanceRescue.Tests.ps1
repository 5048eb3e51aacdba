BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Set-InstanceRescue')
}

BeforeAll {
    # State shared with the mocks. Mock bodies run inside the tested script's scopes (its
    # $script: scope and StrictMode), so they reach it through one unqualified, uniquely
    # named variable; $script: here is this file's scope.
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Set-InstanceRescue'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Set-InstanceRescue'
    Import-PsDriverModule

    Add-FakeDriveCommandStub
}

AfterAll {
    Remove-CommandStub
}

Describe 'Set-InstanceRescue' {
    BeforeEach {
        Register-FakeDriveHost
        $PsdTest.Files = @($PsdTest.Root, $PsdTest.Rescue, $PsdTest.ConfigDrive, $PsdTest.RescueConfigDrive, ($PsdTest.Dir + 'root-rescue.vhd'))
        $PsdTest.Drives = @(
            New-FakeDrive -Kind 'HardDisk' -Path $PsdTest.Root -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 0
            New-FakeDrive -Kind 'DvdDrive' -Path $PsdTest.ConfigDrive -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 1
            New-FakeDrive -Kind 'HardDisk' -Path ($PsdTest.Dir + 'eph0.vhdx') -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 2
        )
    }

    It 'boots a generation 2 VM from the rescue disk with the root disk second' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue `
            -ConfigDrivePath $PsdTest.RescueConfigDrive -OriginalConfigDrivePath $PsdTest.ConfigDrive
        Assert-MatchesContract $result
        (Get-FakeSlot 'SCSI' 0 0).Path | Should -Be $PsdTest.Rescue
        (Get-FakeSlot 'SCSI' 0 1).Path | Should -Be $PsdTest.RescueConfigDrive
        (Get-FakeSlot 'SCSI' 0 1).Kind | Should -Be 'DvdDrive'
        (Get-FakeSlot 'SCSI' 0 3).Path | Should -Be $PsdTest.Root
        @($PsdTest.Drives | Where-Object { $_.Path -eq $PsdTest.ConfigDrive }).Count | Should -Be 0
        $PsdTest.FirstBoot | Should -Be $PsdTest.Rescue
        $PsdTest.State | Should -Be 'Running'
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 1 -Exactly
        Should -Invoke Start-VM -ModuleName PsDriver -Times 1 -Exactly
        $result.rescued | Should -BeTrue
        $result.state | Should -Be 'Running'
        $result.generation | Should -Be 2
        $result.boot_disk_path | Should -Be $PsdTest.Rescue
        $result.root_disk_path | Should -Be $PsdTest.Root
        $result.rescue_disk_path | Should -Be $PsdTest.Rescue
        $result.config_drive_path | Should -Be $PsdTest.RescueConfigDrive
        $result.devices.Count | Should -Be 4
        $PsdTest.Deleted.Count | Should -Be 0
    }

    It 'puts the rescue disk on IDE 0:0 of a generation 1 VM and adds a SCSI controller for the root disk' {
        $PsdTest.Generation = 1
        $PsdTest.ScsiControllers = @()
        $PsdTest.Drives = @(
            New-FakeDrive -Kind 'HardDisk' -Path $PsdTest.Root -ControllerType 'IDE' -ControllerNumber 0 -ControllerLocation 0
            New-FakeDrive -Kind 'DvdDrive' -Path $PsdTest.ConfigDrive -ControllerType 'IDE' -ControllerNumber 1 -ControllerLocation 0
        )
        $rescueVhd = $PsdTest.Dir + 'root-rescue.vhd'
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $rescueVhd `
            -ConfigDrivePath $PsdTest.RescueConfigDrive -OriginalConfigDrivePath $PsdTest.ConfigDrive
        Assert-MatchesContract $result
        (Get-FakeSlot 'IDE' 0 0).Path | Should -Be $rescueVhd
        (Get-FakeSlot 'SCSI' 0 0).Path | Should -Be $PsdTest.Root
        (Get-FakeSlot 'IDE' 1 0).Path | Should -Be $PsdTest.RescueConfigDrive
        Should -Invoke Add-VMScsiController -ModuleName PsDriver -Times 1 -Exactly
        Should -Invoke Set-VMFirmware -Times 0 -Exactly
        $result.generation | Should -Be 1
        $result.rescued | Should -BeTrue
    }

    It 'finds the root disk by path when RootDiskPath is given' {
        $PsdTest.Drives = @(
            New-FakeDrive -Kind 'HardDisk' -Path ($PsdTest.Dir + 'eph0.vhdx') -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 0
            New-FakeDrive -Kind 'HardDisk' -Path $PsdTest.Root -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 1
        )
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue -RootDiskPath $PsdTest.Root
        (Get-FakeSlot 'SCSI' 0 1).Path | Should -Be $PsdTest.Rescue
        (Get-FakeSlot 'SCSI' 0 0).Path | Should -Be ($PsdTest.Dir + 'eph0.vhdx')
        (Get-FakeSlot 'SCSI' 0 2).Path | Should -Be $PsdTest.Root
        $PsdTest.FirstBoot | Should -Be $PsdTest.Rescue
        $result.config_drive_path | Should -BeNullOrEmpty
    }

    It 'leaves the config drive alone without ConfigDrivePath' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue
        Assert-MatchesContract $result
        (Get-FakeSlot 'SCSI' 0 1).Path | Should -Be $PsdTest.ConfigDrive
        $result.config_drive_path | Should -BeNullOrEmpty
    }

    It 'attaches the rescue config drive in a free slot when the instance has none' {
        $PsdTest.Drives = @($PsdTest.Drives | Where-Object { $_.Kind -eq 'HardDisk' })
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue -ConfigDrivePath $PsdTest.RescueConfigDrive
        $result.config_drive_path | Should -Be $PsdTest.RescueConfigDrive
        @($PsdTest.Drives | Where-Object { $_.Kind -eq 'DvdDrive' -and $_.Path -eq $PsdTest.RescueConfigDrive }).Count | Should -Be 1
    }

    It 'discards a saved state instead of turning the VM off' {
        $PsdTest.State = 'Saved'
        $null = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue
        Should -Invoke Remove-VMSavedState -ModuleName PsDriver -Times 1 -Exactly
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
        $PsdTest.State | Should -Be 'Running'
    }

    It 'changes no disks when the rescue disk is already attached' {
        $null = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue
        Register-TestMock -CommandName 'Add-VMHardDiskDrive' -Scope Both -RemoveParameterType 'VM' -MockWith { throw 'must not be called' }
        $layout = @($PsdTest.Drives | ForEach-Object { '{0}:{1}:{2}={3}' -f $_.ControllerType, $_.ControllerNumber, $_.ControllerLocation, $_.Path })
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue
        Assert-MatchesContract $result
        @($PsdTest.Drives | ForEach-Object { '{0}:{1}:{2}={3}' -f $_.ControllerType, $_.ControllerNumber, $_.ControllerLocation, $_.Path }) |
            Should -Be $layout
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 1 -Exactly
        Should -Invoke Start-VM -ModuleName PsDriver -Times 1 -Exactly
        $result.rescued | Should -BeTrue
        $result.root_disk_path | Should -BeNullOrEmpty
    }

    It 'starts an already rescued VM that is off' {
        $null = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue
        $PsdTest.State = 'Off'
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue -RootDiskPath $PsdTest.Root
        $result.state | Should -Be 'Running'
        $result.root_disk_path | Should -Be $PsdTest.Root
    }

    It 'refuses a VHD rescue disk for a generation 2 VM' {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath ($PsdTest.Dir + 'root-rescue.vhd') } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.RescueImageUnacceptable'
        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'fails with ObjectNotFound when the <What> file is missing' -ForEach @(
        @{ What = 'rescue disk'; Parameters = @{ RescueDiskPath = 'C:\missing\rescue.vhdx' }; ErrorId = 'PsDriver.RescueDiskNotFound' }
        @{ What = 'config drive'; Parameters = @{ RescueDiskPath = 'C:\OpenStack\Instances\instance-00000001\root-rescue.vhdx'; ConfigDrivePath = 'C:\missing\cd.iso' }; ErrorId = 'PsDriver.ConfigDriveNotFound' }
    ) {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' @Parameters } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be $ErrorId
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'refuses an instance booted from a volume' {
        $PsdTest.Drives = @(
            New-FakeDrive -Kind 'HardDisk' -Path 'Disk 2 20.00 GB Bus 0 Lun 0 Target 0' -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 0 -DiskNumber 2
        )
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.InstanceNotRescuable'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'fails with ObjectNotFound for a missing VM' {
        $failure = { & $script:ScriptPath -Name 'instance-00000099' -RescueDiskPath $PsdTest.Rescue } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'changes nothing with -WhatIf' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue -WhatIf
        Assert-MatchesContract $result
        $result.rescued | Should -BeFalse
        $result.boot_disk_path | Should -Be $PsdTest.Root
        (Get-FakeSlot 'SCSI' 0 0).Path | Should -Be $PsdTest.Root
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'makes the rescue disk over the rescue image and writes the rescue config drive' {
        $PsdTest.Image = 'C:\OpenStack\Instances\_base\rescue.vhdx'
        $PsdTest.NewRescue = $PsdTest.Dir + 'root-rescue-new.vhdx'
        $PsdTest.Files = @($PsdTest.Files) + $PsdTest.Image
        $configPath = Join-Path -Path $TestDrive -ChildPath 'configdrive-rescue.vhd'
        $bytes = [System.Text.Encoding]::ASCII.GetBytes('rescue config-2')
        Mock New-VHD { $PsdTest.Files = @($PsdTest.Files) + $Path }
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.NewRescue -RescueImagePath $PsdTest.Image `
            -ConfigDrivePath $configPath -ConfigDriveBase64 ([System.Convert]::ToBase64String($bytes)) -OriginalConfigDrivePath $PsdTest.ConfigDrive
        Assert-MatchesContract $result
        Should -Invoke New-VHD -Times 1 -Exactly -ParameterFilter {
            $Path -eq $PsdTest.NewRescue -and $ParentPath -eq $PsdTest.Image -and $Differencing
        }
        [System.IO.File]::ReadAllBytes($configPath) | Should -Be $bytes
        (Get-FakeSlot 'SCSI' 0 0).Path | Should -Be $PsdTest.NewRescue
        $result.config_drive_path | Should -Be $configPath
    }

    It 'refuses a missing rescue image before changing anything' {
        Mock New-VHD { }
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath ($PsdTest.Dir + 'root-rescue-new.vhdx') -RescueImagePath 'C:\missing.vhdx' } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.RescueImageNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        Should -Invoke New-VHD -Times 0 -Exactly
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'refuses ConfigDriveBase64 without ConfigDrivePath' {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue -ConfigDriveBase64 'Q0QwMDE=' } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.InvalidConfigDrive'
        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
        $result.rescued | Should -BeTrue
    }
}
