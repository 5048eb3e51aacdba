"""Distributed locks for operations that must not overlap across hosts.

Like compute-hyperv, psdriver serialises some operations (on one instance,
one volume, one shared path) across every compute service with a tooz lock
backend, configured by ``[coordination] backend_url``, for example
``etcd3+http://etcd.example.org:2379`` or ``file:////fileserver/share/locks``.
When ``backend_url`` is empty, locks are local to this host: an in-process
lock plus a lock file under ``[oslo_concurrency] lock_path``.

Behaviour worth knowing:

* Lock names are made safe for every backend (:func:`safe_lock_name`): names
  that differ only in case are the same lock, because the Windows objects
  they usually name (VMs, paths, switches) are case-insensitive too.
* A lock is first taken inside the process, then in the backend, so threads
  of one service queue locally instead of polling the backend.
* The tooz coordinator heartbeats in a thread (``start_heart=True``); etcd
  lock leases would otherwise expire during a long Hyper-V operation.
* A lock that was lost while held (its lease expired, the backend was wiped)
  is detected at release: :class:`LockLost` is raised if the body finished
  without an error, and logged in any case.
* Credentials in the backend URL are never logged or put in exception texts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from oslo_concurrency import lockutils

LOG = logging.getLogger(__name__)

LOCK_PREFIX = 'psdriver-'

_FROM_CONF: Any = object()
_MAX_READABLE = 64
_UNSAFE = re.compile(r'[^a-z0-9_-]+')
_SECRET_QUERY_KEYS = re.compile(r'pass|secret|token|key|auth|cred', re.IGNORECASE)

F = TypeVar('F', bound=Callable[..., Any])


class LockError(Exception):
    """Base class of the errors of this module."""


class LockTimeout(LockError):
    """The lock was not acquired within the given timeout."""

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(f'could not acquire lock {name} within {timeout:g} s')
        self.name = name
        self.timeout = timeout


class LockLost(LockError):
    """The lock expired or was taken away while it was held."""

    def __init__(self, name: str, detail: str = '') -> None:
        msg = f'lock {name} was lost while held; the protected operation ' \
              'may have overlapped with another one'
        super().__init__(f'{msg}: {detail}' if detail else msg)
        self.name = name


class LockBackendError(LockError):
    """The lock backend failed (unreachable, misconfigured, ...)."""


def safe_lock_name(name: str) -> str:
    """Return a form of ``name`` usable as a lock name by every backend.

    The result holds only ``[a-z0-9_-]`` (no path separators, dots or
    reserved Windows device names once prefixed) and at most 81 characters.
    Names that are already of that form (lower case, at most 64 characters)
    are kept; any other name keeps a readable part and gets a hash of the
    whole (case-folded) name, so distinct names stay distinct locks.
    """
    if not isinstance(name, str) or not name:
        raise ValueError('a lock name must be a non-empty string')
    folded = name.casefold()
    readable = _UNSAFE.sub('_', folded)
    if readable == folded and len(folded) <= _MAX_READABLE:
        return folded
    digest = hashlib.sha256(
        folded.encode('utf-8', 'surrogatepass')).hexdigest()[:16]
    readable = readable[:_MAX_READABLE].strip('_')
    return f'{readable}-{digest}' if readable else digest


def redact_url(url: str) -> str:
    """Return ``url`` with its user information and secret query values hidden."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return '<unparsable URL>'
    netloc = parts.netloc
    if '@' in netloc:
        netloc = '***@' + netloc.rpartition('@')[2]
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any(_SECRET_QUERY_KEYS.search(key) for key, _ in pairs)
    if netloc == parts.netloc and not secret_query:
        return url
    query = '&'.join(
        f'{key}=***' if _SECRET_QUERY_KEYS.search(key) else f'{key}={value}'
        for key, value in pairs)
    # Rebuilt by hand: urlunsplit() turns file:////server/share into
    # file://server/share.
    return ''.join((
        f'{parts.scheme}://{netloc}{parts.path}',
        f'?{query}' if query else '',
        f'#{parts.fragment}' if parts.fragment else ''))


def _url_secrets(url: str) -> list[str]:
    """The strings of ``url`` that must never appear in a log or message."""
    secrets = []
    try:
        parts = urllib.parse.urlsplit(url)
        userinfo = parts.netloc.rpartition('@')[0] if '@' in parts.netloc else ''
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return [url]
    if userinfo:
        secrets.append(userinfo)
        secrets.extend(userinfo.split(':', 1))
    secrets.extend(v for k, v in pairs if _SECRET_QUERY_KEYS.search(k))
    secrets.extend([urllib.parse.unquote(s) for s in secrets])
    # Longest first, so a whole "user:password" goes before its parts.
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    """Remove the URL and its secrets from ``text`` (an exception message)."""
    text = text.replace(url, redact_url(url))
    for secret in _url_secrets(url):
        text = text.replace(secret, '***')
    return text


