"""Fixtures of the lock tests: a real etcd and MariaDB, lock-holding child processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemons import etcd_server, mariadb_server  # noqa: F401  (session fixtures)

WORKER = Path(__file__).with_name('lock_worker.py')
REPO = Path(__file__).resolve().parents[2]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(REPO), env.get('PYTHONPATH', '')) if p)
    env.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
    env['PYTHONWARNINGS'] = 'ignore'
    return env


def start_worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=worker_env())


class Holder:
    """A child process holding a lock until released or killed."""

    def __init__(self, *args: str) -> None:
        self.proc = start_worker('hold', *args)
        line = self.proc.stdout.readline().strip()
        if line != 'HELD':
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f'holder did not take the lock: {line!r} {err}')

    def release(self) -> int:
        self.proc.stdin.close()
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def hold_lock() -> Iterator:
    """Factory: ``hold_lock('--url', url, '--name', name)`` -> Holder."""
    holders: list[Holder] = []

    def factory(*args: str) -> Holder:
        holder = Holder(*args)
        holders.append(holder)
        return holder

    yield factory
    for holder in holders:
        if holder.proc.poll() is None:
            holder.kill()
