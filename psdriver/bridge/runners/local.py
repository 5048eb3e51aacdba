"""Run rendered scripts in a local PowerShell process (``pwsh`` or ``powershell.exe``).

One process per call::

    pwsh -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -File <tmp>.ps1

* The rendered text goes to a private temporary ``.ps1`` file (mode 0600,
  UTF-8 with a BOM, which Windows PowerShell 5.1 needs to read it as UTF-8)
  that is removed afterwards.  ``-Command -`` is not used: PowerShell runs
  stdin statement by statement like a REPL (a multi-line statement without a
  trailing blank line is skipped, ``$ErrorActionPreference`` and the exit
  code behave differently), and a command line is length-limited on Windows.
* The values document goes on stdin, never on the command line (visible to
  every local user) and never on disk: it may hold passwords.  The wrapper
  rendered with the ``local_process`` feature reads stdin when
  ``-PsDriverInput`` is empty, sets UTF-8 console output and exits 0 after a
  success envelope and 1 after an error envelope.
* stdout and stderr are drained concurrently, so large outputs cannot fill a
  pipe and deadlock; only the tail of stderr is kept.
* After ``call.timeout`` seconds the whole process tree is killed (POSIX: the
  process leads its own session and its process group is killed; Windows:
  ``taskkill /T /F``) and :class:`~psdriver.bridge.errors.BridgeTimeoutAfterStart`
  is raised (the script had started).

Every call is independent (own process, own pipes, own threads), so one
runner can be used from several threads at once.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import IO, Mapping, Sequence

from psdriver.bridge import envelope, errors
from psdriver.bridge.call import ScriptCall, ascii_document

LOG = logging.getLogger(__name__)

BASE_ARGS = ('-NoLogo', '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass')
#: Set in the child's environment unless the caller sets them: no telemetry
#: and no update check at every process start.
DEFAULT_CHILD_ENV = {'POWERSHELL_TELEMETRY_OPTOUT': '1', 'POWERSHELL_UPDATECHECK': 'Off'}

_IS_WINDOWS = os.name == 'nt'
_CHUNK = 64 * 1024
#: How long to wait for the output pipes to close once the process tree is dead.
_DRAIN_AFTER_KILL = 5.0
_UNSAFE_NAME_CHARS = re.compile(r'[^A-Za-z0-9_-]+')


class _Drain(threading.Thread):
    """Read a pipe to EOF; keep everything, or only the last ``keep`` bytes."""

    def __init__(self, pipe: IO[bytes], name: str, keep: int | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self._pipe = pipe
        self._keep = keep
        self._chunks: list[bytes] = []
        self._tail = bytearray()

    def run(self) -> None:
        try:
            while True:
                chunk = self._pipe.read(_CHUNK)
                if not chunk:
                    break
                if self._keep is None:
                    self._chunks.append(chunk)
                else:
                    self._tail += chunk
                    if len(self._tail) > self._keep:
                        del self._tail[:len(self._tail) - self._keep]
        except (OSError, ValueError):
            pass            # pipe closed under us: the process is gone
        finally:
            try:
                self._pipe.close()
            except OSError:
                pass

    def data(self) -> bytes:
        return b''.join(self._chunks) if self._keep is None else bytes(self._tail)


class _Feed(threading.Thread):
    """Write the document to stdin, then close it (EOF ends the wrapper's read)."""

    def __init__(self, pipe: IO[bytes], data: bytes) -> None:
        super().__init__(name='psdriver-local-stdin', daemon=True)
        self._pipe = pipe
        self._data = data

    def run(self) -> None:
        try:
            self._pipe.write(self._data)
        except (OSError, ValueError):
            pass            # the process exited without reading its input
        finally:
            try:
                self._pipe.close()
            except OSError:
                pass


class LocalRunner:
    """Runner for a PowerShell executable on this machine.

    ``env`` holds extra environment variables for the child, layered over
    this process's environment at each call; its ``PATH`` (if given) is also
    where ``executable`` is looked up.  ``extra_args`` go before ``-File``.
    """

    features = frozenset({'local_process'})

    def __init__(self, executable: str = 'pwsh', extra_args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, stderr_tail_chars: int = 4000) -> None:
        self.executable = executable
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        self.stderr_tail_chars = stderr_tail_chars
        self.target = f'local {executable} ({socket.gethostname()})'

    # -- Runner protocol ----------------------------------------------------------------------

    def run(self, call: ScriptCall) -> str:
        env = self._child_env()
        exe = self._resolve(call, env)
        path = self._write_script(call)
        try:
            return self._run_process(call, exe, path, env)
        finally:
            _remove(path)

    def close(self) -> None:
        """Nothing to release: every call has its own process."""

    # -- steps ----------------------------------------------------------------------------------

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in DEFAULT_CHILD_ENV.items():
            env.setdefault(key, value)
        env.update(self.env)
        return env

    def _resolve(self, call: ScriptCall, env: Mapping[str, str]) -> str:
        search = env.get('PATH', os.defpath)
        found = shutil.which(self.executable, path=search)
        if found is None:
            raise errors.BridgeTransportError(
                call.name, self.target,
                f'cannot start PowerShell: {self.executable!r} was not found or is not '
                f'executable (PATH={search}); install PowerShell 7 (pwsh) or Windows '
                'PowerShell, or set [powershell] executable to its full path')
        return found

    def _write_script(self, call: ScriptCall) -> str:
        """Write the rendered text to a new private .ps1 file and return its path."""
        stem = _UNSAFE_NAME_CHARS.sub('_', call.name)[:60] or 'script'
        # mkstemp: O_EXCL, mode 0600 on POSIX; on Windows the user's temp dir.
        fd, path = tempfile.mkstemp(prefix=f'psdriver-{stem}-', suffix='.ps1')
        try:
            with os.fdopen(fd, 'wb') as fh:
                fh.write(call.text.encode('utf-8-sig'))
        except BaseException:
            _remove(path)
            raise
        return path

    def _command(self, exe: str, path: str) -> list[str]:
        return [exe, *BASE_ARGS, *self.extra_args, '-File', path]

    def _run_process(self, call: ScriptCall, exe: str, path: str,
                     env: dict[str, str]) -> str:
        cmd = self._command(exe, path)
        LOG.debug('Starting %s for %s', cmd, call.name)
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, close_fds=True, **_platform_popen_kwargs())
        except OSError as exc:
            raise errors.BridgeTransportError(
                call.name, self.target,
                f'cannot start PowerShell {exe!r}: {exc.strerror or exc}') from None

        out = _Drain(proc.stdout, 'psdriver-local-stdout')
        err = _Drain(proc.stderr, 'psdriver-local-stderr', keep=self.stderr_tail_chars * 4)
        feed = _Feed(proc.stdin, ascii_document(call.document).encode('ascii'))
        for thread in (out, err, feed):
            thread.start()

        timeout = call.timeout if call.timeout and call.timeout > 0 else None
        deadline = None if timeout is None else time.monotonic() + timeout
        exited = _wait_process(proc, deadline)
        drained = exited and _join((out, err), deadline)
        if not drained:
            _kill_tree(proc)
            proc.wait()
            if not _join((out, err, feed), time.monotonic() + _DRAIN_AFTER_KILL):
                LOG.warning('%s: output pipes still open after killing process %d; '
                            'a process it started left its process tree', call.name, proc.pid)
            tail = self._tail(err.data())
            if exited:
                reason = (f'{exe} exited with code {proc.returncode} but processes it '
                          f'started kept its output open past the {timeout:g}s timeout; '
                          'they were killed')
            else:
                reason = (f'did not finish within {timeout:g}s; its process tree was killed; '
                          'the script had started, so the host may have done some or all of '
                          'its work')
            raise errors.BridgeTimeoutAfterStart(call.name, self.target, reason, tail)
        feed.join(_DRAIN_AFTER_KILL)
        LOG.debug('%s: process %d exited with code %s', call.name, proc.pid, proc.returncode)
        return self._result(call, exe, proc.returncode, out.data(), err.data())

    def _result(self, call: ScriptCall, exe: str, returncode: int, stdout: bytes,
                stderr: bytes) -> str:
        tail = self._tail(stderr)
        try:
            text = stdout.decode('utf-8')
        except UnicodeDecodeError as exc:
            if returncode:
                raise errors.BridgeError(
                    call.name, self.target,
                    f'{exe} {_how_it_ended(returncode)} without printing an envelope',
                    tail, exit_code=returncode) from None
            raise errors.BridgeBadOutput(
                call.name, self.target, f'output is not UTF-8 ({exc.reason} at byte '
                f'{exc.start})', tail, exit_code=returncode) from None
        text = text.lstrip('\ufeff')
        problem = _envelope_problem(text)
        if problem is None:
            # An error envelope comes with exit code 1: the Bridge maps it.
            return text
        if returncode:
            raise errors.BridgeError(
                call.name, self.target,
                f'{exe} {_how_it_ended(returncode)} without printing an envelope ({problem})',
                tail, exit_code=returncode)
        raise errors.BridgeBadOutput(call.name, self.target, problem, tail, exit_code=0)

    def _tail(self, data: bytes) -> str:
        text = data.decode('utf-8', errors='replace')
        return text[-self.stderr_tail_chars:].strip() if self.stderr_tail_chars > 0 else ''


