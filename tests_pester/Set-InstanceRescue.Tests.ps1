BeforeDiscovery {
    $contractFile = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts/Set-InstanceRescue.contract.json'
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
    $script:ScriptPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Set-InstanceRescue.ps1'
    $contractPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Set-InstanceRescue.contract.json'
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
    Add-CommandStub -Name 'New-VHD' -Parameter 'Path', 'ParentPath', '-Differencing'

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

Describe 'Set-InstanceRescue' {
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
        $PsdTest.Files = @($PsdTest.Root, $PsdTest.Rescue, $PsdTest.ConfigDrive, $PsdTest.RescueConfigDrive, ($PsdTest.Dir + 'root-rescue.vhd'))
        $PsdTest.Drives = @(
            New-FakeDrive -Kind 'HardDisk' -Path $PsdTest.Root -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 0
            New-FakeDrive -Kind 'DvdDrive' -Path $PsdTest.ConfigDrive -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 1
            New-FakeDrive -Kind 'HardDisk' -Path ($PsdTest.Dir + 'eph0.vhdx') -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 2
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
        Should -Invoke Stop-VM -Times 1 -Exactly
        Should -Invoke Start-VM -Times 1 -Exactly
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
        Should -Invoke Add-VMScsiController -Times 1 -Exactly
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
        Should -Invoke Remove-VMSavedState -Times 1 -Exactly
        Should -Invoke Stop-VM -Times 0 -Exactly
        $PsdTest.State | Should -Be 'Running'
    }

    It 'changes no disks when the rescue disk is already attached' {
        $null = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue
        Mock Add-VMHardDiskDrive { throw 'must not be called' } -RemoveParameterType 'VM'
        $layout = @($PsdTest.Drives | ForEach-Object { '{0}:{1}:{2}={3}' -f $_.ControllerType, $_.ControllerNumber, $_.ControllerLocation, $_.Path })
        $result = & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue
        Assert-MatchesContract $result
        @($PsdTest.Drives | ForEach-Object { '{0}:{1}:{2}={3}' -f $_.ControllerType, $_.ControllerNumber, $_.ControllerLocation, $_.Path }) |
            Should -Be $layout
        Should -Invoke Stop-VM -Times 1 -Exactly
        Should -Invoke Start-VM -Times 1 -Exactly
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
        Should -Invoke Stop-VM -Times 0 -Exactly
    }

    It 'fails with ObjectNotFound when the <What> file is missing' -ForEach @(
        @{ What = 'rescue disk'; Parameters = @{ RescueDiskPath = 'C:\missing\rescue.vhdx' }; ErrorId = 'PsDriver.RescueDiskNotFound' }
        @{ What = 'config drive'; Parameters = @{ RescueDiskPath = 'C:\OpenStack\Instances\instance-00000001\root-rescue.vhdx'; ConfigDrivePath = 'C:\missing\cd.iso' }; ErrorId = 'PsDriver.ConfigDriveNotFound' }
    ) {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' @Parameters } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be $ErrorId
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        Should -Invoke Stop-VM -Times 0 -Exactly
    }

    It 'refuses an instance booted from a volume' {
        $PsdTest.Drives = @(
            New-FakeDrive -Kind 'HardDisk' -Path 'Disk 2 20.00 GB Bus 0 Lun 0 Target 0' -ControllerType 'SCSI' -ControllerNumber 0 -ControllerLocation 0 -DiskNumber 2
        )
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.InstanceNotRescuable'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
        Should -Invoke Stop-VM -Times 0 -Exactly
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
        Should -Invoke Stop-VM -Times 0 -Exactly
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
        Should -Invoke Stop-VM -Times 0 -Exactly
    }

    It 'refuses ConfigDriveBase64 without ConfigDrivePath' {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -RescueDiskPath $PsdTest.Rescue -ConfigDriveBase64 'Q0QwMDE=' } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.InvalidConfigDrive'
        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        Should -Invoke Stop-VM -Times 0 -Exactly
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
        $result.rescued | Should -BeTrue
    }
}
