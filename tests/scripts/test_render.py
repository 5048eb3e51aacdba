"""The renderer: wrapper structure, caching, features, parameter checks, syntax."""

from __future__ import annotations

import shutil

import pytest

from psdriver.bridge import contracts, errors, pwsh_syntax
from psdriver.bridge.render import FEATURES, Renderer, feature_sets

SCRIPTS = contracts.script_names()


@pytest.fixture(scope='module')
def renderer():
    return Renderer()


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
    helpers = (renderer.root / 'PsDriver.psm1').read_text(encoding='utf-8-sig')
    assert helpers.strip() in text
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
