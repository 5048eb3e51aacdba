# Pester 5 tests of PsDriver.psm1: the values document, the envelope and the helpers the
# scripts share. Needs no Hyper-V (its cmdlets are stubbed and mocked inside the module): runs on
# any PowerShell 7.4+ (and the same assertions hold on 5.1).

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptsDir = Get-TestScriptsDir
    Import-PsDriverModule
    Add-CommandStubSet -Commands ([ordered]@{
            'Get-VM'        = @('Name', 'Id')
            'Stop-VM'       = @('VM', '-TurnOff', '-Force')
            'Remove-VM'     = @('VM', '-Force')
            'Get-VMComPort' = @('VM')
        })

    function ConvertTo-TestDocument {
        param(
            [Parameter(Mandatory)]
            [string]$Json
        )
        [System.Convert]::ToBase64String([System.Text.UTF8Encoding]::new($false).GetBytes($Json))
    }

    function Invoke-TestBlock {
        param(
            [Parameter(Mandatory)]
            [scriptblock]$ScriptBlock,

            [hashtable]$Parameters = @{}
        )
        $outcome = Invoke-PsDriverScriptBlock -ScriptBlock $ScriptBlock -Parameters $Parameters
        [pscustomobject]@{
            ExitCode = $outcome.ExitCode
            Envelope = $outcome.Json | ConvertFrom-Json -AsHashtable
        }
    }
}

AfterAll {
    Remove-CommandStub
}

