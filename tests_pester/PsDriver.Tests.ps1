# Pester 5 tests of PsDriver.psm1: the values document and the envelope.
# Needs no Hyper-V: runs on any PowerShell 7.4+ (and the same assertions hold on 5.1).

BeforeAll {
    $script:ScriptsDir = Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts'
    Import-Module -Name (Join-Path -Path $script:ScriptsDir -ChildPath 'PsDriver.psm1') -Force

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
