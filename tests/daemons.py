"""Real helper daemons for tests (etcd, MariaDB), started on 127.0.0.1 only.

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


@dataclass(frozen=True)
class MariaDBServer:
    """A running MariaDB with a database and a user for tooz's ``mysql://`` driver."""

    host: str
    port: int
    pid: int
    database: str
    user: str
    password: str

    def tooz_url(self) -> str:
        return f'mysql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}'


MARIADB_CANDIDATES = ('/usr/sbin/mariadbd', '/usr/sbin/mysqld')


def _mariadb_answers(host: str, port: int) -> bool:
    import pymysql

    try:
        pymysql.connect(host=host, port=port, user='root', password='',
                        connect_timeout=1).close()
        return True
    except pymysql.MySQLError:
        return False


class MariaDB:
    """A throw-away mariadbd on a free loopback port, in a temporary datadir.

    ``stop()`` and ``start()`` take the server away and bring it back on the
    same port with the same data, for the tests of a lock backend that goes
    away.
    """

    def __init__(self) -> None:
        self.binary = require_binary('mariadbd', 'mariadb-server',
                                     candidates=MARIADB_CANDIDATES)
        self.install = require_binary('mariadb-install-db', 'mariadb-server',
                                      candidates=('/usr/bin/mariadb-install-db',
                                                  '/usr/bin/mysql_install_db'))
        self.workdir = Path(scratch_dir('psdriver-mariadb-'))
        self.datadir = self.workdir / 'data'
        self.port = 0
        self.daemon: Daemon | None = None
        self._runs = 0
        run = subprocess.run(
            [self.install, '--no-defaults', f'--datadir={self.datadir}', '--user=root',
             '--auth-root-authentication-method=normal', '--skip-test-db'],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        if run.returncode:
            pytest.fail(f'mariadb-install-db failed:\n{run.stdout}{run.stderr}', pytrace=False)

    def start(self, timeout: float = 30) -> None:
        self.port = self.port or free_port()
        self._runs += 1
        argv = [self.binary, '--no-defaults', f'--datadir={self.datadir}', '--user=root',
                f'--bind-address={LOOPBACK}', f'--port={self.port}',
                f'--socket={self.workdir / "mysqld.sock"}',
                f'--pid-file={self.workdir / "mysqld.pid"}', '--skip-name-resolve',
                '--skip-log-bin', '--innodb-buffer-pool-size=16M',
                '--innodb-log-file-size=8M', '--max-connections=500']
        self.daemon = Daemon(argv, self.workdir / f'mariadb{self._runs}.log')
        if not self.daemon.wait_until(lambda: _mariadb_answers(LOOPBACK, self.port), timeout):
            tail = self.daemon.log_tail()
            self.daemon.stop()
            pytest.fail(f'mariadbd did not start:\n{tail}', pytrace=False)

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop(timeout=30)
            self.daemon = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def create_database(self, database: str, user: str, password: str) -> MariaDBServer:
        import pymysql

        conn = pymysql.connect(host=LOOPBACK, port=self.port, user='root', password='')
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE IF NOT EXISTS `{database}`')
                cur.execute('CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s',
                            (user, LOOPBACK, password))
                cur.execute(f'GRANT ALL ON `{database}`.* TO %s@%s', (user, LOOPBACK))
        finally:
            conn.close()
        return MariaDBServer(LOOPBACK, self.port, self.daemon.pid, database, user, password)


@contextlib.contextmanager
def run_mariadb() -> Iterator[tuple[MariaDB, MariaDBServer]]:
    """Start a private MariaDB with a ``tooz`` database, remove it afterwards."""
    server = MariaDB()
    try:
        server.start()
        yield server, server.create_database('tooz', 'tooz', 'lock-pw-7Hq')
    finally:
        server.remove()


@pytest.fixture(scope='session')
def mariadb_server() -> Iterator[MariaDBServer]:
    """A real MariaDB shared by the session (one per xdist worker)."""
    with run_mariadb() as (_, server):
        yield server
