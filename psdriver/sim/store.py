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
import json
import os
import tempfile
import threading
from typing import Any, Iterator

from psdriver.sim.state import PERSISTED, HostState

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


def dumps(state: HostState) -> str:
    return json.dumps({'format': FORMAT, 'state': state}, default=_encode,
                      ensure_ascii=False, separators=(',', ':'))


def loads(text: str) -> HostState:
    doc = json.loads(text, object_hook=_decode)
    if doc.get('format') != FORMAT:
        raise ValueError(f'unsupported simulator state format {doc.get("format")!r}')
    state = doc['state']
    if not isinstance(state, HostState):
        raise ValueError('simulator state file does not hold a host')
    return state


class FileStore:
    """Load and save one host's state in ``path`` under a file lock.

    The lock file also holds the generation of the last save: a process
    re-reads the state file only when that number moved (timestamps are too
    coarse to tell two quick saves apart).
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.lock_path = self.path + '.lock'
        self._cache: HostState | None = None
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive lock (threads of this process, then other processes).

        The lock file is opened per transaction so that a forked child never
        shares an open file description (and so a lock) with its parent.
        """
        with self._thread_lock:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._fd = fd
                yield
            finally:
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

    def load(self) -> HostState | None:
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
        self._cache = loads(text)
        if self._cache.generation != generation:
            self._write_generation(self._cache.generation)
        return self._cache

    def save(self, state: HostState) -> None:
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
