"""Interactive serial console through HyperVDriver on the simulated host."""

from __future__ import annotations

import pytest
from nova import exception
from nova.console import type as console_type

from tests.unit.driver_env import DriverEnv


@pytest.fixture
def env(tmp_path):
    with DriverEnv(tmp_path, serial_console={'enabled': True, 'port_range': '10000:10002',
                                             'proxyclient_address': '192.0.2.11'}) as env:
        env.start()
        yield env


def spawned(env):
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)
    return instance


def test_com_2_is_the_read_write_pipe_and_com_1_stays_with_the_log(env):
    instance = spawned(env)
    ports = env.vm(instance).com_ports
    assert ports['COM1'] == f'\\\\.\\pipe\\{instance.uuid}_ro'
    assert ports['COM2'] == f'\\\\.\\pipe\\{instance.uuid}_rw'
    assert env.host.console_logger(instance.name).pipe_path == ports['COM1']


def test_get_serial_console_starts_one_relay_and_reports_its_port(env):
    instance = spawned(env)
    assert env.round_trips(env.driver.get_serial_console, None, instance) == 1
    console = env.driver.get_serial_console(None, instance)
    assert isinstance(console, console_type.ConsoleSerial)
    assert (console.host, console.port) == ('192.0.2.11', 10000)
    relay = env.host.serial_relay(instance.name)
    assert (relay['port'], relay['pipe'], relay['listen_address']) == \
        (10000, f'\\\\.\\pipe\\{instance.uuid}_rw', '192.0.2.11')
    assert [c.result['started'] for c in env.calls_of('Start-InstanceSerialConsole')] == \
        [True, False]                      # the second call found the running relay


def test_ports_do_not_collide_and_are_released_on_destroy(env):
    env.host.state.config.tcp_ports_in_use = [10001]      # another program listens there
    first, second = spawned(env), spawned(env)
    assert env.driver.get_serial_console(None, first).port == 10000
    assert env.driver.get_serial_console(None, second).port == 10002
    third = spawned(env)
    with pytest.raises(exception.SocketPortRangeExhaustedException):
        env.driver.get_serial_console(None, third)

    env.driver.destroy(None, first, [])
    assert env.driver.get_serial_console(None, third).port == 10000


def test_disabled_serial_console_is_unavailable_and_adds_no_port(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.start()
        instance = spawned(env)
        assert env.vm(instance).com_ports['COM2'] == ''
        with pytest.raises(exception.ConsoleTypeUnavailable):
            env.driver.get_serial_console(None, instance)
        assert env.calls_of('Start-InstanceSerialConsole') == []


def test_an_instance_spawned_before_enabling_it_has_no_interactive_port(env):
    env.flags('serial_console', enabled=False)
    instance = spawned(env)
    env.flags('serial_console', enabled=True)
    with pytest.raises(exception.ConsoleTypeUnavailable):
        env.driver.get_serial_console(None, instance)


def test_a_missing_vm_is_instance_not_found(env):
    with pytest.raises(exception.InstanceNotFound):
        env.driver.get_serial_console(None, env.instance())
