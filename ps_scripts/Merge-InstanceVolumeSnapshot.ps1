<#
.SYNOPSIS
    Deletes an assisted snapshot of an attached SMB volume: merges a
    differencing disk of the volume's chain into its parent with Merge-VHD
    and switches the VM's drive to the merged file (volume_snapshot_delete).

.DESCRIPTION
    Two cases, as Cinder's remotefs delete_info gives them:

    - MergeTargetFile given (commit): FileToMerge, a file below the active
      one, merges into MergeTargetFile, its parent. The active file stays.
    - MergeTargetFile empty (pull): the active file's parent folds into the
      active file, whose parent becomes FileToMerge (the grandparent; empty
      when the parent is a base disk, which the active file then replaces).
      Hyper-V only merges a child into its parent, so the active file merges
      into its parent and the result takes the active file's name again:
      the file Cinder knows as active keeps its name.

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
    delete_info's file_to_merge, a file name in the active file's folder:
    with MergeTargetFile, the file that merges into it; without, the file
    that is to be the active file's parent afterwards (empty: none).

.PARAMETER MergeTargetFile
    delete_info's merge_target_file: the parent FileToMerge merges into;
    empty for the pull case.

.EXAMPLE
    .\Merge-InstanceVolumeSnapshot.ps1 -Name 'instance-00000001' -Volume @{ volume_id = 'c2d3e4f5-0000-4000-8000-000000000001'; type = 'smbfs'; share = '\\fs01.example.org\cinder'; file_name = 'volume-c2d3e4f5.snap-1.vhdx' }

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

    [AllowEmptyString()]
    [ValidatePattern('^([^\\/:*?"<>|]+)?$')]
    [string]$FileToMerge = '',

    [AllowEmptyString()]
    [ValidatePattern('^([^\\/:*?"<>|]+)?$')]
    [string]$MergeTargetFile = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverSnapshotVolume' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$target = Get-PsDriverSnapshotVolume -Name $Name -Volume $Volume
$id = $target.Id
$vm = $target.VM
$active = $target.Path
$drive = $target.Drive
$folder = Split-Path -Path $active -Parent
if ($vm.State -ne 'Off') {
    throw (New-PsDriverErrorRecord -Message "Volume ${id}: VM $Name is $($vm.State); Merge-VHD needs closed files, so deleting a volume snapshot needs the instance stopped." -Category InvalidOperation -ErrorId 'PsDriver.VolumeSnapshotNeedsVMOff' -Target $id)
}
$chain = [System.Collections.Generic.List[string]]::new()
$link = $active
while (-not [string]::IsNullOrEmpty($link) -and $chain.Count -lt 64) {
    $chain.Add([string]$link)
    $link = (Hyper-V\Get-VHD -Path $link).ParentPath
}
function Get-ChainIndex {
    param([string]$Path)
    for ($i = 0; $i -lt $chain.Count; $i++) {
        if (Test-PsDriverSamePath -Left $chain[$i] -Right $Path) { return $i }
    }
    -1
}
if ([string]::IsNullOrEmpty($MergeTargetFile)) {
    # pull: the active file's parent folds into it
    $wanted = if ([string]::IsNullOrEmpty($FileToMerge)) { 2 } else { Get-ChainIndex -Path (Join-Path -Path $folder -ChildPath $FileToMerge) }
    if ($chain.Count -lt 2 -or $wanted -ne 2 -or ([string]::IsNullOrEmpty($FileToMerge) -and $chain.Count -ne 2)) {
        throw (New-PsDriverErrorRecord -Message "Volume ${id}: the chain of $active ($($chain -join ' <- ')) does not have '$FileToMerge' as the parent of its parent." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
    }
    $merged = $chain[1]
    Hyper-V\Merge-VHD -Path $active -DestinationPath $merged -Confirm:$false
    Move-Item -LiteralPath $merged -Destination $active -Confirm:$false
}
else {
    # commit: a file below the active one folds into its parent
    $merged = Join-Path -Path $folder -ChildPath $FileToMerge
    $target = Join-Path -Path $folder -ChildPath $MergeTargetFile
    $mergeIndex = Get-ChainIndex -Path $merged
    if ([string]::IsNullOrEmpty($FileToMerge) -or $mergeIndex -lt 1 -or (Get-ChainIndex -Path $target) -ne $mergeIndex + 1) {
        throw (New-PsDriverErrorRecord -Message "Volume ${id}: $target is not the parent of $merged below the active file $active." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
    }
    Hyper-V\Merge-VHD -Path $merged -DestinationPath $target -Confirm:$false
}
Hyper-V\Set-VMHardDiskDrive -VMHardDiskDrive $drive -Path $active -Confirm:$false
$parent = (Hyper-V\Get-VHD -Path $active).ParentPath

[ordered]@{
    volume_id   = $id
    merged      = $merged
    path        = $active
    parent_path = if ([string]::IsNullOrEmpty($parent)) { $null } else { [string]$parent }
}
