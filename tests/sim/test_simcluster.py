"""Three simulated hosts as one failover cluster: shared share, shared groups, failover."""

from __future__ import annotations

import pytest

from psdriver.sim import SimError, SimHost
from psdriver.sim.simcluster import SHARE, SimCluster

INSTANCES = f'{SHARE}\\Instances'


@pytest.fixture
def cluster() -> SimCluster:
    hosts = [SimHost(hostname=name) for name in ('HV1', 'HV2', 'HV3')]
    return SimCluster('hvcluster', hosts)


def _clustered_vm(cluster: SimCluster, node: str, name: str) -> None:
    host = cluster.host(node)
    host.make_dir(f'{INSTANCES}\\{name}')
    host.new_vhd(f'{INSTANCES}\\{name}\\root.vhdx', 1024 ** 3)
    host.create_vm(name, path=f'{INSTANCES}\\{name}')
    host.attach_disk(name, f'{INSTANCES}\\{name}\\root.vhdx')
    host.start_vm(name)
    host.add_vm_group(name)


def test_nodes_share_the_share_and_the_groups_but_not_their_vms(cluster):
    _clustered_vm(cluster, 'HV1', 'vm-a')

    for node in ('HV2', 'HV3'):
        host = cluster.host(node)
        assert host.get_item(f'{INSTANCES}\\vm-a\\root.vhdx').size > 0
        assert host.get_cluster_group('vm-a').owner_node == 'HV1'
        assert host.find_vm('vm-a') is None
    assert cluster.host('HV2').get_item('C:\\OpenStack\\Instances').is_dir
    cluster.host('HV2').make_dir('C:\\local-only')
    assert not cluster.host('HV1').exists('C:\\local-only')


def test_node_down_restarts_its_vms_on_the_survivors(cluster):
    _clustered_vm(cluster, 'HV1', 'vm-a')
    _clustered_vm(cluster, 'HV1', 'vm-b')

    moves = dict(cluster.node_down('HV1'))

    assert sorted(moves.values()) == ['HV2', 'HV3']
    assert cluster.host('HV1').faults.is_down
    for name, node in moves.items():
        vm = cluster.host(node).get_vm(name)
        assert vm.state == 'Running'
        assert cluster.host('HV3').get_cluster_group(name).owner_node == node
    with cluster.host('HV1').transaction(write=False) as state:
        assert state.vms == {}


def test_failback_moves_the_vm_home_running(cluster):
    _clustered_vm(cluster, 'HV1', 'vm-a')
    host = cluster.host('HV1')
    host.set_group_policy('vm-a', 5, 6, 1, 1)
    host.set_preferred_owners('vm-a', ['HV1'])
    away = dict(cluster.node_down('HV1'))['vm-a']

    assert cluster.node_up('HV1') == [('vm-a', 'HV1')]

    assert cluster.host('HV1').get_vm('vm-a').state == 'Running'
    assert cluster.host(away).find_vm('vm-a') is None


def test_a_clustered_vm_cannot_be_removed_on_its_new_owner(cluster):
    _clustered_vm(cluster, 'HV1', 'vm-a')
    node = dict(cluster.node_down('HV1'))['vm-a']
    host = cluster.host(node)
    host.stop_vm('vm-a', turn_off=True)

    with pytest.raises(SimError, match='clustered role'):
        host.remove_vm('vm-a')
    host.remove_cluster_group('vm-a')
    host.remove_vm('vm-a')


def test_file_backed_hosts_cannot_be_nodes(tmp_path):
    with pytest.raises(ValueError, match='in-memory'):
        SimCluster('c', [SimHost(state_file=str(tmp_path / 'h.json'))])
