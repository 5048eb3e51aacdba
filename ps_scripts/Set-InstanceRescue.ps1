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

function New-ErrorRecord {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Message,

        [Parameter(Mandatory)]
        [System.Management.Automation.ErrorCategory]$Category,

        [Parameter(Mandatory)]
        [string]$ErrorId,

        [object]$Target
    )
    $exception = [System.InvalidOperationException]::new($Message)
    [System.Management.Automation.ErrorRecord]::new($exception, $ErrorId, $Category, $Target)
}

function Get-TargetVM {
    <#
    .SYNOPSIS
        Returns the one VM named exactly $Name, or throws PsDriver.VMNotFound.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Name
    )
    # Get-VM -Name takes a wildcard pattern. The escaped name followed by '*'
    # matches the name literally (brackets too) and, being a pattern, never
    # reports "not found": an error here is a real failure (service down,
    # access denied) and stops the script instead of passing for a missing VM.
    $pattern = [System.Management.Automation.WildcardPattern]::Escape($Name) + '*'
    $found = @(Get-VM -Name $pattern | Where-Object { $_.Name -eq $Name })
    if ($found.Count -eq 0) {
        throw (New-ErrorRecord -Message "Virtual machine '$Name' was not found on this host." -Category ObjectNotFound -ErrorId 'PsDriver.VMNotFound' -Target $Name)
    }
    if ($found.Count -gt 1) {
        throw (New-ErrorRecord -Message "$($found.Count) virtual machines are named '$Name'; the name must be unique." -Category InvalidOperation -ErrorId 'PsDriver.VMNameNotUnique' -Target $Name)
    }
    $found[0]
}

