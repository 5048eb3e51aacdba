<#
.SYNOPSIS
    Takes a virtual machine out of rescue mode: detaches and deletes the
    rescue disk, puts the root disk back in the boot slot and starts the VM.

.DESCRIPTION
    Undoes Set-InstanceRescue.ps1:
    1. Turns the VM off (hard; a saved state is discarded).
    2. Detaches the rescue disk (if attached).
    3. Moves the root disk back to the boot slot (IDE 0:0 for generation 1,
       SCSI 0:0 for generation 2), attaching it there if it is not attached
       at all (recovery after a rescue that failed half way).
    4. Detaches the rescue config drive (RescueConfigDrivePath) and
       re-attaches the instance's own config drive (ConfigDrivePath) if it
       exists and is not attached, in the rescue config drive's slot or the
       default one (generation 1: IDE 1:0 or the next free IDE slot;
       generation 2: the next free SCSI location).
    5. Generation 2: makes the root disk the first boot device again; the
       relative order of the other boot entries is kept.
    6. Deletes the rescue disk and rescue config drive files.
    7. Starts the VM.

    Running it on a VM that is not rescued only restores the layout above
    (normally nothing to do) and starts the VM. Missing rescue files are
    not an error.

    Errors: missing VM: ObjectNotFound / PsDriver.VMNotFound. Root disk not
    found (RootDiskPath neither attached nor an existing file; or, without
    RootDiskPath, no attached disk named root.vhd or root.vhdx):
    ObjectNotFound / PsDriver.RootDiskNotFound. Several disks named
    root.vhd(x): InvalidArgument / PsDriver.RootDiskAmbiguous. The boot
    slot held by another disk: InvalidOperation / PsDriver.BootSlotOccupied.
    No free controller slot: LimitsExceeded / PsDriver.NoFreeControllerSlot.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER RescueDiskPath
    Full path of the rescue disk to detach and delete.

.PARAMETER RootDiskPath
    Full path of the instance's root disk. Default: the attached virtual
    hard disk whose file name is root.vhd or root.vhdx (the names
    compute-hyperv used), other than the rescue disk.

.PARAMETER RescueConfigDrivePath
    Full path of the rescue config drive to detach and delete. Optional.

.PARAMETER ConfigDrivePath
    Full path of the instance's own config drive to re-attach. Optional.

.EXAMPLE
    .\Remove-InstanceRescue.ps1 -Name instance-00000001 `
        -RescueDiskPath 'C:\OpenStack\Instances\instance-00000001\root-rescue.vhdx' `
        -RootDiskPath 'C:\OpenStack\Instances\instance-00000001\root.vhdx' `
        -RescueConfigDrivePath 'C:\OpenStack\Instances\instance-00000001\configdrive-rescue.iso' `
        -ConfigDrivePath 'C:\OpenStack\Instances\instance-00000001\configdrive.iso'

.OUTPUTS
    One object: name, state, generation, rescued (false unless the rescue
    disk is still attached), boot_disk_path (the root disk),
    root_disk_path, rescue_disk_path (null once detached),
    config_drive_path (the attached instance config drive, or null),
    devices (every hard disk and DVD drive: kind HardDisk or DvdDrive, path
    or null when empty, controller_type IDE or SCSI, controller_number,
    controller_location).
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

    [string]$RescueConfigDrivePath,

    [string]$ConfigDrivePath
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Find-RootDrive {
    <#
    .SYNOPSIS
        The attached root disk: RootDiskPath, else the disk named root.vhd or root.vhdx.
    #>
    param(
        [Parameter(Mandatory)]
        [AllowEmptyCollection()]
        [object[]]$Drives
    )
    if (-not [string]::IsNullOrEmpty($RootDiskPath)) {
        return (Find-PsDriverAttachedDrive -Drives $Drives -Path $RootDiskPath)
    }
    $candidates = @($Drives | Where-Object {
            $_.Kind -eq 'HardDisk' -and -not [string]::IsNullOrEmpty($_.Path) -and
            -not (Test-PsDriverSamePath -Left $_.Path -Right $RescueDiskPath) -and
            [System.IO.Path]::GetFileName($_.Path) -match '^root\.vhdx?$'
        })
    if ($candidates.Count -gt 1) {
        throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' has $($candidates.Count) disks named root.vhd or root.vhdx; pass RootDiskPath." -Category InvalidArgument -ErrorId 'PsDriver.RootDiskAmbiguous' -Target $Name)
    }
    if ($candidates.Count -eq 1) {
        return $candidates[0]
    }
    $null
}

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$vm = Get-PsDriverVM -Name $Name
$generation = [int]$vm.Generation
$bootSlot = Get-PsDriverBootSlot -VM $vm
$bootType = $bootSlot.ControllerType

