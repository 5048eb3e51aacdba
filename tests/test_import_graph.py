"""The product stands apart from its test double: checked on the import graph.

Every ``import`` of every module under ``psdriver/`` counts, those inside
functions too (they run sooner or later); those under ``if TYPE_CHECKING:``
do not (they never run).

* nova-compute's code (everything but the simulator, the demo and the
  ``psdriver`` command, which exist to show the simulated host) never
  imports ``psdriver.sim``: the simulator is a ``psdriver.transports`` entry
  point.
* The simulator reaches the product only through the bridge's contracts
  (how a call looks, its envelope, its errors, the scripts and their
  ``param()`` blocks).
* No import circle within the simulator.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIM = 'psdriver.sim'
#: Tools around the driver that are there to drive the simulated host.
SIM_USERS = ('psdriver.sim', 'psdriver.demo', 'psdriver.cli')
#: What the simulator may use of the product.
BRIDGE_CONTRACTS = {'psdriver.bridge', 'psdriver.bridge.call', 'psdriver.bridge.errors',
                    'psdriver.bridge.envelope', 'psdriver.bridge.script_params',
                    'psdriver.bridge.scripts_dir', 'psdriver.bridge.contracts'}


def _modules() -> dict[str, Path]:
    found = {}
    for path in (REPO / 'psdriver').rglob('*.py'):
        parts = path.relative_to(REPO).with_suffix('').parts
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == 'TYPE_CHECKING') or \
        (isinstance(test, ast.Attribute) and test.attr == 'TYPE_CHECKING')


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def known(name: str | None) -> str | None:
        while name and name not in modules:
            name = name.rpartition('.')[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Import):
                targets.update(known(a.name) for a in node.names)
                continue
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(anchor + ([node.module] if node.module else []))
            subs = [f'{base}.{a.name}' for a in node.names if f'{base}.{a.name}' in modules]
            targets.update(subs)
            if len(subs) < len(node.names):
                targets.add(known(base))
        graph[name] = {t for t in targets if t and t != name}
    return graph


def test_the_driver_never_imports_the_simulator():
    offenders = {name: sorted(t for t in targets if t.startswith(SIM))
                 for name, targets in _graph().items()
                 if not name.startswith(SIM_USERS)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_simulator_reaches_the_product_only_through_the_bridge_contracts():
    reach = {name: sorted(t for t in targets
                          if t.startswith('psdriver') and not t.startswith(SIM)
                          and t not in BRIDGE_CONTRACTS)
             for name, targets in _graph().items() if name.startswith(SIM)}
    assert {k: v for k, v in reach.items() if v} == {}


def test_no_import_circle_in_the_simulator():
    graph = {n: {t for t in ts if t.startswith(SIM)} for n, ts in _graph().items()
             if n.startswith(SIM)}
    circles = []
    state: dict[str, int] = {}          # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(' -> '.join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert circles == []


def test_the_graph_sees_lazy_imports():
    """The checks above would pass on an empty graph: make sure they read what they should."""
    graph = _graph()
    assert 'psdriver.sim.handlers.spawn' in graph['psdriver.sim.scenario']
    # factory.py loads transports lazily, inside a function
    assert 'psdriver.bridge.runners.local' in graph['psdriver.bridge.factory']
