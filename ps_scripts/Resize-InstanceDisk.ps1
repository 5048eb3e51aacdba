<#
.SYNOPSIS
    Grows a virtual hard disk (VHD or VHDX) of an instance to a new virtual
    size; never shrinks it.

.DESCRIPTION
    Reads the disk with Get-VHD and compares SizeBytes with its virtual
    size:
      smaller  error InvalidArgument / PsDriver.RootDiskTooSmall (the same
               error as a spawn whose flavor disk is smaller than the
               image); the message states both sizes. Nothing is changed.
      equal    nothing to do (resized false).
      bigger   Resize-VHD. A vhd differencing disk cannot grow: error
               InvalidArgument / PsDriver.DifferencingVhdResize. Only a
               VHDX on a SCSI controller grows while its VM runs: a disk
               attached to an IDE controller, or a vhd, of a VM that is
               not Off or Saved is refused before Resize-VHD with
               InvalidOperation / PsDriver.DiskResizeNeedsVMOff naming the
               VM and the controller. Hyper-V refusing the resize for
               another reason: InvalidOperation /
               PsDriver.DiskResizeFailed with Hyper-V's message.
    A missing file: ObjectNotFound / PsDriver.DiskNotFound. SizeBytes not
    positive: InvalidArgument / PsDriver.InvalidDiskSize. The file
    system inside the guest is not touched (the guest grows its partition).
    -WhatIf reports the sizes and changes nothing.

.PARAMETER Path
    Full path of the .vhd or .vhdx file.

.PARAMETER SizeBytes
    The new virtual size in bytes (a multiple of 512; flavor sizes are whole
    GiB).

.EXAMPLE
    .\Resize-InstanceDisk.ps1 -Path C:\OpenStack\Instances\instance-00000001\root.vhdx -SizeBytes 40GB

.OUTPUTS
    One object: path, format (vhd, vhdx), vhd_type, previous_size_bytes,
    size_bytes, resized.
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Path,

    [Parameter(Mandatory)]
    [long]$SizeBytes
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Test-PsDriverSamePath' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

if ($SizeBytes -le 0) {
    throw (New-PsDriverErrorRecord -Message "SizeBytes must be positive, got $SizeBytes." -Category InvalidArgument -ErrorId 'PsDriver.InvalidDiskSize' -Target $Path)
}
if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) {
    throw (New-PsDriverErrorRecord -Message "The virtual disk '$Path' was not found." -Category ObjectNotFound -ErrorId 'PsDriver.DiskNotFound' -Target $Path)
}

$vhd = Hyper-V\Get-VHD -Path $Path
$format = $vhd.VhdFormat.ToString().ToLowerInvariant()
$vhdType = $vhd.VhdType.ToString()
$previousSize = [long]$vhd.Size
$size = $previousSize
$resized = $false

if ($SizeBytes -lt $previousSize) {
    $message = "Cannot resize '{0}' to {1} bytes ({2:0.##} GB): it is {3} bytes ({4:0.##} GB) and a disk is never shrunk." -f $Path, $SizeBytes, ($SizeBytes / 1GB), $previousSize, ($previousSize / 1GB)
    throw (New-PsDriverErrorRecord -Message $message -Category InvalidArgument -ErrorId 'PsDriver.RootDiskTooSmall' -Target $Path)
}
if ($SizeBytes -gt $previousSize) {
    if ($format -eq 'vhd' -and $vhdType -eq 'Differencing') {
        throw (New-PsDriverErrorRecord -Message "'$Path' is a vhd differencing disk, which cannot grow (only vhdx differencing disks can)." -Category InvalidArgument -ErrorId 'PsDriver.DifferencingVhdResize' -Target $Path)
    }
    # Only a VHDX on SCSI grows online: check the VMs that have their disks open.
    foreach ($owner in @(Hyper-V\Get-VM)) {
        if ($owner.State.ToString() -in @('Off', 'Saved', 'OffCritical', 'SavedCritical')) {
            continue
        }
        foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $owner)) {
            if (-not (Test-PsDriverSamePath -Left ([string]$drive.Path) -Right $Path)) {
                continue
            }
            $controller = $drive.ControllerType.ToString()
            if ($controller -eq 'IDE' -or $format -eq 'vhd') {
                throw (New-PsDriverErrorRecord -Message "Cannot grow '$Path' while virtual machine '$($owner.Name)' is $($owner.State): it is a $format on $controller controller $($drive.ControllerNumber), and only a vhdx on a SCSI controller grows while the VM runs. Turn the VM off first." -Category InvalidOperation -ErrorId 'PsDriver.DiskResizeNeedsVMOff' -Target $Path)
            }
        }
    }
    if ($PSCmdlet.ShouldProcess("virtual disk '$Path' ($previousSize bytes)", "Grow to $SizeBytes bytes")) {
        try {
            $null = Hyper-V\Resize-VHD -Path $Path -SizeBytes $SizeBytes -Confirm:$false
        }
        catch {
            throw (New-PsDriverErrorRecord -Message "Hyper-V could not grow '$Path' to $SizeBytes bytes: $($_.Exception.Message)" -Category InvalidOperation -ErrorId 'PsDriver.DiskResizeFailed' -Target $Path -InnerException $_.Exception)
        }
        $size = [long](Hyper-V\Get-VHD -Path $Path).Size
        $resized = $true
    }
}

[ordered]@{
    path                = $Path
    format              = $format
    vhd_type            = $vhdType
    previous_size_bytes = $previousSize
    size_bytes          = $size
    resized             = $resized
}
