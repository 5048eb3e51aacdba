"""How the periodic tasks grow with the number of VMs on the host.

For 10, 100 and 1,000 VMs (10 and 100 with ``--quick``) the VMs are seeded
straight into the simulated host with the New-Instance simulation
(:func:`psdriver.sim.scenario.add_instance`), three in four running, each
with the instance UUID of a nova Instance; then the real HyperVDriver runs
each periodic task several times, its caches expired before every run (as
they are between two periodic runs):

* ``update_available_resource``: get_available_nodes, get_available_resource,
  update_provider_tree;
* nova's power-state sync: get_num_instances, then get_info per instance;
* ``list_instance_uuids``;
* one lifecycle event poll (``LifecycleEventPoller.poll_once``), with one
  VM changing state before each poll, so every poll emits one event.

Measured: wall time (median and p90), round trips, the JSON that crossed the
bridge, and the peak of Python memory the task allocated (tracemalloc, in a
separate untimed run).  The host is big enough for 1,000 VMs (256 logical
processors, 2 TiB) so that capacity never gets in the way.
"""

from __future__ import annotations

import gc
import math
import time
import tracemalloc
from typing import Any, Callable

from benchmarks import common

SIZES = {True: (10, 100), False: (10, 100, 1000)}
RUNS = {True: 3, False: 7}
#: Growth exponents above this are called out as worse than linear.
SUPERLINEAR = 1.15
CAPACITY = {'logical_processors': 256, 'sockets': 4, 'threads_per_core': 2, 'numa_nodes': 4,
            'memory_mb': 2 * 1024 * 1024, 'disk_gb': 200_000, 'max_running_vms': 1024}


def seed(compute: common.SimCompute, count: int) -> list[Any]:
    """``count`` instances on the host (one save of the host); their nova Instances."""
    from psdriver.sim.scenario import add_instance
    instances = [compute.instance(100 + i, config_drive=False) for i in range(count)]
    with compute.host.transaction(write=True):
        for index, instance in enumerate(instances):
            add_instance(compute.host, instance.name, instance_uuid=instance.uuid,
                         instance_dir=f'{common.INSTANCES_PATH}\\{instance.name}',
                         memory_mb=1024, power_on=index % 4 != 0)
    return instances


def _peak_kib(fn: Callable[[], Any]) -> float:
    """Peak Python memory ``fn`` allocated above what was already held, in KiB."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - before) / 1024


def _exponent(small: tuple[int, float], large: tuple[int, float]) -> float:
    """k in cost ~ VMs^k between two sizes (1 is linear)."""
    (n1, v1), (n2, v2) = small, large
    if v1 <= 0 or v2 <= 0:
        return float('nan')
    return math.log(v2 / v1) / math.log(n2 / n1)


def measure_size(count: int,
                 runs: int) -> tuple[list[list[common.Cell]], list[common.Cell], float]:
    """For a host of ``count`` VMs: a row per task, the listing's steps, the seeding time."""
    from psdriver.ops import eventhandler

    rows: list[list[common.Cell]] = []
    with common.sim_compute(capacity=CAPACITY) as compute:
        driver, host = compute.driver, compute.host
        started = time.perf_counter()
        instances = seed(compute, count)
        seeded = time.perf_counter() - started
        emitted: list[Any] = []
        poller = eventhandler.LifecycleEventPoller(
            lambda: driver.vmops.summary(refresh=True), emitted.append, 2.0)
        poller.poll_once()
        flip = instances[0].name

        def change_one_vm() -> None:
            compute.expire_caches()
            vm = host.get_vm(flip)
            if vm.state == 'Running':
                host.stop_vm(flip, turn_off=True)
            else:
                host.start_vm(flip)

        tasks: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            'update_available_resource':
                (lambda: common.update_available_resource(driver), compute.expire_caches),
            'power-state sync (get_num_instances + get_info each)':
                (lambda: common.sync_power_states(driver, instances), compute.expire_caches),
            'list_instance_uuids': (driver.list_instance_uuids, compute.expire_caches),
            'lifecycle event poll': (poller.poll_once, change_one_vm),
        }
        for task, (fn, before) in tasks.items():
            times = common.sample(fn, runs, before=before)
            before()
            with compute.meter.measure() as traffic:
                fn()
            before()
            peak = _peak_kib(fn)
            stats = common.summarize(times)
            rows.append([task, count, stats.median * 1e3, stats.p90 * 1e3,
                         stats.median / count * 1e6, traffic.round_trips,
                         traffic.bytes_from_host, peak])
        if len(emitted) < runs:
            raise AssertionError(f'the event poll emitted {len(emitted)} events in {runs} '
                                 'polls with a VM changing state before each')
        listing = listing_steps(compute, runs)
    return rows, listing, seeded


