<#
.SYNOPSIS
    Returns the tail of a virtual machine's serial console log.

.DESCRIPTION
    Reads the console log written on the host by the console logger
    (Start-InstanceConsoleLogger.ps1): LogPath and, when present, the
    rotated previous file LogPath + '.1', oldest first, as compute-hyperv
    did. At most the last MaxBytes bytes are returned; truncated tells
    whether older output was left out.

    The bytes are decoded as UTF-8; invalid sequences become U+FFFD. When
    the tail starts inside a multi-byte character, the partial character is
    skipped. The files are opened with full sharing, so the logger can keep
    writing (and rotating) while they are read.

    No log file yet is not an error: content is empty. The VM itself is not
    looked up (the log outlives a stopped VM); Name is only echoed back.
    A file that cannot be read (locked without read sharing, access
    denied, an I/O error) is an error of category ResourceUnavailable with
    error id PsDriver.ConsoleLogUnreadable.

.PARAMETER Name
    The instance (VM) name the log belongs to.

.PARAMETER LogPath
    Full path of the console log file on the host.

.PARAMETER MaxBytes
    Most bytes to return, from the end (1 to 16777216, default 1048576).

.EXAMPLE
    .\Get-InstanceConsoleOutput.ps1 -Name instance-00000001 `
        -LogPath 'C:\OpenStack\Instances\instance-00000001\console.log' -MaxBytes 102400

.OUTPUTS
    One object: name, content (text), truncated (bool), size_bytes (total
    size of the log files on disk).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$LogPath,

    [ValidateRange(1, 16777216)]
    [int]$MaxBytes = 1048576
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Read-FileTail {
    <#
    .SYNOPSIS
        The file's length and its last $Count bytes (fewer if it is shorter), read with full sharing.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path,

        [Parameter(Mandatory)]
        [long]$Count
    )
    $share = [System.IO.FileShare]::ReadWrite -bor [System.IO.FileShare]::Delete
    $stream = [System.IO.FileStream]::new($Path, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, $share)
    try {
        $length = $stream.Length
        $take = [long][math]::Min($Count, $length)
        $buffer = [byte[]]::new([int]$take)
        $offset = 0
        if ($take -gt 0) {
            $null = $stream.Seek(-$take, [System.IO.SeekOrigin]::End)
            while ($offset -lt $take) {
                $read = $stream.Read($buffer, $offset, [int]$take - $offset)
                if ($read -le 0) {
                    break
                }
                $offset += $read
            }
        }
        if ($offset -lt $take) {
            $short = [byte[]]::new($offset)
            [System.Array]::Copy($buffer, $short, $offset)
            $buffer = $short
        }
        [pscustomobject]@{
            Length = [long]$length
            Bytes  = $buffer
        }
    }
    finally {
        $stream.Dispose()
    }
}

if (-not (Get-Command -Name 'New-PsDriverErrorRecord' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

# oldest first: the rotated file, then the current one
$files = @(@(($LogPath + '.1'), $LogPath) | Where-Object { Test-Path -LiteralPath $_ -PathType Leaf })

$chunks = [System.Collections.Generic.List[byte[]]]::new()
$totalSize = 0L
$remaining = [long]$MaxBytes
try {
    # newest file first, so that the tail is taken from the end
    for ($i = $files.Count - 1; $i -ge 0; $i--) {
        $tail = Read-FileTail -Path $files[$i] -Count $remaining
        $totalSize += $tail.Length
        $chunks.Insert(0, $tail.Bytes)
        $remaining -= $tail.Bytes.Length
    }
}
catch {
    throw (New-PsDriverErrorRecord -Message "Cannot read console log '$LogPath': $($_.Exception.Message)" -Category ResourceUnavailable -ErrorId 'PsDriver.ConsoleLogUnreadable' -Target $LogPath)
}

$collected = [System.IO.MemoryStream]::new()
foreach ($chunk in $chunks) {
    $collected.Write($chunk, 0, $chunk.Length)
}
$data = $collected.ToArray()
$truncated = $totalSize -gt $data.Length

$start = 0
if ($truncated) {
    # skip UTF-8 continuation bytes (10xxxxxx) of a character cut by the tail
    while ($start -lt $data.Length -and $start -lt 3 -and ($data[$start] -band 0xC0) -eq 0x80) {
        $start++
    }
}
$utf8 = [System.Text.UTF8Encoding]::new($false, $false)
$content = $utf8.GetString($data, $start, $data.Length - $start)

[ordered]@{
    name       = $Name
    content    = $content
    truncated  = $truncated
    size_bytes = $totalSize
}
