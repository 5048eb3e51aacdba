"""Run a rendered script on the simulated host: the path every double shares.

``execute_rendered(text, document, host)`` does what the wrapper does on a
real host, minus PowerShell: it reads the script name from the first line
(``# psdriver-script: <Name>``), decodes the input document, binds its values
against the standalone script's ``param()`` block, applies injected faults,
runs the handler registered for the name and prints the envelope.

Handlers live in :mod:`psdriver.sim.handlers` (every module there is
imported on first use)::

    @handler('Get-VMState', readonly=True)
    def get_vm_state(host, params):
        return {'state': host.get_vm(params['Name']).state}

    @prepare('Get-VMState')
    def _(host, params):            # shape tests: make the example's VM exist
        host.create_vm(params['Name'])

A :class:`SimError` from a handler becomes the error envelope; any other
exception is a simulator bug and propagates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import os
import pkgutil
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

from psdriver.bridge import envelope
from psdriver.bridge.call import decode_document
from psdriver.bridge.scripts_dir import scripts_dir
from psdriver.sim.errors import (
    PARAMETER_BINDING_EXCEPTION, SimError, SimHostDown, SimTimeout)
from psdriver.bridge.script_params import ScriptParam, script_parameters

HandlerFunc = Callable[[Any, dict[str, Any]], Any]
PrepareFunc = Callable[[Any, dict[str, Any]], None]

_FIRST_LINE = re.compile(r'^\ufeff?#\s*psdriver-script:\s*(?P<name>[A-Za-z]+-[A-Za-z0-9]+)\s*$')


@dataclasses.dataclass
class Handler:
    name: str
    func: HandlerFunc
    #: Read-only handlers never save the state file (cheaper with many VMs).
    readonly: bool = False
    prepare: PrepareFunc | None = None
    #: Runs on several hosts: the handler takes its own fabric transaction
    #: (psdriver.sim.fabric), which locks every host in one order.
    crosses_hosts: bool = False


_HANDLERS: dict[str, Handler] = {}
_PREPARES: dict[str, PrepareFunc] = {}
_loaded = False
_load_lock = threading.Lock()


def handler(name: str, *, readonly: bool = False,
            crosses_hosts: bool = False) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register ``func(host, params) -> result`` as the simulation of script ``name``."""
    def register(func: HandlerFunc) -> HandlerFunc:
        if name in _HANDLERS and _HANDLERS[name].func is not func:
            raise ValueError(f'two simulator handlers for {name}')
        _HANDLERS[name] = Handler(name, func, readonly, _PREPARES.get(name), crosses_hosts)
        return func
    return register


def prepare(name: str) -> Callable[[PrepareFunc], PrepareFunc]:
    """Register the set-up that makes a contract example of ``name`` meaningful.

    ``prepare(host, params)`` runs before the handler in the shape tests (and
    wherever a caller wants a host ready for that call), e.g. to create the
    VM the example names.
    """
    def register(func: PrepareFunc) -> PrepareFunc:
        _PREPARES[name] = func
        if name in _HANDLERS:
            _HANDLERS[name].prepare = func
        return func
    return register


def unregister(name: str) -> None:
    """Drop the handler and prepare hook of ``name`` (tests that register their own)."""
    _HANDLERS.pop(name, None)
    _PREPARES.pop(name, None)


def _load_handlers() -> None:
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        package = importlib.import_module('psdriver.sim.handlers')
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f'{package.__name__}.{info.name}')
        _loaded = True


def handlers() -> dict[str, Handler]:
    """Every registered handler, by script name."""
    _load_handlers()
    return dict(_HANDLERS)


def get_handler(name: str) -> Handler:
    _load_handlers()
    try:
        return _HANDLERS[name]
    except KeyError:
        raise LookupError(f'the simulator has no handler for script {name!r}') from None


# -- parameter binding ------------------------------------------------------------

#: Where the standalone scripts are read from (tests may point it elsewhere).
scripts_root: Callable[[], Path] = scripts_dir


@functools.lru_cache(maxsize=None)
def _declared(root: Path, name: str) -> tuple[ScriptParam, ...]:
    path = root / f'{name}.ps1'
    return tuple(script_parameters(path.read_text(encoding='utf-8-sig')))


def declared_parameters(name: str) -> tuple[ScriptParam, ...]:
    """The ``param()`` block of ``ps_scripts/<name>.ps1``."""
    return _declared(scripts_root(), name)


