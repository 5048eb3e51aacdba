"""Small, valid disk image files: what a Glance stand-in serves.

The demo and the tests feed these to the image cache, which inspects the
bytes exactly as it does a real Glance download.  They are built from the
file format specifications (MS-VHD, MS-VHDX, ECMA-119), independently of the
driver's own reading of them.  A fixed VHD is a
:class:`Sparse` file, so a multi-GB disk costs nothing on disk.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import uuid

import pycdlib

MIB = 1024 ** 2

# MS-VHDX GUIDs (region table and metadata items), as the specification names them.
VHDX_REGION_TABLES = (192 * 1024, 256 * 1024)    # primary, backup
VHDX_REGION_BAT = uuid.UUID('2dc27766-f623-4200-9d64-115e9bfd4a08')
VHDX_REGION_METADATA = uuid.UUID('8b7ca206-4790-4b9a-b8fe-575f050f886e')
VHDX_FILE_PARAMETERS = uuid.UUID('caa16737-fa36-4d43-b3b6-33f0aa44e76b')
VHDX_VIRTUAL_DISK_SIZE = uuid.UUID('2fa54224-cd1b-4876-b211-5dbed83bf4b8')
VHDX_LOGICAL_SECTOR_SIZE = uuid.UUID('8141bf1d-a96f-4709-ba47-f233a8faab5f')


def vhd_footer(size: int, disk_type: int = 2) -> bytes:
    """A VHD footer (big-endian) with a correct checksum."""
    # Creator "win " (Hyper-V): readers take the size from the footer, not the CHS geometry.
    fields = struct.pack('>8sIIQI4sI4sQQIII16sB427s', b'conectix', 2, 0x00010000,
                         0xFFFFFFFFFFFFFFFF if disk_type == 2 else 512, 0, b'win ', 0x000A0000,
                         b'Wi2k', size, size, 0, disk_type, 0, uuid.uuid4().bytes, 0,
                         b'\0' * 427)
    checksum = ~sum(fields) & 0xFFFFFFFF
    return fields[:64] + struct.pack('>I', checksum) + fields[68:]


@dataclasses.dataclass(frozen=True)
class Sparse:
    """``zeros`` zero bytes then ``tail``, written as a sparse file: a 1 GiB disk costs nothing."""

    zeros: int
    tail: bytes

    def __len__(self) -> int:
        return self.zeros + len(self.tail)

    def write_to(self, path: str) -> None:
        with open(path, 'wb') as f:
            f.truncate(self.zeros)
            f.seek(self.zeros)
            f.write(self.tail)


def fixed_vhd(size: int) -> Sparse:
    return Sparse(size, vhd_footer(size, 2))


def dynamic_vhd(size: int) -> bytes:
    """Footer copy, dynamic header, an empty BAT, footer: what a blank dynamic VHD holds."""
    footer = vhd_footer(size, 3)
    entries = -(-size // (2 * MIB))
    fields = struct.pack('>8sQQIIII16sII512s192s256s', b'cxsparse', 0xFFFFFFFFFFFFFFFF,
                         512 + 1024, 0x00010000, entries, 2 * MIB, 0, bytes(16), 0, 0,
                         bytes(512), bytes(192), bytes(256))
    checksum = ~sum(fields) & 0xFFFFFFFF
    header = fields[:36] + struct.pack('>I', checksum) + fields[40:]
    bat = b'\xff' * (4 * entries + (-4 * entries) % 512)
    return footer + header + bat + footer


def vhdx(size: int, *, fixed: bool = False, has_parent: bool = False, sector: int = 512,
         unknown_required: bool = False) -> bytes:
    """A minimal VHDX: identifier, region table, metadata table and items (MS-VHDX)."""
    meta_at, data_at = 1 * MIB, 1 * MIB + 64 * 1024
    buf = bytearray(data_at + 4096)
    buf[0:8] = b'vhdxfile'
    regions = [(VHDX_REGION_BAT, 2 * MIB, 1 * MIB, 1),
               (VHDX_REGION_METADATA, meta_at, 1 * MIB, 1)]
    table = struct.pack('<4sIII', b'regi', 0, len(regions), 0) + b''.join(
        struct.pack('<16sQII', guid.bytes_le, offset, length, required)
        for guid, offset, length, required in regions)
    for at in VHDX_REGION_TABLES:
        buf[at:at + len(table)] = table
    items = [(VHDX_FILE_PARAMETERS,
              struct.pack('<II', 32 * MIB, (1 if fixed else 0) | (2 if has_parent else 0))),
             (VHDX_VIRTUAL_DISK_SIZE, struct.pack('<Q', size)),
             (VHDX_LOGICAL_SECTOR_SIZE, struct.pack('<I', sector))]
    if unknown_required:
        items.append((uuid.uuid4(), b'\0' * 8))
    entries, offset = [], 64 * 1024
    for guid, data in items:
        entries.append(struct.pack('<16sIIII', guid.bytes_le, offset, len(data), 4 | 2, 0))
        at = meta_at + offset
        buf[at:at + len(data)] = data
        offset += 8
    header = struct.pack('<8sHH20s', b'metadata', 0, len(entries), bytes(20))
    buf[meta_at:meta_at + 32 + 32 * len(entries)] = header + b''.join(entries)
    return bytes(buf)


def iso() -> bytes:
    image = pycdlib.PyCdlib()
    image.new(interchange_level=3, joliet=3, vol_ident='INSTALL')
    data = b'installer'
    image.add_fp(io.BytesIO(data), len(data), '/README.TXT;1', joliet_path='/readme.txt')
    out = io.BytesIO()
    image.write_fp(out)
    image.close()
    return out.getvalue()




def materialise(data: bytes | Sparse, path: str) -> None:
    """Write ``data`` (bytes or a :class:`Sparse` file) to ``path``."""
    if isinstance(data, Sparse):
        data.write_to(path)
    else:
        with open(path, 'wb') as f:
            f.write(data)
