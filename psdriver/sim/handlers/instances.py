"""Remove-Instance, Get-InstanceSummary and Get-InstanceInfo."""

from __future__ import annotations

import re
import time
from typing import Any

from psdriver.sim import paths
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import SimError
from psdriver.sim.handlers.ovs import (
    EXAMPLE_OVS_VSCTL, as_list, ovs_del_port, resolve_ovs_vsctl)
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import (
    dvd_drives, hard_disks, int_param, is_absolute, is_dir, is_file, is_under, nic_record,
    not_empty, notes_uuid, remove_vm, script_error, switch, target_vm, uptime_seconds)
from psdriver.sim.state import MIB, Vm
from psdriver.sim.storage import ACTIVE_STATES

_UUID = re.compile(r'^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
                   r'[0-9a-fA-F]{12}\}?$')
_ROOTS = (re.compile(r'^[A-Za-z]:[\\/]*$'), re.compile(r'^\\\\[^\\/]+[\\/][^\\/]+[\\/]*$'),
          re.compile(r'^[\\/]+$'))
_DISK_FILE = re.compile(r'\.a?vhdx?$', re.IGNORECASE)
_AVHD = re.compile(r'\.avhdx?$', re.IGNORECASE)


# -- Remove-Instance ------------------------------------------------------------------------

def _disk_chain(host: SimHost, path: str) -> list[str]:
    """``Get-DiskChain``: the file and its differencing parents; stops at an unreadable one."""
    chain: list[str] = []
    current: str | None = path
    while current and current not in chain:
        chain.append(current)
        if not _DISK_FILE.search(current):
            break
        try:
            current = host.get_vhd(current).vhd.parent_path
        except SimError:
            break
    return chain


def _instance_files(host: SimHost, vm: Vm, folder: str) -> list[str]:
    """Disk, DVD and checkpoint files of the VM (with parents) that lie under ``folder``."""
    found: list[str] = []
    drive_paths = [d.path for d in hard_disks(vm)] + [d.path for d in dvd_drives(vm)]
    drive_paths += [p for snap in vm.snapshots for p in snap.disks.values()]
    for path in drive_paths:
        if not path or not is_absolute(path):
            continue                          # pass-through disks have no file
        for link in _disk_chain(host, path):
            if is_under(link, folder) and link not in found:
                found.append(link)
    return found


def _wait_for_checkpoint_merge(host: SimHost, name: str, merging: list[str],
                               timeout: int) -> None:
    """Remove-VM merges the checkpoint disks afterwards: wait until the merge removed them."""
    deadline = time.monotonic() + timeout
    while True:
        host.settle_checkpoint_merges()
        if not any(is_file(host, f) for f in merging):
            return
        if time.monotonic() >= deadline:
            raise script_error(f"The checkpoints of '{name}' are still merging into its disks "
                               f'after {timeout} seconds; the virtual machine is removed, run '
                               'Remove-Instance again to delete its files.', 'OperationTimeout',
                               'PsDriver.CheckpointMergeTimeout', name)
        time.sleep(0.02)


