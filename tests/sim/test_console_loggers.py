"""Console loggers made sure of by Set-InstancePowerState and Initialize-ComputeHost."""

from __future__ import annotations

from typing import Any

import pytest

from psdriver.sim import SimHost, dispatch
from psdriver.sim.scenario import add_instance

from tests.sim.conftest import INSTANCES


def run(host: SimHost, script: str, **params: Any) -> dict[str, Any]:
    with host.transaction():
        return dispatch.get_handler(script).func(host, params)


def log_of(name: str) -> str:
    return f'{INSTANCES}\\{name}\\console.log'


@pytest.fixture
def stopped(host):
    add_instance(host, 'instance-00000001', power_on=False)
    return 'instance-00000001'


def test_power_on_starts_the_logger_once(host, stopped):
    first = run(host, 'Set-InstancePowerState', Name=stopped, Action='Start',
                ConsoleLogPath=log_of(stopped), ConsoleLogMaxBytes=65536)
    assert first['state'] == 'Running'
    assert first['console_logger']['started'] is True
    assert first['console_logger']['pipe_path'].endswith('_ro')
    logger = host.console_logger(stopped)
    assert (logger.log_path, logger.max_log_bytes) == (log_of(stopped), 65536)

    again = run(host, 'Set-InstancePowerState', Name=stopped, Action='Start',
                ConsoleLogPath=log_of(stopped))
    assert again['changed'] is False
    assert (again['console_logger']['started'], again['console_logger']['running']) == \
        (False, True)


@pytest.mark.parametrize('action', ['Stop', 'Save'])
def test_no_logger_for_a_vm_the_action_leaves_not_running(host, stopped, action):
    run(host, 'Set-InstancePowerState', Name=stopped, Action='Start')
    result = run(host, 'Set-InstancePowerState', Name=stopped, Action=action,
                 ConsoleLogPath=log_of(stopped))
    assert result['console_logger'] is None


def test_without_a_log_path_nothing_is_started(host, stopped):
    result = run(host, 'Set-InstancePowerState', Name=stopped, Action='Start')
    assert result['console_logger'] is None
    assert host.console_logger(stopped) is None


def test_a_logger_that_cannot_start_does_not_fail_the_power_action(host, stopped):
    result = run(host, 'Set-InstancePowerState', Name=stopped, Action='Start',
                 ConsoleLogPath='C:\\nowhere\\console.log')
    assert result['state'] == 'Running'
    assert result['console_logger']['running'] is False
    assert 'does not exist' in result['console_logger']['error']


def test_the_action_comes_back_with_its_canonical_name(host, stopped):
    assert run(host, 'Set-InstancePowerState', Name=stopped, Action='softreboot')['action'] \
        == 'SoftReboot'


def test_init_host_gives_running_instances_their_logger_back(host):
    for name, power_on in (('instance-00000001', True), ('instance-00000002', False),
                           ('instance-00000003', True)):
        add_instance(host, name, power_on=power_on)
    host.start_console_logger('instance-00000003', log_of('instance-00000003'),
                              host.get_vm('instance-00000003').com_ports['COM1'], 524288)
    host.create_vm('not-nova', notes='build server')
    host.start_vm('not-nova')

    result = run(host, 'Initialize-ComputeHost', InstancesPath=INSTANCES,
                 ConsoleLogFileName='console.log')

    assert result['console_loggers'] == [
        {'name': 'instance-00000001', 'started': True, 'running': True, 'error': None},
        {'name': 'instance-00000003', 'started': False, 'running': True, 'error': None}]
    assert host.console_logger('instance-00000001').log_path == log_of('instance-00000001')
    assert host.console_logger('instance-00000002') is None


def test_init_host_without_a_log_file_name_starts_no_logger(host):
    add_instance(host, 'instance-00000001')
    assert run(host, 'Initialize-ComputeHost', InstancesPath=INSTANCES)['console_loggers'] == []
    assert host.console_logger('instance-00000001') is None
