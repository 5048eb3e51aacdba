"""Run rendered scripts in kept local PowerShell processes (``pwsh -s``).

``pwsh -s`` (``powershell.exe -s`` for Windows PowerShell) is PowerShell's
out-of-process remoting server, the one ``Start-Job`` uses: it speaks the
PowerShell Remoting Protocol over stdin/stdout, one XML element a line::

    <Data Stream='Default' PSGuid='...'>base64 PSRP fragments</Data>   both ways
    <DataAck PSGuid='...' />                                          server
    <Command PSGuid='...' />  / <CommandAck PSGuid='...' />           new pipeline
    <Signal PSGuid='...' />   / <SignalAck PSGuid='...' />            stop it
    <Close PSGuid='...' />    / <CloseAck PSGuid='...' />             end it (or the pool)

``PSGuid`` is the pipeline's id, or all zeros for the runspace pool.  The
PSRP messages themselves are built and parsed by psrpcore (the sans-IO
protocol library); this module only does the framing and the process.

The runner keeps up to ``pool_size`` processes, each with a runspace pool of
one runspace that runs one call at a time, so calls run in parallel up to
``pool_size``; a process is started when no idle one is left.  Each process
knows exactly which scripts it has defined (the loader of
:mod:`psdriver.bridge.call`), so only its first call of a script carries the
script's text.  The values document is a PSRP string: it never touches disk
or the command line.

A process that times out is killed with its process tree
(:class:`~psdriver.bridge.errors.BridgeTimeoutAfterStart`: the script had
started), one that dies or breaks the protocol is discarded
(:class:`~psdriver.bridge.errors.BridgeError` with its stderr tail), and the
next call starts a fresh one.
"""

from __future__ import annotations

import base64
import collections
import logging
import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from typing import IO, Any, Mapping, Sequence
from xml.etree import ElementTree

import psrpcore
from psrpcore.types import PSInvocationState, RunspacePoolState

from psdriver.bridge import errors, logfilter
from psdriver.bridge.call import (
    ScriptCall, is_unknown_script, loader_invocation, script_digest,
)
from psdriver.bridge.runners.local import DEFAULT_CHILD_ENV, _kill_tree, _platform_popen_kwargs

LOG = logging.getLogger(__name__)
logfilter.install()

#: pwsh / powershell.exe arguments of the out-of-process server (as Start-Job starts it).
SERVER_ARGS = ('-s', '-NoLogo', '-NoProfile')
EMPTY_GUID = uuid.UUID(int=0)
#: How long opening a runspace pool in a new process may take.
DEFAULT_START_TIMEOUT = 60.0
_CHUNK = 32 * 1024          # PSRP bytes per Data line: the fragment size PowerShell uses
_LINE = re.compile(r"""^<(?P<tag>\w+)(?:\s+Stream=['"](?P<stream>\w+)['"])?"""
                   r"""\s+PSGuid=['"](?P<guid>[0-9a-fA-F-]{36})['"]"""
                   r"""\s*(?:/>|>(?P<data>[A-Za-z0-9+/=\s]*)</\w+>)$""")
_EOF = object()


class _ProtocolError(Exception):
    """The process sent something that is not the out-of-process framing, or died."""


