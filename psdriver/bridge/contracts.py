"""Declared result shapes of the scripts in ps_scripts/.

Each ``ps_scripts/<Verb-Noun>.ps1`` has a ``<Verb-Noun>.contract.json``::

    {
      "script": "Get-HostInfo",
      "modules": ["Hyper-V"],          # modules the wrapper imports first
      "secret_parameters": [],         # never logged
      "timeout": 120,                  # default seconds for one call
      "result": { ... JSON Schema (draft 2020-12) ... },
      "examples": [ {parameters}, ... ],   # used by the simulator shape tests and Pester
      "x-spec-schema": { ... }            # optional: schema of a structured parameter
    }

The same file is read by the Python side (validation of every result), by
the simulator tests (each handler is held to it) and by the Pester tests
(``Test-Json -Schema``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

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

    def validate(self, result: Any) -> None:
        """Raise ``jsonschema.ValidationError`` if ``result`` breaks the shape."""
        _validator(json.dumps(self.result_schema, sort_keys=True)).validate(result)

    def validate_spec(self, spec: Any) -> None:
        """Validate a structured parameter against ``x-spec-schema`` (if declared)."""
        if self.spec_schema is not None:
            _validator(json.dumps(self.spec_schema, sort_keys=True)).validate(spec)


@functools.lru_cache(maxsize=None)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


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
    )


def script_names(root: str | None = None) -> list[str]:
    """All standalone scripts (``*.ps1``) shipped in ps_scripts/."""
    path = Path(root) if root else scripts_dir()
    return sorted(p.stem for p in path.glob('*.ps1'))
