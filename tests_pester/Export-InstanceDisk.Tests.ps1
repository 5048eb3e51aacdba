BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Export-InstanceDisk')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Export-InstanceDisk'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Export-InstanceDisk'
    Import-PsDriverModule
    $script:Uuid = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f'

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMDvdDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VHD' -Parameter 'Path'
    Add-CommandStub -Name 'Stop-VM' -Parameter 'VM', '-TurnOff', '-Force'
    Add-CommandStub -Name 'Remove-VM' -Parameter 'VM', '-Force'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Export-InstanceDisk' {
    BeforeEach {
        $script:Root = New-TestRoot
        $script:Dir = Join-Path -Path $script:Root -ChildPath 'instance-0000002a'
        $script:Revert = "$($script:Dir)_revert"
        $script:PsdTest = @{
            VmExists = $true
            Removed  = 0
            RootPath = New-TestFile -Path (Join-Path -Path $script:Dir -ChildPath 'root.vhdx')
            Size     = 20GB
        }
        $null = New-TestFile -Path (Join-Path -Path $script:Dir -ChildPath 'eph0.vhdx')
        $null = New-TestFile -Path (Join-Path -Path $script:Dir -ChildPath 'console.log')

        Mock Get-VM {
            if ($PsdTest.VmExists) {
                [pscustomobject]@{ Name = 'instance-0000002a'; Id = [guid]::NewGuid(); State = 'Off'; Generation = 2; Notes = $script:Uuid }
            }
        }
        Mock Get-VMHardDiskDrive {
            [pscustomobject]@{ Path = $PsdTest.RootPath; DiskNumber = $null; ControllerType = 'SCSI'; ControllerNumber = 0; ControllerLocation = 0 }
        }
        Mock Get-VMDvdDrive { }
        Mock Get-VHD {
            $size = 1GB
            if ($Path -like '*root*') {
                $size = $PsdTest.Size
            }
            [pscustomobject]@{ Path = $Path; Size = $size; VhdFormat = 'VHDX'; VhdType = 'Dynamic'; ParentPath = '' }
        }
        Mock Stop-VM { }
        Mock Remove-VM { $PsdTest.Removed++ }
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $params = ConvertTo-TestValue -Value $Example -Root $script:Root
        $null = New-Item -ItemType Directory -Path $params['InstanceDir'] -Force

        $result = & $script:ScriptPath @params

        Assert-MatchesContract -Result $result
    }

    It 'removes the VM and keeps the disks in the revert folder' {
        $result = & $script:ScriptPath -Name 'instance-0000002a' -InstanceUuid $script:Uuid -InstanceDir $script:Dir -RevertDir $script:Revert -RootSizeBytes 40GB

        Assert-MatchesContract -Result $result
        $PsdTest.Removed | Should -Be 1
        Test-Path -LiteralPath $script:Dir | Should -BeFalse
        Test-Path -LiteralPath (Join-Path -Path $script:Revert -ChildPath 'root.vhdx') | Should -BeTrue
        $result.folder | Should -Be $script:Revert
        @($result.disks | ForEach-Object { $_.name }) | Should -Be @('eph0.vhdx', 'root.vhdx')
        @($result.disks | Where-Object { $_.root }).Count | Should -Be 1
    }

    It 'copies the disks into CopyTo' {
        $result = & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $script:Dir -RevertDir $script:Revert -CopyTo $script:Dir

        @($result.copied).Count | Should -Be 2
        Test-Path -LiteralPath (Join-Path -Path $script:Dir -ChildPath 'root.vhdx') | Should -BeTrue
        Test-Path -LiteralPath (Join-Path -Path $script:Revert -ChildPath 'root.vhdx') | Should -BeTrue
    }

    It 'refuses to shrink the root disk before changing anything' {
        $failure = { & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $script:Dir -RevertDir $script:Revert -RootSizeBytes 10GB } |
            Should -Throw -ErrorId 'PsDriver.RootDiskTooSmall' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $failure.Exception.Message | Should -BeLike '*never shrunk*'
        $PsdTest.Removed | Should -Be 0
        Test-Path -LiteralPath $script:Dir | Should -BeTrue
    }

    It 'is repeatable once the VM is gone and the files wait in the revert folder' {
        $null = & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $script:Dir -RevertDir $script:Revert
        $PsdTest.VmExists = $false

        $result = & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $script:Dir -RevertDir $script:Revert

        $result.vm_existed | Should -BeFalse
        $result.folder | Should -Be $script:Revert
        @($result.disks).Count | Should -Be 2
    }

    It 'keeps the files in place with -KeepInPlace' {
        $result = & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $script:Dir -KeepInPlace

        $result.folder | Should -Be $script:Dir
        Test-Path -LiteralPath $script:Revert | Should -BeFalse
    }

    It 'refuses a revert folder that is not next to the instance folder' {
        { & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $script:Dir -RevertDir (Join-Path -Path $script:Dir -ChildPath 'inside') } |
            Should -Throw -ErrorId 'PsDriver.UnsafeInstanceDir'
    }

    It 'leaves a VM with another instance UUID alone' {
        { & $script:ScriptPath -Name 'instance-0000002a' -InstanceUuid '11111111-2222-3333-4444-555555555555' -InstanceDir $script:Dir -RevertDir $script:Revert } |
            Should -Throw -ErrorId 'PsDriver.InstanceUuidMismatch'
        $PsdTest.Removed | Should -Be 0
    }
}
