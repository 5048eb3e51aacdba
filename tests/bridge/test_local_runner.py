"""LocalRunner against the stand-in ``pwsh`` (tests/infra/fake_pwsh) put first on PATH.

Real processes, pipes, temp files and signals; only PowerShell is simulated.
The stand-in refuses command lines and script files that break the bridge's
conventions, so a passing call here means the runner followed them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from psdriver.bridge import envelope, errors
from psdriver.bridge.call import ScriptCall, encode_document
from psdriver.bridge.runners import Runner
from psdriver.bridge.runners.local import BASE_ARGS, LocalRunner
from tests.infra.fake_pwsh import BIN_DIR
from tests.infra.fake_pwsh.stand_in import EXIT_USAGE, payload

pytestmark = pytest.mark.skipif(os.name == 'nt', reason='the stand-in pwsh is a POSIX script')

UNICODE = 'Grüße_✓_日本_\U0001F600'
SECRET = 'S3cret-pässword!'


def script_text(name):
    return (f'# psdriver-script: {name}\n'
            'param([string]$PsDriverInput)\n'
            f"# structure only, values come on stdin: {UNICODE}\n")


def make_call(params=None, name='Test-PsDriverConnection', timeout=10.0, text=None):
    params = {'Echo': 'hi'} if params is None else params
    return ScriptCall(name=name, text=text or script_text(name), params=params,
                      document=encode_document(params), timeout=timeout)


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture
def fake_path(tmp_path):
    """PATH with a bin directory holding the stand-in ``pwsh`` first.

    This interpreter's directory comes next, so the launcher's
    ``#!/usr/bin/env python3`` finds a Python with the project's dependencies.
    """
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    (bindir / 'pwsh').symlink_to(Path(BIN_DIR) / 'pwsh')
    return os.pathsep.join([str(bindir), os.path.dirname(sys.executable),
                            os.environ.get('PATH', os.defpath)])


@pytest.fixture(autouse=True)
def script_tmp(tmp_path, monkeypatch):
    """Temporary scripts go to a private directory, which must be empty after each test."""
    where = tmp_path / 'tmp'
    where.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(where))
    yield where
    assert sorted(os.listdir(where)) == []


@pytest.fixture
def argv_log(tmp_path):
    return tmp_path / 'argv.jsonl'


@pytest.fixture
def make_runner(fake_path, argv_log):
    def make(**knobs):
        opts = {k: knobs.pop(k) for k in ('stderr_tail_chars', 'extra_args') if k in knobs}
        env = {'PATH': fake_path, 'FAKE_PWSH_LOG': str(argv_log)}
        env.update({f'FAKE_PWSH_{k.upper()}': str(v) for k, v in knobs.items()})
        return LocalRunner(env=env, **opts)
    return make


def logged_argvs(log):
    return [json.loads(line)['argv'] for line in log.read_text().splitlines()]


def run_stand_in(args, script_bytes=b'\xef\xbb\xbf# psdriver-script: X-Y\n', mode=0o600,
                 tmp=None, stdin=''):
    """Start the stand-in directly (no runner) with ``args``; {} is the script path."""
    path = Path(tmp) / 'direct.ps1'
    path.write_bytes(script_bytes)
    path.chmod(mode)
    argv = [sys.executable, str(Path(BIN_DIR) / 'pwsh')] + [a.format(path) for a in args]
    return subprocess.run(argv, input=stdin.encode(), capture_output=True, timeout=30,
                          env={**os.environ, 'FAKE_PWSH_ECHO': '1'})


def alive(pid):
    """True if ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f'/proc/{pid}/stat') as fh:
            return fh.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return True


def wait_gone(pid, within=3.0):
    end = time.monotonic() + within
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    return not alive(pid)


@pytest.fixture
def grandchild_pid_file(tmp_path):
    """Where the stand-in writes its grandchild's pid; a survivor is killed afterwards."""
    pid_file = tmp_path / 'grandchild.pid'
    yield pid_file
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if alive(pid):
            os.kill(pid, 9)


