"""PowerShell syntax checks with tree-sitter-pwsh (provisional; being completed)."""

from __future__ import annotations

import dataclasses
import functools
import re
import threading

import tree_sitter
import tree_sitter_pwsh

_local = threading.local()


@dataclasses.dataclass(frozen=True)
class ScriptParam:
    name: str
    mandatory: bool = False
    type_name: str = ''


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


_MANDATORY = re.compile(r'\bMandatory\b(\s*=\s*\$(true|false))?', re.IGNORECASE)


def script_parameters(text: str) -> list[ScriptParam]:
    tree = parse(text)
    root = tree.root_node
    block = None
    stack = [root]
    while stack:
        node = stack.pop(0)
        if node.type == 'param_block':
            block = node
            break
        if node.type in ('function_statement', 'script_block_expression'):
            continue
        stack.extend(node.children)
    if block is None:
        return []
    params = []
    stack = list(block.children)
    while stack:
        node = stack.pop(0)
        if node.type == 'script_parameter':
            src = node.text.decode('utf-8')
            names = re.findall(r'\$([A-Za-z_][A-Za-z0-9_]*)', src)
            name = names[-1] if names else ''
            for child in node.children:
                if child.type == 'variable':
                    name = child.text.decode('utf-8').lstrip('$')
            mandatory = False
            for m in _MANDATORY.finditer(src):
                mandatory = m.group(2) is None or m.group(2).lower() == 'true'
            types = re.findall(r'\[([A-Za-z_][\w.\[\]]*)\]\s*\$', src)
            params.append(ScriptParam(name, mandatory, types[-1] if types else ''))
        else:
            stack.extend(node.children)
    return params
