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
        return (Find-AttachedDrive -Drives $Drives -Path $RootDiskPath)
    }
    $candidates = @($Drives | Where-Object {
            $_.Kind -eq 'HardDisk' -and -not [string]::IsNullOrEmpty($_.Path) -and
            -not (Test-SamePath -Left $_.Path -Right $RescueDiskPath) -and
            [System.IO.Path]::GetFileName($_.Path) -match '^root\.vhdx?$'
        })
    if ($candidates.Count -gt 1) {
        throw (New-ErrorRecord -Message "Virtual machine '$Name' has $($candidates.Count) disks named root.vhd or root.vhdx; pass RootDiskPath." -Category InvalidArgument -ErrorId 'PsDriver.RootDiskAmbiguous' -Target $Name)
    }
    if ($candidates.Count -eq 1) {
        return $candidates[0]
    }
    $null
}

$vm = Get-TargetVM -Name $Name
$generation = [int]$vm.Generation
$bootType = 'SCSI'
if ($generation -eq 1) {
    $bootType = 'IDE'
}
$bootSlot = New-Slot -ControllerType $bootType -ControllerNumber 0 -ControllerLocation 0

$root = Find-RootDrive -Drives @(Get-AttachedDrive -VM $vm)
if ($null -eq $root) {
    if ([string]::IsNullOrEmpty($RootDiskPath) -or -not (Test-Path -LiteralPath $RootDiskPath -PathType Leaf)) {
        throw (New-ErrorRecord -Message "The root disk of virtual machine '$Name' was not found; the instance cannot be unrescued." -Category ObjectNotFound -ErrorId 'PsDriver.RootDiskNotFound' -Target $Name)
    }
    $rootPath = $RootDiskPath
}
else {
    $rootPath = $root.Path
}

if ($PSCmdlet.ShouldProcess("virtual machine '$Name'", 'Boot from root disk')) {
    Stop-TargetVM -VM $vm

    $rescue = Find-AttachedDrive -Drives @(Get-AttachedDrive -VM $vm) -Path $RescueDiskPath
    if ($null -ne $rescue) {
        Dismount-AttachedDrive -Record $rescue
    }

    $rootAtBoot = $null -ne $root -and $root.ControllerType -eq $bootSlot.ControllerType -and $root.ControllerNumber -eq 0 -and $root.ControllerLocation -eq 0
    if ($rootAtBoot) {
        $rootDisk = $root.Drive
    }
    else {
        $occupant = Find-AttachedDrive -Drives @(Get-AttachedDrive -VM $vm) -Slot $bootSlot
        if ($null -ne $occupant) {
            throw (New-ErrorRecord -Message "The boot slot $bootType 0:0 of virtual machine '$Name' holds '$($occupant.Path)', not the root disk." -Category InvalidOperation -ErrorId 'PsDriver.BootSlotOccupied' -Target $Name)
        }
        if ($null -ne $root) {
            Dismount-AttachedDrive -Record $root
        }
        $rootDisk = Add-VMHardDiskDrive -VM $vm -ControllerType $bootType -ControllerNumber 0 -ControllerLocation 0 `
            -Path $rootPath -Passthru -Confirm:$false
    }

    $preferred = $null
    if (-not [string]::IsNullOrEmpty($RescueConfigDrivePath)) {
        $rescueConfig = Find-AttachedDrive -Drives @(Get-AttachedDrive -VM $vm) -Path $RescueConfigDrivePath
        if ($null -ne $rescueConfig) {
            $preferred = New-Slot -ControllerType $rescueConfig.ControllerType -ControllerNumber $rescueConfig.ControllerNumber `
                -ControllerLocation $rescueConfig.ControllerLocation
            Dismount-AttachedDrive -Record $rescueConfig
        }
    }
    if (-not [string]::IsNullOrEmpty($ConfigDrivePath)) {
        $attached = Find-AttachedDrive -Drives @(Get-AttachedDrive -VM $vm) -Path $ConfigDrivePath
        if ($null -eq $attached -and (Test-Path -LiteralPath $ConfigDrivePath -PathType Leaf)) {
            Mount-ConfigDrive -VM $vm -Path $ConfigDrivePath -PreferredSlot $preferred
        }
    }

    if ($generation -ne 1) {
        Set-VMFirmware -VM $vm -FirstBootDevice $rootDisk -Confirm:$false
    }

    foreach ($leftover in @($RescueDiskPath, $RescueConfigDrivePath)) {
        if (-not [string]::IsNullOrEmpty($leftover) -and (Test-Path -LiteralPath $leftover -PathType Leaf)) {
            Remove-Item -LiteralPath $leftover -Force -Confirm:$false
        }
    }
    Start-TargetVM -VM $vm
}

$finalDrives = @(Get-AttachedDrive -VM $vm)
$rescued = $null -ne (Find-AttachedDrive -Drives $finalDrives -Path $RescueDiskPath)
$rescuePathOut = $null
$bootPath = $rootPath
if ($rescued) {
    $rescuePathOut = $RescueDiskPath
    $bootPath = $RescueDiskPath
}
$configDriveAttached = $null
if (-not [string]::IsNullOrEmpty($ConfigDrivePath) -and $null -ne (Find-AttachedDrive -Drives $finalDrives -Path $ConfigDrivePath)) {
    $configDriveAttached = $ConfigDrivePath
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
