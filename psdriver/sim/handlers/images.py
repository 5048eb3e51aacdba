"""Get-CachedImage, Remove-CachedImage and Resize-InstanceDisk.

An image is in use when it is in the disk chain (the disk or one of its
differencing parents) of a hard disk drive of any VM, in any state, or the
ISO of a DVD drive: the rule both cache scripts share.
"""

from __future__ import annotations

import re
from typing import Any

from psdriver.sim import paths
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import SimError
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import (
    dvd_drives, hard_disks, int_param, is_dir, is_file, iso8601, not_empty, path_key,
    script_error, text_list, two_places)
from psdriver.sim.state import GIB, FileEntry

_IMAGE_EXT = re.compile(r'^\.(vhdx?|iso)$', re.IGNORECASE)
_CHAIN_FILE = re.compile(r'\.a?vhdx?$', re.IGNORECASE)
_BAD_NAME = re.compile(r'[\\/:*?\[\]]')
EXAMPLE_IMAGES = (('0c7e2a55-6f0e-4d7c-9e4c-2b8f1a3d5e70.vhdx', 2 * GIB),
                  ('7d1e5b20-3c4a-4f6e-8b9d-0a1b2c3d4e5f_40.vhd', 40 * GIB),
                  ('1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b.iso', 300 * 1024 * 1024))


def _check_names(names: list[str]) -> None:
    for entry in names:
        if not entry.strip() or _BAD_NAME.search(entry):
            raise script_error(f"'{entry}' is not an image name (no path separators or "
                               'wildcards).', 'InvalidArgument', 'PsDriver.InvalidImageName',
                               entry)


def _split(name: str) -> tuple[str, str]:
    """(base name, extension) as FileInfo gives them."""
    dot = name.rfind('.')
    return (name[:dot], name[dot:]) if dot > 0 else (name, '')


def image_files(host: SimHost, base: str) -> list[FileEntry]:
    """*.vhd, *.vhdx and *.iso files directly in the folder, sorted by name."""
    if not is_dir(host, base):
        return []
    files = [e for e in host.list_dir(base)
             if not e.is_dir and _IMAGE_EXT.match(_split(paths.basename(e.path))[1])]
    return sorted(files, key=lambda e: paths.basename(e.path).lower())


def select(files: list[FileEntry], names: list[str]) -> tuple[list[FileEntry], list[str]]:
    """Files matching the Name entries (with or without extension) and entries matching none."""
    selected: list[FileEntry] = []
    missing: list[str] = []
    for entry in names:
        low = entry.lower()
        matched = [f for f in files if paths.basename(f.path).lower() == low
                   or _split(paths.basename(f.path))[0].lower() == low]
        if not matched:
            missing.append(entry)
        for f in matched:
            if f not in selected:
                selected.append(f)
    return sorted(selected, key=lambda e: paths.basename(e.path).lower()), missing


def image_usage(host: SimHost) -> dict[str, list[str]]:
    """``Get-PsDriverImageUsage``: path key -> names of the VMs using the file."""
    usage: dict[str, list[str]] = {}

    def use(path: str, vm_name: str) -> None:
        key = path_key(path)
        if key is not None and vm_name not in usage.setdefault(key, []):
            usage[key].append(vm_name)

    for vm in host.list_vms():
        for drive in hard_disks(vm):
            current, seen = drive.path, set()
            while current and _CHAIN_FILE.search(current):
                key = path_key(current)
                if key is None or key in seen:
                    break
                seen.add(key)
                use(current, vm.name)
                try:
                    current = host.get_vhd(current).vhd.parent_path
                except SimError:
                    break
        for dvd in dvd_drives(vm):
            if dvd.path and dvd.path.lower().endswith('.iso'):
                use(dvd.path, vm.name)
    return usage


def _image_record(host: SimHost, entry: FileEntry, usage: dict[str, list[str]]) -> dict:
    name = paths.basename(entry.path)
    fmt = _split(name)[1].lstrip('.').lower()
    vhd_type = virtual = parent = None
    if fmt == 'iso':
        virtual = entry.size
    elif entry.vhd is not None:
        fmt = entry.vhd.format.lower()
        vhd_type, virtual = entry.vhd.vhd_type, entry.vhd.size
        parent = entry.vhd.parent_path or None
    used_by = sorted(usage.get(paths.key(entry.path), []), key=str.lower)
    written = entry.modified or entry.created
    return {'name': name, 'path': entry.path, 'format': fmt, 'vhd_type': vhd_type,
            'file_size_bytes': entry.size, 'virtual_size_bytes': virtual,
            'parent_path': parent, 'last_write_time': iso8601(written),
            'last_access_time': iso8601(written), 'in_use': bool(used_by),
            'used_by': used_by}


