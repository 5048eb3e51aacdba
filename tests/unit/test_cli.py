"""The ``psdriver`` command: scripts list / render / run, and what the README promises.

``scripts run`` parses nova.conf and sets up logging for the whole process,
so it runs in a child process (:func:`run_psdriver`); the commands and
errors that stop before that run in this process.
"""

from __future__ import annotations

import base64
import configparser
import json
import re
import shlex
import uuid

import pytest

from psdriver import cli, script_options
from psdriver.bridge import contracts, errors, pwsh_syntax
from psdriver.bridge.render import FEATURES, Renderer
from psdriver.bridge.script_params import ScriptParam

from tests.unit.psdriver_command import REPO, run_psdriver

SCRIPT_FILES = sorted(p.stem for p in (REPO / 'ps_scripts').glob('*.ps1'))


def synopsis_in_file(name: str) -> str:
    """The .SYNOPSIS paragraph, read independently of the code under test."""
    text = (REPO / 'ps_scripts' / f'{name}.ps1').read_text(encoding='utf-8-sig')
    match = re.search(r'^\s*\.SYNOPSIS[ \t]*\n(.*?)\n\s*(?:\n|\.[A-Z]|#>)', text,
                      re.MULTILINE | re.DOTALL)
    assert match, f'{name}.ps1 has no .SYNOPSIS'
    return ' '.join(match.group(1).split())


# -- scripts list / render --------------------------------------------------------------

def test_scripts_list_shows_every_script_with_its_synopsis(capsys):
    assert cli.main(['scripts', 'list']) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    assert sorted(listed) == SCRIPT_FILES
    for name in SCRIPT_FILES:
        assert listed[name] == synopsis_in_file(name)


def test_synopsis_stops_at_the_next_help_keyword():
    text = ('<#\n.SYNOPSIS\n    Does one thing\n    over two lines.\n.DESCRIPTION\n'
            '    Longer.\n#>\nparam()\n')
    assert script_options.synopsis(text) == 'Does one thing over two lines.'
    assert script_options.synopsis('param()\n') == ''


@pytest.mark.parametrize('name', ['New-Instance', 'Test-PsDriverConnection'])
@pytest.mark.parametrize('features', [[], sorted(FEATURES)], ids=['plain', 'all-features'])
def test_scripts_render_prints_the_wrapper_the_bridge_sends(capsys, name, features):
    argv = ['scripts', 'render', name]
    for feature in features:
        argv += ['--feature', feature]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert text == Renderer().render(name, features)
    assert pwsh_syntax.parse_errors(text) == []
    # Structure only: no example value of the script's contract is in the text
    # (values that the scripts themselves spell, like an -Action name, aside).
    source = ''.join((REPO / 'ps_scripts' / f).read_text(encoding='utf-8-sig')
                     for f in (f'{name}.ps1', 'Invoke-PsDriverScript.ps1.j2')) + \
        Renderer().helper_library_text()
    values = {v for example in contracts.load_contract(name).examples
              for v in _strings(example) if len(v) >= 6 and v not in source}
    assert values, f'{name} has no example values to look for'
    assert [v for v in values if v in text] == []


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_render_features_change_the_text(capsys):
    cli.main(['scripts', 'render', 'Get-HostInfo'])
    plain = capsys.readouterr().out
    cli.main(['scripts', 'render', 'Get-HostInfo', '--feature', 'local_process'])
    assert capsys.readouterr().out != plain


def test_unknown_script_is_a_usage_error(capsys):
    assert cli.main(['scripts', 'render', 'Remove-Everything']) == 2
    assert "no script 'Remove-Everything'" in capsys.readouterr().err


# -- scripts run: parameters --------------------------------------------------------------

def test_run_help_lists_the_script_parameters(capsys):
    assert cli.main(['scripts', 'run', 'Get-InstanceInfo', '--help']) == 0
    out = capsys.readouterr().out
    declared = Renderer().declared_parameters('Get-InstanceInfo').values()
    for param in declared:
        assert f'--{param.name}' in out
    assert 'mandatory' in out


def test_run_help_marks_secret_parameters(capsys):
    cli.main(['scripts', 'run', 'New-Instance', '--help'])
    assert re.search(r'--Spec JSON +psobject, mandatory, secret', capsys.readouterr().out)


