"""A local WS-Man endpoint that speaks PowerShell Remoting, for tests, the demo and benchmarks.

pypsrp (the client the PSRP runner uses) talks to it exactly as it talks to a
Windows host: SOAP over HTTP(S) with basic auth, the six shell actions
(Create, Receive, Command, Send, Signal, Delete), PSRP fragments in base64.
The PSRP layer is psrpcore's ``ServerRunspacePool``/``ServerPipeline``; this
module only adds the WS-Man framing, a worker thread per pipeline and the
fault knobs.

A pipeline that runs the bridge's loader is resolved first as a runspace
would (:mod:`tests.infra.runspace`: the text sent with its hash is kept, a
hash the shell does not hold answers UNKNOWN).  The wrapped script and its
parameters then go to ``handler(script_text, params)``,
which returns ``(output_strings, error_messages)``; raising makes the pipeline
fail (state Failed, no output).  The default handler runs the rendered script
on the simulated host.  Everything the server saw is recorded
(:attr:`WSManEndpoint.pipelines`, :attr:`WSManEndpoint.actions`) so tests can
assert on the exact text and parameters that crossed the wire.

Not implemented (the bridge does not use them): NTLM/Kerberos and message
encryption, Connect/Disconnect/Reconnect, Get/Enumerate, host calls.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hmac
import http.server
import logging
import re
import socket
import ssl
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from typing import Any, Callable

import psrpcore
from psrpcore.types import (
    ErrorCategory, ErrorCategoryInfo, ErrorRecord, NETException, PSInvocationState,
)

from tests.infra.runspace import UNKNOWN, RunspaceScripts

LOG = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], tuple[list[str], list[str]]]

NS = {
    's': 'http://www.w3.org/2003/05/soap-envelope',
    'wsa': 'http://schemas.xmlsoap.org/ws/2004/08/addressing',
    'wsman': 'http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd',
    'wsmanfault': 'http://schemas.microsoft.com/wbem/wsman/1/wsmanfault',
    'wst': 'http://schemas.xmlsoap.org/ws/2004/09/transfer',
    'rsp': 'http://schemas.microsoft.com/wbem/wsman/1/windows/shell',
    'pwsh': 'http://schemas.microsoft.com/powershell',
}
_TRANSFER = 'http://schemas.xmlsoap.org/ws/2004/09/transfer/'
_SHELL = 'http://schemas.microsoft.com/wbem/wsman/1/windows/shell/'
#: Short action name -> full wsa:Action URI.
ACTIONS = {
    'Create': _TRANSFER + 'Create', 'Delete': _TRANSFER + 'Delete',
    'Command': _SHELL + 'Command', 'Receive': _SHELL + 'Receive',
    'Send': _SHELL + 'Send', 'Signal': _SHELL + 'Signal',
}
_SHORT = {uri: name for name, uri in ACTIONS.items()}
_DONE = _SHELL + 'CommandState/Done'
_RUNNING = _SHELL + 'CommandState/Running'
_STOP_SIGNALS = ('powershell/signal/ctrl_c', _SHELL + 'signal/ctrl_c')
_TERMINATE = _SHELL + 'signal/Terminate'

#: WS-Man fault codes WinRM uses (pypsrp checks these two by value).
FAULT_OPERATION_TIMEOUT = 0x80338029   # Receive long-poll ended without data
FAULT_SHELL_NOT_FOUND = 0x8033805B     # unknown ShellId (e.g. after a service restart)
#: Illustrative codes: clients only show them.
FAULT_INVALID = 0x803381AB             # anything this endpoint does not understand
FAULT_QUOTA = 0x803381A6               # e.g. MaxConcurrentCommandsPerShell reached
_QUOTA_MESSAGE = ('The WS-Management service cannot process the request. The maximum number '
                  'of concurrent commands per shell has been exceeded.')

for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)


class _Fault(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class SeenPipeline:
    """One pipeline as the server received it."""

    shell_id: str
    command_id: str
    script: str
    params: dict[str, Any]
    is_script: bool
    command_count: int


class EndpointFaults:
    """Failure knobs; every knob is thread-safe and may change while serving."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reject_auth = False
        self._delays: dict[str | None, float] = {}
        self._drops: list[list[Any]] = []   # [action|None, remaining, after_processing]
        self._faults: list[list[Any]] = []  # [action|None, remaining, code, message]
        self.pipeline_delay = 0.0

    def delay(self, seconds: float, action: str | None = None) -> None:
        """Sleep ``seconds`` before answering each request (of ``action`` only, if given)."""
        with self._lock:
            self._delays[action] = seconds

    def drop(self, action: str | None = None, count: int = 1,
             after_processing: bool = False) -> None:
        """Close the connection instead of answering the next ``count`` requests.

        ``after_processing=False`` drops before the request has any effect;
        ``True`` applies it first (e.g. the pipeline was created and started)
        and then drops the response, like a network failure on the way back.
        """
        with self._lock:
            self._drops.append([action, count, after_processing])

    def fault(self, action: str | None = None, count: int = 1,
              code: int = FAULT_QUOTA, message: str = _QUOTA_MESSAGE) -> None:
        """Answer the next ``count`` requests with a WS-Man fault, without acting on them."""
        with self._lock:
            self._faults.append([action, count, code, message])

    def slow_pipelines(self, seconds: float) -> None:
        """Make every pipeline wait ``seconds`` (interruptible by Signal) before it runs."""
        self.pipeline_delay = seconds

    def clear(self) -> None:
        with self._lock:
            self.reject_auth = False
            self._delays.clear()
            self._drops.clear()
            self._faults.clear()
            self.pipeline_delay = 0.0

    def _delay_for(self, action: str) -> float:
        with self._lock:
            return self._delays.get(action, self._delays.get(None, 0.0))

    def _take_fault(self, action: str) -> _Fault | None:
        with self._lock:
            for entry in self._faults:
                if entry[0] in (None, action) and entry[1] > 0:
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._faults.remove(entry)
                    return _Fault(entry[2], entry[3])
        return None

    def _take_drop(self, action: str) -> bool | None:
        """None: answer normally; False: drop before processing; True: after."""
        with self._lock:
            for entry in self._drops:
                if entry[0] in (None, action) and entry[1] > 0:
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._drops.remove(entry)
                    return bool(entry[2])
        return None


