"""Simulated hosts that see each other: a fabric.

The hosts of one fabric keep their state files in one folder, next to a
``fabric.json`` that lists the volumes they share (an SMB 3 share such as
``\\\\fs01\\instances`` or a Cluster Shared Volume such as
``C:\\ClusterStorage\\Volume1``); each host finds its peers there by hostname.
A host opened on a state file in such a folder (``SimHost(state_file=...)``,
as the driver's factory does) is a member.

What crosses hosts lives here and nowhere else:

* :meth:`Fabric.transaction` holds several hosts at once (locks taken in one
  fixed order, so two transactions never deadlock) and saves them together;
* :meth:`Fabric.resolve` turns a UNC path into the host that holds the file
  (a share another host exports, ``New-SmbShare``) or a shared volume;
* :meth:`Fabric.copy_file` copies a file (a VHD keeps its metadata) between
  any two places the source host can reach;
* :meth:`Fabric.move_vm` moves a VM record (state, uptime, disks, NICs,
  checkpoints) from one host to another atomically.

The rules of live migration, cold migration and failover build on these.

Setting one up::

    fabric = Fabric.create(tmp_dir, {'host1': {}, 'host2': {'cpu_vendor': 'AuthenticAMD'}},
                           shared_volumes={'\\\\\\\\fs01\\\\instances': 500})
    host1 = fabric.host('host1')
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
import weakref
from typing import Any, Iterable, Iterator, Mapping

from psdriver.sim import paths
from psdriver.sim.errors import IO_EXCEPTION, SimError, vm_exists
from psdriver.sim.host import SimHost
from psdriver.sim.state import GIB, FileEntry, SharedVolume, Vm, Volume
from psdriver.sim.store import (CLUSTER_FILE, FABRIC_FILE, FORMAT, FileStore, read_fabric,
                                shared_volume_store)
from psdriver.sim.storage import ACTIVE_STATES

_FABRICS: dict[str, 'Fabric'] = {}
#: In-memory hosts (no state file) joined into a fabric (weak: a host that is gone is
#: forgotten, and a new host never inherits its fabric).
_MEMORY_FABRICS: 'weakref.WeakKeyDictionary[SimHost, Fabric]' = weakref.WeakKeyDictionary()
_FABRICS_LOCK = threading.Lock()


def access_denied(path: str) -> SimError:
    return SimError(f"Access to the path '{path}' is denied.", 'PermissionDenied',
                    'UnauthorizedAccess', 'System.UnauthorizedAccessException', path)


def network_path_not_found(path: str) -> SimError:
    return SimError(f"The network path '{path}' was not found.", 'ObjectNotFound',
                    'NetworkPathNotFound', IO_EXCEPTION, path)


class Fabric:
    """The hosts whose state files share ``directory``."""

    def __init__(self, directory: str | None) -> None:
        self.directory = os.path.abspath(directory) if directory else None
        self._hosts: dict[str, SimHost] = {}
        self.shared_roots: list[str] = []
        if self.directory is None:
            return
        layout = read_fabric(self.directory)
        if layout is None:
            raise ValueError(f'{directory} holds no {FABRIC_FILE}')
        self.shared_roots = list(layout.get('shared_volumes', []))

    @classmethod
    def in_memory(cls, *hosts: SimHost) -> 'Fabric':
        """In-memory hosts that see each other (no shared volumes): for quick tests."""
        fabric = cls(None)
        for host in hosts:
            if host.state_file is not None:
                raise ValueError(f'{host!r} keeps its state in a file: use Fabric.create')
            fabric._hosts[host.hostname.lower()] = host
            _MEMORY_FABRICS[host] = fabric
        return fabric

    # -- set-up ------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str, hosts: Mapping[str, Mapping[str, Any]] | Iterable[str],
               shared_volumes: Mapping[str, float] | None = None) -> 'Fabric':
        """A new fabric: ``hosts`` (name -> SimHost capacity keywords) and shared volumes (GiB)."""
        os.makedirs(directory, exist_ok=True)
        roots = {paths.normalize(r): size for r, size in (shared_volumes or {}).items()}
        with open(os.path.join(directory, FABRIC_FILE), 'w', encoding='utf-8') as f:
            json.dump({'format': FORMAT, 'shared_volumes': sorted(roots)}, f)
        for root, size in roots.items():
            store = shared_volume_store(directory, root)
            with store.locked():
                if store.load() is None:
                    entry = FileEntry(root, True)
                    store.save(SharedVolume(volume=Volume(root=root, capacity=int(size * GIB)),
                                            files={paths.key(root): entry}))
        fabric = cls(directory)
        specs = hosts if isinstance(hosts, Mapping) else {name: {} for name in hosts}
        for name, capacity in specs.items():
            fabric._hosts[name.lower()] = SimHost(state_file=fabric.state_file(name),
                                                  hostname=name, **dict(capacity))
        return fabric

    def state_file(self, hostname: str) -> str:
        if self.directory is None:
            raise ValueError('an in-memory fabric has no state files')
        return os.path.join(self.directory, f'{hostname.lower()}.json')

    def hostnames(self) -> list[str]:
        if self.directory is None:
            return sorted(self._hosts)
        names = []
        for entry in sorted(os.listdir(self.directory)):
            if entry.endswith('.json') and entry not in (FABRIC_FILE, CLUSTER_FILE) \
                    and not entry.startswith(('shared-', '.')):
                names.append(entry[:-5])
        return names

    def host(self, hostname: str) -> SimHost:
        """The member named ``hostname`` (case-insensitive; an FQDN's first label counts)."""
        name = hostname.split('.')[0].lower()
        host = self._hosts.get(name)
        if host is None and self.directory is None:
            raise network_path_not_found(f'\\\\{hostname}')
        if host is None:
            state_file = self.state_file(name)
            if not os.path.exists(state_file):
                raise network_path_not_found(f'\\\\{hostname}')
            host = self._hosts[name] = SimHost(state_file=state_file)
        return host

    def adopt(self, host: SimHost) -> None:
        """Use this object for its host (the one a handler was given), not a second one."""
        if host.state_file is not None:
            self._hosts[os.path.basename(host.state_file)[:-5].lower()] = host

    # -- several hosts at once -----------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, *hosts: SimHost) -> Iterator[None]:
        """Hold several hosts: changes to all of them are saved together at the end.

        Locks are taken in one order whoever asks: every host (by state
        file), then every shared volume (by root); then each host's own
        transaction runs inside (their locks re-enter).  A ``SimError``
        inside keeps what was done, as a host's own transaction does.
        """
        unique = {id(h): h for h in hosts}.values()
        ordered = sorted(unique, key=lambda h: h.state_file or h._state.config.hostname.lower())
        with contextlib.ExitStack() as stack:
            volume_stores: dict[str, FileStore] = {}
            for host in ordered:
                stack.enter_context(host._lock)
                if host._store is not None:
                    stack.enter_context(FileStore.locked(host._store))
                    volume_stores.update(getattr(host._store, 'shared', {}))
            for key in sorted(volume_stores):
                stack.enter_context(volume_stores[key].locked())
            for host in ordered:
                stack.enter_context(host.transaction())
            yield

    # -- files across hosts ---------------------------------------------------------------

    def resolve(self, host: SimHost, path: str, principal: str | None = None
                ) -> tuple[SimHost, str]:
        """Where ``path`` as seen from ``host`` lives: (host holding it, its path there).

        A local path or a volume ``host`` mounts (a shared volume) stays on
        ``host``; ``\\\\peer\\share\\rest`` is the folder ``peer`` exports as
        ``share``, if ``principal`` (default: ``host``'s computer account
        ``HOST$``) has full access to it.
        """
        norm = paths.normalize(path)
        with host.transaction(write=False) as state:
            if not norm.startswith('\\\\') or \
                    paths.volume_key(state.volumes, norm) in state.volumes:
                return host, norm
            me = state.config.hostname
        server, share_name = norm[2:].split('\\')[:2]
        peer = self.host(server)
        rest = norm[len(paths.root(norm)):].lstrip('\\')
        if len(share_name) == 2 and share_name[1] == '$' and share_name[0].isalpha():
            # The administrative share of a drive (C$): administrators only, which
            # the accounts psdriver uses are.
            drive = share_name[0].upper() + ':\\'
            return peer, paths.join(drive, rest) if rest else drive
        share = peer.smb_share(share_name)
        if share is None:
            raise network_path_not_found(norm)
        who = (principal or f'{me}$').lower()
        allowed = {p.lower().split('\\')[-1] for p in share.full_access}
        if share.full_access and who.split('\\')[-1] not in allowed and 'everyone' not in allowed:
            raise access_denied(norm)
        return peer, paths.join(share.path, rest) if rest else share.path

    def is_shared(self, host: SimHost, path: str) -> bool:
        """Whether ``path`` (seen from ``host``) is on a volume several hosts see."""
        owner, local = self.resolve(host, path)
        if owner is not host:
            return True
        with host.transaction(write=False) as state:
            return paths.volume_key(state.volumes, local) in \
                {r.lower() for r in self.shared_roots}

    def copy_file(self, src_host: SimHost, source: str, dst_host: SimHost, destination: str,
                  *, overwrite: bool = False) -> FileEntry:
        """Copy a file between two places (each resolved from its own host)."""
        s_host, s_path = self.resolve(src_host, source)
        d_host, d_path = self.resolve(dst_host, destination)
        with self.transaction(s_host, d_host):
            if s_host is d_host:
                return s_host.copy_file(s_path, d_path, overwrite=overwrite)
            src = s_host.get_item(s_path)
            if src.is_dir:
                raise SimError(f"'{src.path}' is a folder; copy files only.", 'InvalidArgument',
                               'CopyFolder', IO_EXCEPTION, src.path)
            entry = d_host.add_file(d_path, src.size, vhd=copy.deepcopy(src.vhd),
                                    overwrite=overwrite)
            entry.content = src.content
            return entry

    def make_dir(self, host: SimHost, path: str) -> FileEntry:
        """``New-Item -ItemType Directory`` of a path seen from ``host`` (a UNC path too)."""
        owner, local = self.resolve(host, path)
        return owner.make_dir(local)

    # -- VMs across hosts -------------------------------------------------------------

    def move_vm(self, src_host: SimHost, name: str, dst_host: SimHost) -> Vm:
        """Move a VM record as it is (running or not) from one host to another.

        The VM keeps its id, state, uptime, drives, NICs and checkpoints; its
        console logger (a process on the source host) does not come along.
        The destination must not have a VM with that name or id and must
        have the memory of a running VM; the files the drives name must
        already be reachable there (callers move or share the disks first).
        """
        with self.transaction(src_host, dst_host):
            vm = src_host._vm(name)
            state = dst_host._state
            if vm.name.lower() in state.vms or \
                    any(v.id.lower() == vm.id.lower() for v in state.vms.values()):
                raise vm_exists(vm.name)
            if vm.state in ACTIVE_STATES and dst_host._memory_free_mb() < vm.memory_startup_mb:
                raise dst_host._out_of_memory(vm, vm.memory_startup_mb)
            for drive in vm.drives:
                if drive.path and not dst_host._entry(paths.normalize(drive.path)):
                    raise SimError(f"The virtual hard disk '{drive.path}' of '{vm.name}' is not "
                                   f'reachable on {state.config.hostname}.', 'ObjectNotFound',
                                   'VhdNotFoundOnDestination', IO_EXCEPTION, drive.path)
            moved = copy.deepcopy(vm)
            del src_host._state.vms[vm.name.lower()]
            src_host._state.console_loggers.pop(vm.id.lower(), None)
            state.vms[moved.name.lower()] = moved
            return moved


def fabric_of(host: SimHost) -> Fabric | None:
    """The fabric ``host`` belongs to (with ``host`` itself as that member), or None."""
    if host.state_file is None:
        return _MEMORY_FABRICS.get(host)
    directory = os.path.dirname(host.state_file)
    if read_fabric(directory) is None:
        return None
    with _FABRICS_LOCK:
        fabric = _FABRICS.get(directory)
        if fabric is None:
            fabric = _FABRICS[directory] = Fabric(directory)
    fabric.adopt(host)
    return fabric


__all__ = ['Fabric', 'access_denied', 'fabric_of', 'network_path_not_found']
