"""PSRPRunner against a real WS-Man endpoint (tests.infra.wsman_endpoint) over HTTP(S).

pypsrp is the real client; only the host side is simulated.  Each test gets its
own endpoint on an ephemeral port.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time

import pytest

from psdriver.bridge import envelope, errors
from psdriver.bridge.call import (
    HASH_PARAMETER, INPUT_PARAMETER, TEXT_PARAMETER, ScriptCall, decode_document, encode_document,
    loader_text, script_digest,
)
from psdriver.bridge.runners import Runner
from psdriver.bridge.runners.psrp import PSRPRunner
from tests.infra import certs
from tests.infra.wsman_endpoint import WSManEndpoint

USER = 'hvadmin'
PASSWORD = 'S3cret-pässword!'
SCRIPT = "param([string]$PsDriverInput)\n# structure only: values arrive as the parameter\n"


def envelope_echo(script, params):
    """Host side: answer with the decoded input document, like a wrapped script would."""
    doc = decode_document(params[INPUT_PARAMETER])
    return [json.dumps({'ok': True, 'result': {'echo': doc, 'params': sorted(params)}})], []


def make_call(params=None, timeout=10.0, name='Test-PsDriverConnection', text=SCRIPT):
    params = {'Echo': 'hi'} if params is None else params
    return ScriptCall(name=name, text=text, params=params, document=encode_document(params),
                      timeout=timeout)


def make_runner(ep, **kw):
    opts = {'port': ep.port, 'username': USER, 'password': PASSWORD, 'ssl': False,
            'auth': 'basic', 'message_encryption': 'never', 'reconnect_backoff': 0.01,
            'reconnect_attempts': 2, 'operation_timeout': 5,
            'insecure_cleartext_basic_auth': True}
    opts.update(kw)
    return PSRPRunner('127.0.0.1', **opts)


@pytest.fixture
def endpoint():
    with WSManEndpoint(username=USER, password=PASSWORD, handler=envelope_echo) as ep:
        yield ep
    assert ep.live_threads() == []


@pytest.fixture
def runner(endpoint):
    r = make_runner(endpoint)
    yield r
    r.close()


def result_of(text):
    doc = json.loads(text)
    assert doc['ok'] is True
    return doc['result']


# -- basic behaviour ----------------------------------------------------------------------------

def test_is_a_runner_with_no_features(runner, endpoint):
    assert isinstance(runner, Runner)
    assert runner.features == frozenset()
    assert runner.target == f'psrp://127.0.0.1:{endpoint.port}'


def test_first_call_defines_the_script_later_calls_send_its_hash(runner, endpoint):
    params = {'Echo': "it's \"quoted\"; $(Remove-Item C:\\) `n", 'Number': 7}
    call = make_call(params)
    out = result_of(runner.run(call))
    assert out['echo'] == params
    seen = endpoint.pipelines[-1]
    assert seen.script == loader_text(call.name)
    assert seen.params == {INPUT_PARAMETER: call.document, TEXT_PARAMETER: call.text,
                           HASH_PARAMETER: script_digest(call.text)}
    assert seen.is_script and seen.command_count == 1
    again = make_call({'Echo': 'again'})
    assert result_of(runner.run(again))['echo'] == {'Echo': 'again'}
    assert endpoint.pipelines[-1].params == {INPUT_PARAMETER: again.document,
                                             HASH_PARAMETER: script_digest(call.text)}
    assert endpoint.scripts_defined() == 1


def test_a_runspace_that_does_not_know_the_hash_gets_the_text(runner, endpoint):
    runner.run(make_call({'n': 1}))
    endpoint.forget_scripts()          # as if the next pipeline landed in a new runspace
    assert result_of(runner.run(make_call({'n': 2})))['echo'] == {'n': 2}
    sent = [p.params for p in endpoint.pipelines]
    assert [TEXT_PARAMETER in p for p in sent] == [True, False, True]
    assert sum(1 for p in sent if p[INPUT_PARAMETER] == encode_document({'n': 2})) == 2
    # a changed script has another hash: the new text is sent, never the old one run
    changed = SCRIPT + '# changed\n'
    runner.run(make_call({'n': 3}, text=changed))
    assert endpoint.pipelines[-1].params[TEXT_PARAMETER] == changed


def test_large_script_and_document_arrive_intact(runner, endpoint):
    # ~700 KB of script and ~400 KB of document: the pipeline spans Command + Send requests
    text = SCRIPT + ('# ' + 'y' * 98 + '\n') * 7000
    params = {'blob': 'z' * 300_000}
    assert result_of(runner.run(make_call(params, text=text)))['echo'] == params
    assert endpoint.pipelines[-1].params[TEXT_PARAMETER] == text
    assert endpoint.action_count('Send') >= 1


def test_pool_is_opened_once_and_reused(runner, endpoint):
    calls = 6
    for i in range(calls):
        assert result_of(runner.run(make_call({'i': i})))['echo'] == {'i': i}
    assert endpoint.action_count('Create') == 1
    assert runner.pools_opened == 1
    assert endpoint.action_count('Command') == calls
    # every finished pipeline is closed (Signal Terminate), as WS-Man requires
    assert endpoint.action_count('Signal') == calls
    assert endpoint.open_shells == 1
    runner.close()
    runner.close()   # safe twice
    assert endpoint.action_count('Delete') == 1
    assert endpoint.open_shells == 0
    with pytest.raises(errors.BridgeTransportError, match='closed'):
        runner.run(make_call())


def test_rejects_bad_option_combination_at_construction(endpoint):
    with pytest.raises(ValueError, match='encryption'):
        make_runner(endpoint, message_encryption='auto')   # basic auth over HTTP


def test_idle_pool_is_replaced(endpoint):
    r = make_runner(endpoint, idle_recycle=0.0)
    try:
        r.run(make_call())
        r.run(make_call())
    finally:
        r.close()
    assert endpoint.action_count('Create') == 2
    assert endpoint.action_count('Delete') == 2


# -- failures -----------------------------------------------------------------------------------

def test_wrong_password_is_an_authentication_error_not_retried(endpoint):
    r = make_runner(endpoint, password='wrong', reconnect_attempts=3)
    with pytest.raises(errors.BridgeAuthenticationError) as info:
        r.run(make_call())
    r.close()
    assert endpoint.rejected == 1
    assert 'wrong' not in str(info.value)
    assert info.value.target == r.target


def test_rejected_auth_later_is_an_authentication_error(runner, endpoint):
    runner.run(make_call())
    endpoint.faults.reject_auth = True
    with pytest.raises(errors.BridgeAuthenticationError):
        runner.run(make_call())


def test_error_stream_without_envelope_is_bridge_error_with_tail():
    def handler(script, params):
        return [], ['Get-VM : access to the WMI namespace was denied', 'second line']

    with WSManEndpoint(username=USER, password=PASSWORD, handler=handler) as ep:
        r = make_runner(ep)
        with pytest.raises(errors.BridgeError) as info:
            r.run(make_call())
        r.close()
    exc = info.value
    assert type(exc) is errors.BridgeError
    assert 'WMI namespace was denied' in exc.stderr_tail
    assert 'second line' in exc.stderr_tail
    assert exc.script == 'Test-PsDriverConnection'


def test_failed_pipeline_without_envelope_is_bridge_error():
    def handler(script, params):
        raise RuntimeError('The term Get-VM is not recognized')

    with WSManEndpoint(username=USER, password=PASSWORD, handler=handler) as ep:
        r = make_runner(ep)
        with pytest.raises(errors.BridgeError, match='failed without writing') as info:
            r.run(make_call())
        r.close()
    assert 'Get-VM is not recognized' in info.value.stderr_tail


def test_envelope_wins_over_error_records():
    def handler(script, params):
        return ['{"ok":true,"result":1}'], ['a non-terminating warning-like error']

    with WSManEndpoint(username=USER, password=PASSWORD, handler=handler) as ep:
        r = make_runner(ep)
        assert r.run(make_call()) == '{"ok":true,"result":1}'
        r.close()


def test_timeout_stops_pipeline_and_recycles_pool(runner, endpoint):
    runner.run(make_call())
    endpoint.faults.slow_pipelines(30)
    started = time.monotonic()
    with pytest.raises(errors.BridgeTimeout) as info:
        runner.run(make_call(timeout=1))
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 4
    assert 'stopped' in str(info.value)
    # the server was told to stop the pipeline, and the old pool was deleted
    assert endpoint.action_count('Signal') >= 2
    assert endpoint.action_count('Delete') == 1
    endpoint.faults.clear()
    assert result_of(runner.run(make_call({'after': True})))['echo'] == {'after': True}
    assert endpoint.action_count('Create') == 2
    assert runner.pools_opened == 2


def test_dropped_open_is_retried_on_a_new_connection(runner, endpoint):
    endpoint.faults.drop('Create')
    assert result_of(runner.run(make_call()))['echo'] == {'Echo': 'hi'}
    assert endpoint.action_count('Create') == 2
    assert runner.pools_opened == 1


def test_lost_command_response_is_not_retried(runner, endpoint):
    runner.run(make_call())
    endpoint.faults.drop('Command', after_processing=True)
    with pytest.raises(errors.BridgeTransportError, match='may have started'):
        runner.run(make_call({'once': 1}))
    # the pipeline reached the host exactly once: no blind retry
    assert sum(1 for p in endpoint.pipelines
               if decode_document(p.params[INPUT_PARAMETER]) == {'once': 1}) == 1
    assert result_of(runner.run(make_call()))['echo'] == {'Echo': 'hi'}
    assert endpoint.action_count('Create') == 2


def test_lost_connection_while_running_is_not_retried(runner, endpoint):
    runner.run(make_call())
    endpoint.faults.slow_pipelines(0.3)
    endpoint.faults.drop('Receive')
    with pytest.raises(errors.BridgeTransportError, match='may have completed'):
        runner.run(make_call({'once': 2}))
    endpoint.faults.clear()
    assert len([p for p in endpoint.pipelines
                if decode_document(p.params[INPUT_PARAMETER]) == {'once': 2}]) == 1
    assert result_of(runner.run(make_call()))['echo'] == {'Echo': 'hi'}


def test_host_restart_between_calls_reconnects_transparently(runner, endpoint):
    runner.run(make_call())
    endpoint.restart()   # WinRM restarted: the shell is gone, same port
    assert result_of(runner.run(make_call({'n': 2})))['echo'] == {'n': 2}
    assert endpoint.action_count('Create') == 2
    assert runner.pools_opened == 2


def test_fault_instead_of_command_acceptance_is_retried_on_a_new_pool(runner, endpoint):
    runner.run(make_call())
    endpoint.faults.fault('Command')   # e.g. MaxConcurrentCommandsPerShell reached
    assert result_of(runner.run(make_call({'n': 4})))['echo'] == {'n': 4}
    assert endpoint.action_count('Command') == 3
    assert len(endpoint.pipelines) == 2
    assert runner.pools_opened == 2


def test_host_down_gives_transport_error_then_recovers(runner, endpoint):
    runner.run(make_call())
    endpoint.down()
    started = time.monotonic()
    with pytest.raises(errors.BridgeTransportError, match=r'after 3 attempt') as info:
        runner.run(make_call())
    assert not isinstance(info.value, errors.BridgeAuthenticationError)
    assert time.monotonic() - started < 2
    endpoint.up()
    assert result_of(runner.run(make_call({'n': 3})))['echo'] == {'n': 3}


# -- size, TLS, concurrency, logging --------------------------------------------------------------

def test_two_megabytes_of_output():
    blob = 'x' * (2 * 1024 * 1024)

    def handler(script, params):
        return [json.dumps({'ok': True, 'result': blob})], []

    with WSManEndpoint(username=USER, password=PASSWORD, handler=handler) as ep:
        r = make_runner(ep)
        out = r.run(make_call())
        r.close()
        # the output came back in several Receive responses
        assert ep.action_count('Receive') > 2
    assert result_of(out) == blob


def _self_signed(folder):
    return certs.self_signed(folder)


def test_tls_validates_against_given_ca_and_rejects_unknown_by_default(tmp_path, monkeypatch):
    for var in ('REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'):
        monkeypatch.delenv(var, raising=False)
    cert, key = _self_signed(tmp_path)
    with WSManEndpoint(username=USER, password=PASSWORD, handler=envelope_echo,
                       certfile=cert, keyfile=key) as ep:
        assert ep.url.startswith('https://')
        trusted = make_runner(ep, ssl=True, cert_validation=cert, message_encryption='auto')
        assert result_of(trusted.run(make_call()))['echo'] == {'Echo': 'hi'}
        trusted.close()

        default = make_runner(ep, ssl=True, message_encryption='auto', reconnect_attempts=3)
        with pytest.raises(errors.BridgeTransportError, match='psrp_cert_validation') as info:
            default.run(make_call())
        default.close()
        assert 'certificate' in str(info.value).lower()
        assert ep.action_count('Create') == 1   # only the trusted runner got through


def test_concurrent_calls_share_one_pool(endpoint):
    active, peak, lock = [0], [0], threading.Lock()

    def slow_echo(script, params):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return envelope_echo(script, params)

    endpoint._handler = slow_echo
    r = make_runner(endpoint, pool_size=4)
    results, failures = {}, []

    def worker(n):
        try:
            for i in range(4):
                results[(n, i)] = result_of(r.run(make_call({'thread': n, 'i': i})))['echo']
        except Exception as exc:   # reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    r.close()
    assert failures == []
    assert results == {(n, i): {'thread': n, 'i': i} for n in range(6) for i in range(4)}
    assert endpoint.action_count('Create') == 1
    assert 1 < peak[0] <= 4   # ran in parallel, within the pool's runspaces


def test_timeout_does_not_break_a_concurrent_call_on_the_same_pool(endpoint):
    def handler(script, params):
        time.sleep(decode_document(params[INPUT_PARAMETER])['sleep'])
        return envelope_echo(script, params)

    endpoint._handler = handler
    r = make_runner(endpoint)
    r.run(make_call({'sleep': 0}))
    outcome = {}

    def other():
        outcome['other'] = result_of(r.run(make_call({'sleep': 1.4})))['echo']

    t = threading.Thread(target=other)
    t.start()
    with pytest.raises(errors.BridgeTimeout):
        r.run(make_call({'sleep': 1.6}, timeout=1))
    # the pool was retired, not closed under the call still running on it
    assert endpoint.action_count('Delete') == 0
    t.join(10)
    assert outcome == {'other': {'sleep': 1.4}}
    assert endpoint.action_count('Delete') == 1
    r.run(make_call({'sleep': 0}))
    r.close()
    assert endpoint.action_count('Create') == 2


def test_debug_logs_hold_neither_password_nor_input(runner, caplog):
    secret = 'AdminPassw0rd-for-the-guest'
    caplog.set_level(logging.DEBUG)
    runner.run(make_call({'AdminPassword': secret}))
    # psrpcore and the endpoint are the host side, which shares this process here
    client = [r for r in caplog.records if not r.name.startswith(('psrpcore', 'psdriver.sim'))]
    text = '\n'.join(r.getMessage() for r in client)
    assert any(r.name.startswith('pypsrp') for r in client)   # pypsrp did log
    document = encode_document({'AdminPassword': secret})
    basic = base64.b64encode(f'{USER}:{PASSWORD}'.encode()).decode()
    for leaked in (secret, document, PASSWORD, basic):
        assert leaked not in text


def test_endpoint_starts_fast_and_stops_clean():
    started = time.perf_counter()
    ep = WSManEndpoint(handler=envelope_echo).start()
    startup = time.perf_counter() - started
    r = PSRPRunner('127.0.0.1', port=ep.port, username='psdriver', password='psdriver',
                   ssl=False, auth='basic', message_encryption='never',
                   insecure_cleartext_basic_auth=True)
    r.run(make_call())
    ep.stop()
    r.close()
    assert startup < 0.1
    assert ep.live_threads() == []
    assert not [t for t in threading.enumerate() if t.name.startswith('wsman-')]


# -- the simulated host behind the endpoint ---------------------------------------------------

def sim_call(name, params, timeout=10.0):
    # the simulator reads the script name from the rendered text's first line
    return make_call(params, timeout=timeout, name=name,
                     text=f'# psdriver-script: {name}\n' + SCRIPT)


@pytest.fixture
def sim_endpoint():
    sim = pytest.importorskip('psdriver.sim')
    host = sim.SimHost()
    try:
        sim.execute_rendered(sim_call('Test-PsDriverConnection', {'Echo': 'probe'}).text,
                             encode_document({'Echo': 'probe'}), host)
    except Exception as exc:   # the simulator or ps_scripts/ are not complete yet
        pytest.skip(f'simulated host cannot run Test-PsDriverConnection yet: {exc}')
    with WSManEndpoint(username=USER, password=PASSWORD, host=host) as ep:
        r = make_runner(ep)
        yield r, ep, host
        r.close()


def test_sim_echo_and_typed_error(sim_endpoint):
    r, ep, host = sim_endpoint
    value = "vm'01 \"; Remove-VM *; $(whoami)"
    ok = envelope.parse(r.run(sim_call('Test-PsDriverConnection', {'Echo': value})),
                        'Test-PsDriverConnection', r.target)
    assert ok['echo'] == value
    host.faults.fail('Get-HostInfo', 'boom', category='ObjectNotFound')
    with pytest.raises(errors.ScriptObjectNotFound, match='boom'):
        envelope.parse(r.run(sim_call('Get-HostInfo', {})), 'Get-HostInfo', r.target)
    assert ep.action_count('Create') == 1


def test_sim_delay_times_out_and_next_call_works(sim_endpoint):
    r, ep, host = sim_endpoint
    host.faults.delay('Get-HostInfo', 2.0)
    with pytest.raises(errors.BridgeTimeout):
        r.run(sim_call('Get-HostInfo', {}, timeout=1))
    ok = envelope.parse(r.run(sim_call('Test-PsDriverConnection', {'Echo': 'next'})),
                        'Test-PsDriverConnection', r.target)
    assert ok['echo'] == 'next'
    assert ep.action_count('Create') == 2


def test_sim_host_down_is_a_transport_error_until_it_is_back(sim_endpoint):
    r, ep, host = sim_endpoint
    r.run(sim_call('Test-PsDriverConnection', {'Echo': 'one'}))
    host.faults.host_down()
    with pytest.raises(errors.BridgeTransportError):
        r.run(sim_call('Test-PsDriverConnection', {'Echo': 'two'}))
    host.faults.host_up()
    ok = envelope.parse(r.run(sim_call('Test-PsDriverConnection', {'Echo': 'three'})),
                        'Test-PsDriverConnection', r.target)
    assert ok['echo'] == 'three'


# -- through the Bridge with the simulated host ------------------------------------------------

def _contains(data, value):
    if isinstance(data, dict):
        return any(_contains(v, value) for v in data.values())
    if isinstance(data, list):
        return any(_contains(v, value) for v in data)
    return data == value


@pytest.fixture
def sim_bridge():
    pytest.importorskip('psdriver.bridge.render')
    sim = pytest.importorskip('psdriver.sim')
    if not hasattr(sim, 'execute_rendered'):
        pytest.skip('psdriver.sim.execute_rendered not available yet')
    from psdriver.bridge.client import Bridge

    host = sim.SimHost()
    with WSManEndpoint(username=USER, password=PASSWORD, host=host) as ep:
        bridge = Bridge(make_runner(ep))
        yield bridge, ep, host
        bridge.close()


def test_bridge_echo_through_psrp(sim_bridge):
    bridge, ep, _ = sim_bridge
    value = "vm'01 \"; Remove-VM *; $(whoami)"
    result = bridge.call('Test-PsDriverConnection', {'Echo': value})
    assert _contains(result, value)
    seen = ep.pipelines[-1]
    assert seen.script == loader_text('Test-PsDriverConnection')
    assert seen.params[TEXT_PARAMETER] == bridge.renderer.render('Test-PsDriverConnection',
                                                                 frozenset())
    assert seen.params[INPUT_PARAMETER] == encode_document({'Echo': value})
    assert value not in seen.script and value not in seen.params[TEXT_PARAMETER]


def test_bridge_host_info_and_typed_errors(sim_bridge):
    bridge, ep, host = sim_bridge
    info = bridge.call('Get-HostInfo', {})
    assert isinstance(info, dict)
    host.faults.fail('Get-HostInfo', 'boom', category='ObjectNotFound')
    with pytest.raises(errors.ScriptObjectNotFound, match='boom'):
        bridge.call('Get-HostInfo', {})
    assert ep.action_count('Create') == 1


def test_bridge_timeout_then_next_call_works(sim_bridge):
    bridge, ep, host = sim_bridge
    host.faults.delay('Get-HostInfo', 2.0)
    with pytest.raises(errors.BridgeTimeout):
        bridge.call('Get-HostInfo', {}, timeout=1)
    host.faults.clear()
    assert bridge.call('Test-PsDriverConnection', {'Echo': 'again'}) is not None
    assert ep.action_count('Create') == 2


def test_requests_session_reads_the_environment_once_not_per_request(runner, monkeypatch):
    runner.run(make_call())
    (session,) = runner._sessions
    assert session.wsman.transport.session.trust_env is False
    # requests would look up proxies in the environment again for every request
    for var in ('HTTP_PROXY', 'http_proxy', 'ALL_PROXY'):
        monkeypatch.setenv(var, 'http://127.0.0.1:9')
    for var in ('NO_PROXY', 'no_proxy'):
        monkeypatch.delenv(var, raising=False)
    assert result_of(runner.run(make_call({'again': 1})))['echo'] == {'again': 1}
