"""Every script in ps_scripts/ has a simulator handler that keeps its contract.

For each ``<Name>.ps1`` (found at run time, so new scripts are covered
without touching this file) and each parameter set in the ``examples`` of
``<Name>.contract.json``: the handler's ``prepare`` hook sets the host up,
the call goes through ``execute_rendered`` (parameter binding included) and
the result must validate against the contract's ``result`` schema.
"""

from __future__ import annotations

import json

import pytest

from psdriver.bridge import contracts
from psdriver.bridge.call import encode_document
from psdriver.sim import SimHost, dispatch, execute_rendered

from tests.sim.conftest import rendered


def _script_names() -> list[str]:
    try:
        return contracts.script_names()
    except FileNotFoundError:
        return []


def _cases() -> list:
    cases = []
    for name in _script_names():
        try:
            examples = contracts.load_contract(name).examples
        except (FileNotFoundError, KeyError, ValueError):
            examples = ()
        for index, example in enumerate(examples):
            cases.append(pytest.param(name, example, id=f'{name}[{index}]'))
    return cases


SCRIPTS = _script_names()


def test_scripts_are_found():
    assert SCRIPTS, 'ps_scripts/ not found or empty'


@pytest.mark.parametrize('name', SCRIPTS)
def test_script_has_a_handler_and_examples(name):
    assert name in dispatch.handlers(), f'no simulator handler for {name}'
    contract = contracts.load_contract(name)
    assert contract.examples, f'{name}.contract.json has no "examples" to check the handler'


def test_every_handler_simulates_a_shipped_script():
    shipped = set(SCRIPTS)
    stray = sorted(n for n, h in dispatch.handlers().items()
                   if h.func.__module__.startswith('psdriver.sim.handlers') and n not in shipped)
    assert stray == []


@pytest.mark.parametrize('name,example', _cases())
def test_example_result_keeps_the_contract(name, example):
    contract = contracts.load_contract(name)
    entry = dispatch.get_handler(name)
    host = SimHost()
    if entry.prepare is not None:
        entry.prepare(host, dispatch.bind_parameters(name, example))
    before = host.dump()
    out = json.loads(execute_rendered(rendered(name), encode_document(example), host))
    assert out['ok'], f'{name} {example} failed: {out.get("error")}'
    contract.validate(out['result'])
    if entry.readonly:
        assert host.dump() == before, f'{name} is registered read-only but changed the host'
    host.check_consistency()