_WINDOWS_DRIVE_PATH = re.compile(r'^/*[A-Za-z]:[/\\]')


def _is_windows_file_url(url: str) -> bool:
    """Whether ``url`` is a ``file://`` URL of a drive-letter folder.

    compute-hyperv's default ``file:///C:/OpenStack/Lock`` is one: it means
    something only on Windows.  A ``file:////server/share`` URL is not one:
    on Linux it is an ordinary local path.
    """
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower() == 'file' and bool(_WINDOWS_DRIVE_PATH.match(parts.path))


def _conf() -> Any:
    # Imported here: it pulls in nova.conf, which plain lock users may not need.
    from psdriver import conf as psdriver_conf

    return psdriver_conf.CONF


class Coordinator:
    """Distributed lock provider over tooz, or over local locks.

    :param backend_url: tooz backend URL; by default ``[coordination]
        backend_url``. An empty value selects the local locks.
    :param lock_path: directory of the local lock files; by default
        ``[oslo_concurrency] lock_path``. When neither is set, local locks
        only serialise the threads of this process.
    :param member_id: tooz member id; by default built from the host name,
        the process id and a random part.
    :param start_heart: run tooz's heartbeat thread; only tests turn it off.
    """

    def __init__(self, backend_url: str | None = _FROM_CONF,
                 lock_path: str | None = _FROM_CONF,
                 member_id: str | None = None,
                 prefix: str = LOCK_PREFIX,
                 start_heart: bool = True) -> None:
        self._backend_url_arg = backend_url
        self._lock_path_arg = lock_path
        self._member_id = member_id
        self._prefix = prefix
        self._start_heart = start_heart
        self._state_lock = threading.Lock()
        self._semaphores = lockutils.Semaphores()
        self._coordinator: Any = None
        self._url: str | None = None
        self._started = False
        self._warned_no_lock_path = False
        self._warned_windows_url = False

    @property
    def backend_url(self) -> str | None:
        """The configured tooz URL, or None for local locks."""
        if self._backend_url_arg is _FROM_CONF:
            url = _conf().coordination.backend_url
        else:
            url = self._backend_url_arg
        if url and os.name != 'nt' and _is_windows_file_url(url):
            if not self._warned_windows_url:
                self._warned_windows_url = True
                LOG.warning('[coordination] backend_url %s names a Windows folder, which '
                            'this machine does not have: locks are local to this host. Set '
                            'an etcd3+http:// URL (or a file:// folder of this machine) to '
                            'share them between compute services', redact_url(url))
            return None
        return url or None

    @property
    def lock_path(self) -> str | None:
        if self._lock_path_arg is _FROM_CONF:
            return lockutils.get_lock_path(_conf())
        return self._lock_path_arg or None

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        """Connect to the lock backend; called by the first lock if needed."""
        with self._state_lock:
            if self._started:
                return
            url = self.backend_url
            if url:
                self._coordinator = self._start_tooz(url)
                self._url = url
                LOG.info('Distributed locks use the backend %s', redact_url(url))
            else:
                LOG.info('No [coordination] backend_url: locks are local to '
                         'this host')
            self._started = True

    def _start_tooz(self, url: str) -> Any:
        from tooz import coordination as tooz_coordination

        member_id = self._member_id or '{}-{}-{}-{}'.format(
            self._prefix.rstrip('-') or 'psdriver', socket.gethostname(),
            os.getpid(), uuid.uuid4().hex[:8])
        try:
            coordinator = tooz_coordination.get_coordinator(
                url, member_id.encode('utf-8'))
            coordinator.start(start_heart=self._start_heart)
        except Exception as exc:
            # "from None": the original exception may carry the URL and its
            # credentials into a logged traceback.
            raise LockBackendError(
                'cannot start the lock backend {}: {}: {}'.format(
                    redact_url(url), type(exc).__name__,
                    _scrub(str(exc), url))) from None
        return coordinator

    def stop(self) -> None:
        """Disconnect from the lock backend; held locks expire with it."""
        with self._state_lock:
            if not self._started:
                return
            coordinator, url = self._coordinator, self._url
            self._coordinator = self._url = None
            self._started = False
        if coordinator is not None:
            try:
                coordinator.stop()
            except Exception as exc:
                LOG.warning('Stopping the lock backend %s failed: %s',
                            redact_url(url or ''), _scrub(str(exc), url or ''))

    def full_name(self, name: str) -> str:
        """The backend lock name used for the caller's ``name``."""
        return self._prefix + safe_lock_name(name)

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock ``name`` for the duration of the ``with`` block.

        Blocks until the lock is free, or raises :class:`LockTimeout` after
        ``timeout`` seconds. Raises :class:`LockLost` on exit when the lock
        turned out to have been lost while the block ran without error.
        """
        if timeout is not None and timeout < 0:
            raise ValueError('timeout must be >= 0 or None')
        full_name = self.full_name(name)
        self.start()
        started_at = time.monotonic()

        semaphore = self._semaphores.get(full_name)
        if not semaphore.acquire(timeout=timeout):
            raise LockTimeout(full_name, timeout or 0)
        try:
            remaining = self._remaining(started_at, timeout)
            if self._coordinator is not None:
                with self._distributed(full_name, timeout, remaining):
                    LOG.debug('Lock %s acquired after %.3f s', full_name,
                              time.monotonic() - started_at)
                    yield
            else:
                with self._local(full_name, timeout, remaining):
                    LOG.debug('Local lock %s acquired after %.3f s',
                              full_name, time.monotonic() - started_at)
                    yield
        finally:
            semaphore.release()

    @staticmethod
    def _remaining(started_at: float, timeout: float | None) -> float | None:
        if timeout is None:
            return None
        return max(0.0, timeout - (time.monotonic() - started_at))

    @contextlib.contextmanager
    def _distributed(self, full_name: str, timeout: float | None,
                     remaining: float | None) -> Iterator[None]:
        import tenacity
        import tooz

        url = self._url or ''
        tooz_lock = self._coordinator.get_lock(full_name.encode('utf-8'))
        try:
            if remaining is None:
                acquired = tooz_lock.acquire(blocking=True)
            elif remaining <= 0:
                acquired = tooz_lock.acquire(blocking=False)
            else:
                # A float "blocking" is a timeout. The etcd3gw driver raises
                # tenacity.RetryError when it expires; others return False.
                acquired = tooz_lock.acquire(blocking=remaining)
        except tenacity.RetryError:
            acquired = False
        except tooz.ToozError as exc:
            raise LockBackendError('acquiring lock {} failed: {}'.format(
                full_name, _scrub(str(exc), url))) from None
        if not acquired:
            raise LockTimeout(full_name, timeout or 0)

        held_at = time.monotonic()
        failed = True
        try:
            yield
            failed = False
        finally:
            self._release(tooz_lock, full_name, url, held_at, raise_lost=not failed)

    @staticmethod
    def _release(tooz_lock: Any, full_name: str, url: str, held_at: float,
                 raise_lost: bool) -> None:
        detail = ''
        try:
            released = tooz_lock.release()
        except Exception as exc:
            released = False
            detail = f'{type(exc).__name__}: {_scrub(str(exc), url)}'
        held_for = time.monotonic() - held_at
        if released:
            LOG.debug('Lock %s released after %.3f s', full_name, held_for)
            return
        LOG.error('Lock %s was lost while held (held for %.3f s); the '
                  'protected operation may have overlapped with another '
                  'one. %s', full_name, held_for, detail)
        if raise_lost:
            raise LockLost(full_name, detail)

    @contextlib.contextmanager
    def _local(self, full_name: str, timeout: float | None,
               remaining: float | None) -> Iterator[None]:
        lock_path = self.lock_path
        if not lock_path:
            if not self._warned_no_lock_path:
                self._warned_no_lock_path = True
                LOG.warning('Neither [coordination] backend_url nor '
                            '[oslo_concurrency] lock_path is set: locks only '
                            'serialise the threads of this process')
            yield
            return
        file_lock = lockutils.external_lock(full_name, lock_path=lock_path)
        if not file_lock.acquire(timeout=remaining):
            raise LockTimeout(full_name, timeout or 0)
        try:
            yield
        finally:
            file_lock.release()


COORDINATOR = Coordinator()


def lock(name: str, timeout: float | None = None) -> contextlib.AbstractContextManager[None]:
    """Hold ``name`` with the process-wide :data:`COORDINATOR`."""
    return COORDINATOR.lock(name, timeout=timeout)


def synchronized(name_fmt: str, timeout: float | None = None,
                 coordinator: Coordinator | None = None) -> Callable[[F], F]:
    """Run the decorated function under a lock named from its arguments.

    ``name_fmt`` is a :meth:`str.format` pattern over the function's
    arguments (by parameter name, defaults applied) and ``f_name``, e.g.
    ``'vm-{instance.uuid}'``.
    """
    def decorator(func: F) -> F:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            name = name_fmt.format(f_name=func.__name__, **bound.arguments)
            with (coordinator or COORDINATOR).lock(name, timeout=timeout):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
