"""PowerShell syntax checks with tree-sitter-pwsh.

``parse_errors(text)`` lists every ERROR or MISSING node with its line and
column; an empty list means the text parses.  The tests run it over every
script in ps_scripts/ and every rendered wrapper.  (Reading a script's
``param()`` block is :mod:`psdriver.bridge.script_params`' job: the grammar
reads ``[int]$A = 5,`` followed by the next parameter as an array literal.)
"""

from __future__ import annotations

import functools
import threading

import tree_sitter
import tree_sitter_pwsh

_local = threading.local()


@functools.lru_cache(maxsize=1)
def _language() -> tree_sitter.Language:
    return tree_sitter.Language(tree_sitter_pwsh.language())


def _parser() -> tree_sitter.Parser:
    parser = getattr(_local, 'parser', None)
    if parser is None:
        parser = _local.parser = tree_sitter.Parser(_language())
    return parser


def parse(text: str) -> tree_sitter.Tree:
    return _parser().parse(text.encode('utf-8'))


def parse_errors(text: str) -> list[str]:
    tree = parse(text)
    if not tree.root_node.has_error:
        return []
    problems = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, col = node.start_point
            kind = 'MISSING ' + node.type if node.is_missing else 'ERROR'
            snippet = text.encode('utf-8')[node.start_byte:node.start_byte + 40].decode(
                'utf-8', 'replace')
            problems.append(f'{row + 1}:{col + 1}: {kind} near {snippet!r}')
        elif node.has_error:
            stack.extend(reversed(node.children))
    return problems or ['syntax error (position unknown)']