function Test-SamePath {
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Left,

        [AllowNull()]
        [AllowEmptyString()]
        [string]$Right
    )
    if ([string]::IsNullOrWhiteSpace($Left) -or [string]::IsNullOrWhiteSpace($Right)) {
        return $false
    }
    $a = $Left.Trim().Replace('/', '\').TrimEnd('\')
    $b = $Right.Trim().Replace('/', '\').TrimEnd('\')
    [string]::Equals($a, $b, [System.StringComparison]::OrdinalIgnoreCase)
}

function Get-AttachedDrive {
    <#
    .SYNOPSIS
        Every hard disk and DVD drive of the VM, with its kind and slot.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    foreach ($drive in @(Get-VMHardDiskDrive -VM $VM)) {
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
    foreach ($drive in @(Get-VMDvdDrive -VM $VM)) {
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

function Find-AttachedDrive {
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
        elseif (Test-SamePath -Left $drive.Path -Right $Path) {
            return $drive
        }
    }
    $null
}

function New-Slot {
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

function Get-FreeSlot {
    <#
    .SYNOPSIS
        The first free slot on the VM's IDE or SCSI controllers.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [ValidateSet('IDE', 'SCSI')]
        [string]$ControllerType
    )
    $used = @{}
    foreach ($drive in @(Get-AttachedDrive -VM $VM)) {
        $used['{0}:{1}:{2}' -f $drive.ControllerType, $drive.ControllerNumber, $drive.ControllerLocation] = $true
    }
    if ($ControllerType -eq 'IDE') {
        foreach ($number in 0..1) {
            foreach ($location in 0..1) {
                if (-not $used[('IDE:{0}:{1}' -f $number, $location)]) {
                    return (New-Slot -ControllerType 'IDE' -ControllerNumber $number -ControllerLocation $location)
                }
            }
        }
    }
    else {
        $controllers = @(Get-VMScsiController -VM $VM)
        if ($controllers.Count -eq 0) {
            Add-VMScsiController -VM $VM
            $controllers = @(Get-VMScsiController -VM $VM)
        }
        foreach ($controller in @($controllers | Sort-Object -Property ControllerNumber)) {
            foreach ($location in 0..63) {
                if (-not $used[('SCSI:{0}:{1}' -f $controller.ControllerNumber, $location)]) {
                    return (New-Slot -ControllerType 'SCSI' -ControllerNumber ([int]$controller.ControllerNumber) -ControllerLocation $location)
                }
            }
        }
    }
    throw (New-ErrorRecord -Message "Virtual machine '$($VM.Name)' has no free $ControllerType controller slot." -Category LimitsExceeded -ErrorId 'PsDriver.NoFreeControllerSlot' -Target $VM.Name)
}

function Dismount-AttachedDrive {
    param(
        [Parameter(Mandatory)]
        [object]$Record
    )
    if ($Record.Kind -eq 'DvdDrive') {
        Remove-VMDvdDrive -VMDvdDrive $Record.Drive -Confirm:$false
    }
    else {
        Remove-VMHardDiskDrive -VMHardDiskDrive $Record.Drive -Confirm:$false
    }
}

function Mount-ConfigDrive {
    <#
    .SYNOPSIS
        Attaches a config drive (.iso as DVD, else hard disk) in PreferredSlot if usable, else a default slot.
    #>
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
            $PreferredSlot = New-Slot -ControllerType 'IDE' -ControllerNumber 1 -ControllerLocation 0
        }
    }
    $slot = $null
    if ($null -ne $PreferredSlot) {
        $occupant = Find-AttachedDrive -Drives @(Get-AttachedDrive -VM $VM) -Slot $PreferredSlot
        if ($null -eq $occupant) {
            $slot = $PreferredSlot
        }
        elseif ($isIso -and $occupant.Kind -eq 'DvdDrive' -and [string]::IsNullOrEmpty($occupant.Path)) {
            Set-VMDvdDrive -VMDvdDrive $occupant.Drive -Path $Path -Confirm:$false
            return
        }
    }
    if ($null -eq $slot) {
        $slot = Get-FreeSlot -VM $VM -ControllerType $slotType
    }
    if ($isIso) {
        $null = Add-VMDvdDrive -VM $VM -ControllerNumber $slot.ControllerNumber `
            -ControllerLocation $slot.ControllerLocation -Path $Path -Confirm:$false
    }
    else {
        $null = Add-VMHardDiskDrive -VM $VM -ControllerType $slot.ControllerType -ControllerNumber $slot.ControllerNumber `
            -ControllerLocation $slot.ControllerLocation -Path $Path -Confirm:$false
    }
}

function Stop-TargetVM {
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $state = (Get-VM -Id $VM.Id).State.ToString()
    if ($state -eq 'Off') {
        return
    }
    if ($state -eq 'Saved') {
        Remove-VMSavedState -VM $VM -Confirm:$false
        return
    }
    Stop-VM -VM $VM -TurnOff -Force -Confirm:$false
}

function Start-TargetVM {
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $state = (Get-VM -Id $VM.Id).State.ToString()
    if ($state -eq 'Paused') {
        Resume-VM -VM $VM -Confirm:$false
    }
    elseif ($state -in @('Off', 'Saved')) {
        Start-VM -VM $VM -Confirm:$false
    }
}

function Get-LayoutRecord {
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    foreach ($drive in @(Get-AttachedDrive -VM $VM)) {
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

$vm = Get-TargetVM -Name $Name
$generation = [int]$vm.Generation
$bootType = 'SCSI'
if ($generation -eq 1) {
    $bootType = 'IDE'
}

$makeRescueDisk = -not (Test-Path -LiteralPath $RescueDiskPath -PathType Leaf)
if ($makeRescueDisk -and [string]::IsNullOrEmpty($RescueImagePath)) {
    throw (New-ErrorRecord -Message "Rescue disk '$RescueDiskPath' does not exist." -Category ObjectNotFound -ErrorId 'PsDriver.RescueDiskNotFound' -Target $RescueDiskPath)
}
if ($makeRescueDisk -and -not (Test-Path -LiteralPath $RescueImagePath -PathType Leaf)) {
    throw (New-ErrorRecord -Message "Rescue image '$RescueImagePath' does not exist." -Category ObjectNotFound -ErrorId 'PsDriver.RescueImageNotFound' -Target $RescueImagePath)
}
$configDriveBytes = $null
if (-not [string]::IsNullOrEmpty($ConfigDriveBase64)) {
    if ([string]::IsNullOrEmpty($ConfigDrivePath)) {
        throw (New-ErrorRecord -Message 'ConfigDriveBase64 needs ConfigDrivePath, where the rescue config drive is written.' -Category InvalidArgument -ErrorId 'PsDriver.InvalidConfigDrive' -Target 'ConfigDrivePath')
    }
    try {
        $configDriveBytes = [System.Convert]::FromBase64String($ConfigDriveBase64)
    }
    catch {
        throw (New-ErrorRecord -Message 'ConfigDriveBase64 is not valid base64.' -Category InvalidArgument -ErrorId 'PsDriver.InvalidConfigDrive' -Target 'ConfigDriveBase64')
    }
}
if ($generation -ne 1 -and [System.IO.Path]::GetExtension($RescueDiskPath) -ne '.vhdx') {
    throw (New-ErrorRecord -Message "Virtual machine '$Name' is generation $generation and boots only from a VHDX disk; '$RescueDiskPath' is not one." -Category InvalidArgument -ErrorId 'PsDriver.RescueImageUnacceptable' -Target $RescueDiskPath)
}
if ($null -eq $configDriveBytes -and -not [string]::IsNullOrEmpty($ConfigDrivePath) -and -not (Test-Path -LiteralPath $ConfigDrivePath -PathType Leaf)) {
    throw (New-ErrorRecord -Message "Config drive '$ConfigDrivePath' does not exist." -Category ObjectNotFound -ErrorId 'PsDriver.ConfigDriveNotFound' -Target $ConfigDrivePath)
}

$drives = @(Get-AttachedDrive -VM $vm)
$rescueDrive = Find-AttachedDrive -Drives $drives -Path $RescueDiskPath
$rootPath = $RootDiskPath
if ($null -eq $rescueDrive) {
    if ([string]::IsNullOrEmpty($RootDiskPath)) {
        $root = Find-AttachedDrive -Drives $drives -Slot (New-Slot -ControllerType $bootType -ControllerNumber 0 -ControllerLocation 0)
    }
    else {
        $root = Find-AttachedDrive -Drives $drives -Path $RootDiskPath
    }
    if ($null -eq $root -or $root.Kind -ne 'HardDisk' -or $null -ne $root.DiskNumber -or [string]::IsNullOrEmpty($root.Path)) {
        throw (New-ErrorRecord -Message "Virtual machine '$Name' has no virtual root disk to rescue; rescuing an instance booted from a volume is not supported." -Category InvalidOperation -ErrorId 'PsDriver.InstanceNotRescuable' -Target $Name)
    }
    $rootPath = $root.Path
}

$configDriveAttached = $null
if ($PSCmdlet.ShouldProcess("virtual machine '$Name'", 'Boot from rescue disk')) {
    if ($null -eq $rescueDrive) {
        if ($makeRescueDisk) {
            $null = New-VHD -Path $RescueDiskPath -ParentPath $RescueImagePath -Differencing -Confirm:$false
        }
        if ($null -ne $configDriveBytes) {
            [System.IO.File]::WriteAllBytes($ConfigDrivePath, $configDriveBytes)
        }
        Stop-TargetVM -VM $vm
        $rootSlot = New-Slot -ControllerType $root.ControllerType -ControllerNumber $root.ControllerNumber `
            -ControllerLocation $root.ControllerLocation
        Dismount-AttachedDrive -Record $root
        $rescueDisk = Add-VMHardDiskDrive -VM $vm -ControllerType $rootSlot.ControllerType -ControllerNumber $rootSlot.ControllerNumber `
            -ControllerLocation $rootSlot.ControllerLocation -Path $RescueDiskPath -Passthru -Confirm:$false
        $newRootSlot = Get-FreeSlot -VM $vm -ControllerType 'SCSI'
        $null = Add-VMHardDiskDrive -VM $vm -ControllerType 'SCSI' -ControllerNumber $newRootSlot.ControllerNumber `
            -ControllerLocation $newRootSlot.ControllerLocation -Path $rootPath -Confirm:$false

        if (-not [string]::IsNullOrEmpty($ConfigDrivePath)) {
            $preferred = $null
            $original = $null
            if (-not [string]::IsNullOrEmpty($OriginalConfigDrivePath)) {
                $original = Find-AttachedDrive -Drives @(Get-AttachedDrive -VM $vm) -Path $OriginalConfigDrivePath
            }
            if ($null -ne $original) {
                $preferred = New-Slot -ControllerType $original.ControllerType -ControllerNumber $original.ControllerNumber `
                    -ControllerLocation $original.ControllerLocation
                Dismount-AttachedDrive -Record $original
            }
            if ($null -eq (Find-AttachedDrive -Drives @(Get-AttachedDrive -VM $vm) -Path $ConfigDrivePath)) {
                Mount-ConfigDrive -VM $vm -Path $ConfigDrivePath -PreferredSlot $preferred
            }
        }
        if ($generation -ne 1) {
            Set-VMFirmware -VM $vm -FirstBootDevice $rescueDisk -Confirm:$false
        }
    }
    Start-TargetVM -VM $vm
}

$finalDrives = @(Get-AttachedDrive -VM $vm)
$rescued = $null -ne (Find-AttachedDrive -Drives $finalDrives -Path $RescueDiskPath)
if (-not [string]::IsNullOrEmpty($ConfigDrivePath) -and $null -ne (Find-AttachedDrive -Drives $finalDrives -Path $ConfigDrivePath)) {
    $configDriveAttached = $ConfigDrivePath
}
if ([string]::IsNullOrEmpty($rootPath)) {
    $rootPath = $null
}
$rescuePathOut = $null
$bootPath = $rootPath
if ($rescued) {
    $rescuePathOut = $RescueDiskPath
    $bootPath = $RescueDiskPath
}

[ordered]@{
    name              = [string]$vm.Name
    state             = (Get-VM -Id $vm.Id).State.ToString()
    generation        = $generation
    rescued           = $rescued
    boot_disk_path    = $bootPath
    root_disk_path    = $rootPath
    rescue_disk_path  = $rescuePathOut
    config_drive_path = $configDriveAttached
    devices           = @(Get-LayoutRecord -VM $vm)
}
