"""HyperVDriver after spawn, on the simulated host: destroy, power, rescue, console, info."""

from __future__ import annotations

import json
import logging
import time
import types

import pytest
from nova import exception
from nova.compute import power_state
from nova.objects import diagnostics as diagnostics_obj

from psdriver.ops import vmops
from psdriver.sim.handlers import instances as instances_handlers

from tests.unit.driver_env import BASE, GIB, INSTANCES, MIB, DriverEnv, vif


@pytest.fixture
def env(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.start()
        yield env


@pytest.fixture
def running(env):
    """A running generation 2 instance (config drive, one NIC) and its image."""
    image = env.image(hw_machine_type='hyperv-gen2')
    instance = env.instance(image, config_drive=True, flavor_values={'ephemeral_gb': 1})
    env.spawn(instance, image, [vif()])
    return instance


def folder(instance) -> str:
    return f'{INSTANCES}\\{instance.name}'


def state(env, instance) -> str:
    return env.vm(instance).state


def last_power(env) -> dict:
    return env.calls_of('Set-InstancePowerState')[-1]


# -- destroy and cleanup ----------------------------------------------------------------------

def test_destroy_removes_the_vm_its_disks_and_folder(env, running):
    root = env.host.get_vhd(f'{folder(running)}\\root.vhdx').vhd
    env.driver.destroy(None, running, [])

    assert env.host.find_vm(running.name) is None
    assert not env.host.exists(folder(running))
    assert env.host.exists(root.parent_path), 'the cached image stays'
    assert not env.driver.instance_exists(running)
    env.host.check_consistency()


def test_destroy_of_a_vm_with_checkpoints_waits_for_their_merge(env, running):
    # Remove-VM merges the checkpoints into the disks after the VM is gone; the files are
    # busy until then (the simulated merge takes 0.3 s).
    env.host.checkpoint_vm(running.name, 'one')
    env.host.checkpoint_vm(running.name, 'two')
    env.driver.destroy(None, running, [])

    assert env.host.find_vm(running.name) is None
    assert not env.host.exists(folder(running))
    env.host.check_consistency()


def test_destroy_twice_and_of_a_missing_vm_is_a_no_op(env, running):
    env.driver.destroy(None, running, [])
    env.driver.destroy(None, running, [])
    env.driver.cleanup(None, running, [])
    never_spawned = env.instance()
    env.driver.destroy(None, never_spawned, [])
    assert env.host.find_vm(running.name) is None


def test_destroy_without_disks_keeps_the_files(env, running):
    env.driver.destroy(None, running, [], destroy_disks=False)
    assert env.host.find_vm(running.name) is None
    for name in ('root.vhdx', 'eph0.vhdx', 'configdrive.vhd'):
        assert env.host.exists(f'{folder(running)}\\{name}')
    env.driver.cleanup(None, running, [], destroy_disks=True)      # later clean-up
    assert not env.host.exists(folder(running))


def test_cleanup_after_a_failed_spawn_removes_what_is_left(env):
    image = env.image()
    instance = env.instance(image)
    env.host.make_dir(folder(instance))
    env.host.add_file(f'{folder(instance)}\\root.vhdx.partial', 1024)
    env.driver.cleanup(None, instance, [])
    assert not env.host.exists(folder(instance))


def test_destroy_leaves_a_vm_of_the_same_name_that_is_not_this_instance(env):
    image = env.image()
    instance = env.instance(image)
    env.host.make_dir(folder(instance))
    env.host.create_vm(instance.name, notes='someone else\'s VM', path=folder(instance))

    env.driver.destroy(None, instance, [])

    assert env.host.find_vm(instance.name) is not None
    assert env.host.exists(folder(instance))


# -- power ----------------------------------------------------------------------------------

def test_get_info_maps_the_hyperv_states(env, running):
    expected = {'Running': power_state.RUNNING, 'Off': power_state.SHUTDOWN,
                'Stopping': power_state.SHUTDOWN, 'Starting': power_state.RUNNING,
                'Paused': power_state.PAUSED, 'Saved': power_state.SUSPENDED}
    for hyperv_state, nova_state in expected.items():
        env.host.force_state(running.name, hyperv_state)
        assert env.driver.get_info(running, use_cache=False).state == nova_state, hyperv_state


def test_get_info_of_a_missing_vm_is_instance_not_found(env):
    with pytest.raises(exception.InstanceNotFound):
        env.driver.get_info(env.instance())


def test_get_info_sees_the_driver_s_own_changes_at_once(env, running):
    assert env.driver.get_info(running).state == power_state.RUNNING
    env.driver.power_off(running)
    assert env.driver.get_info(running).state == power_state.SHUTDOWN


def test_soft_reboot_is_a_guest_restart_within_the_wait(env, running):
    env.flags('hyperv', wait_soft_reboot_seconds=30)
    started = env.vm(running).started_at
    env.driver.reboot(None, running, [], 'SOFT')

    result = last_power(env).result
    assert last_power(env).params['TimeoutSeconds'] == 30
    assert (result['action'], result['forced'], result['state']) == ('SoftReboot', False,
                                                                     'Running')
    assert env.vm(running).started_at >= started
    assert env.host.console_output(running.name).count(f'{running.name}: booting') == 2


def test_soft_reboot_of_a_hung_guest_becomes_hard_after_the_wait(env, running):
    env.flags('hyperv', wait_soft_reboot_seconds=7)
    env.host.set_guest_shutdown(running.name, False)
    env.driver.reboot(None, running, [], 'SOFT')

    result = last_power(env).result
    assert (result['forced'], result['waited_seconds'], result['state']) == (True, 7, 'Running')
    assert f'{running.name}: rebooting' in env.host.console_output(running.name)


def test_hard_reboot(env, running):
    env.driver.reboot(None, running, [], 'HARD')
    result = last_power(env).result
    assert (result['action'], result['forced'], result['waited_seconds']) == ('Restart', True,
                                                                              0)
    assert state(env, running) == 'Running'


def test_power_off_with_a_timeout_asks_the_guest_first(env, running):
    env.host.set_guest_shutdown(running.name, True, seconds=5)
    env.driver.power_off(running, timeout=20, retry_interval=4)

    call = last_power(env)
    assert (call.params['Action'], call.params['TimeoutSeconds'],
            call.params['RetryIntervalSeconds']) == ('Shutdown', 20, 4)
    assert (call.result['forced'], call.result['waited_seconds']) == (False, 5)
    assert state(env, running) == 'Off'


def test_power_off_turns_off_a_guest_slower_than_the_timeout(env, running):
    env.host.set_guest_shutdown(running.name, True, seconds=60)
    env.driver.power_off(running, timeout=10, retry_interval=2)
    assert (last_power(env).result['forced'], last_power(env).result['waited_seconds']) == \
        (True, 10)
    assert state(env, running) == 'Off'


def test_power_off_with_timeout_0_is_a_hard_off(env, running):
    env.driver.power_off(running, timeout=0)
    call = last_power(env)
    assert call.params['Action'] == 'Stop' and 'TimeoutSeconds' not in call.params
    assert (call.result['forced'], call.result['waited_seconds']) == (True, 0)
    assert state(env, running) == 'Off'


def test_power_on_is_one_round_trip_while_the_logger_runs(env, running):
    env.driver.power_off(running)
    assert env.round_trips(env.driver.power_on, None, running, []) == 1
    assert state(env, running) == 'Running'
    assert last_power(env).result['console_logger']['started'] is False     # it kept running
    env.driver.power_on(None, running, [])          # already running: nothing to do
    assert last_power(env).result['changed'] is False


def test_power_on_brings_back_a_logger_lost_with_the_host_in_the_same_round_trip(env, running):
    env.driver.power_off(running)
    env.host.stop_console_logger(running.name)      # as a host reboot does

    assert env.round_trips(env.driver.power_on, None, running, []) == 1

    call = last_power(env)
    assert (call.params['ConsoleLogPath'], call.params['ConsoleLogMaxBytes']) == \
        (f'{folder(running)}\\console.log', vmops.CONSOLE_LOG_BYTES)
    logger = call.result['console_logger']
    assert (logger['started'], logger['running'], logger['error']) == (True, True, None)
    assert logger['pipe_path'] == f'\\\\.\\pipe\\{running.uuid}_ro'
    env.host.write_console(running.name, 'after the host came back')
    assert 'after the host came back' in env.driver.get_console_output(None, running).decode()


def test_a_logger_that_cannot_start_does_not_fail_power_on(env, running, caplog):
    env.driver.power_off(running)
    env.host.stop_console_logger(running.name)
    env.host.set_com_port(running.name, 'COM1', '')

    env.driver.power_on(None, running, [])

    assert state(env, running) == 'Running'
    assert 'no serial port' in last_power(env).result['console_logger']['error']
    assert f'Console log of {running.name} not started' in caplog.text


@pytest.mark.parametrize('operation,action,logs', [
    (lambda d, i: d.power_off(i), 'Stop', False),
    (lambda d, i: d.pause(i), 'Pause', False),
    (lambda d, i: d.suspend(None, i), 'Save', False),
    (lambda d, i: d.reboot(None, i, [], 'HARD'), 'Restart', True),
])
def test_actions_that_leave_the_vm_running_ask_for_its_logger(env, running, operation, action,
                                                              logs):
    operation(env.driver, running)
    call = last_power(env)
    assert call.params['Action'] == action
    assert ('ConsoleLogPath' in call.params) is logs
    assert (call.result['console_logger'] is not None) is logs


def test_pause_and_unpause(env, running):
    env.driver.pause(running)
    assert state(env, running) == 'Paused'
    assert env.driver.get_info(running).state == power_state.PAUSED
    env.driver.unpause(running)
    assert state(env, running) == 'Running'


def test_suspend_saves_and_resume_restores(env, running):
    env.driver.suspend(None, running)
    vm = env.vm(running)
    assert vm.state == 'Saved'
    assert env.host.exists(f'{vm.path}\\Virtual Machines\\{vm.id}.vmrs')
    env.driver.resume(None, running, [])
    assert state(env, running) == 'Running'
    assert 'restored from saved state' in env.host.console_output(running.name)


def test_resume_state_on_host_boot_starts_a_stopped_or_saved_vm(env, running):
    env.host.stop_vm(running.name, turn_off=True)
    env.driver.resume_state_on_host_boot(None, running, [], None)
    assert state(env, running) == 'Running'
    env.host.save_vm(running.name)
    env.driver.resume_state_on_host_boot(None, running, [], None)
    assert state(env, running) == 'Running'


def test_an_impossible_transition_is_invalid_state_with_the_host_message(env, running):
    env.driver.power_off(running)
    with pytest.raises(exception.InstanceInvalidState, match='Cannot Pause'):
        env.driver.pause(running)


def test_power_operations_on_a_missing_vm_are_instance_not_found(env):
    missing = env.instance()
    for operation in (lambda: env.driver.power_off(missing),
                      lambda: env.driver.power_on(None, missing, []),
                      lambda: env.driver.reboot(None, missing, [], 'HARD'),
                      lambda: env.driver.pause(missing)):
        with pytest.raises(exception.InstanceNotFound):
            operation()


# -- rescue -------------------------------------------------------------------------------

def test_rescue_boots_the_rescue_disk_with_the_root_disk_attached(env, running):
    rescue_image = env.image(hw_machine_type='hyperv-gen2')
    before = env.round_trips(env.driver.rescue, None, running, [vif()], rescue_image,
                             'Rescue-Pa55', None)
    vm = env.vm(running)
    by_name = {d.path.rsplit('\\', 1)[-1]: d for d in vm.drives}

    assert vm.state == 'Running'
    assert vm.first_boot_device == 'SCSI:0:0'
    assert by_name['root-rescue.vhdx'].location == 0
    assert 'root.vhdx' in by_name, 'the root disk stays attached'
    rescue = env.host.get_vhd(f'{folder(running)}\\root-rescue.vhdx').vhd
    assert rescue.parent_path == f'{BASE}\\{rescue_image.id}.vhdx'
    assert 'configdrive-rescue.vhd' in by_name and 'configdrive.vhd' not in by_name
    assert before == 2                  # the rescue image lookup, then one Set-InstanceRescue


def test_rescue_puts_the_rescue_password_on_the_rescue_config_drive(env, running, caplog):
    env.flags('hyperv', config_drive_inject_password=True)
    caplog.set_level(logging.DEBUG)
    env.driver.rescue(None, running, [], env.image(hw_machine_type='hyperv-gen2'),
                      'Rescue-Pa55', None)
    meta = json.loads(env.config_drive_files(running, 'Set-InstanceRescue')[
        'openstack/latest/meta_data.json'])
    assert meta['admin_pass'] == 'Rescue-Pa55'
    assert meta['uuid'] == running.uuid
    assert 'Set-InstanceRescue' in caplog.text and 'Rescue-Pa55' not in caplog.text


def test_unrescue_restores_the_root_disk_and_removes_the_rescue_files(env, running):
    env.driver.rescue(None, running, [], env.image(hw_machine_type='hyperv-gen2'), 'pw', None)
    env.driver.unrescue(None, running)

    vm = env.vm(running)
    by_name = {d.path.rsplit('\\', 1)[-1]: d for d in vm.drives}
    assert vm.state == 'Running'
    assert (by_name['root.vhdx'].controller_type, by_name['root.vhdx'].location) == ('SCSI', 0)
    assert 'configdrive.vhd' in by_name
    assert not any('rescue' in name for name in by_name)
    assert not env.host.exists(f'{folder(running)}\\root-rescue.vhdx')
    assert not env.host.exists(f'{folder(running)}\\configdrive-rescue.vhd')


def test_rescue_of_a_generation_1_vm_from_a_vhd_image(env):
    from psdriver.sim.image_files import dynamic_vhd
    image = env.image(dynamic_vhd(GIB), 'vhd')
    instance = env.instance(image)
    env.spawn(instance, image)
    env.driver.rescue(None, instance, [], env.image(dynamic_vhd(GIB), 'vhd'), None, None)
    by_name = {d.path.rsplit('\\', 1)[-1]: d for d in env.vm(instance).drives}
    assert (by_name['root-rescue.vhd'].controller_type, by_name['root-rescue.vhd'].location) \
        == ('IDE', 0)
    assert by_name['root.vhd'].controller_type == 'SCSI'
    env.driver.unrescue(None, instance)
    by_name = {d.path.rsplit('\\', 1)[-1]: d for d in env.vm(instance).drives}
    assert (by_name['root.vhd'].controller_type, by_name['root.vhd'].location) == ('IDE', 0)


def test_rescue_refuses_an_iso_image(env, running):
    from psdriver.sim.image_files import iso
    with pytest.raises(exception.ImageUnacceptable, match='VHD or VHDX'):
        env.driver.rescue(None, running, [], env.image(iso(), 'iso'), None, None)
    assert env.calls_of('Set-InstanceRescue') == []


# -- console and diagnostics ------------------------------------------------------------

def test_console_output_is_bytes_of_what_the_guest_wrote(env, running):
    env.host.write_console(running.name, 'cloud-init: datasource ConfigDrive ✓')
    output = env.driver.get_console_output(None, running)
    assert isinstance(output, bytes)
    assert output.endswith('cloud-init: datasource ConfigDrive ✓\n'.encode())


def test_console_output_is_capped(env, running):
    line = 'x' * 1023 + '\n'
    for _ in range(1600):                                  # 1.6 MB written by the guest
        env.host.write_console(running.name, line[:-1])
    env.host.write_console(running.name, 'the last line')

    output = env.driver.get_console_output(None, running)
    assert len(output) <= vmops.CONSOLE_MAX_BYTES
    assert len(output) > vmops.CONSOLE_LOG_BYTES           # the rotated log is read too
    assert output.endswith(b'the last line\n')


def test_console_output_of_a_vm_that_never_logged_is_empty(env):
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image, power_on=False)
    assert env.driver.get_console_output(None, instance) == b''


