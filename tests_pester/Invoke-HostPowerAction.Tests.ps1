BeforeDiscovery {
    $contractFile = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts/Invoke-HostPowerAction.contract.json'
    $exampleIndex = 0
    $Examples = @((Get-Content -LiteralPath $contractFile -Raw | ConvertFrom-Json -AsHashtable)['examples'] | ForEach-Object {
            $exampleIndex++
            @{ Index = $exampleIndex; Example = $_ }
        })
}

BeforeAll {
    $script:ScriptsDir = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts'
    $script:ScriptPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Invoke-HostPowerAction.ps1'
    $contractPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Invoke-HostPowerAction.contract.json'
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

    Add-CommandStub -Name 'Restart-Computer' -Parameter '-Force'
    Add-CommandStub -Name 'Stop-Computer' -Parameter '-Force'
}

AfterAll {
    foreach ($stub in $script:Stubs) {
        Remove-Item -Path ('function:global:' + $stub) -ErrorAction SilentlyContinue
    }
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
