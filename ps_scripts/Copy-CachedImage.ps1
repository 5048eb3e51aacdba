<#
.SYNOPSIS
    Copies a cached VHD or VHDX image to a new file in the image cache and
    grows the copy, in one call.

.DESCRIPTION
    Built for copy-on-write root disks from VHD images: a VHD differencing
    disk cannot be bigger than its parent, so the image cache keeps a grown
    copy <image id>_<size gb>.vhd next to the image and instances get
    differencing disks of that copy.

    The copy is written under a temporary name in the destination folder
    (<destination name>.partial-<random>.<extension>), grown with Resize-VHD
    when SizeBytes is bigger than the source's virtual size, then renamed to
    DestinationPath: a half-made copy never carries the final name, and a
    failed one is removed.

    When DestinationPath exists already (made by another compute service
    sharing the folder), nothing is copied: created is false and the existing
    file is reported.

    Errors: a missing source, ObjectNotFound / PsDriver.ImageNotFound;
    source and destination not both .vhd or both .vhdx, or a differencing
    source, InvalidArgument / PsDriver.InvalidImagePath; SizeBytes negative,
    InvalidArgument / PsDriver.InvalidDiskSize; SizeBytes smaller than the
    source's virtual size, InvalidArgument / PsDriver.RootDiskTooSmall (a disk
    is never shrunk; the message states both sizes); the copy, the resize or
    the rename failing (a full volume, for example), InvalidOperation /
    PsDriver.ImageCopyFailed with the cause. -WhatIf reports what the copy
    would be and changes nothing.

.PARAMETER SourcePath
    The cached image to copy, normally <instances_path>\_base\<image id>.vhd.

.PARAMETER DestinationPath
    The copy to make, normally <instances_path>\_base\<image id>_<size gb>.vhd.

.PARAMETER SizeBytes
    The virtual size of the copy in bytes (a multiple of 512; flavor sizes
    are whole GiB). 0, the default, keeps the source's size.

.EXAMPLE
    .\Copy-CachedImage.ps1 -SourcePath C:\OpenStack\Instances\_base\0c7e2a55-6f0e-4d7c-9e4c-2b8f1a3d5e70.vhd -DestinationPath C:\OpenStack\Instances\_base\0c7e2a55-6f0e-4d7c-9e4c-2b8f1a3d5e70_40.vhd -SizeBytes 40GB

.OUTPUTS
    One object: path, source_path, format (vhd, vhdx), vhd_type,
    virtual_size_bytes, file_size_bytes, created.
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$SourcePath,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$DestinationPath,

    [long]$SizeBytes = 0
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Get-ImageRecord {
    <#
    .SYNOPSIS
        The result object for an existing disk file.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path,

        [Parameter(Mandatory)]
        [string]$Source,

        [Parameter(Mandatory)]
        [bool]$Created
    )
    $vhd = Hyper-V\Get-VHD -Path $Path
    $file = Get-Item -LiteralPath $Path
    [ordered]@{
        path               = $Path
        source_path        = $Source
        format             = $vhd.VhdFormat.ToString().ToLowerInvariant()
        vhd_type           = $vhd.VhdType.ToString()
        virtual_size_bytes = [long]$vhd.Size
        file_size_bytes    = [long]$file.Length
        created            = $Created
    }
}

