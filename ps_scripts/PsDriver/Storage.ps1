# PsDriver helpers: Cinder volumes (iSCSI, Fibre Channel, SMB), their host disks and sessions.
# Dot-sourced by PsDriver.psm1; the bridge inlines the functions of this file that a
# wrapped script uses (psdriver/bridge/helpers.py). Functions only: no other statements.

# A volume record is one entry of the Volumes parameter of Connect-InstanceVolume,
# Disconnect-InstanceVolume and Update-InstanceVolume (a dictionary):
#   volume_id      the Cinder volume id
#   type           iscsi, fibre_channel or smbfs
#   iscsi          paths [{portal 'address:port', iqn, lun}], auth_username (CHAP; the
#                  secret travels in the Secrets parameter, never here)
#   fibre_channel  target_wwns [16 hex digits], lun
#   smbfs          share '\\server\share', file_name, username (password in Secrets)
# An undo list records what a call created (iSCSI sessions and portals, SMB global
# mappings, drives), newest last, for Undo-PsDriverVolumeChange.

function Get-PsDriverVolumeField {
    <#
    .SYNOPSIS
        One field of a volume record; a missing or empty mandatory field is InvalidArgument / PsDriver.InvalidVolume.

    .PARAMETER Volume
        The volume record.

    .PARAMETER Name
        The field name.

    .PARAMETER Optional
        Return $null instead of failing when the field is missing or empty.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [System.Collections.IDictionary]$Volume,

        [Parameter(Mandatory)]
        [string]$Name,

        [switch]$Optional
    )
    $value = $null
    if ($Volume.Contains($Name)) {
        $value = $Volume[$Name]
    }
    if ($null -eq $value -or ($value -is [string] -and $value -eq '')) {
        if ($Optional) {
            return $null
        }
        $id = '?'
        if ($Volume.Contains('volume_id')) {
            $id = [string]$Volume['volume_id']
        }
        throw (New-PsDriverErrorRecord -Message "Volume ${id}: field $Name is missing." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
    }
    , $value
}

function Get-PsDriverDiskLun {
    <#
    .SYNOPSIS
        The LUN in a disk's Location ('... : Target 0 : LUN 3'); $null when it shows none.

    .PARAMETER Location
        The Location property of an MSFT_Disk.
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Location
    )
    $match = [regex]::Match([string]$Location, 'LUN (\d+)\s*$')
    if ($match.Success) {
        return [int]$match.Groups[1].Value
    }
    $null
}

function Find-PsDriverIscsiDisk {
    <#
    .SYNOPSIS
        The disks of LUN Lun of iSCSI target TargetIqn (one per path without MPIO).

    .PARAMETER TargetIqn
        The target IQN.

    .PARAMETER Lun
        The LUN number.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$TargetIqn,

        [Parameter(Mandatory)]
        [int]$Lun
    )
    $seen = @{}
    foreach ($session in @(iSCSI\Get-IscsiSession | Where-Object { $_.TargetNodeAddress -eq $TargetIqn })) {
        foreach ($disk in @(Storage\Get-Disk -iSCSISession $session)) {
            if ((Get-PsDriverDiskLun -Location $disk.Location) -eq $Lun -and -not $seen.ContainsKey([int]$disk.Number)) {
                $seen[[int]$disk.Number] = $true
                $disk
            }
        }
    }
}

function ConvertTo-PsDriverWwn {
    <#
    .SYNOPSIS
        A world wide name as 16 lower-case hex digits, from a byte array or a string.

    .PARAMETER Value
        byte[8] (WMI) or a string with or without separators.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [AllowNull()]
        [object]$Value
    )
    if ($null -eq $Value) {
        return ''
    }
    if ($Value -is [byte[]] -or $Value -is [object[]]) {
        return (@($Value) | ForEach-Object { '{0:x2}' -f [int]$_ }) -join ''
    }
    ([string]$Value).Replace(':', '').Replace('-', '').ToLowerInvariant()
}