# -- a normal call ----------------------------------------------------------------------------

def test_is_a_runner():
    runner = LocalRunner()
    assert isinstance(runner, Runner)
    assert runner.features == frozenset({'local_process'})
    assert runner.target.startswith('local pwsh (') and runner.target.endswith(')')
    runner.close()
    runner.close()


def test_document_on_stdin_text_from_private_file(make_runner, argv_log, caplog):
    caplog.set_level(logging.DEBUG)
    params = {'Echo': f"{UNICODE} 'q' \"dq\" $(whoami) `n", 'Password': SECRET, 'N': 7}
    call = make_call(params)
    runner = make_runner(echo=1)

    result = envelope.parse(runner.run(call), call.name, runner.target)

    assert result == {'params': params, 'script': call.text}
    [argv] = logged_argvs(argv_log)
    assert argv[1:-1] == [*BASE_ARGS, '-File']
    assert argv[-1].endswith('.ps1') and not os.path.exists(argv[-1])
    for arg in argv:
        assert call.document not in arg and SECRET not in arg
    assert call.document not in caplog.text and SECRET not in caplog.text


def test_extra_args_go_before_file(make_runner, argv_log):
    runner = make_runner(echo=1, extra_args=['-OutputFormat', 'Text'])
    runner.run(make_call())
    [argv] = logged_argvs(argv_log)
    assert argv[1:-1] == [*BASE_ARGS, '-OutputFormat', 'Text', '-File']


def test_output_decoded_as_utf8_without_bom(make_runner):
    text = '\ufeff' + json.dumps({'ok': True, 'result': UNICODE}, ensure_ascii=False) + '\r\n'
    out = make_runner(stdout=text).run(make_call())
    assert not out.startswith('\ufeff')
    assert envelope.parse(out, 'x', 'y') == UNICODE


# -- failures ---------------------------------------------------------------------------------

def test_error_envelope_with_exit_1_is_returned(make_runner):
    failure = envelope.failure('no VM', category='ObjectNotFound', target='vm1')
    out = make_runner(stdout=failure, exit=1).run(make_call())
    with pytest.raises(errors.ScriptObjectNotFound, match='no VM'):
        envelope.parse(out, 'Get-HostInfo', 'here')


def test_nonzero_exit_without_envelope(make_runner, argv_log):
    noise = ''.join(f'line {i}: something went wrong\n' for i in range(2000)) + 'LAST LINE'
    runner = make_runner(exit=3, stderr=noise, stderr_tail_chars=300)
    with pytest.raises(errors.BridgeError) as info:
        runner.run(make_call(name='Get-HostInfo'))
    exc = info.value
    assert type(exc) is errors.BridgeError
    assert exc.exit_code == 3
    assert exc.stderr_tail.endswith('LAST LINE') and len(exc.stderr_tail) <= 300
    assert noise[-300:].strip() == exc.stderr_tail
    assert 'Get-HostInfo' in str(exc) and runner.target in str(exc)
    assert 'exit code 3' in str(exc)
    [argv] = logged_argvs(argv_log)
    assert not os.path.exists(argv[-1])


@pytest.mark.parametrize('stdout, exit_code, expected, reason', [
    ('hello, not json', None, errors.BridgeBadOutput, 'not JSON'),
    ('[1, 2]', None, errors.BridgeBadOutput, 'not an envelope'),
    ('', None, errors.BridgeBadOutput, 'no output'),
    ('Segmentation fault', 2, errors.BridgeError, 'without printing an envelope'),
])
def test_output_that_is_not_an_envelope(make_runner, stdout, exit_code, expected, reason):
    knobs = {'stdout': stdout, 'stderr': 'oops on stderr'}
    if exit_code is not None:
        knobs['exit'] = exit_code
    with pytest.raises(errors.BridgeError, match=reason) as info:
        make_runner(**knobs).run(make_call())
    assert type(info.value) is expected
    assert info.value.exit_code == (exit_code or 0)
    assert info.value.stderr_tail == 'oops on stderr'


