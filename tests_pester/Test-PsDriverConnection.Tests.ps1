# Pester 5 tests of Test-PsDriverConnection.ps1 (Windows: it reads the Windows identity).

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Test-PsDriverConnection'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Test-PsDriverConnection'
}

Describe 'Test-PsDriverConnection' -Skip:(-not $IsWindows) {
    It 'reports the modules that are installed' {
        Mock Get-Module -ParameterFilter { $Name -eq 'Hyper-V' } -MockWith { [pscustomobject]@{ Name = 'Hyper-V' } }
        Mock Get-Module -ParameterFilter { $Name -ne 'Hyper-V' } -MockWith { }
        $result = & $script:ScriptPath -Echo 'x'
        $result['modules']['Hyper-V'] | Should -BeTrue
        $result['modules']['MPIO'] | Should -BeFalse
    }

    It 'echoes the value unchanged and keeps the contract' {
        $value = "vm'01 `"; `$(whoami)"
        $result = & $script:ScriptPath -Echo $value
        $result['echo'] | Should -BeExactly $value
        Test-Json -Json ($result | ConvertTo-Json -Depth 10) -Schema $script:ResultSchema | Should -BeTrue
    }

    It 'reports the clock in UTC, and no path or share when none is asked for' {
        $before = [System.DateTime]::UtcNow
        $result = & $script:ScriptPath
        $after = [System.DateTime]::UtcNow
        $result['utc_now'] | Should -Match 'Z$'
        $clock = [System.DateTime]::Parse($result['utc_now'], [System.Globalization.CultureInfo]::InvariantCulture,
            [System.Globalization.DateTimeStyles]::RoundtripKind)
        $clock.Kind | Should -Be ([System.DateTimeKind]::Utc)
        $clock | Should -BeGreaterOrEqual $before
        $clock | Should -BeLessOrEqual $after
        $result['instances_path'] | Should -BeNullOrEmpty
        $result['share'] | Should -BeNullOrEmpty
    }

    It 'reports whether the instances folder and its share exist and match' {
        $folder = Join-Path -Path $TestDrive -ChildPath 'Instances'
        New-Item -Path $folder -ItemType Directory | Out-Null
        # Shared with the mock through the test file's script scope (mock bodies run in the
        # scopes of the script under test).
        $script:PsdTest = @{ SharePath = "$folder\" }
        Mock Get-SmbShare -ParameterFilter { $Name -eq 'OpenStackInstances' } -MockWith {
            [pscustomobject]@{ Name = 'OpenStackInstances'; Path = $PsdTest.SharePath }
        }
        $result = & $script:ScriptPath -InstancesPath $folder -Share 'OpenStackInstances'
        $result['instances_path']['exists'] | Should -BeTrue
        $result['share']['exists'] | Should -BeTrue
        $result['share']['path'] | Should -BeExactly "$folder\"
        $result['share']['matches_instances_path'] | Should -BeTrue
        Test-Json -Json ($result | ConvertTo-Json -Depth 10) -Schema $script:ResultSchema | Should -BeTrue
    }

    It 'reports a missing folder and a missing share without failing' {
        Mock Get-SmbShare -MockWith {
            Write-Error -Message 'No MSFT_SMBShare objects found' -Category ObjectNotFound
        }
        $missing = Join-Path -Path $TestDrive -ChildPath 'nowhere'
        $result = & $script:ScriptPath -InstancesPath $missing -Share 'NoSuchShare'
        $result['instances_path']['exists'] | Should -BeFalse
        $result['share']['exists'] | Should -BeFalse
        $result['share']['path'] | Should -BeNullOrEmpty
        $result['share']['matches_instances_path'] | Should -BeFalse
        Test-Json -Json ($result | ConvertTo-Json -Depth 10) -Schema $script:ResultSchema | Should -BeTrue
    }

    It 'refuses a share name with a path separator' {
        { & $script:ScriptPath -Share 'a\b' } | Should -Throw
    }

    It 'echoes an empty string, never null, when no value is given' {
        $result = & $script:ScriptPath
        $result['echo'] | Should -BeExactly ''
        $result['echo'] | Should -BeOfType [string]
        Test-Json -Json ($result | ConvertTo-Json -Depth 10) -Schema $script:ResultSchema | Should -BeTrue
    }
}
