"""How many Hyper-V hosts one management node carries: memory and idle CPU per service.

::

    python benchmarks/fleet.py                      # 4 services side by side, 120 s window
    python benchmarks/fleet.py --services 6 --window 300 --servers 5

Not part of ``run_all.py`` (it takes minutes and starts many processes).

What runs, each in its own process, at the same time:

* **hosts**: one local WS-Man endpoint per Hyper-V host (PowerShell Remoting
  over HTTPS, basic auth), each with its own simulated host; the image the
  servers boot from is already in each host's image cache (the image copy
  over SMB is not part of an idle service).  Its CPU is the hosts' and is
  not counted.
* **one service per host**: nova's functional harness (real API, conductor,
  scheduler, placement on sqlite, in that process) with one nova-compute
  service configured from the host's rendered fragment and credentials file
  (``psdriver fleet render``), driving its host through the real PSRP
  runner.  It boots ``--servers`` servers, then idles with nova's periodic
  tasks on at their default intervals (``periodic_enable``), the service
  heartbeat every ``report_interval`` and psdriver's lifecycle event poll.
* **control**: the same harness with no compute service, idling as long.
  nova's test base makes idle thread-pool workers wake every 10 ms; both
  kinds of process put back futurist's default (once a second), which is
  what nova-compute runs with.
* **imports**: a process that only imports what nova-compute with psdriver
  and pypsrp imports.

Per service, then:

* idle CPU = CPU time of a service process during the window, minus that
  of the control process (the harness's own idle work), divided by the
  window.  It still contains the conductor's database work and placement's
  answers made on the service's behalf, which run on the controllers in a
  real cloud: an upper bound for the management node.
* memory = RSS of the imports process + (RSS of a service process - RSS of
  the control process): the modules nova-compute loads, plus what one
  running compute service with psdriver adds.  Not measured: a real
  nova-compute's AMQP connection (oslo.messaging's fake driver is in
  process here).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

IMAGE_ID = '0c7e2a55-6f0e-4d7c-9e4c-2b8f1a3d5e70'
INSTANCES_PATH = 'C:\\OpenStack\\Instances'
USER = 'nova-hyperv'
PASSWORD = 'bench-Pa55word'
GIB = 1024 ** 3
#: futurist's own default (nova's test base sets 0.01 s).
FUTURIST_MAX_IDLE_FOR = 1
#: The management node the figures are for.
NODE_VCPUS, NODE_GIB = 4, 16
#: Kept free on that node: the OS, page cache, bursts (spawns, migrations).
MEMORY_HEADROOM, CPU_BUDGET = 0.25, 0.5


def memory_kib() -> dict[str, int]:
    """RSS, its peak and PSS of this process, KiB (Linux /proc)."""
    found = {}
    for line in Path('/proc/self/status').read_text().splitlines():
        key, _, value = line.partition(':')
        if key in ('VmRSS', 'VmHWM'):
            found[key] = int(value.split()[0])
    for line in Path('/proc/self/smaps_rollup').read_text().splitlines():
        if line.startswith('Pss:'):
            found['Pss'] = int(line.split()[1])
    return found


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


#: Categories of CPU time measured by wrapping entry points (the outermost one counts).
PSDRIVER = 'psdriver: host calls over PSRP (Bridge.call)'
HTTP = 'placement: in-process HTTP service calls'
DATABASE = 'database: nova.db API calls, SQLAlchemy statements'
RPC = 'RPC handled by {topic}'
HEARTBEAT = 'nova-compute service heartbeat (report_state)'
PERIODIC = "nova-compute periodic tasks (their own code, every task at its spacing)"
UNMEASURED = ('everything else: the services\' threads, RPC servers, thread pools, '
              'lifecycle poller loop, interpreter')
FAKE_RPC = ('RPC listeners of the in-process message bus, checking their queues every 50 ms '
            '(oslo.messaging fake driver)')
#: What runs on controllers, or not at all (the fake bus), in a real cloud.
CONTROLLER_SIDE = (HTTP, DATABASE, RPC.format(topic='conductor'),
                   RPC.format(topic='scheduler'), FAKE_RPC)


def _service_of(endpoints: list[Any]) -> str:
    """conductor, compute or scheduler: whose manager the RPC endpoints are."""
    for endpoint in endpoints:
        module = type(endpoint).__module__
        for service in ('conductor', 'compute', 'scheduler'):
            if module.startswith(f'nova.{service}.'):
                return service
    return 'another service'


def thread_cpu() -> dict[str, float]:
    """CPU seconds of every Python thread so far, by thread name (numbers stripped)."""
    import re
    import threading

    found: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            used = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, OverflowError, TypeError):
            continue
        target = getattr(thread, '_target', None)
        name = re.sub(r'\d+', 'N', thread.name) + (
            f' ({getattr(target, "__qualname__", target)})' if target else '')
        found[name] = found.get(name, 0.0) + used
    return found


class CpuAccount:
    """CPU time (``time.thread_time``) spent inside wrapped functions, by category.

    Exclusive time: a wrapped call made inside another (a database query in
    a periodic task) counts for its own category, not for the outer one.
    """

    def __init__(self) -> None:
        import collections
        import threading
        self.spent: collections.Counter = collections.Counter()
        self._local = threading.local()
        self._lock = threading.Lock()

    def wrap(self, owner: Any, name: str, category: Any) -> None:
        real = getattr(owner, name)
        setattr(owner, name, self.wrapped(real, category))

    def wrapped(self, real: Any, category: Any) -> Any:
        import functools
        account = self

        @functools.wraps(real)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stack = account._local.__dict__.setdefault('stack', [])
            label = category(*args) if callable(category) else category
            stack.append([label, 0.0])
            started = time.thread_time()
            try:
                return real(*args, **kwargs)
            finally:
                used = time.thread_time() - started
                _, inner = stack.pop()
                if stack:
                    stack[-1][1] += used
                with account._lock:
                    account.spent[label] += used - inner

        return wrapper

    def install(self) -> None:
        import inspect

        import sqlalchemy.engine.base
        import sqlalchemy.orm.session
        import wsgi_intercept
        from oslo_messaging.rpc import dispatcher

        from nova.db.api import api as api_db
        from nova.db.main import api as main_db
        from psdriver.bridge import client

        from oslo_messaging._drivers import impl_fake

        from oslo_service import periodic_task

        from nova.compute import manager as compute_manager
        from nova.servicegroup.drivers import db as servicegroup_db

        self.wrap(client.Bridge, 'call', PSDRIVER)
        tasks = compute_manager.ComputeManager._periodic_tasks
        tasks[:] = [(name, self.wrapped(task, f'nova-compute periodic task {name}'))
                    for name, task in tasks]
        self.wrap(periodic_task.PeriodicTasks, 'run_periodic_tasks',
                  'nova periodic task runner (itself)')
        self.wrap(servicegroup_db.DbDriver, '_report_state', HEARTBEAT)
        self.wrap(impl_fake.FakeExchange, 'poll', FAKE_RPC)
        self.wrap(impl_fake.FakeExchangeManager, 'get_exchange', FAKE_RPC)
        self.wrap(wsgi_intercept.wsgi_fake_socket, 'makefile', HTTP)
        self.wrap(dispatcher.RPCDispatcher, 'dispatch',
                  lambda this, *_: RPC.format(topic=_service_of(this.endpoints)))
        for module in (main_db, api_db):
            for name, value in list(vars(module).items()):
                if inspect.isfunction(value) and value.__module__ == module.__name__ \
                        and not name.startswith('_'):
                    self.wrap(module, name, DATABASE)
        self.wrap(sqlalchemy.orm.session.Session, 'execute', DATABASE)
        self.wrap(sqlalchemy.orm.session.Session, 'flush', DATABASE)
        self.wrap(sqlalchemy.engine.base.Connection, 'execute', DATABASE)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.spent)


# -- the hosts process ------------------------------------------------------------------------

def hosts_main(count: int, work: Path) -> None:
    """Serve ``count`` simulated hosts over PSRP until stdin closes."""
    from psdriver.sim import SimHost
    from tests.infra.wsman_endpoint import WSManEndpoint

    cert, key = str(work / 'host.pem'), str(work / 'host.key')
    endpoints = []
    for index in range(count):
        name = f'hv{index + 1:02d}'
        host = SimHost(state_file=str(work / f'host-{name}.json'), hostname=name,
                       smb_shares={'OpenStackInstances': INSTANCES_PATH})
        with host.transaction():
            host.make_dir(f'{INSTANCES_PATH}\\_base')
            host.new_vhd(f'{INSTANCES_PATH}\\_base\\{IMAGE_ID}.vhdx', GIB)
        endpoint = WSManEndpoint(username=USER, password=PASSWORD, host=host, certfile=cert,
                                 keyfile=key).start()
        endpoints.append((name, endpoint))
    (work / 'ports.json').write_text(json.dumps({n: e.port for n, e in endpoints}))
    sys.stdin.read()
    counts = {n: e.action_count('Command') for n, e in endpoints}
    for _, endpoint in endpoints:
        endpoint.stop()
    (work / 'pipelines.json').write_text(json.dumps(counts))


# -- a service (or the control) process -------------------------------------------------------

def service_main(fragment: str | None, credentials: str | None, root: str, servers: int,
                 window: float, work: Path, label: str) -> None:
    """Nova's harness with the compute service of ``fragment`` (None: none); idle; report."""
    os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
    from nova import monkey_patch
    monkey_patch.patch(backend='threading')
    import unittest

    from oslo_config import cfg

    import psdriver.conf
    from tests.functional import harness

    values: dict[tuple[str, str], Any] = {}
    if fragment:
        conf = cfg.ConfigOpts()
        psdriver.conf.register_opts(conf)
        for name in ('host', 'state_path', 'compute_driver', 'instances_path'):
            conf.register_opt(cfg.StrOpt(name))
        conf.register_opt(cfg.StrOpt('lock_path'), group='oslo_concurrency')
        conf(['--config-file', fragment, '--config-file', credentials],
             default_config_files=[], default_config_dirs=[])
        sections: dict[str, dict[str, list[str]]] = {}
        for path in (fragment, credentials):
            cfg.ConfigParser(path, sections).parse()
        for group, options in sections.items():
            holder = conf if group == 'DEFAULT' else conf[group]
            for name in options:
                values[(group, name)] = holder[name]
    report: dict[str, Any] = {'label': label}
    account = CpuAccount()
    account.install()

    class Service(harness.PsDriverTestBase):
        COMPUTE_HOSTS = (values[('DEFAULT', 'host')],) if fragment else ()
        STUB_COMPUTE_ID = False
        LIFECYCLE_EVENTS = True

        def _setup_services(self) -> None:
            # The harness intercepts HTTP(S) for its in-process API and placement (plain
            # HTTP); the WinRM connections over HTTPS go to the real network.
            import fixtures
            import urllib3
            self.useFixture(fixtures.MonkeyPatch(
                'urllib3.connectionpool.HTTPSConnectionPool.ConnectionCls',
                urllib3.connection.HTTPSConnection))
            # nova's test base makes idle futurist workers wake every 10 ms (quicker test
            # shutdown); nova-compute runs with futurist's default, once a second.
            import futurist._thread
            futurist._thread.ThreadWorker.MAX_IDLE_FOR = FUTURIST_MAX_IDLE_FOR
            self.flags(periodic_enable=os.environ.get('FLEET_BENCH_PERIODIC', '1') == '1')
            # nova-compute's and psdriver's defaults, not the harness's faster ones
            self.flags(power_state_event_polling_interval=2, group='hyperv')
            self.flags(handle_virt_lifecycle_events=os.environ.get(
                'FLEET_BENCH_EVENTS', '1') == '1', group='workarounds')
            for (group, name), value in values.items():
                if (group, name) == ('DEFAULT', 'state_path'):
                    value = os.path.join(root, value.lstrip('/'))
                    os.makedirs(value, exist_ok=True)
                if group == 'oslo_concurrency':
                    continue
                self.flags(**{name: value}, group=None if group == 'DEFAULT' else group)
            super()._setup_services()

        def _start_compute(self, host, cell_name=None):
            return super(harness.PsDriverTestBase, self)._start_compute(
                host, cell_name=cell_name)

        def _register_vhdx_image(self) -> str:
            from psdriver.sim import image_files
            import io
            data = image_files.vhdx(GIB)
            self.glance.create(None, {
                'id': IMAGE_ID, 'name': 'bench', 'status': 'active', 'visibility': 'public',
                'disk_format': 'vhdx', 'container_format': 'bare', 'size': len(data),
                'min_ram': 0, 'min_disk': 0, 'properties': {}}, data=io.BytesIO(data))
            return IMAGE_ID

        def test_idle(self) -> None:
            if fragment:
                flavor = self._flavor(vcpu=1, memory_mb=512, disk=2)
                for _ in range(servers):
                    self.boot(flavor_id=flavor)
            bridge = self.driver(self.COMPUTE_HOSTS[0]).bridge if fragment else None
            (work / f'{label}.ready').write_text('')
            while not (work / 'go').exists():
                time.sleep(0.2)
            trips = bridge.round_trips if bridge else 0
            before_cpu, started = cpu_seconds(), time.monotonic()
            before = account.snapshot()
            threads_before = thread_cpu()
            time.sleep(window)
            threads_after = thread_cpu()
            report['cpu_by_thread'] = {
                k: v - threads_before.get(k, 0.0) for k, v in threads_after.items()
                if v - threads_before.get(k, 0.0) > 0.001}
            report['cpu_seconds'] = cpu_seconds() - before_cpu
            after = account.snapshot()
            report['cpu_by_code'] = {k: v - before.get(k, 0.0) for k, v in after.items()}
            report['round_trips'] = (bridge.round_trips if bridge else 0) - trips
            report['window'] = time.monotonic() - started
            report['memory_kib'] = memory_kib()
            report['threads'] = len(os.listdir('/proc/self/task'))

    result = unittest.TextTestRunner(stream=open(os.devnull, 'w'), verbosity=0).run(
        Service('test_idle'))
    problems = [text for _, text in result.errors + result.failures]
    report['error'] = problems[0][-3000:] if problems else None
    (work / f'report-{label}.json').write_text(json.dumps(report))


