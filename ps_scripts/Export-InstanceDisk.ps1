<#
.SYNOPSIS
    Source side of a cold migration or resize: removes the (stopped) VM of
    an instance, keeps its disk files for a revert and, optionally, copies
    them to where the VM is created next.

.DESCRIPTION
    Steps:
      1. Find the VM named exactly Name. With InstanceUuid, the VM must
         carry it in its Notes (else InvalidOperation /
         PsDriver.InstanceUuidMismatch). A missing VM is fine when
         InstanceDir (or RevertDir, after an earlier try) still holds the
         disks: the call is repeatable.
      2. With RootSizeBytes: the root disk (boot slot IDE 0:0 or SCSI 0:0)
         must not be bigger than that (a disk is never shrunk):
         InvalidArgument / PsDriver.RootDiskTooSmall, before anything is
         changed.
      3. A VM that is not off is turned off hard (the caller shut the guest
         down cleanly first), then removed (Remove-VM; its files stay).
      4. Without -KeepInPlace: InstanceDir is renamed to RevertDir (a
         left-over RevertDir of an earlier migration is deleted first), so
         the source keeps the files exactly as they were until the
         migration is confirmed or reverted. With -KeepInPlace (shared
         storage and move_disks_on_cold_migration off) the files stay in
         InstanceDir.
      5. With CopyTo: the disk files (*.vhd, *.vhdx at the top of the
         folder) are copied into CopyTo (created when missing): the
         destination's instance folder when this host can write it itself
         (same host, or shared storage).
    A RevertDir outside InstanceDir's parent, or InstanceDir a drive or
    share root: InvalidArgument / PsDriver.UnsafeInstanceDir.
    -WhatIf reports the files and changes nothing.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER InstanceUuid
    The Nova instance UUID the VM must carry in its Notes. Optional.

.PARAMETER InstanceDir
    The instance folder (<instances_path>\<Name>).

.PARAMETER RevertDir
    Where the files wait for a revert (normally <InstanceDir>_revert), in
    the same parent folder.

.PARAMETER RootSizeBytes
    The virtual size the root disk is going to have; 0 skips the check.

.PARAMETER CopyTo
    Folder to copy the disk files into. Optional.

.PARAMETER KeepInPlace
    Leave the files in InstanceDir (no RevertDir).

.EXAMPLE
    .\Export-InstanceDisk.ps1 -Name instance-0000002a -InstanceDir C:\OpenStack\Instances\instance-0000002a -RevertDir C:\OpenStack\Instances\instance-0000002a_revert -RootSizeBytes 20GB

.OUTPUTS
    One object: name, vm_existed, previous_state, generation (null when no
    VM was found), folder (where the files are now: RevertDir, or
    InstanceDir with -KeepInPlace), disks [{name, path, format, vhd_type,
    size_bytes, virtual_size_bytes, parent_path, root}], copied (paths
    written under CopyTo).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [string]$InstanceUuid,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$InstanceDir,

    [string]$RevertDir,

    [long]$RootSizeBytes = 0,

    [string]$CopyTo,

    [switch]$KeepInPlace
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$isRoot = $InstanceDir -match '^[A-Za-z]:[\\/]*$' -or $InstanceDir -match '^\\\\[^\\/]+[\\/][^\\/]+[\\/]*$'
if (-not (Test-PsDriverAbsolutePath -Path $InstanceDir) -or $isRoot) {
    throw (New-PsDriverErrorRecord -Message "InstanceDir '$InstanceDir' must be an absolute path below a drive or share root." -Category InvalidArgument -ErrorId 'PsDriver.UnsafeInstanceDir' -Target $InstanceDir)
}
if (-not $KeepInPlace) {
    if ([string]::IsNullOrEmpty($RevertDir) -or -not (Test-PsDriverSamePath -Left (Split-Path -Path $RevertDir -Parent) -Right (Split-Path -Path $InstanceDir -Parent)) -or (Test-PsDriverSamePath -Left $RevertDir -Right $InstanceDir)) {
        throw (New-PsDriverErrorRecord -Message "RevertDir '$RevertDir' must be another folder next to InstanceDir '$InstanceDir'." -Category InvalidArgument -ErrorId 'PsDriver.UnsafeInstanceDir' -Target $RevertDir)
    }
}

