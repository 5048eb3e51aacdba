"""A state file shared by several processes (the stand-in pwsh, the WS-Man endpoint)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from psdriver.bridge.call import encode_document
from psdriver.sim import SimError, SimHost, execute_rendered

from tests.sim.conftest import rendered

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, state_file: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code), str(state_file), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          check=True)


def test_another_process_sees_and_changes_the_host(tmp_path):
    path = tmp_path / 'host.json'
    host = SimHost(state_file=str(path), memory_mb=32768)
    host.create_vm('vm1', memory_startup_mb=1024, notes='uuid-1')
    out = _run("""
        import json, sys
        from psdriver.sim import SimHost
        host = SimHost(state_file=sys.argv[1])
        vm = host.get_vm('vm1')
        host.start_vm('vm1')
        print(json.dumps({'notes': vm.notes, 'memory_mb': host.config.memory_mb,
                          'free': host.memory_free_mb()}))
    """, path)
    seen = json.loads(out.stdout)
    assert seen == {'notes': 'uuid-1', 'memory_mb': 32768, 'free': 32768 - 2048 - 1024}
    assert host.get_vm('vm1').state == 'Running'           # re-read after the other write
    assert host.memory_free_mb() == seen['free']


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / 'host.json'
    host = SimHost(state_file=str(path))
    code = """
        import sys
        from psdriver.sim import SimHost
        host = SimHost(state_file=sys.argv[1])
        for i in range(40):
            host.create_vm(f'{sys.argv[2]}-{i}', memory_startup_mb=32)
            host.start_vm(f'{sys.argv[2]}-{i}')
    """
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, '-c', textwrap.dedent(code), str(path), prefix],
                              cwd=REPO, env=env) for prefix in ('a', 'b')]
    for i in range(40):
        host.create_vm(f'c-{i}', memory_startup_mb=32)
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert len(host.list_vms()) == 120
    assert host.memory_free_mb() == 65536 - 2048 - 80 * 32
    host.check_consistency()


def test_faults_reach_other_processes(tmp_path):
    path = tmp_path / 'host.json'
    host = SimHost(state_file=str(path))
    host.faults.fail('Get-HostInfo', 'WinRM said no', category='PermissionDenied')
    out = _run("""
        import sys
        from psdriver.bridge.call import encode_document
        from psdriver.sim import SimHost, execute_rendered
        host = SimHost(state_file=sys.argv[1])
        text = '# psdriver-script: Get-HostInfo\\n'
        print(execute_rendered(text, encode_document({}), host))
    """, path)
    env = json.loads(out.stdout)
    assert env['ok'] is False
    assert (env['error']['message'], env['error']['category']) == \
        ('WinRM said no', 'PermissionDenied')
    assert host.faults.pending() == []                     # consumed over there


def test_host_down_reaches_the_default_host_of_a_double(tmp_path):
    path = tmp_path / 'host.json'
    host = SimHost(state_file=str(path))
    host.faults.host_down()
    env = dict(os.environ, PYTHONPATH=str(REPO), PSDRIVER_SIM_STATE=str(path))
    code = textwrap.dedent("""
        from psdriver.bridge.call import encode_document
        from psdriver.sim import SimHostDown, execute_rendered
        try:
            execute_rendered('# psdriver-script: Get-HostInfo\\n', encode_document({}))
        except SimHostDown as exc:
            print('down:', exc)
    """)
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith('down: SIMHV01')


def test_existing_file_keeps_its_capacity(tmp_path):
    path = str(tmp_path / 'host.json')
    SimHost(state_file=path, memory_mb=8192).create_vm('keep')
    assert SimHost(state_file=path).config.memory_mb == 8192
    assert SimHost(state_file=path, memory_mb=8192).find_vm('keep') is not None
    with pytest.raises(ValueError, match='memory_mb'):
        SimHost(state_file=path, memory_mb=4096)
    fresh = SimHost(state_file=path, reset=True, memory_mb=4096)
    assert fresh.find_vm('keep') is None
    assert SimHost(state_file=path).config.memory_mb == 4096


def test_two_hosts_on_one_file_in_one_process(tmp_path):
    path = str(tmp_path / 'host.json')
    a, b = SimHost(state_file=path), SimHost(state_file=path)
    a.create_vm('x')
    b.start_vm('x')
    assert a.get_vm('x').state == 'Running'
    a.faults.delay('*', 0.01, times=None)
    assert len(b.faults.pending()) == 1


def test_a_refused_operation_keeps_what_came_before_it_and_a_bug_keeps_nothing(tmp_path):
    path = str(tmp_path / 'host.json')
    host = SimHost(state_file=path)
    with pytest.raises(SimError):
        with host.transaction():
            host.create_vm('first')
            host.create_vm('first')                       # refused, like a failing cmdlet
    assert SimHost(state_file=path).find_vm('first') is not None
    with pytest.raises(ZeroDivisionError):
        with host.transaction():
            host.create_vm('second')
            raise ZeroDivisionError
    assert SimHost(state_file=path).find_vm('second') is None
    assert host.find_vm('second') is None                 # re-read, not the broken copy


def test_envelope_from_a_state_file_host(tmp_path, script_dir, register):
    script_dir('Get-SimVmCount', '')
    register('Get-SimVmCount', lambda h, p: {'count': len(h.list_vms())}, readonly=True)
    path = str(tmp_path / 'host.json')
    host = SimHost(state_file=path)
    host.create_vm('a')
    out = json.loads(execute_rendered(rendered('Get-SimVmCount'), encode_document({}), host))
    assert out == {'ok': True, 'result': {'count': 1}}
