"""Files, folders, volumes and virtual hard disks of the simulated host.

Every file takes room on its volume (``Volume.used``); creating or growing
one fails with Windows' "There is not enough space on the disk." when the
volume is full.  A disk attached to an active VM (and every parent in its
differencing chain) is open, so it cannot be deleted, moved or re-parented,
exactly like a file Hyper-V's worker process holds.
"""

from __future__ import annotations

import re
import struct
import time
import uuid

from psdriver.sim import paths
from psdriver.sim.errors import (
    IO_EXCEPTION, SimError, disk_full, file_exists, file_in_use, invalid_argument,
    path_not_found)
from psdriver.sim.state import GIB, MIB, Disk, FileEntry, PendingMerge, VhdInfo, Volume
from psdriver.sim.txn import HostBase, reads, writes

VHD_EXTENSIONS = {'.vhd': 'VHD', '.avhd': 'VHD', '.vhdx': 'VHDX', '.avhdx': 'VHDX'}
MAX_VHD_SIZE = {'VHD': 2040 * GIB, 'VHDX': 64 * 1024 * GIB}
#: Initial file size of an empty dynamic or differencing disk.
EMPTY_VHD_FILE = {'VHD': 64 * 1024, 'VHDX': 4 * MIB}
#: Footer (VHD) or header and metadata (VHDX) on top of a fixed disk's data.
FIXED_OVERHEAD = {'VHD': 512, 'VHDX': 4 * MIB}
#: Differencing disks a checkpoint created (Checkpoint-VM names them ``.avhd``/``.avhdx``).
_CHECKPOINT_DISK = re.compile(r'\.avhdx?$', re.IGNORECASE)
#: VM states in which the VM's worker process holds its disks open.
ACTIVE_STATES = frozenset({'Running', 'Paused', 'Starting', 'Stopping'})


def parse_fixed_vhd(data: bytes) -> VhdInfo | None:
    """The VhdInfo of bytes that form a fixed VHD (data + 512-byte footer), else None.

    Checks what Hyper-V checks when it opens one: the ``conectix`` cookie,
    disk type 2 (fixed), the footer checksum and a current size equal to
    the data part.
    """
    if len(data) < 1024 or len(data) % 512:
        return None
    footer = data[-512:]
    if footer[:8] != b'conectix':
        return None
    size, = struct.unpack('>Q', footer[48:56])
    disk_type, checksum = struct.unpack('>II', footer[60:68])
    expected = ~(sum(footer[:64]) + sum(footer[68:])) & 0xFFFFFFFF
    if disk_type != 2 or checksum != expected or size != len(data) - 512:
        return None
    return VhdInfo(format='VHD', vhd_type='Fixed', size=size,
                   disk_identifier=str(uuid.UUID(bytes=bytes(footer[68:84]))).upper(),
                   block_size=0)


def vhd_format(path: str) -> str:
    ext = path[path.rfind('.'):].lower() if '.' in paths.basename(path) else ''
    try:
        return VHD_EXTENSIONS[ext]
    except KeyError:
        raise invalid_argument(
            f"The file '{path}' is not a virtual hard disk: the extension must be .vhd or "
            '.vhdx.', path) from None


