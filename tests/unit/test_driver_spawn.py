"""HyperVDriver.spawn on the simulated host: what ends up on Hyper-V, and at what cost."""

from __future__ import annotations

import json
import logging
from unittest import mock

import pytest
from nova import exception

from psdriver.ops import errors, imagecache, vmops
from psdriver.sim.image_files import dynamic_vhd, vhdx

from tests.unit.driver_env import BASE, GIB, INSTANCES, MIB, SWITCH, DriverEnv, vif


@pytest.fixture
def env(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.start()
        yield env


def folder(instance) -> str:
    return f'{INSTANCES}\\{instance.name}'


def drives(env, instance) -> dict[str, tuple[str, str, int, int]]:
    """File name -> (kind, controller type, controller number, location)."""
    return {d.path.rsplit('\\', 1)[-1]: (d.kind, d.controller_type, d.controller_number,
                                         d.location)
            for d in env.vm(instance).drives}


def assert_nothing_left(env, instance, free_before: int) -> None:
    assert env.host.find_vm(instance.name) is None
    assert not env.host.exists(folder(instance))
    assert env.host.disk_usage(INSTANCES)['free'] == free_before
    assert not [lg for lg in env.host.state.console_loggers.values()
                if lg.log_path.startswith(folder(instance) + '\\')]
    env.host.check_consistency()


# -- cost -------------------------------------------------------------------------------

def test_spawn_is_one_round_trip_once_the_image_is_cached(env):
    image = env.image()
    first = env.instance(image)
    assert env.round_trips(env.spawn, first, image) == 2      # image lookup + New-Instance
    second = env.instance(image)

    assert env.round_trips(env.spawn, second, image) == 1
    assert [c.name for c in env.calls[-1:]] == ['New-Instance']
    assert env.vm(second).state == 'Running'
    assert env.calls_of('Start-InstanceConsoleLogger') == []
    assert env.glance.fetched == [image.id]


def test_console_log_holds_the_first_boot(env):
    """New-Instance starts the logger before the VM: the boot lines are in the log."""
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)

    logger = env.host.console_logger(instance.name)
    assert logger is not None
    assert logger.log_path == f'{folder(instance)}\\console.log'
    assert logger.pipe_path == f'\\\\.\\pipe\\{instance.uuid}_ro'
    assert logger.max_log_bytes == vmops.CONSOLE_LOG_BYTES
    output = env.driver.get_console_output(None, instance)
    assert f'{instance.name}: booting'.encode() in output


def test_a_cached_image_removed_behind_the_driver_is_fetched_again(env):
    image = env.image()
    first = env.instance(image)
    env.spawn(first, image)
    env.driver.destroy(None, first, [])
    env.host.remove_item(f'{BASE}\\{image.id}.vhdx')     # another service cleaned the cache

    second = env.instance(image)
    env.spawn(second, image)

    assert env.glance.fetched == [image.id, image.id]
    assert env.host.get_vhd(f'{folder(second)}\\root.vhdx').vhd.parent_path == \
        f'{BASE}\\{image.id}.vhdx'


def test_after_the_cache_periodic_removed_the_image_spawn_downloads_it_again(env):
    image = env.image()
    first = env.instance(image)
    env.spawn(first, image)
    env.driver.destroy(None, first, [])
    env.flags('image_cache', remove_unused_original_minimum_age_seconds=0)
    with mock.patch.object(imagecache, 'HANDED_OUT_GRACE', 0.0):
        env.driver.manage_image_cache(None, [])
    assert not env.host.exists(f'{BASE}\\{image.id}.vhdx')

    second = env.instance(image)
    assert env.round_trips(env.spawn, second, image) == 2     # lookup + New-Instance, no retry
    assert [c.name for c in env.calls[-2:]] == ['Get-CachedImage', 'New-Instance']
    assert env.glance.fetched == [image.id, image.id]


# -- disks -------------------------------------------------------------------------------