$root = Find-RootDrive -Drives @(Get-PsDriverAttachedDrive -VM $vm)
if ($null -eq $root) {
    if ([string]::IsNullOrEmpty($RootDiskPath) -or -not (Test-Path -LiteralPath $RootDiskPath -PathType Leaf)) {
        throw (New-PsDriverErrorRecord -Message "The root disk of virtual machine '$Name' was not found; the instance cannot be unrescued." -Category ObjectNotFound -ErrorId 'PsDriver.RootDiskNotFound' -Target $Name)
    }
    $rootPath = $RootDiskPath
}
else {
    $rootPath = $root.Path
}

if ($PSCmdlet.ShouldProcess("virtual machine '$Name'", 'Boot from root disk')) {
    Stop-PsDriverVM -VM $vm

    $rescue = Find-PsDriverAttachedDrive -Drives @(Get-PsDriverAttachedDrive -VM $vm) -Path $RescueDiskPath
    if ($null -ne $rescue) {
        Dismount-PsDriverAttachedDrive -Record $rescue
    }

    $rootAtBoot = $null -ne $root -and $root.ControllerType -eq $bootSlot.ControllerType -and $root.ControllerNumber -eq 0 -and $root.ControllerLocation -eq 0
    if ($rootAtBoot) {
        $rootDisk = $root.Drive
    }
    else {
        $occupant = Find-PsDriverAttachedDrive -Drives @(Get-PsDriverAttachedDrive -VM $vm) -Slot $bootSlot
        if ($null -ne $occupant) {
            throw (New-PsDriverErrorRecord -Message "The boot slot $bootType 0:0 of virtual machine '$Name' holds '$($occupant.Path)', not the root disk." -Category InvalidOperation -ErrorId 'PsDriver.BootSlotOccupied' -Target $Name)
        }
        if ($null -ne $root) {
            Dismount-PsDriverAttachedDrive -Record $root
        }
        $rootDisk = Hyper-V\Add-VMHardDiskDrive -VM $vm -ControllerType $bootType -ControllerNumber 0 -ControllerLocation 0 `
            -Path $rootPath -Passthru -Confirm:$false
    }

    $preferred = $null
    if (-not [string]::IsNullOrEmpty($RescueConfigDrivePath)) {
        $rescueConfig = Find-PsDriverAttachedDrive -Drives @(Get-PsDriverAttachedDrive -VM $vm) -Path $RescueConfigDrivePath
        if ($null -ne $rescueConfig) {
            $preferred = New-PsDriverDriveSlot -ControllerType $rescueConfig.ControllerType -ControllerNumber $rescueConfig.ControllerNumber `
                -ControllerLocation $rescueConfig.ControllerLocation
            Dismount-PsDriverAttachedDrive -Record $rescueConfig
        }
    }
    if (-not [string]::IsNullOrEmpty($ConfigDrivePath)) {
        $attached = Find-PsDriverAttachedDrive -Drives @(Get-PsDriverAttachedDrive -VM $vm) -Path $ConfigDrivePath
        if ($null -eq $attached -and (Test-Path -LiteralPath $ConfigDrivePath -PathType Leaf)) {
            Mount-PsDriverConfigDrive -VM $vm -Path $ConfigDrivePath -PreferredSlot $preferred
        }
    }

    if ($generation -ne 1) {
        Hyper-V\Set-VMFirmware -VM $vm -FirstBootDevice $rootDisk -Confirm:$false
    }

    foreach ($leftover in @($RescueDiskPath, $RescueConfigDrivePath)) {
        if (-not [string]::IsNullOrEmpty($leftover) -and (Test-Path -LiteralPath $leftover -PathType Leaf)) {
            Remove-Item -LiteralPath $leftover -Force -Confirm:$false
        }
    }
    Start-PsDriverVM -VM $vm
}

Get-PsDriverRescueRecord -VM $vm -RescueDiskPath $RescueDiskPath -RootDiskPath $rootPath -ConfigDrivePath $ConfigDrivePath