def test_missing_executable(tmp_path):
    runner = LocalRunner('psdriver-no-such-pwsh', env={'PATH': str(tmp_path)})
    with pytest.raises(errors.BridgeTransportError) as info:
        runner.run(make_call())
    message = str(info.value)
    assert "'psdriver-no-such-pwsh'" in message and f'PATH={tmp_path}' in message


def test_executable_that_cannot_start(tmp_path):
    not_a_program = tmp_path / 'pwsh'
    not_a_program.write_bytes(b'\x00\x01 not an executable format')
    not_a_program.chmod(0o755)
    with pytest.raises(errors.BridgeTransportError, match='cannot start PowerShell'):
        LocalRunner(str(not_a_program)).run(make_call())


# -- timeouts ---------------------------------------------------------------------------------

def test_timeout_kills_the_process_tree(make_runner, argv_log, grandchild_pid_file):
    pid_file = grandchild_pid_file
    runner = make_runner(sleep=60, grandchild=pid_file)
    started = time.monotonic()
    with pytest.raises(errors.BridgeTimeoutAfterStart, match='did not finish within 1.5s'):
        runner.run(make_call(timeout=1.5))
    assert time.monotonic() - started < 4.0
    grandchild = int(pid_file.read_text())
    assert wait_gone(grandchild), f'grandchild {grandchild} survived the timeout'
    [argv] = logged_argvs(argv_log)
    assert not os.path.exists(argv[-1])


def test_timeout_when_a_leftover_child_holds_the_output(make_runner, grandchild_pid_file):
    pid_file = grandchild_pid_file
    runner = make_runner(stdout='{"ok":true,"result":1}', grandchild=pid_file)
    started = time.monotonic()
    with pytest.raises(errors.BridgeTimeout, match='kept its output open'):
        runner.run(make_call(timeout=1.0))
    assert time.monotonic() - started < 3.5
    assert wait_gone(int(pid_file.read_text()))


# -- volume and concurrency -------------------------------------------------------------------

def test_large_output_with_large_stderr(make_runner):
    size = 5 * 1024 * 1024
    noise = 'e' * 100_000 + 'END'          # more than a pipe buffer, written before stdout
    runner = make_runner(stdout_bytes=size, stderr=noise)
    started = time.monotonic()
    out = runner.run(make_call())
    assert time.monotonic() - started < 10
    assert envelope.parse(out, 'x', 'y') == {'data': payload(size)}


