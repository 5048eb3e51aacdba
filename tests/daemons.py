"""Real helper daemons for tests (etcd), started on 127.0.0.1 only.

A daemon binary that is missing skips the tests that need it, except when
``CI=true`` (:mod:`tests.prerequisites`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.prerequisites import in_ci, require_tool  # noqa: F401 (in_ci: re-exported)

LOOPBACK = '127.0.0.1'


def require_binary(name: str, debian_package: str,
                   candidates: tuple[str, ...] = ()) -> str:
    """Path of the daemon ``name``; skips (or fails under CI) when missing."""
    return require_tool(name, debian_package, candidates)


def free_port() -> int:
    """A TCP port on the loopback address that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def scratch_dir(prefix: str) -> str:
    """A new temporary directory, on tmpfs (/dev/shm) when there is one."""
    shm = '/dev/shm'
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix=prefix, dir=base)


class Daemon:
    """A child process started in its own session and stopped by its PID."""

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, 'wb')  # closed in stop()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors='replace')
        except OSError:
            return ''
        return '\n'.join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            if ready():
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 10) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._log.close()


@dataclass(frozen=True)
class EtcdServer:
    """A running etcd: ``client_url`` is ``http://127.0.0.1:<port>``."""

    host: str
    port: int
    pid: int

    @property
    def client_url(self) -> str:
        return f'http://{self.host}:{self.port}'

    def tooz_url(self, **options: object) -> str:
        query = '&'.join(f'{k}={v}' for k, v in options.items())
        return f'etcd3+{self.client_url}' + (f'?{query}' if query else '')


def _etcd_healthy(client_url: str) -> bool:
    try:
        with urllib.request.urlopen(f'{client_url}/health', timeout=1) as resp:
            return json.load(resp).get('health') in ('true', True)
    except (OSError, ValueError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def run_etcd(attempts: int = 3) -> Iterator[EtcdServer]:
    """Start a single-member etcd on free loopback ports, stop it afterwards."""
    binary = require_binary('etcd', 'etcd-server', candidates=('/usr/bin/etcd',))
    workdir = Path(scratch_dir('psdriver-etcd-'))
    daemon = None
    try:
        for attempt in range(attempts):
            client_port, peer_port = free_port(), free_port()
            client = f'http://{LOOPBACK}:{client_port}'
            peer = f'http://{LOOPBACK}:{peer_port}'
            data_dir = workdir / f'data{attempt}'
            daemon = Daemon([
                binary, '--name', 'psdriver-test',
                '--data-dir', str(data_dir),
                '--listen-client-urls', client,
                '--advertise-client-urls', client,
                '--listen-peer-urls', peer,
                '--initial-advertise-peer-urls', peer,
                '--initial-cluster', f'psdriver-test={peer}',
                '--initial-cluster-state', 'new',
            ], workdir / f'etcd{attempt}.log')
            if daemon.wait_until(lambda url=client: _etcd_healthy(url),
                                 timeout=20):
                break
            tail = daemon.log_tail()
            daemon.stop()
            daemon = None
        else:
            pytest.fail(f'etcd did not become healthy:\n{tail}', pytrace=False)
        yield EtcdServer(LOOPBACK, client_port, daemon.pid)
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope='session')
def etcd_server() -> Iterator[EtcdServer]:
    """A real etcd shared by the session (one per xdist worker)."""
    with run_etcd() as server:
        yield server
