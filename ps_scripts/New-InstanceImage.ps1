<#
.SYNOPSIS
    Makes an image file of an instance's root disk while the VM runs: a
    crash-consistent checkpoint, its frozen root disk chain converted into
    one standalone VHD or VHDX, the checkpoint removed again.

.DESCRIPTION
    What Nova's snapshot needs from the host, in one call:
      1. Find the VM named exactly Name (ObjectNotFound / PsDriver.VMNotFound
         when there is none). Its root disk is the hard disk in the boot slot
         (IDE 0:0 for generation 1, SCSI 0:0 for generation 2); none (boot
         from volume) or a pass-through disk there: ObjectNotFound /
         PsDriver.RootDiskNotFound.
      2. A standard checkpoint (Set-VM -CheckpointType Standard for the time
         of the call, then the VM's own checkpoint type again): the running
         VM writes to a new .avhdx while the root disk and its parents stay
         as they were at that instant (crash-consistent, as compute-hyperv
         took them).
      3. Convert-VHD of the frozen root disk (with its differencing parents,
         such as the cached base image) into DestinationFolder\FileStem.vhdx
         or .vhd (the root disk's own format), a dynamic disk with no parent.
      4. The checkpoint is removed (Remove-VMSnapshot: Hyper-V merges the
         .avhdx back online), also when step 3 failed; a partial image file
         is deleted.
    DestinationFolder is created when missing. A file already at the image
    path: ResourceExists / PsDriver.ImageExists. Hyper-V refusing the
    checkpoint (for example a VM that is starting or stopping):
    InvalidOperation / PsDriver.CheckpointFailed with Hyper-V's message.
    -WhatIf reports the root disk and changes nothing.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER DestinationFolder
    Folder for the image file (normally <instances_path>\_snapshots, which
    [hyperv] instances_path_share exposes to a management node).

.PARAMETER FileStem
    File name without extension (normally the Glance image id).

.PARAMETER CheckpointName
    Name of the temporary checkpoint. Default: psdriver-snapshot-<FileStem>.

.EXAMPLE
    .\New-InstanceImage.ps1 -Name instance-0000002a -DestinationFolder C:\OpenStack\Instances\_snapshots -FileStem 6b1c4f7e-3f5a-4d0b-9a42-0c2d7e8f9a10

.OUTPUTS
    One object: name, generation, path (the image file; null with -WhatIf),
    format (vhd, vhdx), virtual_size_bytes, file_size_bytes (0 with
    -WhatIf), root_disk_path (the disk the VM used before the call),
    vm_state, checkpoint_removed.
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$DestinationFolder,

    [Parameter(Mandatory)]
    [ValidatePattern('^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$')]
    [string]$FileStem,

    [ValidateNotNullOrEmpty()]
    [string]$CheckpointName
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

if ([string]::IsNullOrEmpty($CheckpointName)) {
    $CheckpointName = "psdriver-snapshot-$FileStem"
}

$vm = Get-PsDriverVM -Name $Name
$slot = Get-PsDriverBootSlot -VM $vm
$drives = @(Get-PsDriverAttachedDrive -VM $vm | Where-Object { $_.Kind -eq 'HardDisk' })
$root = Find-PsDriverAttachedDrive -Drives $drives -Slot $slot
if ($null -eq $root -or $null -ne $root.DiskNumber -or [string]::IsNullOrEmpty($root.Path)) {
    throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' has no root disk file in $($slot.ControllerType) $($slot.ControllerNumber):$($slot.ControllerLocation) (booted from a volume?)." -Category ObjectNotFound -ErrorId 'PsDriver.RootDiskNotFound' -Target $Name)
}
$rootPath = $root.Path
$rootVhd = Hyper-V\Get-VHD -Path $rootPath
$format = $rootVhd.VhdFormat.ToString().ToLowerInvariant()
$imagePath = Join-Path -Path $DestinationFolder -ChildPath "$FileStem.$format"
if (Test-Path -LiteralPath $imagePath) {
    throw (New-PsDriverErrorRecord -Message "The image file '$imagePath' already exists." -Category ResourceExists -ErrorId 'PsDriver.ImageExists' -Target $imagePath)
}

$result = [ordered]@{
    name               = $Name
    generation         = [int]$vm.Generation
    path               = $null
    format             = $format
    virtual_size_bytes = [long]$rootVhd.Size
    file_size_bytes    = [long]0
    root_disk_path     = $rootPath
    vm_state           = $vm.State.ToString()
    checkpoint_removed = $false
}

if ($PSCmdlet.ShouldProcess("root disk '$rootPath' of '$Name'", "Checkpoint and convert to '$imagePath'")) {
    if (-not (Test-Path -LiteralPath $DestinationFolder -PathType Container)) {
        $null = New-Item -ItemType Directory -Path $DestinationFolder -Force -Confirm:$false
    }
    $previousType = [string]$vm.CheckpointType
    $snapshot = $null
    try {
        try {
            if ($previousType -ne 'Standard') {
                Hyper-V\Set-VM -VM $vm -CheckpointType Standard -Confirm:$false
            }
            $snapshot = Hyper-V\Checkpoint-VM -VM $vm -SnapshotName $CheckpointName -Passthru -Confirm:$false
        }
        catch {
            throw (New-PsDriverErrorRecord -Message "Hyper-V could not checkpoint '$Name': $($_.Exception.Message)" -Category InvalidOperation -ErrorId 'PsDriver.CheckpointFailed' -Target $Name -InnerException $_.Exception)
        }
        finally {
            if ($previousType -ne 'Standard' -and -not [string]::IsNullOrEmpty($previousType)) {
                Hyper-V\Set-VM -VM $vm -CheckpointType $previousType -Confirm:$false
            }
        }
        $frozen = $rootPath
        foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VMSnapshot $snapshot)) {
            if ($drive.ControllerType.ToString() -eq $slot.ControllerType -and
                [int]$drive.ControllerNumber -eq $slot.ControllerNumber -and
                [int]$drive.ControllerLocation -eq $slot.ControllerLocation) {
                $frozen = [string]$drive.Path
            }
        }
        try {
            $null = Hyper-V\Convert-VHD -Path $frozen -DestinationPath $imagePath -VHDType Dynamic -Confirm:$false
        }
        catch {
            if (Test-Path -LiteralPath $imagePath) {
                Remove-Item -LiteralPath $imagePath -Force -Confirm:$false
            }
            throw
        }
    }
    finally {
        if ($null -ne $snapshot) {
            Hyper-V\Remove-VMSnapshot -VMSnapshot $snapshot -Confirm:$false
            $result.checkpoint_removed = $true
        }
    }
    $result.path = $imagePath
    $result.file_size_bytes = [long](Get-Item -LiteralPath $imagePath).Length
    $result.vm_state = (Get-PsDriverVMState -VM $vm)
}

$result
