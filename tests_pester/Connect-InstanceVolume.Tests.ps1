BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Connect-InstanceVolume')
}

BeforeAll {
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverStorageFakes.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Connect-InstanceVolume'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Connect-InstanceVolume'
    Import-PsDriverModule
    Add-FakeStorageCommandStub

    $script:Iqn = 'iqn.2010-10.org.openstack:volume-8d0e5f0c'
    function New-IscsiVolume {
        param([int]$Lun = 0, [string[]]$Portals = @('10.0.0.5:3260'), [switch]$Chap, [switch]$Boot)
        $volume = @{
            volume_id = 'vol-1'; type = 'iscsi'
            paths     = @($Portals | ForEach-Object { @{ portal = $_; iqn = 'iqn.2010-10.org.openstack:volume-8d0e5f0c'; lun = $Lun } })
        }
        if ($Chap) {
            $volume['auth_username'] = 'chapuser'
        }
        if ($Boot) {
            $volume['boot'] = $true
        }
        $volume
    }
    function New-SmbVolume {
        param([string]$FileName = 'volume-c2d3e4f5.vhdx')
        @{ volume_id = 'vol-smb'; type = 'smbfs'; share = '//fs01.example.org/cinder'; file_name = $FileName; username = 'cinder'; max_iops = 500 }
    }
}

AfterAll {
    Remove-FakeStorageCommandStub
}

