"""The image cache: Glance images kept once per host in ``<instances_path>\\_base``.

A spawn asks :meth:`ImageCache.get_cached_image` for the instance's image.
The first one on a host downloads it from Glance, checks what the file really
is and publishes it as ``<image_id>.vhd``, ``.vhdx`` or ``.iso`` (see
:mod:`psdriver.ops.hostfiles` for how the file reaches the host); later ones
find it with one Get-CachedImage round trip, or with none once this service
has found or published it (``reuse_known``: New-Instance checks the file
itself, and :meth:`ImageCache.forget` drops an answer that turned out
stale).  Concurrent spawns of one image
wait on the lock ``image-<id>`` (:mod:`psdriver.coordination`, distributed
when ``[coordination] backend_url`` is set), so the image is downloaded once.

A VHD differencing disk cannot be bigger than its parent.  With
``use_cow_images`` and a VHD image smaller than the flavor's root disk, the
cache keeps a grown copy ``<image_id>_<root_gb>.vhd`` (Copy-CachedImage, one
round trip), as compute-hyperv did.  VHDX differencing disks grow freely.

:meth:`ImageCache.update` is the ``manage_image_cache`` periodic: one
Get-CachedImage lists the folder, one Remove-CachedImage deletes what no
instance uses and what is older than nova's ``[image_cache]`` minimum ages.

The format checks read the file itself, never trusting the name or Glance's
``disk_format``: nova's own inspection (oslo.utils' format inspector, with its
safety checks) tells the format, the VHDX virtual size and the ISO; read here
is only what it does not cover: the 512-byte ``conectix`` footer at the end
of a VHD (a fixed VHD has nothing at its start, so it looks raw to the
inspector), a VHD's current size, type and checksum, and a VHDX's
fixed/differencing flags and required items.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import re
import struct
import threading
import time
import uuid
from typing import Any, BinaryIO, Callable, Iterable

from nova import exception
from nova.virt import images
from oslo_log import log as logging
from oslo_utils.imageutils import format_inspector

from psdriver import coordination
from psdriver.bridge.client import Bridge
from psdriver.ops import errors, hostfiles
from psdriver.ops.hostfiles import ImageFileInfo

LOG = logging.getLogger(__name__)

GIB = 1024 ** 3
#: Formats Hyper-V boots from, in the order preferred when several are cached.
FORMATS = ('vhdx', 'vhd', 'iso')
#: A file this service handed to a spawn, or last saw in use, is kept at
#: least this many seconds, whatever the minimum ages are set to: the VM of a
#: spawn in progress may not exist yet.
HANDED_OUT_GRACE = 3600.0
_RESIZED = re.compile(r'^(?P<id>.+)_(?P<gb>[0-9]+)$')


@dataclasses.dataclass(frozen=True)
class CachedImage:
    """An image file in the host's cache, ready to be a root disk or DVD."""

    path: str                  # host path
    format: str                # vhd | vhdx | iso
    virtual_size_bytes: int
    image_id: str


# -- what a downloaded file really is ------------------------------------------------

class ImageFormatError(ValueError):
    """The file is not an image Hyper-V can use; the message says why."""


VHD_FOOTER = 512
VHD_MAX_SIZE = 2040 * GIB
VHD_TYPES = {2: 'Fixed', 3: 'Dynamic', 4: 'Differencing'}

