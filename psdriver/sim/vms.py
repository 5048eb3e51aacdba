"""Virtual machines: lifecycle, the state machine, memory and CPU capacity.

The state machine follows Hyper-V's cmdlets.  Asking for the state a VM is
already in is a no-op (Hyper-V only writes a warning); any other move the
table below does not list is refused with Hyper-V's "The operation cannot be
performed while the virtual machine is in its current state."
"""

from __future__ import annotations

import fnmatch
import time
import uuid
from typing import Any

from psdriver.sim import paths
from psdriver.sim.errors import (
    SimError, invalid_argument, invalid_state, vm_exists, vm_id_not_found,
    vm_not_found)
from psdriver.sim.state import ConsoleLogger, Vm
from psdriver.sim.network import NetworkRules
from psdriver.sim.storage import ACTIVE_STATES
from psdriver.sim.txn import reads, writes

STATES = ('Off', 'Running', 'Paused', 'Saved', 'Starting', 'Stopping')

#: Operation -> {state it is allowed from: state it leads to}.
TRANSITIONS: dict[str, dict[str, str]] = {
    'start': {'Off': 'Running', 'Saved': 'Running'},
    'stop': {'Running': 'Off'},
    'turn_off': {'Running': 'Off', 'Paused': 'Off', 'Saved': 'Off', 'Starting': 'Off',
                 'Stopping': 'Off'},
    'suspend': {'Running': 'Paused'},
    'resume': {'Paused': 'Running'},
    'save': {'Running': 'Saved', 'Paused': 'Saved'},
    'restart': {'Running': 'Running'},
    'remove_saved_state': {'Saved': 'Off'},
}
#: Operation -> the state in which it is a no-op.
ALREADY = {'start': 'Running', 'stop': 'Off', 'turn_off': 'Off', 'suspend': 'Paused',
           'resume': 'Running', 'save': 'Saved'}
_ACTION_TEXT = {'start': 'start', 'stop': 'shut down', 'turn_off': 'turn off',
                'suspend': 'pause', 'resume': 'resume', 'save': 'save', 'restart': 'restart',
                'remove_saved_state': 'remove the saved state'}

MAX_VM_NAME = 100
MAX_MEMORY_MB = 12 * 1024 * 1024
MIN_MEMORY_MB = 32
MAX_VCPUS = {1: 64, 2: 240}
SECURE_BOOT_TEMPLATES = ('MicrosoftWindows', 'MicrosoftUEFICertificateAuthority',
                         'OpenSourceShieldedVM')
#: OpenSourceShieldedVM came with Windows Server 1709 (build 16299): not on Server 2016.
OPEN_SOURCE_SHIELDED_BUILD = 16299


def secure_boot_templates(os_version: str) -> tuple[str, ...]:
    """The secure boot templates a host of this Windows version offers."""
    parts = [int(p) for p in os_version.split('.')] + [0, 0, 0]
    if parts[2] >= OPEN_SOURCE_SHIELDED_BUILD or parts[0] > 10:
        return SECURE_BOOT_TEMPLATES
    return tuple(t for t in SECURE_BOOT_TEMPLATES if t != 'OpenSourceShieldedVM')
DEFAULT_VM_PATH = 'C:\\ProgramData\\Microsoft\\Windows\\Hyper-V'
CONSOLE_LOG_LINES = 2000
START_ACTIONS = ('Nothing', 'StartIfRunning', 'Start')
STOP_ACTIONS = ('TurnOff', 'Save', 'ShutDown')
#: Bytes a console logger reads from the pipe at a time (its buffer).
CONSOLE_CHUNK = 4096


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise invalid_argument('The virtual machine name cannot be empty.', str(name))
    if len(name) > MAX_VM_NAME:
        raise invalid_argument(
            f'The virtual machine name is longer than {MAX_VM_NAME} characters.', name)
    if any(ord(c) < 32 for c in name) or any(c in name for c in '\\/:*?"<>|'):
        raise invalid_argument(f'The virtual machine name "{name}" contains characters that '
                               'are not allowed.', name)
    return name


