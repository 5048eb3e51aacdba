"""Conventions every host script in ps_scripts/ keeps.

What PSScriptAnalyzer (UseApprovedVerbs, UseSingularNouns, UseCompatibleSyntax)
and Get-Help would report on Windows, checked here without PowerShell:

* the script name and every function defined in it use an approved verb;
* the script declares ``[CmdletBinding(...)]`` and sets strict mode and
  ``$ErrorActionPreference = 'Stop'`` itself (it must run by hand too);
* its comment-based help has .SYNOPSIS, .DESCRIPTION, one .PARAMETER per
  declared parameter (and none for a parameter it does not declare), an
  .EXAMPLE and .OUTPUTS;
* no syntax, command, parameter or variable that Windows PowerShell 5.1 lacks;
* a script that calls a helper of PsDriver.psm1 imports the module when it
  runs by hand: its first script-level statement that names a helper is the
  import guard, which names a helper the script really calls; no script
  defines a function of the module's again (the shared code lives once).

The checks themselves are tested on small synthetic scripts, so that a
broken check cannot pass silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from psdriver.bridge import pwsh_syntax, script_params
from psdriver.bridge.scripts_dir import scripts_dir

SCRIPTS_DIR = scripts_dir()
SCRIPTS = sorted(SCRIPTS_DIR.glob('*.ps1'))
HELPER_MODULE = SCRIPTS_DIR / 'PsDriver.psm1'
HELPER_MANIFEST = SCRIPTS_DIR / 'PsDriver.psd1'
#: The helper module's functions, one file per topic (PsDriver.psm1 dot-sources them).
HELPER_FILES = sorted((SCRIPTS_DIR / 'PsDriver').glob('*.ps1'))
PESTER_DIR = SCRIPTS_DIR.parent / 'tests_pester'

#: ``Get-Verb`` on Windows PowerShell 5.1 (98 verbs). PowerShell 6 added Build
#: and Deploy, which 5.1's PSScriptAnalyzer would flag, so they are left out.
APPROVED_VERBS = frozenset("""
    Add Clear Close Copy Enter Exit Find Format Get Hide Join Lock Move New Open Optimize Pop
    Push Redo Remove Rename Reset Resize Search Select Set Show Skip Split Step Switch Undo
    Unlock Watch
    Connect Disconnect Read Receive Send Write
    Backup Checkpoint Compare Compress Convert ConvertFrom ConvertTo Dismount Edit Expand
    Export Group Import Initialize Limit Merge Mount Out Publish Restore Save Sync Unpublish
    Update
    Debug Measure Ping Repair Resolve Test Trace
    Approve Assert Complete Confirm Deny Disable Enable Install Invoke Register Request
    Restart Resume Start Stop Submit Suspend Uninstall Unregister Wait
    Block Grant Protect Revoke Unblock Unprotect
    Use
