"""Declared result shapes of the scripts in ps_scripts/.

Each ``ps_scripts/<Verb-Noun>.ps1`` has a ``<Verb-Noun>.contract.json``::

    {
      "script": "Get-HostInfo",
      "modules": ["Hyper-V"],          # modules the wrapper imports first
      "secret_parameters": [],         # never logged
      "timeout": 120,                  # default seconds for one call
      "result": { ... JSON Schema (draft 2020-12) ... },
      "examples": [ {parameters}, ... ],   # used by the simulator shape tests and Pester
      "x-spec-schema": { ... },           # optional: schema of a structured parameter
      "x-spec-parameter": "Spec"          # the parameter it describes (default Spec)
    }

The same file is read by the Python side (validation of every result), by
the simulator tests (each handler is held to it) and by the Pester tests
(``Test-Json -Schema``).

Validation uses schemas compiled to Python by fastjsonschema, once per
contract: every result is checked, and a listing of 1,000 VMs is checked in
about 6 ms instead of the 80 ms an interpreting validator needs (the
lifecycle event poll does it every two seconds).  The schemas say draft
2020-12 and use only keywords draft 7 has too, which is what fastjsonschema
implements; a test holds every contract to both.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Callable

import fastjsonschema

from psdriver.bridge.scripts_dir import scripts_dir


@dataclasses.dataclass(frozen=True)
class Contract:
    script: str
    modules: tuple[str, ...]
    secret_parameters: frozenset[str]
    timeout: float
    result_schema: dict[str, Any]
    examples: tuple[dict[str, Any], ...] = ()
    spec_schema: dict[str, Any] | None = None
    spec_parameter: str = 'Spec'

    def validate(self, result: Any) -> None:
        """Raise :class:`ShapeError` if ``result`` breaks the declared shape."""
        _check(self._result_validator, result)

    def validate_spec(self, spec: Any) -> None:
        """Validate a structured parameter against ``x-spec-schema`` (if declared)."""
        if self.spec_schema is not None:
            _check(self._spec_validator, spec)

    # Compiled once per contract (contracts are cached).
    @functools.cached_property
    def _result_validator(self) -> Callable[[Any], Any]:
        return fastjsonschema.compile(self.result_schema)

    @functools.cached_property
    def _spec_validator(self) -> Callable[[Any], Any]:
        return fastjsonschema.compile(self.spec_schema or {})


class ShapeError(ValueError):
    """A value breaks a declared schema.

    ``path`` is where (keys and list indexes from the top), ``rule`` the
    schema keyword that failed and ``expected`` that keyword's value in the
    schema; ``message`` says it in words and never quotes the value itself.
    """

    def __init__(self, path: tuple[str | int, ...], rule: str | None, expected: Any,
                 message: str) -> None:
        super().__init__(message)
        self.path = path
        self.rule = rule
        self.expected = expected
        self.message = message

    def where(self, top: str = '') -> str:
        """``path`` as ``top/a/0/b`` (``<root>`` for the value itself without ``top``)."""
        parts = [top] if top else []
        parts += [str(p) for p in self.path]
        return '/'.join(parts) or '<root>'


def _check(validator: Callable[[Any], Any], value: Any) -> None:
    try:
        validator(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        # exc.path starts with 'data', the name fastjsonschema gives the value.
        path = tuple(exc.path[1:]) if exc.path and exc.path[0] == 'data' else tuple(exc.path)
        # Some checks (contentEncoding, format) carry no rule name: keep None, not 'None'.
        rule = str(exc.rule) if exc.rule is not None else None
        raise ShapeError(path, rule, exc.rule_definition, _message(exc.message)) from None


def _message(text: str) -> str:
    """fastjsonschema says ``data.x.y must ...``; say ``x.y must ...``."""
    if text.startswith('data.'):
        return text[len('data.'):]
    if text.startswith('data '):
        return 'the value ' + text[len('data '):]
    return text


@functools.lru_cache(maxsize=None)
def load_contract(name: str, root: str | None = None) -> Contract:
    path = Path(root) if root else scripts_dir()
    data = json.loads((path / f'{name}.contract.json').read_text(encoding='utf-8'))
    if data.get('script') != name:
        raise ValueError(f'{name}.contract.json names script {data.get("script")!r}')
    return Contract(
        script=name,
        modules=tuple(data.get('modules', ())),
        secret_parameters=frozenset(data.get('secret_parameters', ())),
        timeout=float(data.get('timeout', 120)),
        result_schema=data['result'],
        examples=tuple(data.get('examples', ())),
        spec_schema=data.get('x-spec-schema'),
        spec_parameter=data.get('x-spec-parameter', 'Spec'),
    )


def script_names(root: str | None = None) -> list[str]:
    """All standalone scripts (``*.ps1``) shipped in ps_scripts/."""
    path = Path(root) if root else scripts_dir()
    return sorted(p.stem for p in path.glob('*.ps1'))
