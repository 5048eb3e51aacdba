<#
.SYNOPSIS
    Connects Cinder volumes (iSCSI, Fibre Channel, SMB) to this host and
    attaches them to a virtual machine, in one call (or only connects them,
    for a VM New-Instance creates next).

.DESCRIPTION
    For each volume record of Volumes, in order:

      iscsi          registers the target portals and logs in to the target
                     (persistent sessions; CHAP when auth_username is given,
                     the secret from Secrets). Without -Multipath only the
                     first path that logs in is used (and only the first
                     initiator of InitiatorNames that works); with it every
                     path. A session that exists already is reused.
      fibre_channel  rescans (Update-HostStorageCache): nothing to log in to.
      smbfs          maps the share globally (New-SmbGlobalMapping with a
                     PSCredential built from username and the Secrets
                     password, never from script text) unless a mapping
                     exists; the disk is <share>\<file_name> (VHD or VHDX).
                     A share of this host is not mapped: its file is
                     taken by the share's local folder (Hyper-V cannot
                     open a VM disk through a loopback SMB path).

    iSCSI and Fibre Channel volumes: the disk is looked up by target and LUN
    (never by a remembered disk number), rescanning up to RetryCount times
    RetryIntervalSeconds apart (mounted_disk_query_retry_*). A LUN that
    shows as several disks (MPIO not claiming them) is refused
    (PsDriver.DuplicateDisk). Hyper-V needs a pass-through disk offline: a
    disk the SAN policy left online is taken offline (taken_offline true).

    Without Name the volumes are only connected (boot from volume: the
    result's disk_number and path go into New-Instance's spec.volumes) and
    the controller fields are null. With Name the disk is attached to the
    VM: the boot volume (boot true) at the boot
    slot (IDE 0:0 on generation 1, SCSI 0:0 on generation 2, where it also
    becomes the first boot device; the VM must be off), every other volume
    at the first free SCSI location. A volume already attached to this VM
    is left where it is. SMB volumes with max_iops get
    Set-VMHardDiskDrive -MaximumIOPS (8 KB normalised IOPS).

    On any failure everything this call did is undone, newest first
    (drives detached, sessions logged out, portals and mappings removed)
    and the error is raised: a volume record missing a field,
    InvalidArgument / PsDriver.InvalidVolume; no login, InvalidOperation /
    PsDriver.IscsiLoginFailed; no disk after the rescans, ObjectNotFound /
    PsDriver.VolumeDiskNotFound; missing SMB file, ObjectNotFound /
    PsDriver.VolumeFileNotFound; missing VM, ObjectNotFound /
    PsDriver.VMNotFound. Every error message names the volume.

.PARAMETER Name
    The exact name of the virtual machine; empty to connect only.

.PARAMETER Volumes
    Volume records (see PsDriver\Storage.ps1): volume_id, type (iscsi,
    fibre_channel, smbfs), boot (optional), and per type paths
    [{portal, iqn, lun}] and auth_username; target_wwns and lun; share,
    file_name, username and max_iops.

.PARAMETER Secrets
    Secret: volume_id -> {chap_secret, smb_password}. Never logged.

.PARAMETER Multipath
    Log in through every iSCSI path (use_multipath_io).

.PARAMETER InitiatorNames
    iSCSI initiator instance names to use (iscsi_initiator_list).

.PARAMETER RetryCount
    Rescans before a missing disk is an error (default 10).

.PARAMETER RetryIntervalSeconds
    Seconds between two rescans (default 5).

.EXAMPLE
    .\Connect-InstanceVolume.ps1 -Name instance-00000001 -Volumes @(@{
        volume_id = '8d0e5f0c-1b6e-4a53-9d51-0b7b8a1d2c3e'; type = 'iscsi'
        paths = @(@{ portal = '10.0.0.5:3260'; iqn = 'iqn.2010-10.org.openstack:volume-8d0e5f0c'; lun = 1 }) })

.OUTPUTS
    One object: name (the VM; null when only connected) and volumes, one per volume record:
    volume_id, type, disk_number (pass-through disk; null for SMB), path
    (the SMB disk file; null otherwise), serial (disk serial number; null
    for SMB), size_bytes, controller_type, controller_number,
    controller_location (null when only connected), taken_offline (the disk was online and was taken
    offline), sessions (iSCSI paths logged in), mapped (an SMB global
    mapping was made).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [AllowEmptyString()]
    [string]$Name = '',

    [Parameter(Mandatory)]
    [ValidateNotNull()]
    [object[]]$Volumes,

    [System.Collections.IDictionary]$Secrets = @{},

    [switch]$Multipath,

    [string[]]$InitiatorNames = @(),

    [ValidateRange(0, 1000)]
    [int]$RetryCount = 10,

    [ValidateRange(0, 3600)]
    [int]$RetryIntervalSeconds = 5
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$vm = $null
if (-not [string]::IsNullOrEmpty($Name)) {
    $vm = Get-PsDriverVM -Name $Name
}
$undo = [System.Collections.Generic.List[object]]::new()
$results = [System.Collections.Generic.List[object]]::new()

function Get-VolumeSecret {
    param([string]$VolumeId, [string]$Key)
    if ($null -ne $Secrets -and $Secrets.Contains($VolumeId)) {
        $entry = $Secrets[$VolumeId]
        if ($null -ne $entry -and $entry.Contains($Key)) {
            return [string]$entry[$Key]
        }
    }
    ''
}