@handler('Get-CachedImage', readonly=True)
def get_cached_image(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    base = not_empty('Get-CachedImage', params, 'BasePath')
    names = text_list(params, 'Name')
    _check_names(names)
    exists = is_dir(host, base)
    files = image_files(host, base)
    missing: list[str] = []
    if names:
        files, missing = select(files, names)
    usage = image_usage(host) if files else {}
    return {'base_path': base, 'exists': exists,
            'images': [_image_record(host, f, usage) for f in files], 'not_found': missing}


@handler('Remove-CachedImage')
def remove_cached_image(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    base = not_empty('Remove-CachedImage', params, 'BasePath')
    names = text_list(params, 'Name')
    if not names:
        not_empty('Remove-CachedImage', params, 'Name')
    _check_names(names)
    selected, missing = select(image_files(host, base), names)
    skipped: list[dict[str, Any]] = [
        {'name': entry, 'path': None, 'reason': 'not_found', 'used_by': [], 'message': None}
        for entry in missing]
    removed: list[dict[str, Any]] = []
    usage = image_usage(host) if selected else {}
    for entry in selected:
        name = paths.basename(entry.path)
        used_by = usage.get(paths.key(entry.path))
        if used_by:
            skipped.append({'name': name, 'path': entry.path, 'reason': 'in_use',
                            'used_by': sorted(used_by, key=str.lower), 'message': None})
            continue
        try:
            host.remove_item(entry.path)
        except SimError as exc:
            skipped.append({'name': name, 'path': entry.path, 'reason': 'remove_failed',
                            'used_by': [], 'message': exc.message})
            continue
        removed.append({'name': name, 'path': entry.path})
    return {'base_path': base, 'removed': removed, 'skipped': skipped}


def _prepare_cache(host: SimHost, params: dict[str, Any]) -> None:
    """The image cache with the examples' images; a running instance uses the first."""
    from psdriver.sim.scenario import add_image, add_instance, ensure_folder
    base = ensure_folder(host, params['BasePath'])
    for name, size in EXAMPLE_IMAGES:
        add_image(host, paths.join(base, name), size)
    add_instance(host, 'instance-00000001', image=paths.join(base, EXAMPLE_IMAGES[0][0]),
                 image_size=EXAMPLE_IMAGES[0][1])


prepare('Get-CachedImage')(_prepare_cache)
prepare('Remove-CachedImage')(_prepare_cache)


# -- Resize-InstanceDisk --------------------------------------------------------------------

def _check_online_resize(host: SimHost, path: str, fmt: str) -> None:
    """Only a VHDX on SCSI grows while its VM runs: refuse IDE or vhd of an active VM."""
    for vm in host.list_vms():
        if vm.state in ('Off', 'Saved', 'OffCritical', 'SavedCritical'):
            continue
        for drive in hard_disks(vm):
            if not drive.path or path_key(drive.path) != path_key(path):
                continue
            if drive.controller_type == 'IDE' or fmt == 'vhd':
                raise script_error(
                    f"Cannot grow '{path}' while virtual machine '{vm.name}' is {vm.state}: it "
                    f'is a {fmt} on {drive.controller_type} controller '
                    f'{drive.controller_number}, and only a vhdx on a SCSI controller grows '
                    'while the VM runs. Turn the VM off first.', 'InvalidOperation',
                    'PsDriver.DiskResizeNeedsVMOff', path)


@handler('Resize-InstanceDisk')
def resize_instance_disk(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Resize-InstanceDisk'
    path = not_empty(script, params, 'Path')
    size = int_param(script, params, 'SizeBytes', 0)
    if size <= 0:
        raise script_error(f'SizeBytes must be positive, got {size}.', 'InvalidArgument',
                           'PsDriver.InvalidDiskSize', path)
    if not is_file(host, path):
        raise script_error(f"The virtual disk '{path}' was not found.", 'ObjectNotFound',
                           'PsDriver.DiskNotFound', path)
    vhd = host.get_vhd(path).vhd
    fmt, vhd_type, previous = vhd.format.lower(), vhd.vhd_type, vhd.size
    if size < previous:
        raise script_error(f"Cannot resize '{path}' to {size} bytes ({two_places(size / GIB)} "
                           f'GB): it is {previous} bytes ({two_places(previous / GIB)} GB) and '
                           'a disk is never shrunk.', 'InvalidArgument',
                           'PsDriver.RootDiskTooSmall', path)
    resized = False
    if size > previous:
        if fmt == 'vhd' and vhd_type == 'Differencing':
            raise script_error(f"'{path}' is a vhd differencing disk, which cannot grow (only "
                               'vhdx differencing disks can).', 'InvalidArgument',
                               'PsDriver.DifferencingVhdResize', path)
        _check_online_resize(host, path, fmt)
        try:
            host.resize_vhd(path, size)
        except SimError as exc:
            raise script_error(f"Hyper-V could not grow '{path}' to {size} bytes: "
                               f'{exc.message}', 'InvalidOperation',
                               'PsDriver.DiskResizeFailed', path) from None
        resized = True
    return {'path': path, 'format': fmt, 'vhd_type': vhd_type, 'previous_size_bytes': previous,
            'size_bytes': host.get_vhd(path).vhd.size, 'resized': resized}


@prepare('Resize-InstanceDisk')
def _resize_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """A 10 GiB disk at the example's path (a vhd for a .vhd path)."""
    from psdriver.sim.scenario import ensure_folder
    norm = paths.normalize(params['Path'])
    ensure_folder(host, paths.parent(norm) or norm)
    host.new_vhd(norm, 10 * GIB)
