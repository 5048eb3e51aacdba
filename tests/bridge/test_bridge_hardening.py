"""Hostile input from the host or the caller, unsafe options, and what the logs may hold.

Every runner is exercised for real: the simulated host in process, the
stand-in ``pwsh`` (one process per call and kept ``-s`` processes) and the
local WS-Man endpoint through pypsrp.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import sys
from pathlib import Path

import pytest
from oslo_config import cfg

import psdriver.conf
from psdriver.bridge import errors
from psdriver.bridge.client import Bridge
from psdriver.bridge.factory import build_runner
from psdriver.bridge.runners.kept import KeptProcessRunner
from psdriver.bridge.runners.local import LocalRunner
from psdriver.bridge.runners.psrp import PSRPRunner
from psdriver.sim import SimHost, SimRunner
from tests.infra.fake_pwsh import BIN_DIR
from tests.infra.wsman_endpoint import WSManEndpoint

USER, PASSWORD = 'hvadmin', 'S3cret-pw'
DEEP = '{"ok":true,"result":' + '[' * 1000 + ']' * 1000 + '}'
posix_only = pytest.mark.skipif(os.name == 'nt', reason='the stand-in pwsh is a POSIX script')


def psrp_runner(ep, **kw):
    opts = {'port': ep.port, 'username': USER, 'password': PASSWORD, 'ssl': False,
            'auth': 'basic', 'message_encryption': 'never', 'reconnect_backoff': 0.01,
            'reconnect_attempts': 1, 'operation_timeout': 5,
            'insecure_cleartext_basic_auth': True}
    opts.update(kw)
    return PSRPRunner('127.0.0.1', **opts)


@pytest.fixture
def fake_path(tmp_path):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    (bindir / 'pwsh').symlink_to(Path(BIN_DIR) / 'pwsh')
    return os.pathsep.join([str(bindir), os.path.dirname(sys.executable),
                            os.environ.get('PATH', os.defpath)])


# -- output nested 1,000 levels deep: BridgeBadOutput from every runner ---------------------

def test_deep_output_from_the_simulated_host():
    host = SimHost()
    host.faults.garbage('Get-HostInfo', text=DEEP)
    with pytest.raises(errors.BridgeBadOutput, match='nested too deeply'):
        Bridge(SimRunner(host)).call('Get-HostInfo', {})


@posix_only
def test_deep_output_from_a_process_per_call(fake_path):
    runner = LocalRunner(env={'PATH': fake_path, 'FAKE_PWSH_STDOUT': DEEP})
    with pytest.raises(errors.BridgeBadOutput, match='nested too deeply'):
        Bridge(runner).call('Get-HostInfo', {})


@posix_only
def test_deep_output_from_a_kept_process(fake_path):
    bridge = Bridge(KeptProcessRunner(env={'PATH': fake_path, 'FAKE_PWSH_STDOUT': DEEP}))
    try:
        with pytest.raises(errors.BridgeBadOutput, match='nested too deeply'):
            bridge.call('Get-HostInfo', {})
    finally:
        bridge.close()


def test_deep_output_over_psrp():
    with WSManEndpoint(username=USER, password=PASSWORD,
                       handler=lambda script, params: ([DEEP], [])) as ep:
        bridge = Bridge(psrp_runner(ep))
        try:
            with pytest.raises(errors.BridgeBadOutput, match='nested too deeply'):
                bridge.call('Get-HostInfo', {})
        finally:
            bridge.close()


# -- caller values that cannot travel, host text that is too long ----------------------------

def test_a_lone_surrogate_is_a_clear_bridge_error():
    bridge = Bridge(SimRunner(SimHost()))
    with pytest.raises(errors.BridgeParameterError, match="'Echo'.*lone surrogate"):
        bridge.call('Test-PsDriverConnection', {'Echo': 'abc\ud800def'})
    assert bridge.round_trips == 0


def test_a_huge_host_error_message_is_capped_keeping_head_and_tail():
    host = SimHost()
    message = 'HEAD-' + 'x' * 5_000_000 + '-TAIL'
    host.faults.fail('Get-HostInfo', message, category='InvalidOperation')
    with pytest.raises(errors.ScriptInvalidOperation) as info:
        Bridge(SimRunner(host)).call('Get-HostInfo', {})
    assert len(info.value.message) <= errors.MAX_HOST_TEXT
    assert len(str(info.value)) < errors.MAX_HOST_TEXT + 200
    assert info.value.message.startswith('HEAD-') and info.value.message.endswith('-TAIL')
    assert 'characters cut' in info.value.message


# -- a call that times out after the host started it -----------------------------------------

def test_psrp_timeout_after_the_start_says_the_host_may_have_acted():
    host = SimHost()
    with WSManEndpoint(username=USER, password=PASSWORD, host=host) as ep:
        bridge = Bridge(psrp_runner(ep))
        host.faults.delay('Get-HostInfo', 3.0)
        try:
            with pytest.raises(errors.BridgeTimeoutAfterStart, match='may have done') as info:
                bridge.call('Get-HostInfo', {}, timeout=1)
        finally:
            bridge.close()
    assert info.value.host_may_have_acted
    assert isinstance(info.value, errors.BridgeTimeout)   # callers catching BridgeTimeout see it
    assert ep.action_count('Signal') >= 1                 # the pipeline was stopped


# -- an unreachable host ---------------------------------------------------------------------

def test_unreachable_host_short_retry_lines_and_a_final_error_naming_what_to_check(caplog):
    with socket.socket() as sock:     # a port nobody listens on
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.WARNING)
    runner = PSRPRunner('127.0.0.1', port=port, username=USER, password=PASSWORD, ssl=True,
                        reconnect_attempts=2, reconnect_backoff=0.01, connection_timeout=2)
    with pytest.raises(errors.BridgeTransportError) as info:
        Bridge(runner).call('Get-HostInfo', {})
    text = str(info.value)
    assert f'127.0.0.1 port {port}' in text and 'connection refused' in text
    assert 'psrp_host' in text and 'firewall' in text and len(text) < 500
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2
    assert all(len(line) < 120 and '\n' not in line for line in lines), lines
    assert not any(r.exc_info for r in caplog.records)


# -- unsafe or impossible options, refused at start ------------------------------------------

def _conf(**opts):
    conf = cfg.ConfigOpts()
    psdriver.conf.register_opts(conf)
    conf([], project='nova', default_config_files=[])
    conf.set_override('transport', 'psrp', group='powershell')
    conf.set_override('psrp_host', 'hv01.example.org', group='powershell')
    for key, value in opts.items():
        conf.set_override(key, value, group='powershell')
    return conf


def test_basic_auth_over_plain_http_is_refused_at_start():
    with pytest.raises(errors.BridgeUnavailable, match='basic over plain HTTP') as info:
        build_runner(_conf(psrp_auth='basic', psrp_ssl=False, psrp_port=5985,
                           psrp_message_encryption='never'))
    assert 'in clear' in str(info.value)
    with pytest.raises(ValueError, match='in clear'):
        PSRPRunner('hv01.example.org', port=5985, ssl=False, auth='basic', username='u',
                   password='p', message_encryption='never')


def test_the_lab_opt_in_allows_it_loudly(caplog):
    caplog.set_level(logging.WARNING)
    runner = build_runner(_conf(psrp_auth='basic', psrp_ssl=False, psrp_port=5985,
                                psrp_message_encryption='never', psrp_username='u',
                                psrp_password='p',
                                psrp_insecure_cleartext_basic_auth_lab_only=True))
    runner.close()
    assert any('INSECURE' in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize('value', ['flase', '/no/such/ca-bundle.pem'])
def test_a_cert_validation_value_that_is_no_bool_and_no_file_is_refused(value):
    with pytest.raises(errors.BridgeUnavailable, match='psrp_cert_validation'):
        build_runner(_conf(psrp_cert_validation=value, psrp_username='u', psrp_password='p'))


def test_an_existing_ca_bundle_is_accepted(tmp_path):
    bundle = tmp_path / 'ca.pem'
    bundle.write_text('-----BEGIN CERTIFICATE-----\n')
    runner = build_runner(_conf(psrp_cert_validation=str(bundle), psrp_username='u',
                                psrp_password='p'))
    assert runner.cert_validation == str(bundle)
    runner.close()


@pytest.mark.skipif(importlib.util.find_spec('requests_credssp') is not None,
                    reason='requests-credssp is installed here')
def test_credssp_without_its_dependency_names_the_extra():
    with pytest.raises(errors.BridgeUnavailable, match=r'psdriver\[credssp\]'):
        build_runner(_conf(psrp_auth='credssp', psrp_username='u', psrp_password='p'))


def test_unvalidated_tls_warns_once_per_pool(tmp_path, caplog):
    from tests.bridge.test_psrp_runner import _self_signed, envelope_echo
    cert, key = _self_signed(tmp_path)
    caplog.set_level(logging.WARNING)
    with WSManEndpoint(username=USER, password=PASSWORD, handler=envelope_echo,
                       certfile=cert, keyfile=key) as ep:
        runner = psrp_runner(ep, ssl=True, cert_validation=False, message_encryption='auto',
                             insecure_cleartext_basic_auth=False)
        bridge = Bridge(runner)
        for _ in range(3):
            bridge.runner.run(_echo_call())
        bridge.close()
    warned = [r for r in caplog.records if 'not validated' in r.getMessage()]
    assert len(warned) == 1 and runner.pools_opened == 1


def _echo_call():
    from psdriver.bridge.call import ScriptCall, encode_document
    return ScriptCall(name='Test-PsDriverConnection', text='param([string]$PsDriverInput)\n',
                      params={'Echo': 1}, document=encode_document({'Echo': 1}), timeout=10)


# -- library loggers -------------------------------------------------------------------------

def test_library_loggers_never_write_host_output_or_values(caplog):
    """pypsrp logs a whole output it cannot parse at WARNING; the filter cuts it."""
    import pypsrp.serializer   # noqa: F401 (the logger under test)
    secret = 'guest-admin-password-42'
    record = logging.LogRecord(
        'pypsrp.serializer', logging.WARNING, __file__, 1,
        "Failed to parse data '<S>%s</S>' as XML, return raw xml: bad token" % (secret * 1000),
        (), None)
    logger = logging.getLogger('pypsrp.serializer')
    caplog.set_level(logging.DEBUG)
    logger.handle(record)
    long_record = logging.LogRecord('urllib3.connectionpool', logging.WARNING, __file__, 1,
                                    'Retrying %s', ('x' * 5000 + secret,), None)
    logging.getLogger('urllib3.connectionpool').handle(long_record)
    text = '\n'.join(r.getMessage() for r in caplog.records)
    assert secret not in text
    assert 'characters redacted' in text
    assert all(not r.exc_info for r in caplog.records)


def test_test_doubles_are_not_part_of_the_product():
    assert importlib.util.find_spec('psdriver.sim.wsman_endpoint') is None
    assert importlib.util.find_spec('psdriver.sim.fake_pwsh') is None
    setup = (Path(__file__).resolve().parents[2] / 'setup.cfg').read_text()
    assert 'fake_pwsh' not in setup and 'wsman_endpoint' not in setup