def test_root_is_a_differencing_disk_grown_to_the_flavor(env):
    image = env.image(vhdx(2 * GIB))
    instance = env.instance(image, flavor_values={'root_gb': 12})
    env.spawn(instance, image)

    root = env.host.get_vhd(f'{folder(instance)}\\root.vhdx').vhd
    assert (root.vhd_type, root.size) == ('Differencing', 12 * GIB)
    assert root.parent_path == f'{BASE}\\{image.id}.vhdx'
    assert env.host.get_vhd(root.parent_path).vhd.size == 2 * GIB   # the cache is untouched


def test_root_is_a_full_copy_without_use_cow_images(env):
    env.flags(use_cow_images=False)
    image = env.image(vhdx(2 * GIB))
    instance = env.instance(image, flavor_values={'root_gb': 5})
    env.spawn(instance, image)

    root = env.host.get_vhd(f'{folder(instance)}\\root.vhdx').vhd
    assert (root.vhd_type, root.size, root.parent_path) == ('Dynamic', 5 * GIB, None)


def test_root_keeps_the_image_size_when_the_flavor_has_no_root_size(env):
    image = env.image(vhdx(3 * GIB))
    instance = env.instance(image, flavor_values={'root_gb': 0})
    env.spawn(instance, image)
    assert env.host.get_vhd(f'{folder(instance)}\\root.vhdx').vhd.size == 3 * GIB


def test_a_vhd_image_boots_generation_1_from_a_grown_cached_copy(env):
    """A VHD differencing disk cannot grow: its parent is the image grown to the flavor."""
    image = env.image(dynamic_vhd(GIB), 'vhd')
    instance = env.instance(image, flavor_values={'root_gb': 4})
    env.spawn(instance, image)

    vm = env.vm(instance)
    root = env.host.get_vhd(f'{folder(instance)}\\root.vhd').vhd
    assert vm.generation == 1
    assert (root.format, root.vhd_type, root.size) == ('VHD', 'Differencing', 4 * GIB)
    assert root.parent_path == f'{BASE}\\{image.id}_4.vhd'
    assert drives(env, instance)['root.vhd'] == ('HardDisk', 'IDE', 0, 0)
    assert vm.boot_order[0] == 'IDE'


def test_a_flavor_smaller_than_the_image_is_refused_and_nothing_is_shrunk(env):
    image = env.image(vhdx(20 * GIB))
    instance = env.instance(image, flavor_values={'root_gb': 10})
    free = env.host.disk_usage(INSTANCES)['free']

    with pytest.raises(exception.FlavorDiskSmallerThanImage) as caught:
        env.spawn(instance, image)

    assert str(10 * GIB) in str(caught.value) and str(20 * GIB) in str(caught.value)
    assert env.calls_of('New-Instance') == []
    assert env.host.find_vm(instance.name) is None
    assert env.host.get_vhd(f'{BASE}\\{image.id}.vhdx').vhd.size == 20 * GIB
    assert env.host.disk_usage(INSTANCES)['free'] < free      # only the download stays


def test_ephemeral_and_swap_disks(env):
    image = env.image()
    instance = env.instance(image, flavor_values={'ephemeral_gb': 3, 'swap': 512})
    env.spawn(instance, image)

    eph = env.host.get_vhd(f'{folder(instance)}\\eph0.vhdx').vhd
    swap = env.host.get_vhd(f'{folder(instance)}\\swap.vhdx').vhd
    assert (eph.vhd_type, eph.size) == ('Dynamic', 3 * GIB)
    assert (swap.vhd_type, swap.size) == ('Dynamic', 512 * MIB)
    layout = drives(env, instance)
    assert layout['root.vhdx'] == ('HardDisk', 'IDE', 0, 0)
    assert layout['eph0.vhdx'] == ('HardDisk', 'SCSI', 0, 0)
    assert layout['swap.vhdx'] == ('HardDisk', 'SCSI', 0, 1)


def test_ephemerals_from_block_device_info(env):
    image = env.image()
    instance = env.instance(image, flavor_values={'ephemeral_gb': 3})
    env.spawn(instance, image, block_device_info={
        'ephemerals': [{'size': 1, 'device_name': '/dev/sdb'},
                       {'size': 2, 'device_name': '/dev/sdc'}],
        'block_device_mapping': [], 'swap': None, 'root_device_name': None})
    assert env.host.get_vhd(f'{folder(instance)}\\eph0.vhdx').vhd.size == GIB
    assert env.host.get_vhd(f'{folder(instance)}\\eph1.vhdx').vhd.size == 2 * GIB


