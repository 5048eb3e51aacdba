BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Start-InstanceConsoleLogger')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Start-InstanceConsoleLogger'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Start-InstanceConsoleLogger'
    # The launching code is Start-PsDriverConsoleLogger of the shared module (New-Instance uses
    # it too): the process creation, process check and waits are mocked inside that module.
    Import-PsDriverModule

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
    Remove-CommandStub
}

Describe 'Start-InstanceConsoleLogger' {
    BeforeEach {
        # Shared with the mocks, which run inside the tested script's scopes (its $script: scope
        # and StrictMode), also those called from the PsDriver module: one unqualified table.
        $vmId = [guid]::NewGuid()
        $script:PsdTest = @{
            VmId             = $vmId
            MutexName        = 'Global\psdriver-console-' + $vmId.ToString()
            EventName        = 'Global\psdriver-console-stop-' + $vmId.ToString()
            Handles          = [System.Collections.Generic.List[System.IDisposable]]::new()
            Launched         = [System.Collections.Generic.List[string]]::new()
            ProcessAlive     = $true
            LoggerTakesMutex = $true
            StopEvent        = $null
            OldLogger        = $null
            Dir              = Join-Path -Path $TestDrive -ChildPath ("it's `$(here) " + [guid]::NewGuid().ToString())
            Ports            = @(
                [pscustomobject]@{ Name = 'COM 1'; Path = '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_rw' }
                [pscustomobject]@{ Name = 'COM 2'; Path = '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro' }
            )
        }
        $null = New-Item -ItemType Directory -Path $PsdTest.Dir
        $PsdTest.Log = Join-Path -Path $PsdTest.Dir -ChildPath 'console.log'

        # Get-PsDriverVM and Get-PsDriverConsolePipePath (PsDriver.psm1) ask Hyper-V.
        Mock Get-VM -ModuleName PsDriver {
            if ($null -ne $Name -and 'instance-00000001' -notlike @($Name)[0]) {
                return
            }
            [pscustomobject]@{ Name = 'instance-00000001'; Id = $PsdTest.VmId; State = 'Running' }
        }
        Mock Get-VMComPort -ModuleName PsDriver { $PsdTest.Ports } -RemoveParameterType 'VM'
        Mock Invoke-CimMethod -ModuleName PsDriver {
            $PsdTest.Launched.Add($Arguments['CommandLine'])
            if ($PsdTest.LoggerTakesMutex) {
                $PsdTest.Handles.Add([System.Threading.Mutex]::new($false, $PsdTest.MutexName))
            }
            [pscustomobject]@{ ReturnValue = 0; ProcessId = 4242 }
        } -ParameterFilter { $ClassName -eq 'Win32_Process' -and $MethodName -eq 'Create' }
        Mock Get-Process -ModuleName PsDriver {
            if ($PsdTest.ProcessAlive) {
                [pscustomobject]@{ Id = 4242 }
            }
        } -ParameterFilter { $Id -eq 4242 }
        Mock Start-Sleep -ModuleName PsDriver { }
    }

    AfterEach {
        foreach ($handle in $PsdTest.Handles) {
            $handle.Dispose()
        }
    }

    It 'launches one logger reading the logging pipe, with its settings outside the code' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log
        Assert-MatchesContract $result
        $result.started | Should -BeTrue
        $result.running | Should -BeTrue
        $result.pid | Should -Be 4242
        $result.vm_id | Should -Be $PsdTest.VmId.ToString()
        $result.pipe_path | Should -Be '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro'
        $result.log_path | Should -Be $PsdTest.Log
        $result.max_log_bytes | Should -Be 524288

        $PsdTest.Launched.Count | Should -Be 1
        $commandLine = $PsdTest.Launched[0]
        $commandLine | Should -Match '^"[^"]+\\WindowsPowerShell\\v1\.0\\powershell\.exe" -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -EncodedCommand [A-Za-z0-9+/=]+$'
        $launched = Get-LaunchedSettings -CommandLine $commandLine
        $launched.Command | Should -Not -Match ([regex]::Escape($PsdTest.Dir))
        $launched.Settings.pipe | Should -Be '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro'
        $launched.Settings.log | Should -Be $PsdTest.Log
        $launched.Settings.max | Should -Be 524288
        $launched.Settings.mutex | Should -Be $PsdTest.MutexName
        $launched.Settings.stop | Should -Be $PsdTest.EventName
        $parseErrors = $null
        $null = [System.Management.Automation.Language.Parser]::ParseInput($launched.Command, [ref]$null, [ref]$parseErrors)
        $parseErrors.Count | Should -Be 0
    }

    It 'reads COM 1 when there is no read-only logging pipe' {
        $PsdTest.Ports = @($PsdTest.Ports[0], [pscustomobject]@{ Name = 'COM 2'; Path = '' })
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log -MaxLogBytes 65536
        $result.pipe_path | Should -Be '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_rw'
        (Get-LaunchedSettings -CommandLine $PsdTest.Launched[0]).Settings.max | Should -Be 65536
    }

    It 'uses PipePath when given' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log -PipePath '\\.\pipe\custom'
        $result.pipe_path | Should -Be '\\.\pipe\custom'
        (Get-LaunchedSettings -CommandLine $PsdTest.Launched[0]).Settings.pipe | Should -Be 'custom'
        Should -Invoke Get-VMComPort -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'launches through the shared Start-PsDriverConsoleLogger' {
        Mock Start-PsDriverConsoleLogger { [ordered]@{ started = $true; running = $true; pid = 77 } }
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log -MaxLogBytes 8192
        Assert-MatchesContract $result
        $result.pid | Should -Be 77
        Should -Invoke Start-PsDriverConsoleLogger -Times 1 -Exactly -ParameterFilter {
            $VMId -eq $PsdTest.VmId.ToString() -and $VMName -eq 'instance-00000001' -and $MaxLogBytes -eq 8192 -and
            $PipePath -eq '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro' -and $LogPath -eq $PsdTest.Log -and -not $Restart
        }
    }

    It 'starts nothing when a logger already runs for the VM' {
        $PsdTest.Handles.Add([System.Threading.Mutex]::new($false, $PsdTest.MutexName))
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log
        Assert-MatchesContract $result
        $result.started | Should -BeFalse
        $result.running | Should -BeTrue
        $result.pid | Should -BeNullOrEmpty
        Should -Invoke Invoke-CimMethod -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'replaces a running logger with -Restart' -Skip:(-not $IsWindows) {
        $oldLogger = [System.Threading.Mutex]::new($false, $PsdTest.MutexName)
        $stopEvent = [System.Threading.EventWaitHandle]::new($false, [System.Threading.EventResetMode]::ManualReset, $PsdTest.EventName)
        $PsdTest.Handles.Add($stopEvent)
        $PsdTest.StopEvent = $stopEvent
        $PsdTest.OldLogger = $oldLogger
        Mock Start-Sleep -ModuleName PsDriver {
            if ($null -ne $PsdTest.OldLogger -and $PsdTest.StopEvent.WaitOne(0)) {
                $PsdTest.OldLogger.Dispose()
                $PsdTest.OldLogger = $null
            }
        }
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log -Restart
        Assert-MatchesContract $result
        $stopEvent.WaitOne(0) | Should -BeTrue
        $result.started | Should -BeTrue
        $result.running | Should -BeTrue
    }

    It 'fails with ResourceBusy when the running logger does not stop' -Skip:(-not $IsWindows) {
        $PsdTest.Handles.Add([System.Threading.Mutex]::new($false, $PsdTest.MutexName))
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log -Restart } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.ConsoleLoggerBusy'
        $failure.CategoryInfo.Category | Should -Be 'ResourceBusy'
        Should -Invoke Invoke-CimMethod -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'reports a logger that has not taken its mutex yet as not running' {
        $PsdTest.LoggerTakesMutex = $false
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log
        Assert-MatchesContract $result
        $result.started | Should -BeTrue
        $result.running | Should -BeFalse
        Should -Invoke Start-Sleep -ModuleName PsDriver -Times 50 -Exactly
    }

    It 'fails when the logger process exits at once' {
        $PsdTest.LoggerTakesMutex = $false
        $PsdTest.ProcessAlive = $false
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.ConsoleLoggerStartFailed'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
    }

    It 'fails when Win32_Process.Create refuses' {
        Mock Invoke-CimMethod -ModuleName PsDriver { [pscustomobject]@{ ReturnValue = 2; ProcessId = $null } } -ParameterFilter { $ClassName -eq 'Win32_Process' }
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.ConsoleLoggerStartFailed'
        $failure.Exception.Message | Should -Match 'returned 2'
    }

    It 'fails with InvalidOperation for a VM without a serial port pipe' {
        $PsdTest.Ports = @([pscustomobject]@{ Name = 'COM 1'; Path = '' })
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NoSerialPipe'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
    }

    It 'refuses the pipe path <PipePath>' -ForEach @(
        @{ PipePath = '\\fileserver\pipe\vm_rw' }
        @{ PipePath = 'C:\temp\vm_rw' }
        @{ PipePath = '\\.\pipe\a\b' }
    ) {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log -PipePath $PipePath } | Should -Throw -PassThru
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
        $failure = { & $script:ScriptPath -Name 'instance-00000099' -LogPath $PsdTest.Log } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'finds a VM whose name has wildcard characters by that exact name' {
        Mock Get-VM -ModuleName PsDriver {
            @(
                [pscustomobject]@{ Name = 'vm[1]'; Id = $PsdTest.VmId; State = 'Running' }
                [pscustomobject]@{ Name = 'vm[1]-old'; Id = [guid]::NewGuid(); State = 'Running' }
                [pscustomobject]@{ Name = 'vm1'; Id = [guid]::NewGuid(); State = 'Running' }
            ) | Where-Object { $_.Name -like @($Name)[0] }
        }
        $result = & $script:ScriptPath -Name 'vm[1]' -LogPath $PsdTest.Log
        Assert-MatchesContract $result
        $result.name | Should -Be 'vm[1]'
        $result.vm_id | Should -Be $PsdTest.VmId.ToString()
        Should -Invoke Get-VM -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter { @($Name)[0] -ceq 'vm`[1`]*' }
    }

    It 'reports a host that cannot be asked instead of a missing VM' {
        Mock Get-VM -ModuleName PsDriver { throw [System.InvalidOperationException]::new('The Virtual Machine Management service is not running.') }
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Not -Be 'PsDriver.VMNotFound'
        $failure.Exception.Message | Should -Match 'Virtual Machine Management service'
        Should -Invoke Invoke-CimMethod -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'launches nothing with -WhatIf' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $PsdTest.Log -WhatIf
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