if ($PSCmdlet.ShouldProcess("virtual machine '$Name'", "Connect (and attach) $(@($Volumes).Count) volume(s)")) {
    try {
        foreach ($volume in $Volumes) {
            if ($volume -isnot [System.Collections.IDictionary]) {
                throw (New-PsDriverErrorRecord -Message 'A volume record is not an object.' -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target 'Volumes')
            }
            $id = [string](Get-PsDriverVolumeField -Volume $volume -Name 'volume_id')
            $type = [string](Get-PsDriverVolumeField -Volume $volume -Name 'type')
            $boot = [bool](Get-PsDriverVolumeField -Volume $volume -Name 'boot' -Optional)
            $record = [ordered]@{
                volume_id           = $id
                type                = $type
                disk_number         = $null
                path                = $null
                serial              = $null
                size_bytes          = 0
                controller_type     = $null
                controller_number   = $null
                controller_location = $null
                taken_offline       = $false
                sessions            = 0
                mapped              = $false
            }
            $diskNumber = $null
            $path = $null
            switch ($type) {
                'iscsi' {
                    $record.sessions = Connect-PsDriverIscsiVolume -Volume $volume -ChapSecret (Get-VolumeSecret -VolumeId $id -Key 'chap_secret') `
                        -InitiatorNames $InitiatorNames -Multipath:$Multipath -Undo $undo
                }
                'fibre_channel' {
                }
                'smbfs' {
                    $file = Resolve-PsDriverSmbVolumeFile -Volume $volume
                    if (-not $file.Local) {
                        $record.mapped = Connect-PsDriverSmbShare -Share $file.Share -Username ([string](Get-PsDriverVolumeField -Volume $volume -Name 'username' -Optional)) `
                            -Password (Get-VolumeSecret -VolumeId $id -Key 'smb_password') -Undo $undo
                    }
                    $path = $file.Path
                    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
                        throw (New-PsDriverErrorRecord -Message "Volume ${id}: its disk file $path does not exist." -Category ObjectNotFound -ErrorId 'PsDriver.VolumeFileNotFound' -Target $id)
                    }
                    $record.path = $path
                    $record.size_bytes = [long](Hyper-V\Get-VHD -Path $path).Size
                }
                default {
                    throw (New-PsDriverErrorRecord -Message "Volume ${id}: driver_volume_type '$type' is not supported (iscsi, fibre_channel, smbfs)." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
                }
            }
            if ($type -ne 'smbfs') {
                $disk = Wait-PsDriverVolumeDisk -Volume $volume -RetryCount $RetryCount -RetryIntervalSeconds $RetryIntervalSeconds
                $diskNumber = [int]$disk.Number
                if (-not $disk.IsOffline -and -not (Test-PsDriverDiskInUse -Number $diskNumber)) {
                    Storage\Set-Disk -Number $diskNumber -IsOffline $true
                    $record.taken_offline = $true
                }
                $record.disk_number = $diskNumber
                $record.serial = [string]$disk.SerialNumber
                $record.size_bytes = [long]$disk.Size
            }
            if ($null -eq $vm) {
                $results.Add($record)
                continue
            }
            $drive = Get-PsDriverVolumeDrive -VM $vm -DiskNumber $diskNumber -Path $path
            if ($null -eq $drive) {
                if ($boot) {
                    $slot = Get-PsDriverBootSlot -VM $vm
                    if ($slot.ControllerType -eq 'SCSI' -and @(Hyper-V\Get-VMScsiController -VM $vm).Count -eq 0) {
                        Hyper-V\Add-VMScsiController -VM $vm -Confirm:$false
                    }
                }
                else {
                    $slot = Get-PsDriverFreeDriveSlot -VM $vm -ControllerType 'SCSI'
                }
                $addArgs = @{
                    VM                 = $vm
                    ControllerType     = $slot.ControllerType
                    ControllerNumber   = $slot.ControllerNumber
                    ControllerLocation = $slot.ControllerLocation
                    Passthru           = $true
                    Confirm            = $false
                }
                if ($null -ne $diskNumber) {
                    $addArgs['DiskNumber'] = $diskNumber
                }
                else {
                    $addArgs['Path'] = $path
                }
                $added = Hyper-V\Add-VMHardDiskDrive @addArgs
                $drive = Get-PsDriverVolumeDrive -VM $vm -DiskNumber $diskNumber -Path $path
                $undo.Add(@{ Kind = 'Drive'; Record = $drive })
                $maxIops = Get-PsDriverVolumeField -Volume $volume -Name 'max_iops' -Optional
                if ($type -eq 'smbfs' -and $null -ne $maxIops -and [long]$maxIops -gt 0) {
                    Hyper-V\Set-VMHardDiskDrive -VMHardDiskDrive $added -MaximumIOPS ([uint64]$maxIops) -Confirm:$false
                }
                if ($boot -and [int]$vm.Generation -eq 2) {
                    Hyper-V\Set-VMFirmware -VM $vm -FirstBootDevice $added -Confirm:$false
                }
            }
            $record.controller_type = $drive.ControllerType
            $record.controller_number = $drive.ControllerNumber
            $record.controller_location = $drive.ControllerLocation
            $results.Add($record)
        }
    }
    catch {
        $failure = $_
        Undo-PsDriverVolumeChange -Undo $undo
        throw $failure
    }
}

$vmName = $null
if ($null -ne $vm) {
    $vmName = [string]$vm.Name
}
[ordered]@{
    name    = $vmName
    volumes = @($results)
}
