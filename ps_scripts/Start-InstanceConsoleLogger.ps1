<#
.SYNOPSIS
    Starts (once per VM) a background process on this host that copies the
    VM's serial console output into a log file, with a size cap and one
    rotated file.

.DESCRIPTION
    The logger connects as a client to the named pipe Hyper-V serves for
    the VM's serial port (the pipe exists while the VM runs), and appends
    every byte it reads to LogPath. When a write would take LogPath past
    MaxLogBytes, LogPath is renamed to LogPath + '.1' (replacing it) and a
    new LogPath is started: at most about 2 x MaxLogBytes are kept. The log
    file is opened only for each write, with full sharing, so it can be
    read, moved or deleted at any time. This is the logging half of
    compute-hyperv's serial console handler (os-win's named pipe handler
    rotates the same way, at 512 KiB).

    The pipe: PipePath, or else the VM's serial port whose pipe name ends
    in "_ro" (compute-hyperv's read-only logging pipe), or else COM 1's
    pipe. A VM without a serial port pipe is an error of category
    InvalidOperation with error id PsDriver.NoSerialPipe.

    One logger per VM: the logger holds the named mutex
    Global\psdriver-console-<vm-id> (vm-id: the Hyper-V VM id, lower case)
    while it runs, and this script starts nothing when that mutex exists
    (started false, running true), so the call is idempotent. A second
    logger started concurrently sees the mutex taken and exits at once.

    The logger keeps waiting for the pipe while the VM is off and
    reconnects when it starts again. It exits when
      - the named event Global\psdriver-console-stop-<vm-id> is set (to
        stop it: [System.Threading.EventWaitHandle]::OpenExisting(
        'Global\psdriver-console-stop-<vm-id>').Set()),
      - the directory of LogPath no longer exists (instance deleted or
        moved), or
      - the VM no longer exists (checked every five minutes while the pipe
        is absent or idle).
    -Restart sets the stop event, waits up to 10 seconds for the running
    logger to exit (else ResourceBusy / PsDriver.ConsoleLoggerBusy) and
    starts a new one (for example after the pipe or the log path changed).

    Missing VM: ObjectNotFound / PsDriver.VMNotFound. Missing log
    directory: ObjectNotFound / PsDriver.LogDirectoryNotFound. PipePath not
    of the form \\.\pipe\<name>: InvalidArgument / PsDriver.InvalidPipePath.
    The process cannot be created, or exits at once: InvalidOperation /
    PsDriver.ConsoleLoggerStartFailed.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER LogPath
    Full path of the console log file on the host (its directory must
    exist).

.PARAMETER PipePath
    The serial port pipe to read, \\.\pipe\<name>. Optional.

.PARAMETER MaxLogBytes
    Size at which the log file is rotated (4096 to 1073741824, default
    524288).

.PARAMETER Restart
    Stop a running logger for this VM first, then start a new one.

.EXAMPLE
    .\Start-InstanceConsoleLogger.ps1 -Name instance-00000001 `
        -LogPath 'C:\OpenStack\Instances\instance-00000001\console.log'

.OUTPUTS
    One object: name, vm_id, pipe_path, log_path, max_log_bytes, started
    (a new logger process was launched), running (a logger holds the VM's
    mutex now), pid (the launched process id, or null).

.NOTES
    Why a process created through WMI (Win32_Process.Create):
    - It survives the PowerShell Remoting session. Processes a remote
      session starts directly (Start-Process) belong to the WinRM shell's
      job object and are killed when the session closes; a process created
      by the WMI service is not in that job.
    - Nothing to register or clean up, and no script file on disk: the
      reader is passed with -EncodedCommand (also independent of the
      execution policy). Its settings travel inside that command as one
      base64 string, which cannot contain a quote.
    - It does not survive a host reboot: the driver starts it again when
      the host service starts (Initialize-ComputeHost, for every running
      instance) and when an instance is powered on (Set-InstancePowerState),
      as compute-hyperv restarted its console handlers. It runs as the
      account that called it, in session 0.
    The launching code is Start-PsDriverConsoleLogger in PsDriver.psm1,
    which New-Instance.ps1, Set-InstancePowerState.ps1 and
    Initialize-ComputeHost.ps1 call too: a spawned instance has its logger
    from the start, and this script is for operators who want to start or
    replace one by hand (for example on another pipe or log file).
    A scheduled task per VM would survive reboots and could restart itself,
    but leaves a registration per VM to remove, needs the ScheduledTasks
    module and an account to run as (SYSTEM or a stored password), and
    starts slower. Start-Process alone would do only for local use.
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$LogPath,

    [string]$PipePath,

    [ValidateRange(4096, 1073741824)]
    [int]$MaxLogBytes = 524288,

    [switch]$Restart
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Start-PsDriverConsoleLogger' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$vm = Get-PsDriverVM -Name $Name
$vmId = $vm.Id.ToString().ToLowerInvariant()

if ([string]::IsNullOrEmpty($PipePath)) {
    $PipePath = Get-PsDriverConsolePipePath -VM $vm
    if ([string]::IsNullOrEmpty($PipePath)) {
        throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' has no serial port connected to a named pipe." -Category InvalidOperation -ErrorId 'PsDriver.NoSerialPipe' -Target $Name)
    }
}
$null = Assert-PsDriverConsoleLogTarget -PipePath $PipePath -LogPath $LogPath

$launch = [ordered]@{
    started = $false
    running = Test-PsDriverConsoleLogger -VMId $vmId
    pid     = $null
}
if (($Restart -or -not $launch.running) -and $PSCmdlet.ShouldProcess("virtual machine '$Name'", "Start console logger writing '$LogPath'")) {
    $launch = Start-PsDriverConsoleLogger -VMId $vmId -VMName ([string]$vm.Name) -PipePath $PipePath -LogPath $LogPath -MaxLogBytes $MaxLogBytes -Restart:$Restart
}

[ordered]@{
    name          = [string]$vm.Name
    vm_id         = $vmId
    pipe_path     = $PipePath
    log_path      = $LogPath
    max_log_bytes = $MaxLogBytes
    started       = [bool]$launch.started
    running       = [bool]$launch.running
    pid           = $launch.pid
}