def test_concurrent_calls(make_runner, argv_log):
    runner = make_runner(echo=1)
    results, failures = {}, []

    def worker(n):
        try:
            for k in range(2):
                params = {'Echo': f'{UNICODE}-{n}-{k}'}
                call = make_call(params, text=script_text('Test-PsDriverConnection') + f'#{n}\n')
                results[(n, k)] = (call, envelope.parse(runner.run(call), call.name, 't'))
        except Exception as exc:     # reported below, with the thread's number
            failures.append((n, exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert len(results) == 12
    for call, result in results.values():
        assert result == {'params': call.params, 'script': call.text}
    assert len({argv[-1] for argv in logged_argvs(argv_log)}) == 12


# -- the simulated host behind the stand-in ---------------------------------------------------

@pytest.fixture
def sim_host(tmp_path):
    sim = pytest.importorskip('psdriver.sim')
    return sim.SimHost(state_file=str(tmp_path / 'host.json'))


@pytest.fixture
def sim_runner(fake_path, sim_host):
    return LocalRunner(env={'PATH': fake_path, 'PSDRIVER_SIM_STATE': sim_host.state_file})


def test_injected_script_error_is_returned_as_envelope(sim_runner, sim_host):
    sim_host.faults.fail('Get-HostInfo', 'boom', category='ObjectNotFound')
    out = sim_runner.run(make_call({}, name='Get-HostInfo'))
    with pytest.raises(errors.ScriptObjectNotFound, match='boom'):
        envelope.parse(out, 'Get-HostInfo', sim_runner.target)


def test_host_down_is_a_crashed_process(sim_runner, sim_host):
    sim_host.faults.host_down()
    with pytest.raises(errors.BridgeError) as info:
        sim_runner.run(make_call({}, name='Get-HostInfo'))
    assert type(info.value) is errors.BridgeError
    assert info.value.exit_code not in (None, 0, 1)
    assert 'Unhandled exception' in info.value.stderr_tail
    assert 'was killed by SIGABRT' in str(info.value)


def test_garbage_from_the_host_is_bad_output(sim_runner, sim_host):
    sim_host.faults.garbage('Get-HostInfo')
    with pytest.raises(errors.BridgeBadOutput, match='not JSON'):
        sim_runner.run(make_call({}, name='Get-HostInfo'))


@pytest.fixture
def sim_bridge(fake_path, sim_host):
    pytest.importorskip('psdriver.bridge.render')
    from psdriver.bridge.client import Bridge
    bridge = Bridge(LocalRunner(env={'PATH': fake_path,
                                     'PSDRIVER_SIM_STATE': sim_host.state_file}))
    yield bridge
    bridge.close()


def _contains(data, value):
    if isinstance(data, dict):
        return any(_contains(v, value) for v in data.values())
    if isinstance(data, list):
        return any(_contains(v, value) for v in data)
    return data == value


def test_bridge_round_trip(sim_bridge, sim_host):
    value = f"{UNICODE} vm'01 \"; Remove-VM *; $(whoami)"
    assert _contains(sim_bridge.call('Test-PsDriverConnection', {'Echo': value}), value)
    assert isinstance(sim_bridge.call('Get-HostInfo', {}), dict)
    sim_host.faults.fail('Get-HostInfo', 'boom', category='ObjectNotFound')
    with pytest.raises(errors.ScriptObjectNotFound, match='boom'):
        sim_bridge.call('Get-HostInfo', {})


# -- the stand-in holds the runner to the conventions ------------------------------------------

@pytest.mark.parametrize('args, script, mode, complaint', [
    (['-NoLogo', '-NoProfile', '-NonInteractive', '-Command', '-'], None, 0o600,
     '-Command is refused'),
    (['-NoLogo', '-NoProfile', '-NonInteractive', '-EncodedCommand', 'ZQBjAGgAbwA='], None,
     0o600, '-EncodedCommand is refused'),
    (['-NoLogo', '-NoProfile', '-File', '{}'], None, 0o600, '-NonInteractive missing'),
    (['-NoLogo', '-NoProfile', '-NonInteractive', '-File', '{}', '-PsDriverInput', 'e30='],
     None, 0o600, 'must come on stdin'),
    (['-NoLogo', '-NoProfile', '-NonInteractive', '-File', '{}'],
     b'# psdriver-script: X-Y\n', 0o600, 'UTF-8 BOM'),
    (['-NoLogo', '-NoProfile', '-NonInteractive', '-File', '{}'], None, 0o644,
     'must be private'),
])
def test_stand_in_refuses_broken_conventions(tmp_path, args, script, mode, complaint):
    kw = {'script_bytes': script} if script is not None else {}
    proc = run_stand_in(args, mode=mode, tmp=tmp_path, stdin='e30=', **kw)
    assert proc.returncode == EXIT_USAGE
    assert complaint in proc.stderr.decode()
    assert proc.stdout == b''


def test_stand_in_accepts_the_runner_convention(tmp_path):
    args = ['-NoLogo', '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass',
            '-File', '{}']
    document = base64.b64encode(json.dumps({'A': UNICODE}).encode()).decode()
    proc = run_stand_in(args, tmp=tmp_path, stdin=document)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)['result']['params'] == {'A': UNICODE}
