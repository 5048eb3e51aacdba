"""Lifecycle events: tell Nova when a VM changes power state behind its back.

compute-hyperv listened to WMI events; psdriver polls one Get-InstanceSummary
every ``[hyperv] power_state_event_polling_interval`` seconds and emits a
``LifecycleEvent`` for each Nova VM whose state moved.  Only started when
``[workarounds] handle_virt_lifecycle_events`` is on (cluster deployments
usually turn it off).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from nova.virt import event as virtevent
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

#: Hyper-V state a VM settled in -> the transition Nova is told about.
TRANSITIONS = {
    'Running': virtevent.EVENT_LIFECYCLE_STARTED,
    'Off': virtevent.EVENT_LIFECYCLE_STOPPED,
    'Paused': virtevent.EVENT_LIFECYCLE_PAUSED,
    'Saved': virtevent.EVENT_LIFECYCLE_SUSPENDED,
}


def transitions(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, int]]:
    """(uuid, transition) for every VM whose settled state changed between two polls.

    A VM going from Paused to Running was resumed; VMs that appear or vanish
    are not events (spawn and destroy are Nova's own doing).
    """
    events = []
    for uuid, state in after.items():
        old = before.get(uuid)
        if old is None or old == state or state not in TRANSITIONS:
            continue
        transition = TRANSITIONS[state]
        if state == 'Running' and old in ('Paused', 'Pausing', 'Resuming'):
            transition = virtevent.EVENT_LIFECYCLE_RESUMED
        events.append((uuid, transition))
    return events


class LifecycleEventPoller:
    def __init__(self, snapshot: Callable[[], dict[str, dict[str, Any]]],
                 emit: Callable[[virtevent.Event], None], interval: float) -> None:
        self._snapshot = snapshot
        self._emit = emit
        self._interval = max(float(interval), 0.5)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._states: dict[str, str] | None = None

    def poll_once(self) -> int:
        """One poll; returns how many events were emitted."""
        states = {uuid: vm['state'] for uuid, vm in self._snapshot().items()}
        before, self._states = self._states, states
        if before is None:
            return 0
        count = 0
        for uuid, transition in transitions(before, states):
            self._emit(virtevent.LifecycleEvent(uuid, transition))
            count += 1
        return count

    def _run(self) -> None:
        # The first poll is the baseline, taken at once: a change in the first
        # interval after start is an event too.
        while True:
            try:
                self.poll_once()
            except Exception:   # keep polling: a host hiccup must not end events for good
                LOG.warning('Lifecycle event poll failed', exc_info=True)
            if self._stop.wait(self._interval):
                return

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name='psdriver-lifecycle',
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 5)
            self._thread = None
