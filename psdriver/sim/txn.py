"""Transactions over a host's state, shared by every rule module.

Each public rule method of :class:`~psdriver.sim.host.SimHost` is wrapped in
:func:`writes` or :func:`reads`.  The outermost call takes the host's lock
(and, with a state file, the file lock), loads the latest state, runs, and
saves if anything was written.  Nested calls just run, so a handler that
calls ten rule methods costs one load and one save.

Rule methods validate first and change state last, so a :class:`SimError`
leaves the host as it was for that method (like a cmdlet that refused).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, Iterator, TypeVar

from psdriver.sim.errors import SimError
from psdriver.sim.state import HostState
from psdriver.sim.store import FileStore

F = TypeVar('F', bound=Callable[..., Any])


class HostBase:
    """State holder and transaction machinery (no Hyper-V rules here)."""

    _state: HostState
    _store: FileStore | None

    def _init_txn(self, store: FileStore | None) -> None:
        self._store = store
        self._lock = threading.RLock()
        self._depth = 0
        self._dirty = False

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[HostState]:
        """Run a block against the latest state; save it afterwards if ``write``.

        Nested transactions join the outer one.  A ``SimError`` still saves
        what was written before it (a script that failed half-way leaves
        what it did); any other exception is a bug and drops the changes
        from the state file.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                self._dirty = self._dirty or write
                try:
                    yield self._state
                finally:
                    self._depth -= 1
                return
            with self._store.locked() if self._store else contextlib.nullcontext():
                if self._store:
                    loaded = self._store.load()
                    if loaded is not None:
                        self._state = loaded
                self._depth = 1
                self._dirty = write
                failed = False
                try:
                    yield self._state
                except SimError:
                    raise
                except BaseException:
                    failed = True
                    raise
                finally:
                    self._depth = 0
                    if self._store:
                        if failed:
                            self._store.forget()
                        elif self._dirty:
                            self._store.save(self._state)
                    self._dirty = False

    def mark_dirty(self) -> None:
        """Record that the running transaction changed the state."""
        self._dirty = True

    @property
    def state(self) -> HostState:
        """The latest state (re-read from the state file if another process moved it).

        Read fields through this inside a transaction; outside one it is a
        snapshot that may already be stale.
        """
        with self.transaction(write=False) as state:
            return state


def writes(fn: F) -> F:
    """Run the method in a write transaction."""
    @functools.wraps(fn)
    def wrapper(self: HostBase, *args: Any, **kwargs: Any) -> Any:
        with self.transaction(write=True):
            return fn(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]


def reads(fn: F) -> F:
    """Run the method in a read transaction (latest state, never saved)."""
    @functools.wraps(fn)
    def wrapper(self: HostBase, *args: Any, **kwargs: Any) -> Any:
        with self.transaction(write=False):
            return fn(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]
