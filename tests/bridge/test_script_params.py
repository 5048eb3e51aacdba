"""Reading a script's param() block."""

from __future__ import annotations

from psdriver.bridge.script_params import ScriptParam, script_parameters

SCRIPT = """<#
.SYNOPSIS
    param(NotThis) in the help.
.PARAMETER Name
    The name.
#>
[CmdletBinding(SupportsShouldProcess = $true)]
[OutputType([hashtable])]
param(
    [Parameter(Mandatory = $true, HelpMessage = 'a ) tricky, one')]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory = $false)]
    [ValidateRange(0, 86400)]
    [int]$TimeoutSeconds = 60,

    [Parameter(Mandatory)]
    [string[]]$Paths,

    [Parameter(ParameterSetName = 'A', Mandatory)]
    [Parameter(ParameterSetName = 'B')]
    [string]$Either,

    [hashtable]$Spec = @{ a = 1; b = "x, $y" },

    [switch]$NoForce
)
Set-StrictMode -Version Latest
function Inner {
    param([string]$NotAScriptParameter)
}
"""


def test_reads_names_mandatory_and_types():
    assert script_parameters(SCRIPT) == [
        ScriptParam('Name', True, 'string'),
        ScriptParam('TimeoutSeconds', False, 'int'),
        ScriptParam('Paths', True, 'string[]'),
        ScriptParam('Either', False, 'string'),       # mandatory in one set only
        ScriptParam('Spec', False, 'hashtable'),
        ScriptParam('NoForce', False, 'switch'),
    ]


def test_script_without_param_block():
    assert script_parameters('Set-StrictMode -Version Latest\nfunction f { param($x) }\n') == []
    assert script_parameters('[CmdletBinding()]\nparam()\n') == []
