"""Render the wrapped form of a ps_scripts/ script: structure only, never values.

The wrapper template (``Invoke-PsDriverScript.ps1.j2``) puts the shared
helpers of ``PsDriver.psm1`` (its topic files ``PsDriver/*.ps1``) that the script uses (see
:mod:`psdriver.bridge.helpers`) and the standalone script (as a script
block) inside one text that decodes the values document, runs the script
and prints the envelope.  What varies between renders is the script name, the
modules its contract lists and the *features* of the transport:

``local_process``
    the script runs in its own ``pwsh``/``powershell.exe`` process: read the
    document from stdin, write UTF-8 to stdout and exit 0/1.
``verbose_log``
    turn on ``$VerbosePreference`` and return verbose records in the envelope.

Nothing a caller supplies reaches the template context, so the rendered text
for a script and a feature set is the same whatever the values; it is cached.
"""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path
from typing import Any, Iterable

import jinja2

from psdriver.bridge import contracts, errors, helpers, script_params
from psdriver.bridge.call import INPUT_PARAMETER
from psdriver.bridge.scripts_dir import scripts_dir

WRAPPER_TEMPLATE = 'Invoke-PsDriverScript.ps1.j2'
HELPER_MODULE = 'PsDriver.psm1'
#: The helper module's functions, one file per topic; PsDriver.psm1 dot-sources them.
HELPER_TOPICS_DIR = 'PsDriver'
#: Every feature a runner may ask for; any other name is a programming error.
FEATURES = frozenset({'local_process', 'verbose_log'})
#: Module names are rendered into the wrapper, so they must be plain names.
_MODULE_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9._-]*$')


def feature_sets() -> list[frozenset[str]]:
    """Every combination of :data:`FEATURES` (the syntax tests render them all)."""
    names = sorted(FEATURES)
    combos = [frozenset()]
    for name in names:
        combos += [c | {name} for c in combos]
    return combos


class Renderer:
    """Jinja2 environment over ``ps_scripts/`` with a cache of rendered wrappers."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else scripts_dir()
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.root)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,       # PowerShell, not HTML; no value is ever rendered
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._cache: dict[tuple[str, frozenset[str]], str] = {}
        self._lock = threading.Lock()

    # -- rendering ------------------------------------------------------------------

    def render(self, name: str, features: Iterable[str] = frozenset()) -> str:
        """The wrapped text of script ``name`` for a feature set (cached)."""
        wanted = frozenset(features)
        unknown = wanted - FEATURES
        if unknown:
            raise ValueError(f'unknown render features: {sorted(unknown)}')
        key = (name, wanted)
        text = self._cache.get(key)
        if text is None:
            text = self._render(name, wanted)
            with self._lock:
                self._cache.setdefault(key, text)
        return text

    def _render(self, name: str, features: frozenset[str]) -> str:
        contract = contracts.load_contract(name, str(self.root))
        for module in contract.modules:
            if not _MODULE_NAME.match(module):
                raise ValueError(f'{name}.contract.json lists a bad module name {module!r}')
        body = self._script_body(name)
        library = helpers.parse_library(self.helper_library_text())
        return self._env.get_template(WRAPPER_TEMPLATE).render(
            script_name=name,
            script_body=body,
            helpers=library.select(self._read(WRAPPER_TEMPLATE), body),
            modules=list(contract.modules),
            features=features,
            input_parameter=INPUT_PARAMETER,
        )

    def helper_library_text(self) -> str:
        """The topic files of the helper module, in the order PsDriver.psm1 loads them."""
        topics = sorted((self.root / HELPER_TOPICS_DIR).glob('*.ps1'), key=lambda p: p.name)
        return '\n'.join(self._read(f'{HELPER_TOPICS_DIR}/{p.name}') for p in topics)

    def _read(self, filename: str) -> str:
        return (self.root / filename).read_text(encoding='utf-8-sig').replace('\r\n', '\n')

    def _script_body(self, name: str) -> str:
        return self._read(f'{name}.ps1').rstrip('\n')

    # -- parameters -----------------------------------------------------------------

    def declared_parameters(self, name: str) -> dict[str, script_params.ScriptParam]:
        """The script's ``param()`` block, by lower-case name."""
        return _declared(str(self.root), name)

    def check_parameters(self, name: str, params: dict[str, Any]) -> None:
        """Refuse, before anything runs, what PowerShell's binder would refuse.

        Unknown names and missing mandatory parameters are bugs in the caller;
        a structured parameter is checked against the contract's ``x-spec-schema``.
        """
        declared = self.declared_parameters(name)
        unknown = sorted(k for k in params if k.lower() not in declared)
        if unknown:
            raise errors.BridgeParameterError(
                f'{name} has no parameter(s) {", ".join(unknown)}; '
                f'it declares {", ".join(p.name for p in declared.values()) or "none"}')
        given = {k.lower() for k in params}
        missing = [p.name for key, p in declared.items() if p.mandatory and key not in given]
        if missing:
            raise errors.BridgeParameterError(
                f'{name} needs mandatory parameter(s) {", ".join(missing)}')
        for key, value in params.items():
            allowed = declared[key.lower()].validate_set
            if allowed and not _in_set(value, allowed):
                # The value is not quoted: it may be secret.
                raise errors.BridgeParameterError(
                    f'{name} -{declared[key.lower()].name} must be one of '
                    f'{", ".join(allowed)}')
        contract = contracts.load_contract(name, str(self.root))
        wanted = contract.spec_parameter.lower()
        if contract.spec_schema is not None and wanted in given:
            spec = next(v for k, v in params.items() if k.lower() == wanted)
            try:
                contract.validate_spec(spec)
            except contracts.ShapeError as exc:
                raise errors.BridgeSpecError(
                    name, contract.spec_parameter, exc.path, exc.rule, exc.expected,
                    _schema_problem(exc)) from None