VHDX_MAX_SIZE = 64 * 1024 * GIB
VHDX_REGION_TABLE = 192 * 1024                  # the primary; the backup at 256 KiB
VHDX_MAX_ENTRIES = 2047
VHDX_REGION_BAT = uuid.UUID('2dc27766-f623-4200-9d64-115e9bfd4a08')
VHDX_REGION_METADATA = uuid.UUID('8b7ca206-4790-4b9a-b8fe-575f050f886e')
VHDX_FILE_PARAMETERS = uuid.UUID('caa16737-fa36-4d43-b3b6-33f0aa44e76b')
VHDX_VIRTUAL_DISK_SIZE = uuid.UUID('2fa54224-cd1b-4876-b211-5dbed83bf4b8')
VHDX_PAGE83_DATA = uuid.UUID('beca12ab-b2e6-4523-93ef-c309e000c746')
VHDX_LOGICAL_SECTOR_SIZE = uuid.UUID('8141bf1d-a96f-4709-ba47-f233a8faab5f')
VHDX_PHYSICAL_SECTOR_SIZE = uuid.UUID('cda348c7-445d-4471-9cc9-e9885251c556')
VHDX_PARENT_LOCATOR = uuid.UUID('a8d35f2d-b30b-454d-abf7-d3d84834ab0c')
VHDX_KNOWN_ITEMS = frozenset({
    VHDX_FILE_PARAMETERS, VHDX_VIRTUAL_DISK_SIZE, VHDX_PAGE83_DATA,
    VHDX_LOGICAL_SECTOR_SIZE, VHDX_PHYSICAL_SECTOR_SIZE, VHDX_PARENT_LOCATOR})

def _read_at(f: BinaryIO, offset: int, length: int, size: int, what: str) -> bytes:
    if offset < 0 or offset + length > size:
        raise ImageFormatError(f'the {what} lies beyond the end of the file (truncated?)')
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise ImageFormatError(f'cannot read the {what} (truncated?)')
    return data


def _vhd_info(f: BinaryIO, size: int, head: bytes) -> ImageFileInfo:
    """The VHD footer: the last 512 bytes (a dynamic disk also has a copy at 0).

    Offsets (big-endian): 0 cookie ``conectix``, 48 current size (the size a
    guest sees, what Get-VHD reports and Resize-VHD changes), 60 disk type,
    64 checksum: the one's complement of the sum of all footer bytes with the
    checksum field taken as zero.
    """
    footer = _read_at(f, size - VHD_FOOTER, VHD_FOOTER, size, 'VHD footer')
    if footer[:8] != b'conectix':
        raise ImageFormatError('a dynamic VHD header is at the start of the file but the '
                               'footer at its end is missing (truncated download?)')
    stored = struct.unpack('>I', footer[64:68])[0]
    computed = ~sum(footer[:64] + footer[68:]) & 0xFFFFFFFF
    if stored != computed:
        raise ImageFormatError(f'the VHD footer checksum is wrong (stored {stored:#x}, '
                               f'computed {computed:#x})')
    current_size = struct.unpack('>Q', footer[48:56])[0]
    disk_type = VHD_TYPES.get(struct.unpack('>I', footer[60:64])[0])
    if disk_type is None:
        raise ImageFormatError('the VHD footer has an unknown disk type')
    if disk_type == 'Differencing':
        raise ImageFormatError('it is a VHD differencing disk; its parent would be missing')
    if not 0 < current_size <= VHD_MAX_SIZE or current_size % 512:
        raise ImageFormatError(f'the VHD virtual size {current_size} is not a positive '
                               f'multiple of 512 up to {VHD_MAX_SIZE} bytes')
    if disk_type == 'Fixed' and size != current_size + VHD_FOOTER:
        raise ImageFormatError(f'a fixed VHD of {current_size} bytes must be '
                               f'{current_size + VHD_FOOTER} bytes long, the file has {size}')
    if disk_type == 'Dynamic' and head[:8] != b'conectix':
        raise ImageFormatError('a dynamic VHD must start with a copy of its footer')
    return ImageFileInfo('vhd', current_size, size, disk_type)


