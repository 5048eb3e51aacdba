<#
.SYNOPSIS
    Puts a virtual machine in rescue mode: boots it from a rescue disk with
    its own root disk attached as a second disk.

.DESCRIPTION
    0. Makes the files the rescue needs when their sources are passed, so
       that the driver's rescue is one call: with RescueImagePath and no
       file at RescueDiskPath, creates RescueDiskPath as a differencing
       disk over the image; with ConfigDriveBase64, writes the rescue
       config drive to ConfigDrivePath (the rescue password is in it, so
       the parameter is secret). Nothing is made when the checks below
       refuse the rescue.
    1. Turns the VM off (hard; a saved state is discarded).
    2. Detaches the root disk from its slot and attaches the rescue disk
       (prepared beforehand, usually a differencing disk over the rescue
       image) in that slot, so a generation 1 VM boots from it (IDE 0:0).
    3. Re-attaches the root disk on the first free SCSI location (a SCSI
       controller is added to a generation 1 VM that has none).
    4. With ConfigDrivePath: detaches the instance's own config drive
       (OriginalConfigDrivePath, file kept) and attaches the rescue config
       drive in its slot; without an original, in the default slot
       (generation 1: IDE 1:0 or the next free IDE slot; generation 2: the
       next free SCSI location). A .iso file goes in a DVD drive, a
       .vhd/.vhdx file in a hard disk drive.
    5. Generation 2: makes the rescue disk the first boot device.
    6. Starts the VM.

    The same layout as compute-hyperv's rescue. Running it again on a VM
    whose rescue disk is already attached changes no disks and only starts
    the VM if it is not running (root_disk_path is then RootDiskPath, or
    null when not given). Remove-InstanceRescue.ps1 undoes it.

    Errors: missing VM: ObjectNotFound / PsDriver.VMNotFound. Missing
    rescue disk (and no RescueImagePath), rescue image or config drive
    file: ObjectNotFound / PsDriver.RescueDiskNotFound,
    PsDriver.RescueImageNotFound or PsDriver.ConfigDriveNotFound.
    ConfigDriveBase64 without ConfigDrivePath, or not base64:
    InvalidArgument / PsDriver.InvalidConfigDrive. A .vhd
    rescue disk for a generation 2 VM: InvalidArgument /
    PsDriver.RescueImageUnacceptable. No virtual root disk (RootDiskPath
    not attached, or the boot slot empty or a pass-through disk, as for an
    instance booted from a volume): InvalidOperation /
    PsDriver.InstanceNotRescuable. No free controller slot: LimitsExceeded
    / PsDriver.NoFreeControllerSlot.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER RescueDiskPath
    Full path of the rescue disk (.vhd or .vhdx) on the host.

.PARAMETER RootDiskPath
    Full path of the instance's root disk. Default: the virtual hard disk
    in the boot slot (IDE 0:0 for generation 1, SCSI 0:0 for generation 2).

.PARAMETER ConfigDrivePath
    Full path of the rescue config drive (.iso, .vhd or .vhdx). Optional.

.PARAMETER OriginalConfigDrivePath
    Full path of the instance's own config drive, detached while rescued
    when ConfigDrivePath is given. Optional.

.PARAMETER RescueImagePath
    The cached rescue image (.vhd or .vhdx); RescueDiskPath is created as a
    differencing disk over it when missing. Optional.

.PARAMETER ConfigDriveBase64
    The rescue config drive image, base64; written to ConfigDrivePath.
    Carries the rescue password: never log it. Optional.

