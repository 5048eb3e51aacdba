"""Several simulated hosts as the nodes of one failover cluster.

Each node stays a separate :class:`~psdriver.sim.host.SimHost` with its own
VMs, switches and local volumes; :class:`SimCluster` gives them what a real
cluster gives its nodes:

* one cluster state (nodes, groups, owners), the same object on every node,
  so ``Get-ClusterGroup`` answers the same wherever it runs;
* one shared volume (an SMB 3 share, ``\\\\sofs\\cluster`` by default) that
  every node sees with the same files, as a Scale-Out File Server or a
  Cluster Shared Volume would be seen;
* failover: :meth:`node_down` makes a node unreachable and moves each of
  its clustered VMs to the node the cluster picked (the VM object leaves
  the lost node and is started on the new owner, as the cluster restarts
  it there); :meth:`node_up` brings the node back and fails back what
  prefers it.

Only in-memory hosts can be nodes: the hosts share Python objects.  Every
operation of this class holds the transactions of all nodes (in a fixed
order), so a script running on one node never sees a half-done failover.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

from psdriver.sim import paths
from psdriver.sim.cluster import fail_back, fail_over
from psdriver.sim.host import SimHost
from psdriver.sim.state import GIB, ClusterNode, ClusterState, FileEntry, Volume

SHARE = '\\\\sofs\\cluster'


class _Routed(MutableMapping):
    """A host's files (or volumes): keys under the shared root live in one shared dict."""

    def __init__(self, local: dict[str, Any], shared: dict[str, Any], root_key: str) -> None:
        self.local = local
        self.shared = shared
        self._root = root_key

    def _is_shared(self, key: str) -> bool:
        return key == self._root or key.startswith(self._root + '\\')

    def _dict(self, key: str) -> dict[str, Any]:
        return self.shared if self._is_shared(key) else self.local

    def __getitem__(self, key: str) -> Any:
        return self._dict(key)[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._dict(key)[key] = value

    def __delitem__(self, key: str) -> None:
        del self._dict(key)[key]

    def __iter__(self) -> Iterator[str]:
        yield from list(self.local)
        yield from list(self.shared)

    def __len__(self) -> int:
        return len(self.local) + len(self.shared)


class SimCluster:
    """Nodes (in-memory SimHosts, named after their host names) of cluster ``name``."""

    def __init__(self, name: str, hosts: list[SimHost], share: str = SHARE,
                 share_gb: float = 4000) -> None:
        if any(h.state_file for h in hosts):
            raise ValueError('cluster nodes must be in-memory hosts')
        self.name = name
        self.share = paths.root(paths.normalize(share))
        self.hosts = {h.hostname.lower(): h for h in hosts}
        self.state = ClusterState(name=name, nodes=[ClusterNode(name=h.hostname) for h in hosts])
        share_key = self.share.lower()
        root_dir = paths.normalize(self.share)
        shared_files = {paths.key(root_dir): FileEntry(root_dir, True)}
        shared_volumes = {share_key: Volume(root=self.share, capacity=int(share_gb * GIB))}
        with self._all():
            for host in hosts:
                state = host._state
                state.files = _Routed(dict(state.files), shared_files, share_key)
                state.volumes = _Routed(dict(state.volumes), shared_volumes, share_key)
                state.cluster = self.state
                state.config.modules['FailoverClusters'] = True

    @contextlib.contextmanager
    def _all(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for key in sorted(self.hosts):
                stack.enter_context(self.hosts[key].transaction())
            yield

    def host(self, node: str) -> SimHost:
        return self.hosts[node.lower()]

    def _node(self, name: str) -> ClusterNode:
        for node in self.state.nodes:
            if node.name.lower() == name.lower():
                return node
        raise KeyError(f'{name} is not a node of cluster {self.name}')

    def owner(self, group: str) -> str:
        with self._all():
            return self.state.groups[group.lower()].owner_node

    def node_down(self, name: str) -> list[tuple[str, str]]:
        """The node stops (host unreachable); its VMs fail over.  Returns (group, new owner)."""
        with self._all():
            node = self._node(name)
            node.state = 'Down'
            lost = self.host(name)
            lost.state.faults.host_down = True
            moves = fail_over(self.state, node)
            for group, target in moves:
                self._move_vm(group.vm_name or group.name, lost, self.host(target))
            return [(g.name, t) for g, t in moves]

    def node_up(self, name: str) -> list[tuple[str, str]]:
        """The node is back; groups that prefer it and allow failback return to it."""
        with self._all():
            node = self._node(name)
            node.state = 'Up'
            back = self.host(name)
            back.state.faults.host_down = False
            sources = {g.name.lower(): g.owner_node for g in self.state.groups.values()}
            moves = fail_back(self.state, node)
            for group, _ in moves:
                self._move_vm(group.vm_name or group.name,
                              self.host(sources[group.name.lower()]), back, live=True)
            return [(g.name, t) for g, t in moves]

    def pause(self, name: str) -> None:
        """Suspend-ClusterNode: the node keeps its groups and receives no new ones."""
        with self._all():
            self._node(name).state = 'Paused'

    @staticmethod
    def _move_vm(vm_name: str, source: SimHost, target: SimHost, live: bool = False) -> None:
        """Failover restarts the VM on its new owner; failback moves it running (live)."""
        vm = source._state.vms.pop(vm_name.lower())
        source._state.console_loggers.pop(vm.id.lower(), None)
        was_running = vm.state not in ('Off', 'Saved', 'OffCritical', 'SavedCritical')
        if not live:
            # The lost node's memory is gone: the VM starts again from its disks.
            vm.state = 'Off'
            vm.started_at = None
        target._state.vms[vm.name.lower()] = vm
        if was_running and not live:
            target.start_vm(vm.name)
