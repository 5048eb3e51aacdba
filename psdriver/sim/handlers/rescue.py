"""Set-InstanceRescue and Remove-InstanceRescue: boot from a rescue disk and back.

Set-InstanceRescue first makes the rescue disk (a differencing disk over
RescueImagePath) and writes the rescue config drive (ConfigDriveBase64)
when it is given their sources.  The drive moves follow the scripts step
by step (turn off, detach the root
disk, rescue disk into its slot, root disk to the first free SCSI location,
config drive swap, first boot device, start) on the host's device rules,
which refuse what Hyper-V refuses.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from psdriver.sim import paths
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.devices import IDE_CONTROLLERS, IDE_LOCATIONS, SCSI_LOCATIONS
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import (
    dvd_drives, extension, hard_disks, is_file, not_empty, same_path, script_error,
    target_vm)
from psdriver.sim.state import Drive, Vm


@dataclass(frozen=True)
class Slot:
    controller_type: str
    number: int
    location: int


def _slot(drive: Drive) -> Slot:
    return Slot(drive.controller_type, drive.controller_number, drive.location)


def attached(vm: Vm) -> list[Drive]:
    """``Get-PsDriverAttachedDrive``: hard disks, then DVD drives."""
    return hard_disks(vm) + dvd_drives(vm)


def find_by_path(vm: Vm, path: str | None) -> Drive | None:
    return next((d for d in attached(vm) if same_path(d.path, path)), None)


def find_at(vm: Vm, slot: Slot) -> Drive | None:
    return next((d for d in attached(vm) if _slot(d) == slot), None)


def free_slot(host: SimHost, vm: Vm, controller_type: str) -> Slot:
    """``Get-PsDriverFreeDriveSlot``: the first free IDE or SCSI slot (a SCSI controller added)."""
    used = {_slot(d) for d in vm.drives}
    if controller_type == 'IDE':
        for number in range(IDE_CONTROLLERS):
            for location in range(IDE_LOCATIONS):
                if Slot('IDE', number, location) not in used:
                    return Slot('IDE', number, location)
    else:
        if vm.scsi_controllers == 0:
            host.add_scsi_controller(vm.name)
        for number in range(vm.scsi_controllers):
            for location in range(SCSI_LOCATIONS):
                if Slot('SCSI', number, location) not in used:
                    return Slot('SCSI', number, location)
    raise script_error(f"Virtual machine '{vm.name}' has no free {controller_type} controller "
                       'slot.', 'LimitsExceeded', 'PsDriver.NoFreeControllerSlot', vm.name)


def detach(host: SimHost, vm: Vm, drive: Drive) -> None:
    host.detach_drive(vm.name, drive.controller_type, drive.controller_number, drive.location)


def attach_disk(host: SimHost, vm: Vm, slot: Slot, path: str) -> None:
    host.attach_disk(vm.name, path, controller_type=slot.controller_type,
                     controller_number=slot.number, location=slot.location)


def mount_config_drive(host: SimHost, vm: Vm, path: str, preferred: Slot | None) -> None:
    """``Mount-PsDriverConfigDrive``: .iso as DVD, else hard disk; the preferred slot first."""
    is_iso = extension(path) == '.iso'
    slot_type = 'SCSI'
    if vm.generation == 1:
        slot_type = 'IDE'
        if preferred is None or (is_iso and preferred.controller_type != 'IDE'):
            preferred = Slot('IDE', 1, 0)
    slot = None
    if preferred is not None:
        occupant = find_at(vm, preferred)
        if occupant is None:
            slot = preferred
        elif is_iso and occupant.kind == 'DvdDrive' and not occupant.path:
            host.set_dvd_media(vm.name, occupant.controller_number, occupant.location, path)
            return
    if slot is None:
        slot = free_slot(host, vm, slot_type)
    if is_iso:
        host.add_dvd_drive(vm.name, path, controller_number=slot.number,
                           location=slot.location)
    else:
        attach_disk(host, vm, slot, path)


def stop_target(host: SimHost, vm: Vm) -> None:
    """``Stop-PsDriverVM``: hard off; a saved state is discarded."""
    if vm.state == 'Off':
        return
    if vm.state == 'Saved':
        host.remove_saved_state(vm.name)
    else:
        host.stop_vm(vm.name, turn_off=True)


def start_target(host: SimHost, vm: Vm) -> None:
    """``Start-PsDriverVM``."""
    if vm.state == 'Paused':
        host.resume_vm(vm.name)
    elif vm.state in ('Off', 'Saved'):
        host.start_vm(vm.name)


def layout(vm: Vm) -> list[dict[str, Any]]:
    """``Get-PsDriverDriveLayout`` of every hard disk and DVD drive."""
    return [{'kind': d.kind, 'path': d.path or None, 'controller_type': d.controller_type,
             'controller_number': d.controller_number, 'controller_location': d.location}
            for d in attached(vm)]


def _result(host: SimHost, vm: Vm, rescue_path: str, root_path: str | None,
            config_path: str | None) -> dict[str, Any]:
    rescued = find_by_path(vm, rescue_path) is not None
    config = config_path if config_path and find_by_path(vm, config_path) else None
    return {'name': vm.name, 'state': vm.state, 'generation': vm.generation,
            'rescued': rescued, 'boot_disk_path': rescue_path if rescued else root_path,
            'root_disk_path': root_path or None,
            'rescue_disk_path': rescue_path if rescued else None,
            'config_drive_path': config, 'devices': layout(vm)}


def _first_boot(host: SimHost, vm: Vm, path: str) -> None:
    drive = find_by_path(vm, path)
    if vm.generation != 1 and drive is not None:
        host.set_first_boot_device(vm.name, drive.controller_type, drive.controller_number,
                                   drive.location)


# -- Set-InstanceRescue -----------------------------------------------------------------

@handler('Set-InstanceRescue')
def set_rescue(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Set-InstanceRescue'
    vm = target_vm(host, not_empty(script, params, 'Name'))
    rescue_path = not_empty(script, params, 'RescueDiskPath')
    root_param = params.get('RootDiskPath') or None
    config_path = params.get('ConfigDrivePath') or None
    original_path = params.get('OriginalConfigDrivePath') or None
    image_path = params.get('RescueImagePath') or None
    config_base64 = params.get('ConfigDriveBase64') or None
    boot_type = 'IDE' if vm.generation == 1 else 'SCSI'
    make_rescue_disk = not is_file(host, rescue_path)
    if make_rescue_disk and not image_path:
        raise script_error(f"Rescue disk '{rescue_path}' does not exist.", 'ObjectNotFound',
                           'PsDriver.RescueDiskNotFound', rescue_path)
    if make_rescue_disk and not is_file(host, image_path):
        raise script_error(f"Rescue image '{image_path}' does not exist.", 'ObjectNotFound',
                           'PsDriver.RescueImageNotFound', image_path)
    config_bytes = None
    if config_base64:
        if not config_path:
            raise script_error('ConfigDriveBase64 needs ConfigDrivePath, where the rescue '
                               'config drive is written.', 'InvalidArgument',
                               'PsDriver.InvalidConfigDrive', 'ConfigDrivePath')
        try:
            config_bytes = base64.b64decode(config_base64, validate=True)
        except (binascii.Error, ValueError):
            raise script_error('ConfigDriveBase64 is not valid base64.', 'InvalidArgument',
                               'PsDriver.InvalidConfigDrive', 'ConfigDriveBase64') from None
    if vm.generation != 1 and extension(rescue_path) != '.vhdx':
        raise script_error(f"Virtual machine '{vm.name}' is generation {vm.generation} and "
                           f"boots only from a VHDX disk; '{rescue_path}' is not one.",
                           'InvalidArgument', 'PsDriver.RescueImageUnacceptable', rescue_path)
    if config_bytes is None and config_path and not is_file(host, config_path):
        raise script_error(f"Config drive '{config_path}' does not exist.", 'ObjectNotFound',
                           'PsDriver.ConfigDriveNotFound', config_path)
    already = find_by_path(vm, rescue_path)
    root_path = root_param
    root = None
    if already is None:
        root = find_by_path(vm, root_param) if root_param else \
            find_at(vm, Slot(boot_type, 0, 0))
        if root is None or root.kind != 'HardDisk' or root.disk_number is not None \
                or not root.path:
            raise script_error(f"Virtual machine '{vm.name}' has no virtual root disk to "
                               'rescue; rescuing an instance booted from a volume is not '
                               'supported.', 'InvalidOperation',
                               'PsDriver.InstanceNotRescuable', vm.name)
        root_path = root.path
    if already is None and root is not None:
        if make_rescue_disk:
            host.new_vhd(rescue_path, parent_path=image_path)
        if config_bytes is not None:
            host.write_file(config_path, config_bytes)
        stop_target(host, vm)
        root_slot = _slot(root)
        detach(host, vm, root)
        attach_disk(host, vm, root_slot, rescue_path)
        attach_disk(host, vm, free_slot(host, vm, 'SCSI'), root_path)
        if config_path:
            preferred = None
            original = find_by_path(vm, original_path) if original_path else None
            if original is not None:
                preferred = _slot(original)
                detach(host, vm, original)
            if find_by_path(vm, config_path) is None:
                mount_config_drive(host, vm, config_path, preferred)
        _first_boot(host, vm, rescue_path)
    start_target(host, vm)
    return _result(host, vm, rescue_path, root_path, config_path)


@prepare('Set-InstanceRescue')
def _rescue_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """A running instance with its config drive, the rescue disk and rescue config drive."""
    from psdriver.sim.scenario import add_image, add_instance
    add_instance(host, params['Name'], config_drive=True)
    if params.get('RescueImagePath'):
        add_image(host, params['RescueImagePath'])
    else:
        image = add_image(host, paths.join(host.config.instances_path, '_base', 'rescue.vhdx'))
        host.new_vhd(params['RescueDiskPath'], parent_path=image)
    if params.get('ConfigDrivePath') and not params.get('ConfigDriveBase64'):
        host.add_file(params['ConfigDrivePath'], 64 * 1024)


# -- Remove-InstanceRescue ----------------------------------------------------------------

def _find_root(vm: Vm, root_param: str | None, rescue_path: str) -> Drive | None:
    """``Find-RootDrive``: RootDiskPath, else the disk named root.vhd or root.vhdx."""
    if root_param:
        return find_by_path(vm, root_param)
    candidates = [d for d in attached(vm)
                  if d.kind == 'HardDisk' and d.path and not same_path(d.path, rescue_path)
                  and paths.basename(d.path).lower() in ('root.vhd', 'root.vhdx')]
    if len(candidates) > 1:
        raise script_error(f"Virtual machine '{vm.name}' has {len(candidates)} disks named "
                           'root.vhd or root.vhdx; pass RootDiskPath.', 'InvalidArgument',
                           'PsDriver.RootDiskAmbiguous', vm.name)
    return candidates[0] if candidates else None


@handler('Remove-InstanceRescue')
def remove_rescue(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Remove-InstanceRescue'
    vm = target_vm(host, not_empty(script, params, 'Name'))
    rescue_path = not_empty(script, params, 'RescueDiskPath')
    root_param = params.get('RootDiskPath') or None
    rescue_config = params.get('RescueConfigDrivePath') or None
    config_path = params.get('ConfigDrivePath') or None
    boot = Slot('IDE' if vm.generation == 1 else 'SCSI', 0, 0)
    root = _find_root(vm, root_param, rescue_path)
    if root is None:
        if not root_param or not is_file(host, root_param):
            raise script_error(f"The root disk of virtual machine '{vm.name}' was not found; "
                               'the instance cannot be unrescued.', 'ObjectNotFound',
                               'PsDriver.RootDiskNotFound', vm.name)
        root_path = root_param
    else:
        root_path = root.path

    stop_target(host, vm)
    rescue = find_by_path(vm, rescue_path)
    if rescue is not None:
        detach(host, vm, rescue)
    if root is None or _slot(root) != boot:
        occupant = find_at(vm, boot)
        if occupant is not None:
            raise script_error(f'The boot slot {boot.controller_type} 0:0 of virtual machine '
                               f"'{vm.name}' holds '{occupant.path}', not the root disk.",
                               'InvalidOperation', 'PsDriver.BootSlotOccupied', vm.name)
        if root is not None:
            detach(host, vm, root)
        attach_disk(host, vm, boot, root_path)
    preferred = None
    if rescue_config:
        current = find_by_path(vm, rescue_config)
        if current is not None:
            preferred = _slot(current)
            detach(host, vm, current)
    if config_path and find_by_path(vm, config_path) is None and is_file(host, config_path):
        mount_config_drive(host, vm, config_path, preferred)
    _first_boot(host, vm, root_path)
    for leftover in (rescue_path, rescue_config):
        if leftover and is_file(host, leftover):
            host.remove_item(leftover)
    start_target(host, vm)
    result = _result(host, vm, rescue_path, root_path, config_path)
    return result


@prepare('Remove-InstanceRescue')
def _unrescue_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The instance in rescue mode, as Set-InstanceRescue left it."""
    from psdriver.sim.scenario import add_image, add_instance
    name = params['Name']
    add_instance(host, name, config_drive=True)
    image = add_image(host, paths.join(host.config.instances_path, '_base', 'rescue.vhdx'))
    host.new_vhd(params['RescueDiskPath'], parent_path=image)
    rescue = {'Name': name, 'RescueDiskPath': params['RescueDiskPath']}
    if params.get('RescueConfigDrivePath'):
        host.add_file(params['RescueConfigDrivePath'], 64 * 1024)
        rescue['ConfigDrivePath'] = params['RescueConfigDrivePath']
        rescue['OriginalConfigDrivePath'] = params.get('ConfigDrivePath')
    with host.transaction():
        set_rescue(host, rescue)
