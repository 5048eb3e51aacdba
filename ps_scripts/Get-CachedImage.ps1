<#
.SYNOPSIS
    Lists the images in the image cache folder (_base) and which VMs use
    them, in one call.

.DESCRIPTION
    Built for the image cache periodic task. For every *.vhd, *.vhdx and
    *.iso file directly in BasePath it reports the format, type, file size,
    virtual size, last write and last access time (UTC, ISO 8601), and
    whether an existing VM uses it: a file is in use when it is in the disk
    chain (the disk itself or one of its differencing parents) of a hard
    disk drive of any VM on the host, or the image of a DVD drive. The VMs
    are read with one Get-VM call; each disk chain is read once.

    Name filters the list: an entry matches a file whose name equals it,
    with or without the extension (case-insensitive), so
    0c7e2a55-6f0e-4d7c-9e4c-2b8f1a3d5e70 matches ...70.vhdx and ...70.iso.
    Entries that match nothing are listed in not_found. A Name entry with a
    path separator or a wildcard character is refused: InvalidArgument /
    PsDriver.InvalidImageName.

    A missing BasePath is not an error: exists is false and images empty.
    A file Get-VHD cannot read (for example one being written) is still
    listed, with the format from its extension and null vhd_type and
    virtual_size_bytes.

.PARAMETER BasePath
    The image cache folder, normally <instances_path>\_base.

.PARAMETER Name
    Image names to report (file names, with or without extension).
    Optional; all images by default.

.EXAMPLE
    .\Get-CachedImage.ps1 -BasePath C:\OpenStack\Instances\_base

.EXAMPLE
    .\Get-CachedImage.ps1 -BasePath C:\OpenStack\Instances\_base -Name 0c7e2a55-6f0e-4d7c-9e4c-2b8f1a3d5e70

.OUTPUTS
    One object: base_path, exists, images [{name, path, format, vhd_type,
    file_size_bytes, virtual_size_bytes, parent_path, last_write_time,
    last_access_time, in_use, used_by}], not_found.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$BasePath,

    [string[]]$Name = @()
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

foreach ($entry in $Name) {
    if ([string]::IsNullOrWhiteSpace($entry) -or $entry -match '[\\/:*?\[\]]') {
        throw (New-ErrorRecord -Message "'$entry' is not an image name (no path separators or wildcards)." -Category InvalidArgument -ErrorId 'PsDriver.InvalidImageName' -Target $entry)
    }
}

$exists = [bool](Test-Path -LiteralPath $BasePath -PathType Container)
$images = [System.Collections.Generic.List[object]]::new()
$notFound = [System.Collections.Generic.List[string]]::new()
$files = @()
if ($exists) {
    $files = @(Get-ChildItem -LiteralPath $BasePath -File | Where-Object { $_.Extension -match '^\.(vhdx?|iso)$' } | Sort-Object -Property Name)
}
if ($Name.Count -gt 0) {
    $selected = [System.Collections.Generic.List[object]]::new()
    foreach ($entry in $Name) {
        $matched = @($files | Where-Object { $_.Name -eq $entry -or $_.BaseName -eq $entry })
        if ($matched.Count -eq 0) {
            $notFound.Add($entry)
        }
        foreach ($file in $matched) {
            if (@($selected | Where-Object { $_.FullName -eq $file.FullName }).Count -eq 0) {
                $selected.Add($file)
            }
        }
    }
    $files = @($selected | Sort-Object -Property Name)
}

if ($files.Count -gt 0) {
    $vhdCache = @{}
    $usage = Get-ImageUsage -VhdCache $vhdCache
    foreach ($file in $files) {
        $format = $file.Extension.TrimStart('.').ToLowerInvariant()
        $vhdType = $null
        $virtualSize = $null
        $parentPath = $null
        if ($format -eq 'iso') {
            $virtualSize = [long]$file.Length
        }
        else {
            $vhd = Get-CachedVhd -Path $file.FullName -Cache $vhdCache
            if ($null -ne $vhd) {
                $format = $vhd.VhdFormat.ToString().ToLowerInvariant()
                $vhdType = $vhd.VhdType.ToString()
                $virtualSize = [long]$vhd.Size
                if (-not [string]::IsNullOrEmpty([string]$vhd.ParentPath)) {
                    $parentPath = [string]$vhd.ParentPath
                }
            }
        }
        $usedBy = @()
        $key = Get-PathKey -Path $file.FullName
        if ($usage.ContainsKey($key)) {
            $usedBy = @($usage[$key] | Sort-Object)
        }
        $record = [ordered]@{
            name               = [string]$file.Name
            path               = [string]$file.FullName
            format             = $format
            vhd_type           = $vhdType
            file_size_bytes    = [long]$file.Length
            virtual_size_bytes = $virtualSize
            parent_path        = $parentPath
            last_write_time    = $file.LastWriteTimeUtc.ToString('o')
            last_access_time   = $file.LastAccessTimeUtc.ToString('o')
            in_use             = $usedBy.Count -gt 0
            used_by            = $usedBy
        }
        $images.Add($record)
    }
}

[ordered]@{
    base_path = $BasePath
    exists    = $exists
    images    = @($images)
    not_found = @($notFound)
}
