<#
.SYNOPSIS
    Makes sure a virtual machine's interactive serial console is reachable
    over TCP (nova's serial console proxy connects to it), and reports the
    port.

.DESCRIPTION
    A relay process on this host listens on ListenAddress at one TCP port
    and connects one client at a time to the VM's read-write serial port
    pipe (PipePath, normally \\.\pipe\<instance uuid>_rw on COM 2), copying
    bytes both ways. The read-only pipe of COM 1 stays with the console
    logger, so the console log keeps working.

    One relay per VM: when one runs already (it holds the named mutex
    Global\psdriver-serial-<vm id>), its port is reported and nothing is
    started. Otherwise the port is the first one from PortRangeStart to
    PortRangeEnd that no other psdriver relay holds (each holds the named
    mutex Global\psdriver-serial-port-<port>) and that can be bound on
    ListenAddress (another program may use it); none free: an error
    ResourceUnavailable / PsDriver.NoFreePort.

    The relay is created through WMI (Win32_Process.Create), so that it
    outlives a remoting session, with its settings as one base64 string in
    its -EncodedCommand: no value becomes code. It writes
    <InstanceDir>\serialconsole.json ({port, pid, listen_address}) and
    exits, releasing its port, when the instance folder is removed or the
    VM no longer exists (checked every 10 seconds): destroying the instance
    frees the port.

    Errors: a missing VM: ObjectNotFound / PsDriver.VMNotFound; no serial
    port of the VM connected to PipePath: ObjectNotFound /
    PsDriver.NoSerialPort; the relay cannot be started or exits at once:
    InvalidOperation / PsDriver.SerialConsoleStartFailed.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER PipePath
    The read-write serial port pipe, \\.\pipe\<name>.

.PARAMETER InstanceDir
    The instance folder (must exist): the relay's state file lives there
    and the relay exits when it is removed.

.PARAMETER ListenAddress
    The IP address to listen on (nova's [serial_console]
    proxyclient_address), 0.0.0.0 for every address.

.PARAMETER PortRangeStart
    First port that may be used (nova's [serial_console] port_range).

.PARAMETER PortRangeEnd
    Last port that may be used.

.EXAMPLE
    .\Start-InstanceSerialConsole.ps1 -Name instance-00000001 -PipePath '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_rw' -InstanceDir 'C:\OpenStack\Instances\instance-00000001' -ListenAddress 192.0.2.11 -PortRangeStart 10000 -PortRangeEnd 20000

.OUTPUTS
    One object: name, vm_id, pipe_path, listen_address, port, started (a
    relay was launched by this call), running (a relay holds the VM's
    mutex now), pid (the launched process id, or null).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidatePattern('^\\\\\.\\pipe\\[^\\/]+$')]
    [string]$PipePath,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$InstanceDir,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$ListenAddress,

    [Parameter(Mandatory)]
    [ValidateRange(1, 65535)]
    [int]$PortRangeStart,

    [Parameter(Mandatory)]
    [ValidateRange(1, 65535)]
    [int]$PortRangeEnd
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Test-NamedMutex {
    <#
    .SYNOPSIS
        True while some process holds the named mutex.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$MutexName
    )
    $mutex = $null
    if ([System.Threading.Mutex]::TryOpenExisting($MutexName, [ref]$mutex)) {
        $mutex.Dispose()
        return $true
    }
    $false
}

function Test-PortBindable {
    <#
    .SYNOPSIS
        True if a listener can be started on the address and port now.
    #>
    param(
        [Parameter(Mandatory)]
        [System.Net.IPAddress]$Address,

        [Parameter(Mandatory)]
        [int]$Port
    )
    $listener = [System.Net.Sockets.TcpListener]::new($Address, $Port)
    try {
        $listener.Start()
        return $true
    }
    catch {
        return $false
    }
    finally {
        $listener.Stop()
    }
}

function Read-RelayState {
    <#
    .SYNOPSIS
        The relay's state file ({port, pid, listen_address}), or $null.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) {
        return $null
    }
    try {
        return (Get-Content -LiteralPath $Path -Raw | ConvertFrom-Json)
    }
    catch {
        return $null
    }
}

