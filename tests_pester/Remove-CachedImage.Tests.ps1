BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Remove-CachedImage')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Remove-CachedImage'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Remove-CachedImage'
    Import-PsDriverModule
    # State shared with the mocks (see PsDriverTestHelpers.ps1).
    $script:PsdTest = @{}

    Add-FakeImageCacheCommandStub
}

AfterAll {
    Remove-CommandStub
}

Describe 'Remove-CachedImage' {
    BeforeEach {
        Register-FakeImageCacheHost
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $cache = New-FakeCache
        $params = ConvertTo-TestValue -Value $Example -Root $cache.Root

        $result = & $script:ScriptPath @params

        Assert-MatchesContract -Result $result
    }

    It 'removes an unused image and skips one in use' {
        $cache = New-FakeCache

        $result = & $script:ScriptPath -BasePath $cache.Base -Name 'a', 'b_40'

        Assert-MatchesContract -Result $result
        @($result.removed).Count | Should -Be 1
        $result.removed[0].name | Should -Be 'b_40.vhd'
        $result.removed[0].path | Should -Be $cache.B
        Test-Path -LiteralPath $cache.B | Should -BeFalse
        @($result.skipped).Count | Should -Be 1
        $result.skipped[0].name | Should -Be 'a.vhdx'
        $result.skipped[0].reason | Should -Be 'in_use'
        @($result.skipped[0].used_by) | Should -Be @('vm1', 'vm3')
        Test-Path -LiteralPath $cache.A | Should -BeTrue
    }

    It 'keeps an iso attached to a DVD drive' {
        $cache = New-FakeCache

        $result = & $script:ScriptPath -BasePath $cache.Base -Name 'c.iso'

        $result.skipped[0].reason | Should -Be 'in_use'
        @($result.skipped[0].used_by) | Should -Be @('vm2')
        Test-Path -LiteralPath $cache.C | Should -BeTrue
    }

    It 'removes every file a name selects' {
        $cache = New-FakeCache
        $vhdx = New-FakeDisk -Path (Join-Path -Path $cache.Base -ChildPath 'e.vhdx')
        $iso = Join-Path -Path $cache.Base -ChildPath 'e.iso'
        Set-Content -LiteralPath $iso -Value 'iso'

        $result = & $script:ScriptPath -BasePath $cache.Base -Name 'e', 'e.vhdx'

        Assert-MatchesContract -Result $result
        @($result.removed | ForEach-Object { $_.name }) | Should -Be @('e.iso', 'e.vhdx')
        Test-Path -LiteralPath $vhdx | Should -BeFalse
        Test-Path -LiteralPath $iso | Should -BeFalse
    }

    It 'reports a name that matches nothing' {
        $cache = New-FakeCache

        $result = & $script:ScriptPath -BasePath $cache.Base -Name 'missing'

        Assert-MatchesContract -Result $result
        $result.skipped[0].name | Should -Be 'missing'
        $result.skipped[0].reason | Should -Be 'not_found'
        $result.skipped[0].path | Should -BeNullOrEmpty
        Should -Invoke Get-VM -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'reports a file it could not delete' {
        $cache = New-FakeCache
        $PsdTest.LockedPath = $cache.B
        Mock Remove-Item { throw [System.IO.IOException]::new('The file is in use.') } -ParameterFilter { @($LiteralPath)[0] -eq $PsdTest.LockedPath }

        $result = & $script:ScriptPath -BasePath $cache.Base -Name 'b_40'

        Assert-MatchesContract -Result $result
        @($result.removed).Count | Should -Be 0
        $result.skipped[0].reason | Should -Be 'remove_failed'
        $result.skipped[0].message | Should -BeLike '*in use*'
        Test-Path -LiteralPath $cache.B | Should -BeTrue
    }

    It 'deletes nothing with -WhatIf' {
        $cache = New-FakeCache

        $result = & $script:ScriptPath -BasePath $cache.Base -Name 'b_40' -WhatIf

        Assert-MatchesContract -Result $result
        @($result.removed).Count | Should -Be 0
        $result.skipped[0].reason | Should -Be 'not_confirmed'
        Test-Path -LiteralPath $cache.B | Should -BeTrue
    }

    It 'handles a missing cache folder' {
        $result = & $script:ScriptPath -BasePath (Join-Path -Path $TestDrive -ChildPath 'nowhere/_base') -Name 'a'

        Assert-MatchesContract -Result $result
        $result.skipped[0].reason | Should -Be 'not_found'
    }

    It 'refuses the name <Name>' -ForEach @(
        @{ Name = '..\a.vhdx' }
        @{ Name = 'sub/a.vhdx' }
        @{ Name = '*' }
        @{ Name = 'a?.vhd' }
    ) {
        $cache = New-FakeCache

        { & $script:ScriptPath -BasePath $cache.Base -Name $Name } | Should -Throw -ErrorId 'PsDriver.InvalidImageName'

        @(Get-ChildItem -LiteralPath $cache.Base).Count | Should -Be 5
    }
}