def _vhdx_region_table(f: BinaryIO, size: int) -> dict[uuid.UUID, tuple[int, int, bool]]:
    """Region GUID -> (file offset, length, required), from the region table.

    Table header (little-endian): ``regi``, checksum, entry count, reserved;
    then 32-byte entries: GUID, u64 file offset, u32 length, u32 required.
    The primary table only, as the format inspector (and nova) read it; the
    CRC-32C checksums are not verified: Hyper-V does that when it opens the
    file; this check is about what the file is and how big it is.
    """
    offset = VHDX_REGION_TABLE
    header = _read_at(f, offset, 16, size, 'VHDX region table')
    signature, _checksum, count, _reserved = struct.unpack('<4sIII', header)
    if signature != b'regi' or count > VHDX_MAX_ENTRIES:
        raise ImageFormatError('the VHDX region table (at 192 KiB) is not valid')
    raw = _read_at(f, offset + 16, 32 * count, size, 'VHDX region table')
    regions = {}
    for i in range(count):
        guid, start, length, required = struct.unpack_from('<16sQII', raw, 32 * i)
        regions[uuid.UUID(bytes_le=guid)] = (start, length, bool(required & 1))
    return regions


def _vhdx_info(f: BinaryIO, size: int, virtual_size: int) -> ImageFileInfo:
    """VHDX (MS-VHDX): what the generic inspector does not read.

    ``virtual_size`` is the format inspector's.  Here: the File Parameters
    item (block size, then flags: bit 0 leave blocks allocated, i.e. fixed;
    bit 1 has parent, i.e. differencing), the logical sector size, a parent
    locator, and, as Hyper-V does, an unknown region or metadata item marked
    required.  The region table names the metadata region; its table
    (``metadata`` signature, u16 entry count at 10, then 32-byte entries from
    offset 32: item GUID, u32 offset within the region, u32 length, u32 flags
    with bit 2 = required) locates the items.
    """
    regions = _vhdx_region_table(f, size)
    for guid, (_start, _length, required) in regions.items():
        if required and guid not in (VHDX_REGION_BAT, VHDX_REGION_METADATA):
            raise ImageFormatError(f'the VHDX requires an unknown region {guid}')
    if VHDX_REGION_METADATA not in regions:
        raise ImageFormatError('the VHDX has no metadata region')
    meta_start, meta_length, _ = regions[VHDX_REGION_METADATA]
    header = _read_at(f, meta_start, 32, size, 'VHDX metadata table')
    signature, _reserved, count = struct.unpack_from('<8sHH', header)
    if signature != b'metadata' or count > VHDX_MAX_ENTRIES:
        raise ImageFormatError('the VHDX metadata table signature is wrong')
    raw = _read_at(f, meta_start + 32, 32 * count, size, 'VHDX metadata table')
    items: dict[uuid.UUID, tuple[int, int]] = {}
    for i in range(count):
        guid, offset, length, flags = struct.unpack_from('<16sIII', raw, 32 * i)
        item = uuid.UUID(bytes_le=guid)
        if flags & 4 and item not in VHDX_KNOWN_ITEMS:
            raise ImageFormatError(f'the VHDX requires an unknown metadata item {item}')
        if offset + length > meta_length:
            raise ImageFormatError(f'the VHDX metadata item {item} overflows its region')
        items[item] = (meta_start + offset, length)

    def item_bytes(guid: uuid.UUID, length: int, what: str) -> bytes:
        if guid not in items or items[guid][1] < length:
            raise ImageFormatError(f'the VHDX metadata has no {what}')
        return _read_at(f, items[guid][0], length, size, f'VHDX {what}')

    _block_size, flags = struct.unpack('<II', item_bytes(VHDX_FILE_PARAMETERS, 8,
                                                         'file parameters'))
    sector = 512
    if VHDX_LOGICAL_SECTOR_SIZE in items:
        sector = struct.unpack('<I', item_bytes(VHDX_LOGICAL_SECTOR_SIZE, 4,
                                                'logical sector size'))[0]
    if flags & 2 or VHDX_PARENT_LOCATOR in items:
        raise ImageFormatError('it is a VHDX differencing disk; its parent would be missing')
    if sector not in (512, 4096):
        raise ImageFormatError(f'the VHDX logical sector size {sector} is neither 512 nor 4096')
    if not 0 < virtual_size <= VHDX_MAX_SIZE or virtual_size % sector:
        raise ImageFormatError(f'the VHDX virtual size {virtual_size} is not a positive '
                               f'multiple of {sector} up to {VHDX_MAX_SIZE} bytes')
    return ImageFileInfo('vhdx', virtual_size, size, 'Fixed' if flags & 1 else 'Dynamic')