class _Pipe:
    def __init__(self, shell: _Shell, command_id: str) -> None:
        self.command_id = command_id
        self.sp = psrpcore.ServerPipeline(shell.pool, uuid.UUID(command_id))
        self.cancel = threading.Event()
        self.finished = False
        self.thread: threading.Thread | None = None


class _Shell:
    def __init__(self, shell_id: str) -> None:
        self.id = shell_id
        self.pool = psrpcore.ServerRunspacePool()
        self.cond = threading.Condition(threading.RLock())
        #: target (None = the pool, else a pipeline's command id) -> queued fragment chunks
        self.queues: dict[str | None, collections.deque[bytes]] = collections.defaultdict(
            collections.deque)
        self.pipes: dict[str, _Pipe] = {}
        self.closed = False
        self.slots: threading.BoundedSemaphore | None = None
        #: What the bridge's loader has defined in this shell's runspaces.
        self.scripts = RunspaceScripts()

    def flush(self) -> None:
        """Move everything psrpcore has to send into per-target queues (lock held)."""
        while True:
            payload = self.pool.data_to_send(_CHUNK)
            if payload is None:
                break
            target = str(payload.pipeline_id).upper() if payload.pipeline_id else None
            self.queues[target].append(payload.data)
        self.cond.notify_all()


_CHUNK = 128 * 1024             # bytes of PSRP fragments per data_to_send call
_MAX_RECEIVE_BYTES = 384 * 1024  # per Receive response, like a MaxEnvelopeSize of 512 KiB


def _sim_handler(host: Any) -> Handler:
    from psdriver.sim import execute_rendered   # only needed without a custom handler

    def handler(script: str, params: dict[str, Any]) -> tuple[list[str], list[str]]:
        if set(params) != {'PsDriverInput'}:
            raise ValueError('a rendered script takes exactly one parameter, PsDriverInput; '
                             f'got {sorted(params)}')
        return [execute_rendered(script, params['PsDriverInput'], host)], []

    return handler


