BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Update-InstanceVolume')
}

BeforeAll {
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverStorageFakes.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Update-InstanceVolume'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Update-InstanceVolume'
    Import-PsDriverModule
    Add-FakeStorageCommandStub
}

AfterAll {
    Remove-FakeStorageCommandStub
}

Describe 'Update-InstanceVolume' {
    BeforeEach {
        Register-FakeStorageHost
        Add-FakeFcLun -Lun 1
    }

    It 'rescans and reports the size the host sees now' {
        @($PsdTest.Disks)[0].Size = [long]3221225472
        $result = & $script:ScriptPath -Volume @{ volume_id = 'vol-fc'; type = 'fibre_channel'; target_wwns = @('500a098280feeba5'); lun = 1 } -RetryIntervalSeconds 0
        Assert-MatchesContract $result
        $result.size_bytes | Should -Be 3221225472
        $result.disk_number | Should -Be @($PsdTest.Disks)[0].Number
        Should -Invoke Update-HostStorageCache -ModuleName PsDriver -Times 1
    }

    It 'reads the virtual size of an SMB volume file' {
        $result = & $script:ScriptPath -Volume @{ volume_id = 'vol-smb'; type = 'smbfs'; share = '\\fs01.example.org\cinder'; file_name = 'volume-c2d3e4f5.vhdx' }
        Assert-MatchesContract $result
        $result.size_bytes | Should -Be 2147483648
        $result.disk_number | Should -BeNullOrEmpty
    }

    It 'fails naming the volume when its disk is gone' {
        $failure = { & $script:ScriptPath -Volume @{ volume_id = 'vol-fc'; type = 'fibre_channel'; target_wwns = @('500a098280feeba5'); lun = 7 } -RetryCount 0 } |
            Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VolumeDiskNotFound'
        $failure.Exception.Message | Should -Match 'vol-fc'
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $null = iSCSI\Connect-IscsiTarget -NodeAddress 'iqn.2010-10.org.openstack:volume-8d0e5f0c' -TargetPortalAddress '10.0.0.5' -TargetPortalPortNumber 3260
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
