<#
.SYNOPSIS
    Shared helpers of psdriver: decode the values document, run a ps_scripts
    script, and turn its result or error into the one JSON envelope; launch
    the console logger of a VM (New-Instance and Start-InstanceConsoleLogger).

.DESCRIPTION
    The bridge inlines this file into every wrapped script it sends to a
    Hyper-V host (see Invoke-PsDriverScript.ps1.j2). Administrators can also
    import it to see exactly what the driver sees:

        Import-Module .\PsDriver.psm1
        Invoke-PsDriverScript -Path .\Get-HostInfo.ps1 -Parameters @{ InstancesPath = 'D:\VMs' }

    The envelope is {"ok": true, "result": ..., "log": [...]} or
    {"ok": false, "error": {"type", "message", "category", "error_id",
    "target", "script_stack"}, "log": [...]}.

    Works the same on Windows PowerShell 5.1 and PowerShell 7:
    * input: base64 of UTF-8 JSON, decoded with System.Text.Json (7) or
      JavaScriptSerializer (5.1, no 2 MB limit), never with ConvertFrom-Json,
      which turns date-like strings into DateTime on 7. JSON objects become
      dictionaries, arrays become object[] (also with one or no element);
    * output: the result is first reduced to dictionaries, object[], strings,
      booleans, numbers and null (enums by name, DateTime as ISO 8601, other
      .NET values by ToString()), so ConvertTo-Json has nothing left to
      truncate, unwrap or serialise differently between versions.

    A script that uses a helper of this file imports it itself when it runs
    by hand (the bridge has inlined it already):

        if (-not (Get-Command -Name 'Start-PsDriverConsoleLogger' -ErrorAction SilentlyContinue)) {
            Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psm1')
        }
#>

Set-StrictMode -Version Latest

function Initialize-PsDriverSession {
    <#
    .SYNOPSIS
        Removes the Windows PowerShell 5.1 type data that makes ConvertTo-Json
        write arrays as {"value": [...], "Count": n}.
    #>
    [CmdletBinding()]
    param()
    if ($PSVersionTable.PSVersion.Major -lt 6) {
        Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue
    }
}

function ConvertFrom-PsDriverJsonElement {
    <#
    .SYNOPSIS
        Converts a System.Text.Json element into dictionaries, object[] and scalars.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [System.Text.Json.JsonElement]$Element
    )
    $kind = $Element.ValueKind.ToString()
    if ($kind -eq 'Object') {
        $table = [ordered]@{}
        foreach ($property in $Element.EnumerateObject()) {
            $table[$property.Name] = ConvertFrom-PsDriverJsonElement -Element $property.Value
        }
        return $table
    }
    if ($kind -eq 'Array') {
        $items = [System.Collections.Generic.List[object]]::new()
        foreach ($item in $Element.EnumerateArray()) {
            $items.Add((ConvertFrom-PsDriverJsonElement -Element $item))
        }
        return , $items.ToArray()
    }
    if ($kind -eq 'String') {
        return $Element.GetString()
    }
    if ($kind -eq 'Number') {
        $int = 0
        if ($Element.TryGetInt32([ref]$int)) {
            return $int
        }
        $long = [long]0
        if ($Element.TryGetInt64([ref]$long)) {
            return $long
        }
        return $Element.GetDouble()
    }
    if ($kind -eq 'True') {
        return $true
    }
    if ($kind -eq 'False') {
        return $false
    }
    return $null
}

function ConvertFrom-PsDriverJson {
    <#
    .SYNOPSIS
        Parses JSON text into dictionaries, object[] and scalars on 5.1 and 7 alike.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [AllowEmptyString()]
        [string]$Json
    )
    if ($PSVersionTable.PSVersion.Major -ge 6) {
        $document = [System.Text.Json.JsonDocument]::Parse($Json)
        try {
            return ConvertFrom-PsDriverJsonElement -Element $document.RootElement
        }
        finally {
            $document.Dispose()
        }
    }
    Add-Type -AssemblyName 'System.Web.Extensions'
    $serializer = New-Object -TypeName 'System.Web.Script.Serialization.JavaScriptSerializer'
    $serializer.MaxJsonLength = [int]::MaxValue
    $serializer.RecursionLimit = 256
    return $serializer.DeserializeObject($Json)
}

