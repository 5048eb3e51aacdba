"""The demo's output: plain lines, flushed as they happen, so it reads the same on a
terminal, in a pipe and in a CI log.

Each step starts with its progress counter (``[ 3/20]``) and the Nova
operation, then shows each driver call and, under it, each script the call ran
on the host with its time; it ends with what the step found, the host's view
of the VM and the step's round trips and time.  ``quiet`` keeps the failure
and the summary only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TextIO

from psdriver.bridge.client import CallRecord
from psdriver.demo import calls

_INDENT = ' ' * 8


def duration(seconds: float) -> str:
    return f'{seconds * 1000:.1f} ms' if seconds < 1 else f'{seconds:.2f} s'


def plural(count: int, word: str) -> str:
    return f'{count} {word}{"" if count == 1 else "s"}'


@dataclasses.dataclass
class StepOutcome:
    index: int
    name: str
    what: str
    round_trips: int = 0
    seconds: float = 0.0
    error: BaseException | None = None


class Report:
    def __init__(self, out: TextIO, total: int, quiet: bool = False) -> None:
        self._out = out
        self._total = total
        self._quiet = quiet

    def _line(self, text: str = '', always: bool = False) -> None:
        if always or not self._quiet:
            print(text, file=self._out, flush=True)

    # -- the run ------------------------------------------------------------------

    def intro(self, lines: list[str]) -> None:
        for line in lines:
            self._line(line)
        self._line()

    def step_started(self, index: int, name: str, what: str) -> None:
        width = len(str(self._total))
        self._line(f'[{index:>{width}}/{self._total}] {name}: {what}')

    def driver_call(self, text: str) -> None:
        self._line(f'{_INDENT}{text}')

    def script(self, record: CallRecord) -> None:
        mark = '   FAILED' if record.error is not None else ''
        self._line(f'{_INDENT}  -> {calls.script_line(record)}  '
                   f'({duration(record.seconds)}){mark}')

    def result(self, text: str) -> None:
        self._line(f'{_INDENT}= {text}')

    def host_view(self, text: str) -> None:
        self._line(f'{_INDENT}host: {text}')

    def step_done(self, outcome: StepOutcome) -> None:
        self._line(f'{_INDENT}ok: {plural(outcome.round_trips, "round trip")}, '
                   f'{duration(outcome.seconds)}')

    def step_failed(self, outcome: StepOutcome) -> None:
        if self._quiet:
            width = len(str(self._total))
            self._line(f'[{outcome.index:>{width}}/{self._total}] {outcome.name}: '
                       f'{outcome.what}', always=True)
        first, *more = describe_error(outcome.error)
        self._line(f'{_INDENT}FAILED: {first}', always=True)
        for line in more:
            self._line(f'{_INDENT}        {line}', always=True)

    def note(self, text: str, always: bool = False) -> None:
        self._line(text, always=always)

    # -- the end ------------------------------------------------------------------

    def summary(self, outcomes: list[StepOutcome], total_round_trips: int, seconds: float,
                left_overs: list[str], cleanup: list[str]) -> None:
        done = [o for o in outcomes if o.error is None]
        failed = next((o for o in outcomes if o.error is not None), None)
        self._line()
        for line in cleanup:
            self._line(line, always=True)
        status = 'FAILED' if failed or left_overs else 'OK'
        self._line(f'Summary: {status}. {len(done)} of {self._total} steps succeeded, '
                   f'{plural(total_round_trips, "host round trip")}, {duration(seconds)} '
                   'in total.', always=True)
        if failed is not None:
            self._line(f'  Step {failed.index} ({failed.name}: {failed.what}) failed: '
                       f'{one_line(failed.error)}', always=True)
        if left_overs:
            self._line('  The host is not clean: ' + '; '.join(left_overs), always=True)
        else:
            self._line('  The host is clean: no VM and no instance folder left.', always=True)


def one_line(exc: BaseException | None) -> str:
    if exc is None:
        return ''
    return f'{type(exc).__name__}: {exc}'


def describe_error(exc: BaseException | None) -> list[str]:
    """The error, then the bridge error it came from when that says more."""
    lines = [one_line(exc)]
    # errors.translate raises the Nova exception while handling the bridge's.
    cause = (exc.__cause__ or exc.__context__) if exc is not None else None
    if cause is not None and str(cause) not in str(exc):
        lines.append(f'caused by {one_line(cause)}')
    return lines


def host_view(vm: Any, name: str, folder_exists: bool) -> str:
    """The simulated host's own view of the VM (read directly, not a round trip)."""
    if vm is None:
        return f'no VM {name}; instance folder {"still there" if folder_exists else "gone"}'
    drives = ', '.join(_basename(d.path) if d.path else f'physical disk {d.disk_number}'
                       for d in vm.drives if d.path or d.disk_number is not None) or 'none'
    return f'{vm.name} {vm.state}; {plural(len(vm.nics), "NIC")}; drives: {drives}'


def _basename(path: str) -> str:
    return path.replace('/', '\\').rsplit('\\', 1)[-1]
