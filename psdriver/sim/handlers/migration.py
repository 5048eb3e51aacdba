"""Cold migration and resize: Export-InstanceDisk, Restore-InstanceFolder and
Remove-InstanceFolder."""

from __future__ import annotations

import re
from typing import Any

from psdriver.sim import paths
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.host import SimHost
from psdriver.sim.handlers.snapshot import boot_disk
from psdriver.sim.scriptlib import (
    extension, int_param, is_absolute, is_dir, join, not_empty, notes_uuid, remove_vm,
    same_path, script_error, switch, two_places)
from psdriver.sim.state import GIB

_ROOTS = (re.compile(r'^[A-Za-z]:[\\/]*$'), re.compile(r'^\\\\[^\\/]+[\\/][^\\/]+[\\/]*$'))


def _parent(path: str) -> str:
    return paths.parent(paths.normalize(path)) or ''


def _check_folder(path: str) -> None:
    if not is_absolute(path) or any(r.match(path) for r in _ROOTS):
        raise script_error(f"'{path}' must be an absolute path below a drive or share root.",
                           'InvalidArgument', 'PsDriver.UnsafeInstanceDir', path)


def _check_side_by_side(instance_dir: str, revert_dir: str) -> None:
    if not revert_dir or not same_path(_parent(revert_dir), _parent(instance_dir)) \
            or same_path(revert_dir, instance_dir):
        raise script_error(f"RevertDir '{revert_dir}' must be another folder next to "
                           f"InstanceDir '{instance_dir}'.", 'InvalidArgument',
                           'PsDriver.UnsafeInstanceDir', revert_dir)


def folder_in_use(host: SimHost, folder: str) -> bool:
    """``Test-FolderInUse``: a hard disk drive of a registered VM names a file below it."""
    key = paths.key(paths.normalize(folder))
    return any(d.kind == 'HardDisk' and d.path and paths.is_under(paths.key(d.path), key)
               for vm in host.list_vms() for d in vm.drives)