class VmRules(NetworkRules):

    # -- lookup ------------------------------------------------------------------

    def _vm(self, name: str) -> Vm:
        vm = self._state.vms.get(name.lower()) if isinstance(name, str) else None
        if vm is None:
            raise vm_not_found(str(name))
        return vm

    @reads
    def get_vm(self, name: str) -> Vm:
        """``Get-VM -Name``: exact name, case-insensitive; ObjectNotFound if missing."""
        return self._vm(name)

    @reads
    def find_vm(self, name: str) -> Vm | None:
        return self._state.vms.get(name.lower())

    @reads
    def get_vm_by_id(self, vm_id: str) -> Vm:
        wanted = vm_id.lower()
        for vm in self._state.vms.values():
            if vm.id.lower() == wanted:
                return vm
        raise vm_id_not_found(vm_id)

    @reads
    def list_vms(self, pattern: str = '*') -> list[Vm]:
        """``Get-VM [-Name pattern]`` with PowerShell wildcards, sorted by name."""
        pat = pattern.lower()
        return sorted((vm for k, vm in self._state.vms.items() if fnmatch.fnmatchcase(k, pat)),
                      key=lambda vm: vm.name.lower())

    # -- create, remove, rename ---------------------------------------------------

    @writes
    def create_vm(self, name: str, *, generation: int = 2, memory_startup_mb: int = 512,
                  processor_count: int = 1, path: str | None = None, notes: str = '',
                  dynamic_memory: bool = False, memory_minimum_mb: int | None = None,
                  memory_maximum_mb: int | None = None, version: str | None = None) -> Vm:
        """``New-VM``: names are unique on this host (psdriver relies on it)."""
        _check_name(name)
        if name.lower() in self._state.vms:
            raise vm_exists(name)
        if generation not in (1, 2):
            raise invalid_argument(f'The generation {generation!r} is not valid; use 1 or 2.',
                                   name)
        vm_path = paths.normalize(path or DEFAULT_VM_PATH)
        self._volume(vm_path)
        version = version or self._state.config.default_vm_version
        if version not in self._state.config.supported_vm_versions:
            raise invalid_argument(f"The configuration version '{version}' is not supported "
                                   'on this host.', name)
        vm = Vm(id=str(uuid.uuid4()), name=name, generation=generation, path=vm_path,
                notes=notes, created=time.time(), scsi_controllers=1, version=version,
                secure_boot=generation == 2,
                secure_boot_template='MicrosoftWindows' if generation == 2 else '')
        self._apply_memory(vm, memory_startup_mb, dynamic_memory,
                           memory_minimum_mb if memory_minimum_mb is not None
                           else min(512, memory_startup_mb),
                           memory_maximum_mb if memory_maximum_mb is not None else 1048576)
        self._apply_processor_count(vm, processor_count)
        self._state.vms[name.lower()] = vm
        return vm

    @writes
    def remove_vm(self, name: str) -> None:
        """``Remove-VM``: only Off or Saved VMs; disks and folders stay on the volume.

        The *Critical variants (the VM's storage is unreachable) can go too:
        removing such a VM is how Hyper-V cleans up after lost storage.
        """
        vm = self._vm(name)
        if vm.state not in ('Off', 'Saved', 'OffCritical', 'SavedCritical'):
            raise invalid_state(vm.name, vm.state, 'delete')
        cluster = self._state.cluster
        if cluster and any(g.vm_name and g.vm_name.lower() == vm.name.lower()
                           for g in cluster.groups.values()):
            raise SimError(f"Virtual machine '{vm.name}' is a clustered role; remove it from "
                           'the cluster first.', 'InvalidOperation', 'VMIsClustered',
                           target=vm.name)
        self._drop_saved_state(vm)
        del self._state.vms[vm.name.lower()]
        if vm.snapshots:
            # Remove-VM deletes the checkpoints and merges their disks after the VM is gone.
            self._start_checkpoint_merge([d.path for d in vm.drives
                                          if d.kind == 'HardDisk' and d.path])

    @writes
    def rename_vm(self, name: str, new_name: str) -> Vm:
        vm = self._vm(name)
        _check_name(new_name)
        if new_name.lower() != vm.name.lower() and new_name.lower() in self._state.vms:
            raise vm_exists(new_name)
        del self._state.vms[vm.name.lower()]
        vm.name = new_name
        self._state.vms[new_name.lower()] = vm
        return vm

    # -- settings -----------------------------------------------------------------

    @writes
    def set_notes(self, name: str, notes: str) -> Vm:
        """VM notes (psdriver keeps the Nova instance UUID there)."""
        vm = self._vm(name)
        if not isinstance(notes, str):
            raise invalid_argument('Notes must be a string.', vm.name)
        vm.notes = notes
        return vm

    @writes
    def set_vm_options(self, name: str, *, automatic_start_action: str | None = None,
                       automatic_stop_action: str | None = None) -> Vm:
        """``Set-VM -AutomaticStartAction/-AutomaticStopAction`` (VM Off for the stop action)."""
        vm = self._vm(name)
        if automatic_start_action is not None and automatic_start_action not in START_ACTIONS:
            raise invalid_argument(f"'{automatic_start_action}' is not an automatic start "
                                   f"action; use one of {', '.join(START_ACTIONS)}.", vm.name)
        if automatic_stop_action is not None:
            if automatic_stop_action not in STOP_ACTIONS:
                raise invalid_argument(f"'{automatic_stop_action}' is not an automatic stop "
                                       f"action; use one of {', '.join(STOP_ACTIONS)}.",
                                       vm.name)
            if vm.state != 'Off' and automatic_stop_action != vm.automatic_stop_action:
                raise invalid_state(vm.name, vm.state, 'modify the automatic stop action')
        if automatic_start_action is not None:
            vm.automatic_start_action = automatic_start_action
        if automatic_stop_action is not None:
            vm.automatic_stop_action = automatic_stop_action
        return vm

    @writes
    def set_processor(self, name: str, count: int | None = None, *,
                      limit_cpu_features: bool | None = None,
                      max_per_numa_node: int | None = None) -> Vm:
        """``Set-VMProcessor`` (VM Off): count, migration compatibility, vNUMA limit."""
        vm = self._vm(name)
        if vm.state != 'Off':
            raise invalid_state(vm.name, vm.state, 'modify processors')
        if max_per_numa_node is not None and not (
                isinstance(max_per_numa_node, int) and 1 <= max_per_numa_node <= 240):
            raise invalid_argument(f'The maximum processors per NUMA node '
                                   f'{max_per_numa_node!r} is out of range (1-240).', vm.name)
        if count is not None:
            self._apply_processor_count(vm, count)
        if limit_cpu_features is not None:
            vm.limit_cpu_features = bool(limit_cpu_features)
        if max_per_numa_node is not None:
            vm.numa_max_processors = max_per_numa_node
        return vm

    def nested_virtualization_refusal(self) -> str | None:
        """Why this host cannot expose virtualization extensions to a guest (None: it can).

        Hyper-V nests on Intel VT-x with EPT from Windows Server 2016 (build
        14393) and on AMD-V with RVI from Windows Server 2022 (build 20348).
        """
        cfg = self._state.config
        build = int((cfg.os_version.split('.') + ['0', '0', '0'])[2] or 0)
        if 'slat' not in cfg.cpu_features:
            return 'the processor has no second level address translation (EPT or RVI)'
        if cfg.cpu_vendor == 'GenuineIntel':
            return None if build >= 14393 else 'nested virtualization needs Windows Server 2016'
        if cfg.cpu_vendor == 'AuthenticAMD':
            return None if build >= 20348 else \
                'nested virtualization on AMD processors needs Windows Server 2022'
        return f'processors from {cfg.cpu_vendor} do not support nested virtualization'

    @writes
    def set_nested_virtualization(self, name: str, enabled: bool) -> Vm:
        """``Set-VMProcessor -ExposeVirtualizationExtensions`` (VM Off, a host that nests)."""
        vm = self._vm(name)
        if vm.state != 'Off':
            raise invalid_state(vm.name, vm.state, 'modify processors')
        refusal = self.nested_virtualization_refusal() if enabled else None
        if refusal:
            raise SimError(f"'{vm.name}' failed to modify device 'Processor': {refusal}.",
                           'InvalidOperation', 'NestedVirtualizationNotSupported',
                           target=vm.name)
        vm.extra['expose_virtualization_extensions'] = bool(enabled)
        return vm

    # -- serial console relays (Start-InstanceSerialConsole) ---------------------------

    def _relay_alive(self, vm_id: str, relay: dict[str, Any]) -> bool:
        """A relay exits when its VM is gone or its instance folder was removed."""
        entry = self._entry(paths.normalize(relay['dir']))
        return entry is not None and entry.is_dir and \
            any(vm.id.lower() == vm_id for vm in self._state.vms.values())

    @reads
    def serial_relay(self, name: str) -> dict[str, Any] | None:
        """The running serial console relay of a VM, if any."""
        vm = self._vm(name)
        relay = self._state.serial_relays.get(vm.id.lower())
        return dict(relay) if relay and self._relay_alive(vm.id.lower(), relay) else None

    @writes
    def start_serial_relay(self, name: str, pipe: str, instance_dir: str, listen: str,
                           first_port: int, last_port: int) -> tuple[dict[str, Any], bool]:
        """The VM's relay: the running one, or a new one on the first free port in range."""
        vm = self._vm(name)
        key = vm.id.lower()
        for stale in [k for k, r in self._state.serial_relays.items()
                      if not self._relay_alive(k, r)]:
            del self._state.serial_relays[stale]     # exited: their ports are free again
        current = self._state.serial_relays.get(key)
        if current is not None:
            return dict(current), False
        taken = {r['port'] for r in self._state.serial_relays.values()} | \
            set(self._state.config.tcp_ports_in_use)
        port = next((p for p in range(first_port, last_port + 1) if p not in taken), None)
        if port is None:
            raise SimError(f'No free TCP port from {first_port} to {last_port} on {listen} for '
                           f"the serial console of '{vm.name}'.", 'ResourceUnavailable',
                           'PsDriver.NoFreePort', target=vm.name)
        self._state.next_pid += 4
        relay = {'port': port, 'pid': self._state.next_pid, 'listen_address': listen,
                 'dir': instance_dir, 'pipe': pipe}
        self._state.serial_relays[key] = relay
        return dict(relay), True

    # -- Discrete Device Assignment ---------------------------------------------------

    def _device_holder(self, location_path: str) -> Vm | None:
        for vm in self._state.vms.values():
            if location_path.lower() in (p.lower() for p in vm.extra.get('assigned_devices', [])):
                return vm
        return None

    @reads
    def assignable_devices(self) -> list[dict[str, Any]]:
        """Free (Get-VMHostAssignableDevice), then assigned ones (Get-VMAssignableDevice)."""
        free, assigned = [], []
        for device in self._state.config.assignable_devices:
            holder = self._device_holder(device['location_path'])
            record = {'location_path': device['location_path'],
                      'instance_id': device.get('instance_id') or '',
                      'vendor_id': device.get('vendor_id'), 'product_id': device.get('product_id'),
                      'address': device.get('address'), 'numa_node': device.get('numa_node'),
                      'assigned_to': holder.name if holder else None}
            (assigned if holder else free).append(record)
        return free + assigned

    @writes
    def set_mmio_space(self, name: str, low_mb: int, high_mb: int) -> Vm:
        """``Set-VM -GuestControlledCacheTypes -Low/HighMemoryMappedIoSpace``."""
        vm = self._vm(name)
        if vm.state != 'Off':
            raise invalid_state(vm.name, vm.state, 'modify memory-mapped I/O space')
        vm.extra['mmio'] = {'guest_controlled_cache_types': True, 'low_mb': low_mb,
                            'high_mb': high_mb}
        return vm

    @writes
    def add_assignable_device(self, name: str, location_path: str) -> Vm:
        """``Add-VMAssignableDevice -LocationPath``: VM Off, stop action TurnOff, device free."""
        vm = self._vm(name)
        if vm.state != 'Off':
            raise invalid_state(vm.name, vm.state, 'assign a device')
        if vm.automatic_stop_action != 'TurnOff':
            raise SimError(f"Cannot assign device '{location_path}' to '{vm.name}': the "
                           "virtual machine's automatic stop action must be TurnOff.",
                           'InvalidOperation', 'AutomaticStopActionNotTurnOff', target=vm.name)
        known = {d['location_path'].lower() for d in self._state.config.assignable_devices}
        if location_path.lower() not in known:
            raise SimError(f"The device at location path '{location_path}' is not dismounted "
                           'for assignment on this host (Dismount-VMHostAssignableDevice).',
                           'ObjectNotFound', 'DeviceNotAssignable', target=location_path)
        holder = self._device_holder(location_path)
        if holder is not None:
            raise SimError(f"The device at location path '{location_path}' is already "
                           f"assigned to virtual machine '{holder.name}'.", 'ResourceBusy',
                           'DeviceInUse', target=location_path)
        vm.extra.setdefault('assigned_devices', []).append(location_path)
        return vm

    @writes
    def set_local_key_protector(self, name: str) -> Vm:
        """``Set-VMKeyProtector -NewLocalKeyProtector`` (generation 2, VM Off)."""
        vm = self._vm(name)
        self._check_tpm_target(vm, 'key protector')
        vm.extra['key_protector'] = 'local'
        return vm

    @writes
    def enable_vtpm(self, name: str) -> Vm:
        """``Enable-VMTPM``: needs a key protector first; absent before Windows Server 2016."""
        vm = self._vm(name)
        self._check_tpm_target(vm, 'TPM')
        if not vm.extra.get('key_protector'):
            raise SimError(f"Failed to enable the TPM of '{vm.name}': the virtual machine has "
                           'no key protector (Set-VMKeyProtector).', 'InvalidOperation',
                           'NoKeyProtector', target=vm.name)
        vm.extra['tpm'] = True
        return vm

    def _check_tpm_target(self, vm: Vm, what: str) -> None:
        if not self._state.config.vtpm:
            raise SimError("The term 'Enable-VMTPM' is not recognized as a name of a cmdlet.",
                           'ObjectNotFound', 'CommandNotFoundException', target='Enable-VMTPM')
        if vm.generation != 2:
            raise SimError(f"Cannot set the {what} of '{vm.name}': generation 1 virtual "
                           'machines have no virtual TPM.', 'InvalidOperation',
                           'Generation1Tpm', target=vm.name)
        if vm.state != 'Off':
            raise invalid_state(vm.name, vm.state, f'modify the {what}')

    @writes
    def set_disk_max_iops(self, name: str, path: str, maximum_iops: int) -> Vm:
        """``Set-VMHardDiskDrive -MaximumIOPS`` on the drive holding ``path`` (0: no limit)."""
        vm = self._vm(name)
        if not any(d.kind == 'HardDisk' and (d.path or '').lower() == path.lower()
                   for d in vm.drives):
            raise SimError(f"'{vm.name}' has no hard disk drive '{path}'.", 'ObjectNotFound',
                           'DriveNotFound', target=path)
        if not isinstance(maximum_iops, int) or maximum_iops < 0:
            raise invalid_argument(f'{maximum_iops!r} is not a valid maximum IOPS.', vm.name)
        limits = vm.extra.setdefault('disk_max_iops', {})
        limits[path.lower()] = maximum_iops
        return vm

    @writes
    def set_numa_memory(self, name: str, max_per_node_mb: int) -> Vm:
        """``Set-VMMemory -MaximumAmountPerNumaNodeBytes`` (VM Off, even MB)."""
        vm = self._vm(name)
        if vm.state != 'Off':
            raise invalid_state(vm.name, vm.state, 'modify memory')
        if not isinstance(max_per_node_mb, int) or max_per_node_mb < 2 or max_per_node_mb % 2:
            raise invalid_argument(f'The maximum memory per NUMA node {max_per_node_mb!r} MB '
                                   'must be an even number of at least 2 MB.', vm.name)
        vm.numa_max_memory_mb = max_per_node_mb
        return vm

    @writes
    def enable_metering(self, name: str, enabled: bool = True) -> Vm:
        """``Enable-VMResourceMetering`` / ``Disable-VMResourceMetering``."""
        vm = self._vm(name)
        if not enabled:
            vm.metering_since = None
        elif vm.metering_since is None:
            vm.metering_since = time.time()
        return vm

    def _apply_memory(self, vm: Vm, startup: int, dynamic: bool, minimum: int,
                      maximum: int) -> None:
        for label, value in (('startup', startup), ('minimum', minimum), ('maximum', maximum)):
            if not isinstance(value, int) or value < MIN_MEMORY_MB or value > MAX_MEMORY_MB:
                raise invalid_argument(
                    f"Invalid {label} memory value {value!r} MB for '{vm.name}': it must be "
                    f'between {MIN_MEMORY_MB} and {MAX_MEMORY_MB} MB.', vm.name)
            if value % 2:
                raise invalid_argument(
                    f"Invalid memory value assigned for '{vm.name}'. Memory values must be "
                    'a multiple of 2 MB.', vm.name)
        if dynamic and not minimum <= startup <= maximum:
            raise invalid_argument(
                f"Invalid dynamic memory settings for '{vm.name}': minimum ({minimum} MB) <= "
                f'startup ({startup} MB) <= maximum ({maximum} MB) does not hold.', vm.name)
        vm.memory_startup_mb = startup
        vm.dynamic_memory = bool(dynamic)
        vm.memory_minimum_mb = minimum
        vm.memory_maximum_mb = maximum

    @writes
    def set_memory(self, name: str, startup_mb: int | None = None, *,
                   dynamic: bool | None = None, minimum_mb: int | None = None,
                   maximum_mb: int | None = None) -> Vm:
        """``Set-VMMemory``.  A running VM may only change static startup memory."""
        vm = self._vm(name)
        startup = vm.memory_startup_mb if startup_mb is None else startup_mb
        dyn = vm.dynamic_memory if dynamic is None else dynamic
        minimum = vm.memory_minimum_mb if minimum_mb is None else minimum_mb
        maximum = vm.memory_maximum_mb if maximum_mb is None else maximum_mb
        if vm.state != 'Off':
            changes_only_static_startup = (not dyn and not vm.dynamic_memory
                                           and (minimum, maximum) == (vm.memory_minimum_mb,
                                                                      vm.memory_maximum_mb))
            if vm.state != 'Running' or not changes_only_static_startup:
                raise invalid_state(vm.name, vm.state, 'modify memory')
            grow = startup - vm.memory_startup_mb
            if grow > 0 and grow > self._memory_free_mb():
                raise self._out_of_memory(vm, startup)
        self._apply_memory(vm, startup, dyn, minimum, maximum)
        return vm

    def _apply_processor_count(self, vm: Vm, count: int) -> None:
        limit = min(MAX_VCPUS[vm.generation], self._state.config.logical_processors)
        if not isinstance(count, int) or not 1 <= count <= limit:
            raise invalid_argument(
                f"'{vm.name}' failed to modify device 'Processor'. The processor count "
                f'{count!r} is out of range: this host allows 1 to {limit} virtual processors '
                'per virtual machine.', vm.name)
        vm.processor_count = count

    @writes
    def set_processor_count(self, name: str, count: int) -> Vm:
        """``Set-VMProcessor -Count``: only while the VM is Off."""
        vm = self._vm(name)
        if vm.state != 'Off':
            raise invalid_state(vm.name, vm.state, 'modify processors')
        self._apply_processor_count(vm, count)
        return vm

    @writes
    def set_secure_boot(self, name: str, enabled: bool, template: str | None = None) -> Vm:
        """``Set-VMFirmware``: generation 2 only, VM Off."""
        vm = self._vm(name)
        if vm.generation != 2:
            raise SimError(f"Cannot change firmware settings of '{vm.name}': secure boot "
                           'needs a generation 2 virtual machine.', 'InvalidOperation',
                           'Generation1Firmware', target=vm.name)
        if vm.state != 'Off':
            raise invalid_state(vm.name, vm.state, 'modify firmware')
        if template is not None and \
                template not in secure_boot_templates(self._state.config.os_version):
            raise invalid_argument(f"Unknown secure boot template '{template}'.", vm.name)
        vm.secure_boot = bool(enabled)
        if template is not None:
            vm.secure_boot_template = template
        return vm

    @writes
    def set_guest_shutdown(self, name: str, responds: bool, seconds: int | None = None) -> Vm:
        """Test knob: whether (and how fast) the guest honours a shutdown request."""
        vm = self._vm(name)
        vm.guest_shutdown = bool(responds)
        if seconds is not None:
            if not isinstance(seconds, int) or seconds < 1:
                raise ValueError('seconds must be a positive integer')
            vm.guest_shutdown_seconds = seconds
        return vm

    # -- memory and CPU capacity ---------------------------------------------------

    @staticmethod
    def memory_assigned_mb(vm: Vm) -> int:
        """Memory a VM holds on the host: its startup memory while active, else 0."""
        return vm.memory_startup_mb if vm.state in ACTIVE_STATES else 0

    def _memory_free_mb(self) -> int:
        cfg = self._state.config
        used = sum(self.memory_assigned_mb(vm) for vm in self._state.vms.values())
        return cfg.memory_mb - cfg.host_reserved_memory_mb - used

    @reads
    def memory_free_mb(self) -> int:
        """Free physical memory: total minus the host's own share minus active VMs."""
        return self._memory_free_mb()

    @reads
    def numa_nodes(self) -> list[dict[str, int]]:
        """Per-node processors and memory; active VMs fill the freest node first."""
        cfg = self._state.config
        count = cfg.numa_nodes
        total = [cfg.memory_mb // count] * count
        free = [t - cfg.host_reserved_memory_mb // count for t in total]
        active = sorted((vm for vm in self._state.vms.values() if vm.state in ACTIVE_STATES),
                        key=lambda vm: (vm.started_at or 0.0, vm.name.lower()))
        for vm in active:
            need = self.memory_assigned_mb(vm)
            while need > 0:
                node = max(range(count), key=lambda i: (free[i], -i))
                take = min(need, free[node]) if free[node] > 0 else need
                free[node] -= take
                need -= take
        return [{'id': i, 'logical_processors': cfg.logical_processors // count,
                 'memory_mb_total': total[i], 'memory_mb_free': max(free[i], 0)}
                for i in range(count)]

    def _out_of_memory(self, vm: Vm, need: int) -> SimError:
        return SimError(
            f"'{vm.name}' failed to start. Not enough memory in the system to start the "
            f'virtual machine {vm.name} with ram size {need} megabytes. (Virtual machine ID '
            f'{vm.id})', 'ResourceUnavailable', 'OutOfMemory', target=vm.name)

    # -- the state machine ----------------------------------------------------------

    def _transition(self, vm: Vm, op: str) -> str | None:
        """The state ``op`` leads to, ``None`` for a no-op; raises if not allowed."""
        if ALREADY.get(op) == vm.state:
            return None
        target = TRANSITIONS[op].get(vm.state)
        if target is None:
            raise invalid_state(vm.name, vm.state, _ACTION_TEXT[op])
        return target

    @writes
    def start_vm(self, name: str) -> Vm:
        """``Start-VM`` from Off or Saved: needs free memory, its disks, no disk conflicts."""
        vm = self._vm(name)
        if self._transition(vm, 'start') is None:
            return vm
        running = sum(1 for v in self._state.vms.values() if v.state in ACTIVE_STATES)
        if running >= self._state.config.max_running_vms:
            raise SimError(f"'{vm.name}' failed to start: this host already runs the maximum "
                           f'of {running} virtual machines.', 'LimitsExceeded',
                           'TooManyRunningVMs', target=vm.name)
        if vm.memory_startup_mb > self._memory_free_mb():
            raise self._out_of_memory(vm, vm.memory_startup_mb)
        self._check_devices_startable(vm)
        self._drop_saved_state(vm)
        for nic in vm.nics:
            if nic.dynamic_mac and nic.mac_address == '000000000000':
                nic.mac_address = self._next_mac()
        restored = vm.state == 'Saved'
        vm.state = 'Running'
        vm.started_at = time.time()
        self._console_boot(vm, 'restored from saved state' if restored else 'booting')
        return vm

    def _check_devices_startable(self, vm: Vm) -> None:
        writers: dict[str, str] = {}
        readers: dict[str, str] = {}
        for other in self._state.vms.values():
            if other is vm or other.state not in ACTIVE_STATES:
                continue
            for drive in other.drives:
                if drive.path and drive.kind == 'HardDisk':
                    chain = self._chain_keys(drive.path)
                    writers.setdefault(chain[0], other.name)
                    for k in chain[1:]:
                        readers.setdefault(k, other.name)
        for drive in vm.drives:
            if drive.disk_number is not None:
                disk = self._find_disk(drive.disk_number)
                if disk is None or not disk.is_offline:
                    raise SimError(
                        f"'{vm.name}' failed to start: pass-through disk {drive.disk_number} is "
                        'missing or online.', 'ObjectNotFound', 'PassThroughDiskMissing',
                        target=vm.name)
                continue
            if not drive.path:
                continue
            chain = self._chain_keys(drive.path)
            for k in chain:
                entry = self._state.files.get(k)
                if entry is None or (drive.kind == 'HardDisk' and entry.vhd is None):
                    missing = entry.path if entry else k
                    raise SimError(
                        f"'{vm.name}' failed to start. Failed to open attachment '{missing}'. "
                        'The system cannot find the file specified.', 'ObjectNotFound',
                        'VhdNotFound', target=vm.name)
            if drive.kind != 'HardDisk':
                continue
            holder = writers.get(chain[0]) or readers.get(chain[0])
            if holder is None:
                holder = next((writers[k] for k in chain[1:] if k in writers), None)
            if holder is not None:
                raise SimError(
                    f"'{vm.name}' failed to start. The process cannot access the file "
                    f"'{drive.path}' because it is being used by another process "
                    f"(virtual machine '{holder}').", 'ResourceBusy', 'FileInUse',
                    target=vm.name)

    @writes
    def stop_vm(self, name: str, *, turn_off: bool = False) -> Vm:
        """``Stop-VM`` (guest shutdown) or ``Stop-VM -TurnOff`` (power cut)."""
        vm = self._vm(name)
        op = 'turn_off' if turn_off else 'stop'
        if self._transition(vm, op) is None:
            return vm
        if not turn_off and not vm.guest_shutdown:
            raise SimError(f"'{vm.name}' failed to shut down: the guest did not respond to the "
                           'shutdown request.', 'OperationTimeout', 'ShutdownFailed',
                           target=vm.name)
        self._drop_saved_state(vm)
        vm.state = 'Off'
        vm.started_at = None
        vm.metering_since = None    # Hyper-V drops resource metering at power off
        return vm

    @writes
    def shutdown_guest(self, name: str, timeout: int) -> tuple[bool, int]:
        """Ask the guest to shut down; wait up to ``timeout`` simulated seconds.

        Returns ``(off, waited)``.  A guest that answers needs
        ``guest_shutdown_seconds``; one that does not (or a VM that is not
        Running) keeps the VM as it is for the whole wait.  Nothing sleeps.
        """
        vm = self._vm(name)
        if timeout <= 0 or vm.state == 'Off':
            return vm.state == 'Off', 0
        need = max(1, int(vm.guest_shutdown_seconds))
        if vm.state != 'Running' or not vm.guest_shutdown or need > timeout:
            return False, int(timeout)
        self.stop_vm(name)
        return True, need

    @writes
    def suspend_vm(self, name: str) -> Vm:
        """``Suspend-VM``: Running -> Paused (memory stays assigned)."""
        vm = self._vm(name)
        if self._transition(vm, 'suspend') is not None:
            vm.state = 'Paused'
        return vm

    @writes
    def resume_vm(self, name: str) -> Vm:
        """``Resume-VM``: Paused -> Running."""
        vm = self._vm(name)
        if self._transition(vm, 'resume') is not None:
            vm.state = 'Running'
        return vm

    @writes
    def save_vm(self, name: str) -> Vm:
        """``Save-VM``: memory goes to a ``.vmrs`` file next to the VM's configuration."""
        vm = self._vm(name)
        if self._transition(vm, 'save') is None:
            return vm
        folder = paths.join(vm.path, 'Virtual Machines')
        self._require_room(folder, vm.memory_startup_mb * 1024 * 1024)
        self.make_dir(folder)
        self.add_file(self._saved_state_path(vm), vm.memory_startup_mb * 1024 * 1024,
                      overwrite=True)
        vm.state = 'Saved'
        vm.started_at = None
        return vm

    @writes
    def restart_vm(self, name: str) -> Vm:
        """``Restart-VM``: a running VM reboots (its uptime starts again)."""
        vm = self._vm(name)
        self._transition(vm, 'restart')
        vm.started_at = time.time()
        self._console_boot(vm, 'rebooting')
        return vm

    @writes
    def remove_saved_state(self, name: str) -> Vm:
        """``Remove-VMSavedState``: a Saved VM drops its memory image and is Off."""
        vm = self._vm(name)
        self._transition(vm, 'remove_saved_state')
        self._drop_saved_state(vm)
        vm.state = 'Off'
        vm.metering_since = None
        return vm

    @writes
    def set_state(self, name: str, state: str) -> Vm:
        """Request a state the way ``RequestStateChange`` does (Nova's power actions).

        Running: start (from Off/Saved) or resume (from Paused); Off: turn off;
        Paused: suspend; Saved: save.  The same legality rules apply.
        """
        vm = self._vm(name)
        if state == 'Running':
            return self.resume_vm(name) if vm.state == 'Paused' else self.start_vm(name)
        if state == 'Off':
            return self.stop_vm(name, turn_off=True)
        if state == 'Paused':
            return self.suspend_vm(name)
        if state == 'Saved':
            return self.save_vm(name)
        raise invalid_argument(f"'{state}' is not a state a virtual machine can be asked to "
                               'enter.', vm.name)

    @writes
    def force_state(self, name: str, state: str) -> Vm:
        """Put a VM straight into ``state`` (tests: e.g. one stuck in Starting)."""
        vm = self._vm(name)
        if state not in STATES:
            raise ValueError(f'unknown VM state {state!r}')
        vm.state = state
        vm.started_at = time.time() if state in ACTIVE_STATES else None
        return vm

    def _saved_state_path(self, vm: Vm) -> str:
        return paths.join(vm.path, 'Virtual Machines', f'{vm.id}.vmrs')

    def _drop_saved_state(self, vm: Vm) -> None:
        path = self._saved_state_path(vm)
        entry = self._entry(path)
        if entry is not None:
            self._allocate(path, -entry.size)
            del self._state.files[paths.key(path)]

    @reads
    def vm_uptime_seconds(self, name: str) -> int:
        vm = self._vm(name)
        return int(time.time() - vm.started_at) if vm.started_at else 0

    # -- serial console ------------------------------------------------------------

    def _console_boot(self, vm: Vm, what: str) -> None:
        stamp = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())
        lines = [f'[{stamp}] {vm.name}: {what} (generation {vm.generation}, '
                 f'{vm.processor_count} vCPU, {vm.memory_startup_mb} MB)']
        if what != 'restored from saved state':
            if vm.generation == 1:
                device = vm.boot_order[0] if vm.boot_order else 'IDE'
                lines.append(f'BIOS: boot order {", ".join(vm.boot_order)}; booting from '
                             f'{device}')
            else:
                lines.append(f'UEFI: secure boot {"on" if vm.secure_boot else "off"}; booting '
                             f'from {vm.first_boot_device or "the first boot entry"}')
            lines.append('Loading operating system ...')
            lines.append(f'{vm.name} login: ')
        self._console_append(vm, '\n'.join(lines))

    def _console_append(self, vm: Vm, text: str) -> None:
        # The guest's console is COM1; with no pipe attached its output goes nowhere.
        pipe = vm.com_ports.get('COM1')
        if not pipe:
            return
        vm.console_log.extend(text.splitlines() or [''])
        if len(vm.console_log) > CONSOLE_LOG_LINES:
            del vm.console_log[:-CONSOLE_LOG_LINES]
        # The pipe exists while the VM runs; a logger reading it copies the bytes.
        logger = self._state.console_loggers.get(vm.id.lower())
        if vm.state in ACTIVE_STATES and logger is not None \
                and logger.pipe_path.lower() == pipe.lower() and self._logger_alive(logger):
            self._logger_write(logger, (text + '\n').encode('utf-8'))

    # -- console loggers (Start-InstanceConsoleLogger) -------------------------------

    def _logger_alive(self, logger: ConsoleLogger) -> bool:
        """A logger exits when its VM is gone or the folder of its log was removed."""
        folder = paths.parent(paths.normalize(logger.log_path))
        entry = self._entry(folder) if folder else None
        if entry is None or not entry.is_dir:
            return False
        return any(vm.id.lower() == logger.vm_id for vm in self._state.vms.values())

    def _logger_write(self, logger: ConsoleLogger, data: bytes) -> None:
        """Append as the logger does: chunk by chunk, rotating to ``.1`` past the cap."""
        log = paths.normalize(logger.log_path)
        archive = log + '.1'
        for start in range(0, len(data), CONSOLE_CHUNK):
            chunk = data[start:start + CONSOLE_CHUNK]
            try:
                entry = self._entry(log)
                if entry is not None and entry.size > 0 and \
                        entry.size + len(chunk) > logger.max_log_bytes:
                    if self._entry(archive) is not None:
                        self.remove_item(archive)
                    self.move_file(log, archive)
                self.append_file(log, chunk)
            except SimError:
                return      # the real logger waits and retries; this output is lost

    @reads
    def console_logger(self, name: str) -> ConsoleLogger | None:
        """The running console logger of a VM, if any."""
        vm = self._vm(name)
        logger = self._state.console_loggers.get(vm.id.lower())
        return logger if logger is not None and self._logger_alive(logger) else None

    @writes
    def start_console_logger(self, name: str, log_path: str, pipe_path: str,
                             max_log_bytes: int) -> ConsoleLogger:
        """Launch a logger process for a VM (replacing one that exited)."""
        vm = self._vm(name)
        key = vm.id.lower()
        current = self._state.console_loggers.get(key)
        if current is not None and self._logger_alive(current):
            raise SimError(f"A console logger of '{vm.name}' is already running (process "
                           f'{current.pid}).', 'ResourceExists', 'ConsoleLoggerRunning',
                           target=vm.name)
        for stale in [k for k, lg in self._state.console_loggers.items()
                      if not self._logger_alive(lg)]:
            del self._state.console_loggers[stale]
        self._state.next_pid += 4
        logger = ConsoleLogger(vm_id=key, pipe_path=pipe_path, log_path=log_path,
                               max_log_bytes=max_log_bytes, pid=self._state.next_pid,
                               started=time.time())
        self._state.console_loggers[key] = logger
        return logger

    @writes
    def stop_console_logger(self, name: str) -> bool:
        """Signal a VM's logger to stop; whether one was running."""
        vm = self._vm(name)
        logger = self._state.console_loggers.pop(vm.id.lower(), None)
        return logger is not None and self._logger_alive(logger)

    @writes
    def write_console(self, name: str, text: str) -> Vm:
        """The guest writes ``text`` to its serial console (kept if COM1 has a pipe)."""
        vm = self._vm(name)
        self._console_append(vm, text)
        return vm

    @reads
    def console_output(self, name: str) -> str:
        return '\n'.join(self._vm(name).console_log)

    @writes
    def set_com_port(self, name: str, port: str, pipe_path: str) -> Vm:
        """``Set-VMComPort``: COM1/COM2 to a named pipe (``\\\\.\\pipe\\...``) or ``''``."""
        vm = self._vm(name)
        number = port.upper() if isinstance(port, str) else port
        if number in (1, 2):
            number = f'COM{number}'
        if number not in ('COM1', 'COM2'):
            raise invalid_argument(f"'{port}' is not a COM port of a virtual machine; use "
                                   'COM1 or COM2.', vm.name)
        if pipe_path and not pipe_path.lower().startswith('\\\\.\\pipe\\'):
            raise invalid_argument(f"'{pipe_path}' is not a named pipe path "
                                   "('\\\\.\\pipe\\<name>').", vm.name)
        vm.com_ports[number] = pipe_path or ''
        return vm
