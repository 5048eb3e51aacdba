<#
.SYNOPSIS
    Lints the host scripts with PSScriptAnalyzer and runs their Pester 5 tests.

.DESCRIPTION
    1. Makes sure Pester 5 and PSScriptAnalyzer are available, installing them
       for the current user from the PowerShell Gallery when they are missing
       (unless -NoInstall is given).
    2. Runs Invoke-ScriptAnalyzer on ps_scripts/ with PSScriptAnalyzerSettings.psd1
       from the repository root. Any finding fails the run.
    3. Runs Invoke-Pester on tests_pester/ (*.Tests.ps1). Any failed test, or no
       test at all, fails the run. PsDriverTestHelpers.ps1 there is not a test:
       the test files dot-source it for what they share (contracts, command
       stubs, fake Hyper-V hosts).

    This is what "tox -e pester" runs. The tests need PowerShell 7.4 or later
    (Test-Json -Schema with JSON Schema 2020-12, ConvertFrom-Json -AsHashtable);
    Hyper-V itself is not needed: its cmdlets are mocked.

    Exit codes: 0 all good; 1 analyzer findings; 2 Pester failures or no tests;
    3 both; 4 set-up problem (PowerShell too old, modules not installable).

.PARAMETER TestResultPath
    Also write the Pester results as JUnit XML to this file (for CI systems).
    Defaults to none.

.PARAMETER NoInstall
    Fail instead of installing missing modules.

.PARAMETER SkipAnalyzer
    Only run the Pester tests.

.PARAMETER SkipPester
    Only run PSScriptAnalyzer.

.PARAMETER TestName
    Only run the tests whose full name matches this wildcard pattern.

.EXAMPLE
    pwsh -NoProfile -File tests_pester/Invoke-PsDriverPester.ps1

.EXAMPLE
    pwsh -NoProfile -File tests_pester/Invoke-PsDriverPester.ps1 -SkipAnalyzer -TestName '*Get-InstanceInfo*'
#>
[CmdletBinding()]
param(
    [string]$TestResultPath,

    [switch]$NoInstall,

    [switch]$SkipAnalyzer,

    [switch]$SkipPester,

    [string[]]$TestName
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$RepoRoot = Split-Path -Parent $PSScriptRoot
$ScriptsPath = Join-Path -Path $RepoRoot -ChildPath 'ps_scripts'
$SettingsPath = Join-Path -Path $RepoRoot -ChildPath 'PSScriptAnalyzerSettings.psd1'
$TestsPath = $PSScriptRoot

$PesterMinimum = [version]'5.5.0'
$PesterMaximum = '5.999.999'
$AnalyzerMinimum = [version]'1.21.0'

function Write-Step {
    param(
        [Parameter(Mandatory)]
        [string]$Message
    )
    Write-Host ''
    Write-Host "==> $Message"
}

function Import-RequiredModule {
    param(
        [Parameter(Mandatory)]
        [string]$Name,

        [Parameter(Mandatory)]
        [version]$MinimumVersion,

        [string]$MaximumVersion
    )
    $candidates = @(Get-Module -ListAvailable -Name $Name | Where-Object {
            $_.Version -ge $MinimumVersion -and (-not $MaximumVersion -or $_.Version -le [version]$MaximumVersion)
        })
    if ($candidates.Count -eq 0) {
        if ($NoInstall) {
            throw "$Name $MinimumVersion or later is not installed (and -NoInstall was given): Install-Module -Name $Name -MinimumVersion $MinimumVersion -Scope CurrentUser"
        }
        Write-Host "Installing $Name (>= $MinimumVersion) for the current user from the PowerShell Gallery"
        $install = @{
            Name               = $Name
            MinimumVersion     = $MinimumVersion
            Scope              = 'CurrentUser'
            Repository         = 'PSGallery'
            Force              = $true
            SkipPublisherCheck = $true
            AllowClobber       = $true
        }
        if ($MaximumVersion) {
            $install['MaximumVersion'] = $MaximumVersion
        }
        Install-Module @install
    }
    $import = @{
        Name           = $Name
        MinimumVersion = $MinimumVersion
        Force          = $true
        PassThru       = $true
    }
    if ($MaximumVersion) {
        $import['MaximumVersion'] = $MaximumVersion
    }
    $module = Import-Module @import
    Write-Host "Using $Name $($module.Version)"
}

function Invoke-Analyzer {
    Write-Step "PSScriptAnalyzer on $ScriptsPath"
    $findings = @(Invoke-ScriptAnalyzer -Path $ScriptsPath -Recurse -Settings $SettingsPath)
    foreach ($finding in $findings) {
        $file = [System.IO.Path]::GetFileName($finding.ScriptPath)
        Write-Host ('{0}:{1}:{2}: {3} [{4}] {5}' -f $file, $finding.Line, $finding.Column,
            $finding.Severity, $finding.RuleName, $finding.Message)
    }
    $scripts = @(Get-ChildItem -LiteralPath $ScriptsPath -Recurse -File -Include '*.ps1', '*.psm1', '*.psd1')
    Write-Host "PSScriptAnalyzer: $($findings.Count) finding(s) in $($scripts.Count) file(s)"
    return $findings.Count
}

function Invoke-TestSuite {
    Write-Step "Pester on $TestsPath"
    $config = New-PesterConfiguration
    $config.Run.Path = $TestsPath
    $config.Run.PassThru = $true
    $config.Run.Exit = $false
    $config.Output.Verbosity = 'Detailed'
    if ($TestName) {
        $config.Filter.FullName = $TestName
    }
    if ($TestResultPath) {
        $config.TestResult.Enabled = $true
        $config.TestResult.OutputFormat = 'JUnitXml'
        $config.TestResult.OutputPath = $TestResultPath
    }
    $result = Invoke-Pester -Configuration $config
    Write-Host ('Pester: {0} passed, {1} failed, {2} skipped, {3} not run; {4} failed block(s), {5} failed container(s)' -f
        $result.PassedCount, $result.FailedCount, $result.SkippedCount, $result.NotRunCount,
        $result.FailedBlocksCount, $result.FailedContainersCount)
    if ($result.PassedCount -eq 0) {
        Write-Host 'Pester: no test passed (none found or all skipped): failing'
        return $false
    }
    return ($result.Result -eq 'Passed')
}

try {
    if ($PSVersionTable.PSVersion.Major -lt 7) {
        throw "PowerShell 7.4 or later is needed (this is $($PSVersionTable.PSVersion)): the tests use Test-Json -Schema and ConvertFrom-Json -AsHashtable. Run this with pwsh."
    }
    if ($PSVersionTable.PSVersion -lt [version]'7.4') {
        Write-Warning "PowerShell $($PSVersionTable.PSVersion): Test-Json only supports JSON Schema 2020-12 from 7.4 on; contract checks may fail."
    }
    if (-not $SkipPester) {
        Import-RequiredModule -Name 'Pester' -MinimumVersion $PesterMinimum -MaximumVersion $PesterMaximum
    }
    if (-not $SkipAnalyzer) {
        Import-RequiredModule -Name 'PSScriptAnalyzer' -MinimumVersion $AnalyzerMinimum
    }
}
catch {
    Write-Host "Set-up failed: $($_.Exception.Message)"
    exit 4
}

$exitCode = 0
if (-not $SkipAnalyzer) {
    if ((Invoke-Analyzer) -gt 0) {
        $exitCode = $exitCode -bor 1
    }
}
if (-not $SkipPester) {
    if (-not (Invoke-TestSuite)) {
        $exitCode = $exitCode -bor 2
    }
}
Write-Step "Done (exit code $exitCode)"
exit $exitCode
