"""VM devices: disk and DVD drives on IDE/SCSI slots, network adapters, checkpoints.

Slot limits are Hyper-V's: generation 1 VMs have two IDE controllers with
two locations each (the boot disk lives there) and no hot-plug on IDE;
generation 2 VMs have no IDE at all.  Every VM can have up to four SCSI
controllers of 64 locations.  Hardware changes need the VM Off, except
what Hyper-V hot-plugs on a running VM: SCSI disks, DVD media, and
network adapters of generation 2 VMs.
"""

from __future__ import annotations

import re
import time
import uuid

from psdriver.sim import paths
from psdriver.sim.errors import SimError, file_in_use, invalid_argument, invalid_state
from psdriver.sim.state import Drive, NetworkAdapter, Snapshot, Vm
from psdriver.sim.storage import ACTIVE_STATES, EMPTY_VHD_FILE
from psdriver.sim.txn import reads, writes
from psdriver.sim.vms import VmRules

IDE_CONTROLLERS = 2
IDE_LOCATIONS = 2
MAX_SCSI_CONTROLLERS = 4
SCSI_LOCATIONS = 64
MAX_NICS = 8
BIOS_DEVICES = ('CD', 'IDE', 'LegacyNetworkAdapter', 'Floppy')
_MAC = re.compile(r'^[0-9A-Fa-f]{12}$')
_SNAPSHOT_SUFFIX = re.compile(r'_[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-'
                              r'[0-9A-Fa-f]{12}$')


def slot_name(drive: Drive) -> str:
    return f'{drive.controller_type}:{drive.controller_number}:{drive.location}'


def normalize_mac(mac: str) -> str:
    bare = mac.replace('-', '').replace(':', '') if isinstance(mac, str) else ''
    if not _MAC.match(bare):
        raise invalid_argument(f"'{mac}' is not a valid MAC address.", str(mac))
    if int(bare[:2], 16) & 1:
        raise invalid_argument(f"'{mac}' is a multicast MAC address; a network adapter needs "
                               'a unicast one.', mac)
    return bare.upper()


