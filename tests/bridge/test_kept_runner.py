"""KeptProcessRunner against the stand-in ``pwsh -s`` (tests/infra/fake_pwsh/server.py).

Real processes and pipes, the out-of-process framing both ways and psrpcore
on both sides; only PowerShell is simulated.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest

from psdriver.bridge import envelope, errors
from psdriver.bridge.call import HASH_PARAMETER, INPUT_PARAMETER, TEXT_PARAMETER
from psdriver.bridge.client import Bridge
from psdriver.bridge.runners import Runner
from psdriver.bridge.runners.kept import SERVER_ARGS, KeptProcessRunner
from tests.infra.fake_pwsh import BIN_DIR

pytestmark = pytest.mark.skipif(os.name == 'nt', reason='the stand-in pwsh is a POSIX script')


@pytest.fixture
def fake_path(tmp_path):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    (bindir / 'pwsh').symlink_to(Path(BIN_DIR) / 'pwsh')
    return os.pathsep.join([str(bindir), os.path.dirname(sys.executable),
                            os.environ.get('PATH', os.defpath)])


@pytest.fixture
def log(tmp_path):
    return tmp_path / 'pwsh.jsonl'


@pytest.fixture
def make_bridge(fake_path, log):
    made = []

    def make(pool_size=2, **knobs):
        env = {'PATH': fake_path, 'FAKE_PWSH_LOG': str(log)}
        env.update({f'FAKE_PWSH_{k.upper()}': str(v) for k, v in knobs.items()})
        bridge = Bridge(KeptProcessRunner(pool_size=pool_size, env=env))
        made.append(bridge)
        return bridge
    yield make
    for bridge in made:
        bridge.close()


def entries(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def starts(log):
    return [e['argv'] for e in entries(log) if 'argv' in e]


def pipelines(log):
    return [e for e in entries(log) if 'pipeline' in e]


def test_is_a_runner_and_starts_the_remoting_server(make_bridge, log):
    bridge = make_bridge()
    assert isinstance(bridge.runner, Runner)
    assert bridge.runner.features == frozenset()
    assert bridge.call('Test-PsDriverConnection', {'Echo': 'hi'})['echo'] == 'hi'
    (argv,) = starts(log)
    assert argv[1:] == list(SERVER_ARGS)


def test_one_process_serves_many_calls_and_the_script_travels_once(make_bridge, log):
    bridge = make_bridge()
    for i in range(4):
        assert bridge.call('Test-PsDriverConnection', {'Echo': f'v{i}'})['echo'] == f'v{i}'
    bridge.call('Get-HostInfo', {})
    assert len(starts(log)) == 1 and bridge.runner.processes_started == 1
    sent = [p['pipeline'] for p in pipelines(log)]
    full = sorted([HASH_PARAMETER, INPUT_PARAMETER, TEXT_PARAMETER])
    short = sorted([HASH_PARAMETER, INPUT_PARAMETER])
    assert sent == [full, short, short, short, full]


def test_values_and_unicode_round_trip(make_bridge):
    bridge = make_bridge()
    value = "it's \"q\" $(x) `n \u00e9\u65e5\U0001F600 \ufffe\uffff \x00 end"
    assert bridge.call('Test-PsDriverConnection', {'Echo': value})['echo'] == value


def test_a_large_compressed_document_arrives(make_bridge):
    bridge = make_bridge(echo=1)
    value = 'z' * 300_000
    out = envelope.parse(bridge.runner.run(_call(bridge, {'Echo': value})), 'x', 'y')
    assert out['params'] == {'Echo': value}


def _call(bridge, params, name='Test-PsDriverConnection', timeout=20.0):
    from psdriver.bridge.call import ScriptCall, encode_document
    document = encode_document(params)
    if len(str(params)) > 100_000:
        assert document.startswith('deflate:')
    return ScriptCall(name=name, text=bridge.renderer.render(name), params=params,
                      document=document, timeout=timeout)


def test_calls_run_in_parallel_up_to_the_pool_size(make_bridge, log):
    bridge = make_bridge(pool_size=2, echo=1, sleep=0.3)
    results, failures = [], []
    barrier = threading.Barrier(2)

    def one(i):
        try:
            barrier.wait()
            out = envelope.parse(bridge.runner.run(_call(bridge, {'Echo': i})), 'x', 'y')
            results.append(out['pid'])
        except Exception as exc:   # noqa: BLE001 (reported below)
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    assert len(set(results)) == 2            # two processes at once
    bridge.runner.run(_call(bridge, {'Echo': 'third'}))
    assert bridge.runner.processes_started == 2     # reused, never more than pool_size


def test_timeout_kills_the_process_says_the_host_may_have_acted(make_bridge, log):
    bridge = make_bridge(sleep=30)
    with pytest.raises(errors.BridgeTimeoutAfterStart, match='may have done') as info:
        bridge.call('Test-PsDriverConnection', {'Echo': 'slow'}, timeout=1)
    assert info.value.host_may_have_acted
    assert isinstance(info.value, errors.BridgeTimeout)
    assert bridge.runner._idle == []


def test_a_process_dying_mid_call_is_replaced(make_bridge, log):
    bridge = make_bridge(die_at=2)
    assert bridge.call('Test-PsDriverConnection', {'Echo': 'one'})['echo'] == 'one'
    with pytest.raises(errors.BridgeError, match='failed during the call') as info:
        bridge.call('Test-PsDriverConnection', {'Echo': 'two'})
    assert 'Unhandled exception' in info.value.stderr_tail
    assert not isinstance(info.value, errors.BridgeTimeout)
    # the next call starts a new process, which defines the script again
    assert bridge.call('Test-PsDriverConnection', {'Echo': 'three'})['echo'] == 'three'
    assert bridge.runner.processes_started == 2
    assert TEXT_PARAMETER in pipelines(log)[-1]['pipeline']


def test_output_that_is_not_the_framing_is_an_error_then_recovers(make_bridge, log):
    bridge = make_bridge(garbage=1)
    with pytest.raises(errors.BridgeError, match='unexpected output'):
        bridge.call('Test-PsDriverConnection', {'Echo': 'x'})
    assert bridge.runner._idle == []


def test_missing_executable_is_a_transport_error(tmp_path):
    runner = KeptProcessRunner(executable='no-such-pwsh', env={'PATH': str(tmp_path)})
    with pytest.raises(errors.BridgeTransportError, match='no-such-pwsh'):
        Bridge(runner).call('Test-PsDriverConnection', {'Echo': 'x'})


def test_script_errors_keep_their_type_and_the_process(make_bridge, log):
    bridge = make_bridge()
    with pytest.raises(errors.ScriptObjectNotFound):
        bridge.call('Get-InstanceInfo', {'Name': 'no-such-vm'})
    bridge.call('Test-PsDriverConnection', {'Echo': 'after'})
    assert bridge.runner.processes_started == 1


def test_close_ends_the_processes(make_bridge, log):
    bridge = make_bridge()
    bridge.call('Test-PsDriverConnection', {'Echo': 'x'})
    (proc,) = bridge.runner._idle
    bridge.close()
    assert proc.proc.poll() is not None
    with pytest.raises(errors.BridgeTransportError, match='closed'):
        bridge.call('Test-PsDriverConnection', {'Echo': 'x'})


def test_an_idle_process_that_died_is_replaced(make_bridge, log):
    bridge = make_bridge(pool_size=1)
    bridge.call('Test-PsDriverConnection', {'Echo': 'x'})
    (proc,) = bridge.runner._idle
    proc.proc.kill()
    proc.proc.wait(10)
    assert bridge.call('Test-PsDriverConnection', {'Echo': 'y'})['echo'] == 'y'
    assert bridge.runner.processes_started == 2


@pytest.mark.parametrize('pool_size, kind', [(3, KeptProcessRunner), (0, None)])
def test_the_local_transport_follows_local_pool_size(tmp_path, pool_size, kind):
    from oslo_config import cfg

    import psdriver.conf
    from psdriver.bridge.factory import build_runner
    from psdriver.bridge.runners.local import LocalRunner
    conf = cfg.ConfigOpts()
    psdriver.conf.register_opts(conf)
    conf([], project='nova', default_config_files=[])
    conf.set_override('transport', 'local', group='powershell')
    conf.set_override('executable', str(Path(BIN_DIR) / 'pwsh'), group='powershell')
    conf.set_override('local_pool_size', pool_size, group='powershell')
    runner = build_runner(conf)
    try:
        assert isinstance(runner, kind or LocalRunner)
        if kind:
            assert runner.pool_size == pool_size
    finally:
        runner.close()
