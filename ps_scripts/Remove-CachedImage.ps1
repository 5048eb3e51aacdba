<#
.SYNOPSIS
    Deletes images from the image cache folder (_base), skipping those an
    existing VM still uses.

.DESCRIPTION
    Each Name entry selects the files directly in BasePath whose name
    equals it, with or without the extension (case-insensitive; *.vhd,
    *.vhdx and *.iso only). A file is skipped, not deleted, when it is in
    use: in the disk chain (the disk itself or a differencing parent) of a
    hard disk drive of any VM on the host, or the image of a DVD drive
    (the same rule as Get-CachedImage). Skipped entries carry a reason:

      in_use         used_by lists the VMs
      not_found      no file matched the Name entry (path is null)
      remove_failed  the deletion failed, for example because the file is
                     open; message has the error
      not_confirmed  -WhatIf, or -Confirm answered no

    Nothing is an error except a Name entry with a path separator or a
    wildcard character: InvalidArgument / PsDriver.InvalidImageName. The
    caller must hold its image lock so that no spawn starts using an image
    between the check and the deletion.

.PARAMETER BasePath
    The image cache folder, normally <instances_path>\_base.

.PARAMETER Name
    Image names to delete (file names, with or without extension).

.EXAMPLE
    .\Remove-CachedImage.ps1 -BasePath C:\OpenStack\Instances\_base -Name 0c7e2a55-6f0e-4d7c-9e4c-2b8f1a3d5e70

.OUTPUTS
    One object: base_path, removed [{name, path}], skipped [{name, path,
    reason, used_by, message}].
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$BasePath,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string[]]$Name
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function New-ErrorRecord {
    [CmdletBinding()]
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

function Get-PathKey {
    <#
    .SYNOPSIS
        Comparable form of a path: full, one separator, no trailing separator, lower case.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    $separator = [System.IO.Path]::DirectorySeparatorChar
    $full = [System.IO.Path]::GetFullPath(($Path -replace '[\\/]', $separator))
    $full.TrimEnd($separator).ToLowerInvariant()
}

function Get-CachedVhd {
    <#
    .SYNOPSIS
        Get-VHD once per path; $null when the file cannot be read.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path,

        [Parameter(Mandatory)]
        [hashtable]$Cache
    )
    $key = Get-PathKey -Path $Path
    if (-not $Cache.ContainsKey($key)) {
        $vhd = $null
        try {
            $vhd = Get-VHD -Path $Path
        }
        catch {
            Write-Verbose "Cannot read '$Path': $($_.Exception.Message)"
        }
        $Cache[$key] = $vhd
    }
    $Cache[$key]
}

function Get-ImageUsage {
    <#
    .SYNOPSIS
        Path key -> sorted VM names, for every file in a disk chain or DVD drive of every VM.
    #>
    param(
        [Parameter(Mandatory)]
        [hashtable]$VhdCache
    )
    $usage = @{}
    $vms = @(Get-VM)
    if ($vms.Count -eq 0) {
        return $usage
    }
    $links = [System.Collections.Generic.List[object]]::new()
    foreach ($drive in @(Get-VMHardDiskDrive -VM $vms)) {
        $current = [string]$drive.Path
        $seen = @{}
        while (-not [string]::IsNullOrEmpty($current) -and $current -match '\.a?vhdx?$') {
            $key = Get-PathKey -Path $current
            if ($seen.ContainsKey($key)) {
                break
            }
            $seen[$key] = $true
            $links.Add(@($key, [string]$drive.VMName))
            $vhd = Get-CachedVhd -Path $current -Cache $VhdCache
            if ($null -eq $vhd) {
                break
            }
            $current = [string]$vhd.ParentPath
        }
    }
    foreach ($dvd in @(Get-VMDvdDrive -VM $vms)) {
        if (-not [string]::IsNullOrEmpty([string]$dvd.Path) -and [string]$dvd.Path -match '\.iso$') {
            $links.Add(@((Get-PathKey -Path ([string]$dvd.Path)), [string]$dvd.VMName))
        }
    }
    foreach ($link in $links) {
        if (-not $usage.ContainsKey($link[0])) {
            $usage[$link[0]] = [System.Collections.Generic.List[string]]::new()
        }
        if (-not $usage[$link[0]].Contains($link[1])) {
            $usage[$link[0]].Add($link[1])
        }
    }
    $usage
}

function New-SkipRecord {
    param(
        [Parameter(Mandatory)]
        [string]$Name,

        [AllowNull()]
        [string]$Path,

        [Parameter(Mandatory)]
        [string]$Reason,

        [string[]]$UsedBy = @(),

        [AllowNull()]
        [string]$Message
    )
    $pathValue = $null
    if (-not [string]::IsNullOrEmpty($Path)) {
        $pathValue = $Path
    }
    $messageValue = $null
    if (-not [string]::IsNullOrEmpty($Message)) {
        $messageValue = $Message
    }
    [ordered]@{
        name    = $Name
        path    = $pathValue
        reason  = $Reason
        used_by = @($UsedBy)
        message = $messageValue
    }
}

foreach ($entry in $Name) {
    if ([string]::IsNullOrWhiteSpace($entry) -or $entry -match '[\\/:*?\[\]]') {
        throw (New-ErrorRecord -Message "'$entry' is not an image name (no path separators or wildcards)." -Category InvalidArgument -ErrorId 'PsDriver.InvalidImageName' -Target $entry)
    }
}

$removed = [System.Collections.Generic.List[object]]::new()
$skipped = [System.Collections.Generic.List[object]]::new()
$files = @()
if (Test-Path -LiteralPath $BasePath -PathType Container) {
    $files = @(Get-ChildItem -LiteralPath $BasePath -File | Where-Object { $_.Extension -match '^\.(vhdx?|iso)$' } | Sort-Object -Property Name)
}
$selected = [System.Collections.Generic.List[object]]::new()
foreach ($entry in $Name) {
    $matched = @($files | Where-Object { $_.Name -eq $entry -or $_.BaseName -eq $entry })
    if ($matched.Count -eq 0) {
        $skipped.Add((New-SkipRecord -Name $entry -Path $null -Reason 'not_found'))
    }
    foreach ($file in $matched) {
        if (@($selected | Where-Object { $_.FullName -eq $file.FullName }).Count -eq 0) {
            $selected.Add($file)
        }
    }
}

if ($selected.Count -gt 0) {
    $usage = Get-ImageUsage -VhdCache @{}
    foreach ($file in $selected) {
        $key = Get-PathKey -Path $file.FullName
        if ($usage.ContainsKey($key)) {
            $usedBy = @($usage[$key] | Sort-Object)
            $skipped.Add((New-SkipRecord -Name $file.Name -Path $file.FullName -Reason 'in_use' -UsedBy $usedBy))
            continue
        }
        if (-not $PSCmdlet.ShouldProcess("cached image '$($file.FullName)'", 'Remove')) {
            $skipped.Add((New-SkipRecord -Name $file.Name -Path $file.FullName -Reason 'not_confirmed'))
            continue
        }
        try {
            Remove-Item -LiteralPath $file.FullName -Force -Confirm:$false
            $record = [ordered]@{
                name = [string]$file.Name
                path = [string]$file.FullName
            }
            $removed.Add($record)
        }
        catch {
            $skipped.Add((New-SkipRecord -Name $file.Name -Path $file.FullName -Reason 'remove_failed' -Message $_.Exception.Message))
        }
    }
}

[ordered]@{
    base_path = $BasePath
    removed   = @($removed)
    skipped   = @($skipped)
}