""".split())

#: Commands that exist only in PowerShell 6 or later.
PS7_ONLY_COMMANDS = frozenset(name.lower() for name in (
    'Test-Json', 'Get-Error', 'Join-String', 'Get-Uptime', 'Remove-Alias', 'Remove-Service',
    'ConvertFrom-Markdown', 'Show-Markdown', 'Get-MarkdownOption', 'Set-MarkdownOption'))
#: Parameters that exist only in PowerShell 6 or later, by command.
PS7_ONLY_PARAMETERS = {
    'convertfrom-json': {'-ashashtable', '-depth', '-noenumerate'},
    'convertto-json': {'-enumsasstrings', '-asarray', '-escapehandling'},
    'foreach-object': {'-parallel', '-throttlelimit', '-asjob', '-usenewrunspace'},
    'join-path': {'-additionalchildpath'},
    'get-content': {'-asbytestream'},
    'set-content': {'-asbytestream'},
    'add-content': {'-asbytestream'},
    'split-path': {'-extension', '-leafbase'},
    'select-string': {'-raw', '-noemphasis'},
}
#: Automatic variables that exist only in PowerShell 6 or later.
PS7_ONLY_VARIABLES = frozenset({'$iswindows', '$islinux', '$ismacos', '$iscoreclr'})
#: .NET members of .NET Core that .NET Framework (Windows PowerShell 5.1) lacks.
CORE_ONLY_MEMBERS = frozenset({'GetRelativePath', 'IsPathFullyQualified',
                               'TrimEndingDirectorySeparator'})
#: Syntax nodes of PowerShell 7 operators (??, ?:, && and ||).
PS7_ONLY_NODES = {
    'null_coalesce_expression': '??',
    'ternary_expression': '?:',
    'pipeline_chain_tail': '&& / ||',
}

_FUNCTION = re.compile(r'^\s*function\s+([A-Za-z0-9_-]+)', re.MULTILINE | re.IGNORECASE)
#: How a script imports the helper module (its manifest) when it runs by hand (the bridge has
#: inlined the helpers).
_IMPORT_GUARD = re.compile(
    r"^if \(-not \(Get-Command -Name '(?P<name>[A-Za-z]+-[A-Za-z0-9]+)' -ErrorAction "
    r"SilentlyContinue\)\) \{\n"
    r"    Import-Module -Name \(Join-Path -Path \$PSScriptRoot -ChildPath 'PsDriver\.psd1'\) "
    r"-Verbose:\$false\n\}$")
_HELP_KEYWORD = re.compile(r'^\s*\.([A-Za-z]+)[ \t]*(\S*)[ \t]*$')
_SINGULAR_ENDINGS = ('ss', 'us', 'is', 'ics')


def _read(path: Path) -> str:
    return path.read_text(encoding='utf-8-sig').replace('\r\n', '\n')


def _helpers_text() -> str:
    return '\n'.join(_read(path) for path in HELPER_FILES)


# -- checks (each returns a list of problems; empty means the text keeps the rule) ----------

def verb_noun_problems(name: str) -> list[str]:
    """An approved verb and a singular noun, as UseApprovedVerbs/UseSingularNouns want."""
    verb, dash, noun = name.partition('-')
    if not dash or not noun or '-' in noun:
        return [f'{name}: not a Verb-Noun name']
    problems = []
    if verb not in APPROVED_VERBS:
        problems.append(f'{name}: "{verb}" is not an approved verb (Get-Verb)')
    last_word = re.findall(r'[A-Z][a-z0-9]*|[a-z0-9]+', noun)[-1]
    if last_word.endswith('s') and not last_word.lower().endswith(_SINGULAR_ENDINGS):
        problems.append(f'{name}: the noun "{noun}" looks plural')
    return problems


def function_names(text: str) -> list[str]:
    return _FUNCTION.findall(text)


def header_problems(text: str) -> list[str]:
    """[CmdletBinding(...)] before param(); strict mode and Stop set at script level."""
    problems = []
    binding = re.search(r'^\[CmdletBinding\(', text, re.MULTILINE)
    param = re.search(r'^param\(', text, re.MULTILINE)
    if binding is None:
        problems.append('no script-level [CmdletBinding(...)] at the start of a line')
    if param is None:
        problems.append('no script-level param( at the start of a line')
    if binding is not None and param is not None and binding.start() > param.start():
        problems.append('[CmdletBinding(...)] must come before param(')
    for line in ('Set-StrictMode -Version Latest', "$ErrorActionPreference = 'Stop'"):
        if not re.search(r'^' + re.escape(line) + r'\s*$', text, re.MULTILINE):
            problems.append(f'no script-level line {line!r}')
    # The bridge runs the script as a script block inside its wrapper: exit would end
    # the wrapper before it writes the envelope.
    for match in re.finditer(r'^\s*exit\b', text, re.MULTILINE | re.IGNORECASE):
        problems.append(f'exit at line {text.count(chr(10), 0, match.start()) + 1}')
    return problems


def help_sections(text: str) -> dict[str, list[tuple[str, str]]] | None:
    """Keyword -> [(argument, content)] of the comment-based help before [CmdletBinding(."""
    binding = re.search(r'^\[CmdletBinding\(', text, re.MULTILINE)
    head = text[:binding.start()] if binding else text
    start = head.find('<#')
    if start < 0:
        return None
    end = head.find('#>', start)
    if end < 0:
        return None
    entries: list[tuple[str, str, list[str]]] = []
    for line in head[start + 2:end].split('\n'):
        keyword = _HELP_KEYWORD.match(line)
        if keyword:
            entries.append((keyword.group(1).upper(), keyword.group(2), []))
        elif entries:
            entries[-1][2].append(line)
    sections: dict[str, list[tuple[str, str]]] = {}
    for keyword, argument, body in entries:
        sections.setdefault(keyword, []).append((argument, '\n'.join(body).strip()))
    return sections


def help_problems(text: str) -> list[str]:
    sections = help_sections(text)
    if sections is None:
        return ['no comment-based help block <# ... #> before [CmdletBinding(']
    problems = []
    for keyword in ('SYNOPSIS', 'DESCRIPTION', 'EXAMPLE', 'OUTPUTS'):
        entries = sections.get(keyword, [])
        if not entries or not all(body for _arg, body in entries):
            problems.append(f'.{keyword} is missing or empty')
    for keyword in ('SYNOPSIS', 'DESCRIPTION', 'OUTPUTS'):
        if len(sections.get(keyword, [])) > 1:
            problems.append(f'.{keyword} appears more than once')
    documented = {}
    for arg, body in sections.get('PARAMETER', []):
        documented[arg.lower()] = body
        if not arg:
            problems.append('.PARAMETER without a parameter name')
    declared = {p.name.lower(): p.name for p in script_params.script_parameters(text)}
    for key, name in declared.items():
        if key not in documented:
            problems.append(f'parameter {name} has no .PARAMETER help')
        elif not documented[key]:
            problems.append(f'.PARAMETER {name} is empty')
    for key in documented:
        if key and key not in declared:
            problems.append(f'.PARAMETER {key} documents a parameter the script does not declare')
    return problems


def _commands(node):
    """(command name, [parameter names]) of every command under ``node``."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == 'command':
            name = next((c for c in current.children if c.type == 'command_name'), None)
            elements = next((c for c in current.children if c.type == 'command_elements'),
                            None)
            parameters = [] if elements is None else [
                c.text.decode('utf-8').rstrip(':').lower()
                for c in elements.children if c.type == 'command_parameter']
            if name is not None:
                yield name.text.decode('utf-8').lower(), parameters
        stack.extend(current.children)


def ps51_problems(text: str, require_depth: bool = True) -> list[str]:
    """Syntax, commands, parameters, variables and .NET members Windows PowerShell 5.1 lacks.

    With ``require_depth``, also every ConvertTo-Json without an explicit -Depth
    (the default, 2, silently flattens deeper values to type names).
    """
    tree = pwsh_syntax.parse(text)
    problems = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        row = node.start_point[0] + 1
        if node.type in PS7_ONLY_NODES:
            problems.append(f'line {row}: PowerShell 7 operator {PS7_ONLY_NODES[node.type]}')
        elif node.type == 'assignment_operator' and node.text.decode('utf-8') == '??=':
            problems.append(f'line {row}: PowerShell 7 operator ??=')
        elif node.type == 'variable' and node.text.decode('utf-8').lower() in PS7_ONLY_VARIABLES:
            problems.append(f'line {row}: {node.text.decode("utf-8")} is PowerShell 6+ only')
        elif node.type == 'member_name' and node.text.decode('utf-8') in CORE_ONLY_MEMBERS:
            problems.append(f'line {row}: {node.text.decode("utf-8")} is .NET Core only')
        stack.extend(node.children)
    for name, parameters in _commands(tree.root_node):
        if name in PS7_ONLY_COMMANDS:
            problems.append(f'{name} is PowerShell 6+ only')
        for parameter in parameters:
            if parameter in PS7_ONLY_PARAMETERS.get(name, ()):
                problems.append(f'{name} {parameter} is PowerShell 6+ only')
        if require_depth and name == 'convertto-json' and '-depth' not in parameters:
            problems.append('ConvertTo-Json without -Depth truncates at depth 2')
    return problems


def helper_names(module_text: str) -> set[str]:
    """The functions PsDriver.psm1 defines at its top level (not those of the reader script)."""
    root = pwsh_syntax.parse(module_text).root_node
    names = set()
    for statements in (c for c in root.children if c.type == 'statement_list'):
        for node in statements.children:
            if node.type == 'function_statement':
                name = next(c for c in node.children if c.type == 'function_name')
                names.add(name.text.decode('utf-8'))
    return names


def _mentions(text: str, names: set[str]) -> set[str]:
    return {n for n in names if re.search(r'(?<![\w-])' + re.escape(n) + r'(?![\w-])', text)}


def import_problems(text: str, helpers: set[str]) -> list[str]:
    """A script using helpers imports the module first, by a guard naming a helper it calls."""
    problems = [f'defines {name}, which PsDriver.psm1 provides'
                for name in function_names(text) if name in helpers]
    root = pwsh_syntax.parse(text).root_node
    statements = [node for block in root.children if block.type == 'statement_list'
                  for node in block.children if node.type not in ('function_statement', 'comment')]
    first = next((n for n in statements if _mentions(n.text.decode('utf-8'), helpers)), None)
    if first is None:
        functions = [node for block in root.children if block.type == 'statement_list'
                     for node in block.children if node.type == 'function_statement']
        if any(_mentions(f.text.decode('utf-8'), helpers) for f in functions):
            problems.append('a function of the script uses a helper of PsDriver.psm1 but the '
                            'script has no import guard')
        return problems
    guard = _IMPORT_GUARD.match(first.text.decode('utf-8'))
    if guard is None:
        return problems + [f'line {first.start_point[0] + 1}: a helper of PsDriver.psm1 is used '
                           'before the import guard']
    rest = text[:first.start_byte] + text[first.end_byte:]
    if guard.group('name') not in _mentions(rest, helpers):
        problems.append(f"the import guard names {guard.group('name')}, which the script does "
                        'not call')
    return problems


# -- the shipped scripts --------------------------------------------------------------------

def test_scripts_are_found():
    assert len(SCRIPTS) >= 10
    assert HELPER_MODULE.is_file() and HELPER_MANIFEST.is_file()
    assert len(HELPER_FILES) >= 5


@pytest.mark.parametrize('path', SCRIPTS, ids=lambda p: p.stem)
def test_script_name_is_an_approved_verb_and_a_singular_noun(path):
    assert verb_noun_problems(path.stem) == []


@pytest.mark.parametrize('path', [*SCRIPTS, *HELPER_FILES], ids=lambda p: p.name)
def test_functions_use_approved_verbs(path):
    problems = [p for name in function_names(_read(path)) for p in verb_noun_problems(name)]
    assert problems == []


@pytest.mark.parametrize('path', SCRIPTS, ids=lambda p: p.stem)
def test_script_binds_like_a_cmdlet_and_stops_on_errors(path):
    assert header_problems(_read(path)) == []


@pytest.mark.parametrize('path', SCRIPTS, ids=lambda p: p.stem)
def test_comment_based_help_is_complete(path):
    assert help_problems(_read(path)) == []


@pytest.mark.parametrize('path', [*SCRIPTS, SCRIPTS_DIR / 'Invoke-PsDriverScript.ps1.j2'],
                         ids=lambda p: p.name)
def test_runs_on_windows_powershell_51(path):
    assert ps51_problems(_read(path)) == []


def test_helper_module_defines_its_helpers_once():
    text = _helpers_text()
    names = function_names(text)
    assert len(names) == len(set(names))
    assert {'Get-PsDriverVM', 'New-PsDriverErrorRecord', 'Start-PsDriverConsoleLogger'} <= \
        helper_names(text)


@pytest.mark.parametrize('path', SCRIPTS, ids=lambda p: p.stem)
def test_script_imports_the_helpers_it_uses(path):
    assert import_problems(_read(path), helper_names(_helpers_text())) == []


def test_helper_module_runs_on_windows_powershell_51():
    # Its one ConvertTo-Json without -Depth serialises a flat settings table.
    assert ps51_problems(_helpers_text(), require_depth=False) == []


@pytest.mark.parametrize('path', SCRIPTS, ids=lambda p: p.stem)
def test_every_script_has_a_pester_test_that_parses(path):
    test = PESTER_DIR / f'{path.stem}.Tests.ps1'
    assert test.is_file(), f'no Pester test {test.name}'
    assert pwsh_syntax.parse_errors(_read(test)) == []


@pytest.mark.parametrize('name', ['Invoke-PsDriverPester.ps1', 'PsDriverTestHelpers.ps1',
                                  'PsDriverStorageFakes.ps1', 'ClusterTestHelpers.ps1'])
def test_pester_runner_and_helpers_parse(name):
    assert pwsh_syntax.parse_errors(_read(PESTER_DIR / name)) == []


# -- the checks can fail ----------------------------------------------------------------------

_GOOD = """<#
.SYNOPSIS
    Does one thing.

.DESCRIPTION
    At length.

.PARAMETER Name
    The name.

.PARAMETER Force
    Go ahead.

.EXAMPLE
    .\\Get-Thing.ps1 -Name x

.OUTPUTS
    One object.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [string]$Name,

    [switch]$Force
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Get-ThingRecord {
    param()
}
"""


def test_a_conforming_script_passes_every_check():
    assert header_problems(_GOOD) == []
    assert help_problems(_GOOD) == []
    assert ps51_problems(_GOOD) == []
    assert [p for n in function_names(_GOOD) for p in verb_noun_problems(n)] == []


@pytest.mark.parametrize('name,expected', [
    ('Get-Thing', []),
    ('Get-Status', []),
    ('Fetch-Thing', ['not an approved verb']),
    ('Build-Thing', ['not an approved verb']),
    ('Get-Things', ['looks plural']),
    ('GetThing', ['not a Verb-Noun name']),
])
def test_verb_noun_check(name, expected):
    problems = verb_noun_problems(name)
    assert len(problems) == len(expected)
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem


@pytest.mark.parametrize('edit,fragment', [
    (lambda t: t.replace('.PARAMETER Force\n    Go ahead.\n\n', ''), 'Force has no .PARAMETER'),
    (lambda t: t.replace('.PARAMETER Force', '.PARAMETER Forced'), 'does not declare'),
    (lambda t: t.replace('.EXAMPLE\n    .\\Get-Thing.ps1 -Name x\n', ''), '.EXAMPLE is missing'),
    (lambda t: t.replace('.OUTPUTS\n    One object.\n', '.OUTPUTS\n'), '.OUTPUTS is missing'),
    (lambda t: t.replace('<#', '<<').replace('#>', '>>'), 'no comment-based help'),
])
def test_help_check_finds_gaps(edit, fragment):
    assert any(fragment in p for p in help_problems(edit(_GOOD)))


@pytest.mark.parametrize('edit,fragment', [
    (lambda t: t.replace('[CmdletBinding()]\n', ''), 'CmdletBinding'),
    (lambda t: t.replace('Set-StrictMode -Version Latest\n', ''), 'Set-StrictMode'),
    (lambda t: t.replace("$ErrorActionPreference = 'Stop'", "$ErrorActionPreference = 'Continue'"),
     'ErrorActionPreference'),
    (lambda t: t + 'if ($Force) {\n    exit 1\n}\n', 'exit at line'),
])
def test_header_check_finds_gaps(edit, fragment):
    assert any(fragment in p for p in header_problems(edit(_GOOD)))


@pytest.mark.parametrize('line,fragment', [
    ("$a = $b ?? 'x'", '??'),
    ('$a = $b ? 1 : 2', '?:'),
    ('Get-Thing && Get-Other', '&& / ||'),
    ('$a ??= 1', '??='),
    ('if ($IsWindows) { 1 }', '$IsWindows'),
    ("$j = Get-Content -Raw x | ConvertFrom-Json -AsHashtable", '-ashashtable'),
    ('1..3 | ForEach-Object -Parallel { $_ }', '-parallel'),
    ("Test-Json -Json '{}'", 'test-json'),
    ("[System.IO.Path]::GetRelativePath('a', 'b')", 'GetRelativePath'),
    ("Join-Path -Path a -ChildPath b -AdditionalChildPath c", '-additionalchildpath'),
    ('@{ a = 1 } | ConvertTo-Json', 'without -Depth'),
])
def test_ps51_check_finds_powershell_7_constructs(line, fragment):
    problems = ps51_problems(_GOOD + line + '\n')
    assert any(fragment in p for p in problems), problems


_HELPERS = {'Get-PsDriverVM', 'New-PsDriverErrorRecord'}
_GUARDED = _GOOD + """
if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$vm = Get-PsDriverVM -Name $Name
"""


def test_import_check_accepts_a_guarded_script_and_one_without_helpers():
    assert import_problems(_GUARDED, _HELPERS) == []
    assert import_problems(_GOOD, _HELPERS) == []


@pytest.mark.parametrize('edit,fragment', [
    (lambda t: t.replace("if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction "
                         "SilentlyContinue)) {\n    Import-Module -Name (Join-Path -Path "
                         "$PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false\n}\n", ''),
     'before the import guard'),
    (lambda t: t.replace("$vm = Get-PsDriverVM -Name $Name\n", '$vm = $null\n'),
     'does not call'),
    (lambda t: t.replace("-Name 'Get-PsDriverVM' -", "-Name 'New-PsDriverErrorRecord' -"),
     'does not call'),
    (lambda t: t + 'function Get-PsDriverVM {\n    param()\n}\n', 'which PsDriver.psm1 provides'),
    (lambda t: t.replace('$vm = Get-PsDriverVM', 'Get-PsDriverVM -Name x\n$vm = Get-PsDriverVM')
     .replace("if (-not (Get-Command", "Get-PsDriverVM -Name y\nif (-not (Get-Command"),
     'before the import guard'),
    # A helper used only inside a function of the script still needs the import.
    (lambda t: _GOOD + 'function Get-Local {\n    param()\n    Get-PsDriverVM -Name x\n}\n'
     'Get-Local\n', 'has no import guard'),
])
def test_import_check_finds_gaps(edit, fragment):
    problems = import_problems(edit(_GUARDED), _HELPERS)
    assert any(fragment in p for p in problems), problems


# -- the helper module's manifest ---------------------------------------------------------

#: Exported for administrators although no script calls it (README: scripts by hand).
ADMIN_HELPERS = {'Invoke-PsDriverScript'}


def manifest_exports(text: str) -> list[str]:
    """The quoted names of the manifest's FunctionsToExport array."""
    block = re.search(r'FunctionsToExport\s*=\s*@\((?P<names>[^)]*)\)', text)
    assert block, 'PsDriver.psd1 has no FunctionsToExport array'
    return re.findall(r"'([A-Za-z]+-[A-Za-z0-9]+)'", block.group('names'))


def test_manifest_exports_exactly_the_helpers_the_scripts_call():
    helpers = helper_names(_helpers_text())
    wrapper = _read(SCRIPTS_DIR / 'Invoke-PsDriverScript.ps1.j2')
    called = set().union(*(_mentions(_read(p), helpers) for p in SCRIPTS),
                         _mentions(wrapper, helpers))
    exported = manifest_exports(_read(HELPER_MANIFEST))
    assert len(exported) == len(set(exported))
    assert set(exported) == called | ADMIN_HELPERS


def test_helper_module_only_loads_its_topic_files():
    assert function_names(_read(HELPER_MODULE)) == []
    assert "RootModule           = 'PsDriver.psm1'" in _read(HELPER_MANIFEST)


@pytest.mark.parametrize('path', HELPER_FILES, ids=lambda p: p.name)
def test_helper_topic_files_hold_functions_only(path):
    root = pwsh_syntax.parse(_read(path)).root_node
    others = [node.text.decode('utf-8')[:40] for block in root.children
              if block.type == 'statement_list' for node in block.children
              if node.type not in ('function_statement', 'comment')]
    assert others == []


# -- Hyper-V cmdlets are module-qualified ---------------------------------------------------

#: A Hyper-V cmdlet's name: its noun starts with VM or VHD (Get-VM, Add-VMHardDiskDrive,
#: Resize-VHD, ...). VMware PowerCLI, often installed on the same hosts, defines Get-VM,
#: New-VM and Start-VM too, so the scripts write Hyper-V\Get-VM.
_HYPERV_CMDLET = re.compile(r'^[A-Za-z]+-(VM|VHD)[A-Za-z]*$')


def unqualified_hyperv_calls(text: str) -> list[str]:
    found, stack = [], [pwsh_syntax.parse(text).root_node]
    while stack:
        node = stack.pop()
        if node.type == 'command_name' and _HYPERV_CMDLET.match(node.text.decode('utf-8')):
            found.append(f'line {node.start_point[0] + 1}: {node.text.decode("utf-8")}')
        stack.extend(node.children)
    return found


@pytest.mark.parametrize('path', [*SCRIPTS, *HELPER_FILES], ids=lambda p: p.name)
def test_hyperv_cmdlets_are_module_qualified(path):
    assert unqualified_hyperv_calls(_read(path)) == []


def test_unqualified_hyperv_call_is_found():
    text = 'Get-VM -Name x\nHyper-V\\Stop-VM -VM $v\n'
    assert unqualified_hyperv_calls(text) == ['line 1: Get-VM']
