BeforeDiscovery {
    $contractFile = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts/Remove-InstanceRescue.contract.json'
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
    $script:ScriptPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Remove-InstanceRescue.ps1'
    $contractPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Remove-InstanceRescue.contract.json'
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
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMDvdDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Add-VMHardDiskDrive' -Parameter 'VM', 'ControllerType', 'ControllerNumber', 'ControllerLocation', 'Path', '-Passthru'
    Add-CommandStub -Name 'Add-VMDvdDrive' -Parameter 'VM', 'ControllerNumber', 'ControllerLocation', 'Path', '-Passthru'
    Add-CommandStub -Name 'Remove-VMHardDiskDrive' -Parameter 'VMHardDiskDrive'
    Add-CommandStub -Name 'Remove-VMDvdDrive' -Parameter 'VMDvdDrive'
    Add-CommandStub -Name 'Set-VMDvdDrive' -Parameter 'VMDvdDrive', 'Path'
    Add-CommandStub -Name 'Get-VMScsiController' -Parameter 'VM'
    Add-CommandStub -Name 'Add-VMScsiController' -Parameter 'VM'
    Add-CommandStub -Name 'Set-VMFirmware' -Parameter 'VM', 'FirstBootDevice'
    Add-CommandStub -Name 'Start-VM' -Parameter 'VM'
    Add-CommandStub -Name 'Stop-VM' -Parameter 'VM', '-TurnOff', '-Force'
    Add-CommandStub -Name 'Resume-VM' -Parameter 'VM'
    Add-CommandStub -Name 'Remove-VMSavedState' -Parameter 'VM'

    $PsdTest.Dir = 'C:\OpenStack\Instances\instance-00000001\'

    function New-FakeDrive {
        param(
            [string]$Kind,
            [AllowNull()]
            [string]$Path,
            [string]$ControllerType,
            [int]$ControllerNumber,
            [int]$ControllerLocation,
            [object]$DiskNumber = $null
        )
        $PsdTest.DriveKey++
        [pscustomobject]@{
            Key                = $PsdTest.DriveKey
            Kind               = $Kind
            Path               = $Path
            ControllerType     = $ControllerType
            ControllerNumber   = $ControllerNumber
            ControllerLocation = $ControllerLocation
            DiskNumber         = $DiskNumber
        }
    }

    function Add-FakeDrive {
        param(
            [string]$Kind,
            [string]$Path,
            [string]$ControllerType,
            [int]$ControllerNumber,
            [int]$ControllerLocation
        )
        $taken = @($PsdTest.Drives | Where-Object {
                $_.ControllerType -eq $ControllerType -and $_.ControllerNumber -eq $ControllerNumber -and
                $_.ControllerLocation -eq $ControllerLocation
            })
        if ($taken.Count -gt 0) {
            throw "Slot $ControllerType ${ControllerNumber}:$ControllerLocation is in use."
        }
        if ($ControllerType -eq 'SCSI' -and @($PsdTest.ScsiControllers | Where-Object { $_.ControllerNumber -eq $ControllerNumber }).Count -eq 0) {
            throw "No SCSI controller $ControllerNumber."
        }
        $drive = New-FakeDrive -Kind $Kind -Path $Path -ControllerType $ControllerType -ControllerNumber $ControllerNumber -ControllerLocation $ControllerLocation
        $PsdTest.Drives = @($PsdTest.Drives) + $drive
        $drive
    }

    function Remove-FakeDrive {
        param(
            [object]$Drive
        )
        $key = @($Drive)[0].Key
        $PsdTest.Drives = @($PsdTest.Drives | Where-Object { $_.Key -ne $key })
    }

    # The drive in a slot, or $null.
    function Get-FakeSlot {
        param(
            [string]$ControllerType,
            [int]$ControllerNumber,
            [int]$ControllerLocation
        )
        @($PsdTest.Drives | Where-Object {
                $_.ControllerType -eq $ControllerType -and $_.ControllerNumber -eq $ControllerNumber -and
                $_.ControllerLocation -eq $ControllerLocation
            }) | Select-Object -First 1
    }
}

AfterAll {
    foreach ($stub in $script:Stubs) {
        Remove-Item -Path ('function:global:' + $stub) -ErrorAction SilentlyContinue
    }
}

