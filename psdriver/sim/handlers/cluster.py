"""Get-ClusterInstanceState, Add-InstanceClusterRole, Remove-InstanceClusterRole.

The cluster is the host's cluster model (:mod:`psdriver.sim.cluster`); a
host that is no node of a running cluster fails the way
``Get-PsDriverCluster`` does.
"""

from __future__ import annotations

from typing import Any

from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import SimError
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import int_param, not_empty, script_error, target_vm, text_list
from psdriver.sim.state import ClusterGroup, ClusterState

STATE = 'Get-ClusterInstanceState'
ADD = 'Add-InstanceClusterRole'
REMOVE = 'Remove-InstanceClusterRole'
INT_MAX = 2147483647


def _cluster(host: SimHost) -> ClusterState:
    """``Get-PsDriverCluster``."""
    try:
        return host.cluster()
    except SimError as exc:
        raise script_error(f'{host.hostname} is not a node of a running failover cluster: '
                           f'{exc.message}', 'ResourceUnavailable',
                           'PsDriver.ClusterUnavailable', host.hostname) from None


def group_record(group: ClusterGroup) -> dict[str, Any]:
    """``ConvertTo-PsDriverClusterGroupRecord``."""
    return {
        'name': group.name,
        'owner_node': group.owner_node or None,
        'state': group.state,
        'failover_threshold': group.failover_threshold,
        'failover_period': group.failover_period,
        'auto_failback': group.auto_failback_type == 1,
        'persistent_state': group.persistent_state == 1,
    }


def _ensure_cluster(host: SimHost) -> None:
    if host.state.cluster is None:
        host.create_cluster('simcluster', ['SIMHV02', 'SIMHV03'])


@prepare(STATE)
def _prepare_state(host: SimHost, params: dict[str, Any]) -> None:
    _ensure_cluster(host)
    for name in text_list(params, 'Name') or ['instance-00000001']:
        if host.find_vm(name) is None:
            host.create_vm(name)
        if host.find_cluster_group(name) is None:
            host.add_vm_group(name)


@handler(STATE, readonly=True)
def cluster_state(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    cluster = _cluster(host)
    wanted = {n.lower() for n in text_list(params, 'Name')}
    return {
        'cluster_name': cluster.name,
        'node_name': host.hostname,
        'nodes': [{'name': n.name, 'state': n.state} for n in cluster.nodes],
        'groups': [group_record(g) for g in cluster.groups.values()
                   if g.group_type == 'VirtualMachine'
                   and (not wanted or g.name.lower() in wanted)],
    }


@prepare(ADD)
def _prepare_add(host: SimHost, params: dict[str, Any]) -> None:
    _ensure_cluster(host)
    name = str(params.get('Name'))
    if host.find_vm(name) is None:
        host.create_vm(name)


def _bool_param(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if isinstance(value, str):
        return value.strip().lower() not in ('', '0', 'false', '$false')
    return bool(value)


@handler(ADD)
def add_role(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    name = not_empty(ADD, params, 'Name')
    threshold = int_param(ADD, params, 'MaxFailoverCount', 1, 1, INT_MAX)
    period = int_param(ADD, params, 'FailoverPeriod', 6, 1, INT_MAX)
    failback = _bool_param(params, 'AutoFailback', True)
    _cluster(host)
    vm = target_vm(host, name)
    group = host.find_cluster_group(vm.name)
    added = group is None
    if added:
        group = host.add_vm_group(vm.name, vm.name)
    try:
        group = host.set_group_policy(group.name, threshold, period, 1 if failback else 0, 1)
    except SimError:
        if added:
            host.remove_cluster_group(group.name)
        raise
    return {**group_record(group), 'added': added}


@prepare(REMOVE)
def _prepare_remove(host: SimHost, params: dict[str, Any]) -> None:
    _prepare_add(host, params)
    if host.find_cluster_group(str(params.get('Name'))) is None:
        host.add_vm_group(str(params.get('Name')))


@handler(REMOVE)
def remove_role(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    name = not_empty(REMOVE, params, 'Name')
    _cluster(host)
    group = host.find_cluster_group(name)
    if group is None:
        return {'name': name, 'removed': False, 'owner_node': None}
    owner = group.owner_node or None
    host.remove_cluster_group(group.name)
    return {'name': name, 'removed': True, 'owner_node': owner}


MOVE = 'Move-InstanceClusterRole'


@prepare(MOVE)
def _prepare_move(host: SimHost, params: dict[str, Any]) -> None:
    _prepare_remove(host, params)


@handler(MOVE)
def move_role(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    """A live migration within the cluster: the VM moves running when the hosts are a fabric.

    On a host that is not part of a fabric the other nodes are names: only
    the owner changes.
    """
    name = not_empty(MOVE, params, 'Name')
    node = not_empty(MOVE, params, 'Node')
    int_param(MOVE, params, 'TimeoutSeconds', 300, 1, 86400)
    _cluster(host)
    group = host.find_cluster_group(name)
    if group is None:
        raise script_error(f"Virtual machine '{name}' is not a clustered role.",
                           'ObjectNotFound', 'PsDriver.ClusterGroupNotFound', name)
    source = group.owner_node or None
    moved = False
    if (source or '').lower() != node.lower():
        try:
            _move(host, group.name, node)
        except SimError as exc:
            raise script_error(f"Live migration of '{name}' from {source} to {node} failed: "
                               f'{exc.message}', 'InvalidOperation',
                               'PsDriver.ClusterMoveFailed', name) from None
        moved = True
    record = group_record(host.get_cluster_group(group.name))
    return {**record, 'source_node': source, 'moved': moved}


def _move(host: SimHost, group: str, node: str) -> None:
    from psdriver.sim.fabric import fabric_of
    from psdriver.sim.simcluster import SimCluster
    from psdriver.sim.store import cluster_store

    fabric = fabric_of(host)
    if fabric is None or cluster_store(fabric.directory) is None:
        host.move_cluster_group(group, node)
        return
    SimCluster(fabric).move(group, node)
