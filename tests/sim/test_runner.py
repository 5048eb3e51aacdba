"""SimRunner on its own and end to end through the Bridge."""

from __future__ import annotations

import pytest

from psdriver.bridge import errors
from psdriver.bridge.call import ScriptCall, encode_document
from psdriver.bridge.runners import Runner
from psdriver.sim import SimHost, SimRunner

from tests.sim.conftest import GIB, INSTANCES, rendered


def _call(name, params, timeout=30.0):
    return ScriptCall(name=name, text=rendered(name), params=params,
                      document=encode_document(params), timeout=timeout)


def test_runner_protocol(host):
    runner = SimRunner(host)
    assert isinstance(runner, Runner)
    assert runner.target == 'sim://SIMHV01'
    assert runner.features == frozenset()
    runner.close()
    runner.close()


def test_host_down_is_a_transport_error(host):
    runner = SimRunner(host)
    host.faults.host_down()
    with pytest.raises(errors.BridgeTransportError) as exc:
        runner.run(_call('Get-HostInfo', {}))
    assert exc.value.script == 'Get-HostInfo' and exc.value.target == 'sim://SIMHV01'


def test_slow_call_is_a_timeout(host):
    runner = SimRunner(host)
    host.faults.delay('Get-HostInfo', 60)
    with pytest.raises(errors.BridgeTimeout):
        runner.run(_call('Get-HostInfo', {}, timeout=0.2))


# -- through the Bridge (renderer, contracts, envelope) --------------------------------

@pytest.fixture
def bridge(host):
    pytest.importorskip('psdriver.bridge.render')
    from psdriver.bridge.client import Bridge
    bridge = Bridge(SimRunner(host))
    yield bridge
    bridge.close()


def test_host_info_end_to_end(bridge, host):
    info = bridge.call('Get-HostInfo', {})
    assert info['hostname'] == 'SIMHV01'
    host.create_vm('vm', memory_startup_mb=8192)
    host.start_vm('vm')
    host.new_vhd(f'{INSTANCES}\\disk.vhdx', 100 * GIB, fixed=True)
    after = bridge.call('Get-HostInfo', {'InstancesPath': INSTANCES})
    assert after['memory_mb_free'] == info['memory_mb_free'] - 8192
    assert after['instances_path']['free_gb'] == pytest.approx(400.0, abs=0.01)
    assert bridge.round_trips == 2


def test_connection_echo_end_to_end(bridge):
    value = "vm'01 \"; Remove-VM *; $(whoami)\x00\U0001F600"
    assert bridge.call('Test-PsDriverConnection', {'Echo': value})['echo'] == value


def test_faults_end_to_end(bridge, host):
    host.faults.fail('Get-HostInfo', 'The RPC server is unavailable.',
                     category='ResourceUnavailable')
    with pytest.raises(errors.ScriptResourceUnavailable, match='RPC server'):
        bridge.call('Get-HostInfo', {})
    host.faults.garbage('Get-HostInfo')
    with pytest.raises(errors.BridgeBadOutput):
        bridge.call('Get-HostInfo', {})
    host.faults.delay('Get-HostInfo', 60)
    with pytest.raises(errors.BridgeTimeout):
        bridge.call('Get-HostInfo', {}, timeout=0.2)
    host.faults.host_down()
    with pytest.raises(errors.BridgeTransportError):
        bridge.call('Get-HostInfo', {})
    host.faults.host_up()
    assert bridge.call('Get-HostInfo', {})['hostname'] == 'SIMHV01'


def test_state_file_host_end_to_end(tmp_path):
    pytest.importorskip('psdriver.bridge.render')
    from psdriver.bridge.client import Bridge
    path = str(tmp_path / 'host.json')
    SimHost(state_file=path, hostname='HV-FILE')
    bridge = Bridge(SimRunner(SimHost(state_file=path)))
    assert bridge.call('Get-HostInfo', {})['hostname'] == 'HV-FILE'
