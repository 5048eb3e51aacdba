"""A host script as the ``psdriver`` command sees it: its synopsis and its parameters.

The parameters come from the script's own ``param()`` block
(:mod:`psdriver.bridge.script_params`), so ``psdriver scripts run NAME`` takes
``--Name value`` options for exactly what the script declares, matched
case-insensitively as PowerShell binds them (``--echo`` is ``-Echo``).
Values are typed by the declared type: ``[int]``/``[long]`` become numbers,
``[switch]`` a flag, ``[string[]]`` a list, ``[psobject]`` and ``[hashtable]``
a JSON document.  Error messages never quote a value: it may be a secret.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any, Callable, Iterable

from psdriver.bridge.script_params import ScriptParam

_HELP_KEYWORD = re.compile(r'^\s*(\.[A-Za-z]+\b.*|#>.*)$')
_BOOLS = {'true': True, '$true': True, '1': True, 'yes': True, 'on': True,
          'false': False, '$false': False, '0': False, 'no': False, 'off': False}
_INTEGERS = {'int', 'int16', 'int32', 'int64', 'long', 'byte', 'uint16', 'uint32', 'uint64'}
_FLOATS = {'double', 'float', 'single', 'decimal'}
_SWITCHES = {'switch', 'bool', 'boolean'}
_DOCUMENTS = {'psobject', 'pscustomobject', 'hashtable', 'object',
              'system.collections.hashtable', 'system.management.automation.psobject'}


def synopsis(text: str) -> str:
    """The ``.SYNOPSIS`` paragraph of a script's comment-based help, on one line."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip().upper() == '.SYNOPSIS':
            words = []
            for following in lines[index + 1:]:
                if _HELP_KEYWORD.match(following):
                    break
                words.extend(following.split())
            return ' '.join(words)
    return ''


class BadValue(ValueError):
    """A value does not fit the declared type (the message never quotes the value)."""


def _base_type(param: ScriptParam) -> str:
    return param.type_name.lower().removesuffix('[]')


def _is_array(param: ScriptParam) -> bool:
    return param.type_name.endswith('[]')


def _scalar(type_name: str, text: str) -> Any:
    if type_name in _SWITCHES:
        try:
            return _BOOLS[text.strip().lower()]
        except KeyError:
            raise BadValue('expected true or false') from None
    if type_name in _INTEGERS:
        try:
            return int(text, 0)
        except ValueError:
            raise BadValue('expected an integer') from None
    if type_name in _FLOATS:
        try:
            return float(text)
        except ValueError:
            raise BadValue('expected a number') from None
    if type_name in _DOCUMENTS:
        return _json(text)
    return text


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only: the document itself may be secret.
        raise BadValue(f'expected JSON ({exc.msg} at character {exc.pos})') from None


def convert(param: ScriptParam, text: str) -> Any:
    """The value of ``param`` given as text (``--param NAME=TEXT``).

    An array parameter takes a JSON array, or one element.
    """
    base = _base_type(param)
    if _is_array(param):
        if text.lstrip().startswith('['):
            value = _json(text)
            if not isinstance(value, list):
                raise BadValue('expected a JSON array')
            return value
        return [_scalar(base, text)]
    return _scalar(base, text)


def _argparse_type(convert_one: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert_one(text)
        except BadValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def option_parser(name: str, params: Iterable[ScriptParam],
                  secret: Iterable[str] = ()) -> argparse.ArgumentParser:
    """``--Name value`` options for each declared parameter; unset ones stay absent."""
    secret_names = {s.lower() for s in secret}
    parser = argparse.ArgumentParser(prog=f'psdriver scripts run {name}', add_help=False,
                                     allow_abbrev=False, usage=argparse.SUPPRESS)
    group = parser.add_argument_group(f'parameters of {name} (its param() block)')
    for param in params:
        base = _base_type(param)
        notes = [param.type_name or 'string']
        if param.mandatory:
            notes.append('mandatory')
        if param.validate_set:
            notes.append(f'one of {", ".join(param.validate_set)}')
        if param.name.lower() in secret_names:
            notes.append('secret: never logged or echoed')
        flag = f'--{param.name}'
        if base == 'switch' and not _is_array(param):
            group.add_argument(flag, dest=param.name, action='store_true',
                               default=argparse.SUPPRESS, help=', '.join(notes))
        elif _is_array(param) and base not in _DOCUMENTS:
            group.add_argument(flag, dest=param.name, action='extend', nargs='+',
                               type=_argparse_type(lambda t, b=base: _scalar(b, t)),
                               default=argparse.SUPPRESS, metavar='VALUE',
                               help=', '.join(notes))
        else:
            group.add_argument(flag, dest=param.name,
                               metavar='JSON' if base in _DOCUMENTS else 'VALUE',
                               type=_argparse_type(lambda t, p=param: convert(p, t)),
                               default=argparse.SUPPRESS, help=', '.join(notes))
    return parser


def normalise_options(tokens: list[str], params: Iterable[ScriptParam]) -> list[str]:
    """Spell ``--echo``/``-Echo``/``--ECHO=x`` as the declared ``--Echo``/``--Echo=x``."""
    declared = {p.name.lower(): p.name for p in params}
    out = []
    for token in tokens:
        match = re.match(r'^--?([A-Za-z_][A-Za-z0-9_]*)(=.*)?$', token, re.DOTALL)
        if match and match.group(1).lower() in declared:
            token = f'--{declared[match.group(1).lower()]}{match.group(2) or ""}'
        out.append(token)
    return out
