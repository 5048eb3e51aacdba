"""Resize and cold migration on one simulated host: the driver's four calls and refusals."""

from __future__ import annotations

import json

import pytest
from nova import exception


from tests.unit.driver_env import GIB, HOSTNAME, INSTANCES, DriverEnv, flavor


IMAGES: dict = {}

PORTAL, IQN = '192.0.2.50:3260', 'iqn.2010-10.org.openstack:vol-1'
VOLUME = {'root_device_name': '/dev/sda', 'ephemerals': [], 'swap': None,
          'block_device_mapping': [{
              'connection_info': {'driver_volume_type': 'iscsi', 'data': {
                  'volume_id': 'vol-1', 'target_portal': PORTAL, 'target_iqn': IQN,
                  'target_lun': 0}},
              'mount_device': '/dev/sdb', 'boot_index': None}]}


@pytest.fixture
def env(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.start()
        yield env


@pytest.fixture
def running(env):
    image = env.image()
    instance = env.instance(image, flavor_values={'root_gb': 10, 'vcpus': 1})
    env.spawn(instance, image)
    IMAGES[instance.uuid] = image
    return instance


def folder(instance, suffix=''):
    return f'{INSTANCES}\\{instance.name}{suffix}'


def migrate(env, instance, new_flavor, **kw):
    return env.driver.migrate_disk_and_power_off(None, instance, HOSTNAME, new_flavor, [], **kw)


def finish(env, instance, disk_info, resize=True, power_on=True, bdi=None):
    env.driver.finish_migration(None, None, instance, disk_info, [], IMAGES[instance.uuid],
                                resize, {}, bdi, power_on)


def test_resize_up_on_the_same_host_then_confirm(env, running):
    bigger = flavor(root_gb=20, vcpus=4, memory_mb=4096)
    trips = env.bridge.round_trips
    disk_info = migrate(env, running, bigger, timeout=30, retry_interval=5)
    assert env.bridge.round_trips - trips == 2          # shut down, export
    shutdown = env.calls_of('Set-InstancePowerState')[-1].params
    assert (shutdown['Action'], shutdown['TimeoutSeconds']) == ('Shutdown', 30)
    assert env.host.find_vm(running.name) is None
    assert env.host.exists(folder(running, '_revert') + '\\root.vhdx')
    assert env.host.exists(folder(running) + '\\root.vhdx')
    info = json.loads(disk_info)
    assert [d['name'] for d in info['disks'] if d['root']] == ['root.vhdx']

    running.flavor = bigger
    finish(env, running, disk_info)
    vm = env.vm(running)
    assert (vm.state, vm.processor_count, vm.memory_startup_mb) == ('Running', 4, 4096)
    assert env.host.get_vhd(folder(running) + '\\root.vhdx').vhd.size == 20 * GIB
    assert env.host.get_vhd(folder(running, '_revert') + '\\root.vhdx').vhd.size == 10 * GIB

    env.driver.confirm_migration(None, None, running, [])
    assert not env.host.exists(folder(running, '_revert'))
    env.host.check_consistency()


def test_revert_restores_the_source_exactly(env, running):
    before = env.vm(running)
    old_flavor = running.flavor
    disk_info = migrate(env, running, flavor(root_gb=20, vcpus=2))
    running.flavor = flavor(root_gb=20, vcpus=2)
    finish(env, running, disk_info)
    env.driver.destroy(None, running, [], destroy_disks=False)   # what nova does on revert
    running.flavor = old_flavor
    env.driver.finish_revert_migration(None, running, [], None, None, True)
    vm = env.vm(running)
    assert (vm.state, vm.processor_count) == ('Running', before.processor_count)
    assert env.host.get_vhd(folder(running) + '\\root.vhdx').vhd.size == 10 * GIB
    assert env.host.get_vhd(folder(running) + '\\root.vhdx').vhd.parent_path == \
        env.host.get_vhd(before.drives[0].path).vhd.parent_path
    assert not env.host.exists(folder(running, '_revert'))
    env.host.check_consistency()


def test_shrinking_the_root_disk_is_refused_before_anything_changes(env, running):
    trips = env.bridge.round_trips
    with pytest.raises(exception.InstanceFaultRollback) as err:
        migrate(env, running, flavor(root_gb=5))
    assert 'root disk cannot shrink from 10 GB to 5 GB' in str(err.value.inner_exception)
    assert env.bridge.round_trips == trips
    assert env.vm(running).state == 'Running'


def test_shrinking_the_ephemeral_disk_is_refused(env):
    image = env.image()
    instance = env.instance(image, flavor_values={'ephemeral_gb': 2})
    env.spawn(instance, image)
    with pytest.raises(exception.InstanceFaultRollback, match='ephemeral disk cannot shrink'):
        migrate(env, instance, flavor(ephemeral_gb=1))


def test_the_host_refuses_a_root_disk_bigger_than_the_flavor(env, running):
    """A root grown outside nova: the host's own check (PsDriver.RootDiskTooSmall)."""
    env.host.stop_vm(running.name, turn_off=True)
    env.host.resize_vhd(env.vm(running).drives[0].path, 30 * GIB)
    with pytest.raises(exception.InstanceFaultRollback, match='never shrunk'):
        migrate(env, running, flavor(root_gb=20))
    assert env.host.exists(folder(running) + '\\root.vhdx')     # nothing moved


def _volume_drives(env, instance):
    return [d for d in env.vm(instance).drives if d.disk_number is not None]


def test_an_attached_volume_follows_a_resize(env, running):
    env.flags('hyperv', mounted_disk_query_retry_interval=0)
    env.host.add_iscsi_target(PORTAL, IQN, [1])
    connection = VOLUME['block_device_mapping'][0]['connection_info']
    env.driver.attach_volume(None, connection, running, '/dev/sdb')
    [before] = _volume_drives(env, running)
    serial = env.host.get_disk(before.disk_number).serial
    disk_info = migrate(env, running, flavor(root_gb=10), block_device_info=VOLUME)
    assert env.host.iscsi_sessions() == []          # detached and logged out at the source
    finish(env, running, disk_info, bdi=VOLUME)
    [after] = _volume_drives(env, running)
    assert env.host.get_disk(after.disk_number).serial == serial
    assert [s.target_iqn for s in env.host.iscsi_sessions()] == [IQN]
    assert env.vm(running).state == 'Running'


def test_no_block_devices_no_volume_calls(env, running):
    finish(env, running, migrate(env, running, flavor(root_gb=10)), bdi={})
    assert env.calls_of('Connect-InstanceVolume') == []
    assert env.calls_of('Disconnect-InstanceVolume') == []


def test_finish_with_power_off(env, running):
    disk_info = migrate(env, running, flavor(root_gb=10))
    finish(env, running, disk_info, resize=False, power_on=False)
    assert env.vm(running).state == 'Off'


def test_a_failed_copy_to_another_host_restores_the_source(env, running):
    """No such destination host: the disks cannot go there; the VM is back, running."""
    with pytest.raises(exception.InstanceFaultRollback, match='could not be copied'):
        env.driver.migrate_disk_and_power_off(None, running, 'nosuchhost', flavor(root_gb=10),
                                              [])
    vm = env.vm(running)
    assert vm.state == 'Running'
    assert env.host.exists(folder(running) + '\\root.vhdx')
    assert not env.host.exists(folder(running, '_revert'))
    env.host.check_consistency()


def test_a_resize_grows_the_ephemeral_disk_and_sets_the_new_flavor_s_disk_qos(env):
    image = env.image()
    instance = env.instance(image, flavor_values={
        'root_gb': 10, 'ephemeral_gb': 1, 'extra_specs': {'quota:disk_total_iops_sec': '500'}})
    env.spawn(instance, image)
    IMAGES[instance.uuid] = image
    bigger = flavor(root_gb=10, ephemeral_gb=3,
                    extra_specs={'quota:disk_total_iops_sec': '200'})
    disk_info = migrate(env, instance, bigger)
    instance.flavor = bigger
    finish(env, instance, disk_info)
    assert env.host.get_vhd(folder(instance) + '\\eph0.vhdx').vhd.size == 3 * GIB
    assert env.host.get_vhd(folder(instance) + '\\root.vhdx').vhd.size == 10 * GIB
    limits = env.vm(instance).extra.get('disk_max_iops', {})
    assert {p.rsplit('\\', 1)[-1]: v for p, v in limits.items()} == \
        {'root.vhdx': 200, 'eph0.vhdx': 200}
    resizes = [c.params['Path'] for c in env.calls_of('Resize-InstanceDisk')]
    assert resizes == [folder(instance) + '\\eph0.vhdx']      # the root kept its size
    env.host.check_consistency()
