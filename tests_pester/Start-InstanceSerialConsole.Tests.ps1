# Pester 5 tests of Start-InstanceSerialConsole.ps1. Hyper-V cmdlets and the WMI process
# creation are mocked; the named mutexes are real (a test takes them where a relay would),
# and so are the TCP port checks (on 127.0.0.1, in a high port range).

BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
}

BeforeAll {
    $script:PsdTest = @{}
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Start-InstanceSerialConsole'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Start-InstanceSerialConsole'
    Import-PsDriverModule

    Add-CommandStub -Name 'Get-VM' -Parameter 'Name', 'Id'
    Add-CommandStub -Name 'Get-VMComPort' -Parameter 'VM'
    Add-CommandStub -Name 'Invoke-CimMethod' -Parameter 'ClassName', 'MethodName', 'Arguments'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Start-InstanceSerialConsole' -Skip:(-not $IsWindows) {
    BeforeEach {
        $PsdTest.State = 'Running'
        $PsdTest.Generation = 2
        $PsdTest.Mutexes = [System.Collections.Generic.List[object]]::new()
        $PsdTest.VmMutex = 'Global\psdriver-serial-0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b'
        $PsdTest.Pipe = '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_rw'
        $PsdTest.Dir = New-TestRoot
        $PsdTest.First = 47810
        Mock Get-VM -ModuleName PsDriver { Get-FakeInstanceVM -Name $Name }
        Mock Get-VMComPort {
            [pscustomobject]@{ Name = 'COM 1'; Path = '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_ro' }
            [pscustomobject]@{ Name = 'COM 2'; Path = $PsdTest.Pipe }
        } -RemoveParameterType 'VM'
        Mock Invoke-CimMethod { [pscustomobject]@{ ReturnValue = 0; ProcessId = 4242 } }
        Mock Get-Process { [pscustomobject]@{ Id = 4242 } } -ParameterFilter { $Id -eq 4242 }
        # The relay takes the VM's mutex a moment after it was launched.
        Mock Start-Sleep {
            $createdNew = $false
            $PsdTest.Mutexes.Add([System.Threading.Mutex]::new($true, $PsdTest.VmMutex, [ref]$createdNew))
        }
        $script:Params = @{
            Name = 'instance-00000001'; PipePath = $PsdTest.Pipe; InstanceDir = $PsdTest.Dir
            ListenAddress = '127.0.0.1'; PortRangeStart = $PsdTest.First; PortRangeEnd = $PsdTest.First + 2
        }
    }

    AfterEach {
        foreach ($mutex in $PsdTest.Mutexes) {
            $mutex.Dispose()
        }
    }

    It 'launches a relay on the first free port of the range' {
        $result = & $script:ScriptPath @script:Params
        Assert-MatchesContract $result
        $result.port | Should -Be $PsdTest.First
        $result.started | Should -BeTrue
        $result.running | Should -BeTrue
        $result.pid | Should -Be 4242
        Should -Invoke Invoke-CimMethod -Times 1 -Exactly -ParameterFilter {
            $ClassName -eq 'Win32_Process' -and $Arguments['CommandLine'] -match '-EncodedCommand [A-Za-z0-9+/=]+$'
        }
    }

    It 'skips a port another relay holds' {
        $createdNew = $false
        $PsdTest.Mutexes.Add([System.Threading.Mutex]::new($true, "Global\psdriver-serial-port-$($PsdTest.First)", [ref]$createdNew))
        (& $script:ScriptPath @script:Params).port | Should -Be ($PsdTest.First + 1)
    }

    It 'reports the running relay and starts nothing' {
        $createdNew = $false
        $PsdTest.Mutexes.Add([System.Threading.Mutex]::new($true, $PsdTest.VmMutex, [ref]$createdNew))
        Set-Content -LiteralPath (Join-Path -Path $PsdTest.Dir -ChildPath 'serialconsole.json') -Value '{"port":47811,"pid":99,"listen_address":"127.0.0.1"}'
        $result = & $script:ScriptPath @script:Params
        Assert-MatchesContract $result
        $result.port | Should -Be 47811
        $result.started | Should -BeFalse
        Should -Invoke Invoke-CimMethod -Times 0 -Exactly
    }

    It 'fails with ResourceUnavailable when every port is taken' {
        foreach ($port in $PsdTest.First..($PsdTest.First + 2)) {
            $createdNew = $false
            $PsdTest.Mutexes.Add([System.Threading.Mutex]::new($true, "Global\psdriver-serial-port-$port", [ref]$createdNew))
        }
        $failure = { & $script:ScriptPath @script:Params } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NoFreePort'
        $failure.CategoryInfo.Category | Should -Be 'ResourceUnavailable'
    }

    It 'fails with NoSerialPort for a VM without the read-write pipe' {
        $PsdTest.Pipe = '\\.\pipe\other_rw'
        $script:Params.PipePath = '\\.\pipe\4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f_rw'
        $failure = { & $script:ScriptPath @script:Params } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.NoSerialPort'
    }

    It 'fails with VMNotFound for a missing VM' {
        $script:Params.Name = 'instance-00000099'
        $failure = { & $script:ScriptPath @script:Params } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.VMNotFound'
    }

    It 'reports a relay that exits at once' {
        Mock Get-Process { } -ParameterFilter { $Id -eq 4242 }
        Mock Start-Sleep { }
        $failure = { & $script:ScriptPath @script:Params } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.SerialConsoleStartFailed'
    }
}
