<#
.SYNOPSIS
    A fake storage host for the Pester tests of the volume scripts
    (Connect-, Disconnect-, Update-InstanceVolume, Get-VolumeConnector).

.DESCRIPTION
    Dot-source after PsDriverTestHelpers.ps1, in BeforeAll:

        . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverStorageFakes.ps1')
        Add-FakeStorageCommandStub

    and call Register-FakeStorageHost in BeforeEach. The host has one VM,
    instance-00000001 (running, generation $PsdTest.Generation, one SCSI
    controller), an iSCSI array and an SMB share, all in $PsdTest:

      Targets   iqn -> @{ Portals = @('10.0.0.5:3260', ...); Luns = @{ lun -> serial } }
      Sessions  fake MSFT_iSCSISession objects (SessionIdentifier, TargetNodeAddress,
                IsConnected, InitiatorInstanceName, Address, Port)
      Portals   registered portals (TargetPortalAddress, TargetPortalPortNumber)
      Disks     fake MSFT_Disk objects (Number, SerialNumber, Size, IsOffline, Location,
                SessionId, Lun, Iqn); one per session and LUN unless $PsdTest.Mpio
      Hidden    rescans still needed before a new disk shows ($PsdTest.RescansNeeded)
      Mappings  SMB global mappings (remote paths); Files: files that exist
      Drives    the VM's hard disk drives (Path or DiskNumber, slot)
      ChapSecret when set, logins must give it
    Every cmdlet is mocked in the script's scope and PsDriver's (Register-TestMock
    -Scope Both): the helpers of PsDriver\Storage.ps1 call most of them.
#>

function Add-FakeStorageCommandStub {
    $commands = [ordered]@{
        'Hyper-V\Get-VM'                       = @('Name')
        'Hyper-V\Get-VMHardDiskDrive'          = @('VM')
        'Hyper-V\Get-VMDvdDrive'               = @('VM')
        'Hyper-V\Add-VMHardDiskDrive'          = @('VM', 'ControllerType', 'ControllerNumber', 'ControllerLocation', 'Path', 'DiskNumber', '-Passthru')
        'Hyper-V\Remove-VMHardDiskDrive'       = @('VMHardDiskDrive')
        'Hyper-V\Set-VMHardDiskDrive'          = @('VMHardDiskDrive', 'MaximumIOPS', 'Path')
        'Hyper-V\Get-VMScsiController'         = @('VM')
        'Hyper-V\Add-VMScsiController'         = @('VM')
        'Hyper-V\Set-VMFirmware'               = @('VM', 'FirstBootDevice')
        'Hyper-V\Get-VHD'                      = @('Path')
        'Hyper-V\New-VHD'                      = @('Path', 'ParentPath', '-Differencing')
        'Hyper-V\Merge-VHD'                    = @('Path', 'DestinationPath')
        'iSCSI\Get-IscsiSession'               = @()
        'iSCSI\Get-IscsiConnection'            = @('IscsiSession')
        'iSCSI\Get-IscsiTargetPortal'          = @()
        'iSCSI\New-IscsiTargetPortal'          = @('TargetPortalAddress', 'TargetPortalPortNumber', 'InitiatorInstanceName')
        'iSCSI\Remove-IscsiTargetPortal'       = @('TargetPortalAddress', 'TargetPortalPortNumber')
        'iSCSI\Connect-IscsiTarget'            = @('NodeAddress', 'TargetPortalAddress', 'TargetPortalPortNumber', 'IsPersistent', 'IsMultipathEnabled', 'InitiatorInstanceName', 'AuthenticationType', 'ChapUsername', 'ChapSecret')
        'iSCSI\Disconnect-IscsiTarget'         = @('SessionIdentifier')
        'Storage\Get-Disk'                     = @('iSCSISession', 'Number')
        'Storage\Set-Disk'                     = @('Number', 'IsOffline')
        'Storage\Update-HostStorageCache'      = @()
        'Storage\Get-InitiatorPort'            = @()
        'SmbShare\Get-SmbGlobalMapping'        = @('RemotePath')
        'SmbShare\Get-SmbShare'                = @('Name')
        'NetTCPIP\Get-NetIPAddress'            = @()
        'SmbShare\New-SmbGlobalMapping'        = @('RemotePath', 'Credential', 'Persistent')
        'SmbShare\Remove-SmbGlobalMapping'     = @('RemotePath', '-Force')
        'MPIO\Get-MSDSMAutomaticClaimSettings' = @()
        'MPIO\Get-MSDSMSupportedHW'            = @()
        'CimCmdlets\Get-CimInstance'           = @('Namespace', 'ClassName')
        'CimCmdlets\Invoke-CimMethod'          = @('InputObject', 'MethodName', 'Arguments')
    }
    foreach ($qualified in $commands.Keys) {
        $module, $name = $qualified -split '\\', 2
        Add-CommandStub -Name $name -Parameter @($commands[$qualified])
        if (-not (Get-Module -ListAvailable -Name $module)) {
            # Module-qualified calls reach the stub (and so its mock) through this alias.
            Set-Alias -Name $qualified -Value $name -Scope Global
        }
    }
}

