BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Merge-InstanceVolumeSnapshot')
}

BeforeAll {
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverStorageFakes.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverVhdChainFakes.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Merge-InstanceVolumeSnapshot'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Merge-InstanceVolumeSnapshot'
    $script:Share = '\\fs01.example.org\cinder'
    Import-PsDriverModule
    Add-FakeStorageCommandStub
}

AfterAll {
    Remove-FakeStorageCommandStub
}

Describe 'Merge-InstanceVolumeSnapshot' {
    BeforeEach {
        Register-FakeStorageHost
        Register-FakeVhdChain -Link @('volume-c2d3e4f5.vhdx', 'volume-c2d3e4f5.snap-1.vhdx', 'volume-c2d3e4f5.snap-2.vhdx')
        $script:Volume = @{ volume_id = 'vol-smb'; type = 'smbfs'; share = $script:Share; file_name = 'volume-c2d3e4f5.snap-2.vhdx' }
    }

    It 'commits a snapshot below the active file into its parent' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volume $script:Volume -FileToMerge 'volume-c2d3e4f5.snap-1.vhdx' -MergeTargetFile 'volume-c2d3e4f5.vhdx'
        Assert-MatchesContract $result
        $result.path | Should -Be "$script:Share\volume-c2d3e4f5.snap-2.vhdx"
        $result.parent_path | Should -Be "$script:Share\volume-c2d3e4f5.vhdx"
        $PsdTest.Vhds.Contains("$script:Share\volume-c2d3e4f5.snap-1.vhdx") | Should -BeFalse
        @($PsdTest.Drives)[0].Path | Should -Be $result.path
    }

    It 'pulls the parent into the active file, which keeps its name' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volume $script:Volume -FileToMerge 'volume-c2d3e4f5.vhdx'
        $result.merged | Should -Be "$script:Share\volume-c2d3e4f5.snap-1.vhdx"
        $result.path | Should -Be "$script:Share\volume-c2d3e4f5.snap-2.vhdx"
        $result.parent_path | Should -Be "$script:Share\volume-c2d3e4f5.vhdx"
        @($PsdTest.Vhds.Keys).Count | Should -Be 2
        @($PsdTest.Drives)[0].Path | Should -Be $result.path
    }

    It 'pulls a base disk into the active file, which then has no parent' {
        Register-FakeVhdChain -Link @('volume-c2d3e4f5.vhdx', 'volume-c2d3e4f5.snap-1.vhdx')
        $volume = @{ volume_id = 'vol-smb'; type = 'smbfs'; share = $script:Share; file_name = 'volume-c2d3e4f5.snap-1.vhdx' }
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volume $volume
        Assert-MatchesContract $result
        $result.parent_path | Should -BeNullOrEmpty
        @($PsdTest.Vhds.Keys) | Should -Be @("$script:Share\volume-c2d3e4f5.snap-1.vhdx")
    }

    It 'refuses a file outside the chain' {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Volume $script:Volume -FileToMerge 'other.vhdx' } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.InvalidVolume'
        Should -Invoke Merge-VHD -Times 0 -Scope It
    }

    It 'refuses a running VM before merging' {
        $PsdTest.State = 'Running'
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Volume $script:Volume -FileToMerge 'volume-c2d3e4f5.vhdx' } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VolumeSnapshotNeedsVMOff'
        @($PsdTest.Vhds.Keys).Count | Should -Be 3
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $active = $Example['Volume']['file_name']
        $links = if ($Example.ContainsKey('MergeTargetFile')) { @($Example['MergeTargetFile'], $Example['FileToMerge'], $active) } else { @("$active.parent.vhdx", $active) }
        Register-FakeVhdChain -Link $links
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
