"""Pick the functions of the shared helper module that one wrapped script needs.

``PsDriver.psm1`` holds every helper the scripts share (the envelope, JSON
decoding, VM lookup, the console logger, ...).  Inlining all of it into
every call would make each round trip carry, and the host parse, code the
script never runs, so the wrapper gets only:

* the module's top-level statements that are not functions (such as
  ``Set-StrictMode``), in their order;
* each helper function whose name occurs as a word in the wrapper template or
  the script body, and, transitively, in the functions taken so far.

A name counts wherever it occurs (a command, ``${function:Name}``, a string
given to ``Get-Command``), so the choice errs on the side of including a
function; the functions keep their order in the module.  The module is split
with tree-sitter-pwsh, so a ``function`` inside a string or a comment is not
taken for one.
"""

from __future__ import annotations

import dataclasses
import functools
import re

from psdriver.bridge import pwsh_syntax

_WORD = re.compile(r'[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*')


@dataclasses.dataclass(frozen=True)
class HelperFunction:
    name: str
    text: str
    #: Lower-case names of the other helper functions this one mentions.
    uses: frozenset[str]


@dataclasses.dataclass(frozen=True)
class HelperLibrary:
    """A helper module split into its top-level statements and functions."""

    preamble: tuple[str, ...]
    functions: tuple[HelperFunction, ...]

    def select(self, *texts: str) -> str:
        """The module text a script needs: preamble plus the functions ``texts`` reach."""
        by_name = {f.name.lower(): f for f in self.functions}
        wanted = words(*texts) & by_name.keys()
        pending = list(wanted)
        while pending:
            for used in by_name[pending.pop()].uses - wanted:
                wanted.add(used)
                pending.append(used)
        parts = [*self.preamble,
                 *(f.text for f in self.functions if f.name.lower() in wanted)]
        return '\n\n'.join(parts)

    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.functions)


def words(*texts: str) -> set[str]:
    """Every word (``Verb-Noun`` names included) of ``texts``, in lower case."""
    return {m.group(0).lower() for text in texts for m in _WORD.finditer(text)}


@functools.lru_cache(maxsize=8)
def parse_library(text: str) -> HelperLibrary:
    """Split a helper module; a syntax error in it is a bug, reported with its place."""
    problems = pwsh_syntax.parse_errors(text)
    if problems:
        raise ValueError(f'the helper module does not parse: {problems[0]}')
    source = text.encode('utf-8')
    statements = []
    for node in pwsh_syntax.parse(text).root_node.children:
        if node.type == 'statement_list':
            statements.extend(node.children)
    preamble, found = [], []
    for node in statements:
        snippet = source[node.start_byte:node.end_byte].decode('utf-8')
        if node.type == 'function_statement':
            name = next((c.text.decode('utf-8') for c in node.children
                         if c.type == 'function_name'), None)
            if name is None:
                raise ValueError(f'a function without a name in the helper module: '
                                 f'{snippet[:60]!r}')
            found.append((name, snippet))
        elif node.type != 'comment':
            preamble.append(snippet)
    names = {name.lower() for name, _ in found}
    functions = tuple(
        HelperFunction(name, snippet, frozenset((words(snippet) & names) - {name.lower()}))
        for name, snippet in found)
    return HelperLibrary(tuple(preamble), functions)
