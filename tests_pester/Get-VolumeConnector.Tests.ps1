BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Get-VolumeConnector')
}

BeforeAll {
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverStorageFakes.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Get-VolumeConnector'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Get-VolumeConnector'
    Add-FakeStorageCommandStub
}

AfterAll {
    Remove-FakeStorageCommandStub
}

Describe 'Get-VolumeConnector' {
    BeforeEach {
        $PsdTest.Mpio = $true
        Mock Get-InitiatorPort {
            [pscustomobject]@{ ConnectionType = 'iSCSI'; NodeAddress = 'iqn.1991-05.com.microsoft:hv01'; PortAddress = 'ISCSI ANY PORT'; InstanceName = 'ROOT\ISCSIPRT\0000_0' }
            [pscustomobject]@{ ConnectionType = 'Fibre Channel'; NodeAddress = '20000090FA000001'; PortAddress = '10000090FA000001'; InstanceName = 'PCI\VEN_10DF\0' }
        }
        Mock Get-Module { if ($PsdTest.Mpio) { [pscustomobject]@{ Name = 'MPIO' } } } -ParameterFilter { $Name -eq 'MPIO' }
        Mock Get-MSDSMAutomaticClaimSettings { @{ iSCSI = $true; SAS = $false } }
        Mock Get-MSDSMSupportedHW { [pscustomobject]@{ VendorId = 'NETAPP'; ProductId = 'LUN C-Mode' } }
    }

    It 'reports the initiator IQN, the HBA ports and what MPIO claims' {
        $result = & $script:ScriptPath
        Assert-MatchesContract $result
        $result.iscsi_initiator | Should -Be 'iqn.1991-05.com.microsoft:hv01'
        $result.fc_ports[0].wwpn | Should -BeExactly '10000090fa000001'
        $result.fc_ports[0].wwnn | Should -BeExactly '20000090fa000001'
        $result.mpio.installed | Should -BeTrue
        $result.mpio.claimed_bus_types | Should -Be @('iSCSI')
        $result.mpio.supported_hardware | Should -Be 1
    }

    It 'reports MPIO missing without calling its cmdlets' {
        $PsdTest.Mpio = $false
        $result = & $script:ScriptPath
        Assert-MatchesContract $result
        $result.mpio.installed | Should -BeFalse
        Should -Invoke Get-MSDSMAutomaticClaimSettings -Times 0 -Exactly
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
