BeforeDiscovery {
    $contractFile = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts/Get-CachedImage.contract.json'
    $exampleIndex = 0
    $Examples = @((Get-Content -LiteralPath $contractFile -Raw | ConvertFrom-Json -AsHashtable)['examples'] | ForEach-Object {
            $exampleIndex++
            @{ Index = $exampleIndex; Example = $_ }
        })
}

BeforeAll {
    $script:ScriptsDir = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts'
    $script:ScriptPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Get-CachedImage.ps1'
    $contractPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Get-CachedImage.contract.json'
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

Describe 'Get-CachedImage' {
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

        Should -Invoke Get-VM -Times 1 -Exactly
        Should -Invoke Get-VMHardDiskDrive -Times 1 -Exactly
        Should -Invoke Get-VMDvdDrive -Times 1 -Exactly
        # a.vhdx is read once although two disk chains lead to it and it is also listed.
        Should -Invoke Get-VHD -Times 1 -Exactly -ParameterFilter { $Path -eq $cache.A }
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
        Should -Invoke Get-VM -Times 0 -Exactly
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
        Add-FakeVM -Name 'vm4' -Disks @('') -Dvds @('')

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
