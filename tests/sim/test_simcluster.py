"""Three fabric hosts as one failover cluster: one cluster state, a CSV, failover, failback."""

from __future__ import annotations

import pytest

from psdriver.sim import SimError, SimHost
from psdriver.sim.fabric import Fabric
from psdriver.sim.simcluster import SimCluster

CSV = 'C:\\ClusterStorage\\Volume1'
INSTANCES = f'{CSV}\\Instances'


@pytest.fixture
def fabric(tmp_path) -> Fabric:
    return Fabric.create(str(tmp_path / 'fabric'), ['HV1', 'HV2', 'HV3'],
                         shared_volumes={CSV: 500})


@pytest.fixture
def cluster(fabric) -> SimCluster:
    return SimCluster.create(fabric, 'hvcluster')


def _clustered_vm(fabric: Fabric, node: str, name: str) -> None:
    host = fabric.host(node)
    host.make_dir(f'{INSTANCES}\\{name}')
    host.new_vhd(f'{INSTANCES}\\{name}\\root.vhdx', 1024 ** 3)
    host.create_vm(name, path=f'{INSTANCES}\\{name}')
    host.attach_disk(name, f'{INSTANCES}\\{name}\\root.vhdx')
    host.start_vm(name)
    host.add_vm_group(name)


def test_every_node_sees_one_cluster_state_and_the_csv(fabric, cluster, tmp_path):
    _clustered_vm(fabric, 'HV1', 'vm-a')

    # A second process opening HV3's state file sees the group HV1 created.
    other = SimHost(state_file=fabric.state_file('HV3'))
    assert other.get_cluster_group('vm-a').owner_node == 'HV1'
    assert other.get_item(f'{INSTANCES}\\vm-a\\root.vhdx').size > 0
    assert other.find_vm('vm-a') is None
    assert [n.name for n in other.cluster().nodes] == ['HV1', 'HV2', 'HV3']


def test_node_down_restarts_its_vms_on_the_survivors(fabric, cluster):
    _clustered_vm(fabric, 'HV1', 'vm-a')
    _clustered_vm(fabric, 'HV1', 'vm-b')

    moves = dict(cluster.node_down('HV1'))

    assert sorted(moves.values()) == ['HV2', 'HV3']
    assert fabric.host('HV1').faults.is_down
    for name, node in moves.items():
        vm = fabric.host(node).get_vm(name)
        assert vm.state == 'Running'
        assert fabric.host('HV2').get_cluster_group(name).owner_node == node
        assert fabric.host(node).find_vm(name) is not None
    with fabric.host('HV1').transaction(write=False) as state:
        assert state.vms == {}
    assert [n.state for n in fabric.host('HV2').cluster().nodes] == ['Down', 'Up', 'Up']


def test_failover_threshold_leaves_a_group_failed(fabric, cluster):
    _clustered_vm(fabric, 'HV1', 'vm-a')
    fabric.host('HV1').set_group_policy('vm-a', 1, 6, 0, 1)
    first = dict(cluster.node_down('HV1'))['vm-a']

    assert cluster.node_down(first) == []

    group = fabric.host('HV2' if first == 'HV3' else 'HV3').get_cluster_group('vm-a')
    assert (group.owner_node, group.state) == (first, 'Failed')


def test_failback_moves_the_vm_home_running(fabric, cluster):
    _clustered_vm(fabric, 'HV1', 'vm-a')
    host = fabric.host('HV1')
    host.set_group_policy('vm-a', 5, 6, 1, 1)
    host.set_preferred_owners('vm-a', ['HV1'])
    away = dict(cluster.node_down('HV1'))['vm-a']

    assert cluster.node_up('HV1') == [('vm-a', 'HV1')]

    assert fabric.host('HV1').get_vm('vm-a').state == 'Running'
    assert fabric.host(away).find_vm('vm-a') is None


def test_paused_node_receives_nothing(fabric, cluster):
    _clustered_vm(fabric, 'HV1', 'vm-a')
    _clustered_vm(fabric, 'HV1', 'vm-b')
    cluster.pause('HV3')

    assert sorted(dict(cluster.node_down('HV1')).values()) == ['HV2', 'HV2']


def test_a_clustered_vm_cannot_be_removed_on_its_new_owner(fabric, cluster):
    _clustered_vm(fabric, 'HV1', 'vm-a')
    node = dict(cluster.node_down('HV1'))['vm-a']
    host = fabric.host(node)
    host.stop_vm('vm-a', turn_off=True)

    with pytest.raises(SimError, match='clustered role'):
        host.remove_vm('vm-a')
    host.remove_cluster_group('vm-a')
    host.remove_vm('vm-a')
