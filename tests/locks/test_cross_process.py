"""Mutual exclusion between processes, for every kind of lock backend."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.locks.conftest import start_worker

pytestmark = pytest.mark.timeout(90)

HOLD = 0.2
ITERATIONS = 2


def _backend_args(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> list[str]:
    if kind == 'etcd':
        etcd = request.getfixturevalue('etcd_server')
        return ['--url', etcd.tooz_url(timeout=10)]
    if kind == 'mysql':
        return ['--url', request.getfixturevalue('mariadb_server').tooz_url()]
    if kind == 'file':
        return ['--url', f'file://{tmp_path / "tooz"}']
    return ['--lock-path', str(tmp_path / 'local')]


def _contend(backend: list[str], tmp_path: Path, name: str, workers: int = 2,
             no_lock: bool = False, timeout: float = 30, iterations: int = ITERATIONS,
             hold: float = HOLD) -> list[dict]:
    barrier = tmp_path / 'barrier'
    barrier.mkdir()
    args = [*backend, '--name', name, '--iterations', str(iterations),
            '--hold', str(hold), '--marker', str(tmp_path / 'inside'),
            '--barrier', str(barrier), '--timeout', str(timeout)]
    if no_lock:
        args.append('--no-lock')
    procs = [start_worker('contend', *args) for _ in range(workers)]
    deadline = time.monotonic() + 60
    while len(list(barrier.glob('ready-*'))) < workers:
        assert time.monotonic() < deadline, 'workers did not start'
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.02)
    (barrier / 'go').touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.parametrize('kind', ['etcd', 'mysql', 'file', 'local'])
def test_two_processes_never_overlap(kind, tmp_path, request):
    results = _contend(_backend_args(kind, tmp_path, request), tmp_path,
                       'instance-00000001')

    assert [r['entries'] for r in results] == [ITERATIONS, ITERATIONS]
    assert sum(r['violations'] for r in results) == 0
    # They did contend: someone had to wait for the other one's section.
    assert max(r['max_wait'] for r in results) >= HOLD * 0.5


MANY_WORKERS = 3
MANY_ITERATIONS = 70


@pytest.mark.parametrize('kind', ['etcd', 'mysql', 'file'])
def test_hundreds_of_acquisitions_never_overlap(kind, tmp_path, request):
    """Three processes, 210 short critical sections on one name, every backend."""
    results = _contend(_backend_args(kind, tmp_path, request), tmp_path, 'failover-instance-7',
                       workers=MANY_WORKERS, iterations=MANY_ITERATIONS, hold=0.001)

    assert sum(r['entries'] for r in results) == MANY_WORKERS * MANY_ITERATIONS
    assert sum(r['violations'] for r in results) == 0


def test_overlap_detector_sees_unlocked_sections(tmp_path):
    """Control: the same workers without the lock do overlap."""
    results = _contend(['--lock-path', str(tmp_path / 'local')], tmp_path,
                       'instance-00000001', no_lock=True)

    assert sum(r['violations'] for r in results) > 0


def test_different_names_do_not_block_each_other(tmp_path, hold_lock):
    lock_dir = tmp_path / 'local'
    hold_lock('--lock-path', str(lock_dir), '--name', 'vm-a')

    # Were vm-a and vm-b one lock, the worker would time out and fail.
    results = _contend(['--lock-path', str(lock_dir)], tmp_path, 'vm-b',
                       workers=1, timeout=5)

    assert results[0]['entries'] == ITERATIONS


def test_killed_holder_frees_a_file_share_lock(tmp_path, hold_lock):
    """A file:// lock is an OS file lock: it dies with the process holding it."""
    from psdriver.coordination import Coordinator

    url = f'file://{tmp_path / "share" / "locks"}'
    holder = hold_lock('--url', url, '--name', 'failover-instance-9')
    waiter = Coordinator(backend_url=url, lock_path='')
    waiter.start()
    try:
        holder.kill()
        started = time.monotonic()
        with waiter.lock('failover-instance-9', timeout=10):
            assert time.monotonic() - started < 2
    finally:
        waiter.stop()
