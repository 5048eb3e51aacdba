<#
.SYNOPSIS
    Takes an assisted snapshot of an attached SMB volume: the VM's drive
    moves to a new differencing disk whose parent is the current file
    (volume_snapshot_create, Cinder's remotefs "assisted snapshot").

.DESCRIPTION
    The volume's current file (the record's file_name, what Cinder's
    connection_info names) freezes and becomes the snapshot; the new file
    (NewFileName, in the same folder of the share) is a differencing disk
    whose parent is the current file, and the VM's drive is switched to it.
    A new file that Cinder already created is used as it is when it is a
    differencing disk of the current file (libvirt's "reuse external").

    Hyper-V keeps every disk of a running VM open, so the VM must be Off:
    otherwise InvalidOperation / PsDriver.VolumeSnapshotNeedsVMOff. A drive
    that does not hold the current file: ObjectNotFound /
    PsDriver.VolumeDriveNotFound; a new file that is not a child of the
    current one: InvalidArgument / PsDriver.InvalidVolume. A file this
    script created is removed again when a later step fails.

.PARAMETER Name
    The VM's name.

.PARAMETER Volume
    One smbfs volume record (see Connect-InstanceVolume): volume_id, type,
    share, file_name.

.PARAMETER NewFileName
    The new active file, a name in the folder of the current file
    (create_info's new_file), ending in .vhd, .vhdx, .avhd or .avhdx.

.EXAMPLE
    .\New-InstanceVolumeSnapshot.ps1 -Name 'instance-00000001' -Volume @{ volume_id = 'c2d3e4f5-0000-4000-8000-000000000001'; type = 'smbfs'; share = '\\fs01.example.org\cinder'; file_name = 'volume-c2d3e4f5.vhdx' } -NewFileName 'volume-c2d3e4f5.snap-1.vhdx'

.OUTPUTS
    One object: volume_id, parent_path (the frozen file), path (the VM's
    drive now), created (false when Cinder had made the file).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [System.Collections.IDictionary]$Volume,

    [Parameter(Mandatory)]
    [ValidatePattern('^[^\\/:*?"<>|]+\.a?vhdx?$')]
    [string]$NewFileName
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverSnapshotVolume' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$target = Get-PsDriverSnapshotVolume -Name $Name -Volume $Volume
$id = $target.Id
$vm = $target.VM
$current = $target.Path
$drive = $target.Drive
if ($vm.State -ne 'Off') {
    throw (New-PsDriverErrorRecord -Message "Volume ${id}: VM $Name is $($vm.State); Hyper-V keeps the disks of a running VM open, so a volume snapshot needs the instance stopped." -Category InvalidOperation -ErrorId 'PsDriver.VolumeSnapshotNeedsVMOff' -Target $id)
}
$newPath = Join-Path -Path (Split-Path -Path $current -Parent) -ChildPath $NewFileName
$created = $false
if (Test-Path -LiteralPath $newPath -PathType Leaf) {
    $existing = Hyper-V\Get-VHD -Path $newPath
    if ([string]::IsNullOrEmpty($existing.ParentPath) -or -not (Test-PsDriverSamePath -Left $existing.ParentPath -Right $current)) {
        throw (New-PsDriverErrorRecord -Message "Volume ${id}: $newPath exists and is not a differencing disk of $current." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
    }
}
else {
    $null = Hyper-V\New-VHD -Path $newPath -ParentPath $current -Differencing -Confirm:$false
    $created = $true
}
try {
    Hyper-V\Set-VMHardDiskDrive -VMHardDiskDrive $drive -Path $newPath -Confirm:$false
}
catch {
    if ($created) {
        Remove-Item -LiteralPath $newPath -Force -Confirm:$false -ErrorAction SilentlyContinue
    }
    throw
}

[ordered]@{
    volume_id   = $id
    parent_path = $current
    path        = $newPath
    created     = $created
}
