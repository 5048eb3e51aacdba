"""Fault injection: fail, delay, garbage, host down."""

from __future__ import annotations

import json
import time

import pytest

from psdriver.bridge import envelope, errors
from psdriver.bridge.call import encode_document
from psdriver.sim import SimHostDown, SimTimeout, execute_rendered

from tests.sim.conftest import rendered


@pytest.fixture
def new_vm(script_dir, register):
    script_dir('New-SimFaultVm', '[string]$Name')
    register('New-SimFaultVm', lambda h, p: h.create_vm(p['Name']).name)

    def call(host, name, **kwargs):
        return execute_rendered(rendered('New-SimFaultVm'), encode_document({'Name': name}),
                                host, **kwargs)
    return call


def test_fail_returns_the_error_and_skips_the_cmdlet(host, new_vm):
    host.faults.fail('New-SimFaultVm', 'Access is denied.', category='PermissionDenied',
                     times=2, error_id='E1', target='vm')
    for _ in range(2):
        with pytest.raises(errors.ScriptPermissionDenied) as exc:
            envelope.parse(new_vm(host, 'a'), 'New-SimFaultVm', 'sim')
        assert (exc.value.message, exc.value.error_id, exc.value.error_target) == \
            ('Access is denied.', 'E1', 'vm')
        assert host.find_vm('a') is None
    assert json.loads(new_vm(host, 'a'))['ok'] is True
    assert host.faults.pending() == []


def test_patterns_and_permanent_faults(host, new_vm):
    host.faults.fail('Get-*', 'not me')
    host.faults.fail('new-sim*', 'every time', times=None)
    for name in ('a', 'b', 'c'):
        assert json.loads(new_vm(host, name))['error']['message'] == 'every time'
    assert [r.script for r in host.faults.pending()] == ['Get-*', 'new-sim*']
    host.faults.clear()
    assert json.loads(new_vm(host, 'a'))['ok'] is True


def test_delay_slows_the_call(host, new_vm):
    host.faults.delay('New-SimFaultVm', 0.3)
    started = time.monotonic()
    assert json.loads(new_vm(host, 'a'))['ok'] is True
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    new_vm(host, 'b')
    assert time.monotonic() - started < 0.3                # used up


def test_delay_beyond_the_timeout_times_out_without_running(host, new_vm):
    host.faults.delay('New-SimFaultVm', 30)
    started = time.monotonic()
    with pytest.raises(SimTimeout):
        new_vm(host, 'a', timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 5
    assert host.find_vm('a') is None


def test_delay_and_failure_combine(host, new_vm):
    host.faults.delay('*', 0.1)
    host.faults.fail('*', 'slow and broken')
    started = time.monotonic()
    assert json.loads(new_vm(host, 'a'))['error']['message'] == 'slow and broken'
    assert time.monotonic() - started >= 0.1


def test_garbage_is_not_an_envelope(host, new_vm):
    host.faults.garbage('New-SimFaultVm')
    with pytest.raises(errors.BridgeBadOutput):
        envelope.parse(new_vm(host, 'a'), 'New-SimFaultVm', 'sim')
    host.faults.garbage('New-SimFaultVm', text='')
    with pytest.raises(errors.BridgeBadOutput, match='no output'):
        envelope.parse(new_vm(host, 'a'), 'New-SimFaultVm', 'sim')
    assert host.find_vm('a') is None


def test_host_down_and_up(host, new_vm):
    host.faults.fail('*', 'queued')
    host.faults.host_down()
    assert host.faults.is_down
    with pytest.raises(SimHostDown):
        new_vm(host, 'a')
    assert len(host.faults.pending()) == 1                 # nothing consumed while down
    host.faults.host_up()
    assert json.loads(new_vm(host, 'a'))['error']['message'] == 'queued'
    assert json.loads(new_vm(host, 'a'))['ok'] is True


def test_bad_fault_arguments(host):
    with pytest.raises(ValueError):
        host.faults.fail('*', 'x', times=0)
    with pytest.raises(ValueError):
        host.faults.delay('*', -1)


def test_a_delayed_call_does_not_block_the_host(host, new_vm):
    import threading
    host.faults.delay('New-SimFaultVm', 0.5)
    slow = threading.Thread(target=new_vm, args=(host, 'slow'))
    slow.start()
    time.sleep(0.05)
    started = time.monotonic()
    host.create_vm('meanwhile')
    assert time.monotonic() - started < 0.3
    slow.join()
    assert host.find_vm('slow') is not None
