BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'New-InstanceImage')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'New-InstanceImage'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'New-InstanceImage'
    Import-PsDriverModule

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'
    Add-CommandStub -Name 'Set-VM' -Parameter 'VM', 'CheckpointType'
    Add-CommandStub -Name 'Checkpoint-VM' -Parameter 'VM', 'SnapshotName', '-Passthru'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM', 'VMSnapshot'
    Add-CommandStub -Name 'Get-VMDvdDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VHD' -Parameter 'Path'
    Add-CommandStub -Name 'Convert-VHD' -Parameter 'Path', 'DestinationPath', 'VHDType'
    Add-CommandStub -Name 'Remove-VMSnapshot' -Parameter 'VMSnapshot'
}

AfterAll {
    Remove-CommandStub
}

Describe 'New-InstanceImage' {
    BeforeEach {
        # Shared with the mocks through one uniquely named variable (see Resize-InstanceDisk.Tests.ps1).
        $script:Root = New-TestRoot
        $script:PsdTest = @{
            Generation     = 2
            CheckpointType = 'Production'
            TypesSet       = [System.Collections.Generic.List[string]]::new()
            RootPath       = New-TestFile -Path (Join-Path -Path $script:Root -ChildPath 'instance-0000002a/root.vhdx')
            Frozen         = $null
            ConvertFails   = $false
            CheckpointFails = $false
            Snapshot       = $null
        }
        $PsdTest.Frozen = $PsdTest.RootPath
        $script:Folder = Join-Path -Path $script:Root -ChildPath '_snapshots'

        Mock Get-VM {
            [pscustomobject]@{
                Name           = 'instance-0000002a'
                Id             = [guid]'0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b'
                State          = 'Running'
                Generation     = $PsdTest.Generation
                CheckpointType = $PsdTest.CheckpointType
            }
        }
        Mock Set-VM { $PsdTest.TypesSet.Add([string]$CheckpointType) }
        Mock Checkpoint-VM {
            if ($PsdTest.CheckpointFails) {
                throw 'The operation cannot be performed while the virtual machine is in its current state.'
            }
            $PsdTest.Snapshot = [pscustomobject]@{ Name = $SnapshotName; Id = [guid]::NewGuid() }
            $PsdTest.Snapshot
        }
        Mock Get-VMHardDiskDrive {
            $type = 'SCSI'
            if ($PsdTest.Generation -eq 1) {
                $type = 'IDE'
            }
            $path = $PsdTest.RootPath
            if ($null -ne $VMSnapshot) {
                $path = $PsdTest.Frozen
            }
            [pscustomobject]@{ Path = $path; DiskNumber = $null; ControllerType = $type; ControllerNumber = 0; ControllerLocation = 0 }
        }
        Mock Get-VMDvdDrive { }
        Mock Get-VHD { [pscustomobject]@{ Path = $Path; Size = 10GB; VhdFormat = 'VHDX'; VhdType = 'Differencing' } }
        Mock Convert-VHD {
            $null = New-Item -ItemType File -Path $DestinationPath -Force
            if ($PsdTest.ConvertFails) {
                throw 'There is not enough space on the disk.'
            }
        }
        Mock Remove-VMSnapshot { }
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $params = ConvertTo-TestValue -Value $Example -Root $script:Root

        $result = & $script:ScriptPath @params

        Assert-MatchesContract -Result $result
    }

    It 'converts the frozen root disk and removes the checkpoint' {
        $PsdTest.Frozen = Join-Path -Path $script:Root -ChildPath 'instance-0000002a/frozen.vhdx'

        $result = & $script:ScriptPath -Name 'instance-0000002a' -DestinationFolder $script:Folder -FileStem 'img1'

        Assert-MatchesContract -Result $result
        $result.path | Should -Be (Join-Path -Path $script:Folder -ChildPath 'img1.vhdx')
        $result.format | Should -Be 'vhdx'
        $result.checkpoint_removed | Should -BeTrue
        $result.virtual_size_bytes | Should -Be 10GB
        Should -Invoke Convert-VHD -Times 1 -Exactly -ParameterFilter { $Path -eq $PsdTest.Frozen -and $VHDType -eq 'Dynamic' }
        Should -Invoke Checkpoint-VM -Times 1 -Exactly -ParameterFilter { $SnapshotName -eq 'psdriver-snapshot-img1' }
        Should -Invoke Remove-VMSnapshot -Times 1 -Exactly
    }

    It 'takes a standard checkpoint and gives the VM its checkpoint type back' {
        $null = & $script:ScriptPath -Name 'instance-0000002a' -DestinationFolder $script:Folder -FileStem 'img1'

        @($PsdTest.TypesSet) | Should -Be @('Standard', 'Production')
    }

    It 'removes the checkpoint and the partial file when the conversion fails' {
        $PsdTest.ConvertFails = $true

        { & $script:ScriptPath -Name 'instance-0000002a' -DestinationFolder $script:Folder -FileStem 'img1' } | Should -Throw '*not enough space*'

        Should -Invoke Remove-VMSnapshot -Times 1 -Exactly
        Test-Path -LiteralPath (Join-Path -Path $script:Folder -ChildPath 'img1.vhdx') | Should -BeFalse
    }

    It 'reports a checkpoint Hyper-V refuses as PsDriver.CheckpointFailed' {
        $PsdTest.CheckpointFails = $true

        $failure = { & $script:ScriptPath -Name 'instance-0000002a' -DestinationFolder $script:Folder -FileStem 'img1' } |
            Should -Throw -ErrorId 'PsDriver.CheckpointFailed' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
        Should -Invoke Convert-VHD -Times 0 -Exactly
        @($PsdTest.TypesSet) | Should -Be @('Standard', 'Production')
    }

    It 'refuses an existing image file' {
        $null = New-TestFile -Path (Join-Path -Path $script:Folder -ChildPath 'img1.vhdx')

        { & $script:ScriptPath -Name 'instance-0000002a' -DestinationFolder $script:Folder -FileStem 'img1' } |
            Should -Throw -ErrorId 'PsDriver.ImageExists'
        Should -Invoke Checkpoint-VM -Times 0 -Exactly
    }

    It 'reports a VM without a root disk file' {
        Mock Get-VMHardDiskDrive { }

        { & $script:ScriptPath -Name 'instance-0000002a' -DestinationFolder $script:Folder -FileStem 'img1' } |
            Should -Throw -ErrorId 'PsDriver.RootDiskNotFound'
    }

    It 'changes nothing with -WhatIf' {
        $result = & $script:ScriptPath -Name 'instance-0000002a' -DestinationFolder $script:Folder -FileStem 'img1' -WhatIf

        Assert-MatchesContract -Result $result
        $result.path | Should -BeNullOrEmpty
        Should -Invoke Checkpoint-VM -Times 0 -Exactly
    }
}
