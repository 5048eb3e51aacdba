"""Fault injection for reliability tests.

Faults are part of the host's state, so a fault set up by a test is seen by
the stand-in ``pwsh`` process and the WS-Man endpoint too.

* ``fail(script, message, category=...)``: the script reports that error.
* ``delay(script, seconds)``: the call takes that long (the caller's timeout
  should fire first).
* ``garbage(script)``: the script prints something that is not an envelope.
* ``host_down()`` / ``host_up()``: the host stops answering at all.

``script`` is a script name or a wildcard (``'*'``, ``'Get-*'``); ``times``
is how many calls the fault hits (``None``: every call until ``clear()``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import TYPE_CHECKING

from psdriver.sim.errors import HYPERV_EXCEPTION
from psdriver.sim.state import FaultRule

if TYPE_CHECKING:
    from psdriver.sim.host import SimHost

DEFAULT_GARBAGE = ("WARNING: The Hyper-V module could not be loaded.\r\n"
                   '{"ok": tru\x1b[0m')


@dataclasses.dataclass
class FaultHit:
    """What the faults decided for one call (see :meth:`Faults.take`)."""

    delay: float = 0.0
    outcome: FaultRule | None = None    # a fail or garbage rule, or None


class Faults:
    def __init__(self, host: SimHost) -> None:
        self._host = host

    def _add(self, rule: FaultRule) -> FaultRule:
        if rule.remaining is not None and rule.remaining < 1:
            raise ValueError('times must be at least 1 (or None for every call)')
        with self._host.transaction() as state:
            state.faults.rules.append(rule)
        return rule

    def fail(self, script: str, message: str, category: str = 'InvalidOperation',
             times: int | None = 1, *, error_id: str = 'PsDriver.InjectedFault',
             error_type: str = HYPERV_EXCEPTION, target: str = '') -> FaultRule:
        return self._add(FaultRule('fail', script, times, message=message, category=category,
                                   error_id=error_id, error_type=error_type, target=target))

    def delay(self, script: str, seconds: float, times: int | None = 1) -> FaultRule:
        if seconds < 0:
            raise ValueError('a delay cannot be negative')
        return self._add(FaultRule('delay', script, times, seconds=float(seconds)))

    def garbage(self, script: str, times: int | None = 1,
                text: str = DEFAULT_GARBAGE) -> FaultRule:
        return self._add(FaultRule('garbage', script, times, text=text))

    def host_down(self) -> None:
        with self._host.transaction() as state:
            state.faults.host_down = True

    def host_up(self) -> None:
        with self._host.transaction() as state:
            state.faults.host_down = False

    @property
    def is_down(self) -> bool:
        return self._host.state.faults.host_down

    def clear(self) -> None:
        """Remove every fault and bring the host back up."""
        with self._host.transaction() as state:
            state.faults.rules.clear()
            state.faults.host_down = False

    def pending(self) -> list[FaultRule]:
        return list(self._host.state.faults.rules)

    def take(self, script: str) -> FaultHit:
        """Consume the faults hitting one call of ``script`` (first delay, first outcome).

        Call inside a host transaction; marks it dirty only if a rule matched.
        """
        state = self._host.state
        hit = FaultHit()
        name = script.lower()
        used: list[FaultRule] = []
        for rule in state.faults.rules:
            if not fnmatch.fnmatchcase(name, rule.script.lower()):
                continue
            if rule.kind == 'delay' and not any(r.kind == 'delay' for r in used):
                hit.delay = rule.seconds
                used.append(rule)
            elif rule.kind in ('fail', 'garbage') and hit.outcome is None:
                hit.outcome = rule
                used.append(rule)
        if used:
            self._host.mark_dirty()
            for rule in used:
                if rule.remaining is not None:
                    rule.remaining -= 1
            state.faults.rules = [r for r in state.faults.rules
                                  if r.remaining is None or r.remaining > 0]
        return hit
