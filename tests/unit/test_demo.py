"""``psdriver demo``: the real driver through an instance's life on the simulated host.

Two runs of the command itself (in a child process, from an empty folder):
the whole life succeeds, and an injected host fault fails the spawn with its
message, is cleaned up, and exits non-zero.  The variations (quiet output, a
fault that never fires, a failing check) run in this process.
"""

from __future__ import annotations

import io
import re
import uuid

import pytest
from nova.compute import power_state
from nova.virt import node as nova_node
from oslo_config import cfg
from oslo_config import fixture as config_fixture

import psdriver.conf  # noqa: F401  (registers the options)
from psdriver.bridge import contracts
from psdriver.bridge.client import Bridge
from psdriver.bridge.errors import ScriptError
from psdriver.demo import runner, steps
from psdriver.sim import SimHost, SimRunner

from tests.unit.psdriver_command import run_psdriver

HEADER = re.compile(r'^\[\s*(\d+)/(\d+)\] (.+)$', re.MULTILINE)
SCRIPT = re.compile(r'^ +-> (\S+)', re.MULTILINE)
ROUND_TRIPS = re.compile(r'^ +ok: (\d+) round trips?, ', re.MULTILINE)
SECRETS = (steps.ADMIN_PASSWORD, steps.RESCUE_PASSWORD)


def blocks(output: str) -> list[tuple[int, int, str, str]]:
    """(index, total, header, body) of each step in the demo's output."""
    found = list(HEADER.finditer(output))
    ends = [m.start() for m in found[1:]] + [output.find('\nSummary:')]
    return [(int(m.group(1)), int(m.group(2)), m.group(3), output[m.end():end])
            for m, end in zip(found, ends, strict=True)]


def header(step: steps.Step) -> str:
    return f'{step.name}: {step.what}'


# -- the command -----------------------------------------------------------------------