def test_volumes_are_refused_before_anything_happens(env):
    image = env.image()
    instance = env.instance(image)
    with pytest.raises(vmops.VolumesNotSupported):
        env.spawn(instance, image, block_device_info={'block_device_mapping': [
            {'connection_info': {'driver_volume_type': 'iscsi'}, 'mount_device': '/dev/sdb'}]})
    assert env.calls_of('New-Instance') == []


# -- machine ----------------------------------------------------------------------------

@pytest.mark.parametrize('props, generation', [
    ({}, 1), ({'hw_machine_type': 'hyperv-gen1'}, 1), ({'hw_machine_type': 'hyperv-gen2'}, 2)])
def test_generation_follows_hw_machine_type(env, props, generation):
    image = env.image(**props)
    instance = env.instance(image)
    env.spawn(instance, image)

    vm = env.vm(instance)
    assert vm.generation == generation
    if generation == 2:
        assert vm.first_boot_device == 'SCSI:0:0'
        assert not vm.secure_boot, 'secure boot is off unless asked for'
    else:
        assert drives(env, instance)['root.vhdx'] == ('HardDisk', 'IDE', 0, 0)


def test_generation_2_refuses_a_vhd_image(env):
    image = env.image(dynamic_vhd(GIB), 'vhd', hw_machine_type='hyperv-gen2')
    instance = env.instance(image)
    with pytest.raises(exception.InstanceUnacceptable, match='VHDX'):
        env.spawn(instance, image)
    assert env.host.find_vm(instance.name) is None


def test_secure_boot_from_the_flavor(env):
    image = env.image(hw_machine_type='hyperv-gen2')
    instance = env.instance(image, flavor_values={'extra_specs': {'os:secure_boot': 'required'}})
    env.spawn(instance, image)
    vm = env.vm(instance)
    assert (vm.secure_boot, vm.secure_boot_template) == (True, 'MicrosoftWindows')


def test_secure_boot_from_the_image_uses_the_linux_template(env):
    image = env.image(hw_machine_type='hyperv-gen2', os_secure_boot='required', os_type='linux')
    instance = env.instance(image)
    env.spawn(instance, image)
    vm = env.vm(instance)
    assert (vm.secure_boot, vm.secure_boot_template) == (True,
                                                         'MicrosoftUEFICertificateAuthority')


def test_secure_boot_on_generation_1_is_refused(env):
    image = env.image(os_secure_boot='required')
    instance = env.instance(image)
    with pytest.raises(exception.InstanceUnacceptable, match='generation 2'):
        env.spawn(instance, image)
    assert env.host.find_vm(instance.name) is None


def test_vcpus_memory_notes_and_stop_action(env):
    image = env.image()
    instance = env.instance(image, flavor_values={'vcpus': 3, 'memory_mb': 3071})
    env.spawn(instance, image)

    vm = env.vm(instance)
    assert vm.processor_count == 3
    assert (vm.memory_startup_mb, vm.dynamic_memory) == (3072, False)   # even MB
    assert vm.notes.splitlines()[0] == instance.uuid
    assert vm.automatic_stop_action == 'Save'
    assert vm.automatic_start_action == 'Nothing'
    assert vm.com_ports['COM1'] == f'\\\\.\\pipe\\{instance.uuid}_ro'
    assert not vm.limit_cpu_features and vm.metering_since is None


def test_dynamic_memory_ratio(env):
    env.flags('hyperv', dynamic_memory_ratio=2.0, instance_automatic_shutdown=True)
    image = env.image()
    instance = env.instance(image, flavor_values={'memory_mb': 4096})
    env.spawn(instance, image)

    vm = env.vm(instance)
    assert vm.dynamic_memory
    assert (vm.memory_startup_mb, vm.memory_minimum_mb, vm.memory_maximum_mb) == \
        (2048, 2048, 4096)
    assert vm.automatic_stop_action == 'ShutDown'


