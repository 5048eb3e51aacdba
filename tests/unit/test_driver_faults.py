"""What the driver makes of refused parameters, host refusals, timeouts and odd host output."""

from __future__ import annotations

import json

import pytest
from nova import exception

from psdriver.bridge import errors as bridge_errors
from psdriver.ops import errors

from tests.unit.driver_env import INSTANCES, DriverEnv


@pytest.fixture
def env(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.start()
        yield env


class TimesOutAfterRunning:
    """A transport whose answer to ``script`` is lost after the host did the work.

    What a PSRP call looks like when the receive times out while the script
    already ran: the host changed, the caller sees only ``BridgeTimeout``.
    """

    def __init__(self, runner, script: str) -> None:
        self._runner = runner
        self._script = script
        self.target = runner.target
        self.features = runner.features
        self.host = runner.host

    def run(self, call):
        raw = self._runner.run(call)
        if call.name == self._script:
            raise bridge_errors.BridgeTimeout(call.name, self.target,
                                              f'no result within {call.timeout:g}s')
        return raw

    def close(self) -> None:
        self._runner.close()


def assert_nothing_of(env, instance) -> None:
    assert env.host.find_vm(instance.name) is None
    assert not env.host.exists(f'{INSTANCES}\\{instance.name}')
    env.host.check_consistency()


# -- parameters the New-Instance schema refuses -----------------------------------------

@pytest.mark.parametrize('flavor,error,reason', [
    ({'vcpus': 0}, exception.InstanceUnacceptable, 'vcpus must be at least 1'),
    ({'vcpus': 241}, exception.InstanceUnacceptable, 'vcpus must be at most 240'),
    ({'memory_mb': 0}, exception.FlavorMemoryTooSmall, 'memory_mb must be at least 32'),
])
def test_a_flavor_the_spec_refuses_is_the_nova_error_with_a_reason(env, flavor, error, reason):
    image = env.image()
    instance = env.instance(image, flavor_values=flavor)
    with pytest.raises(error) as caught:
        env.spawn(instance, image)
    assert reason in str(caught.value)
    assert not env.calls_of('New-Instance')          # refused before the round trip
    assert_nothing_of(env, instance)


def test_a_vm_name_longer_than_hyperv_takes_is_instance_unacceptable(env):
    env.flags(instance_name_template='instance-' + 'x' * 90 + '-%08x')
    image = env.image()
    instance = env.instance(image)
    assert len(instance.name) == 108
    with pytest.raises(exception.InstanceUnacceptable,
                       match='name must be at most 100 characters long'):
        env.spawn(instance, image)
    assert_nothing_of(env, instance)


@pytest.mark.parametrize('content,says', [
    (None, 'config_drive.content_base64 must be of type string'),
    ('abcde', 'config_drive.content_base64 must be encoded by base64'),
])
def test_a_broken_config_drive_field_says_which_and_how(env, content, says):
    bad = {'content_base64': content, 'format': 'iso', 'as_dvd': True}
    with pytest.raises(exception.InvalidInput) as caught, errors.translate():
        env.bridge.call('New-Instance', {'Spec': {
            'name': 'instance-00000001', 'instance_uuid': '6f0c2a1e-52b4-4d8f-9a51-3c7e0d9b2f64',
            'instance_dir': f'{INSTANCES}\\instance-00000001', 'generation': 1, 'vcpus': 1,
            'memory_mb': 512, 'config_drive': bad}})
    assert says in str(caught.value)
    assert 'None' not in str(caught.value) and 'abcde' not in str(caught.value)


# -- host refusals -----------------------------------------------------------------------

def test_an_invalid_operation_during_spawn_reads_as_a_host_error(env):
    image = env.image()
    instance = env.instance(image)
    env.host.faults.fail('New-Instance', 'The virtual machine could not be started.',
                         category='InvalidOperation')
    with pytest.raises(errors.HyperVHostError) as caught:
        env.spawn(instance, image)
    assert 'The virtual machine could not be started.' in str(caught.value)
    assert 'power state' not in str(caught.value)


# -- a timeout after the host did the work -----------------------------------------------

def test_a_spawn_that_times_out_after_the_host_created_the_vm_removes_it(env):
    image = env.image()
    instance = env.instance(image)
    env.bridge.runner = TimesOutAfterRunning(env.bridge.runner, 'New-Instance')
    with pytest.raises(errors.HyperVHostError, match='no result within .*was removed'):
        env.spawn(instance, image)
    assert_nothing_of(env, instance)


@pytest.fixture
def running(env):
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)
    return instance


def test_a_power_off_that_times_out_after_it_happened_is_done(env, running):
    env.bridge.runner = TimesOutAfterRunning(env.bridge.runner, 'Set-InstancePowerState')
    env.driver.power_off(running)
    assert env.vm(running).state == 'Off'


def test_a_power_off_that_times_out_before_it_happened_says_where_the_vm_is(env, running):
    env.host.faults.delay('Set-InstancePowerState', 5)
    env.flags('powershell', default_timeout=1)
    env.bridge.default_timeout = 1
    with pytest.raises(errors.HyperVHostError, match='the VM is now Running'):
        env.driver.power_off(running)
    assert env.vm(running).state == 'Running'


def test_a_reboot_that_times_out_is_a_host_error_with_the_state(env, running):
    env.bridge.runner = TimesOutAfterRunning(env.bridge.runner, 'Set-InstancePowerState')
    with pytest.raises(errors.HyperVHostError, match='the VM is now Running'):
        env.driver.reboot(None, running, None, 'HARD')


# -- odd host output ---------------------------------------------------------------------

class ConsoleWithLoneSurrogate:
    """The host's JSON carries ``"\\ud800"`` in the console text (a UTF-16 log cut mid-pair).

    JSON allows the escape; Python decodes it to a lone surrogate, which
    UTF-8 cannot encode.
    """

    def __init__(self, runner) -> None:
        self._runner = runner
        self.target = runner.target
        self.features = runner.features

    def run(self, call):
        raw = self._runner.run(call)
        if call.name != 'Get-InstanceConsoleOutput':
            return raw
        envelope = json.loads(raw)
        envelope['result']['content'] = 'before \ud800 after\n'
        return json.dumps(envelope)          # ensure_ascii: the escape as a host writes it

    def close(self) -> None:
        self._runner.close()


def test_a_lone_surrogate_in_the_console_log_becomes_a_replacement_character(env, running):
    env.bridge.runner = ConsoleWithLoneSurrogate(env.bridge.runner)
    output = env.driver.get_console_output(None, running)
    assert output == 'before \ufffd after\n'.encode()
