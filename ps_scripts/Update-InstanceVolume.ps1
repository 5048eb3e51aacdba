<#
.SYNOPSIS
    Makes this host see the new size of an extended Cinder volume and
    reports it (extend_volume).

.DESCRIPTION
    iSCSI and Fibre Channel: rescans (Update-HostStorageCache) and finds the
    volume's disk again by target and LUN; its Size is the size the host
    now sees, which Hyper-V passes on to the guest of a pass-through disk.
    SMB: the disk file was grown by the storage back end; its virtual size
    is read with Get-VHD.

    A disk that is not found: ObjectNotFound / PsDriver.VolumeDiskNotFound;
    a missing file: ObjectNotFound / PsDriver.VolumeFileNotFound; a bad
    record: InvalidArgument / PsDriver.InvalidVolume.

.PARAMETER Volume
    One volume record (see Connect-InstanceVolume).

.PARAMETER RetryCount
    Rescans before a missing disk is an error (default 2).

.PARAMETER RetryIntervalSeconds
    Seconds between two rescans (default 1).

.EXAMPLE
    .\Update-InstanceVolume.ps1 -Volume @{ volume_id = '8d0e5f0c-1b6e-4a53-9d51-0b7b8a1d2c3e'; type = 'fibre_channel'; target_wwns = @('500a098280feeba5'); lun = 1 }

.OUTPUTS
    One object: volume_id, size_bytes (what the host sees now), disk_number
    (null for SMB), path (the SMB file; null otherwise).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [System.Collections.IDictionary]$Volume,

    [ValidateRange(0, 1000)]
    [int]$RetryCount = 2,

    [ValidateRange(0, 3600)]
    [int]$RetryIntervalSeconds = 1
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Wait-PsDriverVolumeDisk' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$id = [string](Get-PsDriverVolumeField -Volume $Volume -Name 'volume_id')
$type = [string](Get-PsDriverVolumeField -Volume $Volume -Name 'type')
$diskNumber = $null
$path = $null
switch ($type) {
    'smbfs' {
        $path = (Resolve-PsDriverSmbVolumeFile -Volume $Volume).Path
        if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
            throw (New-PsDriverErrorRecord -Message "Volume ${id}: its disk file $path does not exist." -Category ObjectNotFound -ErrorId 'PsDriver.VolumeFileNotFound' -Target $id)
        }
        $size = [long](Hyper-V\Get-VHD -Path $path).Size
    }
    { $_ -in @('iscsi', 'fibre_channel') } {
        Storage\Update-HostStorageCache
        $disk = Wait-PsDriverVolumeDisk -Volume $Volume -RetryCount $RetryCount -RetryIntervalSeconds $RetryIntervalSeconds
        $diskNumber = [int]$disk.Number
        $size = [long]$disk.Size
    }
    default {
        throw (New-PsDriverErrorRecord -Message "Volume ${id}: driver_volume_type '$type' is not supported (iscsi, fibre_channel, smbfs)." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
    }
}

[ordered]@{
    volume_id   = $id
    size_bytes  = $size
    disk_number = $diskNumber
    path        = $path
}
