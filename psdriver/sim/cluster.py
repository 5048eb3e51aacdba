"""Failover cluster membership: a data model and the few rules clustered roles need.

This host is one node; the other nodes are names with a state.  A VM made
highly available becomes a cluster group owned by a node.  A node going
Down fails its groups over to another Up node, unless a group has used up
its FailoverThreshold within FailoverPeriod hours: then it is left Failed,
as a real cluster does.  A node coming back Up takes back the groups that
prefer it and allow failback (AutoFailbackType = 1).  Paused nodes keep
their groups and receive none.
"""

from __future__ import annotations

import time

from psdriver.sim.errors import CLUSTER_EXCEPTION, SimError, invalid_argument
from psdriver.sim.iscsi import IscsiRules
from psdriver.sim.state import ClusterGroup, ClusterNode, ClusterState
from psdriver.sim.txn import reads, writes

NODE_STATES = ('Up', 'Down', 'Paused')
HOUR = 3600.0


def _cluster_error(message: str, category: str, error_id: str, target: str) -> SimError:
    return SimError(message, category, error_id, CLUSTER_EXCEPTION, target)


def fail_over(cluster: ClusterState, lost: ClusterNode) -> list[tuple[ClusterGroup, str]]:
    """The cluster's reaction to ``lost`` going Down: (group, new owner) of each move.

    The groups are spread over the Up nodes, least loaded first; a group
    that already failed over FailoverThreshold times within FailoverPeriod
    hours, or that has no Up node to go to, is left Failed.
    """
    now = time.time()
    survivors = [n for n in cluster.nodes if n.state == 'Up']
    load = {n.name: sum(1 for g in cluster.groups.values() if g.owner_node == n.name)
            for n in survivors}
    moves = []
    for group in sorted(cluster.groups.values(), key=lambda g: g.name.lower()):
        if group.owner_node.lower() != lost.name.lower():
            continue
        recent = [t for t in group.failover_times if now - t < group.failover_period * HOUR]
        if not survivors or len(recent) >= group.failover_threshold:
            group.state = 'Failed'
            group.failover_times = recent
            continue
        target = min(survivors, key=lambda n: (load[n.name], n.name.lower()))
        load[target.name] += 1
        group.owner_node = target.name
        group.failover_times = [*recent, now]
        moves.append((group, target.name))
    return moves


def fail_back(cluster: ClusterState, back: ClusterNode) -> list[tuple[ClusterGroup, str]]:
    """Groups that allow failback and prefer ``back`` (first Up preferred owner) return to it."""
    moves = []
    for group in cluster.groups.values():
        up = [o for o in group.preferred_owners
              if any(n.name.lower() == o.lower() and n.state == 'Up' for n in cluster.nodes)]
        if (group.auto_failback_type == 1 and up and up[0].lower() == back.name.lower()
                and group.owner_node.lower() != back.name.lower()):
            group.owner_node = back.name
            if group.state == 'Failed':
                group.state = 'Offline'
            moves.append((group, back.name))
    return moves


