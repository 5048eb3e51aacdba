BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Initialize-ComputeHost')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Initialize-ComputeHost'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Initialize-ComputeHost'
    Import-PsDriverModule

    function New-FakeError {
        param(
            [Parameter(Mandatory)]
            [System.Exception]$Exception,

            [Parameter(Mandatory)]
            [System.Management.Automation.ErrorCategory]$Category
        )
        [System.Management.Automation.ErrorRecord]::new($Exception, 'Fake.Failure', $Category, $null)
    }

    Add-CommandStub -Name 'Get-VMHost'
    Add-CommandStub -Name 'Get-VMSwitch'
    Add-CommandStub -Name 'Get-VMHostSupportedVersion' -Parameter '-Default'
    Add-CommandStub -Name 'Get-CimInstance' -Parameter 'Namespace', 'ClassName', 'Filter'
    Add-CommandStub -Name 'Get-Service' -Parameter 'Name'
    Add-CommandStub -Name 'Get-VM'
    Add-CommandStub -Name 'Get-VMComPort' -Parameter 'VM'

    # A fake VM: its Notes carry the instance UUID unless -Notes says otherwise.
    function New-FakeInstanceVM {
        param(
            [Parameter(Mandatory)]
            [string]$Name,

            [string]$State = 'Running',

            [AllowNull()]
            [string]$Notes = [guid]::NewGuid().ToString()
        )
        [pscustomobject]@{ Name = $Name; Id = [guid]::NewGuid(); State = $State; Notes = $Notes }
    }
}

AfterAll {
    Remove-CommandStub
}

