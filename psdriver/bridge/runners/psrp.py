"""Run rendered scripts on a remote Hyper-V host through PowerShell Remoting (pypsrp).

One runspace pool (one WinRM shell) is opened on first use and shared by every
thread; each call is one pipeline in it::

    PowerShell(pool).add_script(call.text).add_parameter('PsDriverInput', call.document)

so the caller's values travel as one PSRP parameter, never as script text.

Failure handling, and when a call is retried:

* Opening the pool (Create + Receive) has no side effect on the host, so a
  connection failure there is retried ``reconnect_attempts`` times with
  exponential backoff, each time on a fresh connection and pool.
* Once the Command request (which carries the pipeline) has been sent, the
  script may be running, so the call is never retried: a lost connection is a
  :class:`BridgeTransportError` saying the script may have run.  The only
  exceptions are answers that prove nothing started: the connection was
  refused or could not be made, HTTP 400 (a disconnected shell), or a WS-Man
  fault instead of the command's acceptance (shell not found after an idle
  timeout or a WinRM restart, command quota reached).  Those reopen the pool
  and retry like an open failure.
* A call that exceeds its timeout stops its pipeline (Signal ctrl_c) and
  retires the pool; the pool is closed once calls still running on it finish,
  and the next call opens a new one.
* Any transport failure retires the pool the same way, so the next call
  reconnects.  Authentication failures are never retried.

Message encryption (HTTP with NTLM/Kerberos) ties one security context to one
connection and numbers every sealed message in sequence, and pypsrp keeps one
context per WSMan object (one runspace pool), so in that mode every WS-Man
request is serialised and the Receive long-poll is kept short: parallel calls
then queue on that connection, and a warning says so once per pool.  Over HTTPS
(``psrp_ssl = true``) TLS protects the messages and requests run in parallel.

Each call sends the loader of :mod:`psdriver.bridge.call` (scripts defined once
per runspace): the whole wrapped script travels the first time, then only its
hash.  The values document is a plain PSRP string (JSON, compressed when
large), so the WS-Man layer's base64 is the only one.

Start-up refusals (:class:`PSRPSetupError`, a ``ValueError``): basic auth over
plain HTTP (the password and every value would cross the network in clear;
``insecure_cleartext_basic_auth=True`` is the lab-only opt-in) and CredSSP
without its extra (``pip install psdriver[credssp]``).
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from typing import Any

import requests
from pypsrp import exceptions as psrp_exc
from pypsrp.complex_objects import PSInvocationState, RunspacePoolState
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from psdriver.bridge import errors, logfilter
from psdriver.bridge.call import (
    ScriptCall, is_unknown_script, loader_invocation, script_digest,
)

LOG = logging.getLogger(__name__)

_STDERR_TAIL = 2000
#: WinRM disconnects a shell that has been idle for a few minutes (IdleTimeout
#: defaults to 180 s and the shell is "Disconnected" well before); a pool idle
#: longer than this is replaced rather than used.
DEFAULT_IDLE_RECYCLE = 90.0
_SERIAL_POLL = 1          # seconds per Receive when requests are serialised

logfilter.install()

_TRANSPORT_ERRORS = (requests.exceptions.RequestException, psrp_exc.WinRMError, OSError)


class PSRPSetupError(ValueError):
    """The PSRP options cannot work or are unsafe; raised when the runner is built."""


def check_auth_options(auth: str, ssl: bool, insecure_cleartext_basic_auth: bool = False) -> None:
    """Refuse option combinations that are unsafe or cannot work, before any connection."""
    if auth == 'basic' and not ssl:
        if not insecure_cleartext_basic_auth:
            raise PSRPSetupError(
                'psrp_auth = basic over plain HTTP (psrp_ssl = false) would send the password '
                'and every value in clear (basic auth cannot encrypt messages): use HTTPS '
                '(psrp_ssl = true, port 5986), or negotiate/kerberos over HTTP with message '
                'encryption')
        LOG.warning('INSECURE: basic auth over plain HTTP sends the PowerShell Remoting '
                    'password and every value in clear '
                    '(psrp_insecure_cleartext_basic_auth_lab_only = true); never use this '
                    'outside a lab')
    if auth == 'credssp':
        try:
            import requests_credssp  # noqa: F401
        except ImportError:
            raise PSRPSetupError(
                'psrp_auth = credssp needs the requests-credssp package, which is not '
                'installed: install psdriver with its credssp extra '
                '(pip install "psdriver[credssp]")') from None


class _Session:
    """One WSMan connection and its runspace pool, shared by concurrent calls."""

    def __init__(self, wsman: WSMan, pool: RunspacePool, serialised: bool) -> None:
        self.wsman = wsman
        self.pool = pool
        self.serialised = serialised
        self.inflight = 0
        self.retired = False
        #: The host or the shell is unreachable: close locally, skip the Delete.
        self.broken = False
        self.closed = False
        self.last_used = time.monotonic()
        #: pypsrp's fragmenter numbers outgoing messages without a lock: numbering
        #: (not the Command request that follows) is done under this lock.
        self.start_lock = threading.Lock()
        fragmenter = pool._fragmenter
        fragment = fragmenter.fragment

        def numbered(*args: Any, **kwargs: Any) -> Any:
            with self.start_lock:
                return fragment(*args, **kwargs)

        fragmenter.fragment = numbered
        #: Hashes of the scripts some runspace of this pool has defined.
        self.defined: set[str] = set()

    def close(self) -> None:
        with self.start_lock:
            if self.closed:
                return
            self.closed = True
        if not self.broken:
            try:
                self.pool.close()
            except Exception as exc:   # the host may be gone; nothing more to free
                LOG.debug('Closing runspace pool failed: %s', type(exc).__name__)
        try:
            self.wsman.close()
        except Exception:   # best effort: only the local HTTP session is left
            pass


class PSRPRunner:
    """Runner for a remote host over WinRM/PSRP (see the module docstring)."""

    features: frozenset[str] = frozenset()

    def __init__(self, host: str, port: int = 5986, username: str | None = None,
                 password: str | None = None, ssl: bool = True,
                 cert_validation: bool | str = True, auth: str = 'negotiate',
                 message_encryption: str = 'auto', operation_timeout: int = 20,
                 connection_timeout: int = 30, pool_size: int = 4,
                 reconnect_attempts: int = 3, reconnect_backoff: float = 1.0,
                 certificate_pem: str | None = None,
                 certificate_key_pem: str | None = None,
                 idle_recycle: float = DEFAULT_IDLE_RECYCLE,
                 insecure_cleartext_basic_auth: bool = False) -> None:
        if message_encryption not in ('auto', 'always', 'never'):
            raise ValueError(f'message_encryption must be auto, always or never, '
                             f'not {message_encryption!r}')
        if pool_size < 1:
            raise ValueError('pool_size must be at least 1')
        check_auth_options(auth, ssl, insecure_cleartext_basic_auth)
        self.cert_validation = cert_validation
        self.ssl = ssl
        self.host = host
        self.port = port
        shown = f'[{host}]' if ':' in host and not host.startswith('[') else host
        self.target = f'psrp://{shown}:{port}'
        self.pool_size = pool_size
        self.operation_timeout = max(1, int(operation_timeout))
        self.reconnect_attempts = max(0, int(reconnect_attempts))
        self.reconnect_backoff = max(0.0, float(reconnect_backoff))
        self.idle_recycle = idle_recycle
        kwargs: dict[str, Any] = {
            'port': port, 'username': username, 'password': password, 'ssl': ssl,
            'auth': auth, 'cert_validation': cert_validation,
            'encryption': message_encryption, 'operation_timeout': self.operation_timeout,
            'connection_timeout': connection_timeout,
            'read_timeout': self.operation_timeout + 10}
        if certificate_pem:
            kwargs['certificate_pem'] = certificate_pem
        if certificate_key_pem:
            kwargs['certificate_key_pem'] = certificate_key_pem
        self._wsman_kwargs = kwargs
        # Build one transport now so bad option combinations (e.g. basic auth
        # with message encryption) fail at start-up, not on the first call.
        WSMan(host, **kwargs).close()
        self._lock = threading.Lock()        # guards the fields below
        self._open_lock = threading.Lock()   # one thread opens a pool at a time
        self._current: _Session | None = None
        self._sessions: set[_Session] = set()
        self._closed = False
        #: Number of runspace pools opened so far (tests and benchmarks read it).
        self.pools_opened = 0

    def __repr__(self) -> str:
        return f'<PSRPRunner {self.target}>'

    # -- public API ---------------------------------------------------------------------------

    def run(self, call: ScriptCall) -> str:
        deadline = time.monotonic() + call.timeout
        define = False
        while True:
            session, ps, define = self._start(call, deadline, define)
            try:
                self._wait(session, ps, call, deadline)
                text, tail = self._collect(session, ps, call)
            finally:
                self._release(session)
            if tail is None and is_unknown_script(text) and not define:
                # That runspace has not seen the script: send the text (nothing ran).
                session.defined.discard(script_digest(call.text))
                define = True
                continue
            return text if tail is None else self._no_envelope(call, ps, text, tail)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sessions = list(self._sessions)
            self._sessions.clear()
            self._current = None
        for session in sessions:
            session.close()

    # -- sessions -----------------------------------------------------------------------------

    def _open(self) -> _Session:
        wsman = WSMan(self.host, **self._wsman_kwargs)
        _no_environment_per_request(wsman)
        serialised = bool(wsman.transport.wrap_required)
        if serialised:
            _serialise_requests(wsman)
            LOG.warning('%s: message encryption over HTTP serialises every request of a '
                        'runspace pool on one connection (one security context, sealed '
                        'messages numbered in sequence), so parallel calls wait for each '
                        'other; use HTTPS (psrp_ssl = true) for parallel calls', self.target)
        if self.ssl and self.cert_validation is False:
            LOG.warning('%s: the host\'s TLS certificate is not validated '
                        '(psrp_cert_validation = false): anyone on the path can pose as the '
                        'host and read the password; set psrp_cert_validation to the CA bundle '
                        'that signed it', self.target)
        pool = RunspacePool(wsman, max_runspaces=self.pool_size)
        try:
            pool.open()
        except BaseException:
            wsman.close()
            raise
        LOG.debug('Opened a runspace pool on %s (max %d runspaces)', self.target, self.pool_size)
        return _Session(wsman, pool, serialised)

    def _acquire(self, call: ScriptCall) -> _Session:
        with self._open_lock:
            with self._lock:
                if self._closed:
                    raise errors.BridgeTransportError(call.name, self.target, 'runner is closed')
                session = self._current
                stale = None
                if session is not None and session.pool.state != RunspacePoolState.OPENED:
                    # the host reported the pool broken, or it was closed under us
                    stale, session = session, None
                    self._retire_locked(stale, broken=True)
                elif (session is not None and session.inflight == 0
                        and time.monotonic() - session.last_used > self.idle_recycle):
                    LOG.debug('Replacing the runspace pool on %s after %.0fs idle', self.target,
                              time.monotonic() - session.last_used)
                    stale, session = session, None
                    self._retire_locked(stale)
                if session is not None:
                    session.inflight += 1
                    return session
            if stale is not None and stale.inflight == 0:
                stale.close()
            fresh = self._open()
            with self._lock:
                if self._closed:
                    fresh.close()
                    raise errors.BridgeTransportError(call.name, self.target, 'runner is closed')
                self.pools_opened += 1
                self._current = fresh
                self._sessions.add(fresh)
                fresh.inflight += 1
                return fresh

    def _release(self, session: _Session) -> None:
        with self._lock:
            session.inflight -= 1
            session.last_used = time.monotonic()
            done = session.retired and session.inflight == 0
            if done:
                self._sessions.discard(session)
        if done:
            session.close()

    def _retire_locked(self, session: _Session, broken: bool = False) -> None:
        session.retired = True
        session.broken = session.broken or broken
        if self._current is session:
            self._current = None
        if session.inflight == 0:
            self._sessions.discard(session)

    def _retire(self, session: _Session, broken: bool = False) -> None:
        """Stop handing out ``session``; it is closed when its last call ends."""
        with self._lock:
            self._retire_locked(session, broken)

    # -- one call -----------------------------------------------------------------------------

    def _start(self, call: ScriptCall, deadline: float,
               define: bool) -> tuple[_Session, PowerShell, bool]:
        """Start the pipeline; return it, its session and whether it carries the script text."""
        attempt = 0
        digest = script_digest(call.text)
        while True:
            session: _Session | None = None
            sent = False
            try:
                session = self._acquire(call)
                full = define or digest not in session.defined
                script, params = loader_invocation(call, define=full)
                ps = PowerShell(session.pool)
                ps.add_script(script).add_parameters(params)
                sent = True
                # Only the message numbering is locked (see _Session), not the request.
                ps.begin_invoke()
                if full:
                    session.defined.add(digest)
                return session, ps, full
            except psrp_exc.AuthenticationError:
                self._drop(session)
                raise errors.BridgeAuthenticationError(
                    call.name, self.target,
                    'authentication failed (check psrp_username / psrp_password / psrp_auth)'
                ) from None
            except requests.exceptions.SSLError as exc:
                self._drop(session)
                raise errors.BridgeTransportError(
                    call.name, self.target,
                    f'TLS failure talking to the host: {_short(exc)}; if the host uses a '
                    'self-signed or private-CA certificate, set psrp_cert_validation to the '
                    'CA bundle path') from None
            except errors.BridgeTransportError:
                raise
            except _TRANSPORT_ERRORS as exc:
                self._drop(session)
                if sent and not _nothing_started(exc):
                    raise errors.BridgeTransportError(
                        call.name, self.target,
                        'connection lost while starting the pipeline; not retried because the '
                        f'script may have started on the host: {_short(exc)}') from None
                attempt += 1
                delay = self.reconnect_backoff * 2 ** (attempt - 1)
                if attempt > self.reconnect_attempts or time.monotonic() + delay > deadline:
                    raise errors.BridgeTransportError(
                        call.name, self.target,
                        f'cannot reach {self.host} port {self.port} after {attempt} '
                        f'attempt(s) ({_brief(exc)}); check psrp_host and psrp_port, that '
                        'WinRM listens there (winrm enumerate winrm/config/listener on the '
                        'host; 5986 for HTTPS, 5985 for HTTP) and that no firewall blocks the '
                        'port') from None
                LOG.warning('%s: %s; retry %d of %d in %.1fs', self.target, _brief(exc),
                            attempt, self.reconnect_attempts, delay)
                time.sleep(delay)

    def _drop(self, session: _Session | None) -> None:
        if session is not None:
            self._retire(session, broken=True)
            self._release(session)

    def _wait(self, session: _Session, ps: PowerShell, call: ScriptCall,
              deadline: float) -> None:
        while ps.state == PSInvocationState.RUNNING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._stop(session, ps)
                raise errors.BridgeTimeoutAfterStart(
                    call.name, self.target,
                    f'no result after {call.timeout:g}s; the pipeline was stopped and the '
                    'session recycled; the script had started, so the host may have done '
                    'some or all of its work')
            cap = _SERIAL_POLL if session.serialised else self.operation_timeout
            # WS-Man OperationTimeout in whole seconds: the host answers as soon
            # as output is ready, so this only bounds how late a timeout is seen.
            poll = max(1, min(cap, math.ceil(remaining)))
            try:
                ps.poll_invoke(timeout=poll)
            except psrp_exc.AuthenticationError:
                self._retire(session, broken=True)
                raise errors.BridgeAuthenticationError(
                    call.name, self.target, 'authentication failed while the script was running;'
                    ' it may have completed on the host') from None
            except _TRANSPORT_ERRORS as exc:
                self._retire(session, broken=True)
                raise errors.BridgeTransportError(
                    call.name, self.target,
                    'connection lost while the script was running; not retried because it may '
                    f'have completed on the host: {_short(exc)}') from None

    def _stop(self, session: _Session, ps: PowerShell) -> None:
        try:
            ps.stop()
        except Exception as exc:   # the session is recycled either way
            LOG.warning('Could not stop a timed-out pipeline on %s: %s', self.target,
                        type(exc).__name__)
        self._retire(session)

    def _collect(self, session: _Session, ps: PowerShell,
                 call: ScriptCall) -> tuple[str, str | None]:
        """Return (output text, stderr tail if the call produced no envelope)."""
        text = '\n'.join(str(o) for o in ps.output if o is not None)
        try:
            # WS-Man requires Terminate before the command's resources are freed;
            # without it WinRM refuses new commands after MaxConcurrentCommandsPerShell.
            ps.close()
        except Exception as exc:
            LOG.debug('Closing a finished pipeline on %s failed: %s', self.target,
                      type(exc).__name__)
            self._retire(session, broken=True)
        tail = _error_tail(ps)
        if text.strip():
            return text, None
        if ps.state in (PSInvocationState.FAILED, PSInvocationState.STOPPED) or tail:
            return text, tail
        return text, None

    def _no_envelope(self, call: ScriptCall, ps: PowerShell, text: str, tail: str) -> str:
        if ps.state == PSInvocationState.STOPPED:
            reason = 'the pipeline was stopped on the host before writing its result'
        elif ps.state == PSInvocationState.FAILED:
            reason = 'the pipeline failed without writing a result envelope'
        else:
            reason = 'the pipeline wrote errors and no result envelope'
        raise errors.BridgeError(call.name, self.target, reason, tail)


def _no_environment_per_request(wsman: WSMan) -> None:
    """Read proxy settings and CA bundles from the environment once, not on every request.

    pypsrp builds its requests session with ``trust_env = True``, which makes
    requests look at the environment (proxy variables, netrc, CA bundle
    variables) again for every request; the settings pypsrp took from the
    environment when it built the session are kept.
    """
    transport = wsman.transport
    build = transport._build_session

    def build_once() -> requests.Session:
        session = build()
        session.trust_env = False
        return session

    transport._build_session = build_once   # type: ignore[method-assign]


def _brief(exc: BaseException) -> str:
    """What went wrong reaching the host, in a few words (no URL, no traceback)."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError):
            return 'connection refused'
        if isinstance(cur, (TimeoutError, requests.exceptions.Timeout)):
            return 'connection timed out'
        if isinstance(cur, socket.gaierror):
            return 'host name not resolved'
        text = str(cur)
        for needle, words in (('Connection refused', 'connection refused'),
                              ('timed out', 'connection timed out'),
                              ('Name or service not known', 'host name not resolved'),
                              ('No route to host', 'no route to host'),
                              ('Failed to resolve', 'host name not resolved')):
            if needle in text:
                return words
        if isinstance(cur, BaseException):
            stack.extend([cur.__cause__, cur.__context__, getattr(cur, 'reason', None),
                          *[a for a in cur.args if isinstance(a, BaseException)]])
    return type(exc).__name__


