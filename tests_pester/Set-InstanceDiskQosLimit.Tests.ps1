BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Set-InstanceDiskQosLimit')
}

BeforeAll {
    # State shared with the mocks (see Remove-InstanceNetworkAdapter.Tests.ps1).
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Set-InstanceDiskQosLimit'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Set-InstanceDiskQosLimit'
    Import-PsDriverModule

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Set-VMHardDiskDrive' -Parameter 'VMHardDiskDrive', 'MaximumIOPS'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Set-InstanceDiskQosLimit' {
    BeforeEach {
        $PsdTest.State = 'Running'
        $PsdTest.Generation = 2
        $PsdTest.Dir = 'C:\OpenStack\Instances\instance-00000001'
        $PsdTest.Drives = @(
            [pscustomobject]@{ Path = "$($PsdTest.Dir)\root.vhdx"; MaximumIOPS = 0 }
            [pscustomobject]@{ Path = "$($PsdTest.Dir)\eph0.vhdx"; MaximumIOPS = 0 }
            [pscustomobject]@{ Path = "$($PsdTest.Dir)\configdrive.vhd"; MaximumIOPS = 0 }
            [pscustomobject]@{ Path = 'C:\OpenStack\Instances\instance-000000010\root.vhdx'; MaximumIOPS = 0 }
            [pscustomobject]@{ Path = 'Disk 3 2.00 GB Bus 0 Lun 1 Target 0'; MaximumIOPS = 0 }
        )
        Mock Get-VM -ModuleName PsDriver { Get-FakeInstanceVM -Name $Name }
        Mock Get-VMHardDiskDrive { $PsdTest.Drives } -RemoveParameterType 'VM'
        Mock Set-VMHardDiskDrive { @($VMHardDiskDrive)[0].MaximumIOPS = $MaximumIOPS } -RemoveParameterType 'VMHardDiskDrive'
    }

    It 'limits the disks in the instance folder, not the config drive or other disks' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -InstanceDir $PsdTest.Dir -MaximumIops 500
        Assert-MatchesContract $result
        $result.maximum_iops | Should -Be 500
        @($result.disks) | Should -Be @("$($PsdTest.Dir)\root.vhdx", "$($PsdTest.Dir)\eph0.vhdx")
        @($PsdTest.Drives | ForEach-Object { $_.MaximumIOPS }) | Should -Be @(500, 500, 0, 0, 0)
    }

    It 'removes the limit with 0' {
        $PsdTest.Drives[0].MaximumIOPS = 500
        $result = & $script:ScriptPath -Name 'instance-00000001' -InstanceDir ($PsdTest.Dir + '\') -MaximumIops 0
        Assert-MatchesContract $result
        $PsdTest.Drives[0].MaximumIOPS | Should -Be 0
    }

    It 'fails with ObjectNotFound for a missing VM' {
        $failure = { & $script:ScriptPath -Name 'instance-00000099' -InstanceDir $PsdTest.Dir -MaximumIops 1 } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNotFound'
    }

    It 'changes nothing with -WhatIf' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -InstanceDir $PsdTest.Dir -MaximumIops 500 -WhatIf
        @($result.disks).Count | Should -Be 0
        Should -Invoke Set-VMHardDiskDrive -Times 0 -Exactly
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