class _Process:
    """One ``pwsh -s`` process with an open runspace pool of one runspace."""

    def __init__(self, argv: list[str], env: dict[str, str], stderr_keep: int) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, close_fds=True, **_platform_popen_kwargs())
        self.pid = self.proc.pid
        self.lines: queue.Queue[Any] = queue.Queue()
        self._stderr: collections.deque[bytes] = collections.deque()
        self._stderr_size = 0
        self._stderr_keep = stderr_keep
        self._write_lock = threading.Lock()
        self.pool = psrpcore.ClientRunspacePool(min_runspaces=1, max_runspaces=1)
        #: Hashes of the scripts this process's runspace has defined.
        self.defined: set[str] = set()
        self.calls = 0
        self.dead = False
        #: Bytes written to stdin and read from stdout (benchmarks read them).
        self.bytes_sent = 0
        self.bytes_received = 0
        for target, pipe, name in ((self._read_stdout, self.proc.stdout, 'stdout'),
                                   (self._read_stderr, self.proc.stderr, 'stderr')):
            threading.Thread(target=target, args=(pipe,), daemon=True,
                             name=f'psdriver-pwsh-{self.pid}-{name}').start()

    # -- pipes ----------------------------------------------------------------------------------

    def _read_stdout(self, pipe: IO[bytes]) -> None:
        try:
            for raw in pipe:
                self.bytes_received += len(raw)
                line = raw.decode('utf-8', errors='replace').strip()
                if line:
                    self.lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self.lines.put(_EOF)

    def _read_stderr(self, pipe: IO[bytes]) -> None:
        try:
            while True:
                chunk = pipe.read1(65536) if hasattr(pipe, 'read1') else pipe.read(65536)
                if not chunk:
                    break
                self._stderr.append(chunk)
                self._stderr_size += len(chunk)
                while self._stderr_size > self._stderr_keep and len(self._stderr) > 1:
                    self._stderr_size -= len(self._stderr.popleft())
        except (OSError, ValueError):
            pass

    def stderr_tail(self, chars: int) -> str:
        text = b''.join(self._stderr).decode('utf-8', errors='replace')
        return text[-chars:].strip() if chars > 0 else ''

    def _write(self, text: str) -> None:
        try:
            with self._write_lock:
                assert self.proc.stdin is not None
                data = text.encode('utf-8') + b'\n'
                self.bytes_sent += len(data)
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise _ProtocolError(f'cannot write to the process: {exc}') from None

    def _next(self, deadline: float) -> tuple[str, str, uuid.UUID, str]:
        """The next element: (tag, stream, guid, data); raise TimeoutError at the deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            line = self.lines.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError from None
        if line is _EOF:
            self.lines.put(_EOF)
            raise _ProtocolError('the process closed its output (it exited or crashed)')
        match = _LINE.match(line)
        if match is None:
            raise _ProtocolError(f'unexpected output from the process: {line[:200]!r}')
        return (match['tag'], match['stream'] or 'Default', uuid.UUID(match['guid']),
                match['data'] or '')

    # -- protocol -------------------------------------------------------------------------------

    def _expect(self, tag: str, guid: uuid.UUID, deadline: float,
                events: list[Any] | None = None) -> None:
        """Read until ``<tag PSGuid=guid>``, feeding any Data on the way to psrpcore."""
        while True:
            got, stream, got_guid, data = self._next(deadline)
            if got == 'Data':
                self._receive(stream, got_guid, data, events)
            elif got == tag and got_guid == guid:
                return
            elif got not in ('DataAck', 'CommandAck', 'SignalAck', 'CloseAck'):
                raise _ProtocolError(f'unexpected <{got}> from the process')

    def _receive(self, stream: str, guid: uuid.UUID, data: str,
                 events: list[Any] | None) -> None:
        stream_type = (psrpcore.StreamType.prompt_response if stream == 'PromptResponse'
                       else psrpcore.StreamType.default)
        self.pool.receive_data(psrpcore.PSRPPayload(
            base64.b64decode(data), stream_type, None if guid == EMPTY_GUID else guid))
        while True:
            event = self.pool.next_event()
            if event is None:
                return
            if events is not None:
                events.append(event)

    def _send_pending(self, deadline: float, events: list[Any] | None = None) -> None:
        while True:
            payload = self.pool.data_to_send(_CHUNK)
            if payload is None:
                return
            guid = payload.pipeline_id or EMPTY_GUID
            prompt = payload.stream_type == psrpcore.StreamType.prompt_response
            stream = 'PromptResponse' if prompt else 'Default'
            self._write(f"<Data Stream='{stream}' PSGuid='{guid}'>"
                        f"{base64.b64encode(payload.data).decode('ascii')}</Data>")
            self._expect('DataAck', guid, deadline, events)

    def open(self, deadline: float) -> None:
        self.pool.open()
        events: list[Any] = []
        self._send_pending(deadline, events)
        while self.pool.state != RunspacePoolState.Opened:
            if self.pool.state in (RunspacePoolState.Broken, RunspacePoolState.Closed):
                raise _ProtocolError(f'the runspace pool is {self.pool.state.name}')
            tag, stream, guid, data = self._next(deadline)
            if tag == 'Data':
                self._receive(stream, guid, data, events)

    def run(self, script: str, params: dict[str, Any], deadline: float) -> tuple[str, str, str]:
        """Run one pipeline; return (output text, error text, final state name)."""
        ps = psrpcore.ClientPowerShell(self.pool)
        ps.add_script(script)
        for key, value in params.items():
            ps.add_parameter(key, value)
        self._write(f"<Command PSGuid='{ps.pipeline_id}' />")
        self._expect('CommandAck', ps.pipeline_id, deadline)
        ps.start()
        events: list[Any] = []
        self._send_pending(deadline, events)
        outputs: list[str] = []
        problems: list[str] = []
        state = None
        while state is None:
            for event in events:
                if isinstance(event, psrpcore.PipelineOutputEvent):
                    if event.data is not None:
                        outputs.append(str(event.data))
                elif isinstance(event, psrpcore.ErrorRecordEvent):
                    problems.append(_record_text(event.data))
                elif (isinstance(event, psrpcore.PipelineStateEvent)
                      and event.state in (PSInvocationState.Completed, PSInvocationState.Failed,
                                          PSInvocationState.Stopped)):
                    state = event.state
                    if event.reason is not None:
                        problems.append(_record_text(event.reason))
                elif isinstance(event, psrpcore.RunspacePoolStateEvent) and \
                        event.state in (RunspacePoolState.Broken, RunspacePoolState.Closed):
                    raise _ProtocolError(f'the runspace pool is {event.state.name}')
            events = []
            if state is not None:
                break
            tag, stream, guid, data = self._next(deadline)
            if tag == 'Data':
                self._receive(stream, guid, data, events)
            elif tag not in ('DataAck', 'CommandAck', 'SignalAck', 'CloseAck'):
                raise _ProtocolError(f'unexpected <{tag}> from the process')
        # The CloseAck is read at the start of the next call (no round trip waits for it).
        self._write(f"<Close PSGuid='{ps.pipeline_id}' />")
        return '\n'.join(outputs), '\n'.join(p for p in problems if p), state.name

    def close(self, wait: float = 2.0) -> None:
        """Close the pool politely, then make sure the process is gone."""
        if not self.dead and self.proc.poll() is None:
            try:
                self._write(f"<Close PSGuid='{EMPTY_GUID}' />")
                self._expect('CloseAck', EMPTY_GUID, time.monotonic() + wait)
            except (_ProtocolError, TimeoutError, psrpcore.PSRPCoreError):
                pass
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        self.dead = True
        if self.proc.poll() is None:
            _kill_tree(self.proc)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            LOG.warning('PowerShell process %d did not exit after being killed', self.pid)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


class KeptProcessRunner:
    """Runner keeping up to ``pool_size`` local ``pwsh -s`` processes (see the module docstring).

    ``env`` holds extra environment variables for the processes, layered over
    this process's environment; its ``PATH`` (if given) is also where
    ``executable`` is looked up.
    """

    features: frozenset[str] = frozenset()

    def __init__(self, executable: str = 'pwsh', pool_size: int = 4,
                 env: Mapping[str, str] | None = None, extra_args: Sequence[str] = (),
                 start_timeout: float = DEFAULT_START_TIMEOUT,
                 stderr_tail_chars: int = 4000) -> None:
        if pool_size < 1:
            raise ValueError('pool_size must be at least 1')
        self.executable = executable
        self.pool_size = pool_size
        self.env = dict(env or {})
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.stderr_tail_chars = stderr_tail_chars
        self.target = f'local {executable} -s ({socket.gethostname()})'
        self._idle: list[_Process] = []
        self._busy: set[_Process] = set()
        self._cond = threading.Condition()
        self._closed = False
        #: Processes started so far (tests and benchmarks read it).
        self.processes_started = 0

    def __repr__(self) -> str:
        return f'<KeptProcessRunner {self.target} x{self.pool_size}>'

    # -- Runner protocol ----------------------------------------------------------------------

    def run(self, call: ScriptCall) -> str:
        deadline = time.monotonic() + call.timeout
        proc = self._acquire(call, deadline)
        ok = False
        try:
            text = self._run_on(proc, call, deadline)
            ok = True
            return text
        finally:
            self._release(proc, healthy=ok)

    def traffic(self) -> tuple[int, int]:
        """(bytes sent, bytes received) over the pipes of the idle processes."""
        with self._cond:
            return (sum(p.bytes_sent for p in self._idle),
                    sum(p.bytes_received for p in self._idle))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for proc in idle:
            proc.close()

    # -- processes ------------------------------------------------------------------------------

    def _acquire(self, call: ScriptCall, deadline: float) -> _Process:
        gone: list[_Process] = []
        try:
            return self._take(call, deadline, gone)
        finally:
            for proc in gone:      # reaped outside the lock
                LOG.warning('%s: PowerShell process %d exited while idle (code %s): %s',
                            self.target, proc.pid, proc.proc.returncode,
                            proc.stderr_tail(300) or 'no stderr')
                proc.kill()

    def _take(self, call: ScriptCall, deadline: float, gone: list[_Process]) -> _Process:
        with self._cond:
            while True:
                if self._closed:
                    raise errors.BridgeTransportError(call.name, self.target, 'runner is closed')
                while self._idle:
                    proc = self._idle.pop()
                    if proc.proc.poll() is None:
                        self._busy.add(proc)
                        return proc
                    gone.append(proc)
                if len(self._busy) < self.pool_size:
                    self._busy.add(placeholder := _Placeholder())
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise errors.BridgeTimeout(
                        call.name, self.target,
                        f'all {self.pool_size} PowerShell processes stayed busy for '
                        f'{call.timeout:g}s; the script did not start')
                self._cond.wait(remaining)
        try:
            proc = self._start(call)
        except BaseException:
            with self._cond:
                self._busy.discard(placeholder)
                self._cond.notify()
            raise
        with self._cond:
            self._busy.discard(placeholder)
            self._busy.add(proc)
        return proc

    def _start(self, call: ScriptCall) -> _Process:
        env = dict(os.environ)
        for key, value in DEFAULT_CHILD_ENV.items():
            env.setdefault(key, value)
        env.update(self.env)
        exe = shutil.which(self.executable, path=env.get('PATH', os.defpath))
        if exe is None:
            raise errors.BridgeTransportError(
                call.name, self.target,
                f'cannot start PowerShell: {self.executable!r} was not found or is not '
                'executable; install PowerShell 7 (pwsh) or Windows PowerShell, or set '
                '[powershell] executable to its full path')
        argv = [exe, *SERVER_ARGS, *self.extra_args]
        try:
            proc = _Process(argv, env, self.stderr_tail_chars * 4)
        except OSError as exc:
            raise errors.BridgeTransportError(
                call.name, self.target,
                f'cannot start PowerShell {exe!r}: {exc.strerror or exc}') from None
        try:
            proc.open(time.monotonic() + self.start_timeout)
        except TimeoutError:
            proc.kill()
            raise errors.BridgeTransportError(
                call.name, self.target,
                f'{exe} -s did not open a runspace within {self.start_timeout:g}s',
                proc.stderr_tail(self.stderr_tail_chars)) from None
        except (_ProtocolError, psrpcore.PSRPCoreError) as exc:
            proc.kill()
            raise errors.BridgeTransportError(
                call.name, self.target, f'{exe} -s failed to open a runspace: {exc}',
                proc.stderr_tail(self.stderr_tail_chars), exit_code=proc.proc.returncode
            ) from None
        with self._cond:
            self.processes_started += 1
        LOG.debug('%s: started PowerShell process %d', self.target, proc.pid)
        return proc

    def _release(self, proc: _Process, healthy: bool) -> None:
        with self._cond:
            self._busy.discard(proc)
            keep = healthy and not proc.dead and not self._closed
            if keep:
                self._idle.append(proc)
            self._cond.notify()
        if not keep:
            proc.kill() if not healthy else proc.close()

    # -- one call -------------------------------------------------------------------------------

    def _run_on(self, proc: _Process, call: ScriptCall, deadline: float) -> str:
        digest = script_digest(call.text)
        define = digest not in proc.defined
        while True:
            script, params = loader_invocation(call, define=define)
            try:
                out, problems, state = proc.run(script, params, deadline)
            except TimeoutError:
                proc.kill()
                raise errors.BridgeTimeoutAfterStart(
                    call.name, self.target,
                    f'no result after {call.timeout:g}s; PowerShell process {proc.pid} and '
                    'its process tree were killed; the script had started, so the host may '
                    'have done some or all of its work',
                    proc.stderr_tail(self.stderr_tail_chars)) from None
            except ElementTree.ParseError as exc:
                proc.kill()
                raise errors.BridgeBadOutput(
                    call.name, self.target, f'the output is not valid PSRP XML ({exc})',
                    proc.stderr_tail(self.stderr_tail_chars)) from None
            except (_ProtocolError, psrpcore.PSRPCoreError) as exc:
                proc.kill()
                code = proc.proc.returncode
                raise errors.BridgeError(
                    call.name, self.target,
                    f'PowerShell process {proc.pid} failed during the call ({exc}); the script '
                    'may have started on the host', proc.stderr_tail(self.stderr_tail_chars),
                    exit_code=code) from None
            proc.calls += 1
            if define:
                proc.defined.add(digest)
            if is_unknown_script(out) and not define:
                proc.defined.discard(digest)
                define = True
                continue
            if out.strip():
                return out
            reason = {'Stopped': 'the pipeline was stopped before writing its result',
                      'Failed': 'the pipeline failed without writing a result envelope'}.get(
                state, 'the pipeline wrote no result envelope')
            raise errors.BridgeError(call.name, self.target, reason,
                                     problems[-2000:] or proc.stderr_tail(self.stderr_tail_chars))


class _Placeholder:
    """Holds a pool slot while a new process starts."""

    dead = False


def _record_text(record: Any) -> str:
    if record is None:
        return ''
    exc = getattr(record, 'Exception', None)
    message = getattr(exc, 'Message', None)
    if message:
        return str(message)
    return str(record)
