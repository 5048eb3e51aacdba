# PsDriver helpers: the image cache.
# Dot-sourced by PsDriver.psm1; the bridge inlines the functions of this file that a
# wrapped script uses (psdriver/bridge/helpers.py). Functions only: no other statements.

# The image cache folder (_base) holds *.vhd, *.vhdx and *.iso files named after
# the Glance image (with a size suffix for resized copies).

function Get-PsDriverImageFile {
    <#
    .SYNOPSIS
        The image files directly in BasePath, all of them or those Name selects.

    .DESCRIPTION
        A Name entry selects the files whose name equals it with or without
        the extension (case-insensitive). An entry with a path separator or a
        wildcard character: InvalidArgument / PsDriver.InvalidImageName. A
        missing BasePath has no files.

    .PARAMETER BasePath
        The image cache folder.

    .PARAMETER Name
        Image names (file names, with or without extension). Optional; all images by default.

    .OUTPUTS
        Files (FileInfo: sorted by name without Name, else in the order of the
        Name entries, each once) and NotFound (the Name entries that match nothing).
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)]
        [string]$BasePath,

        [AllowEmptyCollection()]
        [string[]]$Name = @()
    )
    foreach ($entry in $Name) {
        if ([string]::IsNullOrWhiteSpace($entry) -or $entry -match '[\\/:*?\[\]]') {
            throw (New-PsDriverErrorRecord -Message "'$entry' is not an image name (no path separators or wildcards)." -Category InvalidArgument -ErrorId 'PsDriver.InvalidImageName' -Target $entry)
        }
    }
    $files = @()
    if (Test-Path -LiteralPath $BasePath -PathType Container) {
        $files = @(Get-ChildItem -LiteralPath $BasePath -File | Where-Object { $_.Extension -match '^\.(vhdx?|iso)$' } | Sort-Object -Property Name)
    }
    $notFound = [System.Collections.Generic.List[string]]::new()
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
        $files = $selected.ToArray()
    }
    [pscustomobject]@{
        Files    = @($files)
        NotFound = $notFound.ToArray()
    }
}

function Get-PsDriverCachedVhd {
    <#
    .SYNOPSIS
        Get-VHD once per path; $null when the file cannot be read.

    .PARAMETER Path
        The virtual disk file.

    .PARAMETER Cache
        Path key -> Get-VHD result of the calls so far (filled in).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Path,

        [Parameter(Mandatory)]
        [hashtable]$Cache
    )
    $key = Get-PsDriverPathKey -Path $Path
    if (-not $Cache.ContainsKey($key)) {
        $vhd = $null
        try {
            $vhd = Hyper-V\Get-VHD -Path $Path
        }
        catch {
            Write-Verbose "Cannot read '$Path': $($_.Exception.Message)"
        }
        $Cache[$key] = $vhd
    }
    $Cache[$key]
}

function Get-PsDriverImageUsage {
    <#
    .SYNOPSIS
        Path key -> VM names, for every file in a disk chain or DVD drive of every VM.

    .DESCRIPTION
        One Get-VM call; a hard disk's chain (the disk and its differencing
        parents) is followed with Get-PsDriverCachedVhd, so each file is read
        once. DVD drives count with their .iso file.

    .PARAMETER VhdCache
        The Get-PsDriverCachedVhd cache to use (and fill in).
    #>
    [CmdletBinding()]
    [OutputType([hashtable])]
    param(
        [Parameter(Mandatory)]
        [hashtable]$VhdCache
    )
    $usage = @{}
    $vms = @(Hyper-V\Get-VM)
    if ($vms.Count -eq 0) {
        return $usage
    }
    $links = [System.Collections.Generic.List[object]]::new()
    foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $vms)) {
        $current = [string]$drive.Path
        $seen = @{}
        while (-not [string]::IsNullOrEmpty($current) -and $current -match '\.a?vhdx?$') {
            $key = Get-PsDriverPathKey -Path $current
            if ($seen.ContainsKey($key)) {
                break
            }
            $seen[$key] = $true
            $links.Add(@($key, [string]$drive.VMName))
            $vhd = Get-PsDriverCachedVhd -Path $current -Cache $VhdCache
            if ($null -eq $vhd) {
                break
            }
            $current = [string]$vhd.ParentPath
        }
    }
    foreach ($dvd in @(Hyper-V\Get-VMDvdDrive -VM $vms)) {
        if (-not [string]::IsNullOrEmpty([string]$dvd.Path) -and [string]$dvd.Path -match '\.iso$') {
            $links.Add(@((Get-PsDriverPathKey -Path ([string]$dvd.Path)), [string]$dvd.VMName))
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