function Find-PsDriverFcDisk {
    <#
    .SYNOPSIS
        The disks of LUN Lun behind the Fibre Channel target ports TargetWwns.

    .DESCRIPTION
        Asks each HBA port for its FCP target mapping (root\WMI
        MSFC_HBAFCPInfo.GetFcpTargetMapping, the HBA API): an entry names the
        target port WWN, the LUN and the OS device (\\.\PhysicalDriveN), whose
        N is the disk number.

    .PARAMETER TargetWwns
        Target port WWNs (16 hex digits).

    .PARAMETER Lun
        The LUN number.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string[]]$TargetWwns,

        [Parameter(Mandatory)]
        [int]$Lun
    )
    $wanted = @{}
    foreach ($wwn in $TargetWwns) {
        $wanted[(ConvertTo-PsDriverWwn -Value $wwn)] = $true
    }
    $numbers = @{}
    $ports = @(CimCmdlets\Get-CimInstance -Namespace 'root\WMI' -ClassName 'MSFC_FibrePortHBAAttributes' -ErrorAction SilentlyContinue)
    $infos = @(CimCmdlets\Get-CimInstance -Namespace 'root\WMI' -ClassName 'MSFC_HBAFCPInfo' -ErrorAction SilentlyContinue)
    foreach ($port in $ports) {
        $info = $infos | Where-Object { $_.InstanceName -eq $port.InstanceName } | Select-Object -First 1
        if ($null -eq $info) {
            continue
        }
        $mapping = CimCmdlets\Invoke-CimMethod -InputObject $info -MethodName 'GetFcpTargetMapping' -Arguments @{
            HbaPortWWN   = [byte[]]$port.Attributes.PortWWN
            InEntryCount = [uint32]1024
        } -Confirm:$false
        foreach ($entry in @($mapping.Entry)) {
            if ($null -eq $entry) {
                continue
            }
            $target = ConvertTo-PsDriverWwn -Value $entry.FCPId.PortWWN
            $device = [regex]::Match([string]$entry.ScsiId.OSDeviceName, 'PhysicalDrive(\d+)', 'IgnoreCase')
            if ($wanted.ContainsKey($target) -and [int]$entry.ScsiId.ScsiOSLun -eq $Lun -and $device.Success) {
                $numbers[[int]$device.Groups[1].Value] = $true
            }
        }
    }
    foreach ($number in @($numbers.Keys | Sort-Object)) {
        Storage\Get-Disk -Number $number -ErrorAction SilentlyContinue
    }
}

function Find-PsDriverVolumeDisk {
    <#
    .SYNOPSIS
        The host disk of an iSCSI or Fibre Channel volume record; $null while it has not shown up.

    .DESCRIPTION
        Looks the disk up by what does not change across reboots (target and
        LUN), never by a remembered disk number. A LUN seen as two or more
        disks (several paths and MPIO not claiming them) is an error
        InvalidOperation / PsDriver.DuplicateDisk: using one of them would
        corrupt the volume's data.

    .PARAMETER Volume
        The volume record.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [System.Collections.IDictionary]$Volume
    )
    $id = [string]$Volume['volume_id']
    if ($Volume['type'] -eq 'iscsi') {
        $disks = @()
        foreach ($path in @(Get-PsDriverVolumeField -Volume $Volume -Name 'paths')) {
            $disks += @(Find-PsDriverIscsiDisk -TargetIqn ([string]$path['iqn']) -Lun ([int]$path['lun']))
        }
    }
    else {
        $disks = @(Find-PsDriverFcDisk -TargetWwns @(Get-PsDriverVolumeField -Volume $Volume -Name 'target_wwns') -Lun ([int](Get-PsDriverVolumeField -Volume $Volume -Name 'lun')))
    }
    $unique = @($disks | Sort-Object -Property Number -Unique)
    if ($unique.Count -gt 1) {
        $numbers = ($unique | ForEach-Object { $_.Number }) -join ', '
        throw (New-PsDriverErrorRecord -Message "Volume ${id}: the LUN shows up as disks $numbers, one per path: Multipath I/O is not claiming these disks. Using them would corrupt the volume; install MPIO and claim the bus type (Enable-MSDSMAutomaticClaim) or turn use_multipath_io off." -Category InvalidOperation -ErrorId 'PsDriver.DuplicateDisk' -Target $id)
    }
    if ($unique.Count -eq 1) {
        return $unique[0]
    }
    $null
}