def test_diagnostics_carry_the_vm_s_numbers(env, running):
    env.host.force_state(running.name, 'Running')
    diags = env.driver.get_instance_diagnostics(running)

    vm = env.vm(running)
    assert isinstance(diags, diagnostics_obj.Diagnostics)
    assert diags.state == 'running'
    assert (diags.num_cpus, diags.num_nics, diags.num_disks) == (2, 1, 3)
    assert diags.memory_details.maximum == running.flavor.memory_mb
    assert diags.memory_details.used == vm.memory_startup_mb
    assert diags.nic_details[0].mac_address == 'fa:16:3e:01:02:03'
    assert diags.config_drive is True
    assert diags.hypervisor == 'hyperv'
    assert 0 <= diags.uptime <= env.host.vm_uptime_seconds(running.name) + 1


def test_diagnostics_of_a_stopped_vm(env, running):
    env.driver.power_off(running)
    diags = env.driver.get_instance_diagnostics(running)
    assert diags.state == 'shutdown'
    assert (diags.uptime, diags.memory_details.used) == (0, 0)


def test_diagnostics_of_a_missing_vm(env):
    with pytest.raises(exception.InstanceNotFound):
        env.driver.get_instance_diagnostics(env.instance())


# -- resource metering --------------------------------------------------------------------

