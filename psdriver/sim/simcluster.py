"""The hosts of a fabric as the nodes of one failover cluster.

Built on :mod:`psdriver.sim.fabric`: each node stays a separate simulated
host (its own state file, VMs, switches and local disks) and the nodes see
the fabric's shared volumes (a Cluster Shared Volume or an SMB 3 share).
What the cluster adds:

* one cluster state (nodes, groups, owners, failover policy), kept in the
  fabric folder (``cluster.json``) and loaded into every node's state by
  its store, as the cluster database is replicated to every node: the
  cluster cmdlets answer the same on every node;
* :meth:`SimCluster.node_down`: the node stops answering, and each of its
  clustered VMs moves (:meth:`Fabric.move_vm`) to the node the cluster
  picks and starts again there from its disks, or is left Failed past its
  FailoverThreshold;
* :meth:`SimCluster.node_up`: the node answers again and takes back the
  groups that prefer it and allow failback (moved running);
* :meth:`SimCluster.pause`: a Paused node keeps its groups, receives none.

Setting one up::

    fabric = Fabric.create(tmp, ['host1', 'host2', 'host3'],
                           shared_volumes={'C:\\\\ClusterStorage\\\\Volume1': 500})
    cluster = SimCluster.create(fabric, 'hvcluster')
"""

from __future__ import annotations

import os

from psdriver.sim.cluster import fail_back, fail_over
from psdriver.sim.errors import CLUSTER_EXCEPTION, SimError
from psdriver.sim.fabric import Fabric
from psdriver.sim.host import SimHost
from psdriver.sim.state import ClusterNode, ClusterState
from psdriver.sim.store import CLUSTER_FILE, FileStore, cluster_store


class SimCluster:
    """The failover cluster formed by (some of) the hosts of ``fabric``."""

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        if cluster_store(fabric.directory) is None:
            raise ValueError(f'{fabric.directory} holds no {CLUSTER_FILE}')

    @classmethod
    def create(cls, fabric: Fabric, name: str, nodes: list[str] | None = None) -> SimCluster:
        """Form cluster ``name`` of ``nodes`` (default: every host of the fabric)."""
        names = [fabric.host(n).hostname for n in (nodes or fabric.hostnames())]
        path = os.path.join(fabric.directory, CLUSTER_FILE)
        if os.path.exists(path):
            raise ValueError(f'{fabric.directory} already holds a cluster')
        store = FileStore(path, ClusterState)
        with store.locked():
            store.save(ClusterState(name=name, nodes=[ClusterNode(name=n) for n in names]))
        hosts = [fabric.host(n) for n in names]
        with fabric.transaction(*hosts):
            for host in hosts:
                host._state.config.modules['FailoverClusters'] = True
        return cls(fabric)

    def state(self) -> ClusterState:
        """A snapshot of the cluster state."""
        store = cluster_store(self.fabric.directory)
        with store.locked():
            return store.load()

    def hosts(self) -> list[SimHost]:
        """The nodes, as hosts of the fabric."""
        return [self.fabric.host(n.name) for n in self.state().nodes]

    def owner(self, group: str) -> str:
        return self.state().groups[group.lower()].owner_node

    def node_down(self, name: str) -> list[tuple[str, str]]:
        """The node is lost: its VMs restart on other nodes.  Returns (group, new owner)."""
        hosts = self.hosts()
        lost = self.fabric.host(name)
        with self.fabric.transaction(*hosts):
            keeper = next(h for h in hosts if h is not lost)
            cluster = keeper._state.cluster
            node = self._node(cluster, name)
            node.state = 'Down'
            lost._state.faults.host_down = True
            moves = fail_over(cluster, node)
            for group, target in moves:
                self._restart_on(lost, group.vm_name or group.name, self.fabric.host(target))
            return [(g.name, t) for g, t in moves]

    def node_up(self, name: str) -> list[tuple[str, str]]:
        """The node is back; groups that prefer it and allow failback return to it running."""
        hosts = self.hosts()
        back = self.fabric.host(name)
        with self.fabric.transaction(*hosts):
            keeper = next(h for h in hosts if h is not back)
            cluster = keeper._state.cluster
            node = self._node(cluster, name)
            node.state = 'Up'
            back._state.faults.host_down = False
            owners = {g.name.lower(): g.owner_node for g in cluster.groups.values()}
            moves = fail_back(cluster, node)
            for group, _ in moves:
                source = self.fabric.host(owners[group.name.lower()])
                self.fabric.move_vm(source, group.vm_name or group.name, back)
            return [(g.name, t) for g, t in moves]

    def move(self, group: str, node: str) -> None:
        """``Move-ClusterVirtualMachineRole -Node``: a planned move, the VM stays running."""
        hosts = self.hosts()
        with self.fabric.transaction(*hosts):
            keeper = hosts[0]
            source = self.fabric.host(keeper.get_cluster_group(group).owner_node)
            target = self.fabric.host(node)
            if target._state.faults.host_down:
                raise SimError(f"The cluster node '{node}' is Down; a group can only move to a "
                               'node that is Up.', 'InvalidOperation', 'ClusterNodeNotUp',
                               CLUSTER_EXCEPTION, node)
            moved = keeper.move_cluster_group(group, node)
            self.fabric.move_vm(source, moved.vm_name or moved.name, target)

    def pause(self, name: str) -> None:
        """``Suspend-ClusterNode``: the node keeps its groups and receives no new ones."""
        host = self.fabric.host(name)
        host.set_node_state(name, 'Paused')

    @staticmethod
    def _node(cluster: ClusterState, name: str) -> ClusterNode:
        for node in cluster.nodes:
            if node.name.lower() == name.lower():
                return node
        raise KeyError(f'{name} is not a node of cluster {cluster.name}')

    def _restart_on(self, lost: SimHost, vm_name: str, target: SimHost) -> None:
        """The lost node's memory is gone: the VM moves and boots again from its disks."""
        vm = lost._vm(vm_name)
        was_running = vm.state not in ('Off', 'Saved', 'OffCritical', 'SavedCritical')
        vm.state = 'Off'
        vm.started_at = None
        self.fabric.move_vm(lost, vm_name, target)
        if was_running:
            target.start_vm(vm_name)