function Get-SerialRelayScript {
    <#
    .SYNOPSIS
        The relay's code: listens, and copies bytes between one TCP client and the pipe.
    #>
    @'
function Invoke-SerialRelay {
    param([Parameter(Mandatory)][string]$ConfigBase64)
    Set-StrictMode -Version Latest
    $ErrorActionPreference = 'Stop'
    $config = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($ConfigBase64)) | ConvertFrom-Json
    $createdNew = $false
    $vmMutex = [System.Threading.Mutex]::new($true, [string]$config.mutex, [ref]$createdNew)
    if (-not $createdNew) {
        $vmMutex.Dispose()
        return
    }
    $portMutex = [System.Threading.Mutex]::new($true, [string]$config.port_mutex, [ref]$createdNew)
    $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Parse([string]$config.listen), [int]$config.port)
    $stateFile = Join-Path -Path ([string]$config.dir) -ChildPath 'serialconsole.json'
    $alive = {
        if (-not [System.IO.Directory]::Exists([string]$config.dir)) {
            return $false
        }
        try {
            $filter = "Name='{0}'" -f ([string]$config.vm).ToUpperInvariant()
            return (@(Get-CimInstance -Namespace 'root\virtualization\v2' -ClassName 'Msvm_ComputerSystem' -Filter $filter).Count -gt 0)
        }
        catch {
            return $true
        }
    }
    try {
        $listener.Start()
        $state = [ordered]@{ port = [int]$config.port; pid = $PID; listen_address = [string]$config.listen }
        [System.IO.File]::WriteAllText($stateFile, (ConvertTo-Json -InputObject $state -Depth 3 -Compress))
        $check = [System.Diagnostics.Stopwatch]::StartNew()
        while ($true) {
            if ($check.Elapsed.TotalSeconds -ge 10) {
                $check.Restart()
                if (-not (& $alive)) {
                    return
                }
            }
            if (-not $listener.Pending()) {
                Start-Sleep -Milliseconds 250
                continue
            }
            $client = $listener.AcceptTcpClient()
            $pipe = [System.IO.Pipes.NamedPipeClientStream]::new('.', [string]$config.pipe, [System.IO.Pipes.PipeDirection]::InOut, [System.IO.Pipes.PipeOptions]::Asynchronous)
            try {
                $pipe.Connect(5000)
                $network = $client.GetStream()
                $toGuest = $network.CopyToAsync($pipe)
                $fromGuest = $pipe.CopyToAsync($network)
                $copies = [System.Threading.Tasks.Task[]]@($toGuest, $fromGuest)
                while ([System.Threading.Tasks.Task]::WaitAny($copies, 10000) -lt 0) {
                    if (-not (& $alive)) {
                        return
                    }
                }
            }
            catch {
                Start-Sleep -Milliseconds 500
            }
            finally {
                $pipe.Dispose()
                $client.Close()
            }
        }
    }
    finally {
        $listener.Stop()
        if ([System.IO.File]::Exists($stateFile)) {
            [System.IO.File]::Delete($stateFile)
        }
        $portMutex.ReleaseMutex()
        $portMutex.Dispose()
        $vmMutex.ReleaseMutex()
        $vmMutex.Dispose()
    }
}
'@
}

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

if ($PortRangeEnd -lt $PortRangeStart) {
    throw (New-PsDriverErrorRecord -Message "The port range $PortRangeStart-$PortRangeEnd is empty." -Category InvalidArgument -ErrorId 'PsDriver.InvalidPortRange' -Target $Name)
}
$address = $null
if (-not [System.Net.IPAddress]::TryParse($ListenAddress, [ref]$address)) {
    throw (New-PsDriverErrorRecord -Message "'$ListenAddress' is not an IP address." -Category InvalidArgument -ErrorId 'PsDriver.InvalidListenAddress' -Target $ListenAddress)
}
$vm = Get-PsDriverVM -Name $Name
if (-not (Test-Path -LiteralPath $InstanceDir -PathType Container)) {
    throw (New-PsDriverErrorRecord -Message "The instance folder '$InstanceDir' does not exist." -Category ObjectNotFound -ErrorId 'PsDriver.InstanceDirNotFound' -Target $InstanceDir)
}
$vmId = $vm.Id.ToString().ToLowerInvariant()
$ports = @(Hyper-V\Get-VMComPort -VM $vm | Where-Object { -not [string]::IsNullOrEmpty($_.Path) -and $_.Path -eq $PipePath })
if ($ports.Count -eq 0) {
    throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' has no serial port connected to '$PipePath'." -Category ObjectNotFound -ErrorId 'PsDriver.NoSerialPort' -Target $Name)
}

