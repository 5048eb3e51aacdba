BeforeDiscovery {
    $contractFile = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts/Remove-CachedImage.contract.json'
    $exampleIndex = 0
    $Examples = @((Get-Content -LiteralPath $contractFile -Raw | ConvertFrom-Json -AsHashtable)['examples'] | ForEach-Object {
            $exampleIndex++
            @{ Index = $exampleIndex; Example = $_ }
        })
}

BeforeAll {
    $script:ScriptsDir = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts'
    $script:ScriptPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Remove-CachedImage.ps1'
    $contractPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Remove-CachedImage.contract.json'
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

    # Windows paths of the contract examples -> the same layout under a test folder.
    function ConvertTo-TestPath {
        param(
            [Parameter(Mandatory)]
            [string]$Path,

            [Parameter(Mandatory)]
            [string]$Root
        )
        $prefix = [regex]::Match($Path, '^(?:[A-Za-z]:\\|\\\\[^\\]+\\[^\\]+\\)')
        if (-not $prefix.Success) {
            return $Path
        }
        $rest = $Path.Substring($prefix.Length) -replace '\\', [string][System.IO.Path]::DirectorySeparatorChar
        Join-Path -Path $Root -ChildPath $rest
    }

    function Get-FakeKey {
        param(
            [Parameter(Mandatory)]
            [string]$Path
        )
        [System.IO.Path]::GetFullPath($Path).ToLowerInvariant()
    }

    # A file on disk that the fake Get-VHD knows (unless -Unreadable).
    function New-FakeDisk {
        param(
            [Parameter(Mandatory)]
            [string]$Path,

            [long]$Size = 1GB,

            [string]$Type = 'Dynamic',

            [string]$Parent,

            [switch]$Unreadable
        )
        $null = New-Item -ItemType File -Path $Path -Force
        Set-Content -LiteralPath $Path -Value ('x' * 100) -NoNewline
        if (-not $Unreadable) {
            $format = 'VHD'
            if ($Path -match 'x$') {
                $format = 'VHDX'
            }
            $PsdTest.Vhds[(Get-FakeKey -Path $Path)] = [pscustomobject]@{
                Path       = $Path
                Size       = $Size
                VhdFormat  = $format
                VhdType    = $Type
                ParentPath = $Parent
            }
        }
        $Path
    }

    function Add-FakeVM {
        param(
            [Parameter(Mandatory)]
            [string]$Name,

            [string[]]$Disks = @(),

            [string[]]$Dvds = @()
        )
        $PsdTest.Vms.Add([pscustomobject]@{ Name = $Name; Disks = $Disks; Dvds = $Dvds })
    }

    # The image cache used by most tests:
    #   _base/a.vhdx (used by vm1 through root1.vhdx and by vm3 through root3.vhdx <- vm3.avhdx),
    #   _base/b_40.vhd (unused), _base/c.iso (DVD of vm2), _base/broken.vhdx (unreadable), _base/notes.txt.
    function New-FakeCache {
        $root = Join-Path -Path $TestDrive -ChildPath ([guid]::NewGuid().ToString('N'))
        $base = Join-Path -Path $root -ChildPath '_base'
        $cache = @{ Root = $root; Base = $base }
        $cache.A = New-FakeDisk -Path (Join-Path -Path $base -ChildPath 'a.vhdx') -Size 2GB
        $cache.B = New-FakeDisk -Path (Join-Path -Path $base -ChildPath 'b_40.vhd') -Size 40GB -Type 'Fixed'
        $cache.C = Join-Path -Path $base -ChildPath 'c.iso'
        Set-Content -LiteralPath $cache.C -Value ('i' * 2048) -NoNewline
        $cache.Broken = New-FakeDisk -Path (Join-Path -Path $base -ChildPath 'broken.vhdx') -Unreadable
        Set-Content -LiteralPath (Join-Path -Path $base -ChildPath 'notes.txt') -Value 'not an image'
        $root1 = New-FakeDisk -Path (Join-Path -Path $root -ChildPath 'vm1/root1.vhdx') -Type 'Differencing' -Parent $cache.A
        $root3 = New-FakeDisk -Path (Join-Path -Path $root -ChildPath 'vm3/root3.vhdx') -Type 'Differencing' -Parent $cache.A
        $snap3 = New-FakeDisk -Path (Join-Path -Path $root -ChildPath 'vm3/root3_1C2D.avhdx') -Type 'Differencing' -Parent $root3
        Add-FakeVM -Name 'vm3' -Disks @($snap3)
        Add-FakeVM -Name 'vm1' -Disks @($root1)
        Add-FakeVM -Name 'vm2' -Dvds @($cache.C)
        $cache
    }

    Add-CommandStub -Name 'Get-VM'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMDvdDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VHD' -Parameter 'Path'
}

AfterAll {
    foreach ($stub in $script:Stubs) {
        Remove-Item -Path ('function:global:' + $stub) -ErrorAction SilentlyContinue
    }
}

Describe 'Remove-CachedImage' {
    BeforeEach {
        # Shared with the mocks. Mock bodies run inside the tested script's scopes (its $script: scope
        # and StrictMode), so they reach this state through one unqualified, uniquely named variable.
        $script:PsdTest = @{
            Vms  = [System.Collections.Generic.List[object]]::new()
            Vhds = @{}
        }

        Mock Get-VM {
            $PsdTest.Vms.ToArray()
        }
        Mock Get-VMHardDiskDrive {
            foreach ($owner in @($VM)) {
                foreach ($disk in $owner.Disks) {
                    [pscustomobject]@{ VMName = $owner.Name; Path = $disk }
                }
            }
        } -RemoveParameterType 'VM'
        Mock Get-VMDvdDrive {
            foreach ($owner in @($VM)) {
                foreach ($dvd in $owner.Dvds) {
                    [pscustomobject]@{ VMName = $owner.Name; Path = $dvd }
                }
            }
        } -RemoveParameterType 'VM'
        Mock Get-VHD {
            $vhd = $PsdTest.Vhds[(Get-FakeKey -Path $Path)]
            if ($null -eq $vhd) {
                throw "The file '$Path' is not a virtual hard disk or is in use."
            }
            $vhd
        }
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $cache = New-FakeCache
        $params = @{}
        foreach ($key in $Example.Keys) {
            $params[$key] = $Example[$key]
        }
        $params['BasePath'] = ConvertTo-TestPath -Path $params['BasePath'] -Root $cache.Root

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
        Should -Invoke Get-VM -Times 0 -Exactly
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
