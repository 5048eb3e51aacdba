"""Run the demo: configure, build the real driver on the simulated host, run the steps.

The configuration is what a nova.conf for the simulated host holds
(``[powershell] transport = sim``, chosen explicitly, with an optional state
file), plus two choices of the demo's own:

* ``state_path`` and ``[oslo_concurrency] lock_path`` are a temporary folder,
  and ``[coordination] backend_url`` is empty (one simulated host needs no
  distributed locks): nova keeps the node's identity file ``compute_id`` in
  ``state_path``, and the image cache's local locks need a lock folder;
  nothing is written elsewhere;
* ``[workarounds] handle_virt_lifecycle_events = False``: the lifecycle event
  poller would add Get-InstanceSummary calls from its own thread at moments
  of its choosing; the steps show the calls nova-compute's operations make.

After a failed step the rest are skipped and the demo cleans up as
nova-compute does (``destroy`` once a spawn was attempted, ``cleanup_host``);
it then checks, on the simulated host itself, that no VM and no instance
folder are left.
"""

from __future__ import annotations

import ntpath
import os
import sys
import tempfile
import time
from typing import Any, TextIO

from nova import objects
from nova.compute import power_state
from nova.virt import virtapi

from psdriver.bridge.client import CallRecord
from psdriver.demo import nova_objects, stand_ins, steps
from psdriver.demo.calls import RecordingDriver
from psdriver.demo.report import Report, StepOutcome, host_view

HOST = 'SIMHV01'
INSTANCES_PATH = 'C:\\OpenStack\\Instances'
SWITCH = 'external'
FAULT_MESSAGE = 'fault injected by psdriver demo --fail-script: {script} failed on purpose'


def configure(conf: Any, state_file: str | None, work_dir: str) -> None:
    conf.set_override('host', HOST)
    conf.set_override('state_path', work_dir)
    conf.set_override('instances_path', INSTANCES_PATH)
    conf.set_override('transport', 'sim', group='powershell')
    conf.set_override('sim_state_file', state_file, group='powershell')
    conf.set_override('vswitch_name', SWITCH, group='hyperv')
    conf.set_override('lock_path', os.path.join(work_dir, 'locks'),
                      group='oslo_concurrency')
    conf.set_override('handle_virt_lifecycle_events', False, group='workarounds')
    conf.set_override('backend_url', '', group='coordination')


def left_overs(host: Any, instance: Any) -> list[str]:
    """What the demo's instance left on the host (read from the simulator directly)."""
    found = []
    for vm in host.list_vms():
        if vm.name.lower() == instance.name.lower() or \
                vm.notes.lower().startswith(instance.uuid.lower()):
            found.append(f'VM {vm.name} ({vm.state})')
    folder = ntpath.join(INSTANCES_PATH, instance.name)
    if host.exists(folder):
        found.append(f'instance folder {folder}')
    found += [f'iSCSI session to {s.target_iqn}' for s in host.iscsi_sessions()]
    found += [f'SMB mapping of {m.remote_path}' for m in host.smb_mappings()]
    return found


