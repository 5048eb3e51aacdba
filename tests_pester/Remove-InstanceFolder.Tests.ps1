BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Remove-InstanceFolder')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Remove-InstanceFolder'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Remove-InstanceFolder'
    Import-PsDriverModule

    Add-CommandStub -Name 'Get-VM'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Remove-InstanceFolder' {
    BeforeEach {
        $script:Root = New-TestRoot
        $script:Folder = Join-Path -Path $script:Root -ChildPath 'instance-0000002a_revert'
        $script:PsdTest = @{ InUse = $null }
        $null = New-TestFile -Path (Join-Path -Path $script:Folder -ChildPath 'root.vhdx')

        Mock Get-VM -ModuleName PsDriver {
            if ($null -ne $PsdTest.InUse) {
                [pscustomobject]@{ Name = 'instance-0000002a' }
            }
        }
        Mock Get-VMHardDiskDrive -ModuleName PsDriver { [pscustomobject]@{ Path = $PsdTest.InUse } }
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $params = ConvertTo-TestValue -Value $Example -Root $script:Root

        $result = & $script:ScriptPath @params

        Assert-MatchesContract -Result $result
    }

    It 'deletes the folder' {
        $result = & $script:ScriptPath -Path $script:Folder

        $result.existed | Should -BeTrue
        $result.removed | Should -BeTrue
        @($result.files) | Should -Be @('root.vhdx')
        Test-Path -LiteralPath $script:Folder | Should -BeFalse
    }

    It 'is repeatable' {
        $null = & $script:ScriptPath -Path $script:Folder

        $result = & $script:ScriptPath -Path $script:Folder

        $result.existed | Should -BeFalse
    }

    It 'leaves a folder a VM still uses alone' {
        $PsdTest.InUse = Join-Path -Path $script:Folder -ChildPath 'root.vhdx'

        { & $script:ScriptPath -Path $script:Folder } | Should -Throw -ErrorId 'PsDriver.InstanceDirInUse'
        Test-Path -LiteralPath $script:Folder | Should -BeTrue
    }

    It 'refuses a drive root' {
        { & $script:ScriptPath -Path 'C:\' } | Should -Throw -ErrorId 'PsDriver.UnsafeInstanceDir'
    }
}
