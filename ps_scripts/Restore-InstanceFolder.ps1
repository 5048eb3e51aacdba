<#
.SYNOPSIS
    Puts an instance's files back after a reverted migration or resize: the
    folder kept for the revert becomes the instance folder again.

.DESCRIPTION
    Steps:
      1. InstanceDir and RevertDir must be absolute, below a drive or share
         root, and side by side (else InvalidArgument /
         PsDriver.UnsafeInstanceDir).
      2. No RevertDir: when InstanceDir exists the files are already in
         place (restored false: the call is repeatable); when neither
         exists, ObjectNotFound / PsDriver.RevertDirNotFound.
      3. An InstanceDir that still exists (the files of the resized
         instance on this same host) is deleted first, unless a registered
         VM still uses a disk in it: InvalidOperation /
         PsDriver.InstanceDirInUse.
      4. RevertDir is renamed to InstanceDir.
    -WhatIf reports what would happen and changes nothing.

.PARAMETER InstanceDir
    The instance folder (<instances_path>\<name>).

.PARAMETER RevertDir
    The folder Export-InstanceDisk kept (normally <InstanceDir>_revert).

.EXAMPLE
    .\Restore-InstanceFolder.ps1 -InstanceDir C:\OpenStack\Instances\instance-0000002a -RevertDir C:\OpenStack\Instances\instance-0000002a_revert

.OUTPUTS
    One object: instance_dir, restored (RevertDir was moved back),
    replaced_instance_dir (an existing InstanceDir was deleted first),
    files (names of the files now in InstanceDir).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$InstanceDir,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$RevertDir
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'New-PsDriverErrorRecord' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

foreach ($path in @($InstanceDir, $RevertDir)) {
    $isRoot = $path -match '^[A-Za-z]:[\\/]*$' -or $path -match '^\\\\[^\\/]+[\\/][^\\/]+[\\/]*$'
    if (-not (Test-PsDriverAbsolutePath -Path $path) -or $isRoot) {
        throw (New-PsDriverErrorRecord -Message "'$path' must be an absolute path below a drive or share root." -Category InvalidArgument -ErrorId 'PsDriver.UnsafeInstanceDir' -Target $path)
    }
}
if (-not (Test-PsDriverSamePath -Left (Split-Path -Path $RevertDir -Parent) -Right (Split-Path -Path $InstanceDir -Parent)) -or (Test-PsDriverSamePath -Left $RevertDir -Right $InstanceDir)) {
    throw (New-PsDriverErrorRecord -Message "RevertDir '$RevertDir' must be another folder next to InstanceDir '$InstanceDir'." -Category InvalidArgument -ErrorId 'PsDriver.UnsafeInstanceDir' -Target $RevertDir)
}

$restored = $false
$replaced = $false
if (-not (Test-Path -LiteralPath $RevertDir -PathType Container)) {
    if (-not (Test-Path -LiteralPath $InstanceDir -PathType Container)) {
        throw (New-PsDriverErrorRecord -Message "Neither '$RevertDir' nor '$InstanceDir' exists: there are no files to revert to." -Category ObjectNotFound -ErrorId 'PsDriver.RevertDirNotFound' -Target $RevertDir)
    }
}
elseif ($PSCmdlet.ShouldProcess("'$RevertDir'", "Restore as '$InstanceDir'")) {
    if (Test-Path -LiteralPath $InstanceDir) {
        if (Test-PsDriverFolderInUse -Folder $InstanceDir) {
            throw (New-PsDriverErrorRecord -Message "A virtual machine still uses disks in '$InstanceDir'; it is not replaced." -Category InvalidOperation -ErrorId 'PsDriver.InstanceDirInUse' -Target $InstanceDir)
        }
        Remove-Item -LiteralPath $InstanceDir -Recurse -Force -Confirm:$false
        $replaced = $true
    }
    Move-Item -LiteralPath $RevertDir -Destination $InstanceDir -Confirm:$false
    $restored = $true
}

$files = @()
if (Test-Path -LiteralPath $InstanceDir -PathType Container) {
    $files = @(Get-ChildItem -LiteralPath $InstanceDir -File | Sort-Object -Property Name | ForEach-Object { $_.Name })
}

[ordered]@{
    instance_dir          = $InstanceDir
    restored              = $restored
    replaced_instance_dir = $replaced
    files                 = @($files)
}