class DeviceRules(VmRules):

    # -- controller slots ---------------------------------------------------------

    def _check_hardware_change(self, vm: Vm, hot_pluggable: bool, action: str) -> None:
        if vm.state == 'Off' or (hot_pluggable and vm.state == 'Running'):
            return
        raise invalid_state(vm.name, vm.state, action)

    def _controller_limits(self, vm: Vm, ctype: str) -> tuple[int, int]:
        if ctype == 'IDE':
            if vm.generation != 1:
                raise invalid_argument(
                    f"'{vm.name}' is a generation 2 virtual machine: it has no IDE controller.",
                    vm.name)
            return IDE_CONTROLLERS, IDE_LOCATIONS
        if ctype == 'SCSI':
            return vm.scsi_controllers, SCSI_LOCATIONS
        raise invalid_argument(f"'{ctype}' is not a controller type; use IDE or SCSI.",
                               vm.name)

    def _pick_slot(self, vm: Vm, ctype: str, number: int | None,
                   location: int | None) -> tuple[int, int]:
        controllers, locations = self._controller_limits(vm, ctype)
        used = {(d.controller_number, d.location) for d in vm.drives
                if d.controller_type == ctype}
        if number is not None and not (isinstance(number, int) and 0 <= number < controllers):
            raise SimError(f"'{vm.name}' has no {ctype} controller number {number!r} (it has "
                           f'{controllers}).', 'ObjectNotFound', 'ControllerNotFound',
                           target=vm.name)
        if location is not None and not (isinstance(location, int)
                                         and 0 <= location < locations):
            raise invalid_argument(f'{ctype} controller location {location!r} is out of range '
                                   f'(0-{locations - 1}).', vm.name)
        if number is not None and location is not None:
            if (number, location) in used:
                raise SimError(f"{ctype} controller location {number}:{location} of "
                               f"'{vm.name}' is already in use.", 'ResourceExists',
                               'LocationInUse', target=vm.name)
            return number, location
        for n in ([number] if number is not None else range(controllers)):
            for loc in ([location] if location is not None else range(locations)):
                if (n, loc) not in used:
                    return n, loc
        raise SimError(f"No free location is left on the {ctype} controllers of "
                       f"'{vm.name}'.", 'LimitsExceeded', 'NoFreeLocation', target=vm.name)

    @writes
    def add_scsi_controller(self, name: str) -> int:
        """``Add-VMScsiController`` (VM Off, at most 4); returns the new controller number."""
        vm = self._vm(name)
        self._check_hardware_change(vm, False, 'add a SCSI controller')
        if vm.scsi_controllers >= MAX_SCSI_CONTROLLERS:
            raise SimError(f"'{vm.name}' already has the maximum of {MAX_SCSI_CONTROLLERS} SCSI "
                           'controllers.', 'LimitsExceeded', 'TooManyControllers',
                           target=vm.name)
        vm.scsi_controllers += 1
        return vm.scsi_controllers - 1

    def _drive(self, vm: Vm, ctype: str, number: int, location: int) -> Drive:
        for drive in vm.drives:
            if (drive.controller_type, drive.controller_number, drive.location) == \
                    (ctype, number, location):
                return drive
        raise SimError(f"'{vm.name}' has no drive at {ctype} {number}:{location}.",
                       'ObjectNotFound', 'DriveNotFound', target=vm.name)

    @reads
    def find_drive(self, name: str, path: str) -> Drive | None:
        """The drive of VM ``name`` holding ``path`` (disk or ISO), if any."""
        vm = self._vm(name)
        k = paths.key(paths.normalize(path))
        return next((d for d in vm.drives if d.path and paths.key(d.path) == k), None)

    # -- hard disks ------------------------------------------------------------------

    @writes
    def attach_disk(self, name: str, path: str | None = None, *,
                    disk_number: int | None = None, controller_type: str | None = None,
                    controller_number: int | None = None,
                    location: int | None = None) -> Drive:
        """``Add-VMHardDiskDrive``: a VHD/VHDX ``path`` or a pass-through ``disk_number``.

        The default controller is IDE on generation 1 (the boot disk) and
        SCSI on generation 2; without a slot the first free one is taken.
        """
        vm = self._vm(name)
        ctype = controller_type or ('IDE' if vm.generation == 1 else 'SCSI')
        self._controller_limits(vm, ctype)
        self._check_hardware_change(vm, ctype == 'SCSI', 'add a hard disk drive')
        if (path is None) == (disk_number is None):
            raise invalid_argument('Give either a virtual hard disk path or a physical disk '
                                   'number.', vm.name)
        norm = None
        if path is not None:
            if self.smb_access_denied(path):
                raise SimError(f"'{vm.name}' failed to add device 'Virtual Hard Disk': General "
                               f"access denied error ('{path}'). The share wants credentials "
                               'the host has no SMB global mapping for.', 'PermissionDenied',
                               'AccessDenied', target=path)
            norm = self._require_vhd(paths.normalize(path)).path
            k = paths.key(norm)
            if any(d.path and paths.key(d.path) == k for d in vm.drives):
                raise file_in_use(norm)
            if vm.state in ACTIVE_STATES:
                holder = self._open_files(exclude_vm=vm.name.lower()).get(k)
                if holder is not None:
                    raise file_in_use(norm)
        else:
            disk = self._find_disk(disk_number)
            if disk is None:
                raise SimError(f'No physical disk with number {disk_number!r} exists.',
                               'ObjectNotFound', 'DiskNotFound', target=str(disk_number))
            if not disk.is_offline:
                raise SimError(f'Physical disk {disk_number} must be offline to be attached '
                               'to a virtual machine as a pass-through disk.',
                               'InvalidOperation', 'DiskOnline', target=str(disk_number))
            for other in self._state.vms.values():
                if any(d.disk_number == disk_number for d in other.drives):
                    raise SimError(f"Physical disk {disk_number} is already attached to "
                                   f"'{other.name}'.", 'ResourceBusy', 'DiskInUse',
                                   target=str(disk_number))
        number, loc = self._pick_slot(vm, ctype, controller_number, location)
        drive = Drive(ctype, number, loc, 'HardDisk', path=norm, disk_number=disk_number)
        vm.drives.append(drive)
        return drive

    @writes
    def detach_drive(self, name: str, controller_type: str, controller_number: int,
                     location: int) -> Drive:
        """``Remove-VMHardDiskDrive`` / ``Remove-VMDvdDrive`` by slot."""
        vm = self._vm(name)
        drive = self._drive(vm, controller_type, controller_number, location)
        hot = controller_type == 'SCSI' and drive.kind == 'HardDisk'
        self._check_hardware_change(vm, hot, f'remove the drive at {slot_name(drive)}')
        vm.drives.remove(drive)
        if vm.first_boot_device == slot_name(drive):
            vm.first_boot_device = None     # its boot entry goes with it
        return drive

    @writes
    def set_drive_max_iops(self, name: str, controller_type: str, controller_number: int,
                           location: int, max_iops: int) -> Drive:
        """``Set-VMHardDiskDrive -MaximumIOPS``: virtual hard disks only."""
        vm = self._vm(name)
        drive = self._drive(vm, controller_type, controller_number, location)
        if drive.kind != 'HardDisk' or drive.path is None:
            raise invalid_argument('Storage QoS applies to virtual hard disks only, not to '
                                   'pass-through disks.', vm.name)
        if not isinstance(max_iops, int) or max_iops < 0:
            raise invalid_argument(f'MaximumIOPS {max_iops!r} is not valid.', vm.name)
        drive.max_iops = max_iops
        return drive

    # -- boot order -------------------------------------------------------------------

    @writes
    def set_boot_order(self, name: str, order: list[str]) -> Vm:
        """``Set-VMBios -StartupOrder`` (generation 1, VM Off): each device class once."""
        vm = self._vm(name)
        if vm.generation != 1:
            raise invalid_argument(f"'{vm.name}' is a generation 2 virtual machine; use "
                                   'Set-VMFirmware for its boot order.', vm.name)
        self._check_hardware_change(vm, False, 'modify the BIOS')
        if sorted(order) != sorted(BIOS_DEVICES):
            raise invalid_argument(f"The startup order must list {', '.join(BIOS_DEVICES)} "
                                   'once each.', vm.name)
        vm.boot_order = list(order)
        return vm

    @writes
    def set_first_boot_device(self, name: str, controller_type: str, controller_number: int,
                              location: int) -> Vm:
        """``Set-VMFirmware -FirstBootDevice`` (generation 2, VM Off): a drive's slot."""
        vm = self._vm(name)
        if vm.generation != 2:
            raise invalid_argument(f"'{vm.name}' is a generation 1 virtual machine; use "
                                   'Set-VMBios for its boot order.', vm.name)
        self._check_hardware_change(vm, False, 'modify firmware')
        drive = self._drive(vm, controller_type, controller_number, location)
        vm.first_boot_device = slot_name(drive)
        return vm

    # -- DVD drives -----------------------------------------------------------------

    def _require_iso(self, path: str) -> str:
        entry = self._require(paths.normalize(path))
        if entry.is_dir:
            raise invalid_argument(f"'{entry.path}' is a folder, not an ISO image.", entry.path)
        return entry.path

    @writes
    def add_dvd_drive(self, name: str, path: str | None = None, *,
                      controller_number: int | None = None,
                      location: int | None = None) -> Drive:
        """``Add-VMDvdDrive`` (VM Off): IDE on generation 1, SCSI on generation 2."""
        vm = self._vm(name)
        ctype = 'IDE' if vm.generation == 1 else 'SCSI'
        self._check_hardware_change(vm, False, 'add a DVD drive')
        iso = self._require_iso(path) if path else None
        number, loc = self._pick_slot(vm, ctype, controller_number, location)
        drive = Drive(ctype, number, loc, 'DvdDrive', path=iso)
        vm.drives.append(drive)
        return drive

    @writes
    def set_dvd_media(self, name: str, controller_number: int, location: int,
                      path: str | None) -> Drive:
        """``Set-VMDvdDrive -Path``: insert or eject media (allowed while running)."""
        vm = self._vm(name)
        ctype = 'IDE' if vm.generation == 1 else 'SCSI'
        drive = self._drive(vm, ctype, controller_number, location)
        if drive.kind != 'DvdDrive':
            raise invalid_argument(f'The drive at {slot_name(drive)} is not a DVD drive.',
                                   vm.name)
        drive.path = self._require_iso(path) if path else None
        return drive

    # -- network adapters --------------------------------------------------------------

    def _nic(self, vm: Vm, ref: str) -> NetworkAdapter:
        for nic in vm.nics:
            if nic.id.lower() == str(ref).lower():
                return nic
        named = [nic for nic in vm.nics if nic.name.lower() == str(ref).lower()]
        if len(named) == 1:
            return named[0]
        if not named:
            raise SimError(f"'{vm.name}' has no network adapter named \"{ref}\".",
                           'ObjectNotFound', 'PsDriver.NicNotFound', target=vm.name)
        raise invalid_argument(f"'{vm.name}' has {len(named)} network adapters named "
                               f'"{ref}"; use the adapter id.', vm.name)

    @writes
    def add_nic(self, name: str, nic_name: str = 'Network Adapter', *,
                switch_name: str | None = None, mac: str | None = None) -> NetworkAdapter:
        """``Add-VMNetworkAdapter``: at most 8; hot-add only on running generation 2 VMs."""
        vm = self._vm(name)
        self._check_hardware_change(vm, vm.generation == 2, 'add a network adapter')
        if len(vm.nics) >= MAX_NICS:
            raise SimError(f"'{vm.name}' already has the maximum of {MAX_NICS} network "
                           'adapters.', 'LimitsExceeded', 'TooManyNics', target=vm.name)
        switch = self._switch(switch_name).name if switch_name else None
        nic = NetworkAdapter(id=f'Microsoft:{vm.id.upper()}\\{str(uuid.uuid4()).upper()}',
                             name=nic_name, switch_name=switch)
        if mac is not None:
            nic.mac_address, nic.dynamic_mac = normalize_mac(mac), False
        elif vm.state in ACTIVE_STATES:
            nic.mac_address = self._next_mac()
        vm.nics.append(nic)
        return nic

    @writes
    def remove_nic(self, name: str, nic: str) -> NetworkAdapter:
        vm = self._vm(name)
        adapter = self._nic(vm, nic)
        self._check_hardware_change(vm, vm.generation == 2, 'remove a network adapter')
        vm.nics.remove(adapter)
        return adapter

    @writes
    def connect_nic(self, name: str, nic: str, switch_name: str | None) -> NetworkAdapter:
        """``Connect-VMNetworkAdapter`` / ``Disconnect-VMNetworkAdapter`` (``None``)."""
        vm = self._vm(name)
        adapter = self._nic(vm, nic)
        adapter.switch_name = self._switch(switch_name).name if switch_name else None
        return adapter

    @writes
    def set_nic_vlan(self, name: str, nic: str, vlan_id: int | None) -> NetworkAdapter:
        """``Set-VMNetworkAdapterVlan -Access -VlanId`` (1-4094) or ``-Untagged`` (None)."""
        vm = self._vm(name)
        adapter = self._nic(vm, nic)
        if vlan_id is not None and not (isinstance(vlan_id, int) and 1 <= vlan_id <= 4094):
            raise invalid_argument(f'VLAN id {vlan_id!r} is out of range (1-4094).', vm.name)
        adapter.vlan_id = vlan_id
        return adapter

    @writes
    def set_nic_mac(self, name: str, nic: str, mac: str | None) -> NetworkAdapter:
        """Static MAC (``mac``) or back to dynamic (``None``); the VM must be Off."""
        vm = self._vm(name)
        adapter = self._nic(vm, nic)
        if vm.state != 'Off':
            raise invalid_state(vm.name, vm.state, 'change a MAC address')
        if mac is None:
            adapter.mac_address, adapter.dynamic_mac = '000000000000', True
        else:
            adapter.mac_address, adapter.dynamic_mac = normalize_mac(mac), False
        return adapter

    # -- checkpoints -----------------------------------------------------------------

    def _snapshot(self, vm: Vm, ref: str) -> Snapshot:
        for snap in vm.snapshots:
            if snap.id.lower() == str(ref).lower():
                return snap
        named = [s for s in vm.snapshots if s.name.lower() == str(ref).lower()]
        if named:
            return named[-1]
        raise SimError(f"Hyper-V was unable to find a checkpoint named \"{ref}\" of virtual "
                       f"machine '{vm.name}'.", 'ObjectNotFound', 'PsDriver.SnapshotNotFound',
                       target=vm.name)

    @reads
    def list_snapshots(self, name: str) -> list[Snapshot]:
        return list(self._vm(name).snapshots)

    def _avhd_path(self, path: str, snap_id: str) -> str:
        folder = paths.parent(path)
        base = paths.basename(path)
        stem, ext = base.rsplit('.', 1)
        stem = _SNAPSHOT_SUFFIX.sub('', stem)
        new_ext = 'avhdx' if ext.lower() in ('vhdx', 'avhdx') else 'avhd'
        return paths.join(folder, f'{stem}_{snap_id.upper()}.{new_ext}')

    @writes
    def checkpoint_vm(self, name: str, snapshot_name: str | None = None) -> Snapshot:
        """``Checkpoint-VM``: each virtual disk gets a new ``.avhdx`` child to write to."""
        vm = self._vm(name)
        if vm.state in ('Starting', 'Stopping'):
            raise invalid_state(vm.name, vm.state, 'create a checkpoint')
        if any(d.disk_number is not None for d in vm.drives):
            raise SimError(f"Cannot create a checkpoint of '{vm.name}': it has pass-through "
                           'disks.', 'InvalidOperation', 'PassThroughDisk', target=vm.name)
        disks = [d for d in vm.drives if d.kind == 'HardDisk' and d.path]
        by_volume: dict[str, int] = {}
        for d in disks:
            fmt = self._require_vhd(d.path).vhd.format
            root = self._volume_key(d.path)
            by_volume[root] = by_volume.get(root, 0) + EMPTY_VHD_FILE[fmt]
        for d in disks:
            self._require_room(d.path, by_volume[self._volume_key(d.path)])
        snap_id = str(uuid.uuid4())
        snap = Snapshot(id=snap_id, name=snapshot_name or
                        f'{vm.name} - ({time.strftime("%m/%d/%Y - %H:%M:%S")})',
                        parent_id=vm.current_snapshot_id, created=time.time(),
                        processor_count=vm.processor_count,
                        memory_startup_mb=vm.memory_startup_mb, notes=vm.notes)
        for d in disks:
            child = self.new_vhd(self._avhd_path(d.path, snap_id), parent_path=d.path)
            snap.disks[slot_name(d)] = d.path
            d.path = child.path
        vm.snapshots.append(snap)
        vm.current_snapshot_id = snap_id
        return snap

    @writes
    def remove_snapshot(self, name: str, snapshot: str) -> None:
        """``Remove-VMSnapshot``: the checkpoint's disks merge back (online merge is fine).

        A frozen disk with exactly one differencing child absorbs that child;
        after branching (several children) only the checkpoint record goes.
        """
        vm = self._vm(name)
        snap = self._snapshot(vm, snapshot)
        for frozen in snap.disks.values():
            parent = self._entry(frozen)
            if parent is None or parent.vhd is None:
                continue
            children = self.vhd_children(parent.path)
            still_frozen = any(paths.key(p) == paths.key(parent.path)
                               for other in vm.snapshots if other is not snap
                               for p in other.disks.values())
            if len(children) == 1 and not still_frozen:
                self._merge_into_parent(children[0], parent)
        for other in vm.snapshots:
            if other.parent_id == snap.id:
                other.parent_id = snap.parent_id
        if vm.current_snapshot_id == snap.id:
            vm.current_snapshot_id = snap.parent_id
        vm.snapshots.remove(snap)

    @writes
    def restore_snapshot(self, name: str, snapshot: str) -> Vm:
        """``Restore-VMSnapshot``: VM Off or Saved; disks restart from the frozen state."""
        vm = self._vm(name)
        snap = self._snapshot(vm, snapshot)
        if vm.state not in ('Off', 'Saved'):
            raise invalid_state(vm.name, vm.state, 'apply a checkpoint')
        frozen_keys = {paths.key(p) for s in vm.snapshots for p in s.disks.values()}
        for drive in vm.drives:
            frozen = snap.disks.get(slot_name(drive))
            if drive.kind != 'HardDisk' or frozen is None:
                continue
            current = self._entry(drive.path) if drive.path else None
            if (current is not None and current.vhd
                    and current.vhd.vhd_type == 'Differencing'
                    and paths.key(current.path) not in frozen_keys
                    and not self.vhd_children(current.path)):
                self._allocate(current.path, -current.size)
                del self._state.files[paths.key(current.path)]
            drive.path = self.new_vhd(self._avhd_path(frozen, str(uuid.uuid4())),
                                      parent_path=frozen).path
        self._drop_saved_state(vm)
        vm.processor_count = snap.processor_count
        vm.memory_startup_mb = snap.memory_startup_mb
        vm.current_snapshot_id = snap.id
        vm.state = 'Off'
        vm.started_at = None
        return vm