function Remove-FakeStorageCommandStub {
    foreach ($alias in @(Get-ChildItem -Path 'alias:' | Where-Object { $_.Name -match '^(iSCSI|Storage|SmbShare|MPIO|CimCmdlets|NetTCPIP)\\' })) {
        Remove-Item -LiteralPath ('alias:' + $alias.Name) -ErrorAction SilentlyContinue
    }
    Remove-CommandStub
}

function Add-FakeIscsiTarget {
    param(
        [string]$Iqn = 'iqn.2010-10.org.openstack:volume-8d0e5f0c',
        [string[]]$Portals = @('10.0.0.5:3260', '10.0.0.6:3260'),
        [int[]]$Luns = @(0, 1)
    )
    $serials = @{}
    foreach ($lun in $Luns) {
        $serials[$lun] = 'SER{0}{1}' -f $Iqn.Length, $lun
    }
    $PsdTest.Targets[$Iqn] = @{ Portals = $Portals; Luns = $serials }
}

function New-FakeStorageDisk {
    param(
        [string]$Iqn,
        [int]$Lun,
        [string]$SessionId
    )
    $serial = $PsdTest.Targets[$Iqn].Luns[$Lun]
    $existing = @($PsdTest.Disks | Where-Object { $_.SerialNumber -eq $serial }) | Select-Object -First 1
    if ($PsdTest.Mpio -and $null -ne $existing) {
        $existing.SessionIds = @($existing.SessionIds) + $SessionId
        return
    }
    $PsdTest.NextDisk++
    $PsdTest.Disks = @($PsdTest.Disks) + [pscustomobject]@{
        Number       = $PsdTest.NextDisk
        SerialNumber = $serial
        Size         = [long]1073741824
        IsOffline    = -not $PsdTest.OnlineAll
        Location     = "Integrated : Adapter 1 : Port 0 : Target 0 : LUN $Lun"
        SessionIds   = @($SessionId)
        Hidden       = $PsdTest.RescansNeeded
    }
}

