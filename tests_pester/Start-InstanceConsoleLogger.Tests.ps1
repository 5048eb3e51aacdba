BeforeDiscovery {
    $contractFile = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts/Start-InstanceConsoleLogger.contract.json'
    $exampleIndex = 0
    $Examples = @((Get-Content -LiteralPath $contractFile -Raw | ConvertFrom-Json -AsHashtable)['examples'] | ForEach-Object {
            $exampleIndex++
            @{ Index = $exampleIndex; Example = $_ }
        })
}

BeforeAll {
    $script:ScriptsDir = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts'
    $script:ScriptPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Start-InstanceConsoleLogger.ps1'
    # The launching code is Start-PsDriverConsoleLogger of the shared module (New-Instance uses
    # it too): the process creation, process check and waits are mocked inside that module.
    Import-Module -Name (Join-Path -Path $script:ScriptsDir -ChildPath 'PsDriver.psm1') -Force
    $contractPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Start-InstanceConsoleLogger.contract.json'
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

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'
    Add-CommandStub -Name 'Get-VMComPort' -Parameter 'VM'
    Add-CommandStub -Name 'Invoke-CimMethod' -Parameter 'ClassName', 'MethodName', 'Arguments'

    # The settings a launched logger would receive, decoded from its command line.
    function Get-LaunchedSettings {
        param(
            [string]$CommandLine
        )
        $encoded = [regex]::Match($CommandLine, '-EncodedCommand (\S+)$').Groups[1].Value
        $command = [System.Text.Encoding]::Unicode.GetString([System.Convert]::FromBase64String($encoded))
        $settings = [regex]::Match($command, "Invoke-ConsoleLogReader -ConfigBase64 '([A-Za-z0-9+/=]+)'").Groups[1].Value
        [pscustomobject]@{
            Command  = $command
            Settings = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($settings)) | ConvertFrom-Json
        }
    }
}

AfterAll {
    foreach ($stub in $script:Stubs) {
        Remove-Item -Path ('function:global:' + $stub) -ErrorAction SilentlyContinue
    }
}

