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
    Get-HostInfo calls through ``LocalRunner`` against the stand-in ``pwsh``
    (one process per call, as with a real PowerShell executable) and through
    ``PSRPRunner`` with its RunspacePool reused, against the local WS-Man
    endpoint; both end on a simulated host.
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
    True: {'step': 20, 'sim': 10, 'psrp': 5, 'local': 2},
    False: {'step': 300, 'sim': 200, 'psrp': 100, 'local': 20},
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
            'values document (JSON + base64)': lambda: encode_document(self.params),
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


class _StubText:
    """A runner that sends ``text`` instead of the rendered script (values unchanged)."""

    def __init__(self, inner: Any, text: str) -> None:
        self.inner = inner
        self.text = text
        self.target = inner.target
        self.features = inner.features

    def run(self, call: Any) -> str:
        return self.inner.run(dataclasses.replace(call, text=self.text))

    def close(self) -> None:
        self.inner.close()


def _psrp_runner(endpoint: Any) -> Any:
    """A PSRPRunner for the local endpoint: basic auth over HTTP, as the tests use it."""
    from psdriver.bridge.runners.psrp import PSRPRunner
    return PSRPRunner('127.0.0.1', port=endpoint.port, username=USER, password=PASSWORD,
                      ssl=False, auth='basic', message_encryption='never', operation_timeout=5,
                      insecure_cleartext_basic_auth=True)


def transports(quick: bool) -> common.Table:
    from psdriver.bridge.call import INPUT_PARAMETER
    from psdriver.bridge.client import Bridge
    from psdriver.bridge.render import Renderer
    from psdriver.bridge.runners.local import LocalRunner
    from psdriver.sim import SimHost, SimRunner, execute_rendered
    from tests.infra.wsman_endpoint import WSManEndpoint

    repeat = REPEATS[quick]
    params = {'InstancesPath': common.INSTANCES_PATH}
    rows: list[tuple[str, float, common.Stats, float]] = []

    def measure(label: str, bridge: Bridge, calls: int) -> None:
        """The first (cold) call, then ``calls`` timed calls: wall and calling-thread CPU."""
        cold = common.sample(lambda: bridge.call(SMALL, params), 1, warmup=0)[0]
        wall, cpu = [], []
        for _ in range(calls):
            cpu_start, wall_start = time.thread_time(), time.perf_counter()
            bridge.call(SMALL, params)
            wall.append(time.perf_counter() - wall_start)
            cpu.append(time.thread_time() - cpu_start)
        rows.append((label, cold, common.summarize(wall), common.summarize(cpu).median))

    sim = Bridge(SimRunner(SimHost()))
    measure('SimRunner (in process, no transport)', sim, repeat['sim'])

    with WSManEndpoint(username=USER, password=PASSWORD, host=SimHost()) as endpoint:
        runner = _psrp_runner(endpoint)
        try:
            measure('PSRPRunner, RunspacePool reused (local WS-Man endpoint, HTTP)',
                    Bridge(runner), repeat['psrp'])
            pools = [runner.pools_opened]
        finally:
            runner.close()

    # The same host work with the script text cut to a stub: what the size of the
    # rendered wrapper (helpers included) costs per call over PSRP.
    stub_host = SimHost()
    wrapped = Renderer().render(SMALL)

    def run_wrapped(script: str, values: dict[str, Any]) -> tuple[list[str], list[str]]:
        return [execute_rendered(wrapped, values[INPUT_PARAMETER], stub_host)], []

    with WSManEndpoint(username=USER, password=PASSWORD, handler=run_wrapped) as endpoint:
        runner = _psrp_runner(endpoint)
        try:
            stub = _StubText(runner, f'# psdriver-script: {SMALL}\n'
                                     'param([string]$PsDriverInput)\n')
            measure(f'PSRPRunner, pool reused, script text cut to {len(stub.text)} characters',
                    Bridge(stub), repeat['psrp'])
            pools.append(runner.pools_opened)
        finally:
            runner.close()

    with tempfile.TemporaryDirectory(prefix='psdriver-bench-') as tmp:
        local = Bridge(LocalRunner(env={'PATH': _fake_pwsh_path(Path(tmp))}))
        measure('LocalRunner, one process per call (stand-in pwsh)', local, repeat['local'])

    local_median = rows[-1][2].median
    table = common.Table(
        'bridge.transports', f'{SMALL} through each transport',
        ['transport', 'calls', 'first call (ms)', 'median (ms)', 'p90 (ms)',
         'caller CPU, median (ms)', 'calls/s', 'LocalRunner median / this median'])
    for label, cold, stats, cpu in rows:
        table.add(label, stats.n, cold * 1e3, stats.median * 1e3, stats.p90 * 1e3, cpu * 1e3,
                  1 / stats.median, local_median / stats.median)
    table.notes.append('RunspacePools opened by the two PSRP runners: '
                       f'{" and ".join(map(str, pools))} (reused by every call; the first call '
                       'includes opening it). calls/s is '
                       '1 / median, one caller at a time. Caller CPU is the CPU time of the '
                       'calling thread only (not the endpoint\'s threads, not the pwsh '
                       'process).')
    table.notes.append(f'The rendered {SMALL} wrapper is {len(wrapped):,} characters (the '
                       'PsDriver.psm1 functions it uses travel with the script); the stub '
                       'row runs the same wrapper on the host side but sends only the stub.')
    table.notes.append('Client and WS-Man endpoint share one Python process (and its GIL), so '
                       'the PSRP figures include the endpoint\'s own XML and PSRP work.')
    table.notes.append('The stand-in pwsh is a Python process that imports the simulator; '
                       'the start-up of a real pwsh or powershell.exe is not measured here, '
                       'so the ratio is what one process per call costs against a reused pool '
                       'for this stand-in.')
    return table


def run(quick: bool = False) -> list[common.Table]:
    return [overhead(quick), transports(quick)]
