BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Remove-Instance')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Remove-Instance'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Remove-Instance'
    Import-PsDriverModule
    $script:Uuid = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f'

    # A fake VM with its hard disk and DVD paths; $Parents maps a disk path to its parent.
    function Add-FakeVM {
        param(
            [Parameter(Mandatory)]
            [string]$Name,

            [string]$State = 'Running',

            [AllowEmptyString()]
            [string]$Notes = $script:Uuid,

            [string[]]$Disks = @(),

            [string[]]$Dvds = @()
        )
        $vm = [pscustomobject]@{
            Name  = $Name
            Id    = [guid]::NewGuid()
            State = $State
            Notes = $Notes
            Disks = $Disks
            Dvds  = $Dvds
        }
        $PsdTest.Vms.Add($vm)
        $vm
    }

    function Set-FakeParent {
        param(
            [Parameter(Mandatory)]
            [string]$Path,

            [Parameter(Mandatory)]
            [string]$Parent
        )
        $PsdTest.Parents[(Get-FakeKey -Path $Path)] = $Parent
    }

    # The usual instance: root.vhdx (child of the cached image), eph0.vhdx, configdrive.iso, console.log.
    function New-InstanceFolder {
        $root = Join-Path -Path $TestDrive -ChildPath ([guid]::NewGuid().ToString('N'))
        $files = @{
            Root    = $root
            Base    = New-TestFile -Path (Join-Path -Path $root -ChildPath '_base/image.vhdx')
            Dir     = Join-Path -Path $root -ChildPath 'instance-0000002a'
        }
        $files.RootDisk = New-TestFile -Path (Join-Path -Path $files.Dir -ChildPath 'root.vhdx')
        $files.Eph = New-TestFile -Path (Join-Path -Path $files.Dir -ChildPath 'eph0.vhdx')
        $files.ConfigDrive = New-TestFile -Path (Join-Path -Path $files.Dir -ChildPath 'configdrive.iso')
        $files.Log = New-TestFile -Path (Join-Path -Path $files.Dir -ChildPath 'console.log')
        Set-FakeParent -Path $files.RootDisk -Parent $files.Base
        $files
    }

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name'
    Add-CommandStub -Name 'Get-VMSnapshot' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VMHardDiskDrive' -Parameter 'VM', 'VMSnapshot'
    Add-CommandStub -Name 'Get-VMDvdDrive' -Parameter 'VM'
    Add-CommandStub -Name 'Get-VHD' -Parameter 'Path'
    Add-CommandStub -Name 'Stop-VM' -Parameter 'VM', '-TurnOff', '-Force'
    Add-CommandStub -Name 'Remove-VM' -Parameter 'VM', '-Force'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Remove-Instance' {
    BeforeEach {
        # Open vSwitch: the helpers run the native ovs-vsctl; here they are stand-ins.
        Mock Resolve-PsDriverOvsVsctl { 'C:\Program Files\Open vSwitch\bin\ovs-vsctl.exe' }
        Mock Add-PsDriverOvsPort { }
        Mock Remove-PsDriverOvsPort { }
        # Shared with the mocks. Mock bodies run inside the tested script's scopes (its $script: scope
        # and StrictMode), so they reach this state through one unqualified, uniquely named variable.
        $script:PsdTest = @{
            Vms       = [System.Collections.Generic.List[object]]::new()
            Snapshots = [System.Collections.Generic.List[object]]::new()
            Parents   = @{}
            Files     = $null
            Vm        = $null
            Locked    = 0
            MergePolls = 0
            Merging   = $null
        }

        Mock Get-VM -ModuleName PsDriver {
            if ($PesterBoundParameters.ContainsKey('Name')) {
                return @($PsdTest.Vms | Where-Object { $_.Name -like @($Name)[0] })
            }
            $PsdTest.Vms.ToArray()
        }
        Mock Get-VMSnapshot {
            $target = @($VM)[0]
            @($PsdTest.Snapshots | Where-Object { $_.VMName -eq $target.Name })
        } -RemoveParameterType 'VM'
        Mock Get-VMHardDiskDrive {
            if ($PesterBoundParameters.ContainsKey('VMSnapshot')) {
                $owner = @($VMSnapshot)[0]
            }
            else {
                $owner = @($VM)[0]
            }
            foreach ($disk in $owner.Disks) {
                [pscustomobject]@{ VMName = $owner.Name; Path = $disk }
            }
        } -RemoveParameterType 'VM', 'VMSnapshot'
        Mock Get-VMDvdDrive {
            $target = @($VM)[0]
            foreach ($dvd in $target.Dvds) {
                [pscustomobject]@{ VMName = $target.Name; Path = $dvd }
            }
        } -RemoveParameterType 'VM'
        Mock Get-VHD {
            if (-not (Test-Path -LiteralPath $Path)) {
                throw "The file '$Path' was not found."
            }
            [pscustomobject]@{ Path = $Path; ParentPath = $PsdTest.Parents[(Get-FakeKey -Path $Path)] }
        }
        # Remove-PsDriverVM (PsDriver.psm1) turns the VM off and removes it.
        Mock Stop-VM -ModuleName PsDriver {
            @($VM)[0].State = 'Off'
        } -RemoveParameterType 'VM'
        Mock Remove-VM -ModuleName PsDriver {
            Remove-FakeVM -VM $VM
            $PsdTest.Snapshots.Clear()
        } -RemoveParameterType 'VM'
        Mock Start-Sleep { }
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $root = Join-Path -Path $TestDrive -ChildPath ([guid]::NewGuid().ToString('N'))
        $params = @{}
        foreach ($key in $Example.Keys) {
            $params[$key] = $Example[$key]
        }
        if ($params.ContainsKey('InstanceDir')) {
            $params['InstanceDir'] = ConvertTo-TestPath -Path $params['InstanceDir'] -Root $root
            $null = New-TestFile -Path (Join-Path -Path $params['InstanceDir'] -ChildPath 'root.vhdx')
        }
        if ($params['Name'] -ne 'instance-00000099') {
            $disks = @()
            if ($params.ContainsKey('InstanceDir')) {
                $disks = @(Join-Path -Path $params['InstanceDir'] -ChildPath 'root.vhdx')
            }
            $null = Add-FakeVM -Name $params['Name'] -Disks $disks
        }

        $result = & $script:ScriptPath @params

        Assert-MatchesContract -Result $result
        $result.name | Should -Be $params['Name']
    }

    Context 'a missing VM' {
        It 'is not an error' {
            $result = & $script:ScriptPath -Name 'instance-00000099'

            Assert-MatchesContract -Result $result
            $result.existed | Should -BeFalse
            $result.vm_id | Should -BeNullOrEmpty
            $result.previous_state | Should -BeNullOrEmpty
            $result.instance_dir_removed | Should -BeFalse
            Should -Invoke Remove-VM -ModuleName PsDriver -Times 0 -Exactly
        }

        It 'still deletes the Open vSwitch ports of OvsPortId' {
            $result = & $script:ScriptPath -Name 'instance-00000099' -OvsPortId @('p1', 'p2')

            Assert-MatchesContract -Result $result
            $result.existed | Should -BeFalse
            @($result.ovs_ports_removed) | Should -Be @('p1', 'p2')
            Should -Invoke Remove-PsDriverOvsPort -Times 2 -Exactly
        }

        It 'is not confused with a host that cannot be asked' {
            $files = New-InstanceFolder
            Mock Get-VM -ModuleName PsDriver { throw [System.UnauthorizedAccessException]::new('You do not have the required permission to complete this task.') }

            { & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $files.Dir -DeleteFiles } | Should -Throw '*required permission*'

            Should -Invoke Remove-VM -ModuleName PsDriver -Times 0 -Exactly
            Test-Path -LiteralPath $files.Dir | Should -BeTrue
        }

        It 'still has its folder removed with -DeleteFiles' {
            $files = New-InstanceFolder

            $result = & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $files.Dir -DeleteFiles

            Assert-MatchesContract -Result $result
            $result.existed | Should -BeFalse
            $result.instance_dir_removed | Should -BeTrue
            @($result.removed_files).Count | Should -Be 0
            Test-Path -LiteralPath $files.Dir | Should -BeFalse
            Test-Path -LiteralPath $files.Base | Should -BeTrue
        }
    }

    Context 'an existing VM' {
        BeforeEach {
            $PsdTest.Files = New-InstanceFolder
            $PsdTest.Vm = Add-FakeVM -Name 'instance-0000002a' -Disks @($PsdTest.Files.RootDisk, $PsdTest.Files.Eph) -Dvds @($PsdTest.Files.ConfigDrive)
        }

        It 'is turned off and removed, and only the files under InstanceDir are deleted' {
            $result = & $script:ScriptPath -Name 'instance-0000002a' -InstanceUuid $script:Uuid -InstanceDir $PsdTest.Files.Dir -DeleteFiles

            Assert-MatchesContract -Result $result
            $result.existed | Should -BeTrue
            $result.vm_id | Should -Be $PsdTest.Vm.Id.ToString()
            $result.previous_state | Should -Be 'Running'
            @($result.removed_files) | Should -Be @($PsdTest.Files.RootDisk, $PsdTest.Files.Eph, $PsdTest.Files.ConfigDrive)
            $result.instance_dir_removed | Should -BeTrue
            Test-Path -LiteralPath $PsdTest.Files.Dir | Should -BeFalse
            Test-Path -LiteralPath $PsdTest.Files.Base -PathType Leaf | Should -BeTrue
            Should -Invoke Stop-VM -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter { $TurnOff -and $Force }
            Should -Invoke Remove-VM -ModuleName PsDriver -Times 1 -Exactly
            $PsdTest.Vms.Count | Should -Be 0
        }

        It 'keeps every file without -DeleteFiles' {
            $result = & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $PsdTest.Files.Dir

            Assert-MatchesContract -Result $result
            @($result.removed_files).Count | Should -Be 0
            $result.instance_dir_removed | Should -BeFalse
            foreach ($path in @($PsdTest.Files.RootDisk, $PsdTest.Files.Eph, $PsdTest.Files.ConfigDrive, $PsdTest.Files.Log)) {
                Test-Path -LiteralPath $path -PathType Leaf | Should -BeTrue
            }
            Should -Invoke Remove-VM -ModuleName PsDriver -Times 1 -Exactly
            Should -Invoke Get-VHD -Times 0 -Exactly
        }

        It 'removes the checkpoints with the VM, waits for their merge, then deletes the disks' {
            $current = New-TestFile -Path (Join-Path -Path $PsdTest.Files.Dir -ChildPath 'root_6B1F.avhdx')
            Set-FakeParent -Path $current -Parent $PsdTest.Files.RootDisk
            $PsdTest.Vm.Disks = @($current, $PsdTest.Files.Eph)
            $PsdTest.Snapshots.Add([pscustomobject]@{ Name = 'before upgrade'; VMName = 'instance-0000002a'; Disks = @($PsdTest.Files.RootDisk, $PsdTest.Files.Eph) })
            # Remove-VM merges the .avhdx into root.vhdx after the VM is gone: here, three polls later.
            $PsdTest.MergePolls = 3
            $PsdTest.Merging = $current
            Mock Start-Sleep {
                $PsdTest.MergePolls = $PsdTest.MergePolls - 1
                if ($PsdTest.MergePolls -eq 0) {
                    [System.IO.File]::Delete($PsdTest.Merging)
                }
            }
            Mock Remove-Item {
                throw [System.IO.IOException]::new('The process cannot access the file because it is being used by another process.')
            } -ParameterFilter { $PsdTest.MergePolls -gt 0 -and @($LiteralPath)[0] -in @($PsdTest.Merging, $PsdTest.Files.RootDisk) }

            $result = & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $PsdTest.Files.Dir -DeleteFiles

            Assert-MatchesContract -Result $result
            $result.snapshots_removed | Should -Be 1
            @($result.removed_files) | Should -Be @($PsdTest.Files.RootDisk, $PsdTest.Files.Eph, $PsdTest.Files.ConfigDrive)
            Should -Invoke Start-Sleep -Times 3 -Exactly -ParameterFilter { $Seconds -eq 1 }
            $result.instance_dir_removed | Should -BeTrue
            Test-Path -LiteralPath $PsdTest.Files.Base | Should -BeTrue
        }

        It 'gives up with CheckpointMergeTimeout when the merge outlasts MergeTimeoutSeconds' {
            $current = New-TestFile -Path (Join-Path -Path $PsdTest.Files.Dir -ChildPath 'root_6B1F.avhdx')
            Set-FakeParent -Path $current -Parent $PsdTest.Files.RootDisk
            $PsdTest.Vm.Disks = @($current, $PsdTest.Files.Eph)
            $PsdTest.Snapshots.Add([pscustomobject]@{ Name = 'before upgrade'; VMName = 'instance-0000002a'; Disks = @($PsdTest.Files.RootDisk, $PsdTest.Files.Eph) })

            $failure = $null
            try {
                $null = & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $PsdTest.Files.Dir -DeleteFiles -MergeTimeoutSeconds 0
            }
            catch {
                $failure = $_
            }

            $failure | Should -Not -BeNullOrEmpty
            $failure.FullyQualifiedErrorId | Should -BeLike 'PsDriver.CheckpointMergeTimeout*'
            $failure.CategoryInfo.Category | Should -Be 'OperationTimeout'
            $PsdTest.Vms.Count | Should -Be 0
            Test-Path -LiteralPath $PsdTest.Files.RootDisk | Should -BeTrue
        }

        It 'is not turned off when it is <State>' -ForEach @(
            @{ State = 'Off' }
            @{ State = 'Saved' }
            @{ State = 'OffCritical' }
            @{ State = 'SavedCritical' }
        ) {
            $PsdTest.Vm.State = $State

            $result = & $script:ScriptPath -Name 'instance-0000002a'

            $result.previous_state | Should -Be $State
            Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
            Should -Invoke Remove-VM -ModuleName PsDriver -Times 1 -Exactly
        }

        It 'is turned off when it is Paused' {
            $PsdTest.Vm.State = 'Paused'

            $null = & $script:ScriptPath -Name 'instance-0000002a'

            Should -Invoke Stop-VM -ModuleName PsDriver -Times 1 -Exactly
        }

        It 'accepts its UUID in any case, with braces, and with further Notes lines' {
            $PsdTest.Vm.Notes = '{' + $script:Uuid.ToUpperInvariant() + "}`r`nproject 6f1e2d3c"

            $result = & $script:ScriptPath -Name 'instance-0000002a' -InstanceUuid $script:Uuid.ToUpperInvariant()

            $result.existed | Should -BeTrue
            Should -Invoke Remove-VM -ModuleName PsDriver -Times 1 -Exactly
        }

        It 'is left alone when its Notes carry <Case>' -ForEach @(
            @{ Case = 'another UUID'; Notes = '0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b' }
            @{ Case = 'no UUID'; Notes = 'built by hand' }
            @{ Case = 'nothing'; Notes = '' }
        ) {
            $PsdTest.Vm.Notes = $Notes

            $failure = { & $script:ScriptPath -Name 'instance-0000002a' -InstanceUuid $script:Uuid -InstanceDir $PsdTest.Files.Dir -DeleteFiles } |
                Should -Throw -ErrorId 'PsDriver.InstanceUuidMismatch' -PassThru

            $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
            Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
            Should -Invoke Remove-VM -ModuleName PsDriver -Times 0 -Exactly
            Test-Path -LiteralPath $PsdTest.Files.RootDisk | Should -BeTrue
        }

        It 'retries a file that is still locked' {
            $PsdTest.Locked = 2
            Mock Remove-Item {
                if ($PsdTest.Locked -gt 0) {
                    $PsdTest.Locked = $PsdTest.Locked - 1
                    throw [System.IO.IOException]::new('The process cannot access the file because it is being used by another process.')
                }
                [System.IO.File]::Delete(@($LiteralPath)[0])
            } -ParameterFilter { @($LiteralPath)[0] -eq $PsdTest.Files.RootDisk }

            $result = & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $PsdTest.Files.Dir -DeleteFiles

            @($result.removed_files) | Should -Contain $PsdTest.Files.RootDisk
            Should -Invoke Start-Sleep -Times 2 -Exactly
            $result.instance_dir_removed | Should -BeTrue
        }

        It 'gives up on a file locked for good' {
            Mock Remove-Item {
                throw [System.IO.IOException]::new('The process cannot access the file because it is being used by another process.')
            } -ParameterFilter { @($LiteralPath)[0] -eq $PsdTest.Files.Eph }

            { & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $PsdTest.Files.Dir -DeleteFiles } | Should -Throw '*being used by another process*'

            Should -Invoke Start-Sleep -Times 4 -Exactly
            Test-Path -LiteralPath $PsdTest.Files.Eph | Should -BeTrue
        }

        It 'changes nothing with -WhatIf' {
            $result = & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $PsdTest.Files.Dir -DeleteFiles -WhatIf

            Assert-MatchesContract -Result $result
            $result.existed | Should -BeTrue
            $result.vm_id | Should -Be $PsdTest.Vm.Id.ToString()
            $result.instance_dir_removed | Should -BeFalse
            @($result.removed_files).Count | Should -Be 0
            Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
            Should -Invoke Remove-VM -ModuleName PsDriver -Times 0 -Exactly
            Test-Path -LiteralPath $PsdTest.Files.Dir | Should -BeTrue
        }
    }

    Context 'refused requests' {
        It 'refuses -DeleteFiles without InstanceDir' {
            $failure = { & $script:ScriptPath -Name 'instance-0000002a' -DeleteFiles } |
                Should -Throw -ErrorId 'PsDriver.InstanceDirRequired' -PassThru

            $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        }

        It 'refuses the InstanceDir <Dir>' -ForEach @(
            @{ Dir = 'C:\' }
            @{ Dir = 'D:' }
            @{ Dir = '\\fileserver\share' }
            @{ Dir = '\\fileserver\share\' }
            @{ Dir = 'instances\instance-0000002a' }
        ) {
            $failure = { & $script:ScriptPath -Name 'instance-0000002a' -InstanceDir $Dir -DeleteFiles } |
                Should -Throw -ErrorId 'PsDriver.UnsafeInstanceDir' -PassThru

            $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
            Should -Invoke Get-VM -ModuleName PsDriver -Times 0 -Exactly
        }

        It 'refuses an InstanceUuid that is not a UUID' {
            { & $script:ScriptPath -Name 'instance-0000002a' -InstanceUuid 'abc' } | Should -Throw -ErrorId 'PsDriver.InvalidInstanceUuid'
        }

        It 'refuses a name shared by two VMs' {
            $null = Add-FakeVM -Name 'instance-0000002a'
            $null = Add-FakeVM -Name 'instance-0000002a'

            $failure = { & $script:ScriptPath -Name 'instance-0000002a' } | Should -Throw -ErrorId 'PsDriver.VMNameNotUnique' -PassThru

            $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
            Should -Invoke Remove-VM -ModuleName PsDriver -Times 0 -Exactly
        }
    }
}
