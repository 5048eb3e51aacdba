"""The renderer: wrapper structure, caching, features, parameter checks, syntax."""

from __future__ import annotations

import shutil

import pytest

from psdriver.bridge import contracts, errors, helpers, pwsh_syntax
from psdriver.bridge.render import FEATURES, Renderer, feature_sets

SCRIPTS = contracts.script_names()


@pytest.fixture(scope='module')
def renderer():
    return Renderer()


def _library(renderer):
    return helpers.parse_library(renderer.helper_library_text())


def _names(text, node_type):
    """Lower-case texts of every ``node_type`` node (tree-sitter-pwsh) of a PowerShell text."""
    found, stack = set(), [pwsh_syntax.parse(text).root_node]
    while stack:
        node = stack.pop()
        if node.type == node_type:
            found.add(node.text.decode('utf-8').lower())
        stack.extend(node.children)
    return found


@pytest.mark.parametrize('name', SCRIPTS)
def test_wrapper_defines_every_helper_the_script_and_helpers_call(renderer, name):
    text = renderer.render(name, {'local_process'})
    module_functions = {f.name.lower() for f in _library(renderer).functions}
    missing = (_names(text, 'command_name') & module_functions) - _names(text, 'function_name')
    assert not missing, f'{name}: called but not inlined: {sorted(missing)}'


def test_wrapper_leaves_out_helpers_the_script_does_not_use(renderer):
    library = _library(renderer)
    small = renderer.render('Test-PsDriverConnection')
    assert 'function Invoke-PsDriverScriptBlock' in small
    assert 'function Start-PsDriverConsoleLogger' not in small
    assert len(small) < len(library.select(*(f.text for f in library.functions)))
    assert 'function Start-PsDriverConsoleLogger' in renderer.render('New-Instance')


def test_helper_selection_is_transitive_and_keeps_module_order():
    library = helpers.parse_library(
        'Set-StrictMode -Version Latest\n'
        '# a section comment\n'
        'function Get-A {\n    Get-B\n}\n'
        'function Get-B {\n    "${function:Get-C}"\n}\n'
        'function Get-C {\n    \'function Get-E { }\'\n}\n'
        'function Get-D {\n    1\n}\n')
    assert library.names() == {'Get-A', 'Get-B', 'Get-C', 'Get-D'}
    chosen = library.select('Get-A -Verbose')
    assert chosen.startswith('Set-StrictMode -Version Latest')
    assert 'section comment' not in chosen
    assert [n for n in ('Get-A', 'Get-B', 'Get-C', 'Get-D')
            if f'function {n} ' in chosen] == ['Get-A', 'Get-B', 'Get-C']
    assert library.select('get-c') == 'Set-StrictMode -Version Latest\n\n' \
        'function Get-C {\n    \'function Get-E { }\'\n}'
    assert library.select('nothing here') == 'Set-StrictMode -Version Latest'


def test_a_helper_module_that_does_not_parse_is_refused():
    with pytest.raises(ValueError, match='does not parse'):
        helpers.parse_library('function Get-A {\n')


def test_feature_sets_cover_every_combination():
    sets = feature_sets()
    assert len(sets) == 2 ** len(FEATURES)
    assert len(set(sets)) == len(sets)
    assert frozenset() in sets and frozenset(FEATURES) in sets


@pytest.mark.parametrize('features', feature_sets(), ids=lambda f: '+'.join(sorted(f)) or 'none')
@pytest.mark.parametrize('name', SCRIPTS)
def test_every_rendered_script_parses(renderer, name, features):
    text = renderer.render(name, features)
    assert pwsh_syntax.parse_errors(text) == []
    assert '{{' not in text and '{%' not in text and '{#' not in text


@pytest.mark.parametrize('name', SCRIPTS)
def test_wrapper_structure(renderer, name):
    text = renderer.render(name)
    assert text.split('\n', 1)[0] == f'# psdriver-script: {name}'
    body = (renderer.root / f'{name}.ps1').read_text(encoding='utf-8-sig').rstrip('\n')
    assert '$psDriverScript = {\n' + body + '\n}\n' in text
    section = text.split('# ---- PsDriver.psm1', 1)[1].split(f'# ---- {name}.ps1', 1)[0]
    for function in _library(renderer).functions:
        if function.text in section:
            continue
        assert function.name.lower() not in helpers.words(body), (
            f'{name} uses {function.name}, which the wrapper left out')
    for line in ("Set-StrictMode -Version Latest", "$ErrorActionPreference = 'Stop'",
                 "$ProgressPreference = 'SilentlyContinue'"):
        assert line in text.split('# ---- PsDriver.psm1')[0]
    for module in contracts.load_contract(name).modules:
        assert f"\n    '{module}'\n" in text