class StorageRules(HostBase):

    # -- volumes ---------------------------------------------------------------

    def _volume_key(self, path: str) -> str:
        return paths.volume_key(self._state.volumes, path)

    def _volume(self, path: str) -> Volume:
        root = paths.root(path)
        vol = self._state.volumes.get(self._volume_key(path))
        if vol is None:
            if root.startswith('\\\\'):
                raise SimError(f"The network path '{root}' was not found.", 'ObjectNotFound',
                               'NetworkPathNotFound', IO_EXCEPTION, path)
            raise SimError(f"Cannot find drive. A drive with the name '{root[:1]}' does not "
                           'exist.', 'ObjectNotFound', 'DriveNotFound', IO_EXCEPTION, path)
        return vol

    @reads
    def volume_free(self, path: str) -> int:
        """Free bytes on the volume holding ``path``."""
        vol = self._volume(paths.normalize(path))
        return vol.capacity - vol.used

    @reads
    def volume_capacity(self, path: str) -> int:
        return self._volume(paths.normalize(path)).capacity

    @writes
    def add_volume(self, root: str, size_gb: float) -> Volume:
        """Add a volume (``'D:'``) or a file share (``'\\\\srv\\share'``)."""
        norm = paths.normalize(root)
        if not paths.is_root(norm):
            raise invalid_argument(f"'{root}' is not a volume root.", root)
        vol_root = paths.root(norm)
        if vol_root.lower() in self._state.volumes:
            raise SimError(f"The volume '{vol_root}' already exists.", 'ResourceExists',
                           'VolumeExists', IO_EXCEPTION, root)
        vol = Volume(root=vol_root, capacity=int(size_gb * GIB))
        self._state.volumes[vol_root.lower()] = vol
        self._state.files[paths.key(norm)] = FileEntry(norm, True, created=time.time())
        return vol

    def _allocate(self, path: str, delta: int) -> None:
        """Take (or give back, if negative) ``delta`` bytes on the volume of ``path``."""
        vol = self._volume(path)
        if delta > 0 and vol.used + delta > vol.capacity:
            raise disk_full(path, delta, vol.capacity - vol.used)
        vol.used += delta

    def _find_disk(self, number: int) -> Disk | None:
        """A physical disk the host has found, by number (iSCSI and FC LUNs appear as these)."""
        for disk in self._state.iscsi.disks:
            if disk.number == number and disk.hidden_rescans <= 0:
                return disk
        return None

    def smb_access_denied(self, path: str) -> bool:
        """Whether Hyper-V cannot open ``path``: on a share wanting credentials, unmapped."""
        norm = paths.normalize(path)
        if not norm.startswith('\\\\'):
            return False
        share = paths.root(norm).lower()
        return share in self._state.iscsi.smb_credentials and not any(
            m.remote_path.lower() == share for m in self._state.smb_mappings)

    def _require_room(self, path: str, size: int) -> None:
        """Fail as a write of ``size`` bytes would, without taking the room yet."""
        vol = self._volume(path)
        if vol.used + size > vol.capacity:
            raise disk_full(path, size, vol.capacity - vol.used)

    # -- files and folders -----------------------------------------------------

    def _entry(self, path: str) -> FileEntry | None:
        return self._state.files.get(paths.key(path))

    def _require(self, path: str) -> FileEntry:
        entry = self._entry(path)
        if entry is None:
            raise path_not_found(path)
        return entry

    def _require_parent_dir(self, path: str) -> None:
        parent = paths.parent(path)
        entry = self._entry(parent) if parent else None
        if entry is None or not entry.is_dir:
            self._volume(path)
            raise SimError(f"Could not find a part of the path '{path}'.", 'ObjectNotFound',
                           'DirectoryNotFound', 'System.IO.DirectoryNotFoundException', path)

    @reads
    def get_item(self, path: str) -> FileEntry:
        """The file or folder at ``path`` (``Get-Item``)."""
        return self._require(paths.normalize(path))

    @reads
    def exists(self, path: str) -> bool:
        norm = paths.normalize(path)
        return self._entry(norm) is not None

    @reads
    def list_dir(self, path: str) -> list[FileEntry]:
        """Direct children of a folder (``Get-ChildItem``), sorted by name."""
        norm = paths.normalize(path)
        entry = self._require(norm)
        if not entry.is_dir:
            return [entry]
        dir_key = paths.key(norm)
        children = [e for k, e in self._state.files.items()
                    if paths.is_under(k, dir_key) and paths.key(paths.parent(e.path)) == dir_key]
        return sorted(children, key=lambda e: e.path.lower())

    @writes
    def make_dir(self, path: str) -> FileEntry:
        """Create a folder and any missing parents (``New-Item -ItemType Directory -Force``)."""
        norm = paths.normalize(path)
        self._volume(norm)
        missing = []
        current: str | None = norm
        while current is not None:
            entry = self._entry(current)
            if entry is not None:
                if not entry.is_dir:
                    raise SimError(f"An item with the specified name {current} already exists.",
                                   'ResourceExists', 'DirectoryExist', IO_EXCEPTION, current)
                break
            missing.append(current)
            current = paths.parent(current)
        now = time.time()
        for item in reversed(missing):
            self._state.files[paths.key(item)] = FileEntry(item, True, created=now)
        return self._require(norm)

    @writes
    def add_file(self, path: str, size: int, *, vhd: VhdInfo | None = None,
                 overwrite: bool = False) -> FileEntry:
        """Create a file of ``size`` bytes (an uploaded image, an ISO, a log...)."""
        norm = paths.normalize(path)
        if size < 0:
            raise invalid_argument('A file size cannot be negative.', path)
        self._require_parent_dir(norm)
        old = self._entry(norm)
        if old is not None:
            if old.is_dir or not overwrite:
                raise file_exists(norm)
            self._check_not_open(norm)
        self._allocate(norm, size - (old.size if old else 0))
        entry = FileEntry(norm, False, size=size, created=time.time(), vhd=vhd)
        self._state.files[paths.key(norm)] = entry
        return entry

    @writes
    def write_file(self, path: str, data: bytes, *, keep_content: bool = False) -> FileEntry:
        """``[IO.File]::WriteAllBytes``: create or overwrite a file with ``data``.

        A ``.vhd`` file whose bytes are a valid fixed VHD becomes a virtual
        disk (a config drive built by the caller); other files are plain.
        The bytes themselves are kept only with ``keep_content`` (config
        drives carry secrets and are never stored).
        """
        norm = paths.normalize(path)
        vhd = parse_fixed_vhd(data) if norm.lower().endswith('.vhd') else None
        entry = self.add_file(norm, len(data), vhd=vhd, overwrite=True)
        if keep_content:
            entry.content = data.decode('latin-1')
        return entry

    @writes
    def append_file(self, path: str, data: bytes) -> FileEntry:
        """Append ``data`` to a file (created if missing) whose content the host keeps."""
        norm = paths.normalize(path)
        entry = self._entry(norm)
        if entry is None:
            entry = self.add_file(norm, 0)
            entry.content = ''
        elif entry.is_dir:
            raise file_exists(norm)
        self._allocate(entry.path, len(data))
        entry.content = (entry.content if entry.content is not None
                         else '\0' * entry.size) + data.decode('latin-1')
        entry.size += len(data)
        entry.modified = time.time()
        return entry

    @reads
    def read_file(self, path: str, offset: int = 0, count: int | None = None) -> bytes:
        """Bytes of a file; a file whose content is not simulated reads as zeros."""
        entry = self._require(paths.normalize(path))
        if entry.is_dir:
            raise SimError(f"Access to the path '{entry.path}' is denied.", 'PermissionDenied',
                           'UnauthorizedAccess', 'System.UnauthorizedAccessException',
                           entry.path)
        end = entry.size if count is None else min(entry.size, offset + count)
        if entry.content is None:
            return b'\0' * max(0, end - offset)
        return entry.content[offset:end].encode('latin-1')

    @writes
    def touch(self, path: str, *, modified: float | None = None,
              created: float | None = None) -> FileEntry:
        """Set a file's times (tests: an image cache entry that is old)."""
        entry = self._require(paths.normalize(path))
        if modified is not None:
            entry.modified = modified
        if created is not None:
            entry.created = created
        return entry

    @writes
    def set_file_size(self, path: str, size: int) -> FileEntry:
        """Grow or shrink a file (a dynamic disk filling up, a log growing)."""
        entry = self._require(paths.normalize(path))
        if entry.is_dir or size < 0:
            raise invalid_argument(f"'{entry.path}' is not a file or the size is negative.",
                                   entry.path)
        self._allocate(entry.path, size - entry.size)
        if entry.content is not None:
            entry.content = entry.content[:size].ljust(size, '\0')
        entry.size = size
        entry.modified = time.time()
        return entry

    @writes
    def copy_file(self, source: str, destination: str, *, overwrite: bool = False) -> FileEntry:
        """``Copy-Item``: the copy takes its own room; VHD metadata travels with it."""
        src = self._require(paths.normalize(source))
        if src.is_dir:
            raise invalid_argument(f"'{src.path}' is a folder; copy files only.", src.path)
        dst = paths.normalize(destination)
        dst_entry = self._entry(dst)
        if dst_entry is not None and dst_entry.is_dir:
            dst = paths.join(dst, paths.basename(src.path))
        if paths.key(dst) == paths.key(src.path):
            raise SimError(f"Cannot overwrite the item {src.path} with itself.",
                           'WriteError', 'CopyError', IO_EXCEPTION, src.path)
        vhd = VhdInfo(**src.vhd.__dict__) if src.vhd else None
        copy = self.add_file(dst, src.size, vhd=vhd, overwrite=overwrite)
        copy.content = src.content
        return copy

    @writes
    def move_file(self, source: str, destination: str) -> FileEntry:
        """``Move-Item`` of a file; the source must not be open."""
        src = self._require(paths.normalize(source))
        if src.is_dir:
            raise invalid_argument(f"'{src.path}' is a folder; move files only.", src.path)
        self._check_not_open(src.path)
        self._check_no_children(src.path)
        dst = paths.normalize(destination)
        dst_entry = self._entry(dst)
        if dst_entry is not None and dst_entry.is_dir:
            dst = paths.join(dst, paths.basename(src.path))
        if self._entry(dst) is not None:
            raise file_exists(dst)
        self._require_parent_dir(dst)
        if self._volume_key(dst) != self._volume_key(src.path):
            self._allocate(dst, src.size)
            self._allocate(src.path, -src.size)
        del self._state.files[paths.key(src.path)]
        src.path = dst
        self._state.files[paths.key(dst)] = src
        return src

    @writes
    def move_dir(self, source: str, destination: str) -> FileEntry:
        """``Move-Item`` of a folder on its volume: a rename of it and all below it.

        Files held open by an active VM refuse; the destination must not exist.
        """
        src = self._require(paths.normalize(source))
        if not src.is_dir or paths.is_root(src.path):
            raise invalid_argument(f"'{src.path}' is not a folder that can move.", src.path)
        dst = paths.normalize(destination)
        if self._entry(dst) is not None:
            raise file_exists(dst)
        self._require_parent_dir(dst)
        if self._volume_key(dst) != self._volume_key(src.path):
            raise invalid_argument('Source and destination path must have identical roots. '
                                   'Move will not work across volumes.', dst)
        src_key = paths.key(src.path)
        moving = [(k, e) for k, e in self._state.files.items()
                  if k == src_key or paths.is_under(k, src_key)]
        held = self._open_files()
        for k, entry in moving:
            if not entry.is_dir and k in held:
                raise file_in_use(entry.path)
        # As on Windows: nothing else learns of the move (a VM's drives or a
        # differencing disk's parent path naming a moved file now point nowhere).
        old_prefix = src.path
        for k, _entry in moving:
            del self._state.files[k]
        for _k, entry in moving:
            entry.path = dst + entry.path[len(old_prefix):]
            self._state.files[paths.key(entry.path)] = entry
        return self._require(dst)

    @writes
    def remove_item(self, path: str, *, recurse: bool = False) -> None:
        """``Remove-Item``; a folder needs ``recurse`` unless empty; open files refuse."""
        self._settle_merges()
        norm = paths.normalize(path)
        entry = self._require(norm)
        if paths.is_root(norm):
            raise invalid_argument(f"Cannot remove the volume root '{norm}'.", norm)
        victims = [entry]
        if entry.is_dir:
            dir_key = paths.key(norm)
            below = [e for k, e in self._state.files.items() if paths.is_under(k, dir_key)]
            if below and not recurse:
                raise SimError(f"The directory is not empty. : '{norm}'", 'WriteError',
                               'DirectoryNotEmpty', IO_EXCEPTION, norm)
            victims.extend(below)
        held = self._open_files()
        for victim in victims:
            if not victim.is_dir and paths.key(victim.path) in held:
                raise file_in_use(victim.path)
        for victim in victims:
            if not victim.is_dir:
                self._allocate(victim.path, -victim.size)
            del self._state.files[paths.key(victim.path)]

    # -- open files ------------------------------------------------------------

    def _open_files(self, exclude_vm: str | None = None) -> dict[str, str]:
        """Files held open by active VMs: key -> name of the VM that writes/reads it.

        A disk attached to an active VM is open for writing; its parents are
        open for reading (and so are ISOs in DVD drives).
        """
        held: dict[str, str] = {}
        now = time.time()
        for merge in self._state.pending_merges:
            if merge.ready_at > now:
                for link in merge.chain:
                    held.setdefault(paths.key(link), 'a checkpoint merge')
        for vm in self._state.vms.values():
            if vm.state not in ACTIVE_STATES or vm.name.lower() == exclude_vm:
                continue
            for drive in vm.drives:
                if drive.path:
                    for link in self._chain_keys(drive.path):
                        held.setdefault(link, vm.name)
        return held

    def _start_checkpoint_merge(self, disk_paths: list[str]) -> None:
        """Remove-VM of a VM with checkpoints: merge each disk's ``.avhdx`` chain later.

        The chain merges, in the background, into the first disk below it that
        no checkpoint made.
        """
        for path in disk_paths:
            chain = []
            current: str | None = path
            while current is not None and _CHECKPOINT_DISK.search(current):
                entry = self._state.files.get(paths.key(current))
                if entry is None or entry.vhd is None:
                    break
                chain.append(entry.path)
                current = entry.vhd.parent_path
            if chain and current is not None:
                self._state.pending_merges.append(PendingMerge(
                    chain + [current], time.time() + self._state.config.checkpoint_merge_seconds))
        self._settle_merges()

    def _settle_merges(self) -> None:
        """Finish the merges whose time has come: the ``.avhdx`` files fold into their disk."""
        now = time.time()
        for merge in [m for m in self._state.pending_merges if m.ready_at <= now]:
            self._state.pending_merges.remove(merge)
            target = self._state.files.get(paths.key(merge.chain[-1]))
            for link in reversed(merge.chain[:-1]):
                child = self._state.files.get(paths.key(link))
                if child is not None and target is not None and target.vhd is not None:
                    target = self._merge_into_parent(child, target)

    @writes
    def settle_checkpoint_merges(self) -> bool:
        """Apply finished merges; True while one is still running."""
        self._settle_merges()
        return bool(self._state.pending_merges)

    def _chain_keys(self, path: str) -> list[str]:
        keys = []
        current: str | None = path
        while current is not None and len(keys) < 64:
            k = paths.key(current)
            keys.append(k)
            entry = self._state.files.get(k)
            current = entry.vhd.parent_path if entry and entry.vhd else None
        return keys

    def _check_not_open(self, path: str) -> None:
        if paths.key(path) in self._open_files():
            raise file_in_use(path)

    def _check_no_children(self, path: str) -> None:
        """Moving a parent would leave its differencing children pointing nowhere."""
        k = paths.key(path)
        for entry in self._state.files.values():
            if entry.vhd and entry.vhd.parent_path and paths.key(entry.vhd.parent_path) == k:
                raise SimError(
                    f"Cannot move '{path}': it is the parent of the differencing disk "
                    f"'{entry.path}'.", 'ResourceBusy', 'ParentInUse', IO_EXCEPTION, path)

    # -- virtual hard disks ----------------------------------------------------

    def _require_vhd(self, path: str) -> FileEntry:
        entry = self._require(path)
        if entry.vhd is None:
            raise SimError(f"The file '{entry.path}' is not a virtual hard disk file.",
                           'InvalidData', 'NotAVirtualHardDisk', target=entry.path)
        return entry

    @reads
    def get_vhd(self, path: str) -> FileEntry:
        """The VHD/VHDX at ``path`` (its ``.vhd`` holds format, type, size, parent)."""
        return self._require_vhd(paths.normalize(path))

    @reads
    def vhd_chain(self, path: str) -> list[FileEntry]:
        """The disk and its parents, child first; stops at a missing parent."""
        chain = []
        for k in self._chain_keys(paths.normalize(path)):
            entry = self._state.files.get(k)
            if entry is None:
                break
            chain.append(entry)
        return chain

    @reads
    def test_vhd(self, path: str) -> bool:
        """``Test-VHD``: the file is a VHD and its whole parent chain is present."""
        norm = paths.normalize(path)
        entry = self._entry(norm)
        if entry is None or entry.vhd is None:
            return False
        keys = self._chain_keys(norm)
        return all(self._state.files.get(k) is not None and self._state.files[k].vhd
                   for k in keys)

    @reads
    def vhd_children(self, path: str) -> list[FileEntry]:
        """Differencing disks whose parent is ``path``."""
        k = paths.key(paths.normalize(path))
        return [e for e in self._state.files.values()
                if e.vhd and e.vhd.parent_path and paths.key(e.vhd.parent_path) == k]

    def _check_vhd_size(self, fmt: str, size: int, path: str) -> None:
        if not isinstance(size, int) or size <= 0 or size % 512:
            raise invalid_argument(
                f"The size of the virtual hard disk '{path}' must be a positive multiple of "
                '512 bytes.', path)
        if size > MAX_VHD_SIZE[fmt]:
            raise invalid_argument(
                f"The size of the virtual hard disk '{path}' exceeds the maximum "
                f'{MAX_VHD_SIZE[fmt]} bytes of the {fmt} format.', path)

    @writes
    def new_vhd(self, path: str, size: int | None = None, *, fixed: bool = False,
                parent_path: str | None = None, block_size: int = 32 * MIB) -> FileEntry:
        """``New-VHD``: fixed, dynamic (default) or differencing (``parent_path``)."""
        norm = paths.normalize(path)
        fmt = vhd_format(norm)
        if self._entry(norm) is not None:
            raise SimError(f"Failed to create the virtual hard disk. The system failed to "
                           f"create '{norm}': The file exists. (0x80070050).",
                           'ResourceExists', 'FileExists', target=norm)
        parent_norm = None
        if parent_path is not None:
            if fixed:
                raise invalid_argument('A differencing disk cannot be fixed-size.', norm)
            parent_norm = paths.normalize(parent_path)
            parent = self._require_vhd(parent_norm)
            parent_norm = parent.path
            if parent.vhd.format != fmt:
                raise invalid_argument(
                    f"The format of the differencing disk '{norm}' ({fmt}) must match its "
                    f"parent '{parent_norm}' ({parent.vhd.format}).", norm)
            size = parent.vhd.size if size is None else size
            if size < parent.vhd.size:
                raise invalid_argument(
                    f"A differencing disk cannot be smaller than its parent '{parent_norm}'.",
                    norm)
        if size is None:
            raise invalid_argument('New-VHD needs a size for a disk without a parent.', norm)
        self._check_vhd_size(fmt, size, norm)
        if fixed:
            file_size, vhd_type = size + FIXED_OVERHEAD[fmt], 'Fixed'
        else:
            file_size = EMPTY_VHD_FILE[fmt]
            vhd_type = 'Differencing' if parent_norm else 'Dynamic'
        info = VhdInfo(format=fmt, vhd_type=vhd_type, size=size, parent_path=parent_norm,
                       disk_identifier=str(uuid.uuid4()).upper(),
                       block_size=0 if fixed else block_size)
        return self.add_file(norm, file_size, vhd=info)

    @writes
    def resize_vhd(self, path: str, size: int) -> FileEntry:
        """``Resize-VHD`` (grow only).  An open disk grows only if it is a VHDX on SCSI."""
        entry = self._require_vhd(paths.normalize(path))
        fmt = entry.vhd.format
        self._check_vhd_size(fmt, size, entry.path)
        if size < entry.vhd.size:
            raise invalid_argument(
                f"Failed to resize the virtual disk '{entry.path}': the requested size {size} "
                f'is smaller than its current size {entry.vhd.size}.', entry.path)
        holder = self._open_files().get(paths.key(entry.path))
        if holder is not None and not self._online_resizable(entry.path, holder):
            raise SimError(
                f"Failed to resize the virtual disk '{entry.path}': the disk is in use by "
                f"virtual machine '{holder}' and only a VHDX attached to a SCSI controller can "
                'be resized while in use.', 'ResourceBusy', 'FileInUse', target=entry.path)
        if entry.vhd.vhd_type == 'Fixed':
            self._allocate(entry.path, size - entry.vhd.size)
            entry.size += size - entry.vhd.size
        entry.vhd.size = size
        return entry

    def _online_resizable(self, path: str, vm_name: str) -> bool:
        vm = self._state.vms.get(vm_name.lower())
        if vm is None or self._vhd_format_of(path) != 'VHDX':
            return False
        k = paths.key(path)
        return any(d.path and paths.key(d.path) == k and d.controller_type == 'SCSI'
                   for d in vm.drives)

    def _vhd_format_of(self, path: str) -> str | None:
        entry = self._entry(path)
        return entry.vhd.format if entry and entry.vhd else None

    @writes
    def set_vhd_parent(self, path: str, parent_path: str) -> FileEntry:
        """``Set-VHD -ParentPath``: point a differencing disk at a (moved) parent."""
        entry = self._require_vhd(paths.normalize(path))
        if entry.vhd.vhd_type != 'Differencing':
            raise invalid_argument(f"'{entry.path}' is not a differencing disk.", entry.path)
        parent = self._require_vhd(paths.normalize(parent_path))
        if parent.vhd.format != entry.vhd.format:
            raise invalid_argument(
                f"The parent '{parent.path}' has format {parent.vhd.format}; "
                f"'{entry.path}' needs {entry.vhd.format}.", entry.path)
        if paths.key(entry.path) in self._chain_keys(parent.path):
            raise invalid_argument(f"'{parent.path}' cannot be a parent of its own parent.",
                                   entry.path)
        self._check_not_open(entry.path)
        entry.vhd.parent_path = parent.path
        return entry

    @writes
    def convert_vhd(self, path: str, destination: str, vhd_type: str = 'Dynamic') -> FileEntry:
        """``Convert-VHD``: a new standalone disk with the content of the whole chain.

        The source (and its parents) may be in use read-only, as the frozen
        disk of a checkpoint is; the destination's extension picks the format.
        """
        src = self._require_vhd(paths.normalize(path))
        dst = paths.normalize(destination)
        fmt = vhd_format(dst)
        if vhd_type not in ('Dynamic', 'Fixed'):
            raise invalid_argument(f"'{vhd_type}' is not a VHD type Convert-VHD makes here.",
                                   dst)
        if self._entry(dst) is not None:
            raise file_exists(dst)
        self._require_parent_dir(dst)
        if not self.test_vhd(src.path):
            raise SimError(f"The chain of virtual hard disks of '{src.path}' is broken: a "
                           'parent is missing.', 'ObjectNotFound', 'ParentNotFound',
                           IO_EXCEPTION, src.path)
        self._check_vhd_size(fmt, src.vhd.size, dst)
        if vhd_type == 'Fixed':
            size = src.vhd.size + FIXED_OVERHEAD[fmt]
        else:
            data = sum(max(0, e.size - EMPTY_VHD_FILE[e.vhd.format])
                       for e in self.vhd_chain(src.path))
            size = EMPTY_VHD_FILE[fmt] + min(data, src.vhd.size)
        self._allocate(dst, size)
        entry = FileEntry(dst, False, size=size, created=time.time(),
                          vhd=VhdInfo(format=fmt, vhd_type=vhd_type, size=src.vhd.size,
                                      disk_identifier=str(uuid.uuid4()).upper(),
                                      logical_sector_size=src.vhd.logical_sector_size,
                                      physical_sector_size=src.vhd.physical_sector_size))
        self._state.files[paths.key(dst)] = entry
        return entry

    @writes
    def merge_vhd(self, path: str) -> FileEntry:
        """``Merge-VHD`` of a differencing disk into its parent; returns the parent.

        Offline only: neither disk may be open.
        """
        child = self._require_vhd(paths.normalize(path))
        if child.vhd.vhd_type != 'Differencing' or not child.vhd.parent_path:
            raise invalid_argument(f"'{child.path}' is not a differencing disk.", child.path)
        parent = self._require_vhd(child.vhd.parent_path)
        self._check_not_open(child.path)
        self._check_not_open(parent.path)
        return self._merge_into_parent(child, parent)

    def _merge_into_parent(self, child: FileEntry, parent: FileEntry) -> FileEntry:
        """Fold ``child`` into ``parent``: the parent's file grows by the child's data
        (a fixed parent already holds the room), the child's children and every
        drive and snapshot that referred to the child now refer to the parent,
        and the child file is deleted.
        """
        growth = 0
        if parent.vhd.vhd_type != 'Fixed':
            data = child.size - EMPTY_VHD_FILE[child.vhd.format]
            growth = max(0, min(data, parent.vhd.size + FIXED_OVERHEAD[parent.vhd.format]
                                - parent.size))
        self._allocate(parent.path, growth)
        parent.size += growth
        parent.vhd.size = max(parent.vhd.size, child.vhd.size)
        child_key = paths.key(child.path)
        for entry in self._state.files.values():
            if entry.vhd and entry.vhd.parent_path and \
                    paths.key(entry.vhd.parent_path) == child_key:
                entry.vhd.parent_path = parent.path
        self._repoint_drives(child.path, parent.path)
        self._allocate(child.path, -child.size)
        del self._state.files[child_key]
        return parent

    def _repoint_drives(self, old: str, new: str) -> None:
        """Drives and snapshots referring to ``old`` now refer to ``new``."""
        old_key = paths.key(old)
        for vm in self._state.vms.values():
            for drive in vm.drives:
                if drive.path and paths.key(drive.path) == old_key:
                    drive.path = new
            for snap in vm.snapshots:
                for slot, disk in snap.disks.items():
                    if paths.key(disk) == old_key:
                        snap.disks[slot] = new