def _serialise_requests(wsman: WSMan) -> None:
    """Let one WS-Man request at a time use this connection's security context."""
    lock = threading.Lock()
    send = wsman.transport.send

    def locked_send(*args: Any, **kwargs: Any) -> bytes:
        with lock:
            return send(*args, **kwargs)

    wsman.transport.send = locked_send   # type: ignore[method-assign]


def _nothing_started(exc: BaseException) -> bool:
    """True when the failure proves the host did not start the pipeline."""
    if isinstance(exc, psrp_exc.WSManFaultError):
        # The host answered the Command (or Send) with a fault instead of
        # accepting it: shell not found (idle timeout, WinRM restart), quota
        # exceeded, ...  A fresh pool may succeed.
        return True
    if isinstance(exc, psrp_exc.WinRMTransportError):
        return exc.code == 400
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    # requests wraps urllib3's NewConnectionError (connection refused / no route):
    # the request was never written.
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if type(cur).__name__ in ('NewConnectionError', 'ConnectTimeoutError'):
            return True
        if isinstance(cur, BaseException):
            stack.extend([cur.__cause__, cur.__context__, getattr(cur, 'reason', None),
                          *[a for a in cur.args if isinstance(a, BaseException)]])
    return False


def _record_text(record: Any) -> str:
    details = getattr(record, 'details_message', None)
    if details:
        return str(details)
    exc = getattr(record, 'exception', None)
    props = getattr(exc, 'adapted_properties', None) or {}
    if props.get('Message'):
        return str(props['Message'])
    return str(getattr(record, 'message', None) or record)


def _error_tail(ps: PowerShell) -> str:
    text = '\n'.join(_record_text(r) for r in ps.streams.error)
    return text[-_STDERR_TAIL:]


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + '...'
