"""Data never becomes code: hostile values change nothing in the script text and arrive exactly.

For any value, the text the runner receives is byte-identical to the
rendered wrapper (which is rendered without any value at all), and the value
comes back unchanged from the host: through the simulated host in process,
through a real process (the stand-in ``pwsh``), and through PowerShell
Remoting (the local WS-Man endpoint).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from psdriver.bridge.call import (
    INPUT_PARAMETER, ascii_document, decode_document, encode_document, loader_text,
)
from psdriver.bridge.client import Bridge
from psdriver.bridge.runners import Runner
from psdriver.bridge.runners.local import LocalRunner
from psdriver.sim import SimHost, SimRunner
from tests.infra.fake_pwsh import BIN_DIR
from tests.infra.wsman_endpoint import WSManEndpoint

#: Everything PowerShell treats specially somewhere: all five single and
#: four double quote characters it accepts, subexpressions, escapes,
#: statement separators, comments, here-string terminators, redirections.
HOSTILE = [
    "'", '"', '\u2018', '\u2019', '\u201a', '\u201b', '\u201c', '\u201d', '\u201e',
    '$(Stop-Computer -Force)', '${env:PATH}', '$null', '`', '`n', '`0', ';', '|', '&',
    '&&', '||', '#', '<#', '#>', '\n', '\r\n', '\x00', "'@", '"@', "\n'@\n", '\n"@\n',
    '@(', '@{', '}', ')', '--%', '2>&1', '> C:\\x', '\\\\server\\share', '%', '\t',
    '\U0001F600', '\u202e', '\ufeff', '\u2028',
    # valid in JSON, not in XML 1.0 (PSRP): escaped in the document and the result
    '\ufffe', '\uffff',
]

hostile_text = st.lists(
    st.one_of(st.sampled_from(HOSTILE),
              st.text(st.characters(exclude_categories=('Cs',)), max_size=20)),
    max_size=12).map(''.join)

BIG = ("x'; Remove-Item -Recurse C:\\ # \u2019$(whoami)`\n'@\x00" * 2000)[:100_000]
EXPLICIT = ["vm'01 \"; Remove-VM *; $(whoami)", "\n'@\nStop-Computer\n'@", '\x00', BIG,
            '\u2018; Stop-Computer; \u2019', '', ' ', 'a\ufffeb\uffffc']


class Recording(Runner):
    """Wraps a runner and keeps every ScriptCall it was given."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    @property
    def target(self):
        return self.inner.target

    @property
    def features(self):
        return self.inner.features

    def run(self, call):
        self.calls.append(call)
        return self.inner.run(call)

    def close(self):
        self.inner.close()


def _bridge(inner):
    return Bridge(Recording(inner))


def _check(bridge, value):
    expected_text = bridge.renderer.render('Test-PsDriverConnection', bridge.runner.features)
    result = bridge.call('Test-PsDriverConnection', {'Echo': value})
    call = bridge.runner.calls[-1]
    assert call.text == expected_text
    assert decode_document(call.document) == {'Echo': value}
    assert result['echo'] == value


@pytest.fixture(scope='module')
def sim_bridge():
    bridge = _bridge(SimRunner(SimHost()))
    yield bridge
    bridge.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile_text)
@example(value=BIG)
@example(value='\u2018; Stop-Computer; \u2019')
def test_values_arrive_exactly_through_the_simulated_host(sim_bridge, value):
    _check(sim_bridge, value)


@settings(max_examples=200, deadline=None)
@given(value=hostile_text, other=hostile_text)
def test_rendered_text_never_depends_on_values(sim_bridge, value, other):
    sim_bridge.call('Test-PsDriverConnection', {'Echo': value})
    sim_bridge.call('Test-PsDriverConnection', {'Echo': other})
    first, second = sim_bridge.runner.calls[-2:]
    assert first.text.encode('utf-8') == second.text.encode('utf-8')


@settings(max_examples=100, deadline=None)
@given(value=hostile_text)
def test_document_round_trips(value):
    params = {'Echo': value, 'Nested': {'list': [value, 1, None, True]}}
    document = encode_document(params)
    assert '\n' not in document and '\ufffe' not in document and '\uffff' not in document
    assert decode_document(document) == params
    assert ascii_document(document).isascii()
    assert decode_document(ascii_document(document)) == params


# -- a real process: the stand-in pwsh ---------------------------------------------------

@pytest.fixture(scope='module')
def process_bridge(tmp_path_factory):
    if os.name == 'nt':
        pytest.skip('the stand-in pwsh is a POSIX script')
    bindir = tmp_path_factory.mktemp('bin')
    (bindir / 'pwsh').symlink_to(Path(BIN_DIR) / 'pwsh')
    path = os.pathsep.join([str(bindir), os.path.dirname(sys.executable),
                            os.environ.get('PATH', os.defpath)])
    bridge = _bridge(LocalRunner(env={'PATH': path}))
    yield bridge
    bridge.close()


@settings(max_examples=15, deadline=None)
@given(value=hostile_text)
def test_values_arrive_exactly_through_a_process(process_bridge, value):
    _check(process_bridge, value)


@pytest.mark.parametrize('value', EXPLICIT, ids=range(len(EXPLICIT)))
def test_explicit_hostile_values_through_a_process(process_bridge, value):
    _check(process_bridge, value)
    assert 'local_process' in process_bridge.runner.features


# -- a kept process: the stand-in pwsh -s ---------------------------------------------------

@pytest.fixture(scope='module')
def kept_bridge(tmp_path_factory):
    if os.name == 'nt':
        pytest.skip('the stand-in pwsh is a POSIX script')
    from psdriver.bridge.runners.kept import KeptProcessRunner
    bindir = tmp_path_factory.mktemp('keptbin')
    (bindir / 'pwsh').symlink_to(Path(BIN_DIR) / 'pwsh')
    path = os.pathsep.join([str(bindir), os.path.dirname(sys.executable),
                            os.environ.get('PATH', os.defpath)])
    bridge = _bridge(KeptProcessRunner(pool_size=1, env={'PATH': path}))
    yield bridge
    bridge.close()


@settings(max_examples=15, deadline=None)
@given(value=hostile_text)
def test_values_arrive_exactly_through_a_kept_process(kept_bridge, value):
    _check(kept_bridge, value)


@pytest.mark.parametrize('value', EXPLICIT, ids=range(len(EXPLICIT)))
def test_explicit_hostile_values_through_a_kept_process(kept_bridge, value):
    _check(kept_bridge, value)


# -- PowerShell Remoting: the local WS-Man endpoint ---------------------------------------

@pytest.fixture(scope='module')
def psrp_bridge():
    from psdriver.bridge.runners.psrp import PSRPRunner
    host = SimHost()
    with WSManEndpoint(username='admin', password='pw', host=host) as ep:
        runner = PSRPRunner('127.0.0.1', port=ep.port, username='admin', password='pw',
                            ssl=False, auth='basic', message_encryption='never',
                            insecure_cleartext_basic_auth=True,
                            operation_timeout=5)
        bridge = _bridge(runner)
        bridge.endpoint = ep
        yield bridge
        bridge.close()


@pytest.mark.parametrize('value', EXPLICIT, ids=range(len(EXPLICIT)))
def test_explicit_hostile_values_through_psrp(psrp_bridge, value):
    _check(psrp_bridge, value)
    seen = psrp_bridge.endpoint.pipelines[-1]
    assert seen.params[INPUT_PARAMETER] == encode_document({'Echo': value})
    assert seen.script == loader_text('Test-PsDriverConnection')
