# PsDriver helpers: the console logger of a virtual machine.
# Dot-sourced by PsDriver.psm1; the bridge inlines the functions of this file that a
# wrapped script uses (psdriver/bridge/helpers.py). Functions only: no other statements.

# New-Instance starts it with the VM; Set-InstancePowerState (when the VM is left
# running) and Initialize-ComputeHost (every running instance, after a host reboot)
# make sure it runs (Invoke-PsDriverConsoleLogger); Start-InstanceConsoleLogger
# starts or restarts it on demand. Start-InstanceConsoleLogger.ps1 describes the
# logger process, its named mutex and stop event.
function Get-PsDriverConsoleLoggerName {
    <#
    .SYNOPSIS
        The named mutex a VM's logger holds and the named event that stops it.

    .PARAMETER VMId
        The Hyper-V VM id.
    #>
    [CmdletBinding()]
    [OutputType([hashtable])]
    param(
        [Parameter(Mandatory)]
        [string]$VMId
    )
    $id = $VMId.ToLowerInvariant()
    @{
        Mutex = 'Global\psdriver-console-' + $id
        Stop  = 'Global\psdriver-console-stop-' + $id
    }
}

function Test-PsDriverConsoleLogger {
    <#
    .SYNOPSIS
        True while a console logger holds the VM's mutex.

    .PARAMETER VMId
        The Hyper-V VM id.
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param(
        [Parameter(Mandatory)]
        [string]$VMId
    )
    $names = Get-PsDriverConsoleLoggerName -VMId $VMId
    $mutex = $null
    if ([System.Threading.Mutex]::TryOpenExisting($names.Mutex, [ref]$mutex)) {
        $mutex.Dispose()
        return $true
    }
    $false
}

function Stop-PsDriverConsoleLogger {
    <#
    .SYNOPSIS
        Signals the VM's console logger to stop and waits up to 10 seconds for it to exit.

    .DESCRIPTION
        A logger that still holds its mutex after 10 seconds is an error of
        category ResourceBusy with error id PsDriver.ConsoleLoggerBusy. No
        logger running: nothing to do.

    .PARAMETER VMId
        The Hyper-V VM id.

    .PARAMETER VMName
        The VM name, for the error message.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$VMId,

        [Parameter(Mandatory)]
        [string]$VMName
    )
    $names = Get-PsDriverConsoleLoggerName -VMId $VMId
    $stopEvent = $null
    if ([System.Threading.EventWaitHandle]::TryOpenExisting($names.Stop, [ref]$stopEvent)) {
        try {
            $null = $stopEvent.Set()
        }
        finally {
            $stopEvent.Dispose()
        }
    }
    for ($wait = 0; $wait -lt 50; $wait++) {
        if (-not (Test-PsDriverConsoleLogger -VMId $VMId)) {
            return
        }
        Start-Sleep -Milliseconds 200
    }
    throw (New-PsDriverErrorRecord -Message "The console logger of virtual machine '$VMName' did not stop within 10 seconds." -Category ResourceBusy -ErrorId 'PsDriver.ConsoleLoggerBusy' -Target $VMName)
}

function Assert-PsDriverConsoleLogTarget {
    <#
    .SYNOPSIS
        Checks the pipe and the log folder of a console logger; returns the pipe name.

    .DESCRIPTION
        PipePath not of the form \\.\pipe\<name>: InvalidArgument /
        PsDriver.InvalidPipePath. The folder of LogPath does not exist:
        ObjectNotFound / PsDriver.LogDirectoryNotFound.

    .PARAMETER PipePath
        The serial port pipe, \\.\pipe\<name>.

    .PARAMETER LogPath
        The log file.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)]
        [string]$PipePath,

        [Parameter(Mandatory)]
        [string]$LogPath
    )
    $pipeMatch = [regex]::Match($PipePath, '^\\\\\.\\pipe\\([^\\]+)$', [System.Text.RegularExpressions.RegexOptions]::IgnoreCase)
    if (-not $pipeMatch.Success) {
        throw (New-PsDriverErrorRecord -Message "'$PipePath' is not a local named pipe path (\\.\pipe\<name>)." -Category InvalidArgument -ErrorId 'PsDriver.InvalidPipePath' -Target $PipePath)
    }
    $logDirectory = Split-Path -Path $LogPath -Parent
    if ([string]::IsNullOrEmpty($logDirectory) -or -not (Test-Path -LiteralPath $logDirectory -PathType Container)) {
        throw (New-PsDriverErrorRecord -Message "The directory of console log '$LogPath' does not exist." -Category ObjectNotFound -ErrorId 'PsDriver.LogDirectoryNotFound' -Target $LogPath)
    }
    $pipeMatch.Groups[1].Value
}