def test_rendering_is_cached_and_deterministic(renderer):
    first = renderer.render('Get-HostInfo', {'local_process'})
    assert renderer.render('Get-HostInfo', ['local_process']) is first
    assert Renderer().render('Get-HostInfo', {'local_process'}) == first


def test_local_process_feature_reads_stdin_and_sets_exit_code(renderer):
    plain = renderer.render('Get-HostInfo')
    local = renderer.render('Get-HostInfo', {'local_process'})
    assert '[System.Console]::In.ReadToEnd()' in local and 'ReadToEnd' not in plain.split(
        '# ---- Get-HostInfo.ps1')[-1].split('$psDriverModules')[-1]
    assert local.rstrip().endswith('exit $psDriverOutcome.ExitCode')
    assert plain.rstrip().endswith('$psDriverOutcome.Json')


def test_verbose_feature_turns_on_verbose_records(renderer):
    assert "$VerbosePreference = 'Continue'" in renderer.render('Get-HostInfo', {'verbose_log'})
    assert "$VerbosePreference = 'Continue'" not in renderer.render('Get-HostInfo')


def test_unknown_feature_is_refused(renderer):
    with pytest.raises(ValueError, match='unknown render features'):
        renderer.render('Get-HostInfo', {'colour'})


def _copy_root(tmp_path):
    root = tmp_path / 'ps_scripts'
    shutil.copytree(Renderer().root, root)
    return root


def test_undefined_template_variables_fail_loudly(tmp_path):
    root = _copy_root(tmp_path)
    wrapper = root / 'Invoke-PsDriverScript.ps1.j2'
    wrapper.write_text(wrapper.read_text() + '{{ not_in_context }}\n')
    import jinja2
    with pytest.raises(jinja2.UndefinedError):
        Renderer(root).render('Get-HostInfo')


def test_module_names_from_contracts_are_checked(tmp_path):
    root = _copy_root(tmp_path)
    path = root / 'Get-HostInfo.contract.json'
    path.write_text(path.read_text().replace('"Hyper-V"', '"Hyper-V\'; Stop-Computer; \'"'))
    contracts.load_contract.cache_clear()
    try:
        with pytest.raises(ValueError, match='module name'):
            Renderer(root).render('Get-HostInfo')
    finally:
        contracts.load_contract.cache_clear()


# -- parameter checks -----------------------------------------------------------------------

def test_declared_parameters_come_from_the_param_block(renderer):
    declared = renderer.declared_parameters('Get-HostInfo')
    assert [p.name for p in declared.values()] == ['InstancesPath']
    assert not declared['instancespath'].mandatory


def test_unknown_parameter_is_refused_before_running(renderer):
    with pytest.raises(errors.BridgeParameterError, match='no parameter.*Bogus'):
        renderer.check_parameters('Get-HostInfo', {'Bogus': 1})


def test_parameter_names_match_case_insensitively(renderer):
    renderer.check_parameters('Get-HostInfo', {'instancespath': 'C:\\x'})


def test_missing_mandatory_parameter_is_refused(renderer):
    mandatory = [(name, p.name) for name in SCRIPTS
                 for p in renderer.declared_parameters(name).values() if p.mandatory]
    assert mandatory, 'some script must declare a mandatory parameter'
    name, param = mandatory[0]
    with pytest.raises(errors.BridgeParameterError, match=param):
        renderer.check_parameters(name, {})


@pytest.mark.parametrize('name', SCRIPTS)
def test_contract_examples_pass_the_parameter_check(renderer, name):
    for example in contracts.load_contract(name).examples:
        renderer.check_parameters(name, example)


def test_spec_is_checked_against_its_schema(renderer):
    contract = contracts.load_contract('New-Instance')
    assert contract.spec_schema is not None
    example = next(e for e in contract.examples if 'Spec' in e)
    renderer.check_parameters('New-Instance', example)
    broken = dict(example, Spec=dict(example['Spec'], vcpus='many'))
    with pytest.raises(errors.BridgeParameterError, match='Spec'):
        renderer.check_parameters('New-Instance', broken)


def test_the_runspace_loader_parses_and_holds_no_value():
    from psdriver.bridge.call import (
        HASH_PARAMETER, INPUT_PARAMETER, TEXT_PARAMETER, UNKNOWN, loader_text,
    )
    text = loader_text('Get-HostInfo')
    assert pwsh_syntax.parse_errors(text) == []
    assert text.startswith('# psdriver-script: Get-HostInfo\n')
    for name in (INPUT_PARAMETER, TEXT_PARAMETER, HASH_PARAMETER):
        assert f'[string]${name}' in text
    assert f"'{UNKNOWN}'" in text and "'" not in UNKNOWN
    assert loader_text('New-Instance').split('\n', 1)[1] == text.split('\n', 1)[1]
