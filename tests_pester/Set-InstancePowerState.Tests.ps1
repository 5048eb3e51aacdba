BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Set-InstancePowerState')
}

BeforeAll {
    # State shared with the mocks. Mock bodies run inside the tested script's scopes (its
    # $script: scope and StrictMode), so they reach it through one unqualified, uniquely
    # named variable; $script: here is this file's scope.
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Set-InstancePowerState'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Set-InstancePowerState'
    Import-PsDriverModule

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'
    Add-CommandStub -Name 'Start-VM' -Parameter 'VM'
    Add-CommandStub -Name 'Stop-VM' -Parameter 'VM', '-TurnOff', '-Force'
    Add-CommandStub -Name 'Remove-VMSavedState' -Parameter 'VM'
    Add-CommandStub -Name 'Restart-VM' -Parameter 'VM', '-Force'
    Add-CommandStub -Name 'Suspend-VM' -Parameter 'VM'
    Add-CommandStub -Name 'Resume-VM' -Parameter 'VM'
    Add-CommandStub -Name 'Save-VM' -Parameter 'VM'
    Add-CommandStub -Name 'Get-CimInstance' -Parameter 'Namespace', 'ClassName', 'Filter'
    Add-CommandStub -Name 'Invoke-CimMethod' -Parameter 'InputObject', 'MethodName', 'Arguments'
    Add-CommandStub -Name 'Get-VMComPort' -Parameter 'VM'
    Add-CommandStub -Name 'Enable-VMResourceMetering' -Parameter 'VM'

    $PsdTest.PowerCmdlets = @('Start-VM', 'Stop-VM', 'Remove-VMSavedState', 'Restart-VM', 'Suspend-VM', 'Resume-VM', 'Save-VM')
    $PsdTest.Refusal = "'instance-00000001' failed to change state. The operation cannot be performed while the object is in its current state."

    function New-VMObject {
        [pscustomobject]@{
            Name       = 'instance-00000001'
            Id         = [guid]'0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b'
            State      = $PsdTest.State
            Generation = 2
        }
    }

    # Moves the fake VM from one of $From to $To, or refuses like Hyper-V.
    function Move-FakeState {
        param(
            [string[]]$From,
            [string]$To
        )
        if ($PsdTest.State -notin $From) {
            throw $PsdTest.Refusal
        }
        $PsdTest.State = $To
    }
}

AfterAll {
    Remove-CommandStub
}

