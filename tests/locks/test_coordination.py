"""Lock names, URL redaction, configuration, the decorator and local locks."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import traceback

import pytest
from oslo_config import fixture as config_fixture

from psdriver import coordination
from psdriver.coordination import (Coordinator, LockBackendError, LockTimeout,
                                   redact_url, safe_lock_name)
from tests.daemons import free_port

pytestmark = pytest.mark.timeout(60)

HOSTILE_NAMES = [
    '../../etc/passwd', '..', '.', 'a/b', 'a\\b', r'C:\Windows\System32',
    'con', 'NUL', 'COM1', 'lpt1.txt', 'name with spaces', 'trailing.',
    'trailing ', 'x' * 500, 'vm\n\rinjected', 'Grüße-✓-日本', '%2e%2e%2f',
    "O'Brien; Remove-Item C:\\ -Recurse", 'a:b*c?d"e<f>g|h', '\x00nul',
    '\ud800lone-surrogate',
]
SAFE = re.compile(r'^[a-z0-9_-]{1,81}$')


@pytest.fixture
def conf():
    from psdriver import conf as psdriver_conf

    fixture = config_fixture.Config(psdriver_conf.CONF)
    fixture.setUp()
    yield fixture
    fixture.cleanUp()


# --- names --------------------------------------------------------------------

def test_plain_names_are_kept():
    assert safe_lock_name('instance-0000002a') == 'instance-0000002a'
    assert safe_lock_name('vm_1-2') == 'vm_1-2'


@pytest.mark.parametrize('name', HOSTILE_NAMES)
def test_hostile_names_become_safe(name):
    safe = safe_lock_name(name)

    assert SAFE.match(safe), safe
    assert safe == safe_lock_name(name)


def test_distinct_names_stay_distinct_but_case_does_not_matter():
    variants = HOSTILE_NAMES + ['a_b', 'a-b', 'a.b', 'a b', 'x' * 499]
    safe = [safe_lock_name(n) for n in variants]

    assert len(set(safe)) == len(variants)
    assert safe_lock_name('VM-A') == safe_lock_name('vm-a')
    assert safe_lock_name('Path\\To\\VM') == safe_lock_name('path\\to\\vm')


def test_empty_name_is_rejected():
    with pytest.raises(ValueError):
        safe_lock_name('')


@pytest.mark.parametrize('backend', ['file', 'local', 'etcd'])
def test_hostile_names_lock_inside_the_lock_dir(backend, tmp_path, request):
    lock_dir = tmp_path / 'locks'
    if backend == 'etcd':
        url = request.getfixturevalue('etcd_server').tooz_url(timeout=5)
        coordinator = Coordinator(backend_url=url, lock_path='')
    elif backend == 'file':
        coordinator = Coordinator(backend_url=f'file://{lock_dir}', lock_path='')
    else:
        coordinator = Coordinator(backend_url='', lock_path=str(lock_dir))
    other = Coordinator(backend_url=coordinator.backend_url or '',
                        lock_path=str(lock_dir))

    try:
        for name in HOSTILE_NAMES:
            with coordinator.lock(name, timeout=5):
                if backend != 'local':  # local file locks are per process
                    with pytest.raises(LockTimeout):
                        with other.lock(name, timeout=0):
                            pass
    finally:
        coordinator.stop()
        other.stop()

    assert sorted(p.name for p in tmp_path.iterdir()) == (
        [] if backend == 'etcd' else ['locks'])
    for path in lock_dir.rglob('*'):
        assert path.resolve().is_relative_to(lock_dir.resolve())


# --- URL redaction ------------------------------------------------------------

@pytest.mark.parametrize('url, expected', [
    ('etcd3+http://user:pw@etcd:2379?timeout=5',
     'etcd3+http://***@etcd:2379?timeout=5'),
    ('redis://:pw@redis:6379?password=pw2&db=1',
     'redis://***@redis:6379?password=***&db=1'),
    ('etcd3+https://etcd:2379?cert_key=/k.pem&ca_cert=/ca.pem',
     'etcd3+https://etcd:2379?cert_key=***&ca_cert=/ca.pem'),
    ('file:///C:/OpenStack/Lock', 'file:///C:/OpenStack/Lock'),
    ('file:////server/share/locks', 'file:////server/share/locks'),
    ('file:////server/share/locks?token=t', 'file:////server/share/locks?token=***'),
    ('not a url', 'not a url'),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


SECRET = 'Hunter2-Pa55'


@pytest.mark.parametrize('url', [
    f'etcd3+http://admin:{SECRET}@127.0.0.1:{{port}}?timeout=1',
    f'etcd3+http://127.0.0.1:{{port}}?timeout=1&password={SECRET}',
    f'etcd3+http://:{SECRET}@127.0.0.1:{{port}}?timeout=1',
    'unknownscheme://admin:{secret}@host/{port}'.replace('{secret}', SECRET),
])
def test_credentials_not_in_backend_errors(url, caplog):
    caplog.set_level(logging.DEBUG)
    url = url.format(port=free_port())  # nothing listens there
    coordinator = Coordinator(backend_url=url, lock_path='')

    with pytest.raises(LockBackendError) as failed:
        with coordinator.lock('vm-8', timeout=2):
            pass

    text = ''.join(traceback.format_exception(failed.value))
    assert 'cannot start the lock backend' in text
    assert SECRET not in text
    assert SECRET not in caplog.text
    assert not coordinator.started


# --- configuration ------------------------------------------------------------

def test_backend_url_and_lock_path_come_from_conf(conf, tmp_path):
    conf.config(group='coordination', backend_url=f'file://{tmp_path}/tooz')
    conf.config(group='oslo_concurrency', lock_path=str(tmp_path / 'local'))
    coordinator = Coordinator()

    assert coordinator.backend_url == f'file://{tmp_path}/tooz'
    assert coordinator.lock_path == str(tmp_path / 'local')
    with coordinator.lock('vm-1'):
        assert (tmp_path / 'tooz').is_dir()
    coordinator.stop()


def test_empty_backend_url_selects_local_lock_files(conf, tmp_path):
    conf.config(group='coordination', backend_url='')
    conf.config(group='oslo_concurrency', lock_path=str(tmp_path))
    coordinator = Coordinator()

    with coordinator.lock('vm-1'):
        assert coordinator.backend_url is None
        assert os.listdir(tmp_path) == [coordinator.full_name('vm-1')]
    coordinator.stop()

@pytest.mark.skipif(os.name == 'nt', reason='a drive-letter URL is real on Windows')
@pytest.mark.parametrize('url', ['file:///C:/OpenStack/Lock', 'file:///d:\\locks',
                                 'FILE:///E:/x?timeout=5'])
def test_windows_folder_url_means_local_locks_on_linux(conf, tmp_path, caplog, url):
    # compute-hyperv's default URL on a Linux management node: no /C:/ folder
    # is created at the root of the file system; locks stay on this host.
    conf.config(group='coordination', backend_url=url)
    conf.config(group='oslo_concurrency', lock_path=str(tmp_path))
    coordinator = Coordinator()

    with caplog.at_level(logging.WARNING, logger='psdriver.coordination'):
        with coordinator.lock('vm-1'):
            assert coordinator.backend_url is None
            assert os.listdir(tmp_path) == [coordinator.full_name('vm-1')]
    coordinator.stop()
    assert 'names a Windows folder' in caplog.text
    assert caplog.text.count('names a Windows folder') == 1


def test_unc_file_url_is_used_as_given(tmp_path):
    url = f'file:///{tmp_path}/share/locks'     # //... : a local path on Linux
    assert Coordinator(backend_url=url, lock_path='').backend_url == url



# --- local fallback -----------------------------------------------------------

def _in_threads(coordinator: Coordinator, name: str, count: int = 4) -> int:
    """Run ``count`` threads through one section; return the max overlap."""
    inside = 0
    peak = 0
    guard = threading.Lock()

    def section():
        nonlocal inside, peak
        with coordinator.lock(name, timeout=10):
            with guard:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.05)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=section) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return peak


@pytest.mark.parametrize('lock_path', [True, False])
def test_local_lock_serialises_threads(lock_path, tmp_path, caplog):
    coordinator = Coordinator(backend_url='',
                              lock_path=str(tmp_path) if lock_path else '')

    assert _in_threads(coordinator, 'vm-1') == 1
    warned = [r for r in caplog.records if 'lock_path' in r.getMessage()]
    assert len(warned) == (0 if lock_path else 1)


def test_threads_with_different_names_run_together():
    coordinator = Coordinator(backend_url='', lock_path='')
    started = threading.Barrier(2, timeout=5)

    def section(name):
        with coordinator.lock(name, timeout=5):
            started.wait()  # breaks (and fails the test) if serialised

    threads = [threading.Thread(target=section, args=(n,)) for n in ('a', 'b')]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not started.broken


def test_local_lock_timeout_against_another_process(tmp_path, hold_lock):
    hold_lock('--lock-path', str(tmp_path), '--name', 'vm-1')
    coordinator = Coordinator(backend_url='', lock_path=str(tmp_path))

    started = time.monotonic()
    with pytest.raises(LockTimeout) as timed_out:
        with coordinator.lock('vm-1', timeout=0.5):
            pass
    assert 0.45 <= time.monotonic() - started < 3
    assert 'psdriver-vm-1' in str(timed_out.value)


def test_file_backend_timeout_against_another_process(tmp_path, hold_lock):
    url = f'file://{tmp_path}'
    hold_lock('--url', url, '--name', 'vm-1')
    coordinator = Coordinator(backend_url=url, lock_path='')

    with pytest.raises(LockTimeout):
        with coordinator.lock('vm-1', timeout=0.5):
            pass
    coordinator.stop()


def test_lock_is_released_when_the_body_fails(tmp_path):
    coordinator = Coordinator(backend_url=f'file://{tmp_path}', lock_path='')

    with pytest.raises(RuntimeError):
        with coordinator.lock('vm-1'):
            raise RuntimeError('boom')
    with coordinator.lock('vm-1', timeout=0):
        pass
    coordinator.stop()


def test_negative_timeout_is_rejected():
    with pytest.raises(ValueError):
        with Coordinator(backend_url='', lock_path='').lock('x', timeout=-1):
            pass


# --- decorator ----------------------------------------------------------------

class _Instance:
    def __init__(self, name):
        self.name = name


def test_synchronized_names_the_lock_from_arguments(monkeypatch):
    coordinator = Coordinator(backend_url='', lock_path='')
    taken = []
    real_lock = coordinator.lock

    def spy(name, timeout=None):
        taken.append((name, timeout))
        return real_lock(name, timeout=timeout)

    monkeypatch.setattr(coordinator, 'lock', spy)

    @coordination.synchronized('{f_name}-{instance.name}-{port}', timeout=7,
                               coordinator=coordinator)
    def plug(instance, port=22):
        """Docstring kept."""
        return instance.name

    assert plug(_Instance('vm-x')) == 'vm-x'
    assert plug(port=5, instance=_Instance('vm-y')) == 'vm-y'
    assert taken == [('plug-vm-x-22', 7), ('plug-vm-y-5', 7)]
    assert plug.__doc__ == 'Docstring kept.'


def test_synchronized_serialises_calls():
    coordinator = Coordinator(backend_url='', lock_path='')
    inside = []
    overlaps = []

    @coordination.synchronized('vm-{name}', coordinator=coordinator)
    def work(name):
        if inside:
            overlaps.append(name)
        inside.append(name)
        time.sleep(0.03)
        inside.remove(name)

    threads = [threading.Thread(target=work, args=('same',)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert overlaps == []
