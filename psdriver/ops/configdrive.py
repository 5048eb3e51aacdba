"""Config drive images built in Python (pycdlib): no genisoimage, no qemu-img.

The drive is an ISO 9660 image labelled ``config-2`` with Joliet (what
Windows guests and cloudbase-init read) and Rock Ridge (what Linux guests
read) names.  With ``[hyperv] config_drive_cdrom = False`` it is attached as
a hard disk instead, so the ISO is wrapped in a *fixed* VHD: the raw bytes
followed by the 512-byte VHD footer (Microsoft VHD Image Format
Specification, "Hard Disk Footer Format").  That is exactly what
compute-hyperv produced with ``qemu-img convert -O vpc``, minus the tool.
"""

from __future__ import annotations

import io
import struct
import time
import uuid
from typing import Iterable

import pycdlib

VOLUME_LABEL = 'config-2'
_VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z, the VHD timestamp origin
_SECTOR = 512


def build_iso(files: Iterable[tuple[str, bytes]]) -> bytes:
    """Build a config-2 ISO from ``(relative_path, content)`` pairs.

    ``files`` is what ``InstanceMetadata.metadata_for_config_drive()`` yields,
    e.g. ``('openstack/latest/meta_data.json', b'{...}')``.
    """
    iso = pycdlib.PyCdlib()
    # Interchange level 4 (ISO 9660:1999) keeps lower case and '-' in the
    # primary names too, so all three name spaces show the same tree.
    iso.new(interchange_level=4, joliet=3, rock_ridge='1.09', vol_ident=VOLUME_LABEL)
    made: set[str] = set()
    try:
        for rel_path, content in sorted(files):
            parts = [p for p in rel_path.replace('\\', '/').split('/') if p]
            if not parts or any(p in ('.', '..') for p in parts):
                raise ValueError(f'invalid config drive path: {rel_path!r}')
            for depth in range(1, len(parts)):
                directory = '/' + '/'.join(parts[:depth])
                if directory not in made:
                    iso.add_directory(directory, rr_name=parts[depth - 1],
                                      joliet_path=directory)
                    made.add(directory)
            path = '/' + '/'.join(parts)
            data = content if isinstance(content, bytes) else content.encode('utf-8')
            iso.add_fp(io.BytesIO(data), len(data), path, rr_name=parts[-1],
                       joliet_path=path)
        out = io.BytesIO()
        iso.write_fp(out)
        return out.getvalue()
    finally:
        iso.close()


def _chs_geometry(total_sectors: int) -> tuple[int, int, int]:
    """CHS geometry exactly as the VHD specification's appendix computes it."""
    total_sectors = min(total_sectors, 65535 * 16 * 255)
    if total_sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cyl_x_heads = total_sectors // spt
    else:
        spt = 17
        cyl_x_heads = total_sectors // spt
        heads = max((cyl_x_heads + 1023) // 1024, 4)
        if cyl_x_heads >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cyl_x_heads = total_sectors // spt
        if cyl_x_heads >= heads * 1024:
            spt, heads = 63, 16
            cyl_x_heads = total_sectors // spt
    return cyl_x_heads // heads, heads, spt


def vhd_footer(size: int, unique_id: uuid.UUID | None = None,
               timestamp: float | None = None) -> bytes:
    """The 512-byte footer of a fixed VHD whose data part is ``size`` bytes."""
    if size % _SECTOR:
        raise ValueError('a fixed VHD data size must be a multiple of 512 bytes')
    cylinders, heads, spt = _chs_geometry(size // _SECTOR)
    stamp = int((time.time() if timestamp is None else timestamp) - _VHD_EPOCH)
    fields = struct.pack(
        '>8sIIQI4sI4sQQHBBII16sB',
        b'conectix',            # cookie
        0x00000002,             # features: reserved bit always set
        0x00010000,             # file format version 1.0
        0xFFFFFFFFFFFFFFFF,     # data offset: none for a fixed disk
        stamp & 0xFFFFFFFF,     # seconds since 2000-01-01 UTC
        b'psdr',                # creator application
        0x00010000,             # creator version
        b'Wi2k',                # creator host OS
        size,                   # original size
        size,                   # current size
        cylinders, heads, spt,  # disk geometry
        2,                      # disk type: fixed
        0,                      # checksum, filled in below
        (unique_id or uuid.uuid4()).bytes,
        0,                      # saved state
    )
    checksum = (~sum(fields)) & 0xFFFFFFFF
    footer = fields[:64] + struct.pack('>I', checksum) + fields[68:]
    return footer + b'\0' * (_SECTOR - len(footer))


def chs_aligned_size(size: int) -> int:
    """Smallest size >= ``size`` that its own CHS geometry describes exactly.

    Hyper-V reads the footer's current size, but other readers (qemu-img for
    an unknown creator) derive the size from the geometry; padding the data
    to the geometry makes every reader see the same disk.
    """
    sectors = -(-size // _SECTOR)
    candidate = sectors
    while True:
        cylinders, heads, spt = _chs_geometry(candidate)
        if cylinders * heads * spt >= sectors:
            return cylinders * heads * spt * _SECTOR
        candidate += 1


def iso_to_fixed_vhd(iso: bytes) -> bytes:
    """Wrap an ISO image as a fixed VHD (data padded to its CHS geometry)."""
    size = chs_aligned_size(len(iso))
    data = iso + b'\0' * (size - len(iso))
    return data + vhd_footer(size)


def build_config_drive(files: Iterable[tuple[str, bytes]], as_vhd: bool) -> bytes:
    """The drive's bytes: an ISO, or the ISO wrapped as a fixed VHD."""
    iso = build_iso(files)
    return iso_to_fixed_vhd(iso) if as_vhd else iso
