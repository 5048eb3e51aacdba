"""The bridge's own cost per call, and calls/s through each transport.

Two tables:

``bridge.overhead``
    what one ``Bridge.call`` spends outside the host, step by step, on the
    bare components (render uncached and cached, parameter check, values
    document, envelope parse, contract validation), next to the simulated
    host's handler and the whole call through ``SimRunner``; for a small
    call (Get-HostInfo) and a large one (New-Instance with the spec the
    driver builds for a spawn with a config drive and one port).
``bridge.transports``
    Get-HostInfo and New-Instance through every transport, side by side:
    the simulated host in process, a local process per call and kept local
    processes (both the stand-in ``pwsh``, a Python process running the
    simulator), and a reused PSRP runspace pool over HTTP and over HTTPS
    (the local WS-Man endpoint, pypsrp as against Windows).  Per call: wall
    time, caller CPU and the bytes that crossed the transport, next to what
    the same New-Instance cost on the wire before scripts were defined once
    per runspace and values were sent as plain or compressed JSON.
``bridge.concurrency``
    Throughput with 1, 4 and 8 concurrent callers when every call keeps the
    host busy for 100 ms, on every persistent transport.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks import common

SMALL = 'Get-HostInfo'
LARGE = 'New-Instance'
USER, PASSWORD = 'bench', 'bench-password'

#: (timed calls of each step, of each transport) by mode.
REPEATS = {
    True: {'step': 20, 'sim': 10, 'psrp': 5, 'local': 2, 'kept': 5, 'large': 2, 'rounds': 1},
    False: {'step': 300, 'sim': 200, 'psrp': 100, 'local': 20, 'kept': 100, 'large': 20,
            'rounds': 4},
}


def spawn_spec() -> dict[str, Any]:
    """The New-Instance parameters HyperVDriver.spawn sends (config drive, one port)."""
    with common.sim_compute() as compute:
        compute.meter.runner.kept = []
        compute.spawn(compute.instance(1))
        calls = [c for c in compute.meter.runner.kept if c.name == LARGE]
    return calls[0].params


def _renamed(spec: dict[str, Any], index: int) -> dict[str, Any]:
    """The same spec for another instance: new values, the same structure.

    Every string naming the instance (its name, UUID, folder, pipe, log) is
    rewritten; the base64 config drive cannot contain either (no ``-`` in base64).
    """
    from psdriver.sim.scenario import instance_uuid_for
    name = f'instance-{index:08x}'
    text = json.dumps(spec).replace(spec['name'], name).replace(
        spec['instance_uuid'], instance_uuid_for(name))
    return json.loads(text)


def _us(samples: list[float]) -> tuple[float, float]:
    stats = common.summarize(samples)
    return stats.median * 1e6, stats.p90 * 1e6


class _Case:
    """One script measured step by step on a simulated host.

    ``make_params()`` gives fresh values for each call (a New-Instance needs a
    new VM name); ``undo(params)`` removes what a call created, untimed.
    """

    def __init__(self, name: str, make_params: Callable[[], dict[str, Any]],
                 undo: Callable[[dict[str, Any]], None], bridge: Any) -> None:
        from psdriver.bridge import contracts, envelope
        from psdriver.bridge.call import ScriptCall, encode_document
        self.name = name
        self.make_params = make_params
        self.undo = undo
        self.bridge = bridge
        self.renderer = bridge.renderer
        self.contract = contracts.load_contract(name)
        self.params = make_params()
        self.text = self.renderer.render(name)
        self.document = encode_document(self.params)
        self.raw = bridge.runner.run(ScriptCall(name, self.text, self.params, self.document,
                                                60.0))
        undo(self.params)
        self.result = envelope.parse(self.raw, name, bridge.target)
        self._pending: list[dict[str, Any]] = []

    def sizes(self) -> str:
        return (f'{self.name}: rendered script {len(self.text):,} characters, values document '
                f'{common.document_json_bytes(self.document):,} bytes of JSON, result envelope '
                f'{len(self.raw.encode()):,} bytes.')

    def bare_steps(self) -> dict[str, Callable[[], Any]]:
        from psdriver.bridge import envelope
        from psdriver.bridge.call import encode_document
        from psdriver.bridge.render import Renderer
        return {
            'render, uncached (new Renderer: files read, template compiled)':
                lambda: Renderer().render(self.name),
            'render, cached': lambda: self.renderer.render(self.name),
            'parameter check (param() block, x-spec-schema)':
                lambda: self.renderer.check_parameters(self.name, self.params),
            'values document (JSON; DEFLATE + base64 when large)':
                lambda: encode_document(self.params),
            'envelope parse': lambda: envelope.parse(self.raw, self.name, self.bridge.target),
            'contract validation of the result': lambda: self.contract.validate(self.result),
        }

    def _prepare(self) -> None:
        self._pending.append(self.make_params())

    def _cleanup(self) -> None:
        self.undo(self._pending.pop())

    def _handler_only(self) -> None:
        from psdriver.bridge.call import ScriptCall, encode_document
        params = self._pending[-1]
        self.bridge.runner.run(ScriptCall(self.name, self.text, params,
                                          encode_document(params), 60.0))

    def _whole_call(self) -> None:
        self.bridge.call(self.name, self._pending[-1])

    def measure(self, repeat: dict[str, int]) -> dict[str, tuple[float, float]]:
        """Step -> (median, p90) in microseconds."""
        steps = self.bare_steps()
        out = {}
        for step, fn in steps.items():
            count = max(5, repeat['step'] // 10) if 'uncached' in step else repeat['step']
            out[step] = _us(common.sample(fn, count))
        after_render = list(steps)[1:]
        out['bridge total (cached render + the four steps after it)'] = (
            sum(out[s][0] for s in after_render), sum(out[s][1] for s in after_render))
        out['simulated host: SimRunner.run (handler, no bridge)'] = _us(common.sample(
            self._handler_only, repeat['sim'], before=self._prepare, after=self._cleanup))
        out['whole Bridge.call through SimRunner'] = _us(common.sample(
            self._whole_call, repeat['sim'], before=self._prepare, after=self._cleanup))
        return out


def overhead(quick: bool) -> common.Table:
    from psdriver.bridge.client import Bridge
    from psdriver.sim import SimHost, SimRunner
    from psdriver.sim.scenario import add_image

    spec = spawn_spec()['Spec']
    host = SimHost()
    add_image(host, spec['root_disk']['source'], 1 * common.GIB)
    bridge = Bridge(SimRunner(host))
    counter = iter(range(0x1000, 0x100000))

    def remove_vm(params: dict[str, Any]) -> None:
        made = params['Spec']
        bridge.call('Remove-Instance', {'Name': made['name'],
                                        'InstanceUuid': made['instance_uuid'],
                                        'InstanceDir': made['instance_dir'],
                                        'DeleteFiles': True})

    cases = [
        _Case(SMALL, lambda: {'InstancesPath': common.INSTANCES_PATH}, lambda p: None, bridge),
        _Case(LARGE, lambda: {'Spec': _renamed(spec, next(counter))}, remove_vm, bridge),
    ]
    small, large = (case.measure(REPEATS[quick]) for case in cases)
    table = common.Table(
        'bridge.overhead', 'Bridge cost per call, by step (microseconds)',
        ['step', f'{SMALL} median', f'{SMALL} p90', f'{LARGE} median', f'{LARGE} p90'])
    for step in small:
        table.add(step, *small[step], *large[step])
    table.notes += [case.sizes() for case in cases]
    table.notes.append('The New-Instance spec is the one HyperVDriver.spawn sends for a '
                       'generation 2 VM with a config drive (base64 in the spec) and one '
                       'port; each timed call creates a new VM and it is removed untimed.')
    return table


def _fake_pwsh_path(bindir: Path) -> str:
    """PATH with the stand-in ``pwsh`` first, then this interpreter (its shebang's python3)."""
    from tests.infra.fake_pwsh import BIN_DIR
    (bindir / 'pwsh').symlink_to(Path(BIN_DIR) / 'pwsh')
    return os.pathsep.join([str(bindir), os.path.dirname(sys.executable),
                            os.environ.get('PATH', os.defpath)])


def _psrp_runner(endpoint: Any, pool_size: int = 4, cert: str | None = None) -> Any:
    """A PSRPRunner for the local endpoint: basic auth, over HTTPS when ``cert`` is given."""
    from psdriver.bridge.runners.psrp import PSRPRunner
    if cert:
        return PSRPRunner('127.0.0.1', port=endpoint.port, username=USER, password=PASSWORD,
                          ssl=True, cert_validation=cert, auth='basic',
                          message_encryption='auto', operation_timeout=5, pool_size=pool_size)
    return PSRPRunner('127.0.0.1', port=endpoint.port, username=USER, password=PASSWORD,
                      ssl=False, auth='basic', message_encryption='never', operation_timeout=5,
                      pool_size=pool_size, insecure_cleartext_basic_auth=True)


def _self_signed(folder: Path) -> tuple[str, str]:
    from tests.infra.certs import self_signed
    return self_signed(folder, 'psdriver-bench-host')


class _PerCallBytes:
    """A LocalRunner wrapper counting the script file, stdin and stdout of each call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.target = inner.target
        self.features = inner.features
        self.sent = 0
        self.received = 0

    def run(self, call: Any) -> str:
        from psdriver.bridge.call import ascii_document
        self.sent += len(call.text.encode('utf-8-sig')) + len(ascii_document(call.document))
        out = self.inner.run(call)
        self.received += len(out.encode('utf-8'))
        return out

    def traffic(self) -> tuple[int, int]:
        return self.sent, self.received

    def close(self) -> None:
        self.inner.close()


@dataclasses.dataclass
class _Row:
    transport: str
    script: str
    cold: float
    wall: common.Stats
    cpu: float
    sent: float
    received: float


class _Bench:
    """Runs Get-HostInfo and New-Instance through one bridge; collects rows."""

    def __init__(self, spec: dict[str, Any], repeat: dict[str, int]) -> None:
        self.spec = spec
        self.repeat = repeat
        self.rows: list[_Row] = []
        self.counter = iter(range(0x2000, 0x100000))

    def new_instance_params(self) -> dict[str, Any]:
        return {'Spec': _renamed(self.spec, next(self.counter))}

    def run(self, label: str, bridge: Any, traffic: Callable[[], tuple[int, int]] | None,
            process_cpu: bool, large: bool = True) -> None:
        small = {'InstancesPath': common.INSTANCES_PATH}
        self._measure(label, SMALL, bridge, lambda: small, lambda p: None, traffic, process_cpu,
                      self.repeat[_kind(label)])
        if large:
            self._measure(label, LARGE, bridge, self.new_instance_params,
                          lambda p: _remove(bridge, p), traffic, process_cpu,
                          self.repeat['large'])

    def _measure(self, label: str, name: str, bridge: Any,
                 make: Callable[[], dict[str, Any]], undo: Callable[[dict[str, Any]], None],
                 traffic: Callable[[], tuple[int, int]] | None, process_cpu: bool,
                 calls: int) -> None:
        clock = time.process_time if process_cpu else time.thread_time
        params = make()
        started = time.perf_counter()
        bridge.call(name, params)
        cold = time.perf_counter() - started
        undo(params)
        params = make()
        bridge.call(name, params)       # warm: every runspace of a pool may need the text
        undo(params)
        wall, cpu, sent, received = [], [], 0, 0
        for _ in range(calls):
            params = make()
            before = traffic() if traffic else (0, 0)
            cpu_start, wall_start = clock(), time.perf_counter()
            bridge.call(name, params)
            wall.append(time.perf_counter() - wall_start)
            cpu.append(clock() - cpu_start)
            after = traffic() if traffic else (0, 0)
            sent += after[0] - before[0]
            received += after[1] - before[1]
            undo(params)
        self.rows.append(_Row(label, name, cold, common.summarize(wall),
                              common.summarize(cpu).median, sent / calls, received / calls))


def _kind(label: str) -> str:
    for key in ('sim', 'kept', 'local', 'psrp'):
        if key in label.lower() or (key == 'psrp' and 'PSRP' in label):
            return key
    return 'psrp'


def _remove(bridge: Any, params: dict[str, Any]) -> None:
    made = params['Spec']
    bridge.call('Remove-Instance', {'Name': made['name'], 'InstanceUuid': made['instance_uuid'],
                                    'InstanceDir': made['instance_dir'], 'DeleteFiles': True})


def _legacy_new_instance_bytes(endpoint: Any, spec: dict[str, Any]) -> tuple[int, int]:
    """Bytes of one New-Instance as the bridge sent it before (whole text, base64 of base64)."""
    import base64
    import json as json_mod

    from pypsrp.powershell import PowerShell, RunspacePool
    from pypsrp.wsman import WSMan

    from psdriver.bridge.call import INPUT_PARAMETER
    from psdriver.bridge.render import Renderer

    text = Renderer().render(LARGE)
    params = {'Spec': _renamed(spec, 0xFFFFF)}
    document = base64.b64encode(json_mod.dumps(params, ensure_ascii=False,
                                               separators=(',', ':')).encode()).decode()
    wsman = WSMan('127.0.0.1', port=endpoint.port, username=USER, password=PASSWORD, ssl=False,
                  auth='basic', encryption='never')
    with RunspacePool(wsman) as pool:
        before = endpoint.bytes_received, endpoint.bytes_sent
        ps = PowerShell(pool)
        ps.add_script(text).add_parameter(INPUT_PARAMETER, document)
        ps.invoke()
        after = endpoint.bytes_received, endpoint.bytes_sent
    return after[0] - before[0], after[1] - before[1]


def transports(quick: bool) -> list[common.Table]:
    from psdriver.bridge.client import Bridge
    from psdriver.bridge.runners.kept import KeptProcessRunner
    from psdriver.bridge.runners.local import LocalRunner
    from psdriver.sim import SimHost, SimRunner
    from psdriver.sim.scenario import add_image
    from tests.infra.wsman_endpoint import WSManEndpoint

    repeat = REPEATS[quick]
    spec = spawn_spec()['Spec']
    image = spec['root_disk']['source']
    bench = _Bench(spec, repeat)

    def sim_host(state_file: str | None = None) -> Any:
        host = SimHost(state_file=state_file) if state_file else SimHost()
        add_image(host, image, 1 * common.GIB)
        return host

    bench.run('sim (SimRunner, in process)', Bridge(SimRunner(sim_host())), None, False)

    with tempfile.TemporaryDirectory(prefix='psdriver-bench-') as tmp:
        state = str(Path(tmp) / 'host.json')
        sim_host(state)
        env = {'PATH': _fake_pwsh_path(Path(tmp)), 'PSDRIVER_SIM_STATE': state}
        per_call = _PerCallBytes(LocalRunner(env=env))
        bench.run('local, one process per call (stand-in pwsh -File)', Bridge(per_call),
                  per_call.traffic, True)
        kept = KeptProcessRunner(env=env, pool_size=4)
        bridge = Bridge(kept)
        try:
            bench.run('local, kept processes (stand-in pwsh -s)', bridge, kept.traffic, True)
        finally:
            bridge.close()
        cert, key = _self_signed(Path(tmp))
        legacy = (0, 0)
        for label, tls in (('PSRP pool, HTTP (local WS-Man endpoint)', None),
                           ('PSRP pool, HTTPS (local WS-Man endpoint)', (cert, key))):
            with WSManEndpoint(username=USER, password=PASSWORD, host=sim_host(),
                               certfile=tls[0] if tls else None,
                               keyfile=tls[1] if tls else None) as endpoint:
                bridge = Bridge(_psrp_runner(endpoint, cert=cert if tls else None))
                try:
                    bench.run(label, bridge,
                              lambda ep=endpoint: (ep.bytes_received, ep.bytes_sent), False)
                finally:
                    bridge.close()
                if not tls:
                    legacy = _legacy_new_instance_bytes(endpoint, spec)

    per_call_median = {r.script: r.wall.median for r in bench.rows if 'per call' in r.transport}
    table = common.Table(
        'bridge.transports', 'Get-HostInfo and New-Instance through each transport',
        ['transport', 'script', 'calls', 'first call (ms)', 'median (ms)', 'p90 (ms)',
         'caller CPU, median (ms)', 'bytes sent per call', 'bytes received per call',
         'process per call / this (median)'])
    for r in bench.rows:
        table.add(r.transport, r.script, r.wall.n, r.cold * 1e3, r.wall.median * 1e3,
                  r.wall.p90 * 1e3, r.cpu * 1e3, r.sent, r.received,
                  per_call_median[r.script] / r.wall.median)
    http_large = next(r for r in bench.rows
                      if r.transport.startswith('PSRP pool, HTTP ') and r.script == LARGE)
    table.notes.append(
        f'Before this bridge defined scripts once per runspace and sent values as plain or '
        f'compressed JSON, one {LARGE} through the PSRP pool over HTTP sent {legacy[0]:,} bytes '
        f'(the whole wrapped script and base64 of the values, base64-encoded again by WS-Man) '
        f'and received {legacy[1]:,}; now it sends {http_large.sent:,.0f} '
        f'({http_large.sent / max(1, legacy[0]):.1%} of that).')
    table.notes.append(
        'Bytes: HTTP bodies for PSRP (headers not counted), the lines on stdin/stdout for a '
        'kept process, the script file plus stdin and stdout for a process per call. Timed '
        'calls come after two untimed ones, so the script is already defined where it runs.')
    table.notes.append(
        'Caller CPU: the whole Python process for the local transports (the stand-in runs in '
        'its own processes; the runner reads pipes in its own threads), the calling thread for '
        'PSRP and the sim (the WS-Man endpoint shares this process, pypsrp works in the '
        'calling thread).')
    table.notes.append(
        'The stand-in pwsh is a Python process that imports the simulator and keeps the '
        'simulated host in a state file here; a real pwsh starts in 0.25 to 3 s, so the '
        'per-call ratio against a real executable is larger than measured here.')
    table.notes.append(
        'Estimate, not measured: a real Windows host adds its own script time (Hyper-V '
        'cmdlets: tens of ms for Get-HostInfo, seconds for New-Instance), a first call per '
        'runspace that parses the wrapped script (roughly 50 to 300 ms for 20 to 90 KB of '
        'PowerShell), and over the network one to three round trips of latency per call plus '
        'NTLM/Kerberos or TLS set-up once per pool.')
    return [table, concurrency(quick)]


def concurrency(quick: bool) -> common.Table:
    """Calls/s with 1, 4 and 8 callers, 100 ms of host work per call."""
    import threading

    from psdriver.bridge.client import Bridge
    from psdriver.bridge.runners.kept import KeptProcessRunner
    from psdriver.sim import SimHost
    from tests.infra.wsman_endpoint import EndpointProcess

    work = 0.1
    callers_list = (1, 4, 8)
    per_caller = 2 if quick else 6
    name, params = 'Test-PsDriverConnection', {'Echo': 'x'}
    rows: list[tuple[str, dict[int, float]]] = []

    def throughput(bridge: Any) -> dict[int, float]:
        out = {}
        for callers in callers_list:
            barrier = threading.Barrier(callers + 1)
            failures: list[BaseException] = []

            def worker(barrier: threading.Barrier = barrier,
                       failures: list[BaseException] = failures) -> None:
                barrier.wait()
                try:
                    for _ in range(per_caller):
                        bridge.call(name, params)
                except BaseException as exc:   # noqa: BLE001 (reported below)
                    failures.append(exc)

            threads = [threading.Thread(target=worker) for _ in range(callers)]
            for t in threads:
                t.start()
            barrier.wait()
            started = time.perf_counter()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
            if failures:
                raise failures[0]
            out[callers] = callers * per_caller / elapsed
        return out

    def delayed_host(state_file: str | None = None) -> Any:
        host = SimHost(state_file=state_file) if state_file else SimHost()
        host.faults.delay(name, work, times=None)
        return host

    with tempfile.TemporaryDirectory(prefix='psdriver-bench-') as tmp:
        state = str(Path(tmp) / 'host.json')
        delayed_host(state)
        env = {'PATH': _fake_pwsh_path(Path(tmp)), 'PSDRIVER_SIM_STATE': state}
        bridge = Bridge(KeptProcessRunner(env=env, pool_size=8))
        try:
            for _ in range(8):          # start the processes and define the script
                bridge.call(name, params)
            _parallel_warmup(bridge, name, params, 8)
            rows.append(('local, kept processes (pool of 8)', throughput(bridge)))
        finally:
            bridge.close()
        cert, key = _self_signed(Path(tmp))
        for label, tls in (('PSRP pool of 8, HTTP', None), ('PSRP pool of 8, HTTPS', True)):
            with EndpointProcess(USER, PASSWORD, certfile=cert if tls else None,
                                 keyfile=key if tls else None, script=name,
                                 delay=work) as endpoint:
                bridge = Bridge(_psrp_runner(endpoint, pool_size=8, cert=cert if tls else None))
                try:
                    _parallel_warmup(bridge, name, params, 8)
                    rows.append((label, throughput(bridge)))
                finally:
                    bridge.close()

    table = common.Table(
        'bridge.concurrency', f'Concurrent callers, {work * 1e3:.0f} ms of host work per call',
        ['transport', *[f'calls/s, {n} caller{"s" if n > 1 else ""}' for n in callers_list],
         *[f'scaling at {n}' for n in callers_list[1:]]])
    for label, by_callers in rows:
        table.add(label, *[by_callers[n] for n in callers_list],
                  *[by_callers[n] / by_callers[1] for n in callers_list[1:]])
    table.notes.append(
        f'Each caller makes {per_caller} calls of {name} in a row; the simulated host sleeps '
        f'{work * 1e3:.0f} ms in each. Scaling is calls/s with n callers over calls/s with one. '
        'PSRP over HTTP with message encryption (NTLM/Kerberos) serialises the requests of a '
        'pool on one connection and is not measured here (the local endpoint has no NTLM); '
        'the runner warns about it and HTTPS is the way to run calls in parallel. The WS-Man '
        'endpoint runs in its own process here, as a host would, so that its CPU time does '
        'not count against the callers.')
    return table


def _parallel_warmup(bridge: Any, name: str, params: dict[str, Any], callers: int) -> None:
    """One round of parallel calls, so every runspace or process has the script."""
    import threading
    threads = [threading.Thread(target=bridge.call, args=(name, params))
               for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run(quick: bool = False) -> list[common.Table]:
    return [overhead(quick), *transports(quick)]