class ClusterRules(IscsiRules):

    def _cluster(self) -> ClusterState:
        cluster = self._state.cluster
        if cluster is None or not self._state.config.modules.get('FailoverClusters'):
            raise _cluster_error(
                f"The cluster service is not running on node '{self._state.config.hostname}'.",
                'ObjectNotFound', 'ClusterNotFound', self._state.config.hostname)
        return cluster

    def _node(self, cluster: ClusterState, name: str) -> ClusterNode:
        for node in cluster.nodes:
            if node.name.lower() == str(name).lower():
                return node
        raise _cluster_error(f"The cluster node '{name}' was not found.", 'ObjectNotFound',
                             'ClusterNodeNotFound', str(name))

    def _group(self, cluster: ClusterState, name: str) -> ClusterGroup:
        group = cluster.groups.get(str(name).lower())
        if group is None:
            raise _cluster_error(f"The cluster group '{name}' was not found.", 'ObjectNotFound',
                                 'ClusterGroupNotFound', str(name))
        return group

    @writes
    def create_cluster(self, name: str, other_nodes: list[str] = ()) -> ClusterState:
        """Make this host a node of cluster ``name`` together with ``other_nodes``."""
        if self._state.cluster is not None:
            raise _cluster_error(f"This host already belongs to cluster "
                                 f"'{self._state.cluster.name}'.", 'ResourceExists',
                                 'ClusterExists', name)
        names = [self._state.config.hostname, *other_nodes]
        if len({n.lower() for n in names}) != len(names):
            raise invalid_argument('Cluster node names must be unique.', name)
        self._state.cluster = ClusterState(name=name,
                                           nodes=[ClusterNode(name=n) for n in names])
        self._state.config.modules['FailoverClusters'] = True
        return self._state.cluster

    @reads
    def cluster(self) -> ClusterState:
        return self._cluster()

    @writes
    def set_node_state(self, node: str, state: str) -> ClusterNode:
        """Up, Down or Paused; Down fails its groups over, Up takes back what fails back."""
        cluster = self._cluster()
        target = self._node(cluster, node)
        if state not in NODE_STATES:
            raise invalid_argument(f"'{state}' is not a cluster node state.", node)
        target.state = state
        # On one host the other nodes are names: their groups move, no VM does
        # (psdriver.sim.simcluster moves the VMs between the hosts of a cluster).
        if state == 'Down':
            fail_over(cluster, target)
        elif state == 'Up':
            fail_back(cluster, target)
        return target

    @writes
    def add_vm_group(self, vm_name: str, group_name: str | None = None) -> ClusterGroup:
        """``Add-ClusterVirtualMachineRole``: the VM becomes a group owned by this node."""
        cluster = self._cluster()
        vm = self._vm(vm_name)
        name = group_name or vm.name
        if name.lower() in cluster.groups or any(
                g.vm_name and g.vm_name.lower() == vm.name.lower()
                for g in cluster.groups.values()):
            raise _cluster_error(f"Virtual machine '{vm.name}' is already a clustered role.",
                                 'ResourceExists', 'ClusterGroupExists', vm.name)
        group = ClusterGroup(name=name, owner_node=self._state.config.hostname,
                             state='Online' if vm.state == 'Running' else 'Offline',
                             vm_name=vm.name)
        cluster.groups[name.lower()] = group
        return group

    @writes
    def set_group_policy(self, name: str, failover_threshold: int, failover_period: int,
                         auto_failback_type: int, persistent_state: int) -> ClusterGroup:
        """The ClusterGroup property setters the scripts use."""
        group = self._group(self._cluster(), name)
        for field_name, value in (('FailoverThreshold', failover_threshold),
                                  ('FailoverPeriod', failover_period),
                                  ('AutoFailbackType', auto_failback_type),
                                  ('PersistentState', persistent_state)):
            if not 0 <= int(value) <= 4294967295:
                raise invalid_argument(f'{field_name} must be a 32-bit unsigned value.', name)
        if auto_failback_type not in (0, 1):
            raise invalid_argument('AutoFailbackType is 0 (Prevent) or 1 (Allow).', name)
        group.failover_threshold = int(failover_threshold)
        group.failover_period = int(failover_period)
        group.auto_failback_type = int(auto_failback_type)
        group.persistent_state = int(persistent_state)
        return group

    @writes
    def set_preferred_owners(self, name: str, owners: list[str]) -> ClusterGroup:
        """``Set-ClusterOwnerNode -Group``: every owner must be a node of the cluster."""
        cluster = self._cluster()
        group = self._group(cluster, name)
        group.preferred_owners = [self._node(cluster, o).name for o in owners]
        return group

    @writes
    def remove_cluster_group(self, name: str) -> None:
        cluster = self._cluster()
        group = self._group(cluster, name)
        del cluster.groups[group.name.lower()]

    @reads
    def get_cluster_group(self, name: str) -> ClusterGroup:
        return self._group(self._cluster(), name)

    @reads
    def find_cluster_group(self, name: str) -> ClusterGroup | None:
        return self._cluster().groups.get(str(name).lower())

    @writes
    def move_cluster_group(self, name: str, node: str) -> ClusterGroup:
        """``Move-ClusterVirtualMachineRole``: the target node must be Up."""
        cluster = self._cluster()
        group = self._group(cluster, name)
        target = self._node(cluster, node)
        if target.state != 'Up':
            raise _cluster_error(f"The cluster node '{target.name}' is {target.state}; a group "
                                 'can only move to a node that is Up.', 'InvalidOperation',
                                 'ClusterNodeNotUp', target.name)
        group.owner_node = target.name
        if group.state == 'Failed':
            group.state = 'Offline'
        return group