Describe 'Remove-InstanceRescue' {
    BeforeEach {
        $PsdTest.DriveKey = 0
        $PsdTest.State = 'Running'
        $PsdTest.Generation = 2
        $PsdTest.FirstBoot = $null
        $PsdTest.Deleted = @()
        $PsdTest.ScsiControllers = @([pscustomobject]@{ ControllerNumber = 0 })
        $PsdTest.Root = $PsdTest.Dir + 'root.vhdx'
        $PsdTest.Rescue = $PsdTest.Dir + 'root-rescue.vhdx'
        $PsdTest.ConfigDrive = $PsdTest.Dir + 'configdrive.iso'
        $PsdTest.RescueConfigDrive = $PsdTest.Dir + 'configdrive-rescue.iso'
        $PsdTest.Files = @($PsdTest.Root, $PsdTest.Rescue, $PsdTest.ConfigDrive, $PsdTest.RescueConfigDrive)
        # the layout Set-InstanceRescue leaves on a generation 2 VM
        $PsdTest.Drives = @(
            New-FakeDrive -Kind 'HardDisk' -Path $PsdTest.Rescue -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 0
            New-FakeDrive -Kind 'DvdDrive' -Path $PsdTest.RescueConfigDrive -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 1
            New-FakeDrive -Kind 'HardDisk' -Path ($PsdTest.Dir + 'eph0.vhdx') -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 2
            New-FakeDrive -Kind 'HardDisk' -Path $PsdTest.Root -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 3
        )
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
        Mock Get-VMHardDiskDrive { @($PsdTest.Drives | Where-Object { $_.Kind -eq 'HardDisk' }) } -RemoveParameterType 'VM'
        Mock Get-VMDvdDrive { @($PsdTest.Drives | Where-Object { $_.Kind -eq 'DvdDrive' }) } -RemoveParameterType 'VM'
        Mock Add-VMHardDiskDrive {
            $drive = Add-FakeDrive -Kind 'HardDisk' -Path $Path -ControllerType ([string]$ControllerType) `
                -ControllerNumber $ControllerNumber -ControllerLocation $ControllerLocation
            if ($Passthru) {
                $drive
            }
        } -RemoveParameterType 'VM'
        Mock Add-VMDvdDrive {
            $type = 'SCSI'
            if ($PsdTest.Generation -eq 1) {
                $type = 'IDE'
            }
            $drive = Add-FakeDrive -Kind 'DvdDrive' -Path $Path -ControllerType $type `
                -ControllerNumber $ControllerNumber -ControllerLocation $ControllerLocation
            if ($Passthru) {
                $drive
            }
        } -RemoveParameterType 'VM'
        Mock Remove-VMHardDiskDrive { Remove-FakeDrive -Drive $VMHardDiskDrive } -RemoveParameterType 'VMHardDiskDrive'
        Mock Remove-VMDvdDrive { Remove-FakeDrive -Drive $VMDvdDrive } -RemoveParameterType 'VMDvdDrive'
        Mock Set-VMDvdDrive { @($VMDvdDrive)[0].Path = $Path } -RemoveParameterType 'VMDvdDrive'
        Mock Get-VMScsiController { @($PsdTest.ScsiControllers) } -RemoveParameterType 'VM'
        Mock Add-VMScsiController {
            $PsdTest.ScsiControllers = @($PsdTest.ScsiControllers) + [pscustomobject]@{ ControllerNumber = @($PsdTest.ScsiControllers).Count }
        } -RemoveParameterType 'VM'
        Mock Set-VMFirmware { $PsdTest.FirstBoot = @($FirstBootDevice)[0].Path } -RemoveParameterType 'VM', 'FirstBootDevice'
        Mock Start-VM {
            if ($PsdTest.State -notin @('Off', 'Saved')) {
                throw 'The operation cannot be performed while the object is in its current state.'
            }
            $PsdTest.State = 'Running'
        } -RemoveParameterType 'VM'
        Mock Stop-VM { $PsdTest.State = 'Off' } -RemoveParameterType 'VM'
        Mock Resume-VM { $PsdTest.State = 'Running' } -RemoveParameterType 'VM'
        Mock Remove-VMSavedState { $PsdTest.State = 'Off' } -RemoveParameterType 'VM'
        Mock Test-Path { @($PsdTest.Files | Where-Object { $_ -eq $LiteralPath }).Count -gt 0 } -ParameterFilter { $null -ne $LiteralPath }
        Mock Remove-Item { $PsdTest.Deleted += @($LiteralPath) } -ParameterFilter { $null -ne $LiteralPath }
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
        Should -Invoke Stop-VM -Times 1 -Exactly
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
        Should -Invoke Add-VMDvdDrive -Times 0 -Exactly
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
        Should -Invoke Stop-VM -Times 0 -Exactly
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
        Should -Invoke Stop-VM -Times 0 -Exactly
        Should -Invoke Remove-Item -Times 0 -Exactly
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
        $result.rescued | Should -BeFalse
    }
}
