<#
.SYNOPSIS
    Changes the power state of one virtual machine (start, stop, shut down,
    restart, soft reboot, pause, resume, save, restore).

.DESCRIPTION
    Applies one power action to the VM named exactly Name and reports the
    state before and after.

    What each action does, by the VM's state when the script starts
    ("no-op" means nothing is done and changed is false):

      Start       Running, Starting: no-op. Paused: Resume-VM.
                  Off, Saved and any other state: Start-VM (a Saved VM is
                  restored from its saved state).
      Stop        Hard power off. Off: no-op. Saved: Remove-VMSavedState.
                  Any other state: Stop-VM -TurnOff.
      Shutdown    Off: no-op. Running: clean guest shutdown through the
                  Hyper-V shutdown integration service, waiting up to
                  TimeoutSeconds; if the VM is not off by then it is turned
                  off hard (forced), or, with -NoForce, an OperationTimeout
                  error is raised and the VM is left running. Any other
                  state (Paused, Saved, ...): the guest cannot shut itself
                  down, so the VM is turned off as for Stop, or, with
                  -NoForce, an InvalidOperation error is raised.
      Restart     Hard reset. Running and any other state: Restart-VM.
                  Off: Start-VM. Saved: Remove-VMSavedState, then Start-VM.
                  Paused: Stop-VM -TurnOff, then Start-VM.
      SoftReboot  Running: clean guest shutdown within TimeoutSeconds, then
                  Start-VM; if the guest does not shut down in time the VM
                  is reset hard (forced), or, with -NoForce, an
                  OperationTimeout error is raised. Any other state: as
                  Restart (with -NoForce, an InvalidOperation error when
                  that needs a hard operation). This follows
                  compute-hyperv's soft reboot (wait_soft_reboot_seconds,
                  then a hard reboot).
      Pause       Paused: no-op. Any other state: Suspend-VM.
      Resume      Running: no-op. Any other state: Resume-VM.
      Save        Saved: no-op. Any other state: Save-VM (suspend to disk).
      Restore     Running: no-op. Paused: Resume-VM. Any other state:
                  Start-VM (a Saved VM is restored; an Off VM is booted, as
                  compute-hyperv's resume did).

    A Hyper-V cmdlet that refuses the transition (for example Suspend-VM on
    a VM that is Off) becomes an error of category InvalidOperation with
    error id PsDriver.InvalidPowerTransition; its message carries the
    action, the state and Hyper-V's own message.

    The clean shutdown calls InitiateShutdown (Force = true) on the VM's
    Msvm_ShutdownComponent, re-requests it every RetryIntervalSeconds (the
    guest may still be booting and refuse it) and checks the VM state every
    second. waited_seconds counts the seconds spent waiting for the guest.

    Console log: with ConsoleLogPath, a VM that is running after the action
    (Running, Starting, Resuming or Reset) gets its serial console logger
    unless one runs already (Start-PsDriverConsoleLogger; the logger does
    not survive a host reboot), reading the VM's logging pipe (a serial
    port pipe ending in _ro, else COM 1's). A logger that cannot be started
    never fails the power action: console_logger.error says why. Without
    ConsoleLogPath, or when the VM is not running, console_logger is null.

    Resource metering: Hyper-V drops a VM's resource metering when it powers
    off. With -EnableMetrics, a VM that is running after the action gets it
    enabled again (Enable-VMResourceMetering; enabling it when it is on
    already keeps the figures). A failure to enable it is a warning and
    metering_enabled false, never a failed power action.

    A missing VM is an error of category ObjectNotFound with error id
    PsDriver.VMNotFound. -WhatIf reports the current state and changes
    nothing.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER Action
    Start, Stop, Shutdown, Restart, SoftReboot, Pause, Resume, Save or
    Restore (see the description).

.PARAMETER TimeoutSeconds
    Shutdown and SoftReboot: how long to wait for the guest to shut down
    (0 to 86400, default 60). 0 skips the clean shutdown.

.PARAMETER RetryIntervalSeconds
    Shutdown and SoftReboot: how often to repeat the shutdown request
    (1 to 3600, default 5).

.PARAMETER NoForce
    Shutdown and SoftReboot: never fall back to a hard power off or reset.

.PARAMETER ConsoleLogPath
    The console log of the VM (its folder must exist). Optional; see
    "Console log" above.

.PARAMETER ConsoleLogMaxBytes
    Size at which the console log is rotated (4096 to 1073741824, default
    524288).

.PARAMETER EnableMetrics
    Re-enable resource metering on a VM left running (see "Resource
    metering" above; [hyperv] enable_instance_metrics_collection).

.EXAMPLE
    .\Set-InstancePowerState.ps1 -Name instance-00000001 -Action Shutdown -TimeoutSeconds 120

    Asks the guest to shut down, waits up to two minutes, then turns the VM
    off if it is still running.

.EXAMPLE
    .\Set-InstancePowerState.ps1 -Name instance-00000001 -Action Start `
        -ConsoleLogPath 'C:\OpenStack\Instances\instance-00000001\console.log'

.OUTPUTS
    One object: name, action (the canonical name: Start, SoftReboot, ...),
    previous_state, state (after the action), changed (a state change was
    requested), forced (a hard power operation was used: turn off, reset or
    discarding the saved state), waited_seconds, console_logger (null, or
    pipe_path, log_path, started, running, pid, error).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateSet('Start', 'Stop', 'Shutdown', 'Restart', 'SoftReboot', 'Pause', 'Resume', 'Save', 'Restore')]
    [string]$Action,

    [ValidateRange(0, 86400)]
    [int]$TimeoutSeconds = 60,

    [ValidateRange(1, 3600)]
    [int]$RetryIntervalSeconds = 5,

    [switch]$NoForce,

    [string]$ConsoleLogPath,

    [ValidateRange(4096, 1073741824)]
    [int]$ConsoleLogMaxBytes = 524288,

    [switch]$EnableMetrics
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Get-PowerPlan {
    <#
    .SYNOPSIS
        The steps for Action from State; no output means nothing to do.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Action,

        [Parameter(Mandatory)]
        [string]$State
    )
    switch ($Action) {
        'Start' {
            if ($State -in @('Running', 'Starting')) {
                return
            }
            if ($State -eq 'Paused') {
                'Resume'
                return
            }
            'Start'
        }
        'Stop' {
            if ($State -eq 'Off') {
                return
            }
            if ($State -eq 'Saved') {
                'DiscardSavedState'
                return
            }
            'TurnOff'
        }
        'Shutdown' {
            if ($State -eq 'Off') {
                return
            }
            if ($State -eq 'Running') {
                'GuestShutdown'
                return
            }
            if ($State -eq 'Saved') {
                'DiscardSavedState'
                return
            }
            'TurnOff'
        }
        { $_ -in @('Restart', 'SoftReboot') } {
            if ($State -eq 'Running' -and $Action -eq 'SoftReboot') {
                'GuestShutdown'
                return
            }
            if ($State -eq 'Off') {
                'Start'
                return
            }
            if ($State -eq 'Saved') {
                'DiscardSavedState'
                'Start'
                return
            }
            if ($State -eq 'Paused') {
                'TurnOff'
                'Start'
                return
            }
            'Reset'
        }
        'Pause' {
            if ($State -ne 'Paused') {
                'Pause'
            }
        }
        'Resume' {
            if ($State -ne 'Running') {
                'Resume'
            }
        }
        'Save' {
            if ($State -ne 'Saved') {
                'Save'
            }
        }
        'Restore' {
            if ($State -eq 'Running') {
                return
            }
            if ($State -eq 'Paused') {
                'Resume'
                return
            }
            'Start'
        }
    }
}

function Invoke-PowerStep {
    <#
    .SYNOPSIS
        Runs one Hyper-V power cmdlet; a refusal becomes PsDriver.InvalidPowerTransition.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Step,

        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [string]$Action
    )
    try {
        switch ($Step) {
            'Start' {
                Hyper-V\Start-VM -VM $VM -Confirm:$false
            }
            'TurnOff' {
                Hyper-V\Stop-VM -VM $VM -TurnOff -Force -Confirm:$false
            }
            'DiscardSavedState' {
                Hyper-V\Remove-VMSavedState -VM $VM -Confirm:$false
            }
            'Reset' {
                Hyper-V\Restart-VM -VM $VM -Force -Confirm:$false
            }
            'Pause' {
                Hyper-V\Suspend-VM -VM $VM -Confirm:$false
            }
            'Resume' {
                Hyper-V\Resume-VM -VM $VM -Confirm:$false
            }
            'Save' {
                Hyper-V\Save-VM -VM $VM -Confirm:$false
            }
        }
    }
    catch {
        $failure = $_
        $stateNow = 'unknown'
        try {
            $stateNow = Get-PsDriverVMState -VM $VM
        }
        catch {
            Write-Verbose "Cannot read the state of '$($VM.Name)': $($_.Exception.Message)"
        }
        $message = "Cannot {0} virtual machine '{1}' (state {2}, step {3}): {4}" -f $Action, $VM.Name, $stateNow, $Step, $failure.Exception.Message
        throw (New-PsDriverErrorRecord -Message $message -Category InvalidOperation -ErrorId 'PsDriver.InvalidPowerTransition' -Target $VM.Name -InnerException $failure.Exception)
    }
}

function Request-GuestShutdown {
    <#
    .SYNOPSIS
        Asks the guest to shut down; returns $true if Hyper-V accepted the request.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    try {
        $filter = "SystemName='{0}'" -f $VM.Id.ToString().ToUpperInvariant()
        $component = @(Get-CimInstance -Namespace 'root\virtualization\v2' -ClassName 'Msvm_ShutdownComponent' -Filter $filter)
        if ($component.Count -eq 0) {
            return $false
        }
        $arguments = @{
            Force  = $true
            Reason = 'Shutdown requested by OpenStack Nova.'
        }
        $answer = Invoke-CimMethod -InputObject $component[0] -MethodName 'InitiateShutdown' -Arguments $arguments -Confirm:$false
        # 0: done, 4096: a job was started; anything else: refused (guest still booting, no integration services, ...)
        return ([int]$answer.ReturnValue -eq 0 -or [int]$answer.ReturnValue -eq 4096)
    }
    catch {
        Write-Verbose "Shutdown request for '$($VM.Name)' failed: $($_.Exception.Message)"
        return $false
    }
}

function Wait-GuestShutdown {
    <#
    .SYNOPSIS
        Requests a clean shutdown and waits up to TimeoutSeconds; returns seconds waited.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [int]$TimeoutSeconds,

        [Parameter(Mandatory)]
        [int]$RetryIntervalSeconds
    )
    $waited = 0
    while ($waited -lt $TimeoutSeconds) {
        $null = Request-GuestShutdown -VM $VM
        $interval = [math]::Min($RetryIntervalSeconds, $TimeoutSeconds - $waited)
        for ($tick = 0; $tick -lt $interval; $tick++) {
            Start-Sleep -Seconds 1
            $waited++
            if ((Get-PsDriverVMState -VM $VM) -eq 'Off') {
                return $waited
            }
        }
    }
    $waited
}

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

# ValidateSet accepts any casing and keeps the caller's: report the canonical name.
$actionNames = @('Start', 'Stop', 'Shutdown', 'Restart', 'SoftReboot', 'Pause', 'Resume', 'Save', 'Restore')
$Action = @($actionNames | Where-Object { $_ -eq $Action })[0]

$vm = Get-PsDriverVM -Name $Name
$previousState = $vm.State.ToString()
$finalState = $previousState
$changed = $false
$forced = $false
$waitedSeconds = 0
$plan = @(Get-PowerPlan -Action $Action -State $previousState)

$hardSteps = @('TurnOff', 'Reset', 'DiscardSavedState')
$hardPlanned = @($plan | Where-Object { $_ -in $hardSteps }).Count -gt 0
if ($NoForce -and $hardPlanned -and $Action -in @('Shutdown', 'SoftReboot')) {
    throw (New-PsDriverErrorRecord -Message "Cannot $Action virtual machine '$Name' cleanly: it is $previousState, and -NoForce forbids a hard power operation." -Category InvalidOperation -ErrorId 'PsDriver.InvalidPowerTransition' -Target $Name)
}

if ($plan.Count -gt 0 -and $PSCmdlet.ShouldProcess("virtual machine '$Name' ($previousState)", $Action)) {
    $changed = $true
    foreach ($step in $plan) {
        if ($step -ne 'GuestShutdown') {
            Invoke-PowerStep -Step $step -VM $vm -Action $Action
            if ($step -in $hardSteps) {
                $forced = $true
            }
            continue
        }
        $waitedSeconds += Wait-GuestShutdown -VM $vm -TimeoutSeconds $TimeoutSeconds -RetryIntervalSeconds $RetryIntervalSeconds
        $isOff = (Get-PsDriverVMState -VM $vm) -eq 'Off'
        if (-not $isOff -and $NoForce) {
            throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' did not shut down within $TimeoutSeconds seconds." -Category OperationTimeout -ErrorId 'PsDriver.GuestShutdownTimeout' -Target $Name)
        }
        if ($Action -eq 'Shutdown') {
            if (-not $isOff) {
                Invoke-PowerStep -Step 'TurnOff' -VM $vm -Action $Action
                $forced = $true
            }
        }
        elseif ($isOff) {
            Invoke-PowerStep -Step 'Start' -VM $vm -Action $Action
        }
        else {
            Invoke-PowerStep -Step 'Reset' -VM $vm -Action $Action
            $forced = $true
        }
    }
    $finalState = Get-PsDriverVMState -VM $vm
}

# A VM left running gets its console logger (it does not survive a host reboot);
# a logger that cannot start is reported, the power action stands.
$consoleLogger = $null
if (-not [string]::IsNullOrEmpty($ConsoleLogPath) -and $finalState -in @('Running', 'Starting', 'Resuming', 'Reset') -and
    $PSCmdlet.ShouldProcess("virtual machine '$Name'", "Make sure a console logger writes '$ConsoleLogPath'")) {
    $consoleLogger = Invoke-PsDriverConsoleLogger -VM $vm -LogPath $ConsoleLogPath -MaxLogBytes $ConsoleLogMaxBytes
}

# Hyper-V drops resource metering when a VM powers off: a VM left running gets it back.
$meteringEnabled = $null
if ($EnableMetrics -and $finalState -in @('Running', 'Starting', 'Resuming', 'Reset') -and
    $PSCmdlet.ShouldProcess("virtual machine '$Name'", 'Enable resource metering')) {
    try {
        Hyper-V\Enable-VMResourceMetering -VM $vm
        $meteringEnabled = $true
    }
    catch {
        Write-Warning "Cannot enable resource metering on '$Name': $($_.Exception.Message)"
        $meteringEnabled = $false
    }
}

[ordered]@{
    name             = [string]$vm.Name
    action           = $Action
    previous_state   = $previousState
    state            = $finalState
    changed          = $changed
    forced           = $forced
    waited_seconds   = [int]$waitedSeconds
    console_logger   = $consoleLogger
    metering_enabled = $meteringEnabled
}
