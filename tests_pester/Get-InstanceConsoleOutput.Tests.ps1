BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Get-InstanceConsoleOutput')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Get-InstanceConsoleOutput'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Get-InstanceConsoleOutput'
    Import-PsDriverModule

    function Write-Bytes {
        param(
            [string]$Path,
            [byte[]]$Bytes
        )
        [System.IO.File]::WriteAllBytes($Path, $Bytes)
    }

    function ConvertTo-Utf8Bytes {
        param(
            [string]$Text
        )
        [System.Text.UTF8Encoding]::new($false).GetBytes($Text)
    }
}

AfterAll {
    Remove-CommandStub
}

Describe 'Get-InstanceConsoleOutput' {
    BeforeEach {
        $script:Dir = Join-Path -Path $TestDrive -ChildPath ([guid]::NewGuid().ToString())
        $null = New-Item -ItemType Directory -Path $script:Dir
        $script:Log = Join-Path -Path $script:Dir -ChildPath 'console.log'
    }

    It 'returns empty content when there is no log yet' {
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log
        Assert-MatchesContract $result
        $result.name | Should -Be 'instance-00000001'
        $result.content | Should -BeExactly ''
        $result.truncated | Should -BeFalse
        $result.size_bytes | Should -Be 0
    }

    It 'returns a small log whole' {
        Write-Bytes -Path $script:Log -Bytes (ConvertTo-Utf8Bytes "Booting...`r`nlogin: ")
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log
        Assert-MatchesContract $result
        $result.content | Should -BeExactly "Booting...`r`nlogin: "
        $result.truncated | Should -BeFalse
        $result.size_bytes | Should -Be 19
    }

    It 'puts the rotated file first' {
        Write-Bytes -Path ($script:Log + '.1') -Bytes (ConvertTo-Utf8Bytes 'old-')
        Write-Bytes -Path $script:Log -Bytes (ConvertTo-Utf8Bytes 'new')
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log
        $result.content | Should -BeExactly 'old-new'
        $result.size_bytes | Should -Be 7
        $result.truncated | Should -BeFalse
    }

    It 'returns only the last MaxBytes bytes' {
        Write-Bytes -Path $script:Log -Bytes (ConvertTo-Utf8Bytes '0123456789')
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log -MaxBytes 4
        Assert-MatchesContract $result
        $result.content | Should -BeExactly '6789'
        $result.truncated | Should -BeTrue
        $result.size_bytes | Should -Be 10
    }

    It 'takes the tail across the rotated and the current file' {
        Write-Bytes -Path ($script:Log + '.1') -Bytes (ConvertTo-Utf8Bytes 'abcdef')
        Write-Bytes -Path $script:Log -Bytes (ConvertTo-Utf8Bytes '123')
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log -MaxBytes 5
        $result.content | Should -BeExactly 'ef123'
        $result.truncated | Should -BeTrue
        $result.size_bytes | Should -Be 9
    }

    It 'skips a character cut by the tail and replaces invalid bytes' {
        # 'é' is C3 A9; the tail starts at A9. FF is never valid UTF-8.
        $bytes = [byte[]](0x41, 0xC3, 0xA9, 0x42, 0xFF, 0x43)
        Write-Bytes -Path $script:Log -Bytes $bytes
        $result = & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log -MaxBytes 4
        Assert-MatchesContract $result
        $result.content | Should -BeExactly ("B" + [char]0xFFFD + "C")
        $result.truncated | Should -BeTrue
    }

    It 'decodes multi-byte text' {
        Write-Bytes -Path $script:Log -Bytes (ConvertTo-Utf8Bytes 'Grüße ✓ 日本')
        (& $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log).content | Should -BeExactly 'Grüße ✓ 日本'
    }

    It 'reads a log that the logger holds open for writing' {
        Write-Bytes -Path $script:Log -Bytes (ConvertTo-Utf8Bytes 'line')
        $share = [System.IO.FileShare]::ReadWrite -bor [System.IO.FileShare]::Delete
        $writer = [System.IO.FileStream]::new($script:Log, [System.IO.FileMode]::Append, [System.IO.FileAccess]::Write, $share)
        try {
            (& $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log).content | Should -BeExactly 'line'
        }
        finally {
            $writer.Dispose()
        }
    }

    It 'fails with ResourceUnavailable when the log cannot be opened' {
        Write-Bytes -Path $script:Log -Bytes (ConvertTo-Utf8Bytes 'secret')
        $lock = [System.IO.FileStream]::new($script:Log, [System.IO.FileMode]::Open, [System.IO.FileAccess]::ReadWrite, [System.IO.FileShare]::None)
        try {
            $failure = { & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log } | Should -Throw -PassThru
            $failure.FullyQualifiedErrorId | Should -Be 'PsDriver.ConsoleLogUnreadable'
            $failure.CategoryInfo.Category | Should -Be 'ResourceUnavailable'
        }
        finally {
            $lock.Dispose()
        }
    }

    It 'rejects MaxBytes <MaxBytes>' -ForEach @(
        @{ MaxBytes = 0 }
        @{ MaxBytes = 16777217 }
    ) {
        { & $script:ScriptPath -Name 'instance-00000001' -LogPath $script:Log -MaxBytes $MaxBytes } | Should -Throw
    }

    It 'runs contract example <Index>' -ForEach $Examples {
        $params = $Example
        $result = & $script:ScriptPath @params
        Assert-MatchesContract $result
    }
}