function Wait-PsDriverVolumeDisk {
    <#
    .SYNOPSIS
        Rescans (Update-HostStorageCache) until the volume's disk shows up; fails after RetryCount rescans.

    .PARAMETER Volume
        The volume record.

    .PARAMETER RetryCount
        Rescans after the first look.

    .PARAMETER RetryIntervalSeconds
        Seconds between two rescans.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [System.Collections.IDictionary]$Volume,

        [int]$RetryCount = 10,

        [int]$RetryIntervalSeconds = 5
    )
    $id = [string]$Volume['volume_id']
    $attempt = 0
    while ($true) {
        if ($Volume['type'] -eq 'fibre_channel' -or $attempt -gt 0) {
            Storage\Update-HostStorageCache
        }
        $disk = Find-PsDriverVolumeDisk -Volume $Volume
        if ($null -ne $disk) {
            return $disk
        }
        if ($attempt -ge $RetryCount) {
            break
        }
        $attempt++
        if ($RetryIntervalSeconds -gt 0) {
            Start-Sleep -Seconds $RetryIntervalSeconds
        }
    }
    throw (New-PsDriverErrorRecord -Message "Volume ${id}: its disk did not show up on this host after $($RetryCount + 1) looks (mounted_disk_query_retry_count)." -Category ObjectNotFound -ErrorId 'PsDriver.VolumeDiskNotFound' -Target $id)
}

function Connect-PsDriverIscsiVolume {
    <#
    .SYNOPSIS
        Registers the portals and logs in to the targets of an iSCSI volume record (persistent sessions).

    .DESCRIPTION
        A target already logged in through a path is reused. Without
        Multipath the first path (and initiator) that logs in is the only one;
        with it, every path of every initiator is logged in. Each portal and
        session this call creates goes to the Undo list. No path logging in:
        the last error, as InvalidOperation / PsDriver.IscsiLoginFailed
        (ConnectionError, AuthenticationError and other categories of the
        iSCSI cmdlets are kept in the message).

    .PARAMETER Volume
        The volume record (paths, auth_username).

    .PARAMETER ChapSecret
        The CHAP secret; empty for no CHAP.

    .PARAMETER InitiatorNames
        Initiator instance names (iscsi_initiator_list); empty: the default initiator.

    .PARAMETER Multipath
        Log in through every path.

    .PARAMETER Undo
        The undo list.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [System.Collections.IDictionary]$Volume,

        [AllowEmptyString()]
        [string]$ChapSecret,

        [AllowEmptyCollection()]
        [string[]]$InitiatorNames = @(),

        [switch]$Multipath,

        [Parameter(Mandatory)]
        [AllowEmptyCollection()]
        [System.Collections.Generic.List[object]]$Undo
    )
    $id = [string]$Volume['volume_id']
    $chapUser = Get-PsDriverVolumeField -Volume $Volume -Name 'auth_username' -Optional
    $initiators = @($InitiatorNames | Where-Object { -not [string]::IsNullOrEmpty($_) })
    if ($initiators.Count -eq 0) {
        $initiators = @('')
    }
    $connected = 0
    $lastError = $null
    foreach ($path in @(Get-PsDriverVolumeField -Volume $Volume -Name 'paths')) {
        $iqn = [string]$path['iqn']
        $portal = [string]$path['portal']
        $split = [regex]::Match($portal, '^(.+?)(?::(\d+))?$')
        $address = $split.Groups[1].Value.Trim('[', ']')
        $port = 3260
        if ($split.Groups[2].Success) {
            $port = [int]$split.Groups[2].Value
        }
        foreach ($initiator in $initiators) {
            $existing = @(iSCSI\Get-IscsiSession | Where-Object {
                    $_.TargetNodeAddress -eq $iqn -and $_.IsConnected -and
                    ($initiator -eq '' -or $_.InitiatorInstanceName -eq $initiator) -and
                    (@(iSCSI\Get-IscsiConnection -IscsiSession $_ | Where-Object { $_.TargetAddress -eq $address -and [int]$_.TargetPortNumber -eq $port }).Count -gt 0)
                })
            if ($existing.Count -gt 0) {
                $connected++
            }
            else {
                try {
                    $known = @(iSCSI\Get-IscsiTargetPortal | Where-Object { $_.TargetPortalAddress -eq $address -and [int]$_.TargetPortalPortNumber -eq $port })
                    if ($known.Count -eq 0) {
                        $portalArgs = @{ TargetPortalAddress = $address; TargetPortalPortNumber = $port }
                        if ($initiator -ne '') {
                            $portalArgs['InitiatorInstanceName'] = $initiator
                        }
                        $null = iSCSI\New-IscsiTargetPortal @portalArgs
                        $Undo.Add(@{ Kind = 'Portal'; Address = $address; Port = $port })
                    }
                    $loginArgs = @{
                        NodeAddress            = $iqn
                        TargetPortalAddress    = $address
                        TargetPortalPortNumber = $port
                        IsPersistent           = $true
                    }
                    if ($Multipath) {
                        $loginArgs['IsMultipathEnabled'] = $true
                    }
                    if ($initiator -ne '') {
                        $loginArgs['InitiatorInstanceName'] = $initiator
                    }
                    if (-not [string]::IsNullOrEmpty($chapUser)) {
                        $loginArgs['AuthenticationType'] = 'ONEWAYCHAP'
                        $loginArgs['ChapUsername'] = [string]$chapUser
                        $loginArgs['ChapSecret'] = $ChapSecret
                    }
                    $session = iSCSI\Connect-IscsiTarget @loginArgs
                    $Undo.Add(@{ Kind = 'Session'; Id = [string]$session.SessionIdentifier; Iqn = $iqn })
                    $connected++
                }
                catch {
                    $lastError = $_
                    Write-Verbose "Volume ${id}: login to $iqn through $portal failed: $($_.Exception.Message)"
                }
            }
            if ($connected -gt 0 -and -not $Multipath) {
                return $connected
            }
        }
    }
    if ($connected -eq 0) {
        $why = 'no path given'
        if ($null -ne $lastError) {
            $why = "$($lastError.CategoryInfo.Category): $($lastError.Exception.Message)"
        }
        throw (New-PsDriverErrorRecord -Message "Volume ${id}: cannot log in to its iSCSI target ($why)" -Category InvalidOperation -ErrorId 'PsDriver.IscsiLoginFailed' -Target $id)
    }
    $connected
}