Describe 'ConvertFrom-PsDriverInput' {
    It 'decodes hostile strings exactly: <Value>' -ForEach @(
        @{ Value = "vm'01 `"; Remove-VM *; `$(whoami)" }
        @{ Value = "`n'@`nStop-Computer`n'@" }
        @{ Value = [string][char]0x2018 + '; Stop-Computer; ' + [char]0x2019 }
        @{ Value = 'nul' + [char]0 + 'inside' }
        @{ Value = [char]::ConvertFromUtf32(0x1F600) }
    ) {
        $json = @{ Echo = $Value } | ConvertTo-Json -Compress
        $decoded = ConvertFrom-PsDriverInput -InputDocument (ConvertTo-TestDocument -Json $json)
        $decoded['Echo'] | Should -BeExactly $Value
    }

    It 'keeps date-like strings as strings' {
        $decoded = ConvertFrom-PsDriverInput -InputDocument (ConvertTo-TestDocument -Json '{"When":"2024-01-02T03:04:05Z"}')
        $decoded['When'] | Should -BeOfType [string]
        $decoded['When'] | Should -BeExactly '2024-01-02T03:04:05Z'
    }

    It 'gives dictionaries for objects and arrays for one-element lists' {
        $decoded = ConvertFrom-PsDriverInput -InputDocument (ConvertTo-TestDocument -Json '{"Spec":{"disks":[{"size_gb":1}],"none":[]}}')
        $decoded['Spec'] | Should -BeOfType [System.Collections.IDictionary]
        , $decoded['Spec']['disks'] | Should -BeOfType [object[]]
        $decoded['Spec']['disks'].Count | Should -Be 1
        $decoded['Spec']['none'].Count | Should -Be 0
        $decoded['Spec']['disks'][0]['size_gb'] | Should -Be 1
    }

    It 'treats an empty document as no parameters' {
        (ConvertFrom-PsDriverInput -InputDocument '').Count | Should -Be 0
    }

    It 'refuses a document that is not a JSON object' {
        { ConvertFrom-PsDriverInput -InputDocument (ConvertTo-TestDocument -Json '[1,2]') } | Should -Throw '*not a JSON object*'
    }

    It 'takes plain JSON text as sent over PSRP (no base64)' {
        $decoded = ConvertFrom-PsDriverInput -InputDocument '{"Echo":"a\ufffeb","N":7}'
        $decoded['Echo'] | Should -BeExactly ('a' + [char]0xFFFE + 'b')
        $decoded['N'] | Should -Be 7
    }

    It 'inflates a deflate: document (raw DEFLATE, as the bridge compresses large values)' {
        $json = '{"Blob":"' + ('0' * 50000) + '"}'
        $packed = [System.IO.MemoryStream]::new()
        $deflater = [System.IO.Compression.DeflateStream]::new($packed, [System.IO.Compression.CompressionMode]::Compress)
        $bytes = [System.Text.UTF8Encoding]::new($false).GetBytes($json)
        $deflater.Write($bytes, 0, $bytes.Length)
        $deflater.Dispose()
        $document = 'deflate:' + [System.Convert]::ToBase64String($packed.ToArray())
        $document.Length | Should -BeLessThan 2000
        (ConvertFrom-PsDriverInput -InputDocument $document)['Blob'] | Should -BeExactly ('0' * 50000)
    }
}

Describe 'ConvertTo-PsDriverPlainValue' {
    It 'writes enums by name and dates as ISO 8601' {
        $plain = ConvertTo-PsDriverPlainValue -Value ([ordered]@{
                day  = [System.DayOfWeek]::Friday
                when = [datetime]::new(2024, 1, 2, 3, 4, 5, [System.DateTimeKind]::Utc)
            })
        $plain['day'] | Should -BeExactly 'Friday'
        $plain['when'] | Should -BeExactly '2024-01-02T03:04:05.0000000Z'
    }

    It 'writes U+FFFE and U+FFFF as JSON escapes (XML 1.0 cannot carry them over PSRP)' {
        $json = ConvertTo-PsDriverJson -Envelope ([ordered]@{ v = 'a' + [char]0xFFFE + [char]0xFFFF + 'b' })
        $json | Should -BeExactly '{"v":"a\ufffe\uffffb"}'
        ($json | ConvertFrom-Json).v | Should -BeExactly ('a' + [char]0xFFFE + [char]0xFFFF + 'b')
    }

    It 'keeps one-element and empty lists as lists in the JSON' {
        $plain = ConvertTo-PsDriverPlainValue -Value ([pscustomobject]@{ one = @('a'); none = @() })
        ConvertTo-PsDriverJson -Envelope $plain | Should -BeExactly '{"one":["a"],"none":[]}'
    }

    It 'refuses results nested deeper than 64 levels' {
        $deep = @{}
        $cursor = $deep
        foreach ($i in 1..70) {
            $cursor['next'] = @{}
            $cursor = $cursor['next']
        }
        { ConvertTo-PsDriverPlainValue -Value $deep } | Should -Throw '*64 levels*'
    }
}

Describe 'Invoke-PsDriverScriptBlock' {
    It 'wraps the one result object in a success envelope' {
        $run = Invoke-TestBlock -ScriptBlock {
            param([string]$Name)
            [ordered]@{ name = $Name; list = @(1) }
        } -Parameters @{ Name = 'vm1' }
        $run.ExitCode | Should -Be 0
        $run.Envelope['ok'] | Should -BeTrue
        $run.Envelope['result']['name'] | Should -BeExactly 'vm1'
        $run.Envelope['result']['list'].Count | Should -Be 1
    }

    It 'reports a Write-Error with its category, id and target' {
        $run = Invoke-TestBlock -ScriptBlock {
            [CmdletBinding()]
            param()
            $ErrorActionPreference = 'Stop'
            Write-Error -Message 'no such VM' -Category ObjectNotFound -ErrorId 'PsDriver.VMNotFound' -TargetObject 'vm1'
        }
        $run.ExitCode | Should -Be 1
        $run.Envelope['ok'] | Should -BeFalse
        $run.Envelope['error']['message'] | Should -BeExactly 'no such VM'
        $run.Envelope['error']['category'] | Should -BeExactly 'ObjectNotFound'
        $run.Envelope['error']['error_id'] | Should -BeLike 'PsDriver.VMNotFound*'
        $run.Envelope['error']['target'] | Should -BeExactly 'vm1'
        $run.Envelope['error']['script_stack'] | Should -Not -BeNullOrEmpty
    }

    It 'reports a parameter binding failure as an error envelope' {
        $run = Invoke-TestBlock -ScriptBlock {
            [CmdletBinding()]
            param([string]$Name)
            $Name
        } -Parameters @{ Bogus = 1 }
        $run.Envelope['ok'] | Should -BeFalse
        $run.Envelope['error']['category'] | Should -BeExactly 'InvalidArgument'
    }

    It 'moves warnings to the log and keeps stdout clean' {
        $run = Invoke-TestBlock -ScriptBlock {
            [CmdletBinding()]
            param()
            Write-Warning -Message 'careful'
            Write-Information -MessageData 'fyi'
            [ordered]@{ ok = 1 }
        }
        $run.Envelope['result']['ok'] | Should -Be 1
        $run.Envelope['log'] | Should -Contain 'WARNING: careful'
        $run.Envelope['log'] | Should -Contain 'INFO: fyi'
    }
}

Describe 'Invoke-PsDriverScript' -Skip:(-not $IsWindows) {
    It 'runs Test-PsDriverConnection.ps1 by hand and echoes the value' {
        $json = Invoke-PsDriverScript -Path (Join-Path -Path $script:ScriptsDir -ChildPath 'Test-PsDriverConnection.ps1') -Parameters @{ Echo = "a'b" }
        ($json | ConvertFrom-Json -AsHashtable)['result']['echo'] | Should -BeExactly "a'b"
    }
}

Describe 'console logger helpers' {
    BeforeEach {
        $script:VmId = [guid]::NewGuid().ToString().ToUpperInvariant()
        $script:LogDir = Join-Path -Path $TestDrive -ChildPath ([guid]::NewGuid().ToString('N'))
        $null = New-Item -ItemType Directory -Path $script:LogDir
    }

    It 'names the mutex and stop event after the lower-case VM id' {
        $names = Get-PsDriverConsoleLoggerName -VMId $script:VmId
        $names.Mutex | Should -BeExactly ('Global\psdriver-console-' + $script:VmId.ToLowerInvariant())
        $names.Stop | Should -BeExactly ('Global\psdriver-console-stop-' + $script:VmId.ToLowerInvariant())
    }

    It 'sees a logger by its mutex' {
        Test-PsDriverConsoleLogger -VMId $script:VmId | Should -BeFalse
        $mutex = [System.Threading.Mutex]::new($false, (Get-PsDriverConsoleLoggerName -VMId $script:VmId).Mutex)
        try {
            Test-PsDriverConsoleLogger -VMId $script:VmId | Should -BeTrue
        }
        finally {
            $mutex.Dispose()
        }
    }

    It 'returns the pipe name of a good target' {
        $log = Join-Path -Path $script:LogDir -ChildPath 'console.log'
        Assert-PsDriverConsoleLogTarget -PipePath '\\.\pipe\abc_ro' -LogPath $log | Should -BeExactly 'abc_ro'
    }

    It 'refuses a pipe that is not local' {
        $log = Join-Path -Path $script:LogDir -ChildPath 'console.log'
        $failure = { Assert-PsDriverConsoleLogTarget -PipePath '\\server\pipe\abc' -LogPath $log } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeLike 'PsDriver.InvalidPipePath*'
    }

    It 'refuses a log whose folder is missing' {
        $log = Join-Path -Path $script:LogDir -ChildPath 'missing/console.log'
        $failure = { Assert-PsDriverConsoleLogTarget -PipePath '\\.\pipe\abc' -LogPath $log } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeLike 'PsDriver.LogDirectoryNotFound*'
    }

    It 'starts nothing when a logger holds the mutex already' {
        $mutex = [System.Threading.Mutex]::new($false, (Get-PsDriverConsoleLoggerName -VMId $script:VmId).Mutex)
        try {
            $launch = Start-PsDriverConsoleLogger -VMId $script:VmId -VMName 'vm' -PipePath '\\.\pipe\abc' -LogPath (Join-Path -Path $script:LogDir -ChildPath 'console.log')
            $launch.started | Should -BeFalse
            $launch.running | Should -BeTrue
            $launch.pid | Should -BeNullOrEmpty
        }
        finally {
            $mutex.Dispose()
        }
    }

    It 'carries reader code that parses' {
        $errors = $null
        $null = [System.Management.Automation.Language.Parser]::ParseInput((Get-PsDriverConsoleReaderScript), [ref]$null, [ref]$errors)
        $errors.Count | Should -Be 0
        Get-PsDriverConsoleReaderScript | Should -Match 'function Invoke-ConsoleLogReader'
    }
}

Describe 'New-PsDriverErrorRecord' {
    It 'carries the message, category, id, target and inner exception' {
        $inner = [System.IO.IOException]::new('disk full')
        $record = New-PsDriverErrorRecord -Message 'Cannot copy.' -Category InvalidOperation -ErrorId 'PsDriver.ImageCopyFailed' -Target 'C:\x.vhdx' -InnerException $inner
        $record.Exception | Should -BeOfType [System.InvalidOperationException]
        $record.Exception.Message | Should -BeExactly 'Cannot copy.'
        $record.Exception.InnerException | Should -Be $inner
        $record.FullyQualifiedErrorId | Should -BeExactly 'PsDriver.ImageCopyFailed'
        $record.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $record.TargetObject | Should -Be 'C:\x.vhdx'
    }

    It 'keeps its error id when a helper throws it' {
        $failure = { Get-PsDriverImageFile -BasePath $TestDrive -Name 'a*' } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeExactly 'PsDriver.InvalidImageName'
    }
}

Describe 'Get-PsDriverVM' {
    BeforeEach {
        $script:PsdTest = @{
            Vms = @(
                [pscustomobject]@{ Name = 'vm[1]'; Id = [guid]::NewGuid(); State = 'Running' }
                [pscustomobject]@{ Name = 'vm[1]-old'; Id = [guid]::NewGuid(); State = 'Off' }
                [pscustomobject]@{ Name = 'vm1'; Id = [guid]::NewGuid(); State = 'Off' }
            )
        }
        Mock Get-VM -ModuleName PsDriver { @($PsdTest.Vms | Where-Object { $_.Name -like @($Name)[0] }) }
    }

    It 'finds the VM by its exact name with the escaped name and * as the pattern' {
        $vm = Get-PsDriverVM -Name 'vm[1]'
        $vm.Name | Should -BeExactly 'vm[1]'
        Should -Invoke Get-VM -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter { @($Name)[0] -ceq 'vm`[1`]*' }
    }

    It 'fails with ObjectNotFound / PsDriver.VMNotFound for a missing VM' {
        $failure = { Get-PsDriverVM -Name 'vm2' } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeExactly 'PsDriver.VMNotFound'
        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $failure.TargetObject | Should -Be 'vm2'
    }

    It 'returns nothing for a missing VM with -AllowMissing' {
        Get-PsDriverVM -Name 'vm2' -AllowMissing | Should -BeNullOrEmpty
    }

    It 'fails with InvalidOperation / PsDriver.VMNameNotUnique for a shared name' {
        $PsdTest.Vms = @($PsdTest.Vms) + [pscustomobject]@{ Name = 'vm1'; Id = [guid]::NewGuid(); State = 'Off' }
        $failure = { Get-PsDriverVM -Name 'vm1' -AllowMissing } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeExactly 'PsDriver.VMNameNotUnique'
        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
    }

    It 'lets a failing Get-VM stop the caller instead of reporting a missing VM' {
        Mock Get-VM -ModuleName PsDriver { throw [System.InvalidOperationException]::new('The Virtual Machine Management service is not running.') }
        $failure = { Get-PsDriverVM -Name 'vm1' -AllowMissing } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -Not -BeLike 'PsDriver.*'
        $failure.Exception.Message | Should -Match 'Virtual Machine Management service'
    }

    It 'lists every VM of that exact name with Find-PsDriverVM' {
        @(Find-PsDriverVM -Name 'VM[1]').Count | Should -Be 1
        @(Find-PsDriverVM -Name 'vm2').Count | Should -Be 0
    }
}

Describe 'Remove-PsDriverVM' {
    It 'removes a VM that is <State> as it is' -ForEach @(
        @{ State = 'Off' }
        @{ State = 'Saved' }
        @{ State = 'OffCritical' }
        @{ State = 'SavedCritical' }
    ) {
        Mock Stop-VM -ModuleName PsDriver { } -RemoveParameterType 'VM'
        Mock Remove-VM -ModuleName PsDriver { } -RemoveParameterType 'VM'
        Remove-PsDriverVM -VM ([pscustomobject]@{ Name = 'vm1'; State = $State })
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 0 -Exactly
        Should -Invoke Remove-VM -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter { $Force }
    }

    It 'turns a VM that is <State> off first' -ForEach @(
        @{ State = 'Running' }
        @{ State = 'Paused' }
        @{ State = 'RunningCritical' }
    ) {
        Mock Stop-VM -ModuleName PsDriver { } -RemoveParameterType 'VM'
        Mock Remove-VM -ModuleName PsDriver { } -RemoveParameterType 'VM'
        Remove-PsDriverVM -VM ([pscustomobject]@{ Name = 'vm1'; State = $State })
        Should -Invoke Stop-VM -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter { $TurnOff -and $Force }
        Should -Invoke Remove-VM -ModuleName PsDriver -Times 1 -Exactly
    }
}

Describe 'ConvertFrom-PsDriverJson' {
    It 'keeps the date-like string <Value> a string' -ForEach @(
        @{ Value = '2024-05-01T10:00:00Z' }
        @{ Value = '2024-05-01' }
        @{ Value = '05/01/2024 10:00:00' }
    ) {
        $json = '{"name": "' + $Value + '", "list": ["' + $Value + '"]}'

        $parsed = ConvertFrom-PsDriverJson -Json $json

        $parsed['name'] | Should -BeOfType [string]
        $parsed['name'] | Should -Be $Value
        @($parsed['list'])[0] | Should -Be $Value
    }
}

Describe 'Get-PsDriverSecureBootTemplate' {
    It 'offers OpenSourceShieldedVM on build <Build>: <Offered>' -ForEach @(
        @{ Build = 14393; Offered = $false }
        @{ Build = 16299; Offered = $true }
        @{ Build = 17763; Offered = $true }
    ) {
        $templates = @(Get-PsDriverSecureBootTemplate -Build $Build)

        $templates | Should -Contain 'MicrosoftWindows'
        $templates | Should -Contain 'MicrosoftUEFICertificateAuthority'
        ($templates -contains 'OpenSourceShieldedVM') | Should -Be $Offered
    }
}

Describe 'ConvertTo-PsDriverInstanceUuid' {
    It 'reads <Label>' -ForEach @(
        @{ Label = 'a bare UUID'; Notes = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f'; Expected = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f' }
        @{ Label = 'braces and upper case'; Notes = '{4F5C9A1E-2B7D-4C3E-9F10-6A8B2C4D5E6F}'; Expected = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f' }
        @{ Label = 'a label and more lines'; Notes = "openstack-instance-uuid: 4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f`r`nproject x"; Expected = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f' }
        @{ Label = 'a UUID on the second line'; Notes = "vm`n4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f"; Expected = $null }
        @{ Label = 'nothing'; Notes = $null; Expected = $null }
    ) {
        ConvertTo-PsDriverInstanceUuid -Notes $Notes | Should -Be $Expected
    }
}

Describe 'network adapter helpers' {
    It 'converts <Text> to the Hyper-V form <Expected>' -ForEach @(
        @{ Text = 'fa:16:3e:01:02:03'; Expected = 'FA163E010203' }
        @{ Text = ' FA-16-3E-01-02-03 '; Expected = 'FA163E010203' }
        @{ Text = 'fa163e010203'; Expected = 'FA163E010203' }
        @{ Text = 'fa:16:3e:01:02'; Expected = $null }
        @{ Text = ''; Expected = $null }
    ) {
        ConvertTo-PsDriverHyperVMac -Mac $Text | Should -Be $Expected
    }

    It 'writes MAC addresses in lower case with colons, and none for zeros' {
        ConvertTo-PsDriverMacString -Mac 'FA163E010203' | Should -BeExactly 'fa:16:3e:01:02:03'
        ConvertTo-PsDriverMacString -Mac '000000000000' | Should -BeNullOrEmpty
    }
}

Describe 'Invoke-PsDriverConsoleLogger' {
    BeforeEach {
        $script:PsdTest = @{
            VM    = [pscustomobject]@{ Name = 'vm1'; Id = [guid]'0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b' }
            Ports = @([pscustomobject]@{ Name = 'COM 1'; Path = '\\.\pipe\vm1_ro' })
        }
        Mock Get-VMComPort -ModuleName PsDriver { $PsdTest.Ports } -RemoveParameterType 'VM'
        Mock Start-PsDriverConsoleLogger -ModuleName PsDriver { [ordered]@{ started = $true; running = $true; pid = 77 } }
    }

    It 'starts the logger on the VM logging pipe and reports it' {
        $record = Invoke-PsDriverConsoleLogger -VM $PsdTest.VM -LogPath 'C:\i\vm1\console.log' -MaxLogBytes 8192
        $record.pipe_path | Should -Be '\\.\pipe\vm1_ro'
        $record.log_path | Should -Be 'C:\i\vm1\console.log'
        $record.started | Should -BeTrue
        $record.running | Should -BeTrue
        $record.pid | Should -Be 77
        $record.error | Should -BeNullOrEmpty
        Should -Invoke Start-PsDriverConsoleLogger -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter {
            $VMId -eq '0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b' -and $VMName -eq 'vm1' -and $MaxLogBytes -eq 8192
        }
    }

    It 'uses the pipe it is given, and none when it is given none' {
        (Invoke-PsDriverConsoleLogger -VM $PsdTest.VM -LogPath 'C:\l' -PipePath '\\.\pipe\other').pipe_path | Should -Be '\\.\pipe\other'
        $none = Invoke-PsDriverConsoleLogger -VM $PsdTest.VM -LogPath 'C:\l' -PipePath $null 3>$null
        $none.error | Should -Match 'no serial port'
        Should -Invoke Get-VMComPort -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'reports, with a warning, what keeps the logger from running' {
        Mock Start-PsDriverConsoleLogger -ModuleName PsDriver { throw "The directory of console log 'C:\l' does not exist." }
        $output = @(Invoke-PsDriverConsoleLogger -VM $PsdTest.VM -LogPath 'C:\l' 3>&1)
        $record = @($output | Where-Object { $_ -is [System.Collections.IDictionary] })[0]
        $record.started | Should -BeFalse
        $record.running | Should -BeFalse
        $record.error | Should -Match 'does not exist'
        @($output | Where-Object { $_ -is [System.Management.Automation.WarningRecord] }).Count | Should -Be 1
    }

    It 'reports a failing serial port query instead of throwing' {
        Mock Get-VMComPort -ModuleName PsDriver { throw 'access denied' } -RemoveParameterType 'VM'
        $record = Invoke-PsDriverConsoleLogger -VM $PsdTest.VM -LogPath 'C:\l' 3>$null
        $record.error | Should -Match 'access denied'
    }
}

Describe 'Get-PsDriverImageFile' {
    BeforeEach {
        $script:Base = Join-Path -Path $TestDrive -ChildPath ([guid]::NewGuid().ToString('N'))
        foreach ($name in 'b.vhdx', 'a.vhd', 'a.iso', 'notes.txt') {
            $null = New-TestFile -Path (Join-Path -Path $script:Base -ChildPath $name)
        }
    }

    It 'lists the images sorted by name' {
        $listing = Get-PsDriverImageFile -BasePath $script:Base
        @($listing.Files | ForEach-Object { $_.Name }) | Should -Be @('a.iso', 'a.vhd', 'b.vhdx')
        @($listing.NotFound).Count | Should -Be 0
    }

    It 'selects by name with or without extension, each file once, in the order asked' {
        $listing = Get-PsDriverImageFile -BasePath $script:Base -Name 'b', 'a', 'A.VHD', 'missing'
        @($listing.Files | ForEach-Object { $_.Name }) | Should -Be @('b.vhdx', 'a.iso', 'a.vhd')
        @($listing.NotFound) | Should -Be @('missing')
    }

    It 'has no files for a missing folder' {
        $listing = Get-PsDriverImageFile -BasePath (Join-Path -Path $TestDrive -ChildPath 'nowhere') -Name 'a'
        @($listing.Files).Count | Should -Be 0
        @($listing.NotFound) | Should -Be @('a')
    }
}

Describe 'Open vSwitch helpers' {
    BeforeEach {
        Mock Invoke-PsDriverOvsVsctl -ModuleName PsDriver { }
    }

    It 'adds a port with the external ids, values as separate arguments' {
        Add-PsDriverOvsPort -OvsVsctl 'C:\ovs\ovs-vsctl.exe' -Bridge 'br-int' -Port 'p-1' -MacAddress 'FA163E010203' -InstanceUuid '6f1b3c2a-8d4e-4f5a-9b6c-7d8e9f0a1b2c'
        $expected = @(
            '--may-exist', 'add-port', 'br-int', 'p-1', '--', 'set', 'Interface', 'p-1',
            'external-ids:iface-id=p-1', 'external-ids:attached-mac=fa:16:3e:01:02:03',
            'external-ids:iface-status=active', 'external-ids:vm-uuid=6f1b3c2a-8d4e-4f5a-9b6c-7d8e9f0a1b2c') -join '|'
        Should -Invoke Invoke-PsDriverOvsVsctl -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter {
            $OvsVsctl -ceq 'C:\ovs\ovs-vsctl.exe' -and (@($ArgumentList) -join '|') -ceq $expected
        }
    }

    It 'deletes a port with --if-exists' {
        Remove-PsDriverOvsPort -OvsVsctl 'C:\ovs\ovs-vsctl.exe' -Port 'p-1'
        Should -Invoke Invoke-PsDriverOvsVsctl -ModuleName PsDriver -Times 1 -Exactly -ParameterFilter {
            (@($ArgumentList) -join '|') -ceq '--if-exists|del-port|p-1'
        }
    }

    It 'refuses a name ovs-vsctl would read as more than a word: <Name>' -ForEach @(
        @{ Name = 'br int' }
        @{ Name = '--all' }
        @{ Name = 'a,b' }
    ) {
        { Remove-PsDriverOvsPort -OvsVsctl 'C:\ovs\ovs-vsctl.exe' -Port $Name } | Should -Throw -ErrorId 'PsDriver.InvalidOvsName*'
        Should -Invoke Invoke-PsDriverOvsVsctl -ModuleName PsDriver -Times 0 -Exactly
    }

    It 'does not find an ovs-vsctl that is not there' {
        { Resolve-PsDriverOvsVsctl -Path (Join-Path -Path $TestDrive -ChildPath 'ovs-vsctl.exe') } | Should -Throw -ErrorId 'PsDriver.OvsVsctlNotFound*'
    }
}

Describe 'shielded VM helpers' {
    BeforeAll {
        Add-CommandStubSet -Commands ([ordered]@{
                'Get-HgsClientConfiguration'            = @()
                'Initialize-ShieldedVM'                 = @('VM', 'ShieldingDataFilePath', 'ShieldedVMSpecializationDataFilePath')
                'Get-ShieldedVMProvisioningStatus'      = @('VM')
                'Get-KeyProtectorFromShieldingDataFile' = @('ShieldingDataFilePath')
            })
    }

    It 'counts a host as guarded only in HostGuardianService mode' {
        Mock Get-HgsClientConfiguration -ModuleName PsDriver { [pscustomobject]@{ IsHostGuarded = $true; Mode = 'Local' } }
        { Assert-PsDriverGuardedHost } | Should -Throw -ErrorId 'PsDriver.HostNotGuarded*'
        Mock Get-HgsClientConfiguration -ModuleName PsDriver { [pscustomobject]@{ IsHostGuarded = $true; Mode = 'HostGuardianService' } }
        { Assert-PsDriverGuardedHost } | Should -Not -Throw
        (Get-PsDriverHostGuardianState).mode | Should -Be 'HostGuardianService'
    }

    It 'reads the key protector of a shielding data file as bytes' {
        $pdk = Join-Path -Path $TestDrive -ChildPath 'data.pdk'
        Set-Content -LiteralPath $pdk -Value 'x'
        Mock Get-KeyProtectorFromShieldingDataFile -ModuleName PsDriver { [byte[]]@(1, 2, 3) }
        $bytes = Get-PsDriverShieldingKeyProtector -ShieldingDataFilePath $pdk
        $bytes.GetType() | Should -Be ([byte[]])
        $bytes.Length | Should -Be 3
        Mock Get-KeyProtectorFromShieldingDataFile -ModuleName PsDriver { throw 'not a shielding data file' }
        { Get-PsDriverShieldingKeyProtector -ShieldingDataFilePath $pdk } | Should -Throw -ErrorId 'PsDriver.InvalidShieldingData*'
        { Get-PsDriverShieldingKeyProtector -ShieldingDataFilePath "$pdk.missing" } | Should -Throw -ErrorId 'PsDriver.ShieldingDataNotFound*'
    }

    It 'gives up on a provisioning still running after the timeout' {
        Mock Get-ShieldedVMProvisioningStatus -ModuleName PsDriver { [pscustomobject]@{ JobState = 4 } } -RemoveParameterType 'VM'
        Mock Start-Sleep -ModuleName PsDriver { }
        $vm = [pscustomobject]@{ Name = 'instance-1' }
        { Wait-PsDriverShieldedProvisioning -VM $vm -TimeoutSeconds 1 -PollSeconds 1 } | Should -Throw -ErrorId 'PsDriver.ShieldedProvisioningTimeout*'
    }

    It 'reports a failed provisioning with the job error' {
        Mock Get-ShieldedVMProvisioningStatus -ModuleName PsDriver {
            [pscustomobject]@{ JobState = 10; ErrorDescription = 'attestation failed' }
        } -RemoveParameterType 'VM'
        $vm = [pscustomobject]@{ Name = 'instance-1' }
        { Wait-PsDriverShieldedProvisioning -VM $vm -TimeoutSeconds 60 -PollSeconds 1 } | Should -Throw '*attestation failed*'
    }
}
