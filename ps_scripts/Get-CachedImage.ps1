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

if (-not (Get-Command -Name 'Get-PsDriverImageFile' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$listing = Get-PsDriverImageFile -BasePath $BasePath -Name $Name
$exists = [bool](Test-Path -LiteralPath $BasePath -PathType Container)
$images = [System.Collections.Generic.List[object]]::new()
$files = @($listing.Files | Sort-Object -Property Name)

if ($files.Count -gt 0) {
    $vhdCache = @{}
    $usage = Get-PsDriverImageUsage -VhdCache $vhdCache
    foreach ($file in $files) {
        $format = $file.Extension.TrimStart('.').ToLowerInvariant()
        $vhdType = $null
        $virtualSize = $null
        $parentPath = $null
        if ($format -eq 'iso') {
            $virtualSize = [long]$file.Length
        }
        else {
            $vhd = Get-PsDriverCachedVhd -Path $file.FullName -Cache $vhdCache
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
        $key = Get-PsDriverPathKey -Path $file.FullName
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
    not_found = @($listing.NotFound)
}