@handler('Remove-Instance')
def remove_instance(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    name = not_empty('Remove-Instance', params, 'Name')
    wanted_uuid = params.get('InstanceUuid') or ''
    folder = params.get('InstanceDir') or ''
    delete_files = switch(params, 'DeleteFiles')
    merge_timeout = int_param('Remove-Instance', params, 'MergeTimeoutSeconds', 300, 0, 3600)
    if wanted_uuid and not _UUID.match(wanted_uuid):
        raise script_error(f"InstanceUuid '{wanted_uuid}' is not a UUID.", 'InvalidArgument',
                           'PsDriver.InvalidInstanceUuid', wanted_uuid)
    if delete_files and not folder:
        raise script_error(f"Deleting the files of '{name}' needs InstanceDir.",
                           'InvalidArgument', 'PsDriver.InstanceDirRequired', name)
    if folder and (not is_absolute(folder) or any(r.match(folder) for r in _ROOTS)):
        raise script_error(f"InstanceDir '{folder}' must be an absolute path below a drive or "
                           'share root.', 'InvalidArgument', 'PsDriver.UnsafeInstanceDir',
                           folder)
    vm = host.find_vm(name)
    if vm is not None and wanted_uuid:
        expected = wanted_uuid.strip('{}').lower()
        actual = notes_uuid(vm.notes)
        if actual != expected:
            carried = f'instance UUID {actual}' if actual else 'no instance UUID'
            raise script_error(f"Virtual machine '{name}' carries {carried} in its Notes, not "
                               f'{expected}; it is left alone.', 'InvalidOperation',
                               'PsDriver.InstanceUuidMismatch', name)
    ovs_ports = [str(p) for p in as_list(params.get('OvsPortId')) if p]
    ovs_vsctl = resolve_ovs_vsctl(host, params.get('OvsVsctlPath')) if ovs_ports else ''
    for port in ovs_ports:
        ovs_del_port(host, ovs_vsctl, port)
    vm_id = previous = None
    snapshots = 0
    files: list[str] = []
    removed: list[str] = []
    folder_removed = False
    if vm is not None:
        vm_id, previous, snapshots = vm.id, vm.state, len(vm.snapshots)
        if delete_files:
            files = _instance_files(host, vm, folder)
        remove_vm(host, vm)
        _wait_for_checkpoint_merge(host, name, [f for f in files if _AVHD.search(f)],
                                   merge_timeout)
    if delete_files:
        for path in files:
            if is_file(host, path):
                host.remove_item(path)
                removed.append(path)
        if is_dir(host, folder):
            host.remove_item(folder, recurse=True)
            folder_removed = True
    return {'name': name, 'existed': vm is not None, 'vm_id': vm_id,
            'previous_state': previous, 'snapshots_removed': snapshots,
            'removed_files': removed, 'instance_dir_removed': folder_removed,
            'ovs_ports_removed': ovs_ports}


@prepare('Remove-Instance')
def _remove_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The example's instance: spawned in InstanceDir, running, with a checkpoint.

    An example naming neither a UUID nor a folder is the VM that is already gone.
    """
    from psdriver.sim.scenario import add_instance, ensure_folder
    name = params['Name']
    folder = params.get('InstanceDir')
    if not folder and not params.get('InstanceUuid'):
        return
    if folder:
        ensure_folder(host, paths.parent(paths.normalize(folder)) or folder)
    add_instance(host, name, instance_uuid=params.get('InstanceUuid'), instance_dir=folder,
                 config_drive=True)
    host.checkpoint_vm(name, 'before upgrade')
    for port in as_list(params.get('OvsPortId')):
        host.install_ovs(EXAMPLE_OVS_VSCTL)
        host.ovs_add_port('br-int', port, {'iface-id': port})


# -- Get-InstanceSummary --------------------------------------------------------------------

@handler('Get-InstanceSummary', readonly=True)
def get_instance_summary(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    """One pass over the VMs; no copies (this is what the periodic tasks call)."""
    nova_only = switch(params, 'NovaOnly')
    now = time.time()
    records = []
    for vm in sorted(host.state.vms.values(), key=lambda v: v.name.lower()):
        uuid_text = notes_uuid(vm.notes)
        if nova_only and uuid_text is None:
            continue
        active = vm.state in ACTIVE_STATES
        records.append({
            'name': vm.name,
            'vm_id': vm.id.lower(),
            'instance_uuid': uuid_text,
            'state': vm.state,
            'vcpus': vm.processor_count,
            'memory_mb': vm.memory_startup_mb if active else 0,
            'memory_startup_mb': vm.memory_startup_mb,
            'uptime_seconds': uptime_seconds(vm, now),
            'generation': vm.generation,
        })
    return {'vms': records}


@prepare('Get-InstanceSummary')
def _summary_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """Two instances (one running) and a VM that is not an instance."""
    from psdriver.sim.scenario import add_instance
    add_instance(host, 'instance-00000001')
    add_instance(host, 'instance-00000002', power_on=False)
    host.create_vm('build-agent', notes='not an instance')


# -- Get-InstanceInfo -----------------------------------------------------------------------

def _disk_record(host: SimHost, drive: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        'path': drive.path, 'controller_type': drive.controller_type,
        'controller_number': drive.controller_number,
        'controller_location': drive.location, 'disk_number': drive.disk_number,
        'format': None, 'vhd_type': None, 'parent_path': None, 'size_bytes': None,
        'file_size_bytes': None}
    if drive.disk_number is None and drive.path:
        try:
            entry = host.get_vhd(drive.path)
        except SimError:
            return record                     # the script logs it and goes on
        record.update(format=entry.vhd.format, vhd_type=entry.vhd.vhd_type,
                      parent_path=entry.vhd.parent_path or None, size_bytes=entry.vhd.size,
                      file_size_bytes=entry.size)
    return record


#: Get-InstanceInfo's metrics fields and the documented Measure-VM properties they come from.
METERING_PROPERTIES = {
    'cpu_average_mhz': 'AverageProcessorUsage',
    'memory_average_mb': 'AverageMemoryUsage',
    'memory_minimum_mb': 'MinimumMemoryUsage',
    'memory_maximum_mb': 'MaximumMemoryUsage',
    'disk_allocated_mb': 'TotalDiskAllocation',
    'disk_read_mb': 'AggregatedDiskDataRead',
    'disk_written_mb': 'AggregatedDiskDataWritten',
    'disk_normalized_iops': 'AggregatedAverageNormalizedIOPS',
}


def measure_vm(host: SimHost, vm: Vm, now: float) -> dict[str, Any] | None:
    """``Measure-VM``: the report's documented properties.

    Derived from the VM's life since metering started; None when metering is
    off (the script does not call it then).
    """
    if vm.metering_since is None:
        return None
    running = vm.state in ACTIVE_STATES
    uptime = uptime_seconds(vm, now)
    allocated = 0
    for drive in hard_disks(vm):
        if drive.path and drive.disk_number is None:
            try:
                allocated += host.get_vhd(drive.path).vhd.size
            except SimError:
                continue
    memory = vm.memory_startup_mb if running else 0
    traffic = []
    if vm.nics:
        traffic = [{'Direction': 'Inbound', 'TotalTraffic': uptime // 30},
                   {'Direction': 'Outbound', 'TotalTraffic': uptime // 60}]
    return {
        'AverageProcessorUsage': 105 * vm.processor_count if running else 0,
        'AverageMemoryUsage': memory,
        'MinimumMemoryUsage': memory,
        'MaximumMemoryUsage': memory,
        'TotalDiskAllocation': allocated // MIB,
        'AggregatedDiskDataRead': uptime // 10,
        'AggregatedDiskDataWritten': uptime // 20,
        'AggregatedAverageNormalizedIOPS': 12 if running else 0,
        'NetworkMeteredTrafficReport': traffic,
        'MeteringDuration': max(0, int(now - vm.metering_since)),
    }


def metering_record(report: dict[str, Any]) -> dict[str, Any]:
    """What Get-InstanceInfo makes of a Measure-VM report (``Get-MeteringRecord``).

    Documented property names only; a missing one fails loudly; a traffic
    entry metered in ``Both`` directions cannot be split and counts in neither.
    """
    for name in [*METERING_PROPERTIES.values(), 'NetworkMeteredTrafficReport',
                 'MeteringDuration']:
        if name not in report:
            raise script_error(f"The Measure-VM report has no property '{name}'.",
                               'InvalidResult', 'PsDriver.MeteringPropertyMissing', name)
    record = {field: int(report[name] or 0) for field, name in METERING_PROPERTIES.items()}
    traffic = [t for t in report['NetworkMeteredTrafficReport'] or [] if t is not None]
    record['network_inbound_mb'] = sum(int(t['TotalTraffic']) for t in traffic
                                       if t['Direction'] == 'Inbound')
    record['network_outbound_mb'] = sum(int(t['TotalTraffic']) for t in traffic
                                        if t['Direction'] == 'Outbound')
    duration = report['MeteringDuration']
    record['metering_duration_seconds'] = None if duration is None else int(duration)
    return record


def _metering(host: SimHost, vm: Vm, now: float) -> dict[str, Any] | None:
    report = measure_vm(host, vm, now)
    return None if report is None else metering_record(report)
def _device_metering(host: SimHost, vm: Vm, now: float) -> dict[str, Any]:
    """Measure-VM's HardDiskMetrics and each adapter's metering ACLs, split from the totals."""
    uptime = uptime_seconds(vm, now)
    disks = [d for d in hard_disks(vm) if d.path and d.disk_number is None]
    share = max(len(disks), 1)
    return {
        'disks': [{'path': d.path, 'read_mb': uptime // 10 // share,
                   'written_mb': uptime // 20 // share,
                   'normalized_io_count': 12 * uptime // share} for d in disks],
        'nics': [{'name': nic.name, 'inbound_mb': uptime // 30, 'outbound_mb': uptime // 60}
                 for nic in vm.nics],
    }


@handler('Get-InstanceInfo', readonly=True)
def get_instance_info(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    vm = target_vm(host, not_empty('Get-InstanceInfo', params, 'Name'))
    now = time.time()
    active = vm.state in ACTIVE_STATES
    metrics = _metering(host, vm, now) if switch(params, 'IncludeMetrics') else None
    return {
        'name': vm.name,
        'vm_id': vm.id.lower(),
        'instance_uuid': notes_uuid(vm.notes),
        'state': vm.state,
        'vcpus': vm.processor_count,
        'memory_mb': vm.memory_startup_mb,
        'memory_assigned_mb': vm.memory_startup_mb if active else 0,
        'dynamic_memory_enabled': vm.dynamic_memory,
        'uptime_seconds': uptime_seconds(vm, now),
        'generation': vm.generation,
        'notes': vm.notes or '',
        'disks': [_disk_record(host, d) for d in hard_disks(vm)],
        'dvd_drives': [{'path': d.path or None, 'controller_type': d.controller_type,
                        'controller_number': d.controller_number,
                        'controller_location': d.location} for d in dvd_drives(vm)],
        'nics': [nic_record(nic) for nic in vm.nics],
        'serial_ports': [{'port': int(port[3:]), 'path': pipe or None}
                         for port, pipe in sorted(vm.com_ports.items())],
        'metrics': metrics,
        'device_metrics': _device_metering(host, vm, now) if metrics is not None else None,
    }


@prepare('Get-InstanceInfo')
def _info_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """A running instance with two adapters (one on a VLAN), metering and a config drive."""
    from psdriver.sim.scenario import add_instance, ensure_switch
    ensure_switch(host, 'br-int')
    add_instance(host, params['Name'], config_drive=True, enable_metrics=True, nics=[
        {'id': '3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b', 'mac': 'fa:16:3e:01:02:03',
         'switch': 'br-int', 'vlan': 101},
        {'id': '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d', 'mac': 'fa:16:3e:0a:0b:0c'}])