function Get-PsDriverConsoleReaderScript {
    <#
    .SYNOPSIS
        The code the logger process runs: static text, its settings arrive as one base64 argument.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param()
    @'
function Write-ConsoleLogChunk {
    param(
        [string]$Path,
        [byte[]]$Buffer,
        [int]$Count,
        [long]$MaxBytes
    )
    $info = [System.IO.FileInfo]::new($Path)
    if ($info.Exists -and $info.Length -gt 0 -and $info.Length + $Count -gt $MaxBytes) {
        for ($attempt = 0; $attempt -lt 5; $attempt++) {
            try {
                $archive = $Path + '.1'
                if ([System.IO.File]::Exists($archive)) {
                    [System.IO.File]::Delete($archive)
                }
                [System.IO.File]::Move($Path, $archive)
                break
            }
            catch {
                Start-Sleep -Milliseconds 200
            }
        }
    }
    $share = [System.IO.FileShare]::ReadWrite -bor [System.IO.FileShare]::Delete
    $file = [System.IO.FileStream]::new($Path, [System.IO.FileMode]::Append, [System.IO.FileAccess]::Write, $share)
    try {
        $file.Write($Buffer, 0, $Count)
    }
    finally {
        $file.Dispose()
    }
}

function Test-ConsoleLogVM {
    param(
        [string]$VMId
    )
    try {
        $filter = "Name='{0}'" -f ([guid]::Parse($VMId).ToString().ToUpperInvariant())
        $found = @(Get-CimInstance -Namespace 'root\virtualization\v2' -ClassName 'Msvm_ComputerSystem' -Filter $filter)
        return ($found.Count -gt 0)
    }
    catch {
        return $true
    }
}

function Invoke-ConsoleLogReader {
    param(
        [Parameter(Mandatory)]
        [string]$ConfigBase64
    )
    Set-StrictMode -Version Latest
    $ErrorActionPreference = 'Stop'
    $json = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($ConfigBase64))
    $config = $json | ConvertFrom-Json
    $createdNew = $false
    $mutex = [System.Threading.Mutex]::new($true, [string]$config.mutex, [ref]$createdNew)
    if (-not $createdNew) {
        $mutex.Dispose()
        return
    }
    $resetMode = [System.Threading.EventResetMode]::ManualReset
    $stop = [System.Threading.EventWaitHandle]::new($false, $resetMode, [string]$config.stop)
    $logPath = [string]$config.log
    $logDir = [System.IO.Path]::GetDirectoryName($logPath)
    $maxBytes = [long]$config.max
    $vmCheck = [System.Diagnostics.Stopwatch]::StartNew()
    $buffer = [byte[]]::new(4096)
    try {
        while (-not $stop.WaitOne(0)) {
            if (-not [System.IO.Directory]::Exists($logDir)) {
                return
            }
            if ($vmCheck.Elapsed.TotalSeconds -ge 300) {
                $vmCheck.Restart()
                if (-not (Test-ConsoleLogVM -VMId ([string]$config.vm))) {
                    return
                }
            }
            $pipeOptions = [System.IO.Pipes.PipeOptions]::Asynchronous
            $pipe = [System.IO.Pipes.NamedPipeClientStream]::new('.', [string]$config.pipe, [System.IO.Pipes.PipeDirection]::In, $pipeOptions)
            try {
                $pipe.Connect(2000)
                while ($true) {
                    $pending = $pipe.BeginRead($buffer, 0, $buffer.Length, $null, $null)
                    $handles = [System.Threading.WaitHandle[]]@($pending.AsyncWaitHandle, $stop)
                    $which = [System.Threading.WaitHandle]::WaitAny($handles, 30000)
                    while ($which -eq [System.Threading.WaitHandle]::WaitTimeout) {
                        if (-not [System.IO.Directory]::Exists($logDir)) {
                            return
                        }
                        $which = [System.Threading.WaitHandle]::WaitAny($handles, 30000)
                    }
                    if ($which -eq 1) {
                        return
                    }
                    $count = $pipe.EndRead($pending)
                    if ($count -le 0) {
                        break
                    }
                    Write-ConsoleLogChunk -Path $logPath -Buffer $buffer -Count $count -MaxBytes $maxBytes
                }
            }
            catch {
                $null = $stop.WaitOne(2000)
            }
            finally {
                $pipe.Dispose()
            }
        }
    }
    finally {
        $stop.Dispose()
        $mutex.ReleaseMutex()
        $mutex.Dispose()
    }
}
'@
}