def _in_set(value: Any, allowed: tuple[str, ...]) -> bool:
    """PowerShell's ValidateSet: every value (of an array too) in the set, any casing."""
    folded = {a.casefold() for a in allowed}
    values = value if isinstance(value, (list, tuple)) else [value]
    return all(isinstance(v, str) and v.casefold() in folded for v in values)


#: What a failed schema keyword means, in words; ``{0}`` is the keyword's value.
_RULE_WORDS = {
    'minimum': 'must be at least {0}',
    'maximum': 'must be at most {0}',
    'exclusiveMinimum': 'must be more than {0}',
    'exclusiveMaximum': 'must be less than {0}',
    'minLength': 'must be at least {0} characters long',
    'maxLength': 'must be at most {0} characters long',
    'minItems': 'must have at least {0} items',
    'maxItems': 'must have at most {0} items',
    'multipleOf': 'must be a multiple of {0}',
    'pattern': 'must match the pattern {0}',
    'type': 'must be of type {0}',
    'enum': 'must be one of {0}',
    'const': 'must be {0}',
    'required': 'needs the key(s) {0}',
    'oneOf': 'matches none of the allowed forms',
    'anyOf': 'matches none of the allowed forms',
    'not': 'has a form that is not allowed',
}


def _schema_problem(exc: contracts.ShapeError) -> str:
    """What a validation error says, in words, and nothing of the value.

    Specs may be secret (a config drive holding a password), so the text is
    built from the place and the schema's side only, never from the value.
    An ``additionalProperties`` failure names keys, which are the caller's
    structure, not its data.
    """
    where = '.'.join(str(p) for p in exc.path) or 'the value'
    if exc.rule == 'additionalProperties':
        return exc.message
    if exc.rule is None:
        # contentEncoding, format: fastjsonschema's words name the place and the
        # rule ("... must be encoded by base64"), never the value.
        return exc.message
    words = _RULE_WORDS.get(exc.rule)
    if words is None:
        return f'{where} breaks the schema rule {exc.rule}'
    expected = exc.expected
    if isinstance(expected, (list, tuple)):
        expected = ', '.join('null' if v is None else str(v) for v in expected)
    text = str(expected)
    if len(text) > 80:
        text = text[:77] + '...'
    return f'{where} {words.format(text)}'


@functools.lru_cache(maxsize=None)
def _declared(root: str, name: str) -> dict[str, script_params.ScriptParam]:
    text = (Path(root) / f'{name}.ps1').read_text(encoding='utf-8-sig')
    return {p.name.lower(): p for p in script_params.script_parameters(text)}