def _envelope_problem(text: str) -> str | None:
    """Why ``text`` is not one JSON envelope, or None if it is one."""
    body = text.strip()
    if not body:
        return 'no output (expected one JSON envelope)'
    try:
        doc = envelope.loads(body)
    except RecursionError:
        return 'output is nested too deeply to be an envelope'
    except ValueError as exc:
        snippet = body[:200].replace('\n', ' ')
        return f'output is not JSON ({exc.msg} at {exc.pos}): {snippet!r}'
    if not isinstance(doc, dict) or not isinstance(doc.get('ok'), bool):
        return 'output is JSON but not an envelope'
    return None


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f'was killed by {signal.Signals(-returncode).name}'
        except ValueError:
            return f'was killed by signal {-returncode}'
    return 'failed'


def _wait_process(proc: subprocess.Popen, deadline: float | None) -> bool:
    try:
        proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def _join(threads: Sequence[threading.Thread], deadline: float | None) -> bool:
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


def _platform_popen_kwargs() -> dict:
    if _IS_WINDOWS:
        # No console window for a service; own process group (no stray Ctrl+C).
        flags = (getattr(subprocess, 'CREATE_NO_WINDOW', 0x08000000)
                 | getattr(subprocess, 'CREATE_NEW_PROCESS_GROUP', 0x00000200))
        return {'creationflags': flags}
    # The child leads a new session, so its process group id is its pid and
    # everything it starts (unless it calls setsid itself) can be killed at once.
    return {'start_new_session': True}


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill the process and everything it started."""
    if _IS_WINDOWS:
        # taskkill walks the parent/child tree from the pid (/T) and
        # terminates each process (/F).  A child whose parent has already
        # exited is no longer in the tree; proc.kill() covers the case where
        # taskkill itself cannot run.
        try:
            subprocess.run(['taskkill', '/T', '/F', '/PID', str(proc.pid)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30,
                           creationflags=getattr(subprocess, 'CREATE_NO_WINDOW', 0x08000000))
        except (OSError, subprocess.SubprocessError) as exc:
            LOG.warning('taskkill of process %d failed: %s', proc.pid, exc)
        try:
            proc.kill()
        except OSError:
            pass
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass                # the whole group is already gone
    except PermissionError as exc:
        LOG.warning('cannot kill process group %d: %s', proc.pid, exc)
        proc.kill()


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        LOG.warning('could not remove temporary script %s: %s', path, exc)
