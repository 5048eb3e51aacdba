BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Get-CachedImage')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Get-CachedImage'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Get-CachedImage'
    Import-PsDriverModule
    # State shared with the mocks (see PsDriverTestHelpers.ps1).
    $script:PsdTest = @{}

    Add-FakeImageCacheCommandStub
}

AfterAll {
    Remove-CommandStub
}

Describe 'Get-CachedImage' {
    BeforeEach {
        Register-FakeImageCacheHost
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $cache = New-FakeCache
        $params = ConvertTo-TestValue -Value $Example -Root $cache.Root

        $result = & $script:ScriptPath @params

        Assert-MatchesContract -Result $result
        $result.exists | Should -BeTrue
    }

    It 'lists the images, sorted by name, and ignores other files' {
        $cache = New-FakeCache

        $result = & $script:ScriptPath -BasePath $cache.Base

        Assert-MatchesContract -Result $result
        $result.base_path | Should -Be $cache.Base
        @($result.images | ForEach-Object { $_.name }) | Should -Be @('a.vhdx', 'b_40.vhd', 'broken.vhdx', 'c.iso')
        @($result.not_found).Count | Should -Be 0
    }

    It 'reports format, type and sizes' {
        $cache = New-FakeCache

        $result = & $script:ScriptPath -BasePath $cache.Base
        $byName = @{}
        foreach ($image in $result.images) {
            $byName[$image.name] = $image
        }

        $byName['a.vhdx'].format | Should -Be 'vhdx'
        $byName['a.vhdx'].vhd_type | Should -Be 'Dynamic'
        $byName['a.vhdx'].virtual_size_bytes | Should -Be 2GB
        $byName['a.vhdx'].file_size_bytes | Should -Be 100
        $byName['a.vhdx'].path | Should -Be $cache.A
        $byName['b_40.vhd'].format | Should -Be 'vhd'
        $byName['b_40.vhd'].vhd_type | Should -Be 'Fixed'
        $byName['b_40.vhd'].virtual_size_bytes | Should -Be 40GB
        $byName['c.iso'].format | Should -Be 'iso'
        $byName['c.iso'].vhd_type | Should -BeNullOrEmpty
        $byName['c.iso'].virtual_size_bytes | Should -Be 2048
        $byName['broken.vhdx'].format | Should -Be 'vhdx'
        $byName['broken.vhdx'].vhd_type | Should -BeNullOrEmpty
        $byName['broken.vhdx'].virtual_size_bytes | Should -BeNullOrEmpty
    }

    It 'marks the parents of differencing disks and DVD images as in use, with the VM names sorted' {
        $cache = New-FakeCache

        $result = & $script:ScriptPath -BasePath $cache.Base
        $byName = @{}
        foreach ($image in $result.images) {
            $byName[$image.name] = $image
        }

        $byName['a.vhdx'].in_use | Should -BeTrue
        @($byName['a.vhdx'].used_by) | Should -Be @('vm1', 'vm3')
        $byName['c.iso'].in_use | Should -BeTrue
        @($byName['c.iso'].used_by) | Should -Be @('vm2')
        $byName['b_40.vhd'].in_use | Should -BeFalse
        @($byName['b_40.vhd'].used_by).Count | Should -Be 0
        $byName['broken.vhdx'].in_use | Should -BeFalse
    }

    It 'reads the VMs once, whatever their number' {
        $cache = New-FakeCache

        $null = & $script:ScriptPath -BasePath $cache.Base

        Should -Invoke Get-VM -ModuleName PsDriver -Times 1 -Exactly
        Should -Invoke Get-VMHardDiskDrive -ModuleName PsDriver -Times 1 -Exactly
        Should -Invoke Get-VMDvdDrive -ModuleName PsDriver -Times 1 -Exactly
        # a.vhdx is read once although two disk chains lead to it and it is also listed.
        Should -Invoke Get-VHD -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter { $Path -eq $cache.A }
    }

    It 'gives the times in UTC, ISO 8601' {
        $cache = New-FakeCache
        $written = [datetime]::new(2026, 1, 2, 3, 4, 5, [System.DateTimeKind]::Utc)
        $read = [datetime]::new(2026, 2, 3, 4, 5, 6, [System.DateTimeKind]::Utc)
        (Get-Item -LiteralPath $cache.B).LastWriteTimeUtc = $written
        (Get-Item -LiteralPath $cache.B).LastAccessTimeUtc = $read

        $result = & $script:ScriptPath -BasePath $cache.Base -Name 'b_40'

        @($result.images).Count | Should -Be 1
        $result.images[0].last_write_time | Should -Be '2026-01-02T03:04:05.0000000Z'
        $result.images[0].last_access_time | Should -Be '2026-02-03T04:05:06.0000000Z'
    }

    It 'reports the parent of a differencing cache entry' {
        $cache = New-FakeCache
        $child = New-FakeDisk -Path (Join-Path -Path $cache.Base -ChildPath 'd.vhdx') -Type 'Differencing' -Parent $cache.A

        $result = & $script:ScriptPath -BasePath $cache.Base -Name 'd.vhdx'

        Assert-MatchesContract -Result $result
        $result.images[0].path | Should -Be $child
        $result.images[0].parent_path | Should -Be $cache.A
        $result.images[0].vhd_type | Should -Be 'Differencing'
    }

    It 'filters by name with or without the extension and lists names that match nothing' {
        $cache = New-FakeCache
        $null = New-FakeDisk -Path (Join-Path -Path $cache.Base -ChildPath 'c.vhdx')

        $result = & $script:ScriptPath -BasePath $cache.Base -Name 'c', 'B_40.VHD', 'missing'

        Assert-MatchesContract -Result $result
        @($result.images | ForEach-Object { $_.name }) | Should -Be @('b_40.vhd', 'c.iso', 'c.vhdx')
        @($result.not_found) | Should -Be @('missing')
    }

    It 'does not read the VMs when there is no image to report' {
        $cache = New-FakeCache

        $result = & $script:ScriptPath -BasePath $cache.Base -Name 'missing'

        @($result.images).Count | Should -Be 0
        Should -Invoke Get-VM -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'reports a missing cache folder without an error' {
        $base = Join-Path -Path $TestDrive -ChildPath 'nowhere/_base'

        $result = & $script:ScriptPath -BasePath $base -Name 'a'

        Assert-MatchesContract -Result $result
        $result.exists | Should -BeFalse
        @($result.images).Count | Should -Be 0
        @($result.not_found) | Should -Be @('a')
    }

    It 'skips VM drives without a file' {
        $cache = New-FakeCache
        Add-FakeCacheVM -Name 'vm4' -Disks @('') -Dvds @('')

        $result = & $script:ScriptPath -BasePath $cache.Base

        Assert-MatchesContract -Result $result
    }

    It 'refuses the name <Name>' -ForEach @(
        @{ Name = '..\a.vhdx' }
        @{ Name = 'sub/a.vhdx' }
        @{ Name = 'a*' }
        @{ Name = 'C:a' }
        @{ Name = ' ' }
    ) {
        $cache = New-FakeCache

        $failure = { & $script:ScriptPath -BasePath $cache.Base -Name $Name } | Should -Throw -ErrorId 'PsDriver.InvalidImageName' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }
}
