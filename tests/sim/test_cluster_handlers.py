"""The cluster scripts on the simulated host, and the failover rules of its cluster model."""

from __future__ import annotations

import pytest

from psdriver.sim import SimError, SimHost, dispatch


def _run(host, name, params=None):
    bound = dispatch.bind_parameters(name, params or {})
    with host.transaction(write=not dispatch.get_handler(name).readonly):
        return dispatch.get_handler(name).func(host, bound)


@pytest.fixture
def node(host: SimHost) -> SimHost:
    host.create_cluster('hvcluster', ['SIMHV02', 'SIMHV03'])
    for name in ('instance-1', 'instance-2', 'admin-vm'):
        host.create_vm(name)
    return host


def test_state_off_a_cluster_is_cluster_unavailable(host):
    with pytest.raises(SimError) as exc:
        _run(host, 'Get-ClusterInstanceState')
    assert (exc.value.category, exc.value.error_id) == (
        'ResourceUnavailable', 'PsDriver.ClusterUnavailable')
    assert 'not a node of a running failover cluster' in exc.value.message


def test_add_sets_the_policy_and_state_reports_it(node):
    added = _run(node, 'Add-InstanceClusterRole', {
        'Name': 'INSTANCE-1', 'MaxFailoverCount': 2, 'FailoverPeriod': 12,
        'AutoFailback': False})
    assert added == {'name': 'instance-1', 'owner_node': 'SIMHV01', 'state': 'Offline',
                     'failover_threshold': 2, 'failover_period': 12, 'auto_failback': False,
                     'persistent_state': True, 'added': True}
    again = _run(node, 'Add-InstanceClusterRole', {'Name': 'instance-1'})
    assert again['added'] is False and again['failover_threshold'] == 1
    assert again['auto_failback'] is True

    state = _run(node, 'Get-ClusterInstanceState')
    assert state['cluster_name'] == 'hvcluster' and state['node_name'] == 'SIMHV01'
    assert [n['state'] for n in state['nodes']] == ['Up', 'Up', 'Up']
    assert [g['name'] for g in state['groups']] == ['instance-1']


def test_add_refuses_a_missing_vm_and_a_zero_failover_count(node):
    with pytest.raises(SimError) as exc:
        _run(node, 'Add-InstanceClusterRole', {'Name': 'nope'})
    assert exc.value.error_id == 'PsDriver.VMNotFound'
    with pytest.raises(SimError) as exc:
        _run(node, 'Add-InstanceClusterRole', {'Name': 'instance-1', 'MaxFailoverCount': 0})
    assert exc.value.error_id.startswith('ParameterArgumentValidationError')
    assert node.find_cluster_group('instance-1') is None


def test_remove_is_idempotent_and_frees_the_vm(node):
    _run(node, 'Add-InstanceClusterRole', {'Name': 'instance-1'})
    with pytest.raises(SimError, match='clustered role'):
        node.remove_vm('instance-1')
    assert _run(node, 'Remove-InstanceClusterRole', {'Name': 'instance-1'}) == {
        'name': 'instance-1', 'removed': True, 'owner_node': 'SIMHV01'}
    assert _run(node, 'Remove-InstanceClusterRole', {'Name': 'instance-1'})['removed'] is False
    node.remove_vm('instance-1')


def test_node_down_spreads_groups_and_threshold_leaves_them_failed(node):
    for name in ('instance-1', 'instance-2'):
        _run(node, 'Add-InstanceClusterRole', {'Name': name, 'MaxFailoverCount': 1})
        node.move_cluster_group(name, 'SIMHV02')
    node.set_node_state('SIMHV02', 'Down')
    owners = {g['name']: g['owner_node']
              for g in _run(node, 'Get-ClusterInstanceState')['groups']}
    assert sorted(owners.values()) == ['SIMHV01', 'SIMHV03']

    # A second failover within failover_period hours exceeds MaxFailoverCount 1.
    node.set_node_state('SIMHV02', 'Up')
    moved = owners['instance-1']
    node.set_node_state(moved, 'Down')
    group = node.get_cluster_group('instance-1')
    assert (group.owner_node, group.state) == (moved, 'Failed')


def test_paused_node_receives_nothing_and_failback_follows_preferred_owner(node):
    _run(node, 'Add-InstanceClusterRole', {'Name': 'instance-1', 'MaxFailoverCount': 5,
                                           'AutoFailback': True})
    node.set_preferred_owners('instance-1', ['SIMHV02'])
    node.move_cluster_group('instance-1', 'SIMHV02')
    node.set_node_state('SIMHV03', 'Paused')
    node.set_node_state('SIMHV02', 'Down')
    assert node.get_cluster_group('instance-1').owner_node == 'SIMHV01'
    node.set_node_state('SIMHV02', 'Up')
    assert node.get_cluster_group('instance-1').owner_node == 'SIMHV02'


def test_no_failback_without_auto_failback(node):
    _run(node, 'Add-InstanceClusterRole', {'Name': 'instance-1', 'MaxFailoverCount': 5,
                                           'AutoFailback': False})
    node.set_preferred_owners('instance-1', ['SIMHV02'])
    node.move_cluster_group('instance-1', 'SIMHV02')
    node.set_node_state('SIMHV02', 'Down')
    node.set_node_state('SIMHV02', 'Up')
    assert node.get_cluster_group('instance-1').owner_node != 'SIMHV02'