def inspect_image_file(path: str) -> ImageFileInfo:
    """Format, virtual size and disk type of the image file at ``path``.

    The format is what nova's own image check finds
    (:func:`nova.virt.images.get_image_format`, oslo.utils' format
    inspector), and the file must pass the inspector's safety checks.  What
    the inspector does not cover is read here: a fixed VHD (its only footer is
    at the end, so it looks raw, or gpt for a guest disk with a GPT), a VHD's
    current size, type and checksum, a VHDX's fixed/differencing flags.

    Raises :class:`ImageFormatError` for anything Hyper-V cannot use as it is:
    another format, a differencing disk, an inconsistent or truncated file,
    a file failing the safety checks.
    """
    size = os.path.getsize(path)
    if size < VHD_FOOTER:
        raise ImageFormatError(f'the file has only {size} bytes')
    try:
        inspector = images.get_image_format(path)
    except format_inspector.ImageFormatError as exc:
        raise ImageFormatError(f'its format cannot be told ({exc})') from None
    found = str(inspector)
    if found not in ('vhdx', 'vhd', 'iso', 'raw', 'gpt'):
        raise ImageFormatError(f'it is a {found} image; Hyper-V needs VHD, VHDX or ISO')
    try:
        inspector.safety_check()
    except format_inspector.SafetyCheckFailed as exc:
        raise ImageFormatError(f'it fails the image safety checks ({exc})') from None
    except format_inspector.ImageFormatError as exc:
        raise ImageFormatError(f'it is truncated or damaged ({exc})') from None
    with open(path, 'rb') as f:
        if found == 'vhdx':
            return _vhdx_info(f, size, inspector.virtual_size)
        if found == 'iso':
            return ImageFileInfo('iso', size, size, None)
        if found in ('vhd', 'raw', 'gpt'):
            head = f.read(64)
            f.seek(size - VHD_FOOTER)
            if found == 'vhd' or f.read(8) == b'conectix':
                return _vhd_info(f, size, head)
    raise ImageFormatError('it is neither VHD, VHDX nor ISO (a raw disk image?)')


# -- the cache -----------------------------------------------------------------------

def _field(obj: Any, name: str) -> Any:
    """A Nova object field, or None when it is not set (never lazy-loads)."""
    if obj is None:
        return None
    if hasattr(obj, 'obj_attr_is_set'):
        return getattr(obj, name) if obj.obj_attr_is_set(name) else None
    return getattr(obj, name, None)


def _parse_time(value: Any) -> float | None:
    try:
        parsed = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def split_cache_name(name: str) -> tuple[str, int | None, bool]:
    """``(image_id, resized_gb or None, partial)`` of a cache file name.

    ``<id>.vhdx`` -> ``(id, None, False)``; ``<id>_40.vhd`` -> ``(id, 40, False)``;
    ``<id>_40.partial-1a2b.vhd`` (a copy that never finished) -> ``(id, 40, True)``.
    """
    stem = name.rsplit('.', 1)[0] if '.' in name else name
    partial = hostfiles.PARTIAL_MARK in stem
    if partial:
        stem = stem.split(hostfiles.PARTIAL_MARK, 1)[0]
    match = _RESIZED.match(stem)
    if match:
        return match.group('id'), int(match.group('gb')), partial
    return stem, None, partial


