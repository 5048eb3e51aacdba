# PSScriptAnalyzer settings for the host scripts in ps_scripts/.
#
#   Invoke-ScriptAnalyzer -Path ps_scripts -Recurse -Settings ./PSScriptAnalyzerSettings.psd1
#
# tests_pester/Invoke-PsDriverPester.ps1 (tox -e pester) runs exactly this and
# fails on any finding. Every default rule runs, plus the formatting and
# compatibility rules below; the exclusions are explained where they are made.
@{
    IncludeDefaultRules = $true

    # Information-level rules (PSAvoidUsingPositionalParameters,
    # PSUseOutputTypeCorrectly, ...) are advice for interactive authoring; the
    # gate is Warning and Error.
    Severity            = @('Error', 'Warning')

    ExcludeRules        = @(
        # The scripts run non-interactively under the compute driver: nobody
        # can answer -Confirm, and -WhatIf is never passed. Their helper
        # functions, and those of PsDriver.psm1 (New-PsDriverErrorRecord,
        # Stop-PsDriverVM, ...), are called by the scripts inside the
        # scripts' own ShouldProcess blocks. The Hyper-V cmdlets they call
        # keep their own ShouldProcess support, and the scripts and helpers
        # pass -Confirm:$false where a cmdlet would ask.
        'PSUseShouldProcessForStateChangingFunctions'
    )

    Rules               = @{
        # Every script must run on Windows PowerShell 5.1 (Windows Server
        # 2016/2019 hosts with no PowerShell 7) and on PowerShell 7.
        PSUseCompatibleSyntax          = @{
            Enable         = $true
            TargetVersions = @('5.1', '7.0')
        }

        # Default rules, listed to record that they stay on:
        # - Get/New/Set/... only: the script names are Verb-Noun commands.
        PSUseApprovedVerbs             = @{
            Enable = $true
        }
        # - A password parameter must be a [securestring] or [pscredential];
        #   secrets reach a script through the input document and are listed in
        #   the contract's secret_parameters so they are never logged.
        PSAvoidUsingPlainTextForPassword = @{
            Enable = $true
        }

        # Layout: 4-space indentation, Stroustrup braces
        # ("}" and "else" / "catch" on separate lines), one space around
        # operators, aligned hashtable values allowed.
        PSUseConsistentIndentation     = @{
            Enable              = $true
            IndentationSize     = 4
            Kind                = 'space'
            PipelineIndentation = 'IncreaseIndentationForFirstPipeline'
        }
        PSPlaceOpenBrace               = @{
            Enable             = $true
            OnSameLine         = $true
            NewLineAfter       = $true
            IgnoreOneLineBlock = $true
        }
        PSPlaceCloseBrace              = @{
            Enable             = $true
            NewLineAfter       = $true
            IgnoreOneLineBlock = $true
            NoEmptyLineBefore  = $false
        }
        PSUseConsistentWhitespace      = @{
            Enable                                  = $true
            CheckInnerBrace                         = $true
            CheckOpenBrace                          = $true
            CheckOpenParen                          = $true
            CheckOperator                           = $true
            CheckPipe                               = $true
            CheckPipeForRedundantWhitespace         = $true
            CheckSeparator                          = $true
            CheckParameter                          = $true
            IgnoreAssignmentOperatorInsideHashTable = $true
        }
        PSUseCorrectCasing             = @{
            Enable = $true
        }
        PSAvoidTrailingWhitespace      = @{
            Enable = $true
        }
        PSUseLiteralInitializerForHashtable = @{
            Enable = $true
        }
    }
}