class WSManEndpoint:
    """A WS-Man/PSRP server on ``127.0.0.1:<ephemeral port>/wsman``.

    ::

        with WSManEndpoint(username='admin', password='pw', host=SimHost()) as ep:
            runner = PSRPRunner('127.0.0.1', port=ep.port, ssl=False, auth='basic',
                                insecure_cleartext_basic_auth=True,
                                username='admin', password='pw', message_encryption='never')

    Without ``handler``, pipelines run on the simulated ``host`` (a new
    ``SimHost()`` if none is given) and ``host.faults.host_down()`` makes the
    endpoint drop every connection, like an unreachable host.
    """

    def __init__(self, username: str = 'psdriver', password: str = 'psdriver',
                 handler: Handler | None = None, host: Any = None,
                 certfile: str | None = None, keyfile: str | None = None,
                 port: int = 0, max_receive_wait: float = 2.0) -> None:
        #: HTTP body bytes received from and sent to clients (benchmarks read them).
        self.bytes_received = 0
        self.bytes_sent = 0
        self.username = username
        self._password = password
        self._handler = handler
        self._sim_host = host
        self.faults = EndpointFaults()
        self.max_receive_wait = max_receive_wait
        self._ssl_context: ssl.SSLContext | None = None
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self._ssl_context = ctx
        self._port = port
        self._lock = threading.Lock()
        self._shells: dict[str, _Shell] = {}
        self._workers: set[threading.Thread] = set()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: Every request's short action name, in arrival order.
        self.actions: list[str] = []
        #: Every pipeline the server created, in arrival order.
        self.pipelines: list[SeenPipeline] = []
        #: Requests answered 401.
        self.rejected = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def scheme(self) -> str:
        return 'https' if self._ssl_context else 'http'

    @property
    def url(self) -> str:
        return f'{self.scheme}://127.0.0.1:{self._port}/wsman'

    def start(self) -> WSManEndpoint:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(('127.0.0.1', self._port), self)
        self._port = self._server.server_address[1]
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={'poll_interval': 0.05},
            name=f'wsman-{self._port}', daemon=True)
        self._serve_thread.start()
        return self

    def down(self, forget_shells: bool = True) -> None:
        """Stop listening and cut every connection, keeping the port for :meth:`up`.

        ``forget_shells`` mimics a WinRM service restart: the shells are gone
        and clients get the shell-not-found fault when they come back.
        """
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if forget_shells:
            self._forget_shells()   # also wakes Receive long-polls
        if server is not None:
            server.close_connections()
            server.join_connections(5.0)
        if self._serve_thread is not None:
            self._serve_thread.join(5.0)
            self._serve_thread = None

    def up(self) -> None:
        """Listen again on the same port after :meth:`down`."""
        self.start()

    def restart(self, forget_shells: bool = True) -> None:
        self.down(forget_shells=forget_shells)
        self.up()

    def stop(self, join_timeout: float = 10.0) -> None:
        """Stop serving, stop every pipeline and wait for all threads to end."""
        self._stopping.set()
        self.down(forget_shells=True)
        deadline = time.monotonic() + join_timeout
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> WSManEndpoint:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- introspection -----------------------------------------------------------------------

    def _count(self, received: int = 0, sent: int = 0) -> None:
        with self._lock:
            self.bytes_received += received
            self.bytes_sent += sent

    def forget_scripts(self) -> None:
        """Every open shell forgets the scripts the loader defined (as new runspaces would)."""
        with self._lock:
            shells = list(self._shells.values())
        for shell in shells:
            shell.scripts.forget()

    def scripts_defined(self) -> int:
        """Full script texts received by the loader, over every open shell."""
        with self._lock:
            return sum(shell.scripts.defined for shell in self._shells.values())

    def action_count(self, action: str) -> int:
        with self._lock:
            return self.actions.count(action)

    @property
    def open_shells(self) -> int:
        with self._lock:
            return len(self._shells)

    def live_threads(self) -> list[threading.Thread]:
        """Threads of this endpoint still running (empty after :meth:`stop`)."""
        threads = [t for t in (self._serve_thread,) if t is not None]
        with self._lock:
            threads += list(self._workers)
        if self._server is not None:
            threads += self._server.connection_threads()
        return [t for t in threads if t.is_alive()]

    # -- request handling (called from connection threads) -----------------------------------

    def _check_auth(self, header: str | None) -> bool:
        ok = False
        if header and header.startswith('Basic ') and not self.faults.reject_auth:
            try:
                given = base64.b64decode(header[6:], validate=True)
            except ValueError:
                given = b''
            expected = f'{self.username}:{self._password}'
            # requests sends latin-1 when it can, other clients UTF-8: accept either.
            for encoding in ('utf-8', 'latin-1'):
                try:
                    ok = ok or hmac.compare_digest(given, expected.encode(encoding))
                except UnicodeEncodeError:
                    pass
        if not ok:
            with self._lock:
                self.rejected += 1
        return ok

    def _ensure_handler(self) -> Handler:
        with self._lock:
            if self._handler is None:
                if self._sim_host is None:
                    from psdriver.sim import SimHost
                    self._sim_host = SimHost()
                self._handler = _sim_handler(self._sim_host)
            return self._handler

    def _host_down(self) -> bool:
        faults = getattr(self._sim_host, 'faults', None)
        return bool(faults is not None and faults.is_down)

    def _record(self, action: str) -> None:
        with self._lock:
            self.actions.append(action)

    def _dispatch(self, action: str, header: ET.Element, body: ET.Element) -> ET.Element | None:
        if action == 'Create':
            return self._create(body)
        shell = self._shell(header)
        if action == 'Delete':
            self._delete(shell)
            return None
        if action == 'Command':
            return self._command(shell, body)
        if action == 'Send':
            return self._send(shell, body)
        if action == 'Receive':
            return self._receive(shell, header, body)
        if action == 'Signal':
            return self._signal(shell, body)
        raise _Fault(FAULT_INVALID, f'unsupported action {action}')

    def _shell(self, header: ET.Element) -> _Shell:
        sel = header.find("wsman:SelectorSet/wsman:Selector[@Name='ShellId']", NS)
        shell_id = (sel.text or '').upper() if sel is not None else ''
        with self._lock:
            shell = self._shells.get(shell_id)
        if shell is None or shell.closed:
            raise _Fault(FAULT_SHELL_NOT_FOUND,
                         f'The request for the Windows Remote Shell with ShellId {shell_id} '
                         'failed because the shell was not found on the server.')
        return shell

    def _create(self, body: ET.Element) -> ET.Element:
        shell_el = body.find('rsp:Shell', NS)
        creation = body.find('rsp:Shell/pwsh:creationXml', NS)
        if shell_el is None or creation is None or not creation.text:
            raise _Fault(FAULT_INVALID, 'Create without rsp:Shell/creationXml')
        shell = _Shell((shell_el.get('ShellId') or str(uuid.uuid4())).upper())
        with shell.cond:
            self._feed(shell, creation.text, None)
            shell.slots = threading.BoundedSemaphore(max(1, shell.pool.max_runspaces or 1))
        with self._lock:
            self._shells[shell.id] = shell
        created = ET.Element(f'{{{NS["wst"]}}}ResourceCreated')
        ref = ET.SubElement(created, f'{{{NS["wsa"]}}}ReferenceParameters')
        sel_set = ET.SubElement(ref, f'{{{NS["wsman"]}}}SelectorSet')
        ET.SubElement(sel_set, f'{{{NS["wsman"]}}}Selector', Name='ShellId').text = shell.id
        info = ET.Element(f'{{{NS["rsp"]}}}Shell')
        ET.SubElement(info, f'{{{NS["rsp"]}}}ShellId').text = shell.id
        ET.SubElement(info, f'{{{NS["rsp"]}}}ResourceUri').text = (
            'http://schemas.microsoft.com/powershell/Microsoft.PowerShell')
        return _many(created, info)

    def _feed(self, shell: _Shell, b64: str, command_id: str | None,
              stream: str = 'stdin') -> None:
        """Give PSRP bytes to psrpcore and act on the events (shell lock held)."""
        stream_type = (psrpcore.StreamType.prompt_response if stream == 'pr'
                       else psrpcore.StreamType.default)
        pid = uuid.UUID(command_id) if command_id else None
        shell.pool.receive_data(psrpcore.PSRPPayload(base64.b64decode(b64), stream_type, pid))
        while True:
            event = shell.pool.next_event()
            if event is None:
                break
            if isinstance(event, psrpcore.CreatePipelineEvent):
                self._launch(shell, str(event.pipeline_id).upper())
            elif isinstance(event, (psrpcore.SetMaxRunspacesEvent, psrpcore.SetMinRunspacesEvent,
                                    psrpcore.ResetRunspaceStateEvent)):
                shell.pool.runspace_availability_response(event.ci, True)
            elif isinstance(event, psrpcore.GetAvailableRunspacesEvent):
                shell.pool.runspace_availability_response(event.ci, shell.pool.max_runspaces)
        shell.flush()

    def _command(self, shell: _Shell, body: ET.Element) -> ET.Element:
        line = body.find('rsp:CommandLine', NS)
        if line is None:
            raise _Fault(FAULT_INVALID, 'Command without rsp:CommandLine')
        command_id = (line.get('CommandId') or str(uuid.uuid4())).upper()
        args = line.find('rsp:Arguments', NS)
        with shell.cond:
            if command_id not in shell.pipes:
                shell.pipes[command_id] = _Pipe(shell, command_id)
            if args is not None and args.text:
                self._feed(shell, args.text, command_id)
        resp = ET.Element(f'{{{NS["rsp"]}}}CommandResponse')
        ET.SubElement(resp, f'{{{NS["rsp"]}}}CommandId').text = command_id
        return resp

    def _send(self, shell: _Shell, body: ET.Element) -> ET.Element:
        with shell.cond:
            for stream in body.findall('rsp:Send/rsp:Stream', NS):
                command_id = (stream.get('CommandId') or '').upper() or None
                if command_id and command_id not in shell.pipes:
                    raise _Fault(FAULT_INVALID, f'unknown CommandId {command_id}')
                if stream.text:
                    self._feed(shell, stream.text, command_id, stream.get('Name', 'stdin'))
        return ET.Element(f'{{{NS["rsp"]}}}SendResponse')

    def _receive(self, shell: _Shell, header: ET.Element, body: ET.Element) -> ET.Element:
        desired = body.find('rsp:Receive/rsp:DesiredStream', NS)
        command_id = None
        if desired is not None and desired.get('CommandId'):
            command_id = desired.get('CommandId', '').upper()
        wait = min(_operation_timeout(header), self.max_receive_wait)
        deadline = time.monotonic() + wait
        with shell.cond:
            pipe = shell.pipes.get(command_id) if command_id else None
            if command_id and pipe is None:
                raise _Fault(FAULT_INVALID, f'unknown CommandId {command_id}')
            queue = shell.queues[command_id]
            while (not queue and not shell.closed and not self._stopping.is_set()
                   and not (pipe is not None and pipe.finished)):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                shell.cond.wait(left)
            chunks, size = [], 0
            while queue and (not chunks or size + len(queue[0]) <= _MAX_RECEIVE_BYTES):
                chunk = queue.popleft()
                chunks.append(chunk)
                size += len(chunk)
            done = pipe is not None and pipe.finished and not queue
        if not chunks and not done and command_id:
            raise _Fault(FAULT_OPERATION_TIMEOUT,
                         'The WS-Management service cannot complete the operation within '
                         'the time specified in OperationTimeout.')
        resp = ET.Element(f'{{{NS["rsp"]}}}ReceiveResponse')
        for chunk in chunks:
            attrs = {'Name': 'stdout'}
            if command_id:
                attrs['CommandId'] = command_id
            ET.SubElement(resp, f'{{{NS["rsp"]}}}Stream', attrs).text = (
                base64.b64encode(chunk).decode('ascii'))
        if command_id:
            ET.SubElement(resp, f'{{{NS["rsp"]}}}CommandState', CommandId=command_id,
                          State=_DONE if done else _RUNNING)
        return resp

    def _signal(self, shell: _Shell, body: ET.Element) -> ET.Element:
        sig = body.find('rsp:Signal', NS)
        code_el = body.find('rsp:Signal/rsp:Code', NS)
        if sig is None or code_el is None:
            raise _Fault(FAULT_INVALID, 'Signal without rsp:Code')
        command_id = (sig.get('CommandId') or '').upper()
        code = (code_el.text or '').strip()
        with shell.cond:
            pipe = shell.pipes.get(command_id)
            if pipe is not None:
                if code in _STOP_SIGNALS:
                    pipe.cancel.set()
                    if pipe.sp.state in (PSInvocationState.Running, PSInvocationState.Stopping):
                        pipe.sp.stop()
                    elif pipe.sp.state == PSInvocationState.NotStarted:
                        pipe.finished = True
                    shell.flush()
                elif code == _TERMINATE:
                    pipe.cancel.set()
                    shell.pipes.pop(command_id, None)
                    shell.queues.pop(command_id, None)
                    shell.pool.pipeline_table.pop(pipe.sp.pipeline_id, None)
                    shell.cond.notify_all()
        resp = ET.Element(f'{{{NS["rsp"]}}}SignalResponse')
        return resp

    def _delete(self, shell: _Shell) -> None:
        with self._lock:
            self._shells.pop(shell.id, None)
        self._close_shell(shell)

    def _close_shell(self, shell: _Shell) -> None:
        with shell.cond:
            shell.closed = True
            for pipe in shell.pipes.values():
                pipe.cancel.set()
            shell.cond.notify_all()

    def _forget_shells(self) -> None:
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            self._close_shell(shell)

    # -- pipelines ---------------------------------------------------------------------------

    def _launch(self, shell: _Shell, command_id: str) -> None:
        pipe = shell.pipes.get(command_id)
        if pipe is None or pipe.thread is not None:
            return
        meta = pipe.sp.metadata
        commands = list(getattr(meta, 'commands', []) or [])
        first = commands[0] if commands else None
        params = {}
        if first is not None:
            for name, value in first.parameters:
                params[name] = value
        seen = SeenPipeline(shell.id, command_id, first.command_text if first else '', params,
                            bool(first.is_script) if first else False, len(commands))
        pipe.thread = threading.Thread(target=self._run_pipeline, args=(shell, pipe, seen),
                                       name=f'wsman-pipe-{command_id[:8]}', daemon=True)
        with self._lock:
            self.pipelines.append(seen)
            self._workers.add(pipe.thread)
        pipe.thread.start()

    def _run_pipeline(self, shell: _Shell, pipe: _Pipe, seen: SeenPipeline) -> None:
        try:
            self._execute(shell, pipe, seen)
        finally:
            with shell.cond:
                pipe.finished = True
                shell.cond.notify_all()
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _execute(self, shell: _Shell, pipe: _Pipe, seen: SeenPipeline) -> None:
        assert shell.slots is not None
        while not shell.slots.acquire(timeout=0.05):
            if pipe.cancel.is_set():
                return
        try:
            with shell.cond:
                if pipe.cancel.is_set():
                    return
                pipe.sp.start()
                shell.flush()
            if self.faults.pipeline_delay and pipe.cancel.wait(self.faults.pipeline_delay):
                return
            failure: Exception | None = None
            outputs: list[str] = []
            errors: list[str] = []
            try:
                resolved = shell.scripts.resolve(seen.script, dict(seen.params))
                if resolved is None:
                    outputs = [UNKNOWN]
                else:
                    outputs, errors = self._ensure_handler()(*resolved)
            except Exception as exc:   # the script "threw": a terminating error
                failure = exc
            with shell.cond:
                if pipe.cancel.is_set() or pipe.sp.state != PSInvocationState.Running:
                    return
                for message in errors:
                    pipe.sp.write_error(NETException(Message=str(message)),
                                        ErrorCategoryInfo(Category=ErrorCategory.NotSpecified))
                for value in outputs:
                    pipe.sp.write_output(value)
                if failure is None:
                    pipe.sp.complete()
                else:
                    record = ErrorRecord(
                        Exception=NETException(Message=str(failure)),
                        CategoryInfo=ErrorCategoryInfo(Category=ErrorCategory.NotSpecified,
                                                       Reason=type(failure).__name__),
                        FullyQualifiedErrorId='PsDriverSimPipelineFailed')
                    # psrpcore has no public "fail" API; this is its own state change.
                    pipe.sp._change_state(PSInvocationState.Failed, error=record)
                shell.flush()
        finally:
            shell.slots.release()


