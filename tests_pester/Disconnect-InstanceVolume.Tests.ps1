BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Disconnect-InstanceVolume')
}

BeforeAll {
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverStorageFakes.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Disconnect-InstanceVolume'
    $script:ConnectPath = Get-TestScriptPath -ScriptName 'Connect-InstanceVolume'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Disconnect-InstanceVolume'
    Import-PsDriverModule
    Add-FakeStorageCommandStub

    function New-IscsiVolume {
        param([string]$Id = 'vol-1', [int]$Lun = 0)
        @{ volume_id = $Id; type = 'iscsi'; paths = @(@{ portal = '10.0.0.5:3260'; iqn = 'iqn.2010-10.org.openstack:volume-8d0e5f0c'; lun = $Lun }) }
    }
}

AfterAll {
    Remove-FakeStorageCommandStub
}

Describe 'Disconnect-InstanceVolume' {
    BeforeEach {
        Register-FakeStorageHost
    }

    It 'logs out of a target only when its last LUN is detached' {
        $null = & $script:ConnectPath -Name 'instance-00000001' -Volumes @((New-IscsiVolume -Id 'a' -Lun 0), (New-IscsiVolume -Id 'b' -Lun 1)) -RetryIntervalSeconds 0
        @($PsdTest.Drives).Count | Should -Be 2
        $first = & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume -Id 'a' -Lun 0)
        Assert-MatchesContract $first
        $first.volumes[0].detached | Should -BeTrue
        @($first.volumes[0].logged_out).Count | Should -Be 0
        @($PsdTest.Sessions).Count | Should -Be 1
        $second = & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume -Id 'b' -Lun 1)
        $second.volumes[0].logged_out | Should -Be @('iqn.2010-10.org.openstack:volume-8d0e5f0c')
        @($PsdTest.Sessions).Count | Should -Be 0
        @($PsdTest.Drives).Count | Should -Be 0
    }

    It 'finds the drive by target and LUN even when the disk number changed' {
        $null = & $script:ConnectPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume) -RetryIntervalSeconds 0
        foreach ($disk in @($PsdTest.Disks)) {
            $old = $disk.Number
            $disk.Number = $old + 10
            @($PsdTest.Drives | Where-Object { $_.DiskNumber -eq $old }) | ForEach-Object { $_.DiskNumber = $old + 10 }
        }
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volumes @(New-IscsiVolume)
        $result.volumes[0].detached | Should -BeTrue
    }

    It 'removes the SMB mapping once no disk uses the share' {
        $PsdTest.Mappings = @('\\fs01.example.org\cinder')
        $PsdTest.Drives = @([pscustomobject]@{ Key = 99; Path = '\\fs01.example.org\cinder\volume-c2d3e4f5.vhdx'; DiskNumber = $null; ControllerType = 'SCSI'; ControllerNumber = 0; ControllerLocation = 1 })
        $volume = @{ volume_id = 'vol-smb'; type = 'smbfs'; share = '\\fs01.example.org\cinder'; file_name = 'volume-c2d3e4f5.vhdx' }
        $result = & $script:ScriptPath -Name 'instance-00000001' -Volumes @($volume)
        $result.volumes[0].detached | Should -BeTrue
        $result.volumes[0].unmapped | Should -Be '\\fs01.example.org\cinder'
        @($PsdTest.Mappings).Count | Should -Be 0
    }

    It 'is safe to repeat and works without the VM' {
        $result = & $script:ScriptPath -Name 'instance-00000099' -Volumes @(New-IscsiVolume)
        Assert-MatchesContract $result
        $result.vm_found | Should -BeFalse
        $result.volumes[0].detached | Should -BeFalse
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
