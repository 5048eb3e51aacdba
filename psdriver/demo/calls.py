"""What the demo shows of each call: Nova's call into the driver, the driver's into the host.

:class:`RecordingDriver` stands between the demo's steps and the real
``HyperVDriver``: each method call is reported (with its arguments bound to
the method's parameter names, any ``*password*`` shown as ``***``) before it
runs.  The host side comes from the bridge's observer hook
(:attr:`psdriver.bridge.client.Bridge.observers`), which reports each script
with its parameters (secret ones already masked) and how long it took.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from psdriver.bridge.client import CallRecord
from psdriver.demo.nova_objects import describe

#: Longest parameter value shown in full in a script line.
_SHOWN = 72


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def driver_call(method: Callable[..., Any], name: str, args: tuple, kwargs: dict) -> str:
    """``driver.power_off(instance[instance-0000002a], timeout=60, retry_interval=10)``."""
    try:
        bound = inspect.signature(method).bind(*args, **kwargs)
        items = list(bound.arguments.items())
    except TypeError:
        items = [(None, a) for a in args] + list(kwargs.items())
    shown = []
    for key, value in items:
        if key and 'password' in key:
            shown.append(f'{key}={"***" if value else repr(value)}')
        elif _plain(value) or isinstance(value, (list, dict)) and not value:
            shown.append(f'{key}={value!r}' if key else repr(value))
        elif isinstance(value, dict):
            shown.append(f'{key}={{...}}' if key else '{...}')
        else:
            shown.append(describe(value))
    return f'driver.{name}({", ".join(shown)})'


def script_line(record: CallRecord) -> str:
    """The script as an admin would type it: ``Set-InstancePowerState -Name x -Action Stop``."""
    words = [record.name]
    for key, value in record.params.items():
        if value is True:
            words.append(f'-{key}')
        elif value is False or value is None:
            continue
        elif isinstance(value, (int, float)):
            words.append(f'-{key} {value}')
        elif isinstance(value, str):
            fits = len(value) <= _SHOWN
            words.append(f"-{key} {_quote(value) if fits else '<' + str(len(value)) + ' chars>'}")
        elif isinstance(value, list):
            words.append(f'-{key} {_array(value)}')
        else:
            words.append(f'-{key} <object>')
    return ' '.join(words)


def _array(values: list[Any]) -> str:
    if all(isinstance(v, str) for v in values) and sum(map(len, values)) <= _SHOWN:
        return ', '.join(map(_quote, values)) if values else '@()'
    return f'<{len(values)} item{"s" if len(values) != 1 else ""}>'


def _quote(value: str) -> str:
    if value == '***' or value and all(c.isalnum() or c in '-_.:' for c in value):
        return value
    return "'" + value.replace("'", "''") + "'"


class RecordingDriver:
    """The real driver, with each public method call reported to ``on_call`` first."""

    def __init__(self, driver: Any, on_call: Callable[[str], None]) -> None:
        self._driver = driver
        self._on_call = on_call

    @property
    def real(self) -> Any:
        return self._driver

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._driver, name)
        if name.startswith('_') or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._on_call(driver_call(attr, name, args, kwargs))
            return attr(*args, **kwargs)
        return call