function Start-PsDriverConsoleLogger {
    <#
    .SYNOPSIS
        Launches the console logger of a VM unless one runs already (or replaces it with -Restart).

    .DESCRIPTION
        The logger process is created through WMI (Win32_Process.Create) so
        that it outlives a remoting session, with the reader code passed as
        -EncodedCommand and its settings (pipe, log, size cap, mutex and
        event names) as one base64 string inside it: no value becomes code.
        Waits up to 10 seconds for the new logger to take its mutex.

        Errors: see Assert-PsDriverConsoleLogTarget and
        Stop-PsDriverConsoleLogger; the process cannot be created, or exits
        at once: InvalidOperation / PsDriver.ConsoleLoggerStartFailed.

    .PARAMETER VMId
        The Hyper-V VM id.

    .PARAMETER VMName
        The VM name, for messages.

    .PARAMETER PipePath
        The serial port pipe to read, \\.\pipe\<name>.

    .PARAMETER LogPath
        The log file (its folder must exist).

    .PARAMETER MaxLogBytes
        Size at which the log is rotated to LogPath.1.

    .PARAMETER Restart
        Stop a running logger of the VM first.

    .OUTPUTS
        started (a process was launched), running (a logger holds the VM's
        mutex now), pid (the launched process id, or null).
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
    param(
        [Parameter(Mandatory)]
        [string]$VMId,

        [Parameter(Mandatory)]
        [string]$VMName,

        [Parameter(Mandatory)]
        [string]$PipePath,

        [Parameter(Mandatory)]
        [string]$LogPath,

        [ValidateRange(4096, 1073741824)]
        [int]$MaxLogBytes = 524288,

        [switch]$Restart
    )
    $pipeName = Assert-PsDriverConsoleLogTarget -PipePath $PipePath -LogPath $LogPath
    $names = Get-PsDriverConsoleLoggerName -VMId $VMId
    $running = Test-PsDriverConsoleLogger -VMId $VMId
    if ($running -and -not $Restart) {
        return [ordered]@{
            started = $false
            running = $true
            pid     = $null
        }
    }
    if ($running) {
        Stop-PsDriverConsoleLogger -VMId $VMId -VMName $VMName
    }
    $settings = [ordered]@{
        pipe  = $pipeName
        log   = $LogPath
        max   = $MaxLogBytes
        vm    = $VMId.ToLowerInvariant()
        mutex = $names.Mutex
        stop  = $names.Stop
    }
    $settingsJson = ConvertTo-Json -InputObject $settings -Compress
    $settingsBase64 = [System.Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($settingsJson))
    # Base64 holds no quote: the settings cannot end the literal they are put in.
    $command = (Get-PsDriverConsoleReaderScript) + "`nInvoke-ConsoleLogReader -ConfigBase64 '" + $settingsBase64 + "'`n"
    $encodedCommand = [System.Convert]::ToBase64String([System.Text.Encoding]::Unicode.GetBytes($command))
    $systemRoot = $env:SystemRoot
    if ([string]::IsNullOrEmpty($systemRoot)) {
        $systemRoot = 'C:\Windows'
    }
    $powershellExe = Join-Path -Path $systemRoot -ChildPath 'System32\WindowsPowerShell\v1.0\powershell.exe'
    $commandLine = '"{0}" -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -EncodedCommand {1}' -f $powershellExe, $encodedCommand

    $creation = Invoke-CimMethod -ClassName 'Win32_Process' -MethodName 'Create' -Arguments @{
        CommandLine      = $commandLine
        CurrentDirectory = (Split-Path -Path $LogPath -Parent)
    } -Confirm:$false
    if ([int]$creation.ReturnValue -ne 0) {
        throw (New-PsDriverErrorRecord -Message "Cannot start the console logger of virtual machine '$VMName': Win32_Process.Create returned $($creation.ReturnValue)." -Category InvalidOperation -ErrorId 'PsDriver.ConsoleLoggerStartFailed' -Target $VMName)
    }
    $processId = [int]$creation.ProcessId

    # Wait (up to 10 s) for the logger to take its mutex; a process that exits without it failed.
    $running = $false
    for ($wait = 0; $wait -lt 50; $wait++) {
        if (Test-PsDriverConsoleLogger -VMId $VMId) {
            $running = $true
            break
        }
        if ($null -eq (Get-Process -Id $processId -ErrorAction SilentlyContinue)) {
            if (Test-PsDriverConsoleLogger -VMId $VMId) {
                $running = $true
                break
            }
            throw (New-PsDriverErrorRecord -Message "The console logger of virtual machine '$VMName' (process $processId) exited at once." -Category InvalidOperation -ErrorId 'PsDriver.ConsoleLoggerStartFailed' -Target $VMName)
        }
        Start-Sleep -Milliseconds 200
    }
    [ordered]@{
        started = $true
        running = $running
        pid     = $processId
    }
}

