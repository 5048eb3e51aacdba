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

if (-not (Get-Command -Name 'Get-PsDriverImageFile' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$listing = Get-PsDriverImageFile -BasePath $BasePath -Name $Name
$removed = [System.Collections.Generic.List[object]]::new()
$skipped = [System.Collections.Generic.List[object]]::new()
foreach ($entry in $listing.NotFound) {
    $skipped.Add((New-SkipRecord -Name $entry -Path $null -Reason 'not_found'))
}
$selected = @($listing.Files)

if ($selected.Count -gt 0) {
    $usage = Get-PsDriverImageUsage -VhdCache @{}
    foreach ($file in $selected) {
        $key = Get-PsDriverPathKey -Path $file.FullName
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
