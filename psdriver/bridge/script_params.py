"""The parameters a standalone script declares, read from its ``param()`` block.

The bridge (before a call) and the simulator (when it runs one) check a
call's values the way PowerShell binds splatted values to the script: an
unknown name is refused, a missing mandatory one too.  This is a small
scanner (comments, strings and brackets aware), enough for the multi-line
style ps_scripts/ follows.  Not tree-sitter: tree-sitter-pwsh 0.38 reads a
default followed by the next parameter (``[int]$A = 5, [switch]$B``) as one
array literal and loses ``$B``.
"""

from __future__ import annotations

import dataclasses
import re

_IDENT = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')
_MANDATORY = re.compile(r'\bMandatory\b(\s*=\s*\$(true|false))?', re.IGNORECASE)
_PARAMETER_ATTR = re.compile(r'\[\s*Parameter\s*\(', re.IGNORECASE)
_VALIDATE_SET_ATTR = re.compile(r'\[\s*ValidateSet\s*\(', re.IGNORECASE)
_QUOTED = re.compile(r"'((?:[^']|'')*)'|\"([^\"]*)\"")


@dataclasses.dataclass(frozen=True)
class ScriptParam:
    name: str
    mandatory: bool = False
    type_name: str = ''
    #: The ``[ValidateSet(...)]`` values (matched case-insensitively, as PowerShell does).
    validate_set: tuple[str, ...] = ()


def _skip(text: str, i: int) -> int:
    """If a comment or string starts at ``i``, the index just past it; else ``i``."""
    if text.startswith('<#', i):
        end = text.find('#>', i + 2)
        return len(text) if end < 0 else end + 2
    if text[i] == '#':
        end = text.find('\n', i)
        return len(text) if end < 0 else end
    if text.startswith("@'", i) or text.startswith('@"', i):
        close = '\n' + text[i + 1] + '@'
        end = text.find(close, i + 2)
        return len(text) if end < 0 else end + 3
    if text[i] in '\'"':
        quote = text[i]
        j = i + 1
        while j < len(text):
            if text[j] == quote:
                if j + 1 < len(text) and text[j + 1] == quote:
                    j += 2
                    continue
                return j + 1
            if quote == '"' and text[j] == '`':
                j += 2
                continue
            j += 1
        return len(text)
    return i


def _find_param_block(text: str) -> tuple[int, int] | None:
    """Span inside the parentheses of the script-level ``param(...)``."""
    i, depth = 0, 0
    while i < len(text):
        j = _skip(text, i)
        if j != i:
            i = j
            continue
        c = text[i]
        if c in '([{':
            depth += 1
        elif c in ')]}':
            depth -= 1
        elif depth == 0 and text[i:i + 5].lower() == 'param' and \
                (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in '_-$')):
            k = i + 5
            while k < len(text) and text[k].isspace():
                k += 1
            if k < len(text) and text[k] == '(':
                end = _matching(text, k)
                return k + 1, end
        elif depth == 0 and _IDENT.match(text, i) and text[i - 1:i] != '$' and \
                not text[i:i + 12].lower().startswith(('param', 'using')):
            # The first statement that is not help, an attribute or `using`: no param block.
            word = _IDENT.match(text, i).group(0).lower()
            if word not in ('cmdletbinding', 'outputtype'):
                return None
        i += 1
    return None


def _matching(text: str, open_index: int) -> int:
    depth, i = 0, open_index
    while i < len(text):
        j = _skip(text, i)
        if j != i:
            i = j
            continue
        if text[i] in '([{':
            depth += 1
        elif text[i] in ')]}':
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError('unbalanced param() block')


def _split_top_level(text: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        j = _skip(text, i)
        if j != i:
            i = j
            continue
        c = text[i]
        if c in '([{':
            depth += 1
        elif c in ')]}':
            depth -= 1
        elif c == ',' and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def _parse_segment(segment: str) -> ScriptParam | None:
    depth, i, brackets = 0, 0, []
    bracket_start = 0
    while i < len(segment):
        j = _skip(segment, i)
        if j != i:
            i = j
            continue
        c = segment[i]
        if c in '([{':
            if depth == 0:
                bracket_start = i
            depth += 1
        elif c in ')]}':
            depth -= 1
            if depth == 0:
                brackets.append(segment[bracket_start:i + 1])
        elif c == '$' and depth == 0:
            m = _IDENT.match(segment, i + 1)
            if m:
                return _build(m.group(0), brackets)
        i += 1
    return None


def _build(name: str, attributes: list[str]) -> ScriptParam:
    params = [a for a in attributes if _PARAMETER_ATTR.match(a)]
    mandatory = False
    if len(params) == 1 and 'parametersetname' not in params[0].lower():
        m = _MANDATORY.search(params[0])
        mandatory = bool(m) and (m.group(2) is None or m.group(2).lower() == 'true')
    types = [a[1:-1].strip() for a in attributes if '(' not in a]
    sets = [a for a in attributes if _VALIDATE_SET_ATTR.match(a)]
    values = tuple(m.group(1).replace("''", "'") if m.group(1) is not None else m.group(2)
                   for m in _QUOTED.finditer(sets[0])) if sets else ()
    return ScriptParam(name, mandatory, types[-1] if types else '', values)


def script_parameters(text: str) -> list[ScriptParam]:
    """Parameters of the script-level ``param()`` block, in declaration order."""
    span = _find_param_block(text)
    if span is None:
        return []
    found = (_parse_segment(seg) for seg in _split_top_level(text[span[0]:span[1]]))
    return [p for p in found if p is not None]
