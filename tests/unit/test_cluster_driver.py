"""HyperVClusterDriver on one simulated cluster node: roles, init_host checks, the poll cost.

The failover itself (three services, Nova's database, placement and
Neutron) is tested through nova's functional harness in
tests/functional/test_cluster.py.
"""

from __future__ import annotations

import pytest
from nova import exception

from psdriver import coordination
from psdriver.cluster import clusterops
from psdriver.cluster.driver import ClusterVolumeNotSupported, HyperVClusterDriver
from tests.daemons import free_port
from tests.unit.driver_env import HOSTNAME, DriverEnv

OTHER_NODES = ['SIMHV02', 'SIMHV03']


class ClusterEnv(DriverEnv):
    driver_class = HyperVClusterDriver


@pytest.fixture
def env(tmp_path):
    with ClusterEnv(tmp_path) as env:
        env.flags('coordination', backend_url=f'file://{tmp_path / "locks"}')
        env.flags('hyperv', cluster_event_check_interval=3600)
        yield env
    coordination.COORDINATOR.stop()


@pytest.fixture
def node(env):
    """The driver after init_host on a node of a three-node cluster."""
    env.build()
    env.host.create_cluster('hvcluster', OTHER_NODES)
    env.start()
    return env


def test_init_host_refuses_a_host_that_is_no_cluster_node(env):
    env.build()

    with pytest.raises(clusterops.NotAClusterNode) as exc:
        env.start()

    assert 'not a node of a running failover cluster' in str(exc.value)


def test_init_host_wants_nova_host_to_be_the_node_name(env):
    env.build()
    with env.host.transaction() as state:
        state.config.hostname = 'OTHERNAME'
    env.host.create_cluster('hvcluster', OTHER_NODES)

    with pytest.raises(clusterops.NotAClusterNode, match="set \\[DEFAULT\\] host"):
        env.start()


def test_init_host_starts_the_lock_backend_before_touching_the_host(env):
    env.flags('coordination', backend_url=f'mysql://nova:pw@127.0.0.1:{free_port()}/locks')
    env.build()
    env.host.create_cluster('hvcluster', OTHER_NODES)

    with pytest.raises(exception.NovaException, match='distributed lock backend'):
        env.start()

    assert env.calls == []


def test_spawn_makes_a_clustered_role_with_the_configured_policy(node):
    node.flags('hyperv', max_failover_count=3, failover_period=12, auto_failback=False)
    image = node.image()
    instance = node.instance(image)

    node.spawn(instance, image)

    assert [c.name for c in node.calls[-2:]] == ['New-Instance', 'Add-InstanceClusterRole']
    group = node.host.get_cluster_group(instance.name)
    assert (group.owner_node, group.failover_threshold, group.failover_period,
            group.auto_failback_type, group.persistent_state) == (HOSTNAME, 3, 12, 0, 1)


def test_destroy_removes_the_role_first_and_can_be_repeated(node):
    image = node.image()
    instance = node.instance(image)
    node.spawn(instance, image)
    before = len(node.calls)

    node.driver.destroy(None, instance, [])
    node.driver.destroy(None, instance, [])

    assert [c.name for c in node.calls[before:]] == [
        'Remove-InstanceClusterRole', 'Remove-Instance'] * 2
    assert node.host.find_cluster_group(instance.name) is None
    assert node.host.find_vm(instance.name) is None


def test_destroy_waits_for_a_failover_being_recorded(node):
    image = node.image()
    instance = node.instance(image)
    node.spawn(instance, image)

    with coordination.lock(f'failover-{instance.name}'):
        with pytest.raises(coordination.LockTimeout):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(clusterops, 'FAILOVER_LOCK_TIMEOUT', 0.2)
                node.driver.destroy(None, instance, [])
        assert node.host.find_vm(instance.name) is not None

    node.flags('hyperv', force_destroy_instances=True)
    with coordination.lock(f'failover-{instance.name}'):
        node.driver.destroy(None, instance, [])
    assert node.host.find_vm(instance.name) is None


@pytest.mark.parametrize('driver_type', ['iscsi', 'fibre_channel', 'rbd'])
def test_only_smb_volumes_attach_to_clustered_instances(node, driver_type):
    instance = node.instance()

    with pytest.raises(ClusterVolumeNotSupported, match=f'{driver_type} volume'):
        node.driver.attach_volume(None, {'driver_volume_type': driver_type, 'data': {}},
                                  instance, '/dev/sdb')


def test_boot_from_an_iscsi_volume_is_refused_before_the_host_is_touched(node):
    image = node.image()
    instance = node.instance(image)
    bdi = {'block_device_mapping': [{
        'connection_info': {'driver_volume_type': 'iscsi', 'data': {}},
        'mount_device': '/dev/sda', 'boot_index': 0}]}
    before = len(node.calls)

    with pytest.raises(ClusterVolumeNotSupported, match='iscsi volume'):
        node.spawn(instance, image, block_device_info=bdi)

    assert node.calls[before:] == []