def _operation_timeout(header: ET.Element) -> float:
    el = header.find('wsman:OperationTimeout', NS)
    match = re.fullmatch(r'PT([0-9.]+)S', (el.text or '').strip()) if el is not None else None
    return float(match.group(1)) if match else 20.0


def _many(*elements: ET.Element) -> ET.Element:
    holder = ET.Element('_many')
    holder.extend(elements)
    return holder


def _envelope(action_uri: str, relates_to: str, body: ET.Element | None) -> bytes:
    env = ET.Element(f'{{{NS["s"]}}}Envelope')
    head = ET.SubElement(env, f'{{{NS["s"]}}}Header')
    ET.SubElement(head, f'{{{NS["wsa"]}}}Action').text = action_uri + 'Response'
    ET.SubElement(head, f'{{{NS["wsa"]}}}MessageID').text = f'uuid:{uuid.uuid4()}'.upper()
    ET.SubElement(head, f'{{{NS["wsa"]}}}RelatesTo').text = relates_to
    ET.SubElement(head, f'{{{NS["wsa"]}}}To').text = (
        'http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous')
    soap_body = ET.SubElement(env, f'{{{NS["s"]}}}Body')
    if body is not None:
        soap_body.extend(list(body) if body.tag == '_many' else [body])
    return ET.tostring(env, encoding='utf-8', xml_declaration=False)


