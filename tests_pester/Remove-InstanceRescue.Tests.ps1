BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Remove-InstanceRescue')
}

BeforeAll {
    # State shared with the mocks. Mock bodies run inside the tested script's scopes (its
    # $script: scope and StrictMode), so they reach it through one unqualified, uniquely
    # named variable; $script: here is this file's scope.
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Remove-InstanceRescue'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Remove-InstanceRescue'
    Import-PsDriverModule

    Add-FakeDriveCommandStub
}

AfterAll {
    Remove-CommandStub
}

Describe 'Remove-InstanceRescue' {
    BeforeEach {
        Register-FakeDriveHost
        $PsdTest.Files = @($PsdTest.Root, $PsdTest.Rescue, $PsdTest.ConfigDrive, $PsdTest.RescueConfigDrive)
        # the layout Set-InstanceRescue leaves on a generation 2 VM
        $PsdTest.Drives = @(
            New-FakeDrive -Kind 'HardDisk' -Path $PsdTest.Rescue -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 0
            New-FakeDrive -Kind 'DvdDrive' -Path $PsdTest.RescueConfigDrive -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 1
            New-FakeDrive -Kind 'HardDisk' -Path ($PsdTest.Dir + 'eph0.vhdx') -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 2
            New-FakeDrive -Kind 'HardDisk' -Path $PsdTest.Root -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 3
        )
    }

    It 'restores the original layout of a generation 2 VM and deletes the rescue files' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue -RootDiskPath $PsdTest.Root `
            -RescueConfigDrivePath $PsdTest.RescueConfigDrive -ConfigDrivePath $PsdTest.ConfigDrive
        Assert-MatchesContract $result
        (Get-FakeSlot 'SCSI' 0 0).Path | Should -Be $PsdTest.Root
        (Get-FakeSlot 'SCSI' 0 1).Path | Should -Be $PsdTest.ConfigDrive
        (Get-FakeSlot 'SCSI' 0 1).Kind | Should -Be 'DvdDrive'
        (Get-FakeSlot 'SCSI' 0 2).Path | Should -Be ($PsdTest.Dir + 'eph0.vhdx')
        (Get-FakeSlot 'SCSI' 0 3) | Should -BeNullOrEmpty
        @($PsdTest.Drives | Where-Object { $_.Path -in @($PsdTest.Rescue, $PsdTest.RescueConfigDrive) }).Count | Should -Be 0
        $PsdTest.FirstBoot | Should -Be $PsdTest.Root
        $PsdTest.Deleted | Should -Contain $PsdTest.Rescue
        $PsdTest.Deleted | Should -Contain $PsdTest.RescueConfigDrive
        $PsdTest.Deleted | Should -Not -Contain $PsdTest.ConfigDrive
        $PsdTest.State | Should -Be 'Running'
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 1 -Exactly
        $result.rescued | Should -BeFalse
        $result.boot_disk_path | Should -Be $PsdTest.Root
        $result.root_disk_path | Should -Be $PsdTest.Root
        $result.rescue_disk_path | Should -BeNullOrEmpty
        $result.config_drive_path | Should -Be $PsdTest.ConfigDrive
        $result.state | Should -Be 'Running'
        $result.devices.Count | Should -Be 3
    }

    It 'finds the root disk by its file name without RootDiskPath' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue
        Assert-MatchesContract $result
        (Get-FakeSlot 'SCSI' 0 0).Path | Should -Be $PsdTest.Root
        $result.root_disk_path | Should -Be $PsdTest.Root
    }

    It 'puts the root disk back on IDE 0:0 of a generation 1 VM' {
        $PsdTest.Generation = 1
        $rescueVhd = $PsdTest.Dir + 'root-rescue.vhd'
        $PsdTest.Files += $rescueVhd
        $PsdTest.Drives = @(
            New-FakeDrive -Kind 'HardDisk' -Path $rescueVhd -ControllerType 'IDE' -ControllerNumber 0 -ControllerLocation 0
            New-FakeDrive -Kind 'DvdDrive' -Path $PsdTest.RescueConfigDrive -ControllerType 'IDE' -ControllerNumber 1 -ControllerLocation 0
            New-FakeDrive -Kind 'HardDisk' -Path $PsdTest.Root -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 0
        )
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $rescueVhd -RootDiskPath $PsdTest.Root `
            -RescueConfigDrivePath $PsdTest.RescueConfigDrive -ConfigDrivePath $PsdTest.ConfigDrive
        Assert-MatchesContract $result
        (Get-FakeSlot 'IDE' 0 0).Path | Should -Be $PsdTest.Root
        (Get-FakeSlot 'IDE' 1 0).Path | Should -Be $PsdTest.ConfigDrive
        (Get-FakeSlot 'SCSI' 0 0) | Should -BeNullOrEmpty
        Should -Invoke Set-VMFirmware -Times 0 -Exactly
        $PsdTest.Deleted | Should -Contain $rescueVhd
    }

    It 'attaches a detached root disk (after a rescue that failed half way)' {
        $PsdTest.Drives = @($PsdTest.Drives | Where-Object { $_.Path -ne $PsdTest.Root })
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue -RootDiskPath $PsdTest.Root
        Assert-MatchesContract $result
        (Get-FakeSlot 'SCSI' 0 0).Path | Should -Be $PsdTest.Root
        $PsdTest.FirstBoot | Should -Be $PsdTest.Root
    }

    It 'does nothing to the disks of a VM that is not rescued' {
        $PsdTest.State = 'Off'
        $PsdTest.Drives = @(
            New-FakeDrive -Kind 'HardDisk' -Path $PsdTest.Root -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 0
            New-FakeDrive -Kind 'DvdDrive' -Path $PsdTest.ConfigDrive -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 1
        )
        $PsdTest.Files = @($PsdTest.Root, $PsdTest.ConfigDrive)
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue -RootDiskPath $PsdTest.Root `
            -RescueConfigDrivePath $PsdTest.RescueConfigDrive -ConfigDrivePath $PsdTest.ConfigDrive
        Assert-MatchesContract $result
        Should -Invoke Add-VMHardDiskDrive -Times 0 -Exactly
        Should -Invoke Add-VMHardDiskDrive -ModuleName PsDriver -Times 0 -Exactly
        Should -Invoke Add-VMDvdDrive -ModuleName PsDriver -Times 0 -Exactly
        Should -Invoke Remove-Item -Times 0 -Exactly
        $PsdTest.Drives.Count | Should -Be 2
        $result.state | Should -Be 'Running'
        $result.config_drive_path | Should -Be $PsdTest.ConfigDrive
    }

    It 'fails with ObjectNotFound when the root disk cannot be found' {
        $PsdTest.Drives = @($PsdTest.Drives | Where-Object { $_.Path -ne $PsdTest.Root })
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.RootDiskNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'fails with InvalidArgument when several disks are named root' {
        $PsdTest.Drives = @($PsdTest.Drives) + (New-FakeDrive -Kind 'HardDisk' -Path 'D:\other\root.vhd' -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 4)
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.RootDiskAmbiguous'
        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }

    It 'fails with InvalidOperation when another disk holds the boot slot' {
        $PsdTest.Drives = @(
            New-FakeDrive -Kind 'HardDisk' -Path ($PsdTest.Dir + 'eph0.vhdx') -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 0
            New-FakeDrive -Kind 'HardDisk' -Path $PsdTest.Root -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 1
        )
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue -RootDiskPath $PsdTest.Root } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.BootSlotOccupied'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
    }

    It 'fails with ObjectNotFound for a missing VM' {
        $failure = { & $script:ScriptPath -Name 'instance-00000099' -RescueDiskPath $PsdTest.Rescue } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'changes nothing with -WhatIf' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue -RootDiskPath $PsdTest.Root -WhatIf
        Assert-MatchesContract $result
        $result.rescued | Should -BeTrue
        $result.rescue_disk_path | Should -Be $PsdTest.Rescue
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
        Should -Invoke Remove-Item -Times 0 -Exactly
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
        $result.rescued | Should -BeFalse
    }
}