def test_a_poll_is_one_host_call_however_many_groups(env):
    env.build()
    env.host.create_cluster('hvcluster', OTHER_NODES)
    for number in range(60):
        name = f'instance-{number:08x}'
        env.host.create_vm(name)
        env.host.add_vm_group(name)
        env.host.move_cluster_group(name, OTHER_NODES[number % 2])
    node = env
    node.start()
    watcher = node.driver.failover_watcher
    before = len(node.calls)

    assert watcher.poll_once() == 0
    assert watcher.poll_once() == 0

    assert [c.name for c in node.calls[before:]] == ['Get-ClusterInstanceState'] * 2
    assert len(node.calls[-1].result['groups']) == 60


def test_a_spawned_role_is_not_taken_for_a_failover(node):
    image = node.image()
    instance = node.instance(image)
    node.spawn(instance, image)
    before = len(node.calls)

    assert node.driver.failover_watcher.poll_once() == 0

    assert [c.name for c in node.calls[before:]] == ['Get-ClusterInstanceState']


def test_groups_of_vms_without_an_instance_uuid_are_ignored(node):
    node.host.create_vm('admin-vm')
    node.host.add_vm_group('admin-vm')
    node.host.move_cluster_group('admin-vm', 'SIMHV02')
    watcher = node.driver.failover_watcher
    watcher.poll_once()

    node.host.move_cluster_group('admin-vm', HOSTNAME)

    assert watcher.poll_once() == 0
    assert watcher.snapshot()['pending'] == []


def test_init_host_warns_unless_nova_leaves_the_power_state_to_the_cluster(env, caplog):
    env.flags('workarounds', handle_virt_lifecycle_events=True)
    env.build()
    env.host.create_cluster('hvcluster', OTHER_NODES)

    env.start()

    text = caplog.text
    assert 'handle_virt_lifecycle_events is on' in text
    assert 'sync_power_state_interval is 600' in text


def test_init_host_is_quiet_with_the_recommended_workarounds(env, caplog):
    env.flags(sync_power_state_interval=-1)
    env.build()
    env.host.create_cluster('hvcluster', OTHER_NODES)

    env.start()

    assert 'handle_virt_lifecycle_events is on' not in caplog.text
    assert 'sync_power_state_interval' not in caplog.text


# -- live migration within the cluster (nodes of a sim fabric) ----------------------------------

CSV = 'C:\\ClusterStorage\\Volume1'


@pytest.fixture
def fabric_node(env, tmp_path):
    """The driver on SIMHV01 of a three-node cluster whose nodes share a CSV."""
    from psdriver.sim.fabric import Fabric
    from psdriver.sim.simcluster import SimCluster

    fabric = Fabric.create(str(tmp_path / 'fabric'), [HOSTNAME, *OTHER_NODES],
                           shared_volumes={CSV: 500})
    env.cluster = SimCluster.create(fabric, 'hvcluster')
    env.fabric = fabric
    env.flags(instances_path=f'{CSV}\\Instances')
    env.flags('powershell', sim_state_file=fabric.state_file(HOSTNAME))
    env.start()
    return env


def _callbacks():
    seen = []
    post = lambda ctx, inst, dest, block, data: seen.append(('post', dest))  # noqa: E731
    recover = lambda ctx, inst, dest, data: seen.append(('recover', dest))  # noqa: E731
    return seen, post, recover


def test_live_migration_within_the_cluster_moves_the_role(fabric_node):
    fabric_node.flags('hyperv', instance_live_migration_timeout=120)
    image = fabric_node.image()
    instance = fabric_node.instance(image)
    fabric_node.spawn(instance, image)
    seen, post, recover = _callbacks()

    fabric_node.driver.live_migration(None, instance, 'simhv02', post, recover)

    assert seen == [('post', 'simhv02')]
    call = fabric_node.calls_of('Move-InstanceClusterRole')[-1]
    assert call.params == {'Name': instance.name, 'Node': 'SIMHV02', 'TimeoutSeconds': 120}
    target = fabric_node.fabric.host('SIMHV02')
    assert target.get_vm(instance.name).state == 'Running'
    assert target.get_cluster_group(instance.name).owner_node == 'SIMHV02'
    assert fabric_node.host.find_vm(instance.name) is None


def test_a_refused_move_within_the_cluster_is_recovered_on_the_source(fabric_node):
    image = fabric_node.image()
    instance = fabric_node.instance(image)
    fabric_node.spawn(instance, image)
    fabric_node.cluster.node_down('SIMHV03')
    seen, post, recover = _callbacks()

    fabric_node.driver.live_migration(None, instance, 'SIMHV03', post, recover)

    assert seen == [('recover', 'SIMHV03')]
    assert fabric_node.host.get_vm(instance.name).state == 'Running'
    assert fabric_node.host.get_cluster_group(instance.name).owner_node == HOSTNAME