def _fault_envelope(relates_to: str, fault: _Fault) -> bytes:
    env = ET.Element(f'{{{NS["s"]}}}Envelope')
    head = ET.SubElement(env, f'{{{NS["s"]}}}Header')
    ET.SubElement(head, f'{{{NS["wsa"]}}}Action').text = (
        'http://schemas.dmtf.org/wbem/wsman/1/wsman/fault')
    ET.SubElement(head, f'{{{NS["wsa"]}}}RelatesTo').text = relates_to
    body = ET.SubElement(env, f'{{{NS["s"]}}}Body')
    soap_fault = ET.SubElement(body, f'{{{NS["s"]}}}Fault')
    code = ET.SubElement(soap_fault, f'{{{NS["s"]}}}Code')
    ET.SubElement(code, f'{{{NS["s"]}}}Value').text = 's:Receiver'
    reason = ET.SubElement(soap_fault, f'{{{NS["s"]}}}Reason')
    ET.SubElement(reason, f'{{{NS["s"]}}}Text').text = fault.message
    detail = ET.SubElement(soap_fault, f'{{{NS["s"]}}}Detail')
    wsman_fault = ET.SubElement(detail, f'{{{NS["wsmanfault"]}}}WSManFault',
                                Code=str(fault.code), Machine='127.0.0.1')
    ET.SubElement(wsman_fault, f'{{{NS["wsmanfault"]}}}Message').text = fault.message
    return ET.tostring(env, encoding='utf-8')


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'Microsoft-HTTPAPI/2.0'
    sys_version = ''
    timeout = 60          # idle keep-alive connections end on their own
    wbufsize = 64 * 1024  # headers and body leave in one write (flushed per request)
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:   # noqa: A002 (stdlib name)
        LOG.debug('wsman %s: %s', self.address_string(), format % args)

    def _reply(self, status: int, payload: bytes = b'', extra: dict[str, str] | None = None,
               content_type: str = 'application/soap+xml;charset=UTF-8') -> None:
        self.send_response(status)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if payload:
            self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.server.endpoint._count(sent=len(payload))

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_POST(self) -> None:
        endpoint = self.server.endpoint
        length = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(length) if length else b''
        self.server.endpoint._count(received=len(raw))
        if self.path.rstrip('/').lower() != '/wsman':
            self._reply(404)
            return
        if not endpoint._check_auth(self.headers.get('Authorization')):
            self._reply(401, extra={'WWW-Authenticate': 'Basic realm="WSMAN"'})
            return
        if not raw:
            self._reply(200)   # pre-auth probe
            return
        try:
            doc = ET.fromstring(raw)
        except ET.ParseError:
            self._reply(400)
            return
        header = doc.find('s:Header', NS)
        body = doc.find('s:Body', NS)
        action_uri = (header.findtext('wsa:Action', '', NS) if header is not None else '').strip()
        message_id = (header.findtext('wsa:MessageID', '', NS) if header is not None else '')
        action = _SHORT.get(action_uri, action_uri)
        endpoint._ensure_handler()
        if endpoint._host_down():
            self._drop()
            return
        endpoint._record(action)
        delay = endpoint.faults._delay_for(action)
        if delay:
            time.sleep(delay)
        drop = endpoint.faults._take_drop(action)
        if drop is False:
            self._drop()
            return
        try:
            if body is None:
                body = ET.Element(f'{{{NS["s"]}}}Body')
            injected = endpoint.faults._take_fault(action)
            if injected is not None:
                raise injected
            result = endpoint._dispatch(action, header, body)
            status, payload = 200, _envelope(action_uri, message_id, result)
        except _Fault as fault:
            status, payload = 500, _fault_envelope(message_id, fault)
        if drop:
            self._drop()
            return
        self._reply(status, payload)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], endpoint: WSManEndpoint) -> None:
        self.endpoint = endpoint
        self._track = threading.Lock()
        self._conns: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name='wsman-conn', daemon=True)
        with self._track:
            self._conns[thread] = request
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        me = threading.current_thread()
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ctx = self.endpoint._ssl_context
            if ctx is not None:
                request.settimeout(10)
                request = ctx.wrap_socket(request, server_side=True)
                with self._track:
                    self._conns[me] = request
            self.finish_request(request, client_address)
        except (OSError, ssl.SSLError) as exc:   # client went away or refused our certificate
            LOG.debug('wsman connection from %s ended: %s', client_address, exc)
        finally:
            self.shutdown_request(request)
            with self._track:
                self._conns.pop(me, None)

    def close_connections(self) -> None:
        with self._track:
            socks = list(self._conns.values())
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def connection_threads(self) -> list[threading.Thread]:
        with self._track:
            return list(self._conns)

    def join_connections(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.connection_threads():
            thread.join(max(0.0, deadline - time.monotonic()))


class EndpointProcess:
    """A :class:`WSManEndpoint` on a simulated host in its own Python process.

    For measurements where the endpoint must not share the caller's CPU time
    and GIL (the concurrency benchmark); ``delay`` seconds of host work are
    added to every call of ``script``.  Used as a context manager; ``port``
    is known once it is entered.
    """

    def __init__(self, username: str, password: str, certfile: str | None = None,
                 keyfile: str | None = None, script: str | None = None,
                 delay: float = 0.0) -> None:
        self._args = [username, password, certfile or '', keyfile or '', script or '',
                      str(delay)]
        self._proc: Any = None
        self.port = 0

    def __enter__(self) -> EndpointProcess:
        import os
        import subprocess
        import sys
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self._proc = subprocess.Popen(
            [sys.executable, '-m', 'tests.infra.wsman_endpoint', *self._args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root)
        line = self._proc.stdout.readline().decode().strip()
        if not line.isdigit():
            self._proc.kill()
            raise RuntimeError(f'the endpoint process did not start: {line!r}')
        self.port = int(line)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._proc.stdin.close()
            self._proc.wait(10)
        except Exception:   # noqa: BLE001 (make sure it is gone)
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()


def _serve_in_this_process(argv: list[str]) -> None:
    """``python -m tests.infra.wsman_endpoint USER PASSWORD CERT KEY SCRIPT DELAY``."""
    import sys

    from psdriver.sim import SimHost
    username, password, certfile, keyfile, script, delay = argv
    host = SimHost()
    if script and float(delay) > 0:
        host.faults.delay(script, float(delay), times=None)
    with WSManEndpoint(username=username, password=password, host=host,
                       certfile=certfile or None, keyfile=keyfile or None) as endpoint:
        sys.stdout.write(f'{endpoint.port}\n')
        sys.stdout.flush()
        sys.stdin.read()     # until the parent closes stdin


if __name__ == '__main__':
    import sys as _sys
    _serve_in_this_process(_sys.argv[1:])
