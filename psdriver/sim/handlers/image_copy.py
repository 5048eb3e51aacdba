"""Copy-CachedImage: a grown copy of a cached image, next to it in the cache."""

from __future__ import annotations

import uuid
from typing import Any

from psdriver.sim import paths
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import ITEM_NOT_FOUND_EXCEPTION, SimError, invalid_argument
from psdriver.sim.host import SimHost
from psdriver.sim.state import GIB, FileEntry

_EXTENSIONS = ('.vhd', '.vhdx')


def _extension(path: str) -> str:
    name = paths.basename(path)
    return name[name.rfind('.'):].lower() if '.' in name else ''


def _record(entry: FileEntry, source: str, created: bool) -> dict[str, Any]:
    return {
        'path': entry.path,
        'source_path': source,
        'format': entry.vhd.format.lower(),
        'vhd_type': entry.vhd.vhd_type,
        'virtual_size_bytes': entry.vhd.size,
        'file_size_bytes': entry.size,
        'created': created,
    }


@handler('Copy-CachedImage')
def copy_cached_image(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    source = params['SourcePath']
    destination = params['DestinationPath']
    size = int(params.get('SizeBytes') or 0)
    ext = _extension(destination)
    if ext not in _EXTENSIONS or _extension(source) != ext:
        raise SimError(f"Source '{source}' and destination '{destination}' must both be .vhd "
                       'or both .vhdx files.', 'InvalidArgument', 'PsDriver.InvalidImagePath',
                       target=destination)
    if size < 0:
        raise SimError(f'SizeBytes must not be negative, got {size}.', 'InvalidArgument',
                       'PsDriver.InvalidDiskSize', target=destination)
    if not host.exists(source):
        raise SimError(f"The cached image '{source}' was not found.", 'ObjectNotFound',
                       'PsDriver.ImageNotFound', ITEM_NOT_FOUND_EXCEPTION, source)
    src = host.get_vhd(source)
    if src.vhd.vhd_type == 'Differencing':
        raise SimError(f"The cached image '{source}' is a differencing disk; only whole disks "
                       'are copied.', 'InvalidArgument', 'PsDriver.InvalidImagePath',
                       target=source)
    if 0 < size < src.vhd.size:
        raise SimError(f"Cannot make '{destination}' {size} bytes ({size / GIB:.2f} GB): the "
                       f"image '{source}' is {src.vhd.size} bytes ({src.vhd.size / GIB:.2f} "
                       'GB) and a disk is never shrunk.', 'InvalidArgument',
                       'PsDriver.RootDiskTooSmall', target=destination)
    target = max(size, src.vhd.size)
    if host.exists(destination):
        return _record(host.get_vhd(destination), source, False)
    stem = paths.basename(destination)[:-len(ext)]
    temp = paths.join(paths.parent(paths.normalize(destination)) or '',
                      f'{stem}.partial-{uuid.uuid4().hex[:12]}{ext}')
    try:
        host.copy_file(source, temp)
        if target > src.vhd.size:
            host.resize_vhd(temp, target)
        host.move_file(temp, destination)
    except SimError as exc:
        if host.exists(temp):
            host.remove_item(temp)
        raise SimError(f"Cannot copy '{source}' to '{destination}' and grow it to {target} "
                       f'bytes: {exc.message}', 'InvalidOperation', 'PsDriver.ImageCopyFailed',
                       target=destination) from None
    return _record(host.get_vhd(destination), source, True)


@prepare('Copy-CachedImage')
def _source_image(host: SimHost, params: dict[str, Any]) -> None:
    """The example's source image: a 10 GiB dynamic disk (smaller than any example size)."""
    source = paths.normalize(params['SourcePath'])
    root = paths.root(source)
    if root.startswith('\\\\') and not host.exists(root):
        host.add_volume(root, 500)
    folder = paths.parent(source)
    if folder is None:
        raise invalid_argument(f"'{source}' has no folder.", source)
    host.make_dir(folder)
    if not host.exists(source):
        host.new_vhd(source, 10 * GIB)