def test_vnuma_sets_per_node_limits_and_turns_dynamic_memory_off(env):
    env.flags('hyperv', dynamic_memory_ratio=2.0)
    image = env.image()
    instance = env.instance(image, flavor_values={
        'vcpus': 4, 'memory_mb': 4096, 'extra_specs': {'hw:numa_nodes': '2'}})
    env.spawn(instance, image)

    vm = env.vm(instance)
    assert (vm.numa_max_processors, vm.numa_max_memory_mb) == (2, 2048)
    assert not vm.dynamic_memory and vm.memory_startup_mb == 4096


def test_limit_cpu_features_and_metrics(env):
    env.flags('hyperv', limit_cpu_features=True, enable_instance_metrics_collection=True)
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)

    vm = env.vm(instance)
    assert vm.limit_cpu_features
    assert vm.metering_since is not None


def test_power_on_false_leaves_the_vm_off_with_its_logger_waiting(env):
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image, power_on=False)
    assert env.vm(instance).state == 'Off'
    assert env.host.console_logger(instance.name) is not None


# -- network ----------------------------------------------------------------------------

def test_nics_on_the_vswitch_with_the_port_mac_and_vlan(env):
    env.flags('hyperv', vswitch_name=SWITCH)
    image = env.image()
    instance = env.instance(image)
    tagged, untagged = vif('fa:16:3e:0a:0b:0c', vlan=120), vif('fa:16:3e:01:02:03')
    env.spawn(instance, image, [tagged, untagged])

    nics = {n.name: n for n in env.vm(instance).nics}
    assert set(nics) == {tagged['id'], untagged['id']}
    assert (nics[tagged['id']].mac_address, nics[tagged['id']].dynamic_mac) == \
        ('FA163E0A0B0C', False)
    assert nics[tagged['id']].vlan_id == 120
    assert nics[untagged['id']].vlan_id is None
    assert {n.switch_name for n in nics.values()} == {SWITCH}


def test_without_vswitch_name_the_adapters_wait_for_the_agent(env):
    image = env.image()
    instance = env.instance(image)
    port = vif()
    env.spawn(instance, image, [port])
    nic = env.vm(instance).nics[0]
    assert (nic.name, nic.switch_name, nic.mac_address) == (port['id'], None, 'FA163E010203')


# -- config drive -----------------------------------------------------------------------

def test_config_drive_as_vhd_disk(env):
    image = env.image()
    instance = env.instance(image, config_drive=True)
    env.spawn(instance, image, [vif()], admin_password='not-injected')

    path = f'{folder(instance)}\\configdrive.vhd'
    disk = env.host.get_vhd(path)
    assert disk.vhd.vhd_type == 'Fixed'
    assert drives(env, instance)['configdrive.vhd'][0] == 'HardDisk'
    files = env.config_drive_files(instance)
    meta = json.loads(files['openstack/latest/meta_data.json'])
    assert meta['uuid'] == instance.uuid
    assert 'admin_pass' not in meta, 'no password without config_drive_inject_password'
    assert 'openstack/latest/network_data.json' in files


def test_config_drive_as_iso_dvd_with_the_password(env):
    env.flags('hyperv', config_drive_cdrom=True, config_drive_inject_password=True)
    image = env.image()
    instance = env.instance(image, config_drive=True)
    env.spawn(instance, image, admin_password='Pa55-w0rd!')

    assert drives(env, instance)['configdrive.iso'] == ('DvdDrive', 'IDE', 1, 0)
    meta = json.loads(env.config_drive_files(instance)['openstack/latest/meta_data.json'])
    assert meta['admin_pass'] == 'Pa55-w0rd!'
    assert env.bdm_lookup.call_count >= 1 and env.security_groups.call_count >= 1


def test_no_config_drive_unless_required(env):
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)
    assert not any('configdrive' in name for name in drives(env, instance))
    assert env.calls_of('New-Instance')[-1].params['Spec']['config_drive'] is None


