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

    It 'echoes an empty string, never null, when no value is given' {
        $result = & $script:ScriptPath
        $result['echo'] | Should -BeExactly ''
        $result['echo'] | Should -BeOfType [string]
        Test-Json -Json ($result | ConvertTo-Json -Depth 10) -Schema $script:ResultSchema | Should -BeTrue
    }
}