def bind_parameters(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Match ``params`` to the declared parameters as splatting would.

    Names match case-insensitively and come back spelled as declared; an
    unknown name or a missing mandatory one is PowerShell's binding error.
    """
    if not isinstance(params, dict):
        raise SimError('The input document is not a JSON object.', 'InvalidArgument',
                       'PsDriver.BadInput', PARAMETER_BINDING_EXCEPTION)
    declared = {p.name.lower(): p for p in declared_parameters(name)}
    bound: dict[str, Any] = {}
    for key, value in params.items():
        param = declared.get(str(key).lower())
        if param is None:
            raise SimError(f"A parameter cannot be found that matches parameter name '{key}'.",
                           'InvalidArgument', f'NamedParameterNotFound,{name}',
                           PARAMETER_BINDING_EXCEPTION, str(key))
        bound[param.name] = value
    missing = [p.name for p in declared.values() if p.mandatory and p.name not in bound]
    if missing:
        raise SimError('Cannot process command because of one or more missing mandatory '
                       f'parameters: {" ".join(missing)}.', 'InvalidArgument',
                       f'MissingMandatoryParameter,{name}', PARAMETER_BINDING_EXCEPTION)
    return bound


# -- execution ---------------------------------------------------------------------

def script_name(text: str) -> str:
    """The script a rendered wrapper runs, from its first line."""
    first = text.split('\n', 1)[0].rstrip('\r')
    m = _FIRST_LINE.match(first)
    if m is None:
        raise ValueError('rendered script does not start with "# psdriver-script: <Name>"')
    return m.group('name')


#: Environment variable naming the state file of the default host.
STATE_ENV = 'PSDRIVER_SIM_STATE'

_default_hosts: dict[str | None, Any] = {}
_default_lock = threading.Lock()


def default_host() -> Any:
    """The host a double uses when none is given: ``$PSDRIVER_SIM_STATE`` or in-memory."""
    from psdriver.sim.host import SimHost
    path = os.environ.get(STATE_ENV) or None
    with _default_lock:
        host = _default_hosts.get(path)
        if host is None:
            host = _default_hosts[path] = SimHost(state_file=path)
        return host


def _error_envelope(exc: SimError) -> str:
    return envelope.failure(exc.message, category=exc.category, error_type=exc.error_type,
                            error_id=exc.error_id, target=exc.target)


def execute_rendered(text: str, document: str, host: Any = None, *,
                     timeout: float | None = None) -> str:
    """Run a rendered script on ``host``; return the envelope text it prints.

    Raises :class:`SimHostDown` when the host is down and :class:`SimTimeout`
    when a delay outlasts ``timeout`` (given by in-process runners only;
    out-of-process doubles are killed by their caller instead).
    """
    name = script_name(text)
    if host is None:
        host = default_host()
    entry = get_handler(name)
    with host.transaction(write=False) as state:
        if state.faults.host_down:
            raise SimHostDown(f'{state.config.hostname} is not reachable')
        hit = host.faults.take(name)
    if hit.delay:
        if timeout is not None and hit.delay >= timeout:
            time.sleep(timeout)
            raise SimTimeout(name, timeout)
        time.sleep(hit.delay)
    rule = hit.outcome
    if rule is not None and rule.kind == 'garbage':
        return rule.text
    if rule is not None:
        return envelope.failure(rule.message, category=rule.category,
                                error_type=rule.error_type, error_id=rule.error_id,
                                target=rule.target)
    try:
        params = bind_parameters(name, decode_document(document))
        with _handler_transaction(host, entry):
            result = entry.func(host, params)
    except SimError as exc:
        return _error_envelope(exc)
    return envelope.success(result)


def prepare_host(host: Any, name: str, params: dict[str, Any]) -> None:
    """Set ``host`` up for a call of ``name`` with ``params`` (its prepare hook, if any).

    What the contract shape tests start from, and what ``psdriver scripts
    run --transport sim`` does to a fresh in-memory host so that an example
    call (``Get-InstanceInfo --Name instance-0000002a``) has something to act on.
    """
    entry = get_handler(name)
    if entry.prepare is not None:
        entry.prepare(host, bind_parameters(name, params))


def run_prepared(host: Any, name: str, params: dict[str, Any]) -> Any:
    """Prepare (if the handler has a hook) and run ``name`` directly: tests and demos."""
    entry = get_handler(name)
    bound = bind_parameters(name, params)
    if entry.prepare is not None:
        entry.prepare(host, dict(bound))
    with _handler_transaction(host, entry):
        return entry.func(host, bound)


def _handler_transaction(host: Any, entry: Handler) -> Any:
    """The host's transaction, or none for a handler that locks several hosts itself."""
    if entry.crosses_hosts:
        return contextlib.nullcontext()
    return host.transaction(write=not entry.readonly)
