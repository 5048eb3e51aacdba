# PsDriver helpers: Windows paths.
# Dot-sourced by PsDriver.psm1; the bridge inlines the functions of this file that a
# wrapped script uses (psdriver/bridge/helpers.py). Functions only: no other statements.

function Test-PsDriverAbsolutePath {
    <#
    .SYNOPSIS
        True for C:\..., \\server\share\... (and /... where / is the directory separator).

    .PARAMETER Path
        The path to check.
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    if ($Path -match '^\\\\[^\\/]+[\\/][^\\/]+' -or $Path -match '^[A-Za-z]:[\\/]') {
        return $true
    }
    [System.IO.Path]::DirectorySeparatorChar -eq '/' -and $Path.StartsWith('/')
}

function Test-PsDriverSamePath {
    <#
    .SYNOPSIS
        True when two paths name the same file: case, / or \ and a trailing separator aside.

    .PARAMETER Left
        One path; empty or null is never the same as anything.

    .PARAMETER Right
        The other path.
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Left,

        [AllowNull()]
        [AllowEmptyString()]
        [string]$Right
    )
    if ([string]::IsNullOrWhiteSpace($Left) -or [string]::IsNullOrWhiteSpace($Right)) {
        return $false
    }
    $a = $Left.Trim().Replace('/', '\').TrimEnd('\')
    $b = $Right.Trim().Replace('/', '\').TrimEnd('\')
    [string]::Equals($a, $b, [System.StringComparison]::OrdinalIgnoreCase)
}

function Get-PsDriverPathKey {
    <#
    .SYNOPSIS
        Comparable form of a path: full, one separator, no trailing separator, lower case.

    .PARAMETER Path
        The path.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    $separator = [System.IO.Path]::DirectorySeparatorChar
    $full = [System.IO.Path]::GetFullPath(($Path -replace '[\\/]', $separator))
    $full.TrimEnd($separator).ToLowerInvariant()
}

function Test-PsDriverFolderInUse {
    <#
    .SYNOPSIS
        True when a hard disk drive of a registered VM names a file under Folder.

    .PARAMETER Folder
        The folder (a local or UNC path).
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param(
        [Parameter(Mandatory)]
        [string]$Folder
    )
    $prefix = $Folder.Replace('/', '\').TrimEnd('\') + '\'
    foreach ($vm in @(Hyper-V\Get-VM)) {
        foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $vm)) {
            $drivePath = [string]$drive.Path
            if ($drivePath.Replace('/', '\').StartsWith($prefix, [System.StringComparison]::OrdinalIgnoreCase)) {
                return $true
            }
        }
    }
    $false
}
