"""Persistence of a simulated host: a JSON file shared by several processes.

The stand-in ``pwsh`` process (one per call) and the WS-Man endpoint thread
work on the same host as the test that set it up, so the state lives in one
JSON file:

* every transaction holds an exclusive ``flock`` on ``<file>.lock``;
* writes go to a temporary file in the same directory and ``os.replace`` it,
  so a reader never sees half a file;
* a process keeps the parsed state and re-reads the file only when its
  (inode, mtime, size) changed, so a run of calls in one process costs one
  parse.

JSON objects carry a small type tag (``"$t": "Vm"``) so the dataclasses of
:mod:`psdriver.sim.state` come back as themselves.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import tempfile
import threading
from typing import Any, Iterator

from psdriver.sim import paths
from psdriver.sim.state import PERSISTED, ClusterState, FileEntry, HostState, SharedVolume

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows runs the in-memory host only
    fcntl = None  # type: ignore[assignment]

FORMAT = 1
_TAG = '$t'


def _encode(obj: Any) -> dict[str, Any]:
    name = type(obj).__name__
    if PERSISTED.get(name) is not type(obj):
        raise TypeError(f'{obj!r} cannot be stored in the simulator state')
    data = dict(obj.__dict__)
    data[_TAG] = name
    return data


def _decode(data: dict[str, Any]) -> Any:
    name = data.pop(_TAG, None)
    if name is None:
        return data
    return PERSISTED[name](**data)


def dumps(state: Any) -> str:
    return json.dumps({'format': FORMAT, 'state': state}, default=_encode,
                      ensure_ascii=False, separators=(',', ':'))


def loads(text: str, kind: type = HostState) -> Any:
    doc = json.loads(text, object_hook=_decode)
    if doc.get('format') != FORMAT:
        raise ValueError(f'unsupported simulator state format {doc.get("format")!r}')
    state = doc['state']
    if not isinstance(state, kind):
        raise ValueError(f'simulator state file does not hold a {kind.__name__}')
    return state


class FileStore:
    """Load and save one host's state in ``path`` under a file lock.

    The lock file also holds the generation of the last save: a process
    re-reads the state file only when that number moved (timestamps are too
    coarse to tell two quick saves apart).  ``kind`` is the class the file
    holds (a host, or a volume several hosts share).
    """

    def __init__(self, path: str, kind: type = HostState) -> None:
        self.path = os.path.abspath(path)
        self.lock_path = self.path + '.lock'
        self.kind = kind
        self._cache: Any = None
        self._thread_lock = threading.RLock()
        self._held = 0
        self._fd: int | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive lock (threads of this process, then other processes).

        Re-entrant for the thread that holds it (a transaction over several
        hosts takes every lock first, in a fixed order, then runs each
        host's own transaction inside).  The lock file is opened per
        transaction so that a forked child never shares an open file
        description (and so a lock) with its parent.
        """
        with self._thread_lock:
            if self._held:
                self._held += 1
                try:
                    yield
                finally:
                    self._held -= 1
                return
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._fd = fd
                self._held = 1
                yield
            finally:
                self._held = 0
                self._fd = None
                os.close(fd)  # closing releases the flock

    def _read_generation(self) -> int:
        assert self._fd is not None, 'call with the lock held'
        raw = os.pread(self._fd, 32, 0)
        try:
            return int(raw.decode('ascii').strip() or -1)
        except ValueError:
            return -1

    def _write_generation(self, generation: int) -> None:
        assert self._fd is not None, 'call with the lock held'
        data = str(generation).encode('ascii')
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))

    def load(self) -> Any:
        """The current state (call with the lock held); ``None`` if there is none yet."""
        generation = self._read_generation()
        if self._cache is not None and generation >= 0 \
                and self._cache.generation == generation:
            return self._cache
        try:
            with open(self.path, encoding='utf-8') as f:
                text = f.read()
        except FileNotFoundError:
            return None
        if not text:
            return None
        self._cache = loads(text, self.kind)
        if self._cache.generation != generation:
            self._write_generation(self._cache.generation)
        return self._cache

    def save(self, state: Any) -> None:
        """Atomically replace the file (call with the lock held)."""
        state.generation = max(state.generation, self._read_generation()) + 1
        text = dumps(state)
        directory = os.path.dirname(self.path)
        fd, tmp = tempfile.mkstemp(prefix='.simstate-', dir=directory)
        try:
            with os.fdopen(fd, 'w', encoding='utf-8') as f:
                f.write(text)
            # Bump the generation first: a crash in between only costs a re-read.
            self._write_generation(state.generation)
            os.replace(tmp, self.path)
        except BaseException:
            self._cache = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._cache = state

    def forget(self) -> None:
        """Drop the parsed copy (after a failed transaction changed it in memory)."""
        self._cache = None


# -- hosts of one fabric --------------------------------------------------------------

#: Present in a folder of state files whose hosts see each other (see psdriver.sim.fabric).
FABRIC_FILE = 'fabric.json'

_SHARED_STORES: dict[str, FileStore] = {}
_SHARED_STORES_LOCK = threading.Lock()


def read_fabric(directory: str) -> dict[str, Any] | None:
    """The fabric description of a folder of state files, ``None`` if it holds none."""
    try:
        with open(os.path.join(directory, FABRIC_FILE), encoding='utf-8') as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    if doc.get('format') != FORMAT:
        raise ValueError(f'unsupported fabric format {doc.get("format")!r}')
    return doc