$vm = Get-PsDriverVM -Name $Name -AllowMissing
if ($null -ne $vm -and -not [string]::IsNullOrEmpty($InstanceUuid)) {
    $actual = ConvertTo-PsDriverInstanceUuid -Notes ([string]$vm.Notes)
    if ($actual -ne $InstanceUuid.Trim('{', '}').ToLowerInvariant()) {
        throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' does not carry instance UUID $InstanceUuid in its Notes; it is left alone." -Category InvalidOperation -ErrorId 'PsDriver.InstanceUuidMismatch' -Target $Name)
    }
}

# Where the files are: the instance folder, or (a repeated call) the revert folder.
$source = $InstanceDir
if (-not (Test-Path -LiteralPath $InstanceDir -PathType Container) -and -not $KeepInPlace -and (Test-Path -LiteralPath $RevertDir -PathType Container)) {
    $source = $RevertDir
}
$rootPath = $null
$generation = $null
$previousState = $null
if ($null -ne $vm) {
    $generation = [int]$vm.Generation
    $previousState = $vm.State.ToString()
    $slot = Get-PsDriverBootSlot -VM $vm
    $rootDrive = Find-PsDriverAttachedDrive -Drives @(Get-PsDriverAttachedDrive -VM $vm | Where-Object { $_.Kind -eq 'HardDisk' }) -Slot $slot
    if ($null -ne $rootDrive -and -not [string]::IsNullOrEmpty($rootDrive.Path)) {
        $rootPath = $rootDrive.Path
    }
}

$disks = [System.Collections.Generic.List[object]]::new()
if (Test-Path -LiteralPath $source -PathType Container) {
    foreach ($file in @(Get-ChildItem -LiteralPath $source -File | Where-Object { $_.Extension -in @('.vhd', '.vhdx') } | Sort-Object -Property Name)) {
        $vhd = Hyper-V\Get-VHD -Path $file.FullName
        $isRootDisk = ($null -ne $rootPath -and (Test-PsDriverSamePath -Left $rootPath -Right $file.FullName)) -or ($null -eq $rootPath -and $file.BaseName -eq 'root')
        $disks.Add([ordered]@{
                name               = $file.Name
                path               = $file.FullName
                format             = $vhd.VhdFormat.ToString().ToLowerInvariant()
                vhd_type           = $vhd.VhdType.ToString()
                size_bytes         = [long]$file.Length
                virtual_size_bytes = [long]$vhd.Size
                parent_path        = [string]$vhd.ParentPath
                root               = [bool]$isRootDisk
            })
    }
}
foreach ($disk in $disks) {
    if ($disk.root -and $RootSizeBytes -gt 0 -and $disk.virtual_size_bytes -gt $RootSizeBytes) {
        $message = "Cannot resize the root disk of '{0}' to {1} bytes ({2:0.##} GB): it is {3} bytes ({4:0.##} GB) and a disk is never shrunk." -f $Name, $RootSizeBytes, ($RootSizeBytes / 1GB), $disk.virtual_size_bytes, ($disk.virtual_size_bytes / 1GB)
        throw (New-PsDriverErrorRecord -Message $message -Category InvalidArgument -ErrorId 'PsDriver.RootDiskTooSmall' -Target $Name)
    }
}

$folder = $source
$copied = [System.Collections.Generic.List[string]]::new()
if ($PSCmdlet.ShouldProcess("instance '$Name' in '$InstanceDir'", 'Remove the VM and keep its files for a migration')) {
    if ($null -ne $vm) {
        Remove-PsDriverVM -VM $vm
    }
    if (-not $KeepInPlace -and (Test-PsDriverSamePath -Left $source -Right $InstanceDir)) {
        if (Test-Path -LiteralPath $RevertDir) {
            Remove-Item -LiteralPath $RevertDir -Recurse -Force -Confirm:$false
        }
        Move-Item -LiteralPath $InstanceDir -Destination $RevertDir -Confirm:$false
        $folder = $RevertDir
    }
    foreach ($disk in $disks) {
        $disk.path = Join-Path -Path $folder -ChildPath $disk.name
    }
    if (-not [string]::IsNullOrEmpty($CopyTo)) {
        if (-not (Test-Path -LiteralPath $CopyTo -PathType Container)) {
            $null = New-Item -ItemType Directory -Path $CopyTo -Force -Confirm:$false
        }
        foreach ($disk in $disks) {
            $target = Join-Path -Path $CopyTo -ChildPath $disk.name
            Copy-Item -LiteralPath $disk.path -Destination $target -Force -Confirm:$false
            $copied.Add($target)
        }
    }
}

[ordered]@{
    name           = $Name
    vm_existed     = $null -ne $vm
    previous_state = $previousState
    generation     = $generation
    folder         = $folder
    disks          = @($disks)
    copied         = @($copied)
}