def test_the_admin_password_never_reaches_the_log(env, caplog):
    env.flags('hyperv', config_drive_inject_password=True)
    caplog.set_level(logging.DEBUG)
    secret = 'S3cret-Adm1n-Pa55'
    image = env.image()
    instance = env.instance(image, config_drive=True)
    env.spawn(instance, image, admin_password=secret)

    spec = env.calls_of('New-Instance')[-1].params['Spec']
    assert secret.encode() in env.config_drive_files(instance)[
        'openstack/latest/meta_data.json']
    assert 'New-Instance' in caplog.text
    assert secret not in caplog.text
    assert spec['config_drive']['content_base64'][:64] not in caplog.text


# -- failures -----------------------------------------------------------------------------

def test_no_room_for_the_ephemeral_disk_rolls_everything_back(env):
    image = env.image()
    env.spawn(env.instance(image), image)            # the image is cached now
    instance = env.instance(image, flavor_values={'ephemeral_gb': 5})
    usage = env.host.disk_usage(INSTANCES)
    # Leave room for the root differencing disk and the folder, not for the ephemeral.
    env.host.add_file('C:\\filler.bin', usage['free'] - 6 * MIB)
    free = env.host.disk_usage(INSTANCES)['free']

    with pytest.raises(exception.ComputeResourcesUnavailable,
                       match='not enough space on the disk'):
        env.spawn(instance, image)
    assert_nothing_left(env, instance, free)


def test_a_missing_switch_rolls_everything_back(env):
    env.flags('hyperv', vswitch_name='no-such-switch')
    image = env.image()
    instance = env.instance(image, config_drive=True, flavor_values={'ephemeral_gb': 1})
    env.spawn(env.instance(image), image, [])        # no NIC: spawns fine
    free = env.host.disk_usage(INSTANCES)['free']

    with pytest.raises(errors.HyperVHostError, match='no-such-switch'):
        env.spawn(instance, image, [vif()])
    assert_nothing_left(env, instance, free)


def test_no_memory_to_start_is_a_capacity_problem_and_rolls_back(env):
    image = env.image()
    env.spawn(env.instance(image), image)
    free = env.host.disk_usage(INSTANCES)['free']
    instance = env.instance(image, flavor_values={'memory_mb': 200 * 1024})

    with pytest.raises(exception.ComputeResourcesUnavailable, match='Not enough memory'):
        env.spawn(instance, image)
    assert_nothing_left(env, instance, free)


def test_a_duplicate_spawn_is_instance_exists_and_leaves_the_vm(env):
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)
    before = env.vm(instance)

    with pytest.raises(exception.InstanceExists):
        env.spawn(instance, image)
    after = env.vm(instance)
    assert (after.id, after.state, len(after.drives)) == (before.id, 'Running',
                                                          len(before.drives))


def test_a_host_that_is_down_is_a_host_error_naming_it(env):
    image = env.image()
    env.spawn(env.instance(image), image)
    instance = env.instance(image)
    env.host.faults.host_down()
    with pytest.raises(errors.HyperVHostError, match='SIMHV01'):
        env.spawn(instance, image)
    env.host.faults.host_up()
    assert env.host.find_vm(instance.name) is None


# -- RemoteFX ---------------------------------------------------------------------------

@pytest.mark.parametrize('spec', ['os:resolution', 'os:monitors', 'os:vram'])
def test_a_flavor_asking_for_remotefx_is_refused_before_anything_happens(env, spec):
    image = env.image()
    instance = env.instance(image, flavor_values={'extra_specs': {spec: '1920x1200'}})
    with pytest.raises(vmops.RemoteFXNotSupported, match='RemoteFX') as raised:
        env.spawn(instance, image)
    assert spec in str(raised.value)
    assert env.calls_of('New-Instance') == []
    assert env.host.find_vm(instance.name) is None


def test_enable_remotefx_is_logged_as_unsupported_and_refuses_all_the_same(tmp_path, caplog):
    with DriverEnv(tmp_path, hyperv={'enable_remotefx': True}) as env:
        with caplog.at_level(logging.ERROR, logger='psdriver.driver'):
            env.start()
        assert 'enable_remotefx = True is not supported' in caplog.text
        image = env.image()
        instance = env.instance(image, flavor_values={'extra_specs': {'os:vram': '1024'}})
        with pytest.raises(vmops.RemoteFXNotSupported, match='RemoteFX'):
            env.spawn(instance, image)