def listing_steps(compute: common.SimCompute, runs: int) -> list[common.Cell]:
    """Where one VM listing spends its time: the host, the JSON parse, the validation.

    The call is the one ``list_instance_uuids`` makes, captured at the runner.
    """
    from psdriver.bridge import contracts, envelope
    runner = compute.meter.runner
    runner.kept = []
    compute.expire_caches()
    compute.driver.list_instance_uuids()
    (call,), runner.kept = runner.kept, None
    raw = runner.inner.run(call)
    result = envelope.parse(raw, call.name, runner.target)
    contract = contracts.load_contract(call.name)
    host = common.summarize(common.sample(lambda: runner.inner.run(call), runs)).median
    parse = common.summarize(common.sample(
        lambda: envelope.parse(raw, call.name, runner.target), runs)).median
    validate = common.summarize(common.sample(lambda: contract.validate(result), runs)).median
    whole = common.summarize(common.sample(compute.driver.list_instance_uuids, runs,
                                           before=compute.expire_caches)).median
    return [call.name, len(result['vms']), host * 1e3, parse * 1e3, validate * 1e3,
            whole * 1e3, 100 * validate / whole]


def run(quick: bool = False) -> list[common.Table]:
    sizes, runs = SIZES[quick], RUNS[quick]
    periodic = common.Table(
        'scaling.periodic', f'Periodic tasks by number of VMs (median of {runs} runs)',
        ['task', 'VMs', 'median (ms)', 'p90 (ms)', 'per VM (µs)', 'round trips',
         'JSON from host (bytes)', 'peak Python memory (KiB)'])
    steps = common.Table(
        'scaling.listing', 'One VM listing by step (milliseconds, medians)',
        ['script', 'VMs', 'simulated host', 'envelope parse', 'contract validation',
         'whole list_instance_uuids', 'validation share (%)'])
    seeding: list[tuple[int, float]] = []
    for count in sizes:
        rows, listing, seeded = measure_size(count, runs)
        seeding.append((count, seeded))
        for row in rows:
            periodic.add(*row)
        steps.add(*listing)
    order = list(dict.fromkeys(str(row[0]) for row in periodic.rows))
    periodic.rows.sort(key=lambda row: (order.index(str(row[0])), row[1]))

    small, large = sizes[-2], sizes[-1]
    growth = common.Table(
        'scaling.growth',
        f'Growth from {small:,} to {large:,} VMs (exponent k in cost ~ VMs^k; 1 is linear)',
        ['task', 'time', 'JSON from host', 'peak Python memory'])
    by_task: dict[str, dict[int, list[common.Cell]]] = {}
    for row in periodic.rows:
        by_task.setdefault(str(row[0]), {})[int(row[1])] = row
    for task, per_size in by_task.items():
        a, b = per_size[small], per_size[large]
        growth.add(task, *(round(_exponent((small, float(a[i])), (large, float(b[i]))), 2)
                           for i in (2, 6, 7)))
    worse = [f'{row[0]} ({growth.columns[i]}, k = {row[i]:.2f})' for row in growth.rows
             for i in range(1, len(row)) if isinstance(row[i], float) and row[i] > SUPERLINEAR]
    growth.notes.append('Worse than linear (k > '
                        f'{SUPERLINEAR}): {"; ".join(worse) if worse else "none"}. Time '
                        'exponents move by about 0.15 between runs on a shared 2-core machine.')
    k = _exponent(seeding[-2], seeding[-1])
    why = (': on every VM start and disk attach the simulator walks the disks of every running '
           'VM, so each spawn costs O(VMs)') if k > SUPERLINEAR else ''
    growth.notes.append('Seeding the simulated host (not a periodic task): ' + ', '.join(
        f'{n:,} VMs in {t:.2f} s' for n, t in seeding) + f' (k = {k:.2f}{why}).')
    return [periodic, growth, steps]