def imports_main(work: Path) -> None:
    """Only what a nova-compute process with psdriver imports."""
    os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
    from nova import monkey_patch
    monkey_patch.patch(backend='threading')
    import nova.cmd.compute  # noqa: F401
    import nova.compute.manager  # noqa: F401
    import pypsrp.client  # noqa: F401

    import psdriver.bridge.runners.psrp  # noqa: F401
    import psdriver.driver  # noqa: F401
    (work / 'imports.json').write_text(json.dumps({'memory_kib': memory_kib()}))


# -- the parent -------------------------------------------------------------------------------

def _self_signed(work: Path) -> str:
    from tests.bridge.test_psrp_runner import _self_signed as make
    cert, _ = make(work)
    return cert


def _spawn(*argv: str, log: Path | None = None) -> subprocess.Popen:
    """This script in a new process; its output (nova's logs) to ``log``."""
    output = open(log, 'wb') if log else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, __file__, *argv], stdin=subprocess.PIPE,
                                stdout=output, stderr=subprocess.STDOUT, cwd=_REPO_ROOT)
    finally:
        if log:
            output.close()


def run(services: int, window: float, servers: int) -> dict[str, Any]:
    from psdriver.fleet import inventory, render

    with tempfile.TemporaryDirectory(prefix='psdriver-fleet-bench-') as tmp:
        work = Path(tmp)
        cert = _self_signed(work)
        hosts = _spawn('_hosts', str(services), str(work), log=work / 'hosts.log')
        while not (work / 'ports.json').exists():
            if hosts.poll() is not None:
                raise RuntimeError('the hosts process stopped')
            time.sleep(0.1)
        ports = json.loads((work / 'ports.json').read_text())
        credentials = work / 'credentials.conf'
        credentials.write_text(f'[powershell]\npsrp_password = {PASSWORD}\n')
        credentials.chmod(0o600)
        entries = ''.join(
            f'  - name: {name}\n    address: 127.0.0.1\n    port: {port}\n'
            for name, port in ports.items())
        path = work / 'fleet.yaml'
        path.write_text(f'defaults:\n  auth: basic\n  username: {USER}\n'
                        f'  cert_validation: {cert}\n  credentials: {credentials}\n'
                        f'  share: OpenStackInstances\nhosts:\n{entries}')
        fleet = inventory.load(str(path))
        root = work / 'root'
        render.apply(fleet, root)
        imports = _spawn('_imports', str(work), log=work / 'imports.log')
        imports.wait()
        workers = [_spawn('_service', str(root / render.host_config_path(fleet, h).lstrip('/')),
                          str(credentials), str(root), str(servers), str(window), str(work),
                          h.name, log=work / f'{h.name}.log') for h in fleet.hosts]
        workers.append(_spawn('_service', '-', '-', str(root), '0', str(window), str(work),
                              'control', log=work / 'control.log'))
        labels = [h.name for h in fleet.hosts] + ['control']
        deadline = time.monotonic() + 600
        while not all((work / f'{label}.ready').exists() for label in labels):
            if any(w.poll() is not None for w in workers) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        (work / 'go').write_text('')
        for worker in workers:
            worker.wait()
        hosts.stdin.close()
        hosts.wait()
        reports = {}
        for label in labels:
            result = work / f'report-{label}.json'
            if result.exists():
                reports[label] = json.loads(result.read_text())
            else:
                tail = (work / f'{label}.log').read_text(errors='replace')[-3000:]
                reports[label] = {'label': label, 'error': f'no report; log ends:\n{tail}'}
        reports['imports'] = json.loads((work / 'imports.json').read_text())
        reports['pipelines'] = json.loads((work / 'pipelines.json').read_text())
        return reports


