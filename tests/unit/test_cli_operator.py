"""``psdriver`` as a new operator meets it: configuration mistakes, ValidateSet, hostnames."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from tests.unit.psdriver_command import REPO, run_psdriver


def one_line_error(done) -> str:
    assert done.returncode == 2, done.stderr
    assert 'Traceback' not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith('psdriver: error: ')
    return lines[0]


@pytest.mark.parametrize('text,says', [
    (None, 'config file(s) not found or not readable: {path}'),
    ('[powershell]\ntransport = carrier-pigeon\n',
     "[powershell] transport in {path}: Valid values are [local, psrp, sim], "
     "but found 'carrier-pigeon'"),
    ('[powershell\ntransport = sim\n',
     'cannot parse config file {path}: at {path}:1, Invalid section'),
    ('[hyperv]\ndynamic_memory_ratio = nan\n',
     '[hyperv] dynamic_memory_ratio in {path}: nan is not a finite number'),
])
def test_a_configuration_mistake_is_one_line_naming_file_and_option(tmp_path, text, says):
    path = tmp_path / 'nova.conf'
    if text is not None:
        path.write_text(text)
    done = run_psdriver('scripts', 'run', 'Get-HostInfo', '--config-file', str(path),
                        '--param', 'InstancesPath=C:\\x', cwd=tmp_path)
    assert says.format(path=path) in one_line_error(done)


def test_run_help_shows_the_validate_set():
    done = run_psdriver('scripts', 'run', 'Set-InstancePowerState', '--help', cwd='/')
    assert done.returncode == 0
    text = ' '.join(done.stdout.split())
    assert ('--Action VALUE string, mandatory, one of Start, Stop, Shutdown, Restart, '
            'SoftReboot, Pause, Resume, Save, Restore') in text


def test_a_value_outside_the_validate_set_is_refused_before_the_round_trip(tmp_path):
    done = run_psdriver('scripts', 'run', 'Set-InstancePowerState', '--transport', 'sim',
                        '--Name', 'instance-0000002a', '--Action', 'Jump', '-v', cwd=tmp_path)
    line = one_line_error(done.__class__(done.args, done.returncode, done.stdout,
                                         _errors_only(done.stderr)))
    assert line.endswith('Set-InstancePowerState -Action must be one of Start, Stop, '
                         'Shutdown, Restart, SoftReboot, Pause, Resume, Save, Restore')
    assert 'Running Set-InstancePowerState' not in done.stderr      # no round trip


def _errors_only(stderr: str) -> str:
    """The lines of stderr that are not oslo.log's debug lines."""
    return '\n'.join(line for line in stderr.splitlines() if ' DEBUG ' not in line)


def test_the_simulated_host_has_one_name_in_scripts_run_and_the_demo(tmp_path):
    done = run_psdriver('scripts', 'run', 'Get-HostInfo', '--transport', 'sim',
                        '--param', 'InstancesPath=C:\\OpenStack\\Instances', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['hostname'] == 'SIMHV01'
    demo = run_psdriver('demo', cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert 'simulated Hyper-V host SIMHV01' in demo.stdout


def test_a_sim_state_file_in_a_missing_folder_names_the_folder(tmp_path):
    (tmp_path / 'nova.conf').write_text('[powershell]\ntransport = sim\n'
                                        f'sim_state_file = {tmp_path}/nope/sim.json\n')
    done = run_psdriver('scripts', 'run', 'Get-HostInfo', '--config-file', 'nova.conf',
                        cwd=tmp_path)
    assert done.returncode == 1
    assert 'Traceback' not in done.stderr
    assert done.stderr.strip().endswith(
        f'sim_state_file {tmp_path}/nope/sim.json: the folder {tmp_path}/nope does not exist')


def test_demo_state_file_in_a_missing_folder_names_the_folder(tmp_path):
    done = run_psdriver('demo', '--state-file', str(tmp_path / 'nope' / 'sim.json'),
                        cwd=tmp_path)
    assert one_line_error(done) == (
        f'psdriver: error: --state-file: the folder {tmp_path / "nope"} does not exist')


def test_the_readme_simulated_host_examples_work_as_written(tmp_path):
    """Every ``scripts run ... --transport sim`` line of the README, on a fresh simulated host."""
    readme = (REPO / 'README.md').read_text(encoding='utf-8')
    commands = re.findall(r'^(psdriver scripts run \S+ --transport sim[^#\n]*)', readme,
                          re.MULTILINE)
    assert any('Get-InstanceInfo --transport sim --Name instance-0000002a' in c
               for c in commands)
    for command in commands:
        done = run_psdriver(*shlex.split(command)[1:], cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr)
        result = json.loads(done.stdout)
        if 'Get-InstanceInfo' in command:
            assert (result['name'], result['state']) == ('instance-0000002a', 'Running')


#: Distributions of the ``test`` extra (setup.cfg) that nova itself does not need.
TEST_EXTRA_MODULES = ('pytest', '_pytest', 'pytest_timeout', 'hypothesis', 'psrpcore',
                      'placement', 'oslotest', 'wsgi_intercept')


def test_the_demo_needs_nothing_of_the_test_extra(tmp_path):
    """``pip install .`` (no ``[test]``) is enough for ``psdriver demo``."""
    import os
    import subprocess
    import sys
    blocker = f'''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {TEST_EXTRA_MODULES!r}:
            raise ImportError('test-extra module ' + name)
sys.meta_path.insert(0, Block())
from psdriver.cli import main
sys.exit(main(['demo', '-q']))
'''
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, '-c', blocker], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert 'The host is clean' in done.stdout