def test_demo_walks_every_step_and_exits_0(tmp_path):
    done = run_psdriver('demo', cwd=tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr

    found = blocks(out)
    assert [h for _, _, h, _ in found] == [header(s) for s in steps.STEPS]
    assert [i for i, _, _, _ in found] == list(range(1, len(steps.STEPS) + 1))
    assert {n for _, n, _, _ in found} == {len(steps.STEPS)}
    known = set(contracts.script_names())
    total = 0
    for _, _, name, body in found:
        scripts = SCRIPT.findall(body)
        assert set(scripts) <= known, name
        (trips,) = ROUND_TRIPS.findall(body)
        assert int(trips) == len(scripts), name
        assert 'driver.' in body, f'{name} shows no driver call'
        total += int(trips)
    spawn = next(body for _, _, h, body in found if h.startswith('build_and_run_instance'))
    assert 'driver.spawn(' in spawn and 'New-Instance' in SCRIPT.findall(spawn)
    assert 'configdrive' in spawn          # the host view lists the config drive
    assert f'Summary: OK. {len(steps.STEPS)} of {len(steps.STEPS)} steps succeeded, ' \
        f'{total} host round trips' in out
    assert 'The host is clean' in out
    # oslo.log stays at warnings, and no password is ever shown.
    assert not re.search(r' (DEBUG|INFO) ', done.stderr), done.stderr
    for secret in SECRETS:
        assert secret not in out + done.stderr


def test_injected_fault_fails_the_spawn_cleans_up_and_exits_non_zero(tmp_path):
    state = tmp_path / 'host.json'
    done = run_psdriver('demo', '--fail-script', 'New-Instance', '--state-file', 'host.json',
                        '--verbose', cwd=tmp_path)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr

    message = runner.FAULT_MESSAGE.format(script='New-Instance')
    spawn_index = next(i for i, s in enumerate(steps.STEPS, 1)
                       if s.name == 'build_and_run_instance')
    found = blocks(out)
    assert len(found) == spawn_index             # nothing runs after the failing step
    assert re.search(r'-> New-Instance .*FAILED', found[-1][3])
    assert f'FAILED: HyperVHostError: Hyper-V host operation failed: New-Instance: {message}' \
        in out
    assert f'Step {spawn_index} (build_and_run_instance' in out
    assert message in out.split('\nSummary:')[1]
    assert 'clean-up: destroy' in out and 'The host is clean' in out
    # --verbose turns debug logging on; secrets stay masked there too.
    assert ' DEBUG psdriver.bridge.client ' in done.stderr
    assert "with {'Spec': '***'}" in done.stderr
    for secret in SECRETS:
        assert secret not in out + done.stderr
    # The state file holds the host as the demo left it: no VM, the fault used up.
    host = SimHost(state_file=str(state))
    assert host.list_vms() == []
    assert host.faults.pending() == []


# -- variations, in this process -------------------------------------------------------

@pytest.fixture
def conf(monkeypatch):
    fixture = config_fixture.Config(cfg.CONF)
    fixture.setUp()
    # The node identity nova would read from (or write to) its compute_id file,
    # as nova's own ComputeNodeIdFixture provides it: this process never parsed
    # a command line, so CONF.config_file does not exist here.
    monkeypatch.setattr(nova_node, 'LOCAL_NODE_UUID', str(uuid.uuid4()))
    yield cfg.CONF
    fixture.cleanUp()


def run_demo(conf, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    code = runner.run(conf, out=out, **kwargs)
    return code, out.getvalue()


def test_quiet_prints_the_summary_only(conf):
    code, out = run_demo(conf, quiet=True)
    assert code == 0
    assert not HEADER.search(out) and 'driver.' not in out
    assert out.strip().startswith(f'Summary: OK. {len(steps.STEPS)} of {len(steps.STEPS)}')


def test_a_fault_that_never_fires_is_reported_and_removed(conf, tmp_path):
    code, out = run_demo(conf)
    assert code == 0
    unused = sorted(set(contracts.script_names()) - set(SCRIPT.findall(out)))
    assert unused, 'the demo runs every script; pick another way to test this'
    state = tmp_path / 'host.json'

    code, out = run_demo(conf, state_file=str(state), fail_script=unused[0])

    assert code == 0
    assert f'the injected fault never fired: no step ran {unused[0]}' in out
    assert SimHost(state_file=str(state)).faults.pending() == []


def test_a_step_that_leaves_the_wrong_power_state_fails(conf, monkeypatch):
    wrong = [s if s.name != 'stop_instance' else
             steps.Step(s.name, s.what, s.run, power_state.RUNNING) for s in steps.STEPS]
    monkeypatch.setattr(steps, 'STEPS', wrong)
    index = next(i for i, s in enumerate(wrong, 1) if s.name == 'stop_instance')

    code, out = run_demo(conf)

    assert code == 1
    assert len(blocks(out)) == index
    assert 'StepCheckFailed: Nova reads power state shutdown, expected running' in out
    assert 'Clean-up after the failure: destroy done.' in out
    assert 'The host is clean' in out


def test_a_state_file_host_with_a_left_over_vm_is_not_clean(conf, tmp_path):
    """The end check reads the host itself: a VM the driver did not remove is reported."""
    state = str(tmp_path / 'host.json')
    host = SimHost(state_file=state, hostname=runner.HOST)
    wrong = [s for s in steps.STEPS if s.name != 'terminate_instance']
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steps, 'STEPS', wrong)
        code, out = run_demo(conf, state_file=state)
    assert code == 1
    assert re.search(r'The host is not clean: VM instance-\w+ \(Running\); instance folder ',
                     out)
    assert [vm.state for vm in host.list_vms()] == ['Running']


# -- the bridge hook the demo reads ----------------------------------------------------

def test_bridge_observers_see_every_round_trip_with_secrets_masked():
    bridge = Bridge(SimRunner(SimHost()))
    seen = []
    bridge.observers.append(seen.append)
    bridge.call('Test-PsDriverConnection', {'Echo': 'hi'})
    spec = {'name': 'vm-x', 'instance_uuid': str(uuid.uuid4()),
            'instance_dir': 'C:\\OpenStack\\Instances\\vm-x', 'generation': 2,
            'vcpus': 1, 'memory_mb': 512, 'power_on': False}
    bridge.call('New-Instance', {'Spec': spec})
    bridge.runner.host.faults.fail('Get-HostInfo', 'boom')
    with pytest.raises(ScriptError):
        bridge.call('Get-HostInfo', {})

    assert [(r.name, r.error is None) for r in seen] == [
        ('Test-PsDriverConnection', True), ('New-Instance', True), ('Get-HostInfo', False)]
    assert seen[0].params == {'Echo': 'hi'} and seen[1].params == {'Spec': '***'}
    assert 'boom' in str(seen[2].error)
    assert all(r.seconds >= 0 and r.target == bridge.target for r in seen)
    assert bridge.round_trips == len(seen)


def test_a_state_file_of_another_host_stops_the_demo_with_a_message(conf, tmp_path):
    state = str(tmp_path / 'host.json')
    SimHost(state_file=state, hostname='OTHER-HV')
    code, out = run_demo(conf, state_file=state)
    assert code == 1
    assert out.startswith('psdriver demo: cannot set up the simulated host: ValueError: ')
    assert "hostname='OTHER-HV'" in out


# -- the cluster scenario ------------------------------------------------------------------

def test_cluster_demo_fails_over_and_exits_0(tmp_path):
    done = run_psdriver('demo', '--cluster', cwd=tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr

    assert 'all checks passed' in out and 'FAILED' not in out
    assert out.count('ok: ') == 8
    # The node that received the VM records it; every poll is one call.
    assert re.search(r'\[SIMHV0[13]\] Start-InstanceConsoleLogger', out)
    poll = out[out.index('4. each surviving'):out.index('5. delete')]
    assert len(re.findall(r'\] Get-ClusterInstanceState', poll)) == 2
    delete = out[out.index('5. delete'):]
    assert delete.index('Remove-InstanceClusterRole') < delete.index('Remove-Instance ')


def test_cluster_demo_reports_a_check_that_fails(conf, monkeypatch):
    from psdriver.cluster import clusterops
    from psdriver.demo import cluster

    # A service that never records a failover: the demo must say so and fail.
    monkeypatch.setattr(clusterops.ClusterOps, 'take_over', lambda self, name, uuid: False)
    out = io.StringIO()

    assert cluster.run(conf, quiet=True, out=out) == 1
    assert 'FAILED: Nova places the instance on' in out.getvalue()
