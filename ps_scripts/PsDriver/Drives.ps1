# PsDriver helpers: drive slots, attached drives and the config drive.
# Dot-sourced by PsDriver.psm1; the bridge inlines the functions of this file that a
# wrapped script uses (psdriver/bridge/helpers.py). Functions only: no other statements.

# A drive record: Kind (HardDisk or DvdDrive), Drive (the Hyper-V object), Path,
# DiskNumber (pass-through disks), ControllerType (IDE or SCSI), ControllerNumber,
# ControllerLocation. A slot: ControllerType, ControllerNumber, ControllerLocation.

function Get-PsDriverAttachedDrive {
    <#
    .SYNOPSIS
        Every hard disk and DVD drive of the VM, as drive records.

    .PARAMETER VM
        The VM.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $VM)) {
        $diskNumber = $null
        if ($null -ne $drive.DiskNumber) {
            $diskNumber = [int]$drive.DiskNumber
        }
        [pscustomobject]@{
            Kind               = 'HardDisk'
            Drive              = $drive
            Path               = [string]$drive.Path
            DiskNumber         = $diskNumber
            ControllerType     = $drive.ControllerType.ToString()
            ControllerNumber   = [int]$drive.ControllerNumber
            ControllerLocation = [int]$drive.ControllerLocation
        }
    }
    foreach ($drive in @(Hyper-V\Get-VMDvdDrive -VM $VM)) {
        [pscustomobject]@{
            Kind               = 'DvdDrive'
            Drive              = $drive
            Path               = [string]$drive.Path
            DiskNumber         = $null
            ControllerType     = $drive.ControllerType.ToString()
            ControllerNumber   = [int]$drive.ControllerNumber
            ControllerLocation = [int]$drive.ControllerLocation
        }
    }
}

function Find-PsDriverAttachedDrive {
    <#
    .SYNOPSIS
        The drive record in Slot, or else the one whose file is Path; $null when none.

    .PARAMETER Drives
        What Get-PsDriverAttachedDrive returned.

    .PARAMETER Path
        The file to look for (compared with Test-PsDriverSamePath).

    .PARAMETER Slot
        The slot to look in; when given, Path is not used.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [AllowEmptyCollection()]
        [object[]]$Drives,

        [string]$Path,

        [object]$Slot
    )
    foreach ($drive in $Drives) {
        if ($null -ne $Slot) {
            if ($drive.ControllerType -eq $Slot.ControllerType -and
                $drive.ControllerNumber -eq $Slot.ControllerNumber -and
                $drive.ControllerLocation -eq $Slot.ControllerLocation) {
                return $drive
            }
        }
        elseif (Test-PsDriverSamePath -Left $drive.Path -Right $Path) {
            return $drive
        }
    }
    $null
}

function New-PsDriverDriveSlot {
    <#
    .SYNOPSIS
        A controller slot: ControllerType, ControllerNumber, ControllerLocation.

    .PARAMETER ControllerType
        IDE or SCSI.

    .PARAMETER ControllerNumber
        The controller.

    .PARAMETER ControllerLocation
        The location on the controller.
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param(
        [string]$ControllerType,
        [int]$ControllerNumber,
        [int]$ControllerLocation
    )
    [pscustomobject]@{
        ControllerType     = $ControllerType
        ControllerNumber   = $ControllerNumber
        ControllerLocation = $ControllerLocation
    }
}

function Get-PsDriverBootSlot {
    <#
    .SYNOPSIS
        The slot a VM boots from: IDE 0:0 for generation 1, SCSI 0:0 for generation 2.

    .PARAMETER VM
        The VM.
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $type = 'SCSI'
    if ([int]$VM.Generation -eq 1) {
        $type = 'IDE'
    }
    New-PsDriverDriveSlot -ControllerType $type -ControllerNumber 0 -ControllerLocation 0
}