$mutexName = 'Global\psdriver-serial-' + $vmId
$stateFile = Join-Path -Path $InstanceDir -ChildPath 'serialconsole.json'
$port = $null
$started = $false
$running = Test-NamedMutex -MutexName $mutexName
$processId = $null
if ($running) {
    $state = Read-RelayState -Path $stateFile
    if ($null -ne $state) {
        $port = [int]$state.port
    }
}

if (-not $running -and $PSCmdlet.ShouldProcess("virtual machine '$Name'", "Relay '$PipePath' to a TCP port on $ListenAddress")) {
    for ($candidate = $PortRangeStart; $candidate -le $PortRangeEnd; $candidate++) {
        if (-not (Test-NamedMutex -MutexName ('Global\psdriver-serial-port-' + $candidate)) -and (Test-PortBindable -Address $address -Port $candidate)) {
            $port = $candidate
            break
        }
    }
    if ($null -eq $port) {
        throw (New-PsDriverErrorRecord -Message "No free TCP port from $PortRangeStart to $PortRangeEnd on $ListenAddress for the serial console of '$Name'." -Category ResourceUnavailable -ErrorId 'PsDriver.NoFreePort' -Target $Name)
    }
    $settings = [ordered]@{
        pipe       = ($PipePath -replace '^\\\\\.\\pipe\\', '')
        dir        = $InstanceDir
        vm         = $vmId
        listen     = $address.ToString()
        port       = $port
        mutex      = $mutexName
        port_mutex = 'Global\psdriver-serial-port-' + $port
    }
    $settingsBase64 = [System.Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes((ConvertTo-Json -InputObject $settings -Depth 3 -Compress)))
    # Base64 holds no quote: the settings cannot end the literal they are put in.
    $command = (Get-SerialRelayScript) + "`nInvoke-SerialRelay -ConfigBase64 '" + $settingsBase64 + "'`n"
    $encodedCommand = [System.Convert]::ToBase64String([System.Text.Encoding]::Unicode.GetBytes($command))
    $systemRoot = $env:SystemRoot
    if ([string]::IsNullOrEmpty($systemRoot)) {
        $systemRoot = 'C:\Windows'
    }
    $powershellExe = Join-Path -Path $systemRoot -ChildPath 'System32\WindowsPowerShell\v1.0\powershell.exe'
    $creation = Invoke-CimMethod -ClassName 'Win32_Process' -MethodName 'Create' -Arguments @{
        CommandLine      = ('"{0}" -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -EncodedCommand {1}' -f $powershellExe, $encodedCommand)
        CurrentDirectory = $InstanceDir
    } -Confirm:$false
    if ([int]$creation.ReturnValue -ne 0) {
        throw (New-PsDriverErrorRecord -Message "Cannot start the serial console relay of '$Name': Win32_Process.Create returned $($creation.ReturnValue)." -Category InvalidOperation -ErrorId 'PsDriver.SerialConsoleStartFailed' -Target $Name)
    }
    $processId = [int]$creation.ProcessId
    $started = $true
    for ($wait = 0; $wait -lt 50 -and -not $running; $wait++) {
        if (Test-NamedMutex -MutexName $mutexName) {
            $running = $true
            break
        }
        if ($null -eq (Get-Process -Id $processId -ErrorAction SilentlyContinue)) {
            throw (New-PsDriverErrorRecord -Message "The serial console relay of '$Name' (process $processId) exited at once." -Category InvalidOperation -ErrorId 'PsDriver.SerialConsoleStartFailed' -Target $Name)
        }
        Start-Sleep -Milliseconds 200
    }
}

[ordered]@{
    name           = [string]$vm.Name
    vm_id          = $vmId
    pipe_path      = $PipePath
    listen_address = $address.ToString()
    port           = $port
    started        = $started
    running        = $running
    pid            = $processId
}