function Get-PsDriverSmbSharePath {
    <#
    .SYNOPSIS
        The share of an SMB volume record as '\\server\share' (forward slashes of Cinder's //server/share accepted).

    .PARAMETER Volume
        The volume record.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)]
        [System.Collections.IDictionary]$Volume
    )
    $share = ([string](Get-PsDriverVolumeField -Volume $Volume -Name 'share')).Replace('/', '\').TrimEnd('\')
    if (-not [regex]::IsMatch($share, '^\\\\[^\\]+\\[^\\]+$')) {
        throw (New-PsDriverErrorRecord -Message "Volume $($Volume['volume_id']): '$share' is not a share (\\server\share)." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $Volume['volume_id'])
    }
    $share
}

function Test-PsDriverLocalServer {
    <#
    .SYNOPSIS
        Whether a share's server name is this host: its name, its DNS name, localhost or one of its IP addresses.

    .PARAMETER Server
        The server part of \\server\share.
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param(
        [Parameter(Mandatory)]
        [string]$Server
    )
    $names = [System.Collections.Generic.List[string]]::new()
    foreach ($name in @('localhost', '127.0.0.1', '::1', $env:COMPUTERNAME, [System.Net.Dns]::GetHostName())) {
        $names.Add(([string]$name).ToLowerInvariant())
    }
    try {
        $names.Add(([System.Net.Dns]::GetHostEntry([System.Net.Dns]::GetHostName()).HostName).ToLowerInvariant())
    }
    catch {
        Write-Verbose -Message "No DNS name for this host: $($_.Exception.Message)"
    }
    foreach ($address in @(Get-NetIPAddress -ErrorAction SilentlyContinue)) {
        $names.Add(([string]$address.IPAddress).ToLowerInvariant())
    }
    $names.Contains($Server.Trim('[', ']').ToLowerInvariant())
}

function Resolve-PsDriverSmbVolumeFile {
    <#
    .SYNOPSIS
        The disk file of an SMB volume record: share, path and local (the share is on this host).

    .DESCRIPTION
        Hyper-V cannot open a VM disk through a loopback SMB path, so when the
        share's server is this host and the share is one of its own
        (Get-SmbShare), the file is taken by the share's local folder.

    .PARAMETER Volume
        The volume record (share, file_name).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [System.Collections.IDictionary]$Volume
    )
    $share = Get-PsDriverSmbSharePath -Volume $Volume
    $fileName = [string](Get-PsDriverVolumeField -Volume $Volume -Name 'file_name')
    $server, $shareName = $share.TrimStart('\').Split('\', 2)
    $folder = $share
    $local = $false
    if (Test-PsDriverLocalServer -Server $server) {
        $exported = @(SmbShare\Get-SmbShare -Name $shareName -ErrorAction SilentlyContinue)
        if ($exported.Count -gt 0 -and -not [string]::IsNullOrEmpty($exported[0].Path)) {
            $folder = [string]$exported[0].Path
            $local = $true
        }
    }
    [pscustomobject]@{ Share = $share; Path = (Join-Path -Path $folder -ChildPath $fileName); Local = $local }
}