class ImageCache:
    """The per-host image cache; see the module doc.

    :param files: how downloads reach the host (:func:`hostfiles.for_transport`
        of ``conf`` by default).
    :param coordinator: lock provider (:data:`coordination.COORDINATOR` by default).
    :param clock: wall-clock seconds, compared with the host's file times.
    """

    def __init__(self, bridge: Bridge, conf: Any, files: hostfiles.HostFiles | None = None,
                 coordinator: coordination.Coordinator | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._bridge = bridge
        self._conf = conf
        self._files = files if files is not None else hostfiles.for_transport(conf, bridge)
        self._coordinator = coordinator or coordination.COORDINATOR
        self._clock = clock
        self._seen_lock = threading.Lock()
        #: lower-case file name -> when this service last knew it in use.
        self._seen: dict[str, float] = {}
        #: (lower-case image id, root size GB or None) -> the image a lookup answered.
        self._known: dict[tuple[str, int | None], CachedImage] = {}

    @property
    def base_dir(self) -> str:
        return self._files.path.join(self._conf.instances_path,
                                     self._conf.image_cache.subdirectory_name)

    def close(self) -> None:
        self._files.close()

    # -- spawn side ----------------------------------------------------------------

    def get_cached_image(self, context: Any, instance: Any, root_size_gb: int | None = None,
                         image_meta: Any = None, reuse_known: bool = False) -> CachedImage:
        """The cached image of ``instance`` (or of ``image_meta``, e.g. a rescue image).

        ``root_size_gb`` is the flavor's root disk: an image bigger than it
        raises ``FlavorDiskSmallerThanImage`` (disks are never shrunk); with
        ``use_cow_images``, a VHD smaller than it is served as the grown copy
        ``<id>_<root_size_gb>.vhd``.  ``reuse_known`` answers without asking
        the host when this service already found or published that file
        (a cached image never changes; a caller that finds it gone calls
        :meth:`forget`).
        """
        if image_meta is not None:
            image_id = _field(image_meta, 'id')
            disk_format = _field(image_meta, 'disk_format')
        else:
            image_id = _field(instance, 'image_ref')
            sysmeta = _field(instance, 'system_metadata') or {}
            disk_format = sysmeta.get('image_disk_format')
        if not image_id:
            raise exception.ImageUnacceptable(image_id=image_id or '',
                                              reason='the instance has no image to boot from')
        key = (str(image_id).lower(), int(root_size_gb) if root_size_gb else None)
        if reuse_known:
            with self._seen_lock:
                known = self._known.get(key)
            if known is not None:
                self._mark_seen([known.path])
                return known
        trusted_certs = _field(instance, 'trusted_certs')
        names = [image_id]
        if root_size_gb:
            names.append(f'{image_id}_{int(root_size_gb)}')
        with self._image_lock(image_id):
            listed = self._list(names)
            image = self._pick(listed, image_id)
            if image is None:
                image = self._download(context, image_id, disk_format, trusted_certs)
            base = image
            if root_size_gb and image.format != 'iso':
                image = self._fit_root(image, int(root_size_gb), listed)
            self._mark_seen([base.path, image.path])
            with self._seen_lock:
                self._known[key] = image
        return image

    def forget(self, image_id: str) -> None:
        """Drop what :meth:`get_cached_image` remembers of ``image_id`` (its file is gone)."""
        with self._seen_lock:
            self._known = {k: v for k, v in self._known.items() if k[0] != image_id.lower()}

    def cache_image(self, context: Any, image_id: str) -> bool:
        """Pre-cache ``image_id`` (nova's aggregate image pre-caching).

        True when it was downloaded now, False when it was already cached.
        """
        with self._image_lock(image_id):
            if self._pick(self._list([image_id]), image_id) is not None:
                return False
            self._download(context, image_id, None, None)
            return True

    def _image_lock(self, image_id: str) -> contextlib.AbstractContextManager[None]:
        return self._coordinator.lock(f'image-{image_id}')

    def _list(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Get-CachedImage of ``names``: lower-case file name -> entry."""
        with errors.translate(operation='list cached images'):
            result = self._bridge.call('Get-CachedImage',
                                       {'BasePath': self.base_dir, 'Name': list(names)})
        return {entry['name'].lower(): entry for entry in result['images']}

    def _pick(self, listed: dict[str, dict[str, Any]], image_id: str) -> CachedImage | None:
        found = [listed[f'{image_id}.{fmt}'.lower()] for fmt in FORMATS
                 if f'{image_id}.{fmt}'.lower() in listed]
        if not found:
            return None
        if len(found) > 1:
            LOG.warning('Image %s is cached as %s; using %s', image_id,
                        ', '.join(e['name'] for e in found), found[0]['name'])
        entry = found[0]
        if entry['virtual_size_bytes'] is None:
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=f"the cached file {entry['path']} cannot be read by Hyper-V (damaged, "
                       'or still being written by another compute service); remove it '
                       'to download the image again')
        return CachedImage(entry['path'], entry['format'], entry['virtual_size_bytes'],
                           image_id)

    def _download(self, context: Any, image_id: str, disk_format: str | None,
                  trusted_certs: Any) -> CachedImage:
        if not disk_format:
            disk_format = images.get_info(context, image_id).get('disk_format')
        if disk_format and disk_format not in FORMATS:
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=f'its disk_format is {disk_format}; Hyper-V boots vhd, vhdx and iso '
                       'images')
        base = self.base_dir
        staged = self._files.stage(base, image_id)
        try:
            LOG.info('Downloading image %s into the image cache %s', image_id, base)
            started = time.monotonic()
            images.fetch(context, image_id, staged, trusted_certs=trusted_certs)
            try:
                info = inspect_image_file(staged)
            except ImageFormatError as exc:
                raise exception.ImageUnacceptable(image_id=image_id, reason=str(exc)) from None
            if disk_format and disk_format != info.format:
                raise exception.ImageUnacceptable(
                    image_id=image_id,
                    reason=f'its disk_format is {disk_format} but the file is a {info.format}')
            path = self._files.path.join(base, f'{image_id}.{info.format}')
            self._files.publish(staged, path, info)
        finally:
            self._files.discard(staged)
        LOG.info('Cached image %s as %s (%s, %d bytes virtual) in %.1f s', image_id, path,
                 info.format, info.virtual_size_bytes, time.monotonic() - started)
        return CachedImage(path, info.format, info.virtual_size_bytes, image_id)

    def _fit_root(self, image: CachedImage, root_gb: int,
                  listed: dict[str, dict[str, Any]]) -> CachedImage:
        root_bytes = root_gb * GIB
        if root_bytes < image.virtual_size_bytes:
            raise exception.FlavorDiskSmallerThanImage(flavor_size=root_bytes,
                                                       image_size=image.virtual_size_bytes)
        if not (self._conf.use_cow_images and image.format == 'vhd'
                and root_bytes > image.virtual_size_bytes):
            return image
        name = f'{image.image_id}_{root_gb}.vhd'
        entry = listed.get(name.lower())
        if entry is not None and entry['virtual_size_bytes'] is not None:
            return CachedImage(entry['path'], 'vhd', entry['virtual_size_bytes'],
                               image.image_id)
        destination = self._files.path.join(self._files.path.dirname(image.path), name)
        LOG.info('Caching %s grown to %d GB for copy-on-write root disks', image.path, root_gb)
        with errors.translate(operation='grow a cached VHD image'):
            result = self._bridge.call('Copy-CachedImage', {
                'SourcePath': image.path, 'DestinationPath': destination,
                'SizeBytes': root_bytes})
        return CachedImage(result['path'], result['format'], result['virtual_size_bytes'],
                           image.image_id)

    def _mark_seen(self, paths: Iterable[str], when: float | None = None) -> None:
        now = self._clock() if when is None else when
        with self._seen_lock:
            for path in paths:
                name = self._files.path.basename(path).lower()
                self._seen[name] = max(now, self._seen.get(name, 0.0))

    # -- the periodic task -----------------------------------------------------------

    def update(self, context: Any, all_instances: Iterable[Any]) -> dict[str, list[str]]:
        """Remove cached images no instance uses (``manage_image_cache``).

        ``all_instances`` are the instances of every compute service sharing
        ``instances_path``.  A file stays while an instance uses its image
        (the base image and its grown copies), while the host reports it in
        use, for HANDED_OUT_GRACE after a spawn got it, and until it has been
        unused for ``[image_cache] remove_unused_original_minimum_age_seconds``
        (grown copies, and copies a crash left unfinished whatever their
        image: ``remove_unused_resized_minimum_age_seconds``).  Images whose
        lock is held (being downloaded or copied) are left for the next run.
        Returns the names removed and kept (for logs and tests).
        """
        opts = self._conf.image_cache
        if not opts.remove_unused_base_images:
            LOG.debug('[image_cache] remove_unused_base_images is off; not cleaning %s',
                      self.base_dir)
            return {'removed': [], 'kept': []}
        now = self._clock()
        used = {str(ref).lower() for ref in (_field(i, 'image_ref') for i in all_instances)
                if ref}
        with errors.translate(operation='list cached images'):
            listing = self._bridge.call('Get-CachedImage', {'BasePath': self.base_dir})
        entries = listing['images'] if listing['exists'] else []
        names = {entry['name'].lower() for entry in entries}
        with self._seen_lock:
            self._seen = {k: v for k, v in self._seen.items() if k in names}
            self._known = {k: v for k, v in self._known.items()
                           if self._files.path.basename(v.path).lower() in names}
        kept, candidates = [], []
        for entry in entries:
            name = entry['name']
            image_id, resized_gb, partial = split_cache_name(name)
            # An unfinished copy is garbage even when its image is in use.
            if not partial and image_id.lower() in used or entry['in_use']:
                self._mark_seen([name], now)
                kept.append(name)
                continue
            min_age = (opts.remove_unused_resized_minimum_age_seconds
                       if resized_gb is not None or partial
                       else opts.remove_unused_original_minimum_age_seconds)
            with self._seen_lock:
                seen = self._seen.get(name.lower())
            last = max([t for t in (_parse_time(entry['last_write_time']),
                                    _parse_time(entry['last_access_time']), seen) if t]
                       or [now])
            if seen is not None and now - seen < HANDED_OUT_GRACE or now - last < min_age:
                LOG.debug('Cached image %s is unused but only %d s old; keeping it', name,
                          now - last)
                kept.append(name)
                continue
            candidates.append((image_id, name))
        removed = self._remove(candidates)
        kept.extend(name for _, name in candidates if name not in removed)
        return {'removed': removed, 'kept': sorted(kept)}

    def _remove(self, candidates: list[tuple[str, str]]) -> list[str]:
        """One Remove-CachedImage for the candidates whose image lock is free right now."""
        if not candidates:
            return []
        with contextlib.ExitStack() as stack:
            names = []
            for image_id in sorted({image_id for image_id, _ in candidates}):
                try:
                    stack.enter_context(self._coordinator.lock(f'image-{image_id}', timeout=0))
                except coordination.LockTimeout:
                    LOG.debug('Image %s is busy (being cached or spawned); not removing it',
                              image_id)
                    continue
                names.extend(name for i, name in candidates if i == image_id)
            if not names:
                return []
            with errors.translate(operation='remove cached images'):
                result = self._bridge.call('Remove-CachedImage',
                                           {'BasePath': self.base_dir, 'Name': names})
        removed = [item['name'] for item in result['removed']]
        gone = {name.lower() for name in removed}
        with self._seen_lock:
            self._known = {k: v for k, v in self._known.items()
                           if self._files.path.basename(v.path).lower() not in gone}
        for name in removed:
            LOG.info('Removed the unused cached image %s', name)
        for item in result['skipped']:
            LOG.info('Kept the cached image %s: %s%s', item['name'], item['reason'],
                     f" ({item['message'] or ', '.join(item['used_by'])})"
                     if item['message'] or item['used_by'] else '')
        return removed
