"""``pwsh -s`` for the stand-in: PowerShell's out-of-process remoting server.

It speaks the framing ``pwsh -s`` speaks on stdin/stdout (one XML element a
line: ``Data``/``DataAck``, ``Command``/``CommandAck``, ``Signal``/
``SignalAck``, ``Close``/``CloseAck``, ``PSGuid`` all zeros for the runspace
pool) with psrpcore's server side for the PSRP messages, so the kept-process
runner's framing is tested for real.  Pipelines run on the simulated host
(``SimHost(state_file=$PSDRIVER_SIM_STATE)``, or one in-memory host for the
life of the process) after the bridge's loader has been resolved as a
runspace would (:mod:`tests.infra.runspace`).

Refused like pwsh: anything but ``-s``, ``-NoLogo``, ``-NoProfile``,
``-NonInteractive`` on the command line; a line that is not one of the
elements above ends the process with a message on stderr and exit code 1.

Test knobs (environment variables):

``FAKE_PWSH_LOG=<file>``
    Append ``{"pid": ..., "pipeline": [parameter names]}`` for every pipeline
    (after the ``{"argv": ...}`` line of the process start).
``FAKE_PWSH_SLEEP=<seconds>``
    Sleep before each pipeline's answer (a stop Signal cuts it short).
``FAKE_PWSH_DIE_AT=<n>``
    Die (SIGABRT, message on stderr) while running the n-th pipeline of the
    process, after its Command and data were acknowledged: a process
    crashing mid-call.
``FAKE_PWSH_ECHO=1``
    Answer each pipeline with a success envelope whose result is
    ``{"params": <decoded document>, "script": <wrapped text>, "pid": <pid>}``.
``FAKE_PWSH_STDOUT=<text>``
    Answer each pipeline whose script the runspace knows with <text>.
``FAKE_PWSH_GARBAGE=1``
    Write a line that is not the framing when a pipeline starts.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import threading
import time
import uuid
from typing import IO, Any

EMPTY = uuid.UUID(int=0)
_LINE = re.compile(r"^<(?P<tag>\w+)(?: Stream='(?P<stream>\w+)')?"
                   r" PSGuid='(?P<guid>[0-9a-fA-F-]{36})'"
                   r"\s*(?:/>|>(?P<data>[A-Za-z0-9+/=]*)</\w+>)$")
_ALLOWED = ('-s', '-nologo', '-noprofile', '-noninteractive')
_CHUNK = 32 * 1024


def server_args_problem(argv: list[str]) -> str | None:
    """Why ``argv`` is not an out-of-process server command line we accept, or None."""
    low = [a.lower() for a in argv]
    extra = [a for a in argv if a.lower() not in _ALLOWED]
    if extra:
        return f'server mode (-s) takes no other argument; got {extra}'
    missing = [n for n in ('-NoLogo', '-NoProfile') if n.lower() not in low]
    if missing:
        return (f"{', '.join(missing)} missing: the bridge must start PowerShell without "
                'banner or profile')
    return None


class Server:
    def __init__(self, out: IO[bytes]) -> None:
        import psrpcore
        from tests.infra.runspace import RunspaceScripts

        self.psrpcore = psrpcore
        self.out = out
        self.lock = threading.RLock()
        self.pool = psrpcore.ServerRunspacePool()
        self.pipes: dict[uuid.UUID, Any] = {}
        self.cancel: dict[uuid.UUID, threading.Event] = {}
        self.scripts = RunspaceScripts()
        self.count = 0
        self.host = None

    # -- output ---------------------------------------------------------------------------------

    def write(self, line: str) -> None:
        with self.lock:
            self.out.write(line.encode('utf-8') + b'\n')
            self.out.flush()

    def flush(self) -> None:
        with self.lock:
            while True:
                payload = self.pool.data_to_send(_CHUNK)
                if payload is None:
                    return
                guid = payload.pipeline_id or EMPTY
                stream = ('PromptResponse'
                          if payload.stream_type == self.psrpcore.StreamType.prompt_response
                          else 'Default')
                self.write(f"<Data Stream='{stream}' PSGuid='{guid}'>"
                           f"{base64.b64encode(payload.data).decode('ascii')}</Data>")

    # -- input ----------------------------------------------------------------------------------

    def serve(self, lines: IO[bytes]) -> int:
        for raw in lines:
            line = raw.decode('utf-8').strip()
            if not line:
                continue
            match = _LINE.match(line)
            if match is None:
                sys.stderr.write('pwsh -s (psdriver stand-in): not a remoting packet: '
                                 f'{line[:80]!r}\n')
                return 1
            tag, guid = match['tag'], uuid.UUID(match['guid'])
            if tag == 'Data':
                self.data(match['stream'] or 'Default', guid, match['data'] or '')
                self.write(f"<DataAck PSGuid='{guid}' />")
            elif tag == 'Command':
                with self.lock:
                    self.pipes[guid] = self.psrpcore.ServerPipeline(self.pool, guid)
                    self.cancel[guid] = threading.Event()
                self.write(f"<CommandAck PSGuid='{guid}' />")
            elif tag == 'Signal':
                with self.lock:
                    pipe = self.pipes.get(guid)
                    if guid in self.cancel:
                        self.cancel[guid].set()
                    if pipe is not None and pipe.state.name in ('Running', 'Stopping'):
                        pipe.stop()
                    self.flush()
                self.write(f"<SignalAck PSGuid='{guid}' />")
            elif tag == 'Close':
                if guid == EMPTY:
                    self.write(f"<CloseAck PSGuid='{guid}' />")
                    return 0
                with self.lock:
                    if guid in self.cancel:
                        self.cancel[guid].set()
                    self.pipes.pop(guid, None)
                    self.pool.pipeline_table.pop(guid, None)
                self.write(f"<CloseAck PSGuid='{guid}' />")
            else:
                sys.stderr.write(f'pwsh -s (psdriver stand-in): unexpected <{tag}>\n')
                return 1
        return 0

    def data(self, stream: str, guid: uuid.UUID, b64: str) -> None:
        psrpcore = self.psrpcore
        stream_type = (psrpcore.StreamType.prompt_response if stream == 'PromptResponse'
                       else psrpcore.StreamType.default)
        with self.lock:
            self.pool.receive_data(psrpcore.PSRPPayload(
                base64.b64decode(b64), stream_type, None if guid == EMPTY else guid))
            while True:
                event = self.pool.next_event()
                if event is None:
                    break
                if isinstance(event, psrpcore.CreatePipelineEvent):
                    pipe = self.pipes[event.pipeline_id]
                    threading.Thread(target=self.run_pipeline, args=(pipe, event.pipeline_id),
                                     daemon=True).start()
                elif isinstance(event, (psrpcore.SetMaxRunspacesEvent,
                                        psrpcore.SetMinRunspacesEvent,
                                        psrpcore.ResetRunspaceStateEvent)):
                    self.pool.runspace_availability_response(event.ci, True)
                elif isinstance(event, psrpcore.GetAvailableRunspacesEvent):
                    self.pool.runspace_availability_response(event.ci, 1)
            self.flush()

    # -- pipelines ------------------------------------------------------------------------------

    def run_pipeline(self, pipe: Any, guid: uuid.UUID) -> None:
        from psdriver.bridge.call import INPUT_PARAMETER, decode_document
        env = os.environ
        with self.lock:
            self.count += 1
            number = self.count
            commands = list(pipe.metadata.commands)
            script = commands[0].command_text
            params = dict(commands[0].parameters)
            pipe.start()
            self.flush()
        if env.get('FAKE_PWSH_LOG'):
            with open(env['FAKE_PWSH_LOG'], 'a', encoding='utf-8') as fh:
                fh.write(json.dumps({'pid': os.getpid(), 'pipeline': sorted(params)}) + '\n')
        if env.get('FAKE_PWSH_GARBAGE'):
            self.write('PowerShell says hello')
        if env.get('FAKE_PWSH_DIE_AT') and number == int(env['FAKE_PWSH_DIE_AT']):
            crash('the stand-in was told to die mid-call (FAKE_PWSH_DIE_AT)')
        if env.get('FAKE_PWSH_SLEEP') and self.cancel[guid].wait(float(env['FAKE_PWSH_SLEEP'])):
            return
        failure = None
        output = None
        try:
            resolved = self.scripts.resolve(script, params)
            if resolved is None:
                from tests.infra.runspace import UNKNOWN
                output = UNKNOWN
            elif 'FAKE_PWSH_STDOUT' in env:
                output = env['FAKE_PWSH_STDOUT']
            elif env.get('FAKE_PWSH_ECHO'):
                text, values = resolved
                output = json.dumps({'ok': True, 'result': {
                    'params': decode_document(values[INPUT_PARAMETER]), 'script': text,
                    'pid': os.getpid()}}, ensure_ascii=False)
            else:
                output = self.execute(*resolved)
        except Exception as exc:     # the script threw: the pipeline fails
            failure = exc
        with self.lock:
            if self.cancel[guid].is_set() or pipe.state.name != 'Running':
                return
            if failure is None:
                pipe.write_output(output)
                pipe.complete()
            else:
                from psrpcore.types import (
                    ErrorCategory, ErrorCategoryInfo, ErrorRecord, NETException,
                    PSInvocationState,
                )
                record = ErrorRecord(
                    Exception=NETException(Message=str(failure)),
                    CategoryInfo=ErrorCategoryInfo(Category=ErrorCategory.NotSpecified,
                                                   Reason=type(failure).__name__),
                    FullyQualifiedErrorId='PsDriverStandInPipelineFailed')
                pipe._change_state(PSInvocationState.Failed, error=record)
            self.flush()

    def execute(self, text: str, values: dict[str, Any]) -> str:
        from psdriver.bridge.call import INPUT_PARAMETER
        from psdriver.sim import SimHost, execute_rendered
        from psdriver.sim.errors import SimHostDown

        if self.host is None:
            state_file = os.environ.get('PSDRIVER_SIM_STATE')
            self.host = SimHost(state_file=state_file) if state_file else SimHost()
        try:
            return execute_rendered(text, values[INPUT_PARAMETER], self.host)
        except SimHostDown as exc:
            crash(f'the simulated host is down ({exc or "host_down fault"})')
            raise


def crash(message: str) -> None:
    """Die like a pwsh process that hit an unhandled exception (from any thread)."""
    sys.stderr.write(f'Unhandled exception. System.InvalidOperationException: {message}\n')
    sys.stderr.flush()
    if os.name != 'nt':
        import resource
        import signal
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ValueError, OSError):
            pass
        os.kill(os.getpid(), signal.SIGABRT)
    os._exit(134)


def serve(argv: list[str]) -> int:
    problem = server_args_problem(argv)
    if problem:
        sys.stderr.write(f'pwsh (psdriver stand-in): {problem}\n')
        return 64
    time.sleep(0)   # nothing to print: pwsh -s writes no banner
    return Server(sys.stdout.buffer).serve(sys.stdin.buffer)