function ConvertFrom-PsDriverInput {
    <#
    .SYNOPSIS
        Decodes the values document (base64 of UTF-8 JSON) into a hashtable for splatting.
    #>
    [CmdletBinding()]
    [OutputType([hashtable])]
    param(
        [Parameter(Mandatory)]
        [AllowEmptyString()]
        [string]$InputDocument
    )
    $parameters = @{}
    $trimmed = $InputDocument.Trim()
    if ($trimmed.Length -eq 0) {
        return $parameters
    }
    $bytes = [System.Convert]::FromBase64String($trimmed)
    $json = [System.Text.UTF8Encoding]::new($false, $true).GetString($bytes)
    $values = ConvertFrom-PsDriverJson -Json $json
    if ($values -isnot [System.Collections.IDictionary]) {
        throw [System.ArgumentException]::new('The psdriver input document is not a JSON object.')
    }
    foreach ($key in $values.Keys) {
        $parameters[[string]$key] = $values[$key]
    }
    return $parameters
}

function ConvertTo-PsDriverPlainValue {
    <#
    .SYNOPSIS
        Reduces a script result to dictionaries, object[], strings, booleans,
        numbers and null, the same way on Windows PowerShell 5.1 and PowerShell 7.
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [object]$Value,

        [int]$Depth = 0
    )
    if ($Depth -gt 64) {
        throw [System.InvalidOperationException]::new('The script result is nested more than 64 levels deep.')
    }
    if ($null -eq $Value) {
        return $null
    }
    if ($Value -is [string] -or $Value -is [bool]) {
        return $Value
    }
    if ($Value -is [char]) {
        return [string]$Value
    }
    if ($Value -is [enum]) {
        return $Value.ToString()
    }
    if ($Value -is [double] -or $Value -is [single]) {
        if ([double]::IsNaN($Value) -or [double]::IsInfinity($Value)) {
            return $null
        }
        return $Value
    }
    if ($Value -is [System.ValueType] -and $Value.GetType().IsPrimitive) {
        return $Value
    }
    if ($Value -is [decimal]) {
        return $Value
    }
    if ($Value -is [datetime]) {
        return $Value.ToString('o', [System.Globalization.CultureInfo]::InvariantCulture)
    }
    if ($Value -is [System.DateTimeOffset]) {
        return $Value.ToString('o', [System.Globalization.CultureInfo]::InvariantCulture)
    }
    if ($Value -is [System.Collections.IDictionary]) {
        $table = [ordered]@{}
        foreach ($key in $Value.Keys) {
            $table[[string]$key] = ConvertTo-PsDriverPlainValue -Value $Value[$key] -Depth ($Depth + 1)
        }
        return $table
    }
    if ($Value -is [System.Management.Automation.PSCustomObject]) {
        $table = [ordered]@{}
        foreach ($property in $Value.PSObject.Properties) {
            $table[$property.Name] = ConvertTo-PsDriverPlainValue -Value $property.Value -Depth ($Depth + 1)
        }
        return $table
    }
    if ($Value -is [System.Collections.IEnumerable]) {
        $items = [System.Collections.Generic.List[object]]::new()
        foreach ($item in $Value) {
            $items.Add((ConvertTo-PsDriverPlainValue -Value $item -Depth ($Depth + 1)))
        }
        return , $items.ToArray()
    }
    return $Value.ToString()
}

function ConvertTo-PsDriverJson {
    <#
    .SYNOPSIS
        Serialises an envelope that ConvertTo-PsDriverPlainValue has reduced.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)]
        [System.Collections.IDictionary]$Envelope
    )
    ConvertTo-Json -InputObject $Envelope -Depth 100 -Compress
}

function New-PsDriverFailure {
    <#
    .SYNOPSIS
        The error envelope for an ErrorRecord: type, message, category, id, target, stack.
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
    param(
        [Parameter(Mandatory)]
        [System.Management.Automation.ErrorRecord]$ErrorRecord,

        [Parameter(Mandatory)]
        [AllowEmptyCollection()]
        [string[]]$Log
    )
    $exception = $ErrorRecord.Exception
    $message = $exception.Message
    if ($null -ne $ErrorRecord.ErrorDetails -and $ErrorRecord.ErrorDetails.Message) {
        $message = $ErrorRecord.ErrorDetails.Message
    }
    $target = ''
    if ($null -ne $ErrorRecord.TargetObject) {
        $target = [string]$ErrorRecord.TargetObject
    }
    [ordered]@{
        ok    = $false
        error = [ordered]@{
            type         = $exception.GetType().FullName
            message      = [string]$message
            category     = $ErrorRecord.CategoryInfo.Category.ToString()
            error_id     = [string]$ErrorRecord.FullyQualifiedErrorId
            target       = $target
            script_stack = [string]$ErrorRecord.ScriptStackTrace
        }
        log   = $Log
    }
}