def shared_volume_path(directory: str, root: str) -> str:
    """State file of one shared volume (named after its root, case-folded)."""
    digest = hashlib.sha1(root.lower().encode('utf-8')).hexdigest()[:16]
    return os.path.join(directory, f'shared-{digest}.json')


def shared_volume_store(directory: str, root: str) -> FileStore:
    """The one store object per shared volume in this process (so its lock re-enters)."""
    path = os.path.abspath(shared_volume_path(directory, root))
    with _SHARED_STORES_LOCK:
        store = _SHARED_STORES.get(path)
        if store is None:
            store = _SHARED_STORES[path] = FileStore(path, SharedVolume)
        return store


#: Present in a fabric whose hosts are the nodes of one failover cluster (psdriver.sim.simcluster).
CLUSTER_FILE = 'cluster.json'


def cluster_store(directory: str) -> FileStore | None:
    """The store of the cluster state the hosts of a fabric share; ``None`` without a cluster."""
    path = os.path.abspath(os.path.join(directory, CLUSTER_FILE))
    if not os.path.exists(path):
        return None
    with _SHARED_STORES_LOCK:
        store = _SHARED_STORES.get(path)
        if store is None:
            store = _SHARED_STORES[path] = FileStore(path, ClusterState)
        return store


def _cluster_text(cluster: ClusterState) -> str:
    return dumps(dataclasses.replace(cluster, generation=0))


class FabricHostStore(FileStore):
    """A host's store that also carries the volumes it shares with other hosts.

    Loading merges each shared volume (its capacity, usage and files) into
    the host's state; saving writes a shared volume back when this host
    changed it.  Locks are always taken host first, then the shared volumes
    in order of their root, so hosts never deadlock on them.  Two hosts
    changing the same shared volume inside one multi-host transaction is
    refused (the second would overwrite the first).
    """

    def __init__(self, path: str, shared_roots: list[str]) -> None:
        super().__init__(path)
        directory = os.path.dirname(self.path)
        self.shared = {root.lower(): shared_volume_store(directory, root)
                       for root in sorted(shared_roots, key=str.lower)}
        #: root key -> (generation, JSON of the part) as this host last saw it
        self._seen: dict[str, tuple[int, str]] = {}

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with super().locked(), contextlib.ExitStack() as stack:
            for key in sorted(self.shared):
                stack.enter_context(self.shared[key].locked())
            # The cluster state comes last: hosts, then shared volumes, then the cluster.
            cluster = cluster_store(os.path.dirname(self.path))
            if cluster is not None:
                stack.enter_context(cluster.locked())
            yield

    def load(self) -> Any:
        state = super().load()
        if state is None:
            return None
        for key, vol_store in self.shared.items():
            doc = vol_store.load()
            if doc is not None:
                self._merge(state, key, doc)
        cluster = cluster_store(os.path.dirname(self.path))
        doc = cluster.load() if cluster is not None else None
        if doc is not None:
            # Every node sees the one cluster state (the replicated cluster database).
            state.cluster = copy.deepcopy(doc)
            self._seen['$cluster'] = (doc.generation, _cluster_text(doc))
        return state

    def _merge(self, state: HostState, key: str, doc: SharedVolume) -> None:
        doc = copy.deepcopy(doc)
        for k in [k for k in state.files if k == key or paths.is_under(k, key)]:
            del state.files[k]
        state.volumes[key] = doc.volume
        state.files.update(doc.files)
        current = paths.parent(doc.volume.root)       # a CSV's mount folder needs its parents
        while current is not None and paths.key(current) not in state.files:
            state.files[paths.key(current)] = FileEntry(current, True)
            current = paths.parent(current)
        self._seen[key] = (doc.generation, self._part_text(doc))

    @staticmethod
    def _part_text(doc: SharedVolume) -> str:
        return dumps(SharedVolume(volume=doc.volume, files=doc.files))

    def save(self, state: HostState) -> None:
        for key, vol_store in self.shared.items():
            volume = state.volumes.get(key)
            if volume is None:
                continue
            part = SharedVolume(volume=volume, files={
                k: e for k, e in state.files.items() if k == key or paths.is_under(k, key)})
            text = self._part_text(part)
            generation, seen = self._seen.get(key, (-1, ''))
            if text == seen:
                continue
            current = vol_store.load()
            if current is not None and current.generation != generation:
                raise RuntimeError(f'shared volume {volume.root} was changed by another host '
                                   'in the same transaction')
            part.generation = generation
            vol_store.save(part)
            self._seen[key] = (part.generation, text)
        self._save_cluster(state)
        super().save(state)

    def _save_cluster(self, state: HostState) -> None:
        cluster = cluster_store(os.path.dirname(self.path))
        if cluster is None or state.cluster is None:
            return
        text = _cluster_text(state.cluster)
        generation, seen = self._seen.get('$cluster', (-1, ''))
        if text == seen:
            return
        current = cluster.load()
        if current is not None and current.generation != generation:
            raise RuntimeError('the cluster state was changed by another host in the same '
                               'transaction')
        state.cluster.generation = generation
        cluster.save(state.cluster)
        self._seen['$cluster'] = (state.cluster.generation, text)


def open_host_store(state_file: str) -> FileStore:
    """The store of a host's state file: fabric-aware if its folder holds a fabric."""
    layout = read_fabric(os.path.dirname(os.path.abspath(state_file)))
    if layout is None:
        return FileStore(state_file)
    return FabricHostStore(state_file, list(layout.get('shared_volumes', [])))
