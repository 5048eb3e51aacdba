"""execute_rendered: script name, parameter binding, envelopes, bugs."""

from __future__ import annotations

import json

import pytest

from psdriver.bridge import envelope, errors
from psdriver.bridge.call import encode_document
from psdriver.sim import SimError, SimHost, dispatch, execute_rendered

from tests.sim.conftest import rendered

PARAMS = """    [Parameter(Mandatory = $true)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    # a comment, with a comma
    [Parameter()]
    [string]$Notes = 'a, b',

    [switch]$Force"""


@pytest.fixture
def set_notes(script_dir, register):
    script_dir('Set-SimNotes', PARAMS)

    def handle(host, params):
        vm = host.set_notes(params['Name'], params.get('Notes', ''))
        return {'name': vm.name, 'notes': vm.notes, 'force': params.get('Force', False)}

    register('Set-SimNotes', handle)


def _call(host, name, params):
    return json.loads(execute_rendered(rendered(name), encode_document(params), host))


def test_values_arrive_exactly(host, set_notes):
    host.create_vm('vm')
    hostile = "x'; Remove-VM * -Force; $(whoami) `n \"q\" \x00 \U0001F600 \u2019"
    out = _call(host, 'Set-SimNotes', {'Name': 'vm', 'Notes': hostile})
    assert out == {'ok': True, 'result': {'name': 'vm', 'notes': hostile, 'force': False}}
    assert host.get_vm('vm').notes == hostile


def test_parameter_names_bind_case_insensitively(host, set_notes):
    host.create_vm('vm')
    out = _call(host, 'Set-SimNotes', {'name': 'vm', 'FORCE': True})
    assert out['result']['force'] is True


def test_unknown_parameter_is_a_binding_error(host, set_notes):
    out = _call(host, 'Set-SimNotes', {'Name': 'vm', 'Bogus': 1})
    err = out['error']
    assert err['category'] == 'InvalidArgument'
    assert err['message'] == "A parameter cannot be found that matches parameter name 'Bogus'."
    assert err['error_id'].startswith('NamedParameterNotFound')


def test_missing_mandatory_parameter(host, set_notes):
    out = _call(host, 'Set-SimNotes', {'Notes': 'x'})
    assert out['error']['message'] == ('Cannot process command because of one or more '
                                       'missing mandatory parameters: Name.')


def test_sim_error_becomes_the_error_envelope(host, set_notes):
    text = execute_rendered(rendered('Set-SimNotes'), encode_document({'Name': 'ghost'}), host)
    with pytest.raises(errors.ScriptObjectNotFound) as exc:
        envelope.parse(text, 'Set-SimNotes', 'sim://SIMHV01')
    err = exc.value
    assert err.message == 'Hyper-V was unable to find a virtual machine with name "ghost".'
    assert (err.category, err.error_id, err.error_target) == \
        ('ObjectNotFound', 'PsDriver.VMNotFound', 'ghost')
    assert err.error_type == 'Microsoft.HyperV.PowerShell.VirtualizationException'


def test_custom_sim_error_fields(host, script_dir, register):
    script_dir('Get-SimBroken', '')

    def broken(h, p):
        raise SimError('quota', category='QuotaExceeded', error_id='X.Quota',
                       error_type='System.Exception', target='t')

    register('Get-SimBroken', broken)
    err = _call(host, 'Get-SimBroken', {})['error']
    assert err == {'type': 'System.Exception', 'message': 'quota', 'category': 'QuotaExceeded',
                   'error_id': 'X.Quota', 'target': 't', 'script_stack': ''}


def test_other_exceptions_are_bugs_and_propagate(host, script_dir, register):
    script_dir('Get-SimBug', '')
    register('Get-SimBug', lambda h, p: {}['missing'])
    with pytest.raises(KeyError):
        execute_rendered(rendered('Get-SimBug'), encode_document({}), host)


def test_unknown_script_has_no_handler(host):
    with pytest.raises(LookupError, match='no handler'):
        execute_rendered(rendered('Get-NothingLikeThis'), encode_document({}), host)


@pytest.mark.parametrize('text', ['', 'param($x)\n', '#psdriver-script Get-HostInfo\n',
                                  '\n# psdriver-script: Get-HostInfo\n'])
def test_first_line_must_name_the_script(host, text):
    with pytest.raises(ValueError):
        execute_rendered(text, encode_document({}), host)


def test_first_line_may_carry_a_bom():
    assert dispatch.script_name('\ufeff# psdriver-script: Get-HostInfo\r\nrest') == \
        'Get-HostInfo'


def test_read_only_handlers_do_not_rewrite_the_state_file(tmp_path, script_dir, register):
    script_dir('Get-SimCount', '')
    script_dir('New-SimVm', '[string]$Name')
    register('Get-SimCount', lambda h, p: len(h.list_vms()), readonly=True)
    register('New-SimVm', lambda h, p: h.create_vm(p['Name']).name)
    path = tmp_path / 'host.json'
    host = SimHost(state_file=str(path))
    before = path.stat().st_mtime_ns, host.state.generation
    assert _call(host, 'Get-SimCount', {})['result'] == 0
    assert (path.stat().st_mtime_ns, host.state.generation) == before
    assert _call(host, 'New-SimVm', {'Name': 'a'})['result'] == 'a'
    assert host.state.generation == before[1] + 1


def test_default_host_is_shared_in_a_process(monkeypatch, script_dir, register):
    monkeypatch.delenv(dispatch.STATE_ENV, raising=False)
    script_dir('New-SimVm2', '[string]$Name')
    register('New-SimVm2', lambda h, p: h.create_vm(p['Name']).name)
    first = execute_rendered(rendered('New-SimVm2'), encode_document({'Name': 'd1'}))
    again = execute_rendered(rendered('New-SimVm2'), encode_document({'Name': 'd1'}))
    assert json.loads(first)['ok'] is True
    assert json.loads(again)['error']['category'] == 'ResourceExists'
    dispatch.default_host().remove_vm('d1')


def test_prepare_hook_runs_before_the_handler(host, script_dir, register):
    script_dir('Get-SimVmState', '[Parameter(Mandatory)][string]$Name')
    register('Get-SimVmState', lambda h, p: h.get_vm(p['Name']).state, readonly=True,
             prepare=lambda h, p: h.create_vm(p['Name']))
    assert dispatch.run_prepared(host, 'Get-SimVmState', {'name': 'p1'}) == 'Off'
    assert dispatch.handlers()['Get-SimVmState'].prepare is not None


def test_duplicate_registration_is_refused(register):
    register('Get-SimDup', lambda h, p: 1)
    with pytest.raises(ValueError):
        dispatch.handler('Get-SimDup')(lambda h, p: 2)