@pytest.mark.parametrize('argv, message', [
    (['--bogus', '1'], 'Get-HostInfo has no option(s) --bogus; it declares --InstancesPath'),
    (['stray-value'], 'unexpected value(s) after Get-HostInfo (not shown)'),
    (['--param', 'nokey'], '--param needs KEY=VALUE'),
    (['--params-json', '[1]'], '--params-json must be a JSON object'),
    (['--params-json', '{"a": '], '--params-json is not JSON'),
])
def test_run_option_mistakes_are_usage_errors(capsys, argv, message):
    assert cli.main(['scripts', 'run', 'Get-HostInfo', *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_badly_typed_value_is_refused_without_quoting_it(capsys):
    code = cli.main(['scripts', 'run', 'Copy-CachedImage', '--param', 'sizebytes=SECRET-42'])
    assert code == 2
    err = capsys.readouterr().err
    assert '--param SizeBytes: expected an integer' in err and 'SECRET-42' not in err
    with pytest.raises(SystemExit):
        cli.main(['scripts', 'run', 'Copy-CachedImage', '--SizeBytes', 'SECRET-43'])
    err = capsys.readouterr().err
    assert 'expected an integer' in err and 'SECRET-43' not in err


def test_script_options_follow_the_declared_types():
    params = [ScriptParam('Name', True, 'string'), ScriptParam('Count', False, 'int'),
              ScriptParam('Force', False, 'switch'), ScriptParam('Names', False, 'string[]'),
              ScriptParam('Spec', True, 'psobject')]
    parser = script_options.option_parser('X', params)
    argv = script_options.normalise_options(
        ['--name', "vm'01", '-COUNT=0x10', '--force', '--names', 'a', 'b', '--Names', 'c',
         '--spec', '{"k": [1, null]}'], params)
    assert vars(parser.parse_args(argv)) == {
        'Name': "vm'01", 'Count': 16, 'Force': True, 'Names': ['a', 'b', 'c'],
        'Spec': {'k': [1, None]}}
    assert vars(parser.parse_args([])) == {}
    assert script_options.convert(params[3], '["x", "y"]') == ['x', 'y']
    assert script_options.convert(params[3], 'x') == ['x']
    assert script_options.convert(ScriptParam('On', False, 'switch'), 'false') is False


def test_a_secret_spec_that_breaks_its_schema_is_refused_without_its_value():
    spec = next(e['Spec'] for e in contracts.load_contract('New-Instance').examples)
    with pytest.raises(errors.BridgeParameterError) as caught:
        Renderer().check_parameters('New-Instance', {'Spec': dict(spec, vcpus='SECRET-44')})
    assert 'vcpus must be of type integer' in str(caught.value)
    assert 'SECRET-44' not in str(caught.value)


# -- scripts run: against the simulated host ---------------------------------------------

def test_run_get_host_info_on_the_simulated_host_prints_the_contract_shape(tmp_path):
    (tmp_path / 'nova.conf').write_text('[DEFAULT]\nhost = cli-test-hv\n')
    done = run_psdriver('scripts', 'run', 'Get-HostInfo', '--transport', 'sim',
                        '--config-file', 'nova.conf',
                        '--param', 'InstancesPath=C:\\OpenStack\\Instances', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    contracts.load_contract('Get-HostInfo').validate(result)
    assert result['hostname'] == 'cli-test-hv'       # the config file was read
    assert done.stderr == ''


def test_run_takes_script_parameters_as_options_the_way_the_readme_shows(tmp_path):
    readme = (REPO / 'README.md').read_text(encoding='utf-8')
    (command,) = re.findall(r'`(psdriver scripts run Test-PsDriverConnection [^`]*)`', readme)
    argv = shlex.split(command)[1:]
    done = run_psdriver(*argv, '--transport', 'sim', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['echo'] == argv[argv.index('--echo') + 1]


def test_run_never_echoes_a_secret_parameter(tmp_path):
    marker = 'admin_pass=SECRET-' + uuid.uuid4().hex
    content = base64.b64encode(marker.encode()).decode()
    spec = {'name': 'vm-secret', 'instance_uuid': str(uuid.uuid4()),
            'instance_dir': 'C:\\OpenStack\\Instances\\vm-secret', 'generation': 2,
            'vcpus': 1, 'memory_mb': 512, 'root_disk': None, 'power_on': False,
            'config_drive': {'content_base64': content, 'format': 'iso', 'as_dvd': True}}
    done = run_psdriver('scripts', 'run', 'New-Instance', '--transport', 'sim', '--verbose',
                        '--Spec', json.dumps(spec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['name'] == 'vm-secret'
    assert "with {'Spec': '***'}" in done.stderr       # debug logging was on
    for text in (done.stdout, done.stderr):
        assert marker not in text and content not in text


def test_run_errors_print_the_bridge_message_and_exit_non_zero(tmp_path):
    # A simulated host kept in a state file is used as it is (an in-memory one is
    # set up for the call): this one has no VM.
    (tmp_path / 'nova.conf').write_text('[powershell]\ntransport = sim\n'
                                        'sim_state_file = sim.json\n')
    done = run_psdriver('scripts', 'run', 'Get-InstanceInfo', '--config-file', 'nova.conf',
                        '--name', 'no-such-vm', cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ''
    assert re.search(r"psdriver: error: Get-InstanceInfo on sim://\S+ failed: .*'no-such-vm'",
                     done.stderr)


# -- the README and tox agree ------------------------------------------------------------

def test_tox_demo_env_runs_the_readme_demo_command():
    readme = (REPO / 'README.md').read_text(encoding='utf-8')
    (setup,) = [line for line in readme.splitlines() if line.rstrip().endswith('psdriver demo')]
    readme_command = setup.split('&&')[-1].strip()
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / 'tox.ini', encoding='utf-8')
    commands = [c.strip() for c in tox['testenv:demo']['commands'].strip().splitlines()]
    assert commands == [f'{readme_command} {{posargs}}']
    assert readme_command == 'psdriver demo'
