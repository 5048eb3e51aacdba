"""Locks against a real etcd: timeouts, heartbeats, lost and orphaned locks."""

from __future__ import annotations

import logging
import threading
import time
import traceback

import etcd3gw
import pytest

from psdriver.coordination import Coordinator, LockLost, LockTimeout

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(60)]


@pytest.fixture
def make_coordinator():
    made: list[Coordinator] = []

    def factory(url: str, **kwargs) -> Coordinator:
        coordinator = Coordinator(backend_url=url, lock_path='', **kwargs)
        coordinator.start()
        made.append(coordinator)
        return coordinator

    yield factory
    for coordinator in made:
        coordinator.stop()


def _key_exists(etcd_server, coordinator: Coordinator, name: str) -> bool:
    client = etcd3gw.client(host=etcd_server.host, port=etcd_server.port)
    key = '/tooz/locks' + coordinator.full_name(name)
    return bool(client.get(key))


def test_heartbeat_keeps_lock_past_its_ttl_and_waiter_times_out(
        etcd_server, make_coordinator):
    url = etcd_server.tooz_url(timeout=5, lock_timeout=2)
    holder = make_coordinator(url)
    waiter = make_coordinator(url)
    outcome = {}

    with holder.lock('vm-1'):
        def wait():
            started = time.monotonic()
            try:
                with waiter.lock('vm-1', timeout=3):
                    outcome['acquired'] = True
            except Exception as exc:  # the test inspects the type below
                outcome['error'] = exc
            outcome['waited'] = time.monotonic() - started

        thread = threading.Thread(target=wait)
        thread.start()
        thread.join(20)
        # Held past the 2 s lease TTL by now: only heartbeats keep it.
        assert _key_exists(etcd_server, holder, 'vm-1')
    # Leaving the block released it cleanly (no LockLost).

    assert 'acquired' not in outcome
    assert isinstance(outcome['error'], LockTimeout), repr(outcome['error'])
    assert 'RetryError' not in ''.join(
        traceback.format_exception(outcome['error']))
    assert 2.9 <= outcome['waited'] < 8
    assert not _key_exists(etcd_server, holder, 'vm-1')
    with waiter.lock('vm-1', timeout=3):
        pass


def test_zero_timeout_fails_at_once_when_held(etcd_server, make_coordinator):
    url = etcd_server.tooz_url(timeout=5)
    holder, waiter = make_coordinator(url), make_coordinator(url)

    with holder.lock('vm-2'):
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            with waiter.lock('vm-2', timeout=0):
                pass
        assert time.monotonic() - started < 3


def test_expired_lock_is_reported_lost(etcd_server, make_coordinator, caplog):
    url = etcd_server.tooz_url(timeout=5, lock_timeout=2)
    holder = make_coordinator(url, start_heart=False)
    other = make_coordinator(url)

    with pytest.raises(LockLost) as lost:
        with holder.lock('vm-3'):
            deadline = time.monotonic() + 15
            while _key_exists(etcd_server, holder, 'vm-3'):
                assert time.monotonic() < deadline, 'lease never expired'
                time.sleep(0.2)
            # Someone else can now take the lock the holder still believes in.
            with other.lock('vm-3', timeout=5):
                pass

    assert 'vm-3' in str(lost.value)
    assert any(r.levelno == logging.ERROR and 'was lost' in r.getMessage()
               for r in caplog.records)


def test_lost_lock_does_not_mask_the_body_error(etcd_server, make_coordinator,
                                                caplog):
    url = etcd_server.tooz_url(timeout=5, lock_timeout=2)
    holder = make_coordinator(url, start_heart=False)

    with pytest.raises(KeyError):
        with holder.lock('vm-4'):
            deadline = time.monotonic() + 15
            while _key_exists(etcd_server, holder, 'vm-4'):
                assert time.monotonic() < deadline, 'lease never expired'
                time.sleep(0.2)
            raise KeyError('body failed')

    assert any('was lost' in r.getMessage() for r in caplog.records)


def test_lock_of_killed_holder_expires(etcd_server, make_coordinator, hold_lock):
    url = etcd_server.tooz_url(timeout=5, lock_timeout=2)
    holder = hold_lock('--url', url, '--name', 'vm-5')
    waiter = make_coordinator(url)

    holder.kill()
    started = time.monotonic()
    with waiter.lock('vm-5', timeout=15):
        waited = time.monotonic() - started

    assert waited < 15


def test_released_lock_is_free_for_another_process(etcd_server, make_coordinator,
                                                   hold_lock):
    url = etcd_server.tooz_url(timeout=5)
    holder = hold_lock('--url', url, '--name', 'vm-6')
    waiter = make_coordinator(url)
    with pytest.raises(LockTimeout):
        with waiter.lock('vm-6', timeout=0.5):
            pass

    assert holder.release() == 0
    with waiter.lock('vm-6', timeout=5):
        pass


SECRET = 'Hunter2-Pa55'


def test_credentials_never_logged(etcd_server, make_coordinator, caplog):
    caplog.set_level(logging.DEBUG)
    url = (f'etcd3+http://admin:{SECRET}@{etcd_server.host}:{etcd_server.port}'
           f'?timeout=5&password={SECRET}x')
    coordinator = make_coordinator(url)

    with coordinator.lock('vm-7'):
        pass
    coordinator.stop()

    assert 'Distributed locks use the backend' in caplog.text
    assert SECRET not in caplog.text
    assert 'admin' not in caplog.text
