BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Move-Instance')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Move-Instance'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Move-Instance'
    Import-PsDriverModule

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Move-VM' -Parameter 'VM', 'DestinationHost', '-IncludeStorage', 'DestinationStoragePath', '-AsJob'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Move-Instance' {
    BeforeEach {
        $script:PsdTest = @{ Outcome = 'Completed' }
        Mock Get-VM { [pscustomobject]@{ Name = 'instance-0000002a'; Id = [guid]::NewGuid(); State = 'Running' } }
        Mock Move-VM { [pscustomobject]@{ Id = 1; State = $PsdTest.Outcome } }
        Mock Wait-Job {
            if ($PsdTest.Outcome -eq 'Running') {
                return $null
            }
            $Job
        }
        Mock Receive-Job {
            if ($PsdTest.Outcome -eq 'Failed') {
                throw 'The virtual machine cannot be moved: the destination does not support its configuration version.'
            }
        }
        Mock Get-VMHardDiskDrive { }
        Mock Stop-Job { }
        Mock Remove-Job { }
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $result = & $script:ScriptPath @Example

        Assert-MatchesContract -Result $result
    }

    It 'moves the VM with its storage' {
        $result = & $script:ScriptPath -Name 'instance-0000002a' -DestinationHost 'HV02' -IncludeStorage -DestinationPath 'C:\OpenStack\Instances\instance-0000002a'

        $result.moved | Should -BeTrue
        Should -Invoke Move-VM -Times 1 -Exactly -ParameterFilter { $IncludeStorage -and $DestinationStoragePath -eq 'C:\OpenStack\Instances\instance-0000002a' -and $DestinationHost -eq 'HV02' }
        Should -Invoke Remove-Job -Times 1 -Exactly
    }

    It 'moves only the VM on shared storage' {
        $null = & $script:ScriptPath -Name 'instance-0000002a' -DestinationHost 'HV02'

        Should -Invoke Move-VM -Times 1 -Exactly -ParameterFilter { -not $IncludeStorage }
    }

    It 'turns a Hyper-V refusal into PsDriver.MigrationFailed with its message' {
        $PsdTest.Outcome = 'Failed'

        $failure = { & $script:ScriptPath -Name 'instance-0000002a' -DestinationHost 'HV02' } | Should -Throw -ErrorId 'PsDriver.MigrationFailed' -PassThru

        $failure.Exception.Message | Should -BeLike '*configuration version*'
    }

    It 'cancels a migration that outlasts the timeout' {
        $PsdTest.Outcome = 'Running'

        { & $script:ScriptPath -Name 'instance-0000002a' -DestinationHost 'HV02' -TimeoutSeconds 5 } | Should -Throw -ErrorId 'PsDriver.MigrationTimeout'
        Should -Invoke Stop-Job -Times 1 -Exactly
    }

    It 'needs a destination path to move storage' {
        { & $script:ScriptPath -Name 'instance-0000002a' -DestinationHost 'HV02' -IncludeStorage } | Should -Throw -ErrorId 'PsDriver.DestinationPathRequired'
    }
}