Describe 'Set-InstancePowerState' {
    BeforeEach {
        $PsdTest.State = 'Running'
        $PsdTest.Requests = 0
        $PsdTest.ReturnValues = @(0)
        $PsdTest.Accepted = $false
        $PsdTest.TicksSinceAccept = 0
        $PsdTest.GuestOffAfter = 3
        $PsdTest.GuestCooperates = $true

        # Get-PsDriverVM and Get-PsDriverVMState (PsDriver.psm1) ask for the VM.
        Mock Get-VM -ModuleName PsDriver {
            if ($null -ne $Name -and 'instance-00000001' -notlike @($Name)[0]) {
                return
            }
            New-VMObject
        }
        # The console logger: Invoke-PsDriverConsoleLogger (PsDriver.psm1) reads the pipe from the
        # serial ports and launches through Start-PsDriverConsoleLogger (tested with
        # Start-InstanceConsoleLogger.Tests.ps1), mocked here.
        $PsdTest.Ports = @(
            [pscustomobject]@{ Name = 'COM 1'; Path = '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro' }
            [pscustomobject]@{ Name = 'COM 2'; Path = '' }
        )
        $PsdTest.LoggerRunning = $false
        Mock Get-VMComPort -ModuleName PsDriver { $PsdTest.Ports } -RemoveParameterType 'VM'
        Mock Start-PsDriverConsoleLogger -ModuleName PsDriver {
            if ($PsdTest.LoggerRunning) {
                return [ordered]@{ started = $false; running = $true; pid = $null }
            }
            $PsdTest.LoggerRunning = $true
            [ordered]@{ started = $true; running = $true; pid = 4242 }
        }
        Mock Start-VM { Move-FakeState -From 'Off', 'Saved' -To 'Running' } -RemoveParameterType 'VM'
        Mock Stop-VM { Move-FakeState -From 'Running', 'Paused', 'Starting', 'Stopping' -To 'Off' } -RemoveParameterType 'VM'
        Mock Remove-VMSavedState { Move-FakeState -From 'Saved' -To 'Off' } -RemoveParameterType 'VM'
        Mock Restart-VM { Move-FakeState -From 'Running' -To 'Running' } -RemoveParameterType 'VM'
        Mock Suspend-VM { Move-FakeState -From 'Running' -To 'Paused' } -RemoveParameterType 'VM'
        Mock Resume-VM { Move-FakeState -From 'Paused' -To 'Running' } -RemoveParameterType 'VM'
        Mock Save-VM { Move-FakeState -From 'Running', 'Paused' -To 'Saved' } -RemoveParameterType 'VM'
        Mock Enable-VMResourceMetering { } -RemoveParameterType 'VM'
        Mock Get-CimInstance { [pscustomobject]@{ SystemName = '0B9A6F3C-1D2E-4F50-8A7B-9C0D1E2F3A4B' } } -ParameterFilter {
            $ClassName -eq 'Msvm_ShutdownComponent' -and $Filter -eq "SystemName='0B9A6F3C-1D2E-4F50-8A7B-9C0D1E2F3A4B'"
        }
        Mock Invoke-CimMethod {
            $index = [math]::Min($PsdTest.Requests, $PsdTest.ReturnValues.Count - 1)
            $value = $PsdTest.ReturnValues[$index]
            $PsdTest.Requests++
            if ($value -eq 0 -and $PsdTest.GuestCooperates) {
                $PsdTest.Accepted = $true
            }
            [pscustomobject]@{ ReturnValue = $value }
        } -RemoveParameterType 'InputObject'
        Mock Start-Sleep {
            if ($PsdTest.Accepted) {
                $PsdTest.TicksSinceAccept++
                if ($PsdTest.TicksSinceAccept -ge $PsdTest.GuestOffAfter) {
                    $PsdTest.State = 'Off'
                }
            }
        }
    }

    Context 'transitions without a guest shutdown' {
        It '<Action> from <From> ends <To>' -ForEach @(
            @{ Action = 'Start'; From = 'Off'; To = 'Running'; Changed = $true; Forced = $false; Steps = @('Start-VM') }
            @{ Action = 'Start'; From = 'Running'; To = 'Running'; Changed = $false; Forced = $false; Steps = @() }
            @{ Action = 'Start'; From = 'Saved'; To = 'Running'; Changed = $true; Forced = $false; Steps = @('Start-VM') }
            @{ Action = 'Start'; From = 'Paused'; To = 'Running'; Changed = $true; Forced = $false; Steps = @('Resume-VM') }
            @{ Action = 'Stop'; From = 'Running'; To = 'Off'; Changed = $true; Forced = $true; Steps = @('Stop-VM') }
            @{ Action = 'Stop'; From = 'Off'; To = 'Off'; Changed = $false; Forced = $false; Steps = @() }
            @{ Action = 'Stop'; From = 'Saved'; To = 'Off'; Changed = $true; Forced = $true; Steps = @('Remove-VMSavedState') }
            @{ Action = 'Stop'; From = 'Paused'; To = 'Off'; Changed = $true; Forced = $true; Steps = @('Stop-VM') }
            @{ Action = 'Shutdown'; From = 'Off'; To = 'Off'; Changed = $false; Forced = $false; Steps = @() }
            @{ Action = 'Shutdown'; From = 'Saved'; To = 'Off'; Changed = $true; Forced = $true; Steps = @('Remove-VMSavedState') }
            @{ Action = 'Shutdown'; From = 'Paused'; To = 'Off'; Changed = $true; Forced = $true; Steps = @('Stop-VM') }
            @{ Action = 'Restart'; From = 'Running'; To = 'Running'; Changed = $true; Forced = $true; Steps = @('Restart-VM') }
            @{ Action = 'Restart'; From = 'Off'; To = 'Running'; Changed = $true; Forced = $false; Steps = @('Start-VM') }
            @{ Action = 'Restart'; From = 'Saved'; To = 'Running'; Changed = $true; Forced = $true; Steps = @('Remove-VMSavedState', 'Start-VM') }
            @{ Action = 'Restart'; From = 'Paused'; To = 'Running'; Changed = $true; Forced = $true; Steps = @('Stop-VM', 'Start-VM') }
            @{ Action = 'SoftReboot'; From = 'Off'; To = 'Running'; Changed = $true; Forced = $false; Steps = @('Start-VM') }
            @{ Action = 'SoftReboot'; From = 'Saved'; To = 'Running'; Changed = $true; Forced = $true; Steps = @('Remove-VMSavedState', 'Start-VM') }
            @{ Action = 'Pause'; From = 'Running'; To = 'Paused'; Changed = $true; Forced = $false; Steps = @('Suspend-VM') }
            @{ Action = 'Pause'; From = 'Paused'; To = 'Paused'; Changed = $false; Forced = $false; Steps = @() }
            @{ Action = 'Resume'; From = 'Paused'; To = 'Running'; Changed = $true; Forced = $false; Steps = @('Resume-VM') }
            @{ Action = 'Resume'; From = 'Running'; To = 'Running'; Changed = $false; Forced = $false; Steps = @() }
            @{ Action = 'Save'; From = 'Running'; To = 'Saved'; Changed = $true; Forced = $false; Steps = @('Save-VM') }
            @{ Action = 'Save'; From = 'Paused'; To = 'Saved'; Changed = $true; Forced = $false; Steps = @('Save-VM') }
            @{ Action = 'Save'; From = 'Saved'; To = 'Saved'; Changed = $false; Forced = $false; Steps = @() }
            @{ Action = 'Restore'; From = 'Saved'; To = 'Running'; Changed = $true; Forced = $false; Steps = @('Start-VM') }
            @{ Action = 'Restore'; From = 'Off'; To = 'Running'; Changed = $true; Forced = $false; Steps = @('Start-VM') }
            @{ Action = 'Restore'; From = 'Paused'; To = 'Running'; Changed = $true; Forced = $false; Steps = @('Resume-VM') }
            @{ Action = 'Restore'; From = 'Running'; To = 'Running'; Changed = $false; Forced = $false; Steps = @() }
        ) {
            $PsdTest.State = $From
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action $Action
            Assert-MatchesContract $result
            $result.name | Should -Be 'instance-00000001'
            $result.action | Should -Be $Action
            $result.previous_state | Should -Be $From
            $result.state | Should -Be $To
            $result.changed | Should -Be $Changed
            $result.forced | Should -Be $Forced
            $result.waited_seconds | Should -Be 0
            foreach ($cmdlet in $PsdTest.PowerCmdlets) {
                $times = @($Steps | Where-Object { $_ -eq $cmdlet }).Count
                Should -Invoke $cmdlet -Times $times -Exactly
            }
            Should -Invoke Invoke-CimMethod -Times 0 -Exactly
        }

        It 'refuses <Action> from <From> with Hyper-V''s message' -ForEach @(
            @{ Action = 'Pause'; From = 'Off' }
            @{ Action = 'Resume'; From = 'Off' }
            @{ Action = 'Save'; From = 'Off' }
            @{ Action = 'Pause'; From = 'Saved' }
        ) {
            $PsdTest.State = $From
            $failure = { & $script:ScriptPath -Name 'instance-00000001' -Action $Action } | Should -Throw -PassThru
            $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.InvalidPowerTransition'
            $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
            $failure.Exception.Message | Should -BeLike "*$Action*$From*current state*"
            $PsdTest.State | Should -Be $From
        }
    }

    Context 'clean shutdown' {
        It 'waits for the guest and does not force' {
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Shutdown -TimeoutSeconds 60
            Assert-MatchesContract $result
            $result.state | Should -Be 'Off'
            $result.forced | Should -BeFalse
            $result.changed | Should -BeTrue
            $result.waited_seconds | Should -Be 3
            Should -Invoke Invoke-CimMethod -Times 1 -Exactly -ParameterFilter {
                $MethodName -eq 'InitiateShutdown' -and $Arguments.Force -eq $true
            }
            Should -Invoke Stop-VM -Times 0 -Exactly
        }

        It 'asks again every RetryIntervalSeconds while the guest refuses' {
            $PsdTest.ReturnValues = @(32775, 0)
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Shutdown -TimeoutSeconds 60 -RetryIntervalSeconds 5
            $result.state | Should -Be 'Off'
            $result.forced | Should -BeFalse
            $result.waited_seconds | Should -Be 8
            $PsdTest.Requests | Should -Be 2
        }

        It 'turns the VM off when the guest does not shut down in time' {
            $PsdTest.GuestCooperates = $false
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Shutdown -TimeoutSeconds 12 -RetryIntervalSeconds 5
            Assert-MatchesContract $result
            $result.state | Should -Be 'Off'
            $result.forced | Should -BeTrue
            $result.waited_seconds | Should -Be 12
            $PsdTest.Requests | Should -Be 3
            Should -Invoke Stop-VM -Times 1 -Exactly
        }

        It 'turns the VM off when it has no shutdown integration service' {
            Mock Get-CimInstance { }
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Shutdown -TimeoutSeconds 4
            $result.forced | Should -BeTrue
            $result.state | Should -Be 'Off'
            Should -Invoke Invoke-CimMethod -Times 0 -Exactly
        }

        It 'turns the VM off at once with TimeoutSeconds 0' {
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Shutdown -TimeoutSeconds 0
            $result.forced | Should -BeTrue
            $result.waited_seconds | Should -Be 0
            Should -Invoke Get-CimInstance -Times 0 -Exactly
            Should -Invoke Stop-VM -Times 1 -Exactly
        }

        It 'fails with OperationTimeout and leaves the VM running with -NoForce' {
            $PsdTest.GuestCooperates = $false
            $failure = { & $script:ScriptPath -Name 'instance-00000001' -Action Shutdown -TimeoutSeconds 6 -NoForce } |
                Should -Throw -PassThru
            $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.GuestShutdownTimeout'
            $failure.CategoryInfo.Category | Should -Be 'OperationTimeout'
            $PsdTest.State | Should -Be 'Running'
            Should -Invoke Stop-VM -Times 0 -Exactly
        }

        It 'refuses -NoForce on a VM whose guest cannot shut down (<From>)' -ForEach @(
            @{ Action = 'Shutdown'; From = 'Paused' }
            @{ Action = 'Shutdown'; From = 'Saved' }
            @{ Action = 'SoftReboot'; From = 'Saved' }
        ) {
            $PsdTest.State = $From
            $failure = { & $script:ScriptPath -Name 'instance-00000001' -Action $Action -NoForce } | Should -Throw -PassThru
            $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.InvalidPowerTransition'
            $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
            foreach ($cmdlet in $PsdTest.PowerCmdlets) {
                Should -Invoke $cmdlet -Times 0 -Exactly
            }
        }
    }

    Context 'soft reboot' {
        It 'starts the VM again after a clean shutdown' {
            $PsdTest.GuestOffAfter = 2
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action SoftReboot -TimeoutSeconds 60
            Assert-MatchesContract $result
            $result.state | Should -Be 'Running'
            $result.forced | Should -BeFalse
            $result.waited_seconds | Should -Be 2
            Should -Invoke Start-VM -Times 1 -Exactly
            Should -Invoke Restart-VM -Times 0 -Exactly
        }

        It 'resets the VM when the guest does not shut down in time' {
            $PsdTest.GuestCooperates = $false
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action SoftReboot -TimeoutSeconds 10
            Assert-MatchesContract $result
            $result.state | Should -Be 'Running'
            $result.forced | Should -BeTrue
            $result.waited_seconds | Should -Be 10
            Should -Invoke Restart-VM -Times 1 -Exactly
            Should -Invoke Start-VM -Times 0 -Exactly
        }

        It 'fails with OperationTimeout with -NoForce' {
            $PsdTest.GuestCooperates = $false
            $failure = { & $script:ScriptPath -Name 'instance-00000001' -Action SoftReboot -TimeoutSeconds 5 -NoForce } |
                Should -Throw -PassThru
            $failure.CategoryInfo.Category | Should -Be 'OperationTimeout'
            Should -Invoke Restart-VM -Times 0 -Exactly
        }
    }

    Context 'errors and dry runs' {
        It 'fails with ObjectNotFound for a missing VM' {
            $failure = { & $script:ScriptPath -Name 'instance-00000099' -Action Start } | Should -Throw -PassThru
            $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNotFound'
            $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        }

        It 'rejects an unknown action' {
            { & $script:ScriptPath -Name 'instance-00000001' -Action 'Hibernate' } | Should -Throw
        }

        It 'changes nothing with -WhatIf' {
            $PsdTest.State = 'Off'
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Start -WhatIf
            Assert-MatchesContract $result
            $result.changed | Should -BeFalse
            $result.state | Should -Be 'Off'
            Should -Invoke Start-VM -Times 0 -Exactly
        }
    }

    Context 'action names' {
        It 'reports the canonical name of <Given>' -ForEach @(
            @{ Given = 'start'; Canonical = 'Start'; From = 'Off' }
            @{ Given = 'SOFTREBOOT'; Canonical = 'SoftReboot'; From = 'Off' }
            @{ Given = 'restore'; Canonical = 'Restore'; From = 'Saved' }
        ) {
            $PsdTest.State = $From
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action $Given
            Assert-MatchesContract $result
            $result.action | Should -BeExactly $Canonical
            $result.state | Should -Be 'Running'
        }
    }

    Context 'console logger' {
        BeforeEach {
            $PsdTest.LogPath = 'C:\OpenStack\Instances\instance-00000001\console.log'
        }

        It 'makes sure the logger of a VM left running runs (<Action> from <From>)' -ForEach @(
            @{ Action = 'Start'; From = 'Off' }
            @{ Action = 'Start'; From = 'Running' }
            @{ Action = 'Restart'; From = 'Running' }
            @{ Action = 'Resume'; From = 'Paused' }
            @{ Action = 'Restore'; From = 'Saved' }
        ) {
            $PsdTest.State = $From
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action $Action -ConsoleLogPath $PsdTest.LogPath -ConsoleLogMaxBytes 65536
            Assert-MatchesContract $result
            $result.state | Should -Be 'Running'
            $result.console_logger.started | Should -BeTrue
            $result.console_logger.running | Should -BeTrue
            $result.console_logger.pid | Should -Be 4242
            $result.console_logger.error | Should -BeNullOrEmpty
            $result.console_logger.pipe_path | Should -Be '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro'
            $result.console_logger.log_path | Should -Be $PsdTest.LogPath
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter {
                $VMId -eq '0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b' -and $VMName -eq 'instance-00000001' -and
                $PipePath -eq '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro' -and $LogPath -eq $PsdTest.LogPath -and
                $MaxLogBytes -eq 65536
            }
        }

        It 'starts no second logger' {
            $PsdTest.LoggerRunning = $true
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Start -ConsoleLogPath $PsdTest.LogPath
            $result.console_logger.started | Should -BeFalse
            $result.console_logger.running | Should -BeTrue
            $result.console_logger.pid | Should -BeNullOrEmpty
        }

        It 'leaves the logger alone when the VM is not running after <Action>' -ForEach @(
            @{ Action = 'Stop' }
            @{ Action = 'Pause' }
            @{ Action = 'Save' }
        ) {
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action $Action -ConsoleLogPath $PsdTest.LogPath
            Assert-MatchesContract $result
            $result.console_logger | Should -BeNullOrEmpty
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 0 -Exactly
        }

        It 'does nothing for the logger without ConsoleLogPath' {
            $PsdTest.State = 'Off'
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Start
            $result.console_logger | Should -BeNullOrEmpty
            Should -Invoke Get-VMComPort -ModuleName PsDriver -Times 0 -Exactly
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 0 -Exactly
        }

        It 'reports a logger that cannot start and keeps the power action' {
            $PsdTest.State = 'Off'
            Mock Start-PsDriverConsoleLogger -ModuleName PsDriver { throw 'The directory of console log does not exist.' }
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Start -ConsoleLogPath $PsdTest.LogPath 3>$null
            Assert-MatchesContract $result
            $result.state | Should -Be 'Running'
            $result.changed | Should -BeTrue
            $result.console_logger.running | Should -BeFalse
            $result.console_logger.error | Should -Match 'does not exist'
        }

        It 'reports a VM without a serial port pipe' {
            $PsdTest.Ports = @([pscustomobject]@{ Name = 'COM 1'; Path = '' })
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Start -ConsoleLogPath $PsdTest.LogPath 3>$null
            Assert-MatchesContract $result
            $result.console_logger.pipe_path | Should -BeNullOrEmpty
            $result.console_logger.error | Should -Match 'no serial port'
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 0 -Exactly
        }

        It 'starts no logger with -WhatIf' {
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Start -ConsoleLogPath $PsdTest.LogPath -WhatIf
            $result.console_logger | Should -BeNullOrEmpty
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 0 -Exactly
        }
    }

    Context 'resource metering' {
        It 're-enables metering on a VM it starts' {
            $PsdTest.State = 'Off'
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Start -EnableMetrics
            Assert-MatchesContract $result
            $result.metering_enabled | Should -BeTrue
            Should -Invoke Enable-VMResourceMetering -Times 1 -Exactly
        }

        It 'leaves metering alone without -EnableMetrics or when the VM ends off' {
            $started = & $script:ScriptPath -Name 'instance-00000001' -Action Start
            $started.metering_enabled | Should -BeNullOrEmpty
            $stopped = & $script:ScriptPath -Name 'instance-00000001' -Action Stop -EnableMetrics
            Assert-MatchesContract $stopped
            $stopped.metering_enabled | Should -BeNullOrEmpty
            Should -Invoke Enable-VMResourceMetering -Times 0 -Exactly
        }

        It 'keeps the power action when metering cannot be enabled' {
            $PsdTest.State = 'Off'
            Mock Enable-VMResourceMetering { throw 'Access denied.' } -RemoveParameterType 'VM'
            $result = & $script:ScriptPath -Name 'instance-00000001' -Action Start -EnableMetrics 3>$null
            Assert-MatchesContract $result
            $result.state | Should -Be 'Running'
            $result.metering_enabled | Should -BeFalse
        }
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
