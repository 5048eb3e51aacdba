"""Spawn waits for Neutron's network-vif-plugged events before the VM starts.

Nova's own event machinery (the compute manager's ``wait_for_instance_event``)
is exercised end to end in tests/functional/test_vif_events.py; here a
stand-in VirtAPI answers the wait (events arrive, time out, or Neutron reports
a failed port) so that what the driver does on the host around it is checked.
"""

from __future__ import annotations

import contextlib

import pytest
from nova import exception

from psdriver.ops import errors as ops_errors
from tests.unit.driver_env import INSTANCES, DriverEnv, vif


class NeutronEvents:
    """nova's VirtAPI event wait: records what is waited for and how the host looked."""

    def __init__(self, outcome: str = 'arrive') -> None:
        self.outcome = outcome          # arrive | timeout | failed
        self.waits: list[tuple[list, float]] = []
        self.vm_state_while_waiting: str | None = None
        self.host = None
        self.vm_name = None

    @contextlib.contextmanager
    def wait_for_instance_event(self, instance, event_names, timeout=300,
                                error_callback=None):
        self.waits.append((list(event_names), timeout))
        yield
        vm = self.host.find_vm(instance.name)
        self.vm_state_while_waiting = vm.state if vm else None
        if self.outcome == 'timeout':
            raise exception.InstanceEventTimeout()
        if self.outcome == 'failed':
            error_callback(f'{event_names[0][0]}-{event_names[0][1]}', instance)


def assert_nothing_left(env, instance, free_before: int) -> None:
    """No VM, no folder, no disk space used (its console logger exits with the folder)."""
    assert env.host.find_vm(instance.name) is None
    assert not env.host.exists(f'{INSTANCES}\\{instance.name}')
    assert env.host.disk_usage(INSTANCES)['free'] == free_before
    env.host.check_consistency()


@pytest.fixture
def events():
    return NeutronEvents()


@pytest.fixture
def env(tmp_path, events):
    with DriverEnv(tmp_path) as env:
        env.virtapi = events
        env.start()
        events.host = env.host
        yield env


def test_an_unbound_port_is_waited_for_with_the_vm_off_then_started(env, events):
    env.flags(vif_plugging_timeout=42)
    image = env.image()
    env.spawn(env.instance(image), image)              # the image is cached now
    instance = env.instance(image)
    down, up = vif('fa:16:3e:00:00:01', active=False), vif('fa:16:3e:00:00:02')

    assert env.round_trips(env.spawn, instance, image, [down, up]) == 2
    assert events.waits == [([('network-vif-plugged', down['id'])], 42)]
    assert events.vm_state_while_waiting == 'Off'
    assert [c.name for c in env.calls[-2:]] == ['New-Instance', 'Set-InstancePowerState']
    assert env.calls[-2].params['Spec']['power_on'] is False
    assert env.vm(instance).state == 'Running'
    assert {n.name for n in env.vm(instance).nics} == {down['id'], up['id']}
    # The logger New-Instance started is still the one reading the console.
    assert env.host.console_logger(instance.name) is not None


def test_no_unbound_port_is_one_round_trip(env, events):
    image = env.image()
    env.spawn(env.instance(image), image)
    instance = env.instance(image)
    assert env.round_trips(env.spawn, instance, image, [vif()]) == 1
    assert events.waits == []
    assert env.vm(instance).state == 'Running'


def test_vif_plugging_timeout_zero_does_not_wait(env, events):
    env.flags(vif_plugging_timeout=0)
    image = env.image()
    env.spawn(env.instance(image), image)
    instance = env.instance(image)
    assert env.round_trips(env.spawn, instance, image, [vif(active=False)]) == 1
    assert events.waits == []


def test_power_on_false_does_not_wait(env, events):
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image, [vif(active=False)], power_on=False)
    assert events.waits == []
    assert env.vm(instance).state == 'Off'


@pytest.mark.parametrize('outcome', ['timeout', 'failed'])
def test_fatal_wait_removes_what_spawn_created(env, events, outcome):
    env.flags(vif_plugging_is_fatal=True)
    events.outcome = outcome
    image = env.image()
    env.spawn(env.instance(image), image)
    free = env.host.disk_usage(INSTANCES)['free']
    instance = env.instance(image, config_drive=True)

    with pytest.raises(exception.VirtualInterfaceCreateException):
        env.spawn(instance, image, [vif(active=False)])
    assert events.vm_state_while_waiting == 'Off'
    assert_nothing_left(env, instance, free)


@pytest.mark.parametrize('outcome', ['timeout', 'failed'])
def test_not_fatal_starts_anyway(env, events, outcome, caplog):
    env.flags(vif_plugging_is_fatal=False)
    events.outcome = outcome
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image, [vif(active=False)])
    assert env.vm(instance).state == 'Running'


def test_a_start_that_fails_after_the_wait_rolls_back(env, events):
    image = env.image()
    env.spawn(env.instance(image), image)
    free = env.host.disk_usage(INSTANCES)['free']
    # New-Instance creates the VM off; only Start needs the memory.
    instance = env.instance(image, flavor_values={'memory_mb': 200 * 1024})
    # Set-InstancePowerState reports every failed power step as InvalidOperation; during a
    # spawn that reads as a host error carrying Hyper-V's message.
    with pytest.raises(ops_errors.HyperVHostError, match='Not enough memory'):
        env.spawn(instance, image, [vif(active=False)])
    assert events.vm_state_while_waiting == 'Off'
    assert_nothing_left(env, instance, free)


def test_power_on_after_a_move_waits_around_the_plug(env, events):
    """The hook resize and migration use: plug inside the wait, then start."""
    image = env.image()
    instance = env.instance(image)
    port = vif(active=False)
    env.spawn(instance, image, [port], power_on=False)
    plugged = []

    env.driver.vmops.power_on_when_vifs_plugged(
        instance, [port], plug=lambda: plugged.append(env.vm(instance).state))
    assert plugged == ['Off']
    assert events.waits == [([('network-vif-plugged', port['id'])], 300)]
    assert env.vm(instance).state == 'Running'

    env.driver.power_off(instance)
    events.outcome = 'timeout'
    env.flags(vif_plugging_is_fatal=True)
    with pytest.raises(exception.VirtualInterfaceCreateException):
        env.driver.vmops.power_on_when_vifs_plugged(instance, [port])
    assert env.vm(instance).state == 'Off'         # left off, not removed


def test_finish_migration_creates_the_vm_off_and_starts_it_once_the_port_is_bound(env, events):
    image = env.image()
    instance = env.instance(image)
    port = vif(active=False)
    env.spawn(instance, image, [port])
    events.waits.clear()
    disk_info = env.driver.migrate_disk_and_power_off(None, instance, env.host.hostname,
                                                      instance.flavor, [port])
    env.driver.finish_migration(None, None, instance, disk_info, [port], image, False, {},
                                None, True)
    assert events.waits == [([('network-vif-plugged', port['id'])], 300)]
    assert events.vm_state_while_waiting == 'Off'
    assert env.vm(instance).state == 'Running'

    env.driver.confirm_migration(None, None, instance, [port])
    disk_info = env.driver.migrate_disk_and_power_off(None, instance, env.host.hostname,
                                                      instance.flavor, [port])
    events.outcome = 'timeout'
    env.flags(vif_plugging_is_fatal=True)
    with pytest.raises(exception.VirtualInterfaceCreateException):
        env.driver.finish_revert_migration(None, instance, [port], None, None, True)
    assert env.vm(instance).state == 'Off'          # restored, left off
    env.host.check_consistency()