function Register-FakeStorageHost {
    $PsdTest.Generation = 2
    $PsdTest.State = 'Running'
    $PsdTest.Targets = @{}
    $PsdTest.Sessions = @()
    $PsdTest.Portals = @()
    $PsdTest.Disks = @()
    $PsdTest.NextDisk = 0
    $PsdTest.Mpio = $true
    $PsdTest.OnlineAll = $false
    $PsdTest.RescansNeeded = 0
    $PsdTest.Rescans = 0
    $PsdTest.ChapSecret = $null
    $PsdTest.Mappings = @()
    $PsdTest.MappingCredentials = @()
    $PsdTest.Files = @('\\fs01.example.org\cinder\volume-c2d3e4f5.vhdx')
    $PsdTest.Drives = @()
    $PsdTest.DriveKey = 0
    $PsdTest.ScsiControllers = @([pscustomobject]@{ ControllerNumber = 0 })
    $PsdTest.FirstBoot = $null
    $PsdTest.FcMapping = @()
    # shares of this host (name -> local folder) and its addresses: a volume on one of
    # them is attached by its local path
    $PsdTest.LocalShares = @{}
    $PsdTest.Addresses = @('192.0.2.11')
    Add-FakeIscsiTarget

    Register-TestMock -CommandName 'Get-VM' -MockWith {
        [pscustomobject]@{ Name = 'instance-00000001'; Generation = $PsdTest.Generation; State = $PsdTest.State }
    }
    Register-TestMock -CommandName 'Get-VMHardDiskDrive' -RemoveParameterType 'VM' -MockWith { @($PsdTest.Drives) }
    Register-TestMock -CommandName 'Get-VMDvdDrive' -RemoveParameterType 'VM' -MockWith { }
    Register-TestMock -CommandName 'Get-VMScsiController' -RemoveParameterType 'VM' -MockWith { @($PsdTest.ScsiControllers) }
    Register-TestMock -CommandName 'Add-VMScsiController' -RemoveParameterType 'VM' -MockWith {
        $PsdTest.ScsiControllers = @($PsdTest.ScsiControllers) + [pscustomobject]@{ ControllerNumber = @($PsdTest.ScsiControllers).Count }
    }
    Register-TestMock -CommandName 'Add-VMHardDiskDrive' -RemoveParameterType 'VM' -MockWith {
        if ($null -ne $DiskNumber) {
            $disk = @($PsdTest.Disks | Where-Object { $_.Number -eq $DiskNumber })[0]
            if (-not $disk.IsOffline) {
                throw 'The physical disk must be offline.'
            }
        }
        $PsdTest.DriveKey++
        $drive = [pscustomobject]@{
            Key = $PsdTest.DriveKey; Path = $Path; DiskNumber = $DiskNumber; ControllerType = $ControllerType
            ControllerNumber = $ControllerNumber; ControllerLocation = $ControllerLocation; MaximumIOPS = 0
        }
        $PsdTest.Drives = @($PsdTest.Drives) + $drive
        if ($Passthru) {
            $drive
        }
    }
    Register-TestMock -CommandName 'Remove-VMHardDiskDrive' -RemoveParameterType 'VMHardDiskDrive' -MockWith {
        $key = @($VMHardDiskDrive)[0].Key
        $PsdTest.Drives = @($PsdTest.Drives | Where-Object { $_.Key -ne $key })
    }
    Register-TestMock -CommandName 'Set-VMHardDiskDrive' -RemoveParameterType 'VMHardDiskDrive' -MockWith {
        if ($PSBoundParameters.ContainsKey('MaximumIOPS')) {
            @($VMHardDiskDrive)[0].MaximumIOPS = $MaximumIOPS
        }
        if ($PSBoundParameters.ContainsKey('Path')) {
            @($VMHardDiskDrive)[0].Path = $Path
        }
    }
    Register-TestMock -CommandName 'Set-VMFirmware' -RemoveParameterType 'VM', 'FirstBootDevice' -MockWith {
        $PsdTest.FirstBoot = @($FirstBootDevice)[0]
    }
    Register-TestMock -CommandName 'Get-VHD' -MockWith { [pscustomobject]@{ Path = $Path; Size = [long]2147483648 } }
    Register-TestMock -CommandName 'Get-SmbShare' -MockWith {
        if ($PsdTest.LocalShares.Contains($Name)) {
            [pscustomobject]@{ Name = $Name; Path = $PsdTest.LocalShares[$Name] }
        }
    }
    Register-TestMock -CommandName 'Get-NetIPAddress' -MockWith {
        foreach ($address in @($PsdTest.Addresses)) { [pscustomobject]@{ IPAddress = $address } }
    }
    Register-TestMock -CommandName 'Test-Path' -ParameterFilter { $null -ne $LiteralPath } -MockWith {
        @($PsdTest.Files | Where-Object { $_ -eq $LiteralPath }).Count -gt 0
    }

    Register-TestMock -CommandName 'Get-IscsiSession' -MockWith { @($PsdTest.Sessions) }
    Register-TestMock -CommandName 'Get-IscsiConnection' -RemoveParameterType 'IscsiSession' -MockWith {
        $session = @($IscsiSession)[0]
        [pscustomobject]@{ TargetAddress = $session.Address; TargetPortNumber = $session.Port }
    }
    Register-TestMock -CommandName 'Get-IscsiTargetPortal' -MockWith { @($PsdTest.Portals) }
    Register-TestMock -CommandName 'New-IscsiTargetPortal' -MockWith {
        $known = @($PsdTest.Targets.Values | Where-Object { $_.Portals -contains ('{0}:{1}' -f $TargetPortalAddress, $TargetPortalPortNumber) })
        if ($known.Count -eq 0) {
            throw (New-PsDriverErrorRecord -Message 'Connection Failed.' -Category ConnectionError -ErrorId 'PortalUnreachable' -Target $TargetPortalAddress)
        }
        $portal = [pscustomobject]@{ TargetPortalAddress = $TargetPortalAddress; TargetPortalPortNumber = $TargetPortalPortNumber }
        $PsdTest.Portals = @($PsdTest.Portals) + $portal
        $portal
    }
    Register-TestMock -CommandName 'Remove-IscsiTargetPortal' -MockWith {
        $PsdTest.Portals = @($PsdTest.Portals | Where-Object { $_.TargetPortalAddress -ne $TargetPortalAddress })
    }
    Register-TestMock -CommandName 'Connect-IscsiTarget' -MockWith {
        if ($null -ne $PsdTest.ChapSecret -and $ChapSecret -ne $PsdTest.ChapSecret) {
            throw (New-PsDriverErrorRecord -Message 'Authentication Failure.' -Category AuthenticationError -ErrorId 'AuthenticationFailure' -Target $NodeAddress)
        }
        $session = [pscustomobject]@{
            SessionIdentifier = 'session-{0}' -f (@($PsdTest.Sessions).Count + 1); TargetNodeAddress = $NodeAddress
            IsConnected = $true; InitiatorInstanceName = 'ROOT\ISCSIPRT\0000_0'; Address = $TargetPortalAddress
            Port = $TargetPortalPortNumber; ChapSecret = $ChapSecret; IsPersistent = $IsPersistent
        }
        $PsdTest.Sessions = @($PsdTest.Sessions) + $session
        foreach ($lun in @($PsdTest.Targets[$NodeAddress].Luns.Keys)) {
            New-FakeStorageDisk -Iqn $NodeAddress -Lun $lun -SessionId $session.SessionIdentifier
        }
        $session
    }
    Register-TestMock -CommandName 'Disconnect-IscsiTarget' -MockWith {
        $PsdTest.Sessions = @($PsdTest.Sessions | Where-Object { $_.SessionIdentifier -ne $SessionIdentifier })
        foreach ($disk in @($PsdTest.Disks)) {
            $disk.SessionIds = @($disk.SessionIds | Where-Object { $_ -ne $SessionIdentifier })
        }
        $PsdTest.Disks = @($PsdTest.Disks | Where-Object { @($_.SessionIds).Count -gt 0 })
    }
    Register-TestMock -CommandName 'Get-Disk' -RemoveParameterType 'iSCSISession' -MockWith {
        $visible = @($PsdTest.Disks | Where-Object { $_.Hidden -le 0 })
        if ($null -ne $iSCSISession) {
            $id = @($iSCSISession)[0].SessionIdentifier
            return @($visible | Where-Object { @($_.SessionIds) -contains $id })
        }
        @($visible | Where-Object { $_.Number -eq $Number })
    }
    Register-TestMock -CommandName 'Set-Disk' -MockWith {
        @($PsdTest.Disks | Where-Object { $_.Number -eq $Number })[0].IsOffline = [bool]$IsOffline
    }
    Register-TestMock -CommandName 'Update-HostStorageCache' -MockWith {
        $PsdTest.Rescans++
        foreach ($disk in @($PsdTest.Disks)) {
            $disk.Hidden--
        }
    }
    Register-TestMock -CommandName 'Get-SmbGlobalMapping' -MockWith {
        @($PsdTest.Mappings | Where-Object { $_ -eq $RemotePath } | ForEach-Object { [pscustomobject]@{ RemotePath = $_ } })
    }
    Register-TestMock -CommandName 'New-SmbGlobalMapping' -MockWith {
        $PsdTest.Mappings = @($PsdTest.Mappings) + $RemotePath
        $PsdTest.MappingCredentials = @($PsdTest.MappingCredentials) + $Credential
    }
    Register-TestMock -CommandName 'Remove-SmbGlobalMapping' -MockWith {
        $PsdTest.Mappings = @($PsdTest.Mappings | Where-Object { $_ -ne $RemotePath })
    }
    Register-TestMock -CommandName 'Get-CimInstance' -MockWith {
        switch ($ClassName) {
            'MSFC_FibrePortHBAAttributes' {
                [pscustomobject]@{ InstanceName = 'HBA0'; Attributes = [pscustomobject]@{ PortWWN = [byte[]](0x10, 0, 0, 0x90, 0xfa, 0, 0, 1) } }
            }
            'MSFC_HBAFCPInfo' {
                [pscustomobject]@{ InstanceName = 'HBA0' }
            }
        }
    }
    Register-TestMock -CommandName 'Invoke-CimMethod' -RemoveParameterType 'InputObject' -MockWith {
        [pscustomobject]@{ Entry = @($PsdTest.FcMapping) }
    }
}

function Add-FakeFcLun {
    param(
        [string]$TargetWwn = '500a098280feeba5',
        [int]$Lun = 1
    )
    $PsdTest.NextDisk++
    $number = $PsdTest.NextDisk
    $bytes = [byte[]]@(for ($i = 0; $i -lt 16; $i += 2) { [Convert]::ToByte($TargetWwn.Substring($i, 2), 16) })
    $PsdTest.FcMapping = @($PsdTest.FcMapping) + [pscustomobject]@{
        FCPId  = [pscustomobject]@{ PortWWN = $bytes }
        ScsiId = [pscustomobject]@{ ScsiOSLun = $Lun; OSDeviceName = "\\.\PhysicalDrive$number" }
    }
    $PsdTest.Disks = @($PsdTest.Disks) + [pscustomobject]@{
        Number = $number; SerialNumber = "FC$number"; Size = [long]1073741824; IsOffline = $true
        Location = "PCI Slot 3 : Adapter 0 : Port 0 : Target 0 : LUN $Lun"; SessionIds = @(); Hidden = 0
    }
}
