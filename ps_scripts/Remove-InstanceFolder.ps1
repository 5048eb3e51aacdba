<#
.SYNOPSIS
    Deletes a folder of instance files that no VM uses any more: the files
    a confirmed migration or resize kept for a revert.

.DESCRIPTION
    Path must be absolute and below a drive or share root (else
    InvalidArgument / PsDriver.UnsafeInstanceDir). A folder that does not
    exist is not an error (existed false): the call is repeatable. A
    folder holding a disk a registered VM uses is left alone:
    InvalidOperation / PsDriver.InstanceDirInUse. Otherwise the folder is
    deleted with everything in it (a locked file is retried for up to five
    seconds). -WhatIf reports and changes nothing.

.PARAMETER Path
    The folder (normally <instances_path>\<name>_revert).

.EXAMPLE
    .\Remove-InstanceFolder.ps1 -Path C:\OpenStack\Instances\instance-0000002a_revert

.OUTPUTS
    One object: path, existed, removed, files (names of the files that
    were in it).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Path
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'New-PsDriverErrorRecord' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$isRoot = $Path -match '^[A-Za-z]:[\\/]*$' -or $Path -match '^\\\\[^\\/]+[\\/][^\\/]+[\\/]*$'
if (-not (Test-PsDriverAbsolutePath -Path $Path) -or $isRoot) {
    throw (New-PsDriverErrorRecord -Message "'$Path' must be an absolute path below a drive or share root." -Category InvalidArgument -ErrorId 'PsDriver.UnsafeInstanceDir' -Target $Path)
}

$existed = Test-Path -LiteralPath $Path -PathType Container
$removed = $false
$files = @()
if ($existed) {
    $files = @(Get-ChildItem -LiteralPath $Path -File | Sort-Object -Property Name | ForEach-Object { $_.Name })
    if (Test-PsDriverFolderInUse -Folder $Path) {
        throw (New-PsDriverErrorRecord -Message "A virtual machine still uses disks in '$Path'; it is not deleted." -Category InvalidOperation -ErrorId 'PsDriver.InstanceDirInUse' -Target $Path)
    }
    if ($PSCmdlet.ShouldProcess("'$Path'", 'Delete the folder and its files')) {
        for ($attempt = 1; $attempt -le 5; $attempt++) {
            try {
                Remove-Item -LiteralPath $Path -Recurse -Force -Confirm:$false
                break
            }
            catch {
                if ($attempt -eq 5) {
                    throw
                }
                Start-Sleep -Seconds 1
            }
        }
        $removed = $true
    }
}

[ordered]@{
    path    = $Path
    existed = $existed
    removed = $removed
    files   = @($files)
}