function Connect-PsDriverSmbShare {
    <#
    .SYNOPSIS
        Makes an SMB share reachable by Hyper-V: a global mapping (New-SmbGlobalMapping) when credentials are given.

    .DESCRIPTION
        The Virtual Machine Management service runs in no user's logon
        session: only a global mapping gives it the credentials. An existing
        mapping of the share is reused; one this call makes goes to Undo.
        Without a user name nothing is mapped (the host's own account must
        have access).

    .PARAMETER Share
        '\\server\share'.

    .PARAMETER Username
        The user name; empty for none.

    .PARAMETER Password
        The password.

    .PARAMETER Undo
        The undo list.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Share,

        [AllowEmptyString()]
        [string]$Username,

        [AllowEmptyString()]
        [string]$Password,

        [Parameter(Mandatory)]
        [AllowEmptyCollection()]
        [System.Collections.Generic.List[object]]$Undo
    )
    if ([string]::IsNullOrEmpty($Username)) {
        return $false
    }
    if (-not (Get-Command -Name 'New-SmbGlobalMapping' -Module 'SmbShare' -ErrorAction SilentlyContinue)) {
        throw (New-PsDriverErrorRecord -Message "SMB volumes with credentials need SMB global mappings (New-SmbGlobalMapping), which this host lacks: Windows Server 2019 (1709) or later is needed for '$Share'." -Category NotImplemented -ErrorId 'PsDriver.SmbGlobalMappingUnavailable' -Target $Share)
    }
    $existing = @(SmbShare\Get-SmbGlobalMapping -RemotePath $Share -ErrorAction SilentlyContinue)
    if ($existing.Count -gt 0) {
        return $false
    }
    $secure = [System.Security.SecureString]::new()
    foreach ($character in $Password.ToCharArray()) {
        $secure.AppendChar($character)
    }
    $credential = [System.Management.Automation.PSCredential]::new($Username, $secure)
    $null = SmbShare\New-SmbGlobalMapping -RemotePath $Share -Credential $credential -Persistent $true -Confirm:$false
    $Undo.Add(@{ Kind = 'Mapping'; RemotePath = $Share })
    $true
}

function Test-PsDriverDiskInUse {
    <#
    .SYNOPSIS
        Whether a virtual machine on this host has the physical disk Number as a pass-through disk.

    .PARAMETER Number
        The disk number.
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param(
        [Parameter(Mandatory)]
        [int]$Number
    )
    foreach ($machine in @(Hyper-V\Get-VM)) {
        foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $machine)) {
            if ($null -ne $drive.DiskNumber -and [int]$drive.DiskNumber -eq $Number) {
                return $true
            }
        }
    }
    $false
}

function Test-PsDriverShareInUse {
    <#
    .SYNOPSIS
        Whether a virtual machine on this host has a disk file on the share.

    .PARAMETER Share
        '\\server\share'.
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param(
        [Parameter(Mandatory)]
        [string]$Share
    )
    $prefix = $Share.TrimEnd('\') + '\'
    foreach ($machine in @(Hyper-V\Get-VM)) {
        foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $machine)) {
            if (-not [string]::IsNullOrEmpty($drive.Path) -and ([string]$drive.Path).StartsWith($prefix, [System.StringComparison]::OrdinalIgnoreCase)) {
                return $true
            }
        }
    }
    $false
}

function Disconnect-PsDriverIscsiTarget {
    <#
    .SYNOPSIS
        Logs out of every session to TargetIqn unless a virtual machine still uses a disk of the target.

    .PARAMETER TargetIqn
        The target IQN.

    .OUTPUTS
        $true when it logged out.
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param(
        [Parameter(Mandatory)]
        [string]$TargetIqn
    )
    $sessions = @(iSCSI\Get-IscsiSession | Where-Object { $_.TargetNodeAddress -eq $TargetIqn })
    if ($sessions.Count -eq 0) {
        return $false
    }
    foreach ($session in $sessions) {
        foreach ($disk in @(Storage\Get-Disk -iSCSISession $session)) {
            if (Test-PsDriverDiskInUse -Number ([int]$disk.Number)) {
                return $false
            }
        }
    }
    foreach ($session in $sessions) {
        $null = iSCSI\Disconnect-IscsiTarget -SessionIdentifier $session.SessionIdentifier -Confirm:$false
    }
    $true
}