function Get-PsDriverFreeDriveSlot {
    <#
    .SYNOPSIS
        The first free slot on the VM's IDE or SCSI controllers.

    .DESCRIPTION
        IDE: 0:0, 0:1, 1:0, 1:1. SCSI: every location of every controller, in
        controller order; a VM without a SCSI controller gets one. No free
        slot: LimitsExceeded / PsDriver.NoFreeControllerSlot.

    .PARAMETER VM
        The VM.

    .PARAMETER ControllerType
        IDE or SCSI.
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [ValidateSet('IDE', 'SCSI')]
        [string]$ControllerType
    )
    $used = @{}
    foreach ($drive in @(Get-PsDriverAttachedDrive -VM $VM)) {
        $used['{0}:{1}:{2}' -f $drive.ControllerType, $drive.ControllerNumber, $drive.ControllerLocation] = $true
    }
    if ($ControllerType -eq 'IDE') {
        foreach ($number in 0..1) {
            foreach ($location in 0..1) {
                if (-not $used[('IDE:{0}:{1}' -f $number, $location)]) {
                    return (New-PsDriverDriveSlot -ControllerType 'IDE' -ControllerNumber $number -ControllerLocation $location)
                }
            }
        }
    }
    else {
        $controllers = @(Hyper-V\Get-VMScsiController -VM $VM)
        if ($controllers.Count -eq 0) {
            Hyper-V\Add-VMScsiController -VM $VM -Confirm:$false
            $controllers = @(Hyper-V\Get-VMScsiController -VM $VM)
        }
        foreach ($controller in @($controllers | Sort-Object -Property ControllerNumber)) {
            foreach ($location in 0..63) {
                if (-not $used[('SCSI:{0}:{1}' -f $controller.ControllerNumber, $location)]) {
                    return (New-PsDriverDriveSlot -ControllerType 'SCSI' -ControllerNumber ([int]$controller.ControllerNumber) -ControllerLocation $location)
                }
            }
        }
    }
    throw (New-PsDriverErrorRecord -Message "Virtual machine '$($VM.Name)' has no free $ControllerType controller slot." -Category LimitsExceeded -ErrorId 'PsDriver.NoFreeControllerSlot' -Target $VM.Name)
}

function Dismount-PsDriverAttachedDrive {
    <#
    .SYNOPSIS
        Removes a DVD drive or hard disk drive from its VM (the file stays).

    .PARAMETER Record
        A drive record (Get-PsDriverAttachedDrive).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$Record
    )
    if ($Record.Kind -eq 'DvdDrive') {
        Hyper-V\Remove-VMDvdDrive -VMDvdDrive $Record.Drive -Confirm:$false
    }
    else {
        Hyper-V\Remove-VMHardDiskDrive -VMHardDiskDrive $Record.Drive -Confirm:$false
    }
}

function Mount-PsDriverConfigDrive {
    <#
    .SYNOPSIS
        Attaches a config drive (.iso as DVD, else hard disk) in PreferredSlot if usable, else a default slot.

    .DESCRIPTION
        Generation 1: an IDE slot, IDE 1:0 unless PreferredSlot says
        otherwise (an .iso only in an IDE slot); an empty DVD drive in the
        slot is given the .iso. Generation 2: PreferredSlot or the next free
        SCSI location. PreferredSlot taken: the next free slot of the kind.

    .PARAMETER VM
        The VM.

    .PARAMETER Path
        The config drive file (.iso, .vhd or .vhdx).

    .PARAMETER PreferredSlot
        The slot to use when it is free (for example the one of the drive it replaces). Optional.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [string]$Path,

        [object]$PreferredSlot
    )
    $generation = [int]$VM.Generation
    $isIso = [System.IO.Path]::GetExtension($Path) -eq '.iso'
    $slotType = 'SCSI'
    if ($generation -eq 1) {
        $slotType = 'IDE'
        if ($null -eq $PreferredSlot -or ($isIso -and $PreferredSlot.ControllerType -ne 'IDE')) {
            $PreferredSlot = New-PsDriverDriveSlot -ControllerType 'IDE' -ControllerNumber 1 -ControllerLocation 0
        }
    }
    $slot = $null
    if ($null -ne $PreferredSlot) {
        $occupant = Find-PsDriverAttachedDrive -Drives @(Get-PsDriverAttachedDrive -VM $VM) -Slot $PreferredSlot
        if ($null -eq $occupant) {
            $slot = $PreferredSlot
        }
        elseif ($isIso -and $occupant.Kind -eq 'DvdDrive' -and [string]::IsNullOrEmpty($occupant.Path)) {
            Hyper-V\Set-VMDvdDrive -VMDvdDrive $occupant.Drive -Path $Path -Confirm:$false
            return
        }
    }
    if ($null -eq $slot) {
        $slot = Get-PsDriverFreeDriveSlot -VM $VM -ControllerType $slotType
    }
    if ($isIso) {
        $null = Hyper-V\Add-VMDvdDrive -VM $VM -ControllerNumber $slot.ControllerNumber `
            -ControllerLocation $slot.ControllerLocation -Path $Path -Confirm:$false
    }
    else {
        $null = Hyper-V\Add-VMHardDiskDrive -VM $VM -ControllerType $slot.ControllerType -ControllerNumber $slot.ControllerNumber `
            -ControllerLocation $slot.ControllerLocation -Path $Path -Confirm:$false
    }
}