.EXAMPLE
    .\Set-InstanceRescue.ps1 -Name instance-00000001 `
        -RescueDiskPath 'C:\OpenStack\Instances\instance-00000001\root-rescue.vhdx' `
        -ConfigDrivePath 'C:\OpenStack\Instances\instance-00000001\configdrive-rescue.iso' `
        -OriginalConfigDrivePath 'C:\OpenStack\Instances\instance-00000001\configdrive.iso'

.OUTPUTS
    One object: name, state, generation, rescued (true), boot_disk_path
    (the rescue disk), root_disk_path, rescue_disk_path, config_drive_path
    (the attached rescue config drive, or null), devices (every hard disk
    and DVD drive: kind HardDisk or DvdDrive, path or null when empty,
    controller_type IDE or SCSI, controller_number, controller_location).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$RescueDiskPath,

    [string]$RootDiskPath,

    [string]$ConfigDrivePath,

    [string]$OriginalConfigDrivePath,

    [string]$RescueImagePath,

    [string]$ConfigDriveBase64
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$vm = Get-PsDriverVM -Name $Name
$generation = [int]$vm.Generation

$makeRescueDisk = -not (Test-Path -LiteralPath $RescueDiskPath -PathType Leaf)
if ($makeRescueDisk -and [string]::IsNullOrEmpty($RescueImagePath)) {
    throw (New-PsDriverErrorRecord -Message "Rescue disk '$RescueDiskPath' does not exist." -Category ObjectNotFound -ErrorId 'PsDriver.RescueDiskNotFound' -Target $RescueDiskPath)
}
if ($makeRescueDisk -and -not (Test-Path -LiteralPath $RescueImagePath -PathType Leaf)) {
    throw (New-PsDriverErrorRecord -Message "Rescue image '$RescueImagePath' does not exist." -Category ObjectNotFound -ErrorId 'PsDriver.RescueImageNotFound' -Target $RescueImagePath)
}
$configDriveBytes = $null
if (-not [string]::IsNullOrEmpty($ConfigDriveBase64)) {
    if ([string]::IsNullOrEmpty($ConfigDrivePath)) {
        throw (New-PsDriverErrorRecord -Message 'ConfigDriveBase64 needs ConfigDrivePath, where the rescue config drive is written.' -Category InvalidArgument -ErrorId 'PsDriver.InvalidConfigDrive' -Target 'ConfigDrivePath')
    }
    try {
        $configDriveBytes = [System.Convert]::FromBase64String($ConfigDriveBase64)
    }
    catch {
        throw (New-PsDriverErrorRecord -Message 'ConfigDriveBase64 is not valid base64.' -Category InvalidArgument -ErrorId 'PsDriver.InvalidConfigDrive' -Target 'ConfigDriveBase64')
    }
}
if ($generation -ne 1 -and [System.IO.Path]::GetExtension($RescueDiskPath) -ne '.vhdx') {
    throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' is generation $generation and boots only from a VHDX disk; '$RescueDiskPath' is not one." -Category InvalidArgument -ErrorId 'PsDriver.RescueImageUnacceptable' -Target $RescueDiskPath)
}
if ($null -eq $configDriveBytes -and -not [string]::IsNullOrEmpty($ConfigDrivePath) -and -not (Test-Path -LiteralPath $ConfigDrivePath -PathType Leaf)) {
    throw (New-PsDriverErrorRecord -Message "Config drive '$ConfigDrivePath' does not exist." -Category ObjectNotFound -ErrorId 'PsDriver.ConfigDriveNotFound' -Target $ConfigDrivePath)
}

$drives = @(Get-PsDriverAttachedDrive -VM $vm)
$rescueDrive = Find-PsDriverAttachedDrive -Drives $drives -Path $RescueDiskPath
$rootPath = $RootDiskPath
if ($null -eq $rescueDrive) {
    if ([string]::IsNullOrEmpty($RootDiskPath)) {
        $root = Find-PsDriverAttachedDrive -Drives $drives -Slot (Get-PsDriverBootSlot -VM $vm)
    }
    else {
        $root = Find-PsDriverAttachedDrive -Drives $drives -Path $RootDiskPath
    }
    if ($null -eq $root -or $root.Kind -ne 'HardDisk' -or $null -ne $root.DiskNumber -or [string]::IsNullOrEmpty($root.Path)) {
        throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' has no virtual root disk to rescue; rescuing an instance booted from a volume is not supported." -Category InvalidOperation -ErrorId 'PsDriver.InstanceNotRescuable' -Target $Name)
    }
    $rootPath = $root.Path
}

if ($PSCmdlet.ShouldProcess("virtual machine '$Name'", 'Boot from rescue disk')) {
    if ($null -eq $rescueDrive) {
        if ($makeRescueDisk) {
            $null = Hyper-V\New-VHD -Path $RescueDiskPath -ParentPath $RescueImagePath -Differencing -Confirm:$false
        }
        if ($null -ne $configDriveBytes) {
            [System.IO.File]::WriteAllBytes($ConfigDrivePath, $configDriveBytes)
        }
        Stop-PsDriverVM -VM $vm
        $rootSlot = New-PsDriverDriveSlot -ControllerType $root.ControllerType -ControllerNumber $root.ControllerNumber `
            -ControllerLocation $root.ControllerLocation
        Dismount-PsDriverAttachedDrive -Record $root
        $rescueDisk = Hyper-V\Add-VMHardDiskDrive -VM $vm -ControllerType $rootSlot.ControllerType -ControllerNumber $rootSlot.ControllerNumber `
            -ControllerLocation $rootSlot.ControllerLocation -Path $RescueDiskPath -Passthru -Confirm:$false
        $newRootSlot = Get-PsDriverFreeDriveSlot -VM $vm -ControllerType 'SCSI'
        $null = Hyper-V\Add-VMHardDiskDrive -VM $vm -ControllerType 'SCSI' -ControllerNumber $newRootSlot.ControllerNumber `
            -ControllerLocation $newRootSlot.ControllerLocation -Path $rootPath -Confirm:$false

        if (-not [string]::IsNullOrEmpty($ConfigDrivePath)) {
            $preferred = $null
            $original = $null
            if (-not [string]::IsNullOrEmpty($OriginalConfigDrivePath)) {
                $original = Find-PsDriverAttachedDrive -Drives @(Get-PsDriverAttachedDrive -VM $vm) -Path $OriginalConfigDrivePath
            }
            if ($null -ne $original) {
                $preferred = New-PsDriverDriveSlot -ControllerType $original.ControllerType -ControllerNumber $original.ControllerNumber `
                    -ControllerLocation $original.ControllerLocation
                Dismount-PsDriverAttachedDrive -Record $original
            }
            if ($null -eq (Find-PsDriverAttachedDrive -Drives @(Get-PsDriverAttachedDrive -VM $vm) -Path $ConfigDrivePath)) {
                Mount-PsDriverConfigDrive -VM $vm -Path $ConfigDrivePath -PreferredSlot $preferred
            }
        }
        if ($generation -ne 1) {
            Hyper-V\Set-VMFirmware -VM $vm -FirstBootDevice $rescueDisk -Confirm:$false
        }
    }
    Start-PsDriverVM -VM $vm
}

Get-PsDriverRescueRecord -VM $vm -RescueDiskPath $RescueDiskPath -RootDiskPath $rootPath -ConfigDrivePath $ConfigDrivePath