function Get-PsDriverVolumeDrive {
    <#
    .SYNOPSIS
        The hard disk drive of VM holding the volume (its disk number or file); $null when none.

    .PARAMETER VM
        The VM.

    .PARAMETER DiskNumber
        The pass-through disk's current number (iSCSI, Fibre Channel).

    .PARAMETER Path
        The disk file (SMB).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [AllowNull()]
        [object]$DiskNumber,

        [AllowNull()]
        [AllowEmptyString()]
        [string]$Path
    )
    foreach ($drive in @(Get-PsDriverAttachedDrive -VM $VM | Where-Object { $_.Kind -eq 'HardDisk' })) {
        if ($null -ne $DiskNumber -and $null -ne $drive.DiskNumber -and [int]$drive.DiskNumber -eq [int]$DiskNumber) {
            return $drive
        }
        if (-not [string]::IsNullOrEmpty($Path) -and (Test-PsDriverSamePath -Left $drive.Path -Right $Path)) {
            return $drive
        }
    }
    $null
}

function Undo-PsDriverVolumeChange {
    <#
    .SYNOPSIS
        Undoes what a volume call recorded in its undo list, newest first; failures are verbose messages only.

    .PARAMETER Undo
        The undo list: Drive {Record}, Session {Id, Iqn}, Portal {Address, Port}, Mapping {RemotePath}.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [AllowEmptyCollection()]
        [System.Collections.Generic.List[object]]$Undo
    )
    for ($index = $Undo.Count - 1; $index -ge 0; $index--) {
        $step = $Undo[$index]
        try {
            switch ($step.Kind) {
                'Drive' {
                    Dismount-PsDriverAttachedDrive -Record $step.Record
                }
                'Session' {
                    $null = iSCSI\Disconnect-IscsiTarget -SessionIdentifier $step.Id -Confirm:$false
                }
                'Portal' {
                    iSCSI\Remove-IscsiTargetPortal -TargetPortalAddress $step.Address -TargetPortalPortNumber $step.Port -Confirm:$false
                }
                'Mapping' {
                    SmbShare\Remove-SmbGlobalMapping -RemotePath $step.RemotePath -Force -Confirm:$false
                }
            }
        }
        catch {
            Write-Verbose "Undo of $($step.Kind) failed: $($_.Exception.Message)"
        }
    }
    $Undo.Clear()
}

function Get-PsDriverSnapshotVolume {
    <#
    .SYNOPSIS
        What an assisted snapshot of an SMB volume works on: its id, the VM, the volume's active file and the drive holding it.

    .DESCRIPTION
        Refuses a volume that is not smbfs (PsDriver.InvalidVolume) and one no
        drive of the VM holds (PsDriver.VolumeDriveNotFound).

    .PARAMETER Name
        The VM name.

    .PARAMETER Volume
        The volume record (volume_id, type, export, name, ...).
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)]
        [string]$Name,

        [Parameter(Mandatory)]
        [System.Collections.IDictionary]$Volume
    )
    $id = [string](Get-PsDriverVolumeField -Volume $Volume -Name 'volume_id')
    $type = [string](Get-PsDriverVolumeField -Volume $Volume -Name 'type')
    if ($type -ne 'smbfs') {
        throw (New-PsDriverErrorRecord -Message "Volume ${id}: assisted snapshots are for smbfs volumes, not '$type'." -Category InvalidArgument -ErrorId 'PsDriver.InvalidVolume' -Target $id)
    }
    $vm = Get-PsDriverVM -Name $Name
    $path = (Resolve-PsDriverSmbVolumeFile -Volume $Volume).Path
    $drive = Get-PsDriverVolumeDrive -VM $vm -DiskNumber $null -Path $path
    if ($null -eq $drive) {
        throw (New-PsDriverErrorRecord -Message "Volume ${id}: no drive of VM $Name holds $path." -Category ObjectNotFound -ErrorId 'PsDriver.VolumeDriveNotFound' -Target $id)
    }
    [pscustomobject]@{ Id = $id; VM = $vm; Path = $path; Drive = $drive }
}