@pytest.fixture
def later(monkeypatch):
    """The simulated host's metering report is read an hour after now."""
    real = time.time
    monkeypatch.setattr(instances_handlers, 'time',
                        types.SimpleNamespace(time=lambda: real() + 3600))


def test_every_start_re_enables_metering_when_metrics_collection_is_on(env):
    env.flags('hyperv', enable_instance_metrics_collection=True)
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)
    assert env.vm(instance).metering_since is not None
    env.driver.power_off(instance)
    assert env.vm(instance).metering_since is None         # Hyper-V dropped it

    env.driver.power_on(None, instance, [])
    assert env.vm(instance).metering_since is not None
    assert last_power(env).result['metering_enabled'] is True
    env.driver.suspend(None, instance)
    env.driver.resume(None, instance, [])
    assert env.vm(instance).metering_since is not None
    env.driver.reboot(None, instance, [], 'HARD')
    assert last_power(env).result['metering_enabled'] is True


def test_metering_is_left_off_without_metrics_collection(env, running):
    env.driver.power_off(running)
    env.driver.power_on(None, running, [])
    assert env.vm(running).metering_since is None
    assert 'EnableMetrics' not in env.calls_of('Set-InstancePowerState')[-1].params


def test_diagnostics_carry_per_disk_and_per_nic_counters_in_one_round_trip(env, later):
    env.flags('hyperv', enable_instance_metrics_collection=True)
    image = env.image()
    instance = env.instance(image, flavor_values={'ephemeral_gb': 1})
    port = vif('fa:16:3e:00:00:07')
    env.spawn(instance, image, [port])

    assert env.round_trips(env.driver.get_instance_diagnostics, instance) == 1
    diags = env.driver.get_instance_diagnostics(instance)
    # An hour of the simulated guest: 120 MB in and 60 MB out on its one adapter; the
    # disks share 360 MB read and 180 MB written.
    assert [(n.mac_address, n.rx_octets, n.tx_octets) for n in diags.nic_details] == \
        [('fa:16:3e:00:00:07', 120 * MIB, 60 * MIB)]
    assert [(d.read_bytes, d.write_bytes) for d in diags.disk_details] == \
        [(180 * MIB, 90 * MIB), (180 * MIB, 90 * MIB)]


def test_diagnostics_without_metering_have_zero_counters(env, running, later):
    diags = env.driver.get_instance_diagnostics(running)
    assert [(n.rx_octets, n.tx_octets) for n in diags.nic_details] == [(0, 0)]
    assert {(d.read_bytes, d.write_bytes) for d in diags.disk_details} == {(0, 0)}
