"""The simulated Hyper-V host: state, persistence and every rule, in one object.

``SimHost()`` is an in-memory host; ``SimHost(state_file=path)`` keeps the
host in a JSON file that other processes open with the same path (the
stand-in ``pwsh`` process, the WS-Man endpoint).  Keyword arguments override
the default capacity (see :class:`~psdriver.sim.state.HostConfig`); they are
applied when the file is created and checked against an existing file.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from psdriver.sim import paths
from psdriver.sim.faults import Faults
from psdriver.sim.migration import MigrationRules
from psdriver.sim.shielding import ShieldingRules
from psdriver.sim.state import GIB, FileEntry, HostConfig, HostState, SmbShare, Switch, Volume
from psdriver.sim.store import dumps, open_host_store
from psdriver.sim.txn import reads


def _check_config(cfg: HostConfig) -> None:
    per_core = cfg.sockets * cfg.threads_per_core
    if cfg.logical_processors < 1 or cfg.logical_processors % per_core:
        raise ValueError(f'logical_processors={cfg.logical_processors} is not a multiple of '
                         f'sockets x threads_per_core = {per_core}')
    if cfg.numa_nodes < 1 or cfg.logical_processors % cfg.numa_nodes:
        raise ValueError('logical_processors must divide evenly between the NUMA nodes')
    if cfg.memory_mb <= cfg.host_reserved_memory_mb:
        raise ValueError('memory_mb must exceed host_reserved_memory_mb')
    if cfg.disk_gb <= 0:
        raise ValueError('disk_gb must be positive')


def new_state(cfg: HostConfig) -> HostState:
    """A freshly installed host: its volumes, the instances folder, its switches."""
    now = time.time()
    state = HostState(config=cfg, boot_time=now - 3 * 86400)
    instances = paths.normalize(cfg.instances_path)
    cfg.instances_path = instances
    volumes = {paths.root(instances): cfg.disk_gb}
    for root, size in cfg.extra_volumes.items():
        volumes.setdefault(paths.root(paths.normalize(root)), size)
    for root, size in volumes.items():
        state.volumes[root.lower()] = Volume(root=root, capacity=int(size * GIB))
        root_dir = paths.normalize(root)
        state.files[paths.key(root_dir)] = FileEntry(root_dir, True, created=now)
    current: str | None = instances
    while current is not None and paths.key(current) not in state.files:
        state.files[paths.key(current)] = FileEntry(current, True, created=now)
        current = paths.parent(current)
    for name, folder in cfg.smb_shares.items():
        state.smb_shares[name.lower()] = SmbShare(name=name, path=paths.normalize(folder))
    if cfg.ovs_vsctl:
        state.ovs_bridges = list(cfg.ovs_bridges)
    for index, (name, kind) in enumerate(cfg.switches.items()):
        state.switches[name.lower()] = Switch(
            name=name, switch_type=kind, id=f'00000000-0000-4000-8000-{index + 1:012d}')
    return state


class SimHost(ShieldingRules, MigrationRules):
    """One simulated Hyper-V host.  See the rule modules for what it enforces."""

    def __init__(self, state_file: str | None = None, *, reset: bool = False,
                 **capacity: Any) -> None:
        config = HostConfig(**capacity)
        config.instances_path = paths.normalize(config.instances_path)
        _check_config(config)
        store = open_host_store(state_file) if state_file else None
        self._init_txn(store)
        self.faults = Faults(self)
        if store is None:
            self._state = new_state(config)
            return
        with store.locked():
            existing = None if reset else store.load()
            if existing is None:
                self._state = new_state(config)
                store.save(self._state)
                return
            for name in capacity:
                have, want = getattr(existing.config, name), getattr(config, name)
                if have != want:
                    raise ValueError(f'{state_file} holds a host with {name}={have!r}, not '
                                     f'{want!r}; pass reset=True to start over')
            self._state = existing

    @property
    def state_file(self) -> str | None:
        return self._store.path if self._store else None

    @property
    def hostname(self) -> str:
        return self.state.config.hostname

    @property
    def config(self) -> HostConfig:
        return self.state.config

    @reads
    def uptime_seconds(self) -> int:
        return int(time.time() - self._state.boot_time)

    @reads
    def disk_usage(self, path: str) -> dict[str, Any]:
        """``exists``, ``total`` and ``free`` bytes of the volume holding ``path``."""
        norm = paths.normalize(path)
        vol = self._volume(norm)
        return {'path': norm, 'exists': self._entry(norm) is not None,
                'total': vol.capacity, 'free': vol.capacity - vol.used}

    @reads
    def dump(self) -> str:
        """The whole state as JSON (tests compare two of these)."""
        return dumps(self._state)

    @reads
    def check_consistency(self) -> None:
        """Assert the bookkeeping holds (volume usage = sum of its files)."""
        used: dict[str, int] = {}
        for entry in self._state.files.values():
            root = paths.volume_key(self._state.volumes, entry.path)
            used[root] = used.get(root, 0) + (0 if entry.is_dir else entry.size)
        for key, vol in self._state.volumes.items():
            if used.get(key, 0) != vol.used:
                raise AssertionError(f'volume {vol.root} records {vol.used} bytes used, its '
                                     f'files take {used.get(key, 0)}')

    def __repr__(self) -> str:
        where = self.state_file or 'memory'
        return f'<SimHost {self._state.config.hostname} ({where})>'


def config_fields() -> list[str]:
    """Names accepted as ``SimHost(**capacity)`` keywords."""
    return [f.name for f in dataclasses.fields(HostConfig)]
