<#
.SYNOPSIS
    Deletes an assisted snapshot of an attached SMB volume: merges a
    differencing disk of the volume's chain into its parent with Merge-VHD
    and switches the VM's drive to the merged file (volume_snapshot_delete).

.DESCRIPTION
    Two cases, as Cinder's remotefs delete_info gives them:

    - MergeTargetFile given (commit): FileToMerge, a file below the active
      one, merges into MergeTargetFile, its parent. The active file stays.
    - MergeTargetFile empty (pull): the active file (the record's
      file_name) absorbs its parent FileToMerge... as Hyper-V can only merge
      a child into its parent, the active file merges into FileToMerge and
      the result takes the active file's name again, so the file Cinder
      knows as active keeps its name.

    The VM's drive ends on the active file either way. Merge-VHD works on
    closed files only: a VM that is not Off holds its whole chain open and
    Merge-VHD refuses (ResourceBusy / the cmdlet's error; the script checks
    first: InvalidOperation / PsDriver.VolumeSnapshotNeedsVMOff). A file
    not in the drive's chain: InvalidArgument / PsDriver.InvalidVolume.

.PARAMETER Name
    The VM's name.

.PARAMETER Volume
    One smbfs volume record (see Connect-InstanceVolume) whose file_name
    is the active file.

.PARAMETER FileToMerge
    delete_info's file_to_merge: a file name in the active file's folder.

.PARAMETER MergeTargetFile
    delete_info's merge_target_file: the parent FileToMerge merges into;
    empty for the pull case.

.EXAMPLE
    .\Merge-InstanceVolumeSnapshot.ps1 -Name 'instance-00000001' -Volume @{ volume_id = 'c2d3e4f5-0000-4000-8000-000000000001'; type = 'smbfs'; share = '\\fs01.example.org\cinder'; file_name = 'volume-c2d3e4f5.snap-1.vhdx' } -FileToMerge 'volume-c2d3e4f5.vhdx'

.OUTPUTS
    One object: volume_id, merged (the file folded away), path (the VM's
    drive now, the active file), parent_path (its parent; null when none).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [System.Collections.IDictionary]$Volume,

    [Parameter(Mandatory)]
    [ValidatePattern('^[^\\/:*?"<>|]+$')]
    [string]$FileToMerge,

    [AllowEmptyString()]
    [ValidatePattern('^([^\\/:*?"<>|]+)?$')]
    [string]$MergeTargetFile = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$id = [string](Get-PsDriverVolumeField -Volume $Volume -Name 'volume_id')
$type = [string](Get-PsDriverVolumeField -Volume $Volume -Name 'type')
if ($type -ne 'smbfs') {
    throw (New-PsDriverErrorRecord -Message "Volume ${id}: assisted snapshots are for smbfs volumes, not '$type'." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
}
$vm = Get-PsDriverVM -Name $Name
$share = Get-PsDriverSmbSharePath -Volume $Volume
$active = Join-Path -Path $share -ChildPath ([string](Get-PsDriverVolumeField -Volume $Volume -Name 'file_name'))
$folder = Split-Path -Path $active -Parent
$drive = Get-PsDriverVolumeDrive -VM $vm -DiskNumber $null -Path $active
if ($null -eq $drive) {
    throw (New-PsDriverErrorRecord -Message "Volume ${id}: no drive of VM $Name holds $active." -Category ObjectNotFound -ErrorId 'PsDriver.VolumeDriveNotFound' -Target $id)
}
if ($vm.State -ne 'Off') {
    throw (New-PsDriverErrorRecord -Message "Volume ${id}: VM $Name is $($vm.State); Merge-VHD needs closed files, so deleting a volume snapshot needs the instance stopped." -Category InvalidOperation -ErrorId 'PsDriver.VolumeSnapshotNeedsVMOff' -Target $id)
}
$toMerge = Join-Path -Path $folder -ChildPath $FileToMerge
$chain = [System.Collections.Generic.List[string]]::new()
$link = $active
while (-not [string]::IsNullOrEmpty($link) -and $chain.Count -lt 64) {
    $chain.Add($link)
    $link = (Hyper-V\Get-VHD -Path $link).ParentPath
}
function Get-ChainIndex {
    param([string]$Path)
    for ($i = 0; $i -lt $chain.Count; $i++) {
        if (Test-PsDriverSamePath -Left $chain[$i] -Right $Path) { return $i }
    }
    -1
}
$mergeIndex = Get-ChainIndex -Path $toMerge
if ($mergeIndex -lt 0) {
    throw (New-PsDriverErrorRecord -Message "Volume ${id}: $toMerge is not in the disk chain of $active." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
}
if ([string]::IsNullOrEmpty($MergeTargetFile)) {
    if ($mergeIndex -ne 1) {
        throw (New-PsDriverErrorRecord -Message "Volume ${id}: $toMerge is not the parent of the active file $active." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
    }
    Hyper-V\Merge-VHD -Path $active -DestinationPath $toMerge -Confirm:$false
    Move-Item -LiteralPath $toMerge -Destination $active -Confirm:$false
    $merged = $toMerge
}
else {
    $target = Join-Path -Path $folder -ChildPath $MergeTargetFile
    if ($mergeIndex -eq 0 -or (Get-ChainIndex -Path $target) -ne $mergeIndex + 1) {
        throw (New-PsDriverErrorRecord -Message "Volume ${id}: $target is not the parent of $toMerge below the active file $active." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
    }
    Hyper-V\Merge-VHD -Path $toMerge -DestinationPath $target -Confirm:$false
    $merged = $toMerge
}
Hyper-V\Set-VMHardDiskDrive -VMHardDiskDrive $drive -Path $active -Confirm:$false
$parent = (Hyper-V\Get-VHD -Path $active).ParentPath

[ordered]@{
    volume_id   = $id
    merged      = $merged
    path        = $active
    parent_path = if ([string]::IsNullOrEmpty($parent)) { $null } else { [string]$parent }
}