function Invoke-PsDriverScriptBlock {
    <#
    .SYNOPSIS
        Runs a ps_scripts script block with the given values and returns the
        envelope as JSON text, with the exit code a process should end with.

    .PARAMETER ScriptBlock
        The standalone script, as a script block.

    .PARAMETER InputDocument
        The values as base64 of UTF-8 JSON (what the bridge sends).

    .PARAMETER Parameters
        The values as a hashtable (when run by hand).

    .PARAMETER Module
        Modules to import first (from the script's contract).
    #>
    [CmdletBinding(DefaultParameterSetName = 'Document')]
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)]
        [scriptblock]$ScriptBlock,

        [Parameter(Mandatory, ParameterSetName = 'Document')]
        [AllowEmptyString()]
        [string]$InputDocument,

        [Parameter(Mandatory, ParameterSetName = 'Hashtable')]
        [hashtable]$Parameters,

        [Parameter()]
        [AllowEmptyCollection()]
        [string[]]$Module = @()
    )
    $log = [System.Collections.Generic.List[string]]::new()
    try {
        Initialize-PsDriverSession
        foreach ($name in $Module) {
            Import-Module -Name $name -ErrorAction Stop -Verbose:$false
        }
        if ($PSCmdlet.ParameterSetName -eq 'Document') {
            $Parameters = ConvertFrom-PsDriverInput -InputDocument $InputDocument
        }
        $records = @(& $ScriptBlock @Parameters 3>&1 4>&1 6>&1)
        $output = [System.Collections.Generic.List[object]]::new()
        foreach ($record in $records) {
            if ($null -eq $record) {
                continue
            }
            if ($record -is [System.Management.Automation.WarningRecord]) {
                $log.Add('WARNING: ' + $record.Message)
            }
            elseif ($record -is [System.Management.Automation.VerboseRecord]) {
                $log.Add('VERBOSE: ' + $record.Message)
            }
            elseif ($record -is [System.Management.Automation.InformationRecord]) {
                $log.Add('INFO: ' + [string]$record.MessageData)
            }
            else {
                $output.Add($record)
            }
        }
        $result = $null
        if ($output.Count -eq 1) {
            $result = $output[0]
        }
        elseif ($output.Count -gt 1) {
            $result = $output.ToArray()
        }
        $envelope = [ordered]@{
            ok     = $true
            result = ConvertTo-PsDriverPlainValue -Value $result
            log    = $log.ToArray()
        }
        $json = ConvertTo-PsDriverJson -Envelope $envelope
        $exitCode = 0
    }
    catch {
        $json = ConvertTo-PsDriverJson -Envelope (New-PsDriverFailure -ErrorRecord $_ -Log $log.ToArray())
        $exitCode = 1
    }
    [pscustomobject]@{
        Json     = $json
        ExitCode = $exitCode
    }
}

function Invoke-PsDriverScript {
    <#
    .SYNOPSIS
        Runs one ps_scripts script by hand and prints the envelope psdriver would parse.

    .PARAMETER Path
        Path of the .ps1 script.

    .PARAMETER Parameters
        The script's parameters.

    .PARAMETER Module
        Modules to import first (the "modules" of the script's .contract.json).

    .EXAMPLE
        Invoke-PsDriverScript -Path .\Get-HostInfo.ps1 -Parameters @{} -Module Hyper-V
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)]
        [string]$Path,

        [Parameter()]
        [hashtable]$Parameters = @{},

        [Parameter()]
        [string[]]$Module = @()
    )
    $text = [System.IO.File]::ReadAllText((Resolve-Path -LiteralPath $Path).ProviderPath)
    $block = [scriptblock]::Create($text)
    (Invoke-PsDriverScriptBlock -ScriptBlock $block -Parameters $Parameters -Module $Module).Json
}

# ---- console logger -------------------------------------------------------------
# New-Instance starts it with the VM; Start-InstanceConsoleLogger starts it again
# when it is gone (after a host reboot) or on demand. Start-InstanceConsoleLogger.ps1
# describes the logger process, its named mutex and stop event.

function New-PsDriverErrorRecord {
    <#
    .SYNOPSIS
        An ErrorRecord with a category and a PsDriver.* error id (the helpers' errors).
    #>
    [CmdletBinding()]
    [OutputType([System.Management.Automation.ErrorRecord])]
    param(
        [Parameter(Mandatory)]
        [string]$Message,

        [Parameter(Mandatory)]
        [System.Management.Automation.ErrorCategory]$Category,

        [Parameter(Mandatory)]
        [string]$ErrorId,

        [object]$Target
    )
    $exception = [System.InvalidOperationException]::new($Message)
    [System.Management.Automation.ErrorRecord]::new($exception, $ErrorId, $Category, $Target)
}

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
    }
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
