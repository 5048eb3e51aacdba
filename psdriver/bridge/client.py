"""Bridge: render a script, run it through a runner, parse and validate the result.

This is the one entry point the ops layer uses::

    bridge.call('Get-HostInfo', {'InstancesPath': r'C:\\OpenStack\\Instances'})

It never sees Nova objects; ops never see PowerShell text or transports.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable, Iterable

from psdriver.bridge import call as call_mod
from psdriver.bridge import contracts, envelope, errors
from psdriver.bridge.render import Renderer
from psdriver.bridge.runners import Runner

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CallRecord:
    """One host round trip, as :attr:`Bridge.observers` see it (secrets masked)."""

    name: str
    target: str
    params: dict[str, Any]
    seconds: float
    error: BaseException | None = None


class Bridge:
    def __init__(self, runner: Runner, renderer: Renderer | None = None,
                 default_timeout: float | None = None) -> None:
        self.runner = runner
        self.renderer = renderer or Renderer()
        self.default_timeout = default_timeout
        #: Number of host round trips made; the benchmarks and tests read it.
        self.round_trips = 0
        #: Called with a :class:`CallRecord` after every round trip, failed ones
        #: included (the demo prints them); an observer must not raise.
        self.observers: list[Callable[[CallRecord], None]] = []

    @property
    def target(self) -> str:
        return self.runner.target

    def call(self, name: str, params: dict[str, Any] | None = None,
             features: Iterable[str] = (), timeout: float | None = None) -> Any:
        """Run script ``name`` with ``params``; return its validated result."""
        params = dict(params or {})
        contract = contracts.load_contract(name)
        self.renderer.check_parameters(name, params)
        text = self.renderer.render(
            name, frozenset(features) | getattr(self.runner, 'features', frozenset()))
        effective_timeout = timeout or self.default_timeout or contract.timeout
        sc = call_mod.ScriptCall(
            name=name, text=text, params=params,
            document=call_mod.encode_document(params),
            timeout=effective_timeout,
            secret_params=contract.secret_parameters)
        started = time.monotonic()
        LOG.debug('Running %s on %s with %s', name, self.target, sc.loggable_params())
        self.round_trips += 1
        failure: BaseException | None = None
        try:
            raw = self.runner.run(sc)
            result = self._validated(contract, envelope.parse(raw, name, self.target))
        except BaseException as exc:
            failure = exc
            raise
        finally:
            seconds = time.monotonic() - started
            LOG.debug('%s on %s took %.3fs', name, self.target, seconds)
            if self.observers:
                record = CallRecord(name, self.target, sc.loggable_params(), seconds, failure)
                for observer in list(self.observers):
                    observer(record)
        return result

    def _validated(self, contract: contracts.Contract, result: Any) -> Any:
        try:
            contract.validate(result)
        except contracts.ShapeError as exc:
            raise errors.BridgeBadOutput(
                contract.script, self.target,
                f'result breaks the declared shape at {exc.where()}: {exc.message}') from None
        except RecursionError:
            raise errors.BridgeBadOutput(contract.script, self.target,
                                         'result is nested too deeply to validate') from None
        return result

    def close(self) -> None:
        self.runner.close()
