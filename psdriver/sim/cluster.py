"""Failover cluster membership: a data model and the few rules clustered roles need.

This host is one node; the other nodes are names with a state.  A VM made
highly available becomes a cluster group owned by a node; a node going
Down fails its groups over to another Up node (or leaves them Failed).
"""

from __future__ import annotations

from psdriver.sim.errors import CLUSTER_EXCEPTION, SimError, invalid_argument
from psdriver.sim.iscsi import IscsiRules
from psdriver.sim.state import ClusterGroup, ClusterNode, ClusterState
from psdriver.sim.txn import reads, writes

NODE_STATES = ('Up', 'Down', 'Paused')


def _cluster_error(message: str, category: str, error_id: str, target: str) -> SimError:
    return SimError(message, category, error_id, CLUSTER_EXCEPTION, target)


class ClusterRules(IscsiRules):

    def _cluster(self) -> ClusterState:
        cluster = self._state.cluster
        if cluster is None:
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
        """Up, Down or Paused; Down fails its groups over to the first other Up node."""
        cluster = self._cluster()
        target = self._node(cluster, node)
        if state not in NODE_STATES:
            raise invalid_argument(f"'{state}' is not a cluster node state.", node)
        target.state = state
        if state == 'Down':
            survivors = [n for n in cluster.nodes if n.state == 'Up']
            for group in cluster.groups.values():
                if group.owner_node.lower() == target.name.lower():
                    if survivors:
                        group.owner_node = survivors[0].name
                    else:
                        group.state = 'Failed'
        return target

    @writes
    def add_vm_group(self, vm_name: str) -> ClusterGroup:
        """``Add-ClusterVirtualMachineRole``: the VM becomes a group owned by this node."""
        cluster = self._cluster()
        vm = self._vm(vm_name)
        if vm.name.lower() in cluster.groups:
            raise _cluster_error(f"Virtual machine '{vm.name}' is already a clustered role.",
                                 'ResourceExists', 'ClusterGroupExists', vm.name)
        group = ClusterGroup(name=vm.name, owner_node=self._state.config.hostname,
                             state='Online' if vm.state == 'Running' else 'Offline',
                             vm_name=vm.name)
        cluster.groups[vm.name.lower()] = group
        return group

    @writes
    def remove_cluster_group(self, name: str) -> None:
        cluster = self._cluster()
        group = self._group(cluster, name)
        del cluster.groups[group.name.lower()]

    @reads
    def get_cluster_group(self, name: str) -> ClusterGroup:
        return self._group(self._cluster(), name)

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