@handler('Export-InstanceDisk')
def export_instance_disk(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Export-InstanceDisk'
    name = not_empty(script, params, 'Name')
    instance_dir = not_empty(script, params, 'InstanceDir')
    revert_dir = params.get('RevertDir') or ''
    keep = switch(params, 'KeepInPlace')
    root_size = int_param(script, params, 'RootSizeBytes', 0)
    copy_to = params.get('CopyTo') or ''
    wanted_uuid = params.get('InstanceUuid') or ''
    if not is_absolute(instance_dir) or any(r.match(instance_dir) for r in _ROOTS):
        raise script_error(f"InstanceDir '{instance_dir}' must be an absolute path below a "
                           'drive or share root.', 'InvalidArgument',
                           'PsDriver.UnsafeInstanceDir', instance_dir)
    if not keep:
        _check_side_by_side(instance_dir, revert_dir)
    vm = host.find_vm(name)
    if vm is not None and wanted_uuid and \
            notes_uuid(vm.notes) != wanted_uuid.strip('{}').lower():
        raise script_error(f"Virtual machine '{name}' does not carry instance UUID "
                           f'{wanted_uuid} in its Notes; it is left alone.', 'InvalidOperation',
                           'PsDriver.InstanceUuidMismatch', name)
    source = instance_dir
    if not is_dir(host, instance_dir) and not keep and is_dir(host, revert_dir):
        source = revert_dir
    root_path = generation = previous = None
    if vm is not None:
        generation, previous = vm.generation, vm.state
        drive = boot_disk(vm)
        root_path = drive.path if drive is not None else None
    disks: list[dict[str, Any]] = []
    if is_dir(host, source):
        for entry in sorted(host.list_dir(source), key=lambda e: paths.basename(e.path).lower()):
            if entry.is_dir or extension(entry.path) not in ('.vhd', '.vhdx'):
                continue
            base = paths.basename(entry.path)
            is_root = same_path(root_path, entry.path) if root_path else \
                base.rsplit('.', 1)[0] == 'root'
            disks.append({'name': base, 'path': entry.path,
                          'format': entry.vhd.format.lower(), 'vhd_type': entry.vhd.vhd_type,
                          'size_bytes': entry.size, 'virtual_size_bytes': entry.vhd.size,
                          'parent_path': entry.vhd.parent_path or '', 'root': is_root})
    for disk in disks:
        if disk['root'] and root_size > 0 and disk['virtual_size_bytes'] > root_size:
            have = disk['virtual_size_bytes']
            raise script_error(
                f"Cannot resize the root disk of '{name}' to {root_size} bytes "
                f'({two_places(root_size / GIB)} GB): it is {have} bytes '
                f'({two_places(have / GIB)} GB) and a disk is never shrunk.', 'InvalidArgument',
                'PsDriver.RootDiskTooSmall', name)
    if vm is not None:
        remove_vm(host, vm)
    folder = source
    if not keep and same_path(source, instance_dir):
        if host.exists(revert_dir):
            host.remove_item(revert_dir, recurse=True)
        host.move_dir(instance_dir, revert_dir)
        folder = revert_dir
    for disk in disks:
        disk['path'] = join(folder, disk['name'])
    copied: list[str] = []
    if copy_to:
        if not is_dir(host, copy_to):
            host.make_dir(copy_to)
        for disk in disks:
            target = join(copy_to, disk['name'])
            host.copy_file(disk['path'], target, overwrite=True)
            copied.append(target)
    return {'name': name, 'vm_existed': vm is not None, 'previous_state': previous,
            'generation': generation, 'folder': folder, 'disks': disks, 'copied': copied}


@prepare('Export-InstanceDisk')
def _export_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The example's instance, running (the caller shuts it down first on a real host)."""
    from psdriver.sim.scenario import add_instance, ensure_folder, ensure_volume
    folder = params['InstanceDir']
    ensure_volume(host, folder)
    ensure_folder(host, _parent(folder))
    add_instance(host, params['Name'], instance_uuid=params.get('InstanceUuid'),
                 instance_dir=folder)


@handler('Restore-InstanceFolder')
def restore_instance_folder(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Restore-InstanceFolder'
    instance_dir = not_empty(script, params, 'InstanceDir')
    revert_dir = not_empty(script, params, 'RevertDir')
    for path in (instance_dir, revert_dir):
        _check_folder(path)
    _check_side_by_side(instance_dir, revert_dir)
    restored = replaced = False
    if not is_dir(host, revert_dir):
        if not is_dir(host, instance_dir):
            raise script_error(f"Neither '{revert_dir}' nor '{instance_dir}' exists: there are "
                               'no files to revert to.', 'ObjectNotFound',
                               'PsDriver.RevertDirNotFound', revert_dir)
    else:
        if host.exists(instance_dir):
            if folder_in_use(host, instance_dir):
                raise script_error(f"A virtual machine still uses disks in '{instance_dir}'; "
                                   'it is not replaced.', 'InvalidOperation',
                                   'PsDriver.InstanceDirInUse', instance_dir)
            host.remove_item(instance_dir, recurse=True)
            replaced = True
        host.move_dir(revert_dir, instance_dir)
        restored = True
    files = sorted(paths.basename(e.path) for e in host.list_dir(instance_dir) if not e.is_dir) \
        if is_dir(host, instance_dir) else []
    return {'instance_dir': instance_dir, 'restored': restored,
            'replaced_instance_dir': replaced, 'files': files}


@prepare('Restore-InstanceFolder')
def _restore_prepare(host: SimHost, params: dict[str, Any]) -> None:
    from psdriver.sim.scenario import ensure_folder
    ensure_folder(host, params['RevertDir'])
    host.new_vhd(join(params['RevertDir'], 'root.vhdx'), 10 * GIB)


@handler('Remove-InstanceFolder')
def remove_instance_folder(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    path = not_empty('Remove-InstanceFolder', params, 'Path')
    _check_folder(path)
    existed = is_dir(host, path)
    files: list[str] = []
    if existed:
        files = sorted(paths.basename(e.path) for e in host.list_dir(path) if not e.is_dir)
        if folder_in_use(host, path):
            raise script_error(f"A virtual machine still uses disks in '{path}'; it is not "
                               'deleted.', 'InvalidOperation', 'PsDriver.InstanceDirInUse', path)
        host.remove_item(path, recurse=True)
    return {'path': path, 'existed': existed, 'removed': existed, 'files': files}


@prepare('Remove-InstanceFolder')
def _remove_prepare(host: SimHost, params: dict[str, Any]) -> None:
    from psdriver.sim.scenario import ensure_folder
    if '99' in params['Path']:
        return                                   # the example of a folder already gone
    ensure_folder(host, params['Path'])
    host.new_vhd(join(params['Path'], 'root.vhdx'), 10 * GIB)