def summarize(reports: dict[str, Any], services: int, window: float,
              servers: int) -> str:
    control = reports['control']
    rows = [r for k, r in reports.items() if k.startswith('hv')]
    failed = [r['label'] for r in rows if r.get('error')] + (
        ['control'] if control.get('error') else [])
    if failed:
        details = '\n'.join(f'{r["label"]}: {r["error"]}' for r in rows + [control]
                            if r.get('error'))
        raise SystemExit(f'failed: {", ".join(failed)}\n{details}')
    mib = 1024.0
    imports_rss = reports['imports']['memory_kib']['VmRSS'] / mib
    lines = [f'{services} services side by side, {servers} servers each, idle window '
             f'{window:.0f} s, on {os.cpu_count()} CPUs.', '',
             '| process | RSS (MiB) | PSS (MiB) | CPU in window (s) | CPU (% of one core) |'
             ' threads |', '| --- | ---: | ---: | ---: | ---: | ---: |']
    for r in rows + [control]:
        m = r['memory_kib']
        lines.append(f'| {r["label"]} | {m["VmRSS"] / mib:.0f} | {m["Pss"] / mib:.0f} | '
                     f'{r["cpu_seconds"]:.2f} | {100 * r["cpu_seconds"] / r["window"]:.2f} | '
                     f'{r["threads"]} |')
    lines.append(f'| imports only (nova-compute, psdriver, pypsrp) | {imports_rss:.0f} | | | '
                 '| |')
    added_rss = [(r['memory_kib']['VmRSS'] - control['memory_kib']['VmRSS']) / mib
                 for r in rows]
    added_cpu = [(r['cpu_seconds'] - control['cpu_seconds']) / r['window'] for r in rows]

    def controller_side(report: dict[str, Any]) -> float:
        return sum(report['cpu_by_code'].get(k, 0.0) for k in CONTROLLER_SIDE) / report['window']

    node_cpu = [added - (controller_side(r) - controller_side(control))
                for added, r in zip(added_cpu, rows, strict=True)]
    memory = imports_rss + max(added_rss)
    cpu = max(node_cpu)
    round_trips = sum(r['round_trips'] for r in rows) / max(len(rows), 1)
    by_memory = math.floor(NODE_GIB * 1024 * (1 - MEMORY_HEADROOM) / memory)
    by_cpu = math.floor(NODE_VCPUS * CPU_BUDGET / cpu) if cpu > 0 else 10 ** 6
    by_upper = math.floor(NODE_VCPUS * CPU_BUDGET / max(added_cpu)) if max(added_cpu) > 0 \
        else 10 ** 6
    def grouped(report: dict[str, Any]) -> dict[str, float]:
        """% of one core by category; every periodic task in one row; the rest unmeasured."""
        found: dict[str, float] = {}
        for label, seconds in report['cpu_by_code'].items():
            if label.startswith('nova-compute periodic task ') or label.startswith(
                    'nova periodic task runner'):
                label = PERIODIC
            found[label] = found.get(label, 0.0) + 100 * seconds / report['window']
        found[UNMEASURED] = 100 * report['cpu_seconds'] / report['window'] - sum(found.values())
        return found

    service_rows = [grouped(r) for r in rows]
    control_row = grouped(control)
    labels = sorted({k for g in service_rows + [control_row] for k in g} - {UNMEASURED})
    lines += ['', '**CPU of the window by code (% of one core)**', '',
              f'| code | per service process (mean of {len(rows)}) | control process | '
              'runs where in a cloud |', '| --- | ---: | ---: | --- |']
    for label in labels + [UNMEASURED]:
        mean = sum(g.get(label, 0.0) for g in service_rows) / len(rows)
        where = ('nowhere (an AMQP client waits on its socket)' if label == FAKE_RPC
                 else 'controllers' if label in CONTROLLER_SIDE
                 else 'management node (counted)' if label == UNMEASURED
                 else 'management node')
        lines.append(f'| {label} | {mean:.2f} | {control_row.get(label, 0.0):.2f} | {where} |')
    lines += [
        '',
        f'- Memory: one service adds {min(added_rss):.0f}-{max(added_rss):.0f} MiB RSS to '
        f'the control process; with the {imports_rss:.0f} MiB of modules a nova-compute '
        f'process loads, **{memory:.0f} MiB per service** (largest of the {len(rows)}).',
        f'- Idle CPU on the management node per service: the service process minus the '
        f'control process, minus the controllers\' and the in-process bus\'s share of that '
        f'difference: '
        f'{100 * min(node_cpu):.2f}-{100 * max(node_cpu):.2f} % of one core, **'
        f'{100 * cpu:.2f} %** taken; {round_trips:.0f} PowerShell round trips per host in '
        f'the {window:.0f} s window. Upper bound (the whole difference): '
        f'{100 * max(added_cpu):.2f} %.',
        f'- A {NODE_VCPUS} vCPU / {NODE_GIB} GiB node, keeping {MEMORY_HEADROOM:.0%} of '
        f'its memory and {1 - CPU_BUDGET:.0%} of its CPU free: {by_memory} services by '
        f'memory, {by_cpu} by idle CPU ({by_upper} by the upper bound): '
        f'**{min(by_memory, by_cpu)} hosts**.',
    ]
    return '\n'.join(lines) + '\n'


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == '_hosts':
        return hosts_main(int(sys.argv[2]), Path(sys.argv[3]))
    if len(sys.argv) > 1 and sys.argv[1] == '_imports':
        return imports_main(Path(sys.argv[2]))
    if len(sys.argv) > 1 and sys.argv[1] == '_service':
        fragment, credentials, root, servers, window, work, label = sys.argv[2:9]
        return service_main(None if fragment == '-' else fragment,
                            None if credentials == '-' else credentials, root, int(servers),
                            float(window), Path(work), label)
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--services', type=int, default=4)
    parser.add_argument('--window', type=float, default=120.0)
    parser.add_argument('--servers', type=int, default=5)
    parser.add_argument('--no-periodic', action='store_true',
                        help="turn nova's periodic tasks off (to see their share)")
    parser.add_argument('--no-events', action='store_true',
                        help="turn psdriver's lifecycle event poll off (to see its share)")
    parser.add_argument('--json', metavar='PATH', help='also write the raw reports here')
    parser.add_argument('--update-readme', action='store_true',
                        help='put the figures in README.md between the fleet-benchmark marks')
    args = parser.parse_args()
    started = time.monotonic()
    os.environ['FLEET_BENCH_PERIODIC'] = '0' if args.no_periodic else '1'
    os.environ['FLEET_BENCH_EVENTS'] = '0' if args.no_events else '1'
    reports = run(args.services, args.window, args.servers)
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    text = summarize(reports, args.services, args.window, args.servers)
    sys.stdout.write(text)
    if args.update_readme:
        update_readme(text, args, time.monotonic() - started)


START_MARK, END_MARK = '<!-- fleet-benchmark:start -->', '<!-- fleet-benchmark:end -->'


def update_readme(text: str, args: argparse.Namespace, seconds: float) -> None:
    """Replace what lies between the README's fleet-benchmark marks, nothing else."""
    import datetime

    from benchmarks import common

    facts = common.machine_facts()
    command = (f'python benchmarks/fleet.py --services {args.services} --window '
               f'{args.window:g} --servers {args.servers}')
    block = '\n'.join([
        f'Measured on {datetime.date.today().isoformat()} with `{command}` '
        f'({seconds:.0f} s), on {facts.get("CPUs", "?")} CPUs ({facts.get("CPU model", "?")}), '
        f'Python {facts.get("Python", "?")}, nova {facts.get("nova", "?")}, shared with '
        'other work.', '', text.rstrip('\n')])
    readme = _REPO_ROOT / 'README.md'
    current = readme.read_text(encoding='utf-8')
    head, _, rest = current.partition(START_MARK)
    _, _, tail = rest.partition(END_MARK)
    readme.write_text(f'{head}{START_MARK}\n{block}\n{END_MARK}{tail}', encoding='utf-8')


if __name__ == '__main__':
    main()
