BeforeDiscovery {
    $contractFile = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts/Initialize-ComputeHost.contract.json'
    $exampleIndex = 0
    $Examples = @((Get-Content -LiteralPath $contractFile -Raw | ConvertFrom-Json -AsHashtable)['examples'] | ForEach-Object {
            $exampleIndex++
            @{ Index = $exampleIndex; Example = $_ }
        })
}

BeforeAll {
    $script:ScriptsDir = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts'
    $script:ScriptPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Initialize-ComputeHost.ps1'
    $contractPath = Join-Path -Path $script:ScriptsDir -ChildPath 'Initialize-ComputeHost.contract.json'
    $script:ResultSchema = (Get-Content -LiteralPath $contractPath -Raw | ConvertFrom-Json -AsHashtable)['result'] |
        ConvertTo-Json -Depth 100
    $script:Stubs = [System.Collections.Generic.List[string]]::new()

    # Stand-ins for cmdlets missing on this machine (no Hyper-V module), so that Mock can replace them.
    # A leading '-' declares a switch.
    function Add-CommandStub {
        param(
            [Parameter(Mandatory)]
            [string]$Name,

            [string[]]$Parameter = @()
        )
        if (Get-Command -Name $Name -ErrorAction SilentlyContinue) {
            return
        }
        $declared = @($Parameter | ForEach-Object {
                if ($_.StartsWith('-')) {
                    '[switch]$' + $_.Substring(1)
                }
                else {
                    '$' + $_
                }
            }) -join ', '
        $definition = '[CmdletBinding(SupportsShouldProcess)] param(' + $declared + ')'
        Set-Item -Path ('function:global:' + $Name) -Value ([scriptblock]::Create($definition))
        $script:Stubs.Add($Name)
    }

    # Exactly one result object, valid against the contract's JSON Schema.
    function Assert-MatchesContract {
        param(
            [AllowNull()]
            [object]$Result
        )
        @($Result).Count | Should -Be 1
        $json = ConvertTo-Json -InputObject $Result -Depth 20
        $problems = $null
        $valid = Test-Json -Json $json -Schema $script:ResultSchema -ErrorVariable problems -ErrorAction SilentlyContinue
        $valid | Should -BeTrue -Because ('the result must match the contract: ' + ($problems -join '; ') + "`n" + $json)
    }

    # Windows paths of the contract examples -> the same layout under a test folder.
    function ConvertTo-TestPath {
        param(
            [Parameter(Mandatory)]
            [string]$Path,

            [Parameter(Mandatory)]
            [string]$Root
        )
        $prefix = [regex]::Match($Path, '^(?:[A-Za-z]:\\|\\\\[^\\]+\\[^\\]+\\)')
        if (-not $prefix.Success) {
            return $Path
        }
        $rest = $Path.Substring($prefix.Length) -replace '\\', [string][System.IO.Path]::DirectorySeparatorChar
        Join-Path -Path $Root -ChildPath $rest
    }

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
}

AfterAll {
    foreach ($stub in $script:Stubs) {
        Remove-Item -Path ('function:global:' + $stub) -ErrorAction SilentlyContinue
    }
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
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $params = @{}
        foreach ($key in $Example.Keys) {
            $params[$key] = $Example[$key]
        }
        $params['InstancesPath'] = ConvertTo-TestPath -Path $params['InstancesPath'] -Root $script:Root

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
}