function Get-PsDriverConsolePipePath {
    <#
    .SYNOPSIS
        The VM's logging pipe: a serial port pipe ending in _ro, else COM 1's, else the first; $null if none.

    .DESCRIPTION
        A pipe name ending in _ro is compute-hyperv's read-only logging pipe
        (psdriver connects COM 1 to \\.\pipe\<instance uuid>_ro).

    .PARAMETER VM
        The VM; its serial ports are read with Get-VMComPort.

    .PARAMETER Port
        The VM's serial ports, when the caller has them already (one
        Get-VMComPort call for many VMs); VM is then not asked.
    #>
    [CmdletBinding(DefaultParameterSetName = 'VM')]
    [OutputType([string])]
    param(
        [Parameter(Mandatory, ParameterSetName = 'VM')]
        [object]$VM,

        [Parameter(Mandatory, ParameterSetName = 'Port')]
        [AllowEmptyCollection()]
        [object[]]$Port
    )
    if ($PSCmdlet.ParameterSetName -eq 'VM') {
        $Port = @(Hyper-V\Get-VMComPort -VM $VM)
    }
    $ports = @($Port | Where-Object { $null -ne $_ -and -not [string]::IsNullOrEmpty($_.Path) })
    $readOnly = @($ports | Where-Object { $_.Path -like '*_ro' })
    if ($readOnly.Count -gt 0) {
        return [string]$readOnly[0].Path
    }
    $first = @($ports | Where-Object { $_.Name -match '1$' })
    if ($first.Count -gt 0) {
        return [string]$first[0].Path
    }
    if ($ports.Count -gt 0) {
        return [string]$ports[0].Path
    }
    $null
}

function Invoke-PsDriverConsoleLogger {
    <#
    .SYNOPSIS
        Makes sure the VM's console logger runs; a failure is reported, never thrown.

    .DESCRIPTION
        Start-PsDriverConsoleLogger on PipePath or, when PipePath is not
        passed, on the VM's logging pipe (Get-PsDriverConsolePipePath). It is
        idempotent: nothing is launched while a logger holds the VM's mutex.
        Whatever keeps the logger from running (no serial port pipe, a
        missing log folder, a process that cannot start) is written as a
        warning and returned in error: a console log is never worth failing
        the operation that wants it (spawn, power on, host start).

    .PARAMETER VM
        The VM.

    .PARAMETER LogPath
        The log file (its folder must exist).

    .PARAMETER MaxLogBytes
        Size at which the log is rotated to LogPath.1.

    .PARAMETER PipePath
        The serial port pipe to read; null or empty: the VM has none. Not
        passed: the VM's logging pipe.

    .OUTPUTS
        pipe_path (null when none), log_path, started (a process was
        launched), running (a logger holds the VM's mutex now), pid (of the
        launched process, or null), error (why no logger runs, or null).
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [string]$LogPath,

        [ValidateRange(4096, 1073741824)]
        [int]$MaxLogBytes = 524288,

        [AllowNull()]
        [AllowEmptyString()]
        [string]$PipePath
    )
    $vmName = [string]$VM.Name
    $record = [ordered]@{
        pipe_path = $null
        log_path  = $LogPath
        started   = $false
        running   = $false
        pid       = $null
        error     = $null
    }
    try {
        if (-not $PSBoundParameters.ContainsKey('PipePath')) {
            $PipePath = Get-PsDriverConsolePipePath -VM $VM
        }
        if ([string]::IsNullOrEmpty($PipePath)) {
            $record.error = 'the virtual machine has no serial port connected to a named pipe'
            Write-Warning "No console log for '$vmName': $($record.error)."
            return $record
        }
        $record.pipe_path = $PipePath
        $launch = Start-PsDriverConsoleLogger -VMId $VM.Id.ToString() -VMName $vmName -PipePath $PipePath -LogPath $LogPath -MaxLogBytes $MaxLogBytes
        $record.started = [bool]$launch.started
        $record.running = [bool]$launch.running
        $record.pid = $launch.pid
    }
    catch {
        $record.error = $_.Exception.Message
        Write-Warning "The console logger of '$vmName' was not started: $($record.error)"
    }
    $record
}
