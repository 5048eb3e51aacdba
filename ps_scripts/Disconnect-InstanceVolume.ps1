<#
.SYNOPSIS
    Detaches Cinder volumes from a virtual machine and disconnects them
    from this host when nothing else uses them; safe to repeat.

.DESCRIPTION
    For each volume record of Volumes (the shape Connect-InstanceVolume
    takes; no secrets needed):

      1. its disk is found again by what survives a host reboot: target and
         LUN for iSCSI and Fibre Channel (the disk number may have changed),
         the file for SMB;
      2. the VM's hard disk drive holding it is removed (when the VM exists
         and has it);
      3. iSCSI: each target of the volume is logged out of (every session)
         unless a virtual machine still uses another LUN of it;
         SMB: the share's global mapping is removed unless a virtual
         machine still has a disk file on the share. Fibre Channel has
         nothing to log out of.

    A missing VM, drive, session or mapping is not an error: what is
    already gone is skipped, so destroy and detach can run again.

.PARAMETER Name
    The exact name of the virtual machine; it may no longer exist.

.PARAMETER Volumes
    Volume records (see Connect-InstanceVolume).

.EXAMPLE
    .\Disconnect-InstanceVolume.ps1 -Name instance-00000001 -Volumes @(@{
        volume_id = '8d0e5f0c-1b6e-4a53-9d51-0b7b8a1d2c3e'; type = 'iscsi'
        paths = @(@{ portal = '10.0.0.5:3260'; iqn = 'iqn.2010-10.org.openstack:volume-8d0e5f0c'; lun = 1 }) })

.OUTPUTS
    One object: name, vm_found (the VM exists), volumes, one per record:
    volume_id, detached (a drive was removed from the VM), logged_out (the
    target IQNs logged out of), unmapped (the share whose global mapping
    was removed, or null).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateNotNull()]
    [object[]]$Volumes
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Find-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$vm = @(Find-PsDriverVM -Name $Name) | Select-Object -First 1
$results = [System.Collections.Generic.List[object]]::new()

if ($PSCmdlet.ShouldProcess("virtual machine '$Name'", "Detach and disconnect $(@($Volumes).Count) volume(s)")) {
    foreach ($volume in $Volumes) {
        if ($volume -isnot [System.Collections.IDictionary]) {
            throw (New-PsDriverErrorRecord -Message 'A volume record is not an object.' -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $Name)
        }
        $id = [string](Get-PsDriverVolumeField -Volume $volume -Name 'volume_id')
        $type = [string](Get-PsDriverVolumeField -Volume $volume -Name 'type')
        $record = [ordered]@{
            volume_id  = $id
            detached   = $false
            logged_out = @()
            unmapped   = $null
        }
        $diskNumber = $null
        $path = $null
        $share = $null
        switch ($type) {
            'smbfs' {
                $file = Resolve-PsDriverSmbVolumeFile -Volume $volume
                $share = $file.Share
                $path = $file.Path
            }
            { $_ -in @('iscsi', 'fibre_channel') } {
                $disk = Find-PsDriverVolumeDisk -Volume $volume
                if ($null -ne $disk) {
                    $diskNumber = [int]$disk.Number
                }
            }
            default {
                throw (New-PsDriverErrorRecord -Message "Volume ${id}: driver_volume_type '$type' is not supported (iscsi, fibre_channel, smbfs)." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
            }
        }
        if ($null -ne $vm -and ($null -ne $diskNumber -or $null -ne $path)) {
            $drive = Get-PsDriverVolumeDrive -VM $vm -DiskNumber $diskNumber -Path $path
            if ($null -ne $drive) {
                Dismount-PsDriverAttachedDrive -Record $drive
                $record.detached = $true
            }
        }
        if ($type -eq 'iscsi') {
            $loggedOut = [System.Collections.Generic.List[string]]::new()
            foreach ($iqn in @(@(Get-PsDriverVolumeField -Volume $volume -Name 'paths') | ForEach-Object { [string]$_['iqn'] } | Select-Object -Unique)) {
                if (Disconnect-PsDriverIscsiTarget -TargetIqn $iqn) {
                    $loggedOut.Add($iqn)
                }
            }
            $record.logged_out = @($loggedOut)
        }
        elseif ($type -eq 'smbfs') {
            $mapping = @()
            # SMB global mappings exist from Windows Server 2019 (1709) on; without them no
            # volume was mapped, so there is nothing to remove.
            if (Get-Command -Name 'Get-SmbGlobalMapping' -Module 'SmbShare' -ErrorAction SilentlyContinue) {
                $mapping = @(SmbShare\Get-SmbGlobalMapping -RemotePath $share -ErrorAction SilentlyContinue)
            }
            if ($mapping.Count -gt 0 -and -not (Test-PsDriverShareInUse -Share $share)) {
                SmbShare\Remove-SmbGlobalMapping -RemotePath $share -Force -Confirm:$false
                $record.unmapped = $share
            }
        }
        $results.Add($record)
    }
}

[ordered]@{
    name     = $Name
    vm_found = $null -ne $vm
    volumes  = @($results)
}
