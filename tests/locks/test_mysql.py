"""Locks on a real MariaDB (tooz ``mysql://``): contention, dead holders, server loss."""

from __future__ import annotations

import time

import pytest

from psdriver.coordination import Coordinator, LockBackendError, LockLost, LockTimeout
from tests.daemons import run_mariadb

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def make_coordinator():
    made: list[Coordinator] = []

    def factory(url: str) -> Coordinator:
        coordinator = Coordinator(backend_url=url, lock_path='')
        coordinator.start()
        made.append(coordinator)
        return coordinator

    yield factory
    for coordinator in made:
        coordinator.stop()


def test_lock_held_by_another_process_times_out_then_frees(mariadb_server, make_coordinator,
                                                          hold_lock):
    url = mariadb_server.tooz_url()
    holder = hold_lock('--url', url, '--name', 'failover-instance-00000001')
    waiter = make_coordinator(url)

    started = time.monotonic()
    with pytest.raises(LockTimeout):
        with waiter.lock('failover-instance-00000001', timeout=1):
            pass
    assert time.monotonic() - started >= 0.9

    assert holder.release() == 0
    with waiter.lock('failover-instance-00000001', timeout=5):
        pass


def test_lock_of_killed_holder_is_freed_with_its_connection(mariadb_server, make_coordinator,
                                                           hold_lock):
    """MySQL locks live as long as the holder's session: no TTL to wait for."""
    url = mariadb_server.tooz_url()
    holder = hold_lock('--url', url, '--name', 'vm-killed')
    waiter = make_coordinator(url)

    holder.kill()
    started = time.monotonic()
    with waiter.lock('vm-killed', timeout=10):
        waited = time.monotonic() - started

    assert waited < 3


def test_server_going_away_is_a_clear_error_and_locks_come_back(make_coordinator, caplog):
    with run_mariadb() as (daemon, server):
        url = server.tooz_url()
        coordinator = make_coordinator(url)
        entered = []

        with pytest.raises(LockLost) as lost:
            with coordinator.lock('failover-instance-00000002', timeout=5):
                entered.append(1)
                daemon.stop()
        assert 'failover-instance-00000002' in str(lost.value)

        # While it is away, nobody gets the lock: the body never runs a second time.
        with pytest.raises(LockBackendError) as down:
            with coordinator.lock('failover-instance-00000002', timeout=2):
                entered.append(2)
        assert 'failover-instance-00000002' in str(down.value)
        assert entered == [1]

        daemon.start()
        with coordinator.lock('failover-instance-00000002', timeout=5):
            entered.append(3)
        assert entered == [1, 3]

    messages = caplog.text + str(lost.value) + str(down.value)
    assert server.password not in messages


def test_unreachable_server_fails_start_without_credentials():
    with run_mariadb() as (daemon, server):
        daemon.stop()
        coordinator = Coordinator(backend_url=server.tooz_url(), lock_path='')
        with pytest.raises(LockBackendError) as exc:
            coordinator.start()

    assert 'cannot start the lock backend mysql://***@127.0.0.1' in str(exc.value)
    assert server.password not in str(exc.value)