class Demo:
    def __init__(self, conf: Any, report: Report, fail_script: str | None = None) -> None:
        self.conf = conf
        self.report = report
        self.fail_script = fail_script
        self.outcomes: list[StepOutcome] = []
        self._records: list[CallRecord] = []
        self._showed_vm = False

    # -- wiring -----------------------------------------------------------------

    def _on_script(self, record: CallRecord) -> None:
        self._records.append(record)
        self.report.script(record)

    def build(self) -> steps.World:
        from psdriver.driver import HyperVDriver

        image = nova_objects.image()
        driver = HyperVDriver(virtapi.VirtAPI())
        self.bridge = driver.bridge          # the configured bridge: sim, chosen above
        self.bridge.observers.append(self._on_script)
        host = self.bridge.runner.host
        steps.storage_array(host)
        if self.fail_script:
            # NotSpecified: an error of no particular kind, as an unexpected Hyper-V fault is.
            host.faults.fail(self.fail_script, FAULT_MESSAGE.format(script=self.fail_script),
                             category='NotSpecified')
        context = nova_objects.request_context()
        network_info = nova_objects.network_info()
        return steps.World(
            driver=RecordingDriver(driver, self.report.driver_call), host=host,
            conf=self.conf, context=context, image=image,
            image_meta=nova_objects.image_meta(image),
            instance=nova_objects.instance(context, HOST, HOST, image, network_info),
            network_info=network_info, extra_vif=nova_objects.second_vif())

    def intro(self, world: steps.World) -> list[str]:
        inst, flavor, image = world.instance, world.instance.flavor, world.image
        where = world.host.state_file or 'memory'
        lines = [
            "psdriver demo: the real HyperVDriver through an instance's life, "
            'called as nova-compute calls it',
            f'  host:     simulated Hyper-V host {world.host.hostname} '
            f'([powershell] transport = sim; state in {where})',
            f'  image:    {image.name} (VHDX, {image.virtual_size // 1024 ** 3} GiB virtual, '
            f'{len(image.data) // 1024} KiB file) from a Glance stand-in',
            f'  instance: {inst.name} ({flavor.name}: {flavor.vcpus} vCPUs, '
            f'{flavor.memory_mb} MB, {flavor.root_gb} GB root), config drive, '
            f'{len(world.network_info)} port',
        ]
        if self.fail_script:
            lines.append(f'  fault:    the next {self.fail_script} call fails (--fail-script)')
        return lines

    # -- running ----------------------------------------------------------------

    def run_step(self, world: steps.World, index: int, step: steps.Step) -> StepOutcome:
        outcome = StepOutcome(index, step.name, step.what)
        self.report.step_started(index, step.name, step.what)
        first = len(self._records)
        started = time.perf_counter()
        result = None
        try:
            result = step.run(world)
            if step.power_state is not None and world.instance.power_state != step.power_state:
                raise steps.StepCheckFailed(
                    f'Nova reads power state {power_state.STATE_MAP[world.instance.power_state]}'
                    f', expected {power_state.STATE_MAP[step.power_state]}')
            if step.check is not None:
                step.check(world)
        except Exception as exc:    # a failing step is the demo's result, not a crash
            outcome.error = exc
        outcome.seconds = time.perf_counter() - started
        outcome.round_trips = len(self._records) - first
        self.outcomes.append(outcome)
        if outcome.error is not None:
            self.report.step_failed(outcome)
            return outcome
        if result:
            self.report.result(result)
        self._show_host(world)
        self.report.step_done(outcome)
        return outcome

    def _show_host(self, world: steps.World) -> None:
        vm = world.vm()
        if vm is not None or self._showed_vm:
            folder = world.host.exists(ntpath.join(INSTANCES_PATH, world.instance.name))
            self.report.host_view(host_view(vm, world.instance.name, folder))
        self._showed_vm = vm is not None

    def clean_up(self, world: steps.World) -> list[str]:
        """After a failure: what nova-compute does (destroy after a spawn, cleanup_host)."""
        ran = {o.name for o in self.outcomes}
        succeeded = {o.name for o in self.outcomes if o.error is None}
        lines: list[str] = []
        actions = []
        if steps.SPAWN in ran and steps.DELETE not in succeeded:
            actions.append(('destroy', steps.destroy))
        if steps.START in ran and steps.STOP not in succeeded:
            actions.append(('cleanup_host', steps.cleanup_host))
        for name, action in actions:
            self.report.note(f'clean-up: {name}')
            try:
                action(world)
                lines.append(f'Clean-up after the failure: {name} done.')
            except Exception as exc:   # reported, and the host check below tells the rest
                lines.append(f'Clean-up after the failure: {name} failed: '
                             f'{type(exc).__name__}: {exc}')
        return lines

    def forget_unused_fault(self, world: steps.World) -> None:
        """A fault that never fired is reported and removed (it would stay in a state file)."""
        message = FAULT_MESSAGE.format(script=self.fail_script)
        with world.host.transaction() as state:
            unused = [r for r in state.faults.rules if r.message == message]
            if not unused:
                return
            state.faults.rules = [r for r in state.faults.rules if r.message != message]
        self.report.note(f'note: the injected fault never fired: no step ran '
                         f'{self.fail_script}', always=True)


def run(conf: Any, *, state_file: str | None = None, quiet: bool = False,
        fail_script: str | None = None, out: TextIO | None = None) -> int:
    """Run the demo; 0 when every step succeeded and the host ends clean."""
    out = out or sys.stdout
    objects.register_all()
    report = Report(out, len(steps.STEPS), quiet=quiet)
    with tempfile.TemporaryDirectory(prefix='psdriver-demo-') as work_dir:
        configure(conf, state_file, work_dir)
        demo = Demo(conf, report, fail_script)
        with stand_ins.local_lookups(nova_objects.image()):
            started = time.perf_counter()
            try:
                world = demo.build()
            except Exception as exc:   # e.g. a state file holding another host
                report.note(f'psdriver demo: cannot set up the simulated host: '
                            f'{type(exc).__name__}: {exc}', always=True)
                return 1
            report.intro(demo.intro(world))
            for index, step in enumerate(steps.STEPS, 1):
                if demo.run_step(world, index, step).error is not None:
                    break
            failed = any(o.error is not None for o in demo.outcomes)
            cleanup = demo.clean_up(world) if failed else []
            seconds = time.perf_counter() - started
        if fail_script:
            demo.forget_unused_fault(world)
        remaining = left_overs(world.host, world.instance)
        report.summary(demo.outcomes, demo.bridge.round_trips, seconds, remaining, cleanup)
    if not failed and not remaining:
        return 0
    return 1