Describe 'Start-InstanceConsoleLogger' {
    BeforeEach {
        $script:VmId = [guid]::NewGuid()
        $script:MutexName = 'Global\psdriver-console-' + $script:VmId.ToString()
        $script:EventName = 'Global\psdriver-console-stop-' + $script:VmId.ToString()
        $script:Handles = [System.Collections.Generic.List[System.IDisposable]]::new()
        # Mocks inside the PsDriver module run in its scope, not this file's: what they share
        # with the tests is this one global table (removed after each test).
        $global:PsdConsoleTest = @{
            MutexName        = $script:MutexName
            Handles          = $script:Handles
            Launched         = [System.Collections.Generic.List[string]]::new()
            ProcessAlive     = $true
            LoggerTakesMutex = $true
            StopEvent        = $null
            OldLogger        = $null
        }
        $script:Dir = Join-Path -Path $TestDrive -ChildPath ("it's `$(here) " + [guid]::NewGuid().ToString())
        $null = New-Item -ItemType Directory -Path $script:Dir
        $script:Log = Join-Path -Path $script:Dir -ChildPath 'console.log'
        $script:Ports = @(
            [pscustomobject]@{ Name = 'COM 1'; Path = '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_rw' }
            [pscustomobject]@{ Name = 'COM 2'; Path = '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro' }
        )

        Mock Get-VM {
            if ($null -ne $Name -and @($Name)[0] -ne 'instance-00000001') {
                return
            }
            [pscustomobject]@{ Name = 'instance-00000001'; Id = $script:VmId; State = 'Running' }
        }
        Mock Get-VMComPort { $script:Ports } -RemoveParameterType 'VM'
        Mock Invoke-CimMethod -ModuleName PsDriver {
            $global:PsdConsoleTest.Launched.Add($Arguments['CommandLine'])
            if ($global:PsdConsoleTest.LoggerTakesMutex) {
                $global:PsdConsoleTest.Handles.Add([System.Threading.Mutex]::new($false, $global:PsdConsoleTest.MutexName))
            }
            [pscustomobject]@{ ReturnValue = 0; ProcessId = 4242 }
        } -ParameterFilter { $ClassName -eq 'Win32_Process' -and $MethodName -eq 'Create' }
        Mock Get-Process -ModuleName PsDriver {
            if ($global:PsdConsoleTest.ProcessAlive) {
                [pscustomobject]@{ Id = 4242 }
            }
        } -ParameterFilter { $Id -eq 4242 }
        Mock Start-Sleep -ModuleName PsDriver { }
    }

    AfterEach {
        foreach ($handle in $script:Handles) {
            $handle.Dispose()
        }
        Remove-Variable -Name 'PsdConsoleTest' -Scope Global -ErrorAction SilentlyContinue
    }

    It 'launches one logger reading the logging pipe, with its settings outside the code' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log
        Assert-MatchesContract $result
        $result.started | Should -BeTrue
        $result.running | Should -BeTrue
        $result.pid | Should -Be 4242
        $result.vm_id | Should -Be $script:VmId.ToString()
        $result.pipe_path | Should -Be '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro'
        $result.log_path | Should -Be $script:Log
        $result.max_log_bytes | Should -Be 524288

        $global:PsdConsoleTest.Launched.Count | Should -Be 1
        $commandLine = $global:PsdConsoleTest.Launched[0]
        $commandLine | Should -Match '^"[^"]+\\WindowsPowerShell\\v1\.0\\powershell\.exe" -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -EncodedCommand [A-Za-z0-9+/=]+$'
        $launched = Get-LaunchedSettings -CommandLine $commandLine
        $launched.Command | Should -Not -Match ([regex]::Escape($script:Dir))
        $launched.Settings.pipe | Should -Be '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro'
        $launched.Settings.log | Should -Be $script:Log
        $launched.Settings.max | Should -Be 524288
        $launched.Settings.mutex | Should -Be $script:MutexName
        $launched.Settings.stop | Should -Be $script:EventName
        $parseErrors = $null
        $null = [System.Management.Automation.Language.Parser]::ParseInput($launched.Command, [ref]$null, [ref]$parseErrors)
        $parseErrors.Count | Should -Be 0
    }

    It 'reads COM 1 when there is no read-only logging pipe' {
        $script:Ports = @($script:Ports[0], [pscustomobject]@{ Name = 'COM 2'; Path = '' })
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log -MaxLogBytes 65536
        $result.pipe_path | Should -Be '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_rw'
        (Get-LaunchedSettings -CommandLine $global:PsdConsoleTest.Launched[0]).Settings.max | Should -Be 65536
    }

    It 'uses PipePath when given' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log -PipePath '\\.\pipe\custom'
        $result.pipe_path | Should -Be '\\.\pipe\custom'
        (Get-LaunchedSettings -CommandLine $global:PsdConsoleTest.Launched[0]).Settings.pipe | Should -Be 'custom'
        Should -Invoke Get-VMComPort -Times 0 -Exactly
    }

    It 'launches through the shared Start-PsDriverConsoleLogger' {
        Mock Start-PsDriverConsoleLogger { [ordered]@{ started = $true; running = $true; pid = 77 } }
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log -MaxLogBytes 8192
        Assert-MatchesContract $result
        $result.pid | Should -Be 77
        Should -Invoke Start-PsDriverConsoleLogger -Times 1 -Exactly -ParameterFilter {
            $VMId -eq $script:VmId.ToString() -and $VMName -eq 'instance-00000001' -and $MaxLogBytes -eq 8192 -and
            $PipePath -eq '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro' -and $LogPath -eq $script:Log -and -not $Restart
        }
    }

    It 'starts nothing when a logger already runs for the VM' {
        $script:Handles.Add([System.Threading.Mutex]::new($false, $script:MutexName))
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log
        Assert-MatchesContract $result
        $result.started | Should -BeFalse
        $result.running | Should -BeTrue
        $result.pid | Should -BeNullOrEmpty
        Should -Invoke Invoke-CimMethod -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'replaces a running logger with -Restart' -Skip:(-not $IsWindows) {
        $oldLogger = [System.Threading.Mutex]::new($false, $script:MutexName)
        $stopEvent = [System.Threading.EventWaitHandle]::new($false, [System.Threading.EventResetMode]::ManualReset, $script:EventName)
        $script:Handles.Add($stopEvent)
        $global:PsdConsoleTest.StopEvent = $stopEvent
        $global:PsdConsoleTest.OldLogger = $oldLogger
        Mock Start-Sleep -ModuleName PsDriver {
            $test = $global:PsdConsoleTest
            if ($null -ne $test.OldLogger -and $test.StopEvent.WaitOne(0)) {
                $test.OldLogger.Dispose()
                $test.OldLogger = $null
            }
        }
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log -Restart
        Assert-MatchesContract $result
        $stopEvent.WaitOne(0) | Should -BeTrue
        $result.started | Should -BeTrue
        $result.running | Should -BeTrue
    }

    It 'fails with ResourceBusy when the running logger does not stop' -Skip:(-not $IsWindows) {
        $script:Handles.Add([System.Threading.Mutex]::new($false, $script:MutexName))
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log -Restart } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.ConsoleLoggerBusy'
        $failure.CategoryInfo.Category | Should -Be 'ResourceBusy'
        Should -Invoke Invoke-CimMethod -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'reports a logger that has not taken its mutex yet as not running' {
        $global:PsdConsoleTest.LoggerTakesMutex = $false
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log
        Assert-MatchesContract $result
        $result.started | Should -BeTrue
        $result.running | Should -BeFalse
        Should -Invoke Start-Sleep -ModuleName PsDriver -Times 50 -Exactly
    }

    It 'fails when the logger process exits at once' {
        $global:PsdConsoleTest.LoggerTakesMutex = $false
        $global:PsdConsoleTest.ProcessAlive = $false
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.ConsoleLoggerStartFailed'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
    }

    It 'fails when Win32_Process.Create refuses' {
        Mock Invoke-CimMethod -ModuleName PsDriver { [pscustomobject]@{ ReturnValue = 2; ProcessId = $null } } -ParameterFilter { $ClassName -eq 'Win32_Process' }
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.ConsoleLoggerStartFailed'
        $failure.Exception.Message | Should -Match 'returned 2'
    }

    It 'fails with InvalidOperation for a VM without a serial port pipe' {
        $script:Ports = @([pscustomobject]@{ Name = 'COM 1'; Path = '' })
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NoSerialPipe'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
    }

    It 'refuses the pipe path <PipePath>' -ForEach @(
        @{ PipePath = '\\fileserver\pipe\vm_rw' }
        @{ PipePath = 'C:\temp\vm_rw' }
        @{ PipePath = '\\.\pipe\a\b' }
    ) {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log -PipePath $PipePath } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.InvalidPipePath'
        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }

    It 'fails with ObjectNotFound when the log directory does not exist' {
        $missing = Join-Path -Path $TestDrive -ChildPath 'nowhere\console.log'
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $missing } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.LogDirectoryNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'fails with ObjectNotFound for a missing VM' {
        $failure = { & $script:ScriptPath -Name 'instance-00000099' -LogPath $script:Log } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'launches nothing with -WhatIf' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log -WhatIf
        Assert-MatchesContract $result
        $result.started | Should -BeFalse
        Should -Invoke Invoke-CimMethod -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        Mock Test-Path -ModuleName PsDriver { $true } -ParameterFilter { $LiteralPath -like 'C:\OpenStack\*' }
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
        $result.started | Should -BeTrue
    }
}
