BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Invoke-HostPowerAction')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Invoke-HostPowerAction'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Invoke-HostPowerAction'
    Import-PsDriverModule

    Add-CommandStub -Name 'Restart-Computer' -Parameter '-Force'
    Add-CommandStub -Name 'Stop-Computer' -Parameter '-Force'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Invoke-HostPowerAction' {
    BeforeEach {
        # never let a test reach the real cmdlets
        Mock Restart-Computer { }
        Mock Stop-Computer { }
    }

    It 'reboots the host' {
        $result = & $script:ScriptPath -Action Reboot
        Assert-MatchesContract $result
        $result.action | Should -Be 'Reboot'
        $result.initiated | Should -BeTrue
        $result.forced | Should -BeFalse
        $result.computer_name | Should -Be ([System.Environment]::MachineName)
        Should -Invoke Restart-Computer -Times 1 -Exactly -ParameterFilter { -not [bool]$Force }
        Should -Invoke Stop-Computer -Times 0 -Exactly
    }

    It 'shuts the host down, forced' {
        $result = & $script:ScriptPath -Action Shutdown -Force
        Assert-MatchesContract $result
        $result.action | Should -Be 'Shutdown'
        $result.forced | Should -BeTrue
        Should -Invoke Stop-Computer -Times 1 -Exactly -ParameterFilter { [bool]$Force }
        Should -Invoke Restart-Computer -Times 0 -Exactly
    }

    It 'refuses Startup with NotImplemented' {
        $failure = { & $script:ScriptPath -Action Startup } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.HostStartupNotSupported'
        $failure.CategoryInfo.Category | Should -Be 'NotImplemented'
        Should -Invoke Restart-Computer -Times 0 -Exactly
        Should -Invoke Stop-Computer -Times 0 -Exactly
    }

    It 'reports a refused reboot as InvalidOperation' {
        Mock Restart-Computer { throw 'The system shutdown cannot be initiated because there are other users logged on to the computer.' }
        $failure = { & $script:ScriptPath -Action Reboot } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.HostPowerActionFailed'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $failure.Exception.Message | Should -Match 'other users logged on'
    }

    It 'does nothing with -WhatIf' {
        $result = & $script:ScriptPath -Action Reboot -WhatIf
        Assert-MatchesContract $result
        $result.initiated | Should -BeFalse
        Should -Invoke Restart-Computer -Times 0 -Exactly
    }

    It 'rejects an unknown action' {
        { & $script:ScriptPath -Action 'Hibernate' } | Should -Throw
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
        $result.initiated | Should -BeTrue
    }
}
