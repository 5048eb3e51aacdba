"""New-InstanceImage: a checkpoint, its frozen root disk converted, the checkpoint removed."""

from __future__ import annotations

import re
from typing import Any

from psdriver.sim import paths
from psdriver.sim.devices import slot_name
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import SimError
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import hard_disks, is_dir, join, not_empty, script_error, target_vm
from psdriver.sim.state import Drive, Vm

NAME = 'New-InstanceImage'
_STEM = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$')


def boot_disk(vm: Vm) -> Drive | None:
    """The hard disk in the boot slot (IDE 0:0, or SCSI 0:0 for generation 2)."""
    ctype = 'IDE' if vm.generation == 1 else 'SCSI'
    for drive in hard_disks(vm):
        if (drive.controller_type, drive.controller_number, drive.location) == (ctype, 0, 0):
            return drive
    return None


@handler(NAME)
def new_instance_image(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    name = not_empty(NAME, params, 'Name')
    folder = not_empty(NAME, params, 'DestinationFolder')
    stem = not_empty(NAME, params, 'FileStem')
    if not _STEM.match(stem):
        raise SimError(f"Cannot validate argument on parameter 'FileStem'. The argument "
                       f'"{stem}" does not match the pattern.', 'InvalidData',
                       f'ParameterArgumentValidationError,{NAME}',
                       'System.Management.Automation.ParameterBindingException')
    checkpoint = params.get('CheckpointName') or f'psdriver-snapshot-{stem}'
    vm = target_vm(host, name)
    root = boot_disk(vm)
    if root is None or root.disk_number is not None or not root.path:
        slot = 'IDE 0:0' if vm.generation == 1 else 'SCSI 0:0'
        raise script_error(f"Virtual machine '{name}' has no root disk file in {slot} (booted "
                           'from a volume?).', 'ObjectNotFound', 'PsDriver.RootDiskNotFound',
                           name)
    root_path = root.path
    vhd = host.get_vhd(root_path).vhd
    fmt = vhd.format.lower()
    image = join(folder, f'{stem}.{fmt}')
    if host.exists(image):
        raise script_error(f"The image file '{image}' already exists.", 'ResourceExists',
                           'PsDriver.ImageExists', image)
    if not is_dir(host, folder):
        host.make_dir(folder)
    try:
        snap = host.checkpoint_vm(vm.name, checkpoint)
    except SimError as exc:
        raise script_error(f"Hyper-V could not checkpoint '{name}': {exc.message}",
                           'InvalidOperation', 'PsDriver.CheckpointFailed', name) from None
    try:
        frozen = snap.disks.get(slot_name(root), root_path)
        host.convert_vhd(frozen, image, 'Dynamic')
    finally:
        host.remove_snapshot(vm.name, snap.id)
    return {'name': vm.name, 'generation': vm.generation, 'path': image, 'format': fmt,
            'virtual_size_bytes': vhd.size, 'file_size_bytes': host.get_item(image).size,
            'root_disk_path': root_path, 'vm_state': host.get_vm(vm.name).state,
            'checkpoint_removed': True}


@prepare(NAME)
def _prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The example's instance, running, with a differencing root disk over a cached image."""
    from psdriver.sim.scenario import add_instance, ensure_folder
    ensure_folder(host, paths.normalize(params['DestinationFolder']))
    add_instance(host, params['Name'])