function Get-PsDriverDriveLayout {
    <#
    .SYNOPSIS
        The result records of every hard disk and DVD drive of the VM.

    .OUTPUTS
        One {kind, path (null when empty), controller_type, controller_number,
        controller_location} per drive.

    .PARAMETER VM
        The VM.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    foreach ($drive in @(Get-PsDriverAttachedDrive -VM $VM)) {
        $path = $null
        if (-not [string]::IsNullOrEmpty($drive.Path)) {
            $path = $drive.Path
        }
        [ordered]@{
            kind                = $drive.Kind
            path                = $path
            controller_type     = $drive.ControllerType
            controller_number   = $drive.ControllerNumber
            controller_location = $drive.ControllerLocation
        }
    }
}

function Get-PsDriverRescueRecord {
    <#
    .SYNOPSIS
        The result of Set-InstanceRescue and Remove-InstanceRescue: the VM's rescue state and drive layout.

    .PARAMETER VM
        The VM.

    .PARAMETER RescueDiskPath
        The rescue disk: the VM is rescued while it is attached.

    .PARAMETER RootDiskPath
        The instance's root disk; null or empty when unknown.

    .PARAMETER ConfigDrivePath
        The config drive that should be attached; null or empty for none.

    .OUTPUTS
        name, state, generation, rescued, boot_disk_path (the rescue disk
        while rescued, else the root disk), root_disk_path, rescue_disk_path
        (null unless rescued), config_drive_path (null unless attached),
        devices (Get-PsDriverDriveLayout).
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [string]$RescueDiskPath,

        [AllowNull()]
        [AllowEmptyString()]
        [string]$RootDiskPath,

        [AllowNull()]
        [AllowEmptyString()]
        [string]$ConfigDrivePath
    )
    $drives = @(Get-PsDriverAttachedDrive -VM $VM)
    $rescued = $null -ne (Find-PsDriverAttachedDrive -Drives $drives -Path $RescueDiskPath)
    $rootPath = $null
    if (-not [string]::IsNullOrEmpty($RootDiskPath)) {
        $rootPath = $RootDiskPath
    }
    $configDrive = $null
    if (-not [string]::IsNullOrEmpty($ConfigDrivePath) -and $null -ne (Find-PsDriverAttachedDrive -Drives $drives -Path $ConfigDrivePath)) {
        $configDrive = $ConfigDrivePath
    }
    $rescuePath = $null
    $bootPath = $rootPath
    if ($rescued) {
        $rescuePath = $RescueDiskPath
        $bootPath = $RescueDiskPath
    }
    [ordered]@{
        name              = [string]$VM.Name
        state             = Get-PsDriverVMState -VM $VM
        generation        = [int]$VM.Generation
        rescued           = $rescued
        boot_disk_path    = $bootPath
        root_disk_path    = $rootPath
        rescue_disk_path  = $rescuePath
        config_drive_path = $configDrive
        devices           = @(Get-PsDriverDriveLayout -VM $VM)
    }
}
