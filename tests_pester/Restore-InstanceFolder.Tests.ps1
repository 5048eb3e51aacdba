BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Restore-InstanceFolder')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Restore-InstanceFolder'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Restore-InstanceFolder'
    Import-PsDriverModule

    Add-CommandStub -Name 'Get-VM'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Restore-InstanceFolder' {
    BeforeEach {
        $script:Root = New-TestRoot
        $script:Dir = Join-Path -Path $script:Root -ChildPath 'instance-0000002a'
        $script:Revert = "$($script:Dir)_revert"
        $script:PsdTest = @{ InUse = $null }
        $null = New-TestFile -Path (Join-Path -Path $script:Revert -ChildPath 'root.vhdx')

        Mock Get-VM -ModuleName PsDriver {
            if ($null -ne $PsdTest.InUse) {
                [pscustomobject]@{ Name = 'instance-0000002a' }
            }
        }
        Mock Get-VMHardDiskDrive -ModuleName PsDriver { [pscustomobject]@{ Path = $PsdTest.InUse } }
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $params = ConvertTo-TestValue -Value $Example -Root $script:Root
        $null = New-TestFile -Path (Join-Path -Path $params['RevertDir'] -ChildPath 'root.vhdx')

        $result = & $script:ScriptPath @params

        Assert-MatchesContract -Result $result
    }

    It 'moves the revert folder back' {
        $result = & $script:ScriptPath -InstanceDir $script:Dir -RevertDir $script:Revert

        Assert-MatchesContract -Result $result
        $result.restored | Should -BeTrue
        $result.replaced_instance_dir | Should -BeFalse
        @($result.files) | Should -Be @('root.vhdx')
        Test-Path -LiteralPath $script:Revert | Should -BeFalse
    }

    It 'replaces what the resize left in the instance folder' {
        $null = New-TestFile -Path (Join-Path -Path $script:Dir -ChildPath 'resized.vhdx')

        $result = & $script:ScriptPath -InstanceDir $script:Dir -RevertDir $script:Revert

        $result.replaced_instance_dir | Should -BeTrue
        @($result.files) | Should -Be @('root.vhdx')
    }

    It 'leaves an instance folder a VM still uses alone' {
        $PsdTest.InUse = New-TestFile -Path (Join-Path -Path $script:Dir -ChildPath 'root.vhdx')

        { & $script:ScriptPath -InstanceDir $script:Dir -RevertDir $script:Revert } | Should -Throw -ErrorId 'PsDriver.InstanceDirInUse'
        Test-Path -LiteralPath $script:Revert | Should -BeTrue
    }

    It 'is repeatable once the files are back' {
        $null = & $script:ScriptPath -InstanceDir $script:Dir -RevertDir $script:Revert

        $result = & $script:ScriptPath -InstanceDir $script:Dir -RevertDir $script:Revert

        $result.restored | Should -BeFalse
    }

    It 'reports that there is nothing to revert to' {
        Remove-Item -LiteralPath $script:Revert -Recurse -Force

        { & $script:ScriptPath -InstanceDir $script:Dir -RevertDir $script:Revert } | Should -Throw -ErrorId 'PsDriver.RevertDirNotFound'
    }
}
