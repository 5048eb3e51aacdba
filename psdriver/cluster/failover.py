"""The failover watcher: notices VM groups changing owner node and hands them to ClusterOps.

Every ``[hyperv] cluster_event_check_interval`` seconds one
``Get-ClusterInstanceState`` call reads the owner of every VM group of the
cluster, however many.  A group whose owner became this node is taken over
(:meth:`ClusterOps.take_over`); one that left this node is released.  The
first poll, made by ``init_host`` before the service takes requests, is the
reclaim: every group this node owns whose instance Nova still places on
another host is taken over, which covers failovers that happened while the
service was stopped.  A take-over that fails (the lock backend is away,
Nova's database is unreachable) is tried again at the next poll; the lock
and the host check inside it make sure each failover is recorded once.
"""

from __future__ import annotations

import threading
from typing import Any

from oslo_log import log as logging

from psdriver.cluster.clusterops import ClusterOps, ClusterView, same_host

LOG = logging.getLogger(__name__)

THREAD_NAME = 'psdriver-failover'


class FailoverWatcher:
    def __init__(self, clusterops: ClusterOps, interval: float) -> None:
        self._ops = clusterops
        self._interval = max(float(interval), 0.2)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Owner of each VM group at the last poll (lower-case group name -> node).
        self._owners: dict[str, str | None] | None = None
        #: Groups owned here that still wait for their take-over (lower-case names).
        self._pending: set[str] = set()
        #: UUIDs of the instances this node had, by lower-case VM name (for releases).
        self._uuids: dict[str, str] = {}

    @property
    def host(self) -> str | None:
        return self._ops.host

    def reclaim(self, view: ClusterView | None = None) -> int:
        """First poll: take over every group owned here that Nova places elsewhere."""
        view = view or self._ops.view()
        mine = {name for name, owner in view.owners.items() if same_host(owner, self.host)}
        self._owners = dict(view.owners)
        self._pending = set(mine)
        if not mine:
            return 0
        local = self._ops.local_uuids()
        self._uuids = {name: uuid for name, uuid in local.items() if name in mine}
        return self._take_over_pending(local)

    def poll_once(self) -> int:
        """One poll; returns how many failovers this node recorded in Nova."""
        if self._owners is None:
            return self.reclaim()
        view = self._ops.view()
        before, self._owners = self._owners, dict(view.owners)
        lost = []
        for name, owner in view.owners.items():
            # A role created here since the last poll was this node's, even if unseen.
            previous = before.get(name, self.host if name in self._uuids else None)
            if same_host(owner, previous) or (owner is None and previous is None):
                continue
            if same_host(owner, self.host):
                self._pending.add(name)
            elif same_host(previous, self.host):
                lost.append(name)
        self._pending &= {n for n, o in view.owners.items() if same_host(o, self.host)}
        for name in lost:
            uuid = self._uuids.pop(name, None)
            if uuid is not None:
                self._ops.release(name, uuid)
        return self._take_over_pending()

    def _take_over_pending(self, local: dict[str, str] | None = None) -> int:
        if not self._pending:
            return 0
        if local is None:
            local = self._ops.local_uuids()
        self._uuids.update({n: u for n, u in local.items() if n in self._pending})
        done = 0
        for name in sorted(self._pending):
            if self._stop.is_set():
                break
            uuid = local.get(name)
            if uuid is None:
                # Not a Nova VM (no instance UUID in its notes), or not registered here yet.
                self._pending.discard(name)
                continue
            try:
                if self._ops.take_over(name, uuid):
                    done += 1
            except Exception as exc:   # keep it pending: the next poll tries again
                LOG.error('Failover of %s to this node not recorded yet, retrying at the next '
                          'poll: %s', name, exc)
                continue
            self._pending.discard(name)
        return done

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll_once()
            except Exception:   # a host or database hiccup must not end the watcher
                LOG.warning('Cluster failover poll failed', exc_info=True)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self, wait: float = 0.0) -> None:
        """Stop polling; a poll under way finishes on its own (``wait``: seconds to join it).

        nova-compute calls ``cleanup_host`` in its graceful shutdown and then
        shuts its thread pools down: blocking here on a poll (a host call, a
        lock, a database update) would only delay that.
        """
        self._stop.set()
        if self._thread is not None:
            if wait:
                self._thread.join(timeout=wait)
            self._thread = None

    def remember(self, name: str, instance_uuid: str) -> None:
        """A VM of this node (spawned or migrated here): released by name if it leaves."""
        self._uuids[name.lower()] = instance_uuid

    def snapshot(self) -> dict[str, Any]:
        return {'owners': dict(self._owners or {}), 'pending': sorted(self._pending)}
