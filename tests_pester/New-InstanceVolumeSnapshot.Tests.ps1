BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'New-InstanceVolumeSnapshot')
}

BeforeAll {
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverStorageFakes.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverVhdChainFakes.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'New-InstanceVolumeSnapshot'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'New-InstanceVolumeSnapshot'
    $script:Share = '\\fs01.example.org\cinder'
    $script:Volume = @{ volume_id = 'vol-smb'; type = 'smbfs'; share = $script:Share; file_name = 'volume-c2d3e4f5.vhdx' }
    Import-PsDriverModule
    Add-FakeStorageCommandStub
}

AfterAll {
    Remove-FakeStorageCommandStub
}

Describe 'New-InstanceVolumeSnapshot' {
    BeforeEach {
        Register-FakeStorageHost
        Register-FakeVhdChain -Link @('volume-c2d3e4f5.vhdx')
    }

    It 'puts the drive on a new differencing disk of the current file' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volume $script:Volume -NewFileName 'volume-c2d3e4f5.snap-1.vhdx'
        Assert-MatchesContract $result
        $result.created | Should -BeTrue
        $result.path | Should -Be "$script:Share\volume-c2d3e4f5.snap-1.vhdx"
        $PsdTest.Vhds[$result.path] | Should -Be "$script:Share\volume-c2d3e4f5.vhdx"
        @($PsdTest.Drives)[0].Path | Should -Be $result.path
    }

    It 'uses a differencing disk Cinder already made' {
        $PsdTest.Vhds["$script:Share\volume-c2d3e4f5.snap-1.vhdx"] = "$script:Share\volume-c2d3e4f5.vhdx"
        $PsdTest.Files = @($PsdTest.Vhds.Keys)
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volume $script:Volume -NewFileName 'volume-c2d3e4f5.snap-1.vhdx'
        $result.created | Should -BeFalse
        Should -Invoke New-VHD -Times 0 -Scope It
    }

    It 'refuses a running VM and changes nothing' {
        $PsdTest.State = 'Running'
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Volume $script:Volume -NewFileName 'volume-c2d3e4f5.snap-1.vhdx' } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VolumeSnapshotNeedsVMOff'
        @($PsdTest.Vhds.Keys).Count | Should -Be 1
    }

    It 'removes the file it made when switching the drive fails' {
        Register-TestMock -CommandName 'Set-VMHardDiskDrive' -RemoveParameterType 'VMHardDiskDrive' -MockWith { throw 'The operation failed.' }
        { & $script:ScriptPath -Name 'instance-00000001' -Volume $script:Volume -NewFileName 'volume-c2d3e4f5.snap-1.vhdx' } | Should -Throw
        @($PsdTest.Vhds.Keys) | Should -Be @("$script:Share\volume-c2d3e4f5.vhdx")
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