if (-not (Get-Command -Name 'New-PsDriverErrorRecord' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$extension = [System.IO.Path]::GetExtension($DestinationPath).ToLowerInvariant()
$sourceExtension = [System.IO.Path]::GetExtension($SourcePath).ToLowerInvariant()
if (@('.vhd', '.vhdx') -notcontains $extension -or $sourceExtension -ne $extension) {
    throw (New-PsDriverErrorRecord -Message "Source '$SourcePath' and destination '$DestinationPath' must both be .vhd or both .vhdx files." -Category InvalidArgument -ErrorId 'PsDriver.InvalidImagePath' -Target $DestinationPath)
}
if ($SizeBytes -lt 0) {
    throw (New-PsDriverErrorRecord -Message "SizeBytes must not be negative, got $SizeBytes." -Category InvalidArgument -ErrorId 'PsDriver.InvalidDiskSize' -Target $DestinationPath)
}
if (-not (Test-Path -LiteralPath $SourcePath -PathType Leaf)) {
    throw (New-PsDriverErrorRecord -Message "The cached image '$SourcePath' was not found." -Category ObjectNotFound -ErrorId 'PsDriver.ImageNotFound' -Target $SourcePath)
}

$source = Hyper-V\Get-VHD -Path $SourcePath
$sourceSize = [long]$source.Size
$sourceType = $source.VhdType.ToString()
if ($sourceType -eq 'Differencing') {
    throw (New-PsDriverErrorRecord -Message "The cached image '$SourcePath' is a differencing disk; only whole disks are copied." -Category InvalidArgument -ErrorId 'PsDriver.InvalidImagePath' -Target $SourcePath)
}
if ($SizeBytes -gt 0 -and $SizeBytes -lt $sourceSize) {
    $message = "Cannot make '{0}' {1} bytes ({2:0.##} GB): the image '{3}' is {4} bytes ({5:0.##} GB) and a disk is never shrunk." -f $DestinationPath, $SizeBytes, ($SizeBytes / 1GB), $SourcePath, $sourceSize, ($sourceSize / 1GB)
    throw (New-PsDriverErrorRecord -Message $message -Category InvalidArgument -ErrorId 'PsDriver.RootDiskTooSmall' -Target $DestinationPath)
}
$targetSize = [Math]::Max($sourceSize, $SizeBytes)

if (Test-Path -LiteralPath $DestinationPath -PathType Leaf) {
    Write-Verbose "'$DestinationPath' exists already; nothing to copy."
    $result = Get-ImageRecord -Path $DestinationPath -Source $SourcePath -Created $false
}
elseif (-not $PSCmdlet.ShouldProcess("cached image '$DestinationPath'", "Copy from '$SourcePath' and grow to $targetSize bytes")) {
    $result = [ordered]@{
        path               = $DestinationPath
        source_path        = $SourcePath
        format             = $source.VhdFormat.ToString().ToLowerInvariant()
        vhd_type           = $sourceType
        virtual_size_bytes = $targetSize
        file_size_bytes    = [long](Get-Item -LiteralPath $SourcePath).Length
        created            = $false
    }
}
else {
    $folder = Split-Path -Path $DestinationPath -Parent
    $stem = [System.IO.Path]::GetFileNameWithoutExtension($DestinationPath)
    $random = [guid]::NewGuid().ToString('N').Substring(0, 12)
    $temp = Join-Path -Path $folder -ChildPath ('{0}.partial-{1}{2}' -f $stem, $random, $extension)
    $created = $true
    try {
        Copy-Item -LiteralPath $SourcePath -Destination $temp -Confirm:$false
        if ($targetSize -gt $sourceSize) {
            $null = Hyper-V\Resize-VHD -Path $temp -SizeBytes $targetSize -Confirm:$false
        }
        Move-Item -LiteralPath $temp -Destination $DestinationPath -Confirm:$false
    }
    catch {
        $cause = $_
        if (Test-Path -LiteralPath $temp) {
            Remove-Item -LiteralPath $temp -Force -Confirm:$false -ErrorAction SilentlyContinue
        }
        if (-not (Test-Path -LiteralPath $DestinationPath -PathType Leaf)) {
            throw (New-PsDriverErrorRecord -Message "Cannot copy '$SourcePath' to '$DestinationPath' and grow it to $targetSize bytes: $($cause.Exception.Message)" -Category InvalidOperation -ErrorId 'PsDriver.ImageCopyFailed' -Target $DestinationPath -InnerException $cause.Exception)
        }
        # Another compute service sharing the folder made the same copy meanwhile.
        Write-Verbose "'$DestinationPath' appeared meanwhile: $($cause.Exception.Message)"
        $created = $false
    }
    $result = Get-ImageRecord -Path $DestinationPath -Source $SourcePath -Created $created
}

$result
