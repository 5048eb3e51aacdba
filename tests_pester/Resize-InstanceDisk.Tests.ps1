BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Resize-InstanceDisk')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Resize-InstanceDisk'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Resize-InstanceDisk'
    Import-PsDriverModule

    function New-FakeDisk {
        param(
            [Parameter(Mandatory)]
            [string]$Path,

            [Parameter(Mandatory)]
            [long]$Size,

            [string]$Type = 'Dynamic'
        )
        $null = New-Item -ItemType File -Path $Path -Force
        $format = 'VHD'
        if ($Path -match 'x$') {
            $format = 'VHDX'
        }
        $PsdTest.Vhds[(Get-FakeKey -Path $Path)] = [pscustomobject]@{ Path = $Path; Size = $Size; VhdFormat = $format; VhdType = $Type }
        $Path
    }

    Add-CommandStub -Name 'Get-VHD' -Parameter 'Path'
    Add-CommandStub -Name 'Resize-VHD' -Parameter 'Path', 'SizeBytes'
    Add-CommandStub -Name 'Get-VM'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Resize-InstanceDisk' {
    BeforeEach {
        # Shared with the mocks. Mock bodies run inside the tested script's scopes (its $script: scope
        # and StrictMode), so they reach this state through one unqualified, uniquely named variable.
        $script:PsdTest = @{
            Vhds    = @{}
            Failure = $null
            Vms     = @()
        }
        $script:Folder = Join-Path -Path $TestDrive -ChildPath ([guid]::NewGuid().ToString('N'))

        Mock Get-VHD {
            $vhd = $PsdTest.Vhds[(Get-FakeKey -Path $Path)]
            if ($null -eq $vhd) {
                throw "'$Path' is not a virtual hard disk."
            }
            $vhd
        }
        # A VM: Name, State and Drives (Path, ControllerType, ControllerNumber).
        Mock Get-VM { $PsdTest.Vms }
        Mock Get-VMHardDiskDrive { @($VM)[0].Drives } -RemoveParameterType 'VM'
        Mock Resize-VHD {
            if ($null -ne $PsdTest.Failure) {
                throw $PsdTest.Failure
            }
            $PsdTest.Vhds[(Get-FakeKey -Path $Path)].Size = $SizeBytes
        }
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $path = ConvertTo-TestPath -Path $Example['Path'] -Root $script:Folder
        $null = New-FakeDisk -Path $path -Size 10GB

        $result = & $script:ScriptPath -Path $path -SizeBytes $Example['SizeBytes']

        Assert-MatchesContract -Result $result
    }

    It 'grows a disk' {
        $path = New-FakeDisk -Path (Join-Path -Path $script:Folder -ChildPath 'root.vhdx') -Size 20GB -Type 'Differencing'

        $result = & $script:ScriptPath -Path $path -SizeBytes 40GB

        Assert-MatchesContract -Result $result
        $result.resized | Should -BeTrue
        $result.previous_size_bytes | Should -Be 20GB
        $result.size_bytes | Should -Be 40GB
        $result.format | Should -Be 'vhdx'
        $result.vhd_type | Should -Be 'Differencing'
        Should -Invoke Resize-VHD -Times 1 -Exactly -ParameterFilter { $SizeBytes -eq 40GB }
    }

    It 'does nothing when the size is already right' {
        $path = New-FakeDisk -Path (Join-Path -Path $script:Folder -ChildPath 'root.vhdx') -Size 20GB

        $result = & $script:ScriptPath -Path $path -SizeBytes 20GB

        Assert-MatchesContract -Result $result
        $result.resized | Should -BeFalse
        Should -Invoke Resize-VHD -Times 0 -Exactly
    }

    It 'never shrinks, and says both sizes' {
        $path = New-FakeDisk -Path (Join-Path -Path $script:Folder -ChildPath 'root.vhdx') -Size 40GB

        $failure = { & $script:ScriptPath -Path $path -SizeBytes 20GB } | Should -Throw -ErrorId 'PsDriver.RootDiskTooSmall' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $failure.Exception.Message | Should -BeLike "*$(20GB) bytes*"
        $failure.Exception.Message | Should -BeLike "*$(40GB) bytes*"
        $failure.Exception.Message | Should -BeLike '*never shrunk*'
        Should -Invoke Resize-VHD -Times 0 -Exactly
        $PsdTest.Vhds[(Get-FakeKey -Path $path)].Size | Should -Be 40GB
    }

    It 'refuses to grow a vhd differencing disk' {
        $path = New-FakeDisk -Path (Join-Path -Path $script:Folder -ChildPath 'root.vhd') -Size 20GB -Type 'Differencing'

        $failure = { & $script:ScriptPath -Path $path -SizeBytes 40GB } | Should -Throw -ErrorId 'PsDriver.DifferencingVhdResize' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        Should -Invoke Resize-VHD -Times 0 -Exactly
    }

    It 'grows a dynamic vhd' {
        $path = New-FakeDisk -Path (Join-Path -Path $script:Folder -ChildPath 'eph0.vhd') -Size 10GB

        $result = & $script:ScriptPath -Path $path -SizeBytes 15GB

        $result.format | Should -Be 'vhd'
        $result.size_bytes | Should -Be 15GB
    }

    It 'reports a missing disk' {
        $failure = { & $script:ScriptPath -Path (Join-Path -Path $script:Folder -ChildPath 'none.vhdx') -SizeBytes 1GB } |
            Should -Throw -ErrorId 'PsDriver.DiskNotFound' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'refuses a size that is not positive' {
        $path = New-FakeDisk -Path (Join-Path -Path $script:Folder -ChildPath 'root.vhdx') -Size 1GB

        { & $script:ScriptPath -Path $path -SizeBytes 0 } | Should -Throw -ErrorId 'PsDriver.InvalidDiskSize'
    }

    It 'turns a Hyper-V refusal into PsDriver.DiskResizeFailed with its message' {
        $path = New-FakeDisk -Path (Join-Path -Path $script:Folder -ChildPath 'root.vhdx') -Size 10GB
        $PsdTest.Failure = 'The disk is attached to an IDE controller of a running virtual machine.'

        $failure = { & $script:ScriptPath -Path $path -SizeBytes 20GB } | Should -Throw -ErrorId 'PsDriver.DiskResizeFailed' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $failure.Exception.Message | Should -BeLike '*IDE controller of a running virtual machine*'
    }

    It 'refuses a disk on <Controller> of a <State> VM before Resize-VHD' -ForEach @(
        @{ Controller = 'IDE'; File = 'root.vhdx'; State = 'Running' }
        @{ Controller = 'IDE'; File = 'root.vhdx'; State = 'Paused' }
        @{ Controller = 'SCSI'; File = 'root.vhd'; State = 'Running' }
    ) {
        $path = New-FakeDisk -Path (Join-Path -Path $script:Folder -ChildPath $File) -Size 10GB
        $PsdTest.Vms = @([pscustomobject]@{
                Name   = 'instance-00000001'
                State  = $State
                Drives = @([pscustomobject]@{ Path = $path.ToUpperInvariant(); ControllerType = $Controller; ControllerNumber = 0 })
            })

        $failure = { & $script:ScriptPath -Path $path -SizeBytes 20GB } | Should -Throw -ErrorId 'PsDriver.DiskResizeNeedsVMOff' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $failure.Exception.Message | Should -BeLike "*virtual machine 'instance-00000001' is $State*$Controller controller 0*"
        Should -Invoke Resize-VHD -Times 0 -Exactly
    }

    It 'grows a disk on <Controller> of a VM that is <State>' -ForEach @(
        @{ Controller = 'IDE'; State = 'Off' }
        @{ Controller = 'IDE'; State = 'Saved' }
        @{ Controller = 'SCSI'; State = 'Running' }
    ) {
        $path = New-FakeDisk -Path (Join-Path -Path $script:Folder -ChildPath 'root.vhdx') -Size 10GB
        $PsdTest.Vms = @([pscustomobject]@{
                Name   = 'instance-00000001'
                State  = $State
                Drives = @([pscustomobject]@{ Path = $path; ControllerType = $Controller; ControllerNumber = 0 })
            })

        $result = & $script:ScriptPath -Path $path -SizeBytes 20GB

        $result.resized | Should -BeTrue
        Should -Invoke Resize-VHD -Times 1 -Exactly
    }

    It 'changes nothing with -WhatIf' {
        $path = New-FakeDisk -Path (Join-Path -Path $script:Folder -ChildPath 'root.vhdx') -Size 10GB

        $result = & $script:ScriptPath -Path $path -SizeBytes 20GB -WhatIf

        Assert-MatchesContract -Result $result
        $result.resized | Should -BeFalse
        $result.size_bytes | Should -Be 10GB
        Should -Invoke Resize-VHD -Times 0 -Exactly
    }
}