Describe 'Initialize-ComputeHost' {
    BeforeEach {
        # Shared with the mocks. Mock bodies run inside the tested script's scopes (its $script: scope
        # and StrictMode), so they reach this state through one unqualified, uniquely named variable.
        $script:PsdTest = @{
            OsVersion      = '10.0.20348'
            HostFailure    = $null
            ClusterRunning = $false
            NetworkDrive   = $false
            Vms            = @()
            LoggerRunning  = @()
        }
        $script:Root = Join-Path -Path $TestDrive -ChildPath ([guid]::NewGuid().ToString('N'))
        $script:Instances = Join-Path -Path $script:Root -ChildPath 'Instances'

        Mock Get-VMHost {
            if ($null -ne $PsdTest.HostFailure) {
                throw $PsdTest.HostFailure
            }
            [pscustomobject]@{ ComputerName = 'HV01'; NumaSpanningEnabled = $true }
        }
        Mock Get-VMSwitch {
            [pscustomobject]@{ Name = 'external'; SwitchType = 'External'; Id = [guid]'6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b' }
            [pscustomobject]@{ Name = 'internal-mgmt'; SwitchType = 'Internal'; Id = [guid]'1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d' }
        }
        Mock Get-VMHostSupportedVersion {
            [pscustomobject]@{ Name = 'Microsoft Windows Server 2022'; Version = [version]'10.0' }
        }
        Mock Get-CimInstance {
            if ($ClassName -eq 'Win32_OperatingSystem') {
                return [pscustomobject]@{ Version = $PsdTest.OsVersion; Caption = 'Microsoft Windows Server 2022 Datacenter' }
            }
            if ($ClassName -eq 'Win32_LogicalDisk' -and $PsdTest.NetworkDrive) {
                return [pscustomobject]@{ DeviceID = 'Z:'; DriveType = 4; ProviderName = '\\fileserver\openstack' }
            }
            if ($ClassName -eq 'MSCluster_Cluster') {
                return [pscustomobject]@{ Name = 'hvcluster01' }
            }
        }
        Mock Get-Service {
            if ($PsdTest.ClusterRunning) {
                [pscustomobject]@{ Name = 'ClusSvc'; Status = 'Running' }
            }
        }
        Mock Get-Item {
            [pscustomobject]@{ VersionInfo = [pscustomobject]@{ ProductVersion = '10.0.20348.1' } }
        } -ParameterFilter { "$LiteralPath" -like '*vmms.exe' }
        # Console loggers: the script lists the VMs and reads the serial ports of the running
        # instances in one call (Get-PsDriverConsolePipePath in PsDriver.psm1 asks per VM only
        # when that call fails); Invoke-PsDriverConsoleLogger launches through
        # Start-PsDriverConsoleLogger (tested with Start-InstanceConsoleLogger.Tests.ps1), mocked here.
        Mock Get-VM { $PsdTest.Vms }
        Register-TestMock -CommandName 'Get-VMComPort' -Scope Both -RemoveParameterType 'VM' -MockWith {
            foreach ($owner in @($VM)) {
                [pscustomobject]@{ VMId = $owner.Id; VMName = $owner.Name; Name = 'COM 1'; Path = '\\.\pipe\' + $owner.Name + '_ro' }
                [pscustomobject]@{ VMId = $owner.Id; VMName = $owner.Name; Name = 'COM 2'; Path = '' }
            }
        }
        Mock Start-PsDriverConsoleLogger -ModuleName PsDriver {
            if ($PsdTest.LoggerRunning -contains $VMName) {
                return [ordered]@{ started = $false; running = $true; pid = $null }
            }
            [ordered]@{ started = $true; running = $true; pid = 4242 }
        }
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $PsdTest.Vms = @(New-FakeInstanceVM -Name 'instance-00000001')
        $params = ConvertTo-TestValue -Value $Example -Root $script:Root

        $result = & $script:ScriptPath @params

        Assert-MatchesContract -Result $result
        $result.instances_path.exists | Should -BeTrue
    }

    It 'creates the instances folder and the image cache folder, and leaves no probe file' {
        $result = & $script:ScriptPath -InstancesPath $script:Instances

        Assert-MatchesContract -Result $result
        $base = Join-Path -Path $script:Instances -ChildPath '_base'
        @($result.created) | Should -Be @($script:Instances, $base)
        $result.instances_path.path | Should -Be $script:Instances
        $result.instances_path.exists | Should -BeTrue
        $result.instances_path.kind | Should -Be 'local'
        $result.base_path | Should -Be $base
        $result.base_path_exists | Should -BeTrue
        Test-Path -LiteralPath $base -PathType Container | Should -BeTrue
        @(Get-ChildItem -LiteralPath $script:Instances -Force).Name | Should -Be @('_base')
    }

    It 'reports the host' {
        $result = & $script:ScriptPath -InstancesPath $script:Instances

        $result.hostname | Should -Be 'HV01'
        $result.os_version | Should -Be '10.0.20348'
        $result.os_caption | Should -Be 'Microsoft Windows Server 2022 Datacenter'
        $result.hyperv_version | Should -BeIn @('10.0.20348.1', '10.0.20348')
        $result.default_vm_version | Should -Be '10.0'
        $result.numa_spanning_enabled | Should -BeTrue
        $result.is_cluster_node | Should -BeFalse
        $result.cluster_name | Should -BeNullOrEmpty
        $result.powershell_version | Should -Be $PSVersionTable.PSVersion.ToString()
        $result.powershell_edition | Should -BeIn @('Desktop', 'Core')
        $result.hyperv_module_native | Should -BeTrue
    }

    It 'reports whether this PowerShell uses the Hyper-V module of Windows <OsVersion> natively' -ForEach @(
        @{ OsVersion = '10.0.14393'; NativeInCore = $false }
        @{ OsVersion = '10.0.17763'; NativeInCore = $true }
        @{ OsVersion = '10.0.26100'; NativeInCore = $true }
    ) {
        $PsdTest.OsVersion = $OsVersion
        $PsdTest.Vms = @(New-FakeInstanceVM -Name 'instance-00000001')
        $isCore = $PSVersionTable.PSEdition -eq 'Core'
        $expected = (-not $isCore) -or $NativeInCore

        $output = @(& $script:ScriptPath -InstancesPath $script:Instances -ConsoleLogFileName 'console.log' 3>&1)
        $warnings = @($output | Where-Object { $_ -is [System.Management.Automation.WarningRecord] })
        $result = @($output | Where-Object { $_ -isnot [System.Management.Automation.WarningRecord] })[0]

        Assert-MatchesContract -Result $result
        $result.powershell_edition | Should -Be $(if ($isCore) { 'Core' } else { 'Desktop' })
        $result.hyperv_module_native | Should -Be $expected
        if ($expected) {
            @($result.console_loggers).Count | Should -Be 1
        }
        else {
            # PowerShell 7 on Windows Server 2016: no VM object is handed to a Hyper-V cmdlet.
            @($result.console_loggers).Count | Should -Be 0
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 0 -Exactly
            $warnings[0].Message | Should -BeLike 'Console loggers not started*cannot use the Hyper-V module*natively*'
        }
    }

    It 'reports the volume capacity on Windows' -Skip:(-not $IsWindows) {
        $result = & $script:ScriptPath -InstancesPath $script:Instances

        $result.instances_path.total_bytes | Should -BeGreaterThan 0
        $result.instances_path.free_bytes | Should -BeGreaterThan 0
        $result.instances_path.total_gb | Should -Be ([math]::Round($result.instances_path.total_bytes / 1GB, 2))
    }

    It 'creates nothing when the folders exist' {
        $null = New-Item -ItemType Directory -Path (Join-Path -Path $script:Instances -ChildPath '_base') -Force

        $result = & $script:ScriptPath -InstancesPath ($script:Instances + [System.IO.Path]::DirectorySeparatorChar)

        Assert-MatchesContract -Result $result
        @($result.created).Count | Should -Be 0
        $result.instances_path.path | Should -Be $script:Instances
    }

    It 'uses BaseDirectoryName for the image cache folder' {
        $result = & $script:ScriptPath -InstancesPath $script:Instances -BaseDirectoryName 'cache'

        $result.base_path | Should -Be (Join-Path -Path $script:Instances -ChildPath 'cache')
        Test-Path -LiteralPath $result.base_path -PathType Container | Should -BeTrue
    }

    It 'refuses a BaseDirectoryName with a path separator' {
        { & $script:ScriptPath -InstancesPath $script:Instances -BaseDirectoryName '..\cache' } | Should -Throw
        Test-Path -LiteralPath $script:Instances | Should -BeFalse
    }

    It 'lists the switches and, case-insensitively, the required ones that are missing' {
        $result = & $script:ScriptPath -InstancesPath $script:Instances -RequiredSwitches 'EXTERNAL', 'br-int', 'br-int'

        Assert-MatchesContract -Result $result
        @($result.switches | ForEach-Object { $_.name }) | Should -Be @('external', 'internal-mgmt')
        $result.switches[0].type | Should -Be 'External'
        $result.switches[0].id | Should -Be '6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b'
        @($result.missing_switches) | Should -Be @('br-int')
    }

    It 'recognises a failover cluster node' {
        $PsdTest.ClusterRunning = $true

        $result = & $script:ScriptPath -InstancesPath $script:Instances

        Assert-MatchesContract -Result $result
        $result.is_cluster_node | Should -BeTrue
        $result.cluster_name | Should -Be 'hvcluster01'
    }

    It 'classifies <Path> as <Kind>' -ForEach @(
        @{ Path = '\\localhost\psdriver-missing-share\Instances'; Kind = 'unc'; Network = $false }
        @{ Path = 'C:\ClusterStorage\Volume1\Instances'; Kind = 'csv'; Network = $false }
        @{ Path = 'c:\clusterstorage\volume2\OpenStack'; Kind = 'csv'; Network = $false }
        @{ Path = 'Z:\Instances'; Kind = 'mapped'; Network = $true }
        @{ Path = 'C:\OpenStack\Instances'; Kind = 'local'; Network = $false }
    ) {
        $PsdTest.NetworkDrive = $Network
        Mock Test-Path { $true }
        Mock New-Item { }
        Mock Remove-Item { }

        $result = & $script:ScriptPath -InstancesPath $Path

        Assert-MatchesContract -Result $result
        $result.instances_path.kind | Should -Be $Kind
        $result.instances_path.path | Should -Be $Path
    }

    It 'checks the root of a <Kind> path: <Root>' -ForEach @(
        @{ Path = '\\fileserver\openstack\Instances'; Kind = 'unc'; Root = '\\fileserver\openstack' }
        @{ Path = 'C:\ClusterStorage\Volume1\Instances'; Kind = 'csv'; Root = 'C:\ClusterStorage\Volume1' }
    ) {
        Mock Test-Path { $false }

        $failure = { & $script:ScriptPath -InstancesPath $Path } | Should -Throw -ErrorId 'PsDriver.InstancesPathNotFound' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $failure.Exception.Message | Should -BeLike "*'$Root'*"
        Should -Invoke Test-Path -Times 1 -Exactly -ParameterFilter { $LiteralPath -eq $Root }
    }

    It 'refuses the relative path <Path>' -ForEach @(
        @{ Path = 'Instances' }
        @{ Path = 'C:Instances' }
        @{ Path = '.\Instances' }
    ) {
        $failure = { & $script:ScriptPath -InstancesPath $Path } | Should -Throw -ErrorId 'PsDriver.InvalidInstancesPath' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }

    It 'reports PermissionDenied when the folder cannot be created' {
        Mock New-Item {
            throw (New-FakeError -Exception ([System.UnauthorizedAccessException]::new("Access to the path '$Path' is denied.")) -Category PermissionDenied)
        } -ParameterFilter { $ItemType -eq 'Directory' }

        $failure = { & $script:ScriptPath -InstancesPath $script:Instances } | Should -Throw -ErrorId 'PsDriver.InstancesPathAccessDenied' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'PermissionDenied'
        $failure.Exception.Message | Should -BeLike '*is denied*'
    }

    It 'reports ObjectNotFound when the folder cannot be created for another reason' {
        Mock New-Item {
            throw (New-FakeError -Exception ([System.IO.IOException]::new('The network name cannot be found.')) -Category WriteError)
        } -ParameterFilter { $ItemType -eq 'Directory' }

        $failure = { & $script:ScriptPath -InstancesPath $script:Instances } | Should -Throw -ErrorId 'PsDriver.InstancesPathNotFound' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $failure.Exception.Message | Should -BeLike '*network name cannot be found*'
    }

    It 'reports PermissionDenied when the folder is read-only for the service' {
        $null = New-Item -ItemType Directory -Path (Join-Path -Path $script:Instances -ChildPath '_base') -Force
        Mock New-Item {
            throw (New-FakeError -Exception ([System.UnauthorizedAccessException]::new('Access is denied.')) -Category PermissionDenied)
        } -ParameterFilter { $ItemType -eq 'File' }

        $failure = { & $script:ScriptPath -InstancesPath $script:Instances } | Should -Throw -ErrorId 'PsDriver.InstancesPathAccessDenied' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'PermissionDenied'
    }

    It 'reports a missing Hyper-V module as NotInstalled' {
        Mock Get-Command { } -ParameterFilter { $Name -contains 'Get-VMHost' }

        $failure = { & $script:ScriptPath -InstancesPath $script:Instances } | Should -Throw -ErrorId 'PsDriver.HyperVModuleMissing' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'NotInstalled'
        Should -Invoke Get-VMHost -Times 0 -Exactly
    }

    It 'reports <Case> from Get-VMHost as <Category>' -ForEach @(
        @{ Case = 'access denied'; Exception = [System.UnauthorizedAccessException]::new('You do not have the required permission to complete this task.'); FakeCategory = 'PermissionDenied'; Category = 'PermissionDenied'; ErrorId = 'PsDriver.HyperVAccessDenied' }
        @{ Case = 'a stopped service'; Exception = [System.InvalidOperationException]::new('The Virtual Machine Management service is not running.'); FakeCategory = 'NotSpecified'; Category = 'ResourceUnavailable'; ErrorId = 'PsDriver.HyperVUnavailable' }
    ) {
        $PsdTest.HostFailure = New-FakeError -Exception $Exception -Category $FakeCategory

        $failure = { & $script:ScriptPath -InstancesPath $script:Instances } | Should -Throw -ErrorId $ErrorId -PassThru

        $failure.CategoryInfo.Category | Should -Be $Category
        $failure.Exception.Message | Should -BeLike "*$($Exception.Message)*"
        Test-Path -LiteralPath $script:Instances | Should -BeFalse
    }

    It 'refuses a Windows version older than MinimumOSVersion' {
        $PsdTest.OsVersion = '6.3.9600'

        $failure = { & $script:ScriptPath -InstancesPath $script:Instances } | Should -Throw -ErrorId 'PsDriver.UnsupportedHostVersion' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'NotInstalled'
        $failure.Exception.Message | Should -BeLike '*6.3.9600*'
    }

    It 'accepts an older Windows with a lower MinimumOSVersion' {
        $PsdTest.OsVersion = '6.3.9600'

        $result = & $script:ScriptPath -InstancesPath $script:Instances -MinimumOSVersion '6.3'

        $result.os_version | Should -Be '6.3.9600'
    }

    It 'creates nothing with -WhatIf' {
        $result = & $script:ScriptPath -InstancesPath $script:Instances -WhatIf

        Assert-MatchesContract -Result $result
        @($result.created).Count | Should -Be 0
        $result.instances_path.exists | Should -BeFalse
        $result.base_path_exists | Should -BeFalse
        $result.instances_path.total_bytes | Should -BeNullOrEmpty
        Test-Path -LiteralPath $script:Instances | Should -BeFalse
    }

    Context 'console loggers' {
        It 'gives every running instance its logger back, in its instance folder' {
            $PsdTest.Vms = @(
                New-FakeInstanceVM -Name 'instance-00000001'
                New-FakeInstanceVM -Name 'instance-00000002' -State 'Off'
                New-FakeInstanceVM -Name 'admin-vm' -Notes 'build server'
                New-FakeInstanceVM -Name 'no-notes' -Notes $null
                New-FakeInstanceVM -Name 'instance-00000003' -State 'Starting' -Notes ('{' + [guid]::NewGuid().ToString().ToUpperInvariant() + '}')
                New-FakeInstanceVM -Name 'instance-00000004' -State 'Paused'
            )
            $PsdTest.LoggerRunning = @('instance-00000003')

            $result = & $script:ScriptPath -InstancesPath $script:Instances -ConsoleLogFileName 'console.log' -ConsoleLogMaxBytes 65536

            Assert-MatchesContract -Result $result
            @($result.console_loggers | ForEach-Object { $_.name }) | Should -Be @('instance-00000001', 'instance-00000003')
            $result.console_loggers[0].started | Should -BeTrue
            $result.console_loggers[0].running | Should -BeTrue
            $result.console_loggers[0].error | Should -BeNullOrEmpty
            $result.console_loggers[1].started | Should -BeFalse
            $result.console_loggers[1].running | Should -BeTrue
            $expectedLog = Join-Path -Path (Join-Path -Path $script:Instances -ChildPath 'instance-00000001') -ChildPath 'console.log'
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter {
                $VMName -eq 'instance-00000001' -and $LogPath -eq $expectedLog -and $MaxLogBytes -eq 65536 -and
                $PipePath -eq '\\.\pipe\instance-00000001_ro'
            }
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 2 -Exactly
            Should -Invoke Get-VM -Times 1 -Exactly
            Should -Invoke Get-VMComPort -Times 1 -Exactly -ParameterFilter { @($VM).Count -eq 2 }
            Should -Invoke Get-VMComPort -ModuleName PsDriver -Times 0 -Exactly
        }

        It 'asks each VM for its pipe when the serial ports cannot be read at once' {
            $PsdTest.Vms = @(
                New-FakeInstanceVM -Name 'instance-00000001'
                New-FakeInstanceVM -Name 'instance-00000002'
            )
            Mock Get-VMComPort { throw 'The operation failed.' } -RemoveParameterType 'VM'

            $result = & $script:ScriptPath -InstancesPath $script:Instances -ConsoleLogFileName 'console.log'

            Assert-MatchesContract -Result $result
            @($result.console_loggers | Where-Object { $_.running }).Count | Should -Be 2
            Should -Invoke Get-VMComPort -ModuleName PsDriver -Times 2 -Exactly
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter {
                $PipePath -eq '\\.\pipe\instance-00000002_ro'
            }
        }

        It 'reports a running instance without a serial port pipe' {
            $PsdTest.Vms = @(New-FakeInstanceVM -Name 'instance-00000001')
            Mock Get-VMComPort { } -RemoveParameterType 'VM'

            $result = & $script:ScriptPath -InstancesPath $script:Instances -ConsoleLogFileName 'console.log' 3>$null

            $result.console_loggers[0].running | Should -BeFalse
            $result.console_loggers[0].error | Should -BeLike '*no serial port*'
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 0 -Exactly
        }

        It 'reports a logger that cannot start and still initialises the host' {
            $PsdTest.Vms = @(New-FakeInstanceVM -Name 'instance-00000001')
            Mock Start-PsDriverConsoleLogger -ModuleName PsDriver { throw "The directory of console log 'x' does not exist." }

            $result = & $script:ScriptPath -InstancesPath $script:Instances -ConsoleLogFileName 'console.log' 3>$null

            Assert-MatchesContract -Result $result
            $result.hostname | Should -Be 'HV01'
            $result.console_loggers[0].started | Should -BeFalse
            $result.console_loggers[0].running | Should -BeFalse
            $result.console_loggers[0].error | Should -BeLike '*does not exist*'
        }

        It 'looks at no VM without ConsoleLogFileName' {
            $PsdTest.Vms = @(New-FakeInstanceVM -Name 'instance-00000001')

            $result = & $script:ScriptPath -InstancesPath $script:Instances

            @($result.console_loggers).Count | Should -Be 0
            Should -Invoke Get-VM -Times 0 -Exactly
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 0 -Exactly
        }

        It 'warns and goes on when the VMs cannot be listed' {
            Mock Get-VM { throw [System.InvalidOperationException]::new('The Virtual Machine Management service is not running.') }

            $output = @(& $script:ScriptPath -InstancesPath $script:Instances -ConsoleLogFileName 'console.log' 3>&1)
            $warnings = @($output | Where-Object { $_ -is [System.Management.Automation.WarningRecord] })
            $result = @($output | Where-Object { $_ -isnot [System.Management.Automation.WarningRecord] })[0]

            Assert-MatchesContract -Result $result
            @($result.console_loggers).Count | Should -Be 0
            $warnings[0].Message | Should -BeLike 'Console loggers not checked*Virtual Machine Management service*'
        }

        It 'refuses a ConsoleLogFileName with a path separator' {
            { & $script:ScriptPath -InstancesPath $script:Instances -ConsoleLogFileName 'logs\console.log' } | Should -Throw
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 0 -Exactly
        }

        It 'starts no logger with -WhatIf' {
            $null = New-Item -ItemType Directory -Path $script:Instances -Force
            $PsdTest.Vms = @(New-FakeInstanceVM -Name 'instance-00000001')

            $result = & $script:ScriptPath -InstancesPath $script:Instances -ConsoleLogFileName 'console.log' -WhatIf

            @($result.console_loggers).Count | Should -Be 0
            Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 0 -Exactly
        }
    }
}