Describe 'Connect-InstanceVolume' {
    BeforeEach {
        Register-FakeStorageHost
    }

    It 'logs in with CHAP, finds the LUN and attaches it as a pass-through disk' {
        $PsdTest.ChapSecret = 'right-secret'
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume -Lun 1 -Chap) `
            -Secrets @{ 'vol-1' = @{ chap_secret = 'right-secret' } } -RetryIntervalSeconds 0
        Assert-MatchesContract $result
        $volume = $result.volumes[0]
        $volume.type | Should -Be 'iscsi'
        $volume.sessions | Should -Be 1
        $volume.controller_type | Should -Be 'SCSI'
        $disk = @($PsdTest.Disks | Where-Object { $_.Location -match 'LUN 1$' })[0]
        $volume.disk_number | Should -Be $disk.Number
        @($PsdTest.Drives)[0].DiskNumber | Should -Be $disk.Number
        @($PsdTest.Sessions)[0].IsPersistent | Should -BeTrue
        Should -Invoke Connect-IscsiTarget -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter {
            $AuthenticationType -eq 'ONEWAYCHAP' -and $ChapUsername -eq 'chapuser' -and $ChapSecret -eq 'right-secret'
        }
    }

    It 'takes a disk the SAN policy left online offline before attaching it' {
        $PsdTest.OnlineAll = $true
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume) -RetryIntervalSeconds 0
        $result.volumes[0].taken_offline | Should -BeTrue
        Should -Invoke Set-Disk -Times 1 -Exactly -ParameterFilter { $IsOffline -eq $true }
    }

    It 'rescans until a late disk shows up' {
        $PsdTest.RescansNeeded = 2
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume) -RetryCount 3 -RetryIntervalSeconds 0
        $result.volumes[0].disk_number | Should -Not -BeNullOrEmpty
        $PsdTest.Rescans | Should -Be 2
    }

    It 'undoes the login and the portal when the LUN never shows up' {
        $PsdTest.RescansNeeded = 100
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume) -RetryCount 2 -RetryIntervalSeconds 0 } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VolumeDiskNotFound'
        $failure.Exception.Message | Should -Match 'vol-1'
        @($PsdTest.Sessions).Count | Should -Be 0
        @($PsdTest.Portals).Count | Should -Be 0
        @($PsdTest.Drives).Count | Should -Be 0
    }

    It 'refuses a LUN that shows up once per path (MPIO not claiming)' {
        $PsdTest.Mpio = $false
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume -Portals '10.0.0.5:3260', '10.0.0.6:3260') -Multipath -RetryIntervalSeconds 0 } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.DuplicateDisk'
        @($PsdTest.Sessions).Count | Should -Be 0
    }

    It 'logs in through every path with -Multipath and only the first without' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume -Portals '10.0.0.5:3260', '10.0.0.6:3260') -Multipath -RetryIntervalSeconds 0
        $result.volumes[0].sessions | Should -Be 2
        @($PsdTest.Disks).Count | Should -Be 2      # two LUNs of the target, each once
        Register-FakeStorageHost
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume -Portals '10.0.0.5:3260', '10.0.0.6:3260') -RetryIntervalSeconds 0
        $result.volumes[0].sessions | Should -Be 1
    }

    It 'fails naming the volume when the CHAP secret is wrong, leaving no portal' {
        $PsdTest.ChapSecret = 'right-secret'
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume -Chap) -Secrets @{ 'vol-1' = @{ chap_secret = 'wrong' } } } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.IscsiLoginFailed'
        $failure.Exception.Message | Should -Match 'vol-1.*AuthenticationError'
        @($PsdTest.Portals).Count | Should -Be 0
    }

    It 'attaches a boot volume at SCSI 0:0 as the first boot device of a generation 2 VM' {
        $PsdTest.State = 'Off'
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume -Boot) -RetryIntervalSeconds 0
        $result.volumes[0].controller_location | Should -Be 0
        $PsdTest.FirstBoot.ControllerLocation | Should -Be 0
    }

    It 'maps the SMB share with a credential built from the secret and limits IOPS' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-SmbVolume) -Secrets @{ 'vol-smb' = @{ smb_password = 'smb-secret' } }
        Assert-MatchesContract $result
        $result.volumes[0].mapped | Should -BeTrue
        $result.volumes[0].path | Should -Be '\\fs01.example.org\cinder\volume-c2d3e4f5.vhdx'
        $PsdTest.Mappings | Should -Be @('\\fs01.example.org\cinder')
        $credential = @($PsdTest.MappingCredentials)[0]
        $credential.UserName | Should -Be 'cinder'
        $credential.GetNetworkCredential().Password | Should -Be 'smb-secret'
        @($PsdTest.Drives)[0].MaximumIOPS | Should -Be 500
    }

    It 'attaches a file on a share of this host by its local path, without a mapping' {
        $PsdTest.LocalShares['cinder'] = 'D:\Shares\cinder'
        $PsdTest.Files = @('D:\Shares\cinder\volume-c2d3e4f5.vhdx')
        $volume = New-SmbVolume
        $volume.share = '\\192.0.2.11\cinder'
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volumes @($volume) -Secrets @{ 'vol-smb' = @{ smb_password = 'smb-secret' } }
        Assert-MatchesContract $result
        $result.volumes[0].mapped | Should -BeFalse
        $result.volumes[0].path | Should -Be 'D:\Shares\cinder\volume-c2d3e4f5.vhdx'
        @($PsdTest.Mappings).Count | Should -Be 0
        @($PsdTest.Drives)[0].Path | Should -Be 'D:\Shares\cinder\volume-c2d3e4f5.vhdx'
    }

    It 'removes the mapping it made when the SMB file is missing' {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-SmbVolume -FileName 'gone.vhdx') -Secrets @{ 'vol-smb' = @{ smb_password = 'x' } } } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VolumeFileNotFound'
        @($PsdTest.Mappings).Count | Should -Be 0
    }

    It 'refuses an unknown driver_volume_type and a record missing a field' {
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Volumes @(@{ volume_id = 'vol-x'; type = 'rbd' }) } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.InvalidVolume'
        $failure = { & $script:ScriptPath -Name 'instance-00000001' -Volumes @(@{ volume_id = 'vol-x'; type = 'iscsi' }) } | Should -Throw -PassThru
        $failure.Exception.Message | Should -Match 'vol-x: field paths is missing'
    }

    It 'finds a Fibre Channel LUN through the HBA target mapping' {
        Add-FakeFcLun -Lun 1
        $volume = @{ volume_id = 'vol-fc'; type = 'fibre_channel'; target_wwns = @('500a098280feeba5'); lun = 1 }
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volumes @($volume) -RetryIntervalSeconds 0
        $result.volumes[0].disk_number | Should -Be $PsdTest.NextDisk
        Should -Invoke Update-HostStorageCache -ModuleName PsDriver -Times 1
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $PsdTest.Targets = @{}
        Add-FakeIscsiTarget -Luns @(0, 1)
        Add-FakeFcLun -Lun 1
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
