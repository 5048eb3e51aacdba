"""Block and file storage from outside the host: iSCSI, Fibre Channel, MPIO and SMB.

Test set-up describes the storage array (``add_iscsi_target``: a target
behind a portal with LUNs and optional CHAP; ``add_fc_target``: target port
WWNs offering LUNs to the host's HBAs); the host then registers the portal,
logs in (a session) and sees each LUN as a physical disk.  With MPIO
claiming iSCSI, a second session to the same target adds a path to the
existing disks; without it the LUNs show up again as new disks (what
Windows does with multipath software missing).  Fibre Channel LUNs appear
on a rescan (``Update-HostStorageCache``), one disk per target port unless
MPIO claims them ('FC' here stands for the array's entry in
``New-MSDSMSupportedHW``).

What real hosts do and tests need to see:

* new disks come up offline under the default SAN policy (OfflineShared)
  and online under OnlineAll (``HostConfig.san_policy``);
* a LUN may show up only after some rescans (``rescans_needed``);
* disk numbers change across a host reboot (:meth:`IscsiRules.renumber_disks`,
  called by the reboot): pass-through drives follow their disk, a number
  remembered from before points elsewhere;
* a grown LUN (``resize_lun``) shows its new size after a rescan;
* a share may want credentials (``require_smb_credentials``): a global
  mapping with the wrong ones is refused, and Hyper-V cannot open a disk
  file on it without a mapping.
"""

from __future__ import annotations

import fnmatch
import uuid

from psdriver.sim import paths, smb_backend
from psdriver.sim.errors import CIM_EXCEPTION, SimError, invalid_argument
from psdriver.sim.devices import DeviceRules
from psdriver.sim.state import (
    GIB, Disk, FcTarget, IscsiLun, IscsiSession, IscsiTarget, SmbMapping, VhdInfo)
from psdriver.sim.txn import reads, writes

DEFAULT_ISCSI_PORT = 3260


def normalize_portal(portal: str) -> str:
    if not isinstance(portal, str) or not portal.strip():
        raise invalid_argument('The target portal address is empty.', str(portal))
    host, sep, port = portal.strip().rpartition(':')
    if not sep or ']' in port or host.count(':') and not host.startswith('['):
        host, port = portal.strip(), str(DEFAULT_ISCSI_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise invalid_argument(f"'{portal}' has an invalid port.", portal)
    return f'{host.lower()}:{int(port)}'


def normalize_wwn(wwn: str) -> str:
    """A WWN as 16 lower-case hex digits (``50:01:43:80:...`` and upper case accepted)."""
    bare = str(wwn).replace(':', '').replace('-', '').lower()
    if len(bare) != 16 or any(c not in '0123456789abcdef' for c in bare):
        raise invalid_argument(f"'{wwn}' is not a world wide name.", str(wwn))
    return bare


def _iscsi_error(message: str, category: str, error_id: str, target: str) -> SimError:
    return SimError(message, category, error_id, CIM_EXCEPTION, target)


class IscsiRules(DeviceRules):

    # -- the storage array (test set-up) -------------------------------------------

    @staticmethod
    def _new_luns(lun_sizes_gb: list[float], rescans_needed: int) -> list[IscsiLun]:
        return [IscsiLun(lun=i, size=int(size * GIB),
                         serial=f'SIM{uuid.uuid4().hex[:13].upper()}',
                         rescans_needed=rescans_needed)
                for i, size in enumerate(lun_sizes_gb)]

    @writes
    def add_iscsi_target(self, portals: str | list[str], iqn: str,
                         lun_sizes_gb: list[float] = (1,), *, chap_username: str | None = None,
                         chap_secret: str | None = None,
                         rescans_needed: int = 0) -> IscsiTarget:
        """Offer a target with LUNs of the given sizes behind one or more portals.

        ``rescans_needed``: how many ``Update-HostStorageCache`` calls the
        host needs after login before each LUN's disk shows up.
        """
        if isinstance(portals, str):
            portals = [portals]
        target = IscsiTarget(
            iqn=iqn, portals=[normalize_portal(p) for p in portals],
            luns=self._new_luns(lun_sizes_gb, rescans_needed),
            chap_username=chap_username, chap_secret=chap_secret)
        self._state.iscsi.targets.append(target)
        return target

    @writes
    def add_fc_target(self, wwpns: str | list[str], lun_sizes_gb: list[float] = (1,), *,
                      rescans_needed: int = 0) -> FcTarget:
        """Offer LUNs through one or more Fibre Channel target ports (zoned to every HBA)."""
        if isinstance(wwpns, str):
            wwpns = [wwpns]
        target = FcTarget(wwpns=[normalize_wwn(w) for w in wwpns],
                          luns=self._new_luns(lun_sizes_gb, 1 + rescans_needed))
        self._state.iscsi.fc_targets.append(target)
        return target

    @writes
    def resize_lun(self, target: str, lun: int, size_gb: float) -> None:
        """The array grows a LUN (an iSCSI IQN or an FC target WWN); hosts see it on a rescan."""
        for luns, names in self._lun_sets():
            if target.lower() in names:
                for entry in luns:
                    if entry.lun == lun:
                        entry.size = int(size_gb * GIB)
                        return
        raise KeyError(f'no LUN {lun} behind {target}')

    def _lun_sets(self) -> list[tuple[list[IscsiLun], set[str]]]:
        iscsi = self._state.iscsi
        return [(t.luns, {t.iqn.lower()}) for t in iscsi.targets] + \
            [(t.luns, set(t.wwpns)) for t in iscsi.fc_targets]

    # -- initiator side ---------------------------------------------------------------

    @reads
    def initiator_name(self) -> str:
        cfg = self._state.config
        return cfg.iscsi_initiator or \
            f'iqn.1991-05.com.microsoft:{cfg.hostname.lower()}.sim.local'

    @writes
    def set_fc_ports(self, ports: list[dict[str, str]]) -> None:
        """Install Fibre Channel HBA ports ([{'wwnn', 'wwpn'}]) in the host (test set-up)."""
        self._state.config.fc_ports = [{'wwnn': normalize_wwn(p['wwnn']),
                                        'wwpn': normalize_wwn(p['wwpn'])} for p in ports]

    @reads
    def initiator_ports(self) -> list[dict[str, str]]:
        """``Get-InitiatorPort``: the iSCSI initiator and each FC HBA port."""
        ports = [{'instance_name': 'ROOT\\ISCSIPRT\\0000_0', 'connection_type': 'iSCSI',
                  'node_address': self.initiator_name(), 'port_address': 'ISCSI ANY PORT'}]
        for index, port in enumerate(self._state.config.fc_ports):
            ports.append({'instance_name': f'PCI\\VEN_10DF&DEV_F100\\{index}_0',
                          'connection_type': 'Fibre Channel',
                          'node_address': normalize_wwn(port['wwnn']),
                          'port_address': normalize_wwn(port['wwpn'])})
        return ports

    def _new_disk(self, lun: IscsiLun, **where: object) -> Disk:
        iscsi = self._state.iscsi
        disk = Disk(number=iscsi.next_disk_number, serial=lun.serial, size=lun.size,
                    lun=lun.lun, is_offline=self._state.config.san_policy != 'OnlineAll',
                    hidden_rescans=lun.rescans_needed, **where)
        iscsi.next_disk_number += 1
        iscsi.disks.append(disk)
        return disk

    @writes
    def rescan_storage(self) -> int:
        """``Update-HostStorageCache``: pending disks come closer, FC LUNs and new sizes show.

        Returns how many disks are visible afterwards.
        """
        iscsi = self._state.iscsi
        iscsi.rescans += 1
        if self._state.config.fc_ports:
            claimed = 'FC' in iscsi.mpio_claimed_bus_types
            for target in iscsi.fc_targets:
                for lun in target.luns:
                    self._discover_fc_lun(target, lun, claimed)
        sizes = {lun.serial: lun.size for luns, _ in self._lun_sets() for lun in luns}
        for disk in iscsi.disks:
            if disk.hidden_rescans > 0:
                disk.hidden_rescans -= 1
            elif disk.serial in sizes:
                disk.size = sizes[disk.serial]
        return len(self.list_disks())

    def _discover_fc_lun(self, target: FcTarget, lun: IscsiLun, claimed: bool) -> None:
        iscsi = self._state.iscsi
        mine = [d for d in iscsi.disks if d.serial == lun.serial and d.bus_type == 'Fibre Channel']
        for wwpn in target.wwpns:
            if any(wwpn in d.target_wwns for d in mine):
                continue
            if claimed and mine:
                mine[0].target_wwns.append(wwpn)
                continue
            mine.append(self._new_disk(lun, bus_type='Fibre Channel', target_wwns=[wwpn],
                                       mpio=claimed))

    @writes
    def renumber_disks(self) -> None:
        """Disk numbers as a reboot may hand them out: all different, drives follow their disk."""
        iscsi = self._state.iscsi
        renamed: dict[int, int] = {}
        for disk in sorted(iscsi.disks, key=lambda d: -d.number):
            renamed[disk.number] = iscsi.next_disk_number
            disk.number = iscsi.next_disk_number
            iscsi.next_disk_number += 1
        for vm in self._state.vms.values():
            for drive in vm.drives:
                if drive.disk_number is not None and drive.disk_number in renamed:
                    drive.disk_number = renamed[drive.disk_number]

    @writes
    def add_target_portal(self, portal: str) -> str:
        """``New-IscsiTargetPortal``: the portal must answer (a target lives behind it)."""
        norm = normalize_portal(portal)
        if not any(norm in t.portals for t in self._state.iscsi.targets):
            raise _iscsi_error('Connection Failed.', 'ConnectionError', 'PortalUnreachable',
                               portal)
        if norm not in self._state.iscsi.portals:
            self._state.iscsi.portals.append(norm)
        return norm

    @writes
    def remove_target_portal(self, portal: str) -> None:
        norm = normalize_portal(portal)
        if norm not in self._state.iscsi.portals:
            raise _iscsi_error(f"The target portal '{portal}' is not registered.",
                               'ObjectNotFound', 'PortalNotFound', portal)
        self._state.iscsi.portals.remove(norm)

    @reads
    def discovered_targets(self) -> list[IscsiTarget]:
        """``Get-IscsiTarget``: targets behind the registered portals."""
        portals = set(self._state.iscsi.portals)
        return [t for t in self._state.iscsi.targets if portals.intersection(t.portals)]

    @reads
    def iscsi_sessions(self) -> list[IscsiSession]:
        return list(self._state.iscsi.sessions)

    @writes
    def connect_iscsi_target(self, iqn: str, portal: str | None = None, *,
                             chap_username: str | None = None, chap_secret: str | None = None,
                             persistent: bool = False,
                             multipath: bool = False) -> IscsiSession:
        """``Connect-IscsiTarget``; its LUNs become host disks (online, like Windows)."""
        iscsi = self._state.iscsi
        wanted = normalize_portal(portal) if portal else None
        usable = [(t, p) for t in self.discovered_targets() for p in t.portals
                  if t.iqn == iqn and p in iscsi.portals and wanted in (None, p)]
        if not usable:
            raise _iscsi_error('The target name is not found or is marked as hidden from '
                               'login.', 'ObjectNotFound', 'TargetNotFound', iqn)
        target, via = usable[0]
        if target.chap_username is not None and (chap_username, chap_secret) != \
                (target.chap_username, target.chap_secret):
            raise _iscsi_error('Authentication Failure.', 'AuthenticationError',
                               'AuthenticationFailure', iqn)
        existing = [s for s in iscsi.sessions if s.target_iqn == iqn]
        if existing and not multipath:
            raise _iscsi_error('The target has already been logged in via an iSCSI session.',
                               'ResourceExists', 'AlreadyLoggedIn', iqn)
        session = IscsiSession(id=f'{uuid.uuid4().hex[:16]}-{len(iscsi.sessions) + 1:x}',
                               target_iqn=iqn, portal=via, persistent=persistent,
                               auth_type='ONEWAYCHAP' if chap_username else 'NONE')
        iscsi.sessions.append(session)
        claimed = 'iSCSI' in iscsi.mpio_claimed_bus_types
        for lun in target.luns:
            disk = next((d for d in iscsi.disks if d.serial == lun.serial), None) \
                if claimed else None
            if disk is not None:
                disk.session_ids.append(session.id)
                continue
            self._new_disk(lun, target_iqn=iqn, session_ids=[session.id], mpio=claimed)
        return session

    @writes
    def disconnect_iscsi_target(self, iqn: str, session_id: str | None = None) -> None:
        """``Disconnect-IscsiTarget``; refused while a VM uses one of its disks."""
        iscsi = self._state.iscsi
        sessions = [s for s in iscsi.sessions
                    if s.target_iqn == iqn and (session_id is None or s.id == session_id)]
        if not sessions:
            raise _iscsi_error(f"No iSCSI session to target '{iqn}' exists.", 'ObjectNotFound',
                               'SessionNotFound', iqn)
        ids = {s.id for s in sessions}
        gone = [d for d in iscsi.disks if d.session_ids and set(d.session_ids) <= ids]
        for disk in gone:
            for vm in self._state.vms.values():
                if any(dr.disk_number == disk.number for dr in vm.drives):
                    raise _iscsi_error(
                        'The session cannot be logged out since a device on that session is '
                        f"currently being used (disk {disk.number}, virtual machine "
                        f"'{vm.name}').", 'ResourceBusy', 'SessionBusy', iqn)
        for disk in iscsi.disks:
            disk.session_ids = [i for i in disk.session_ids if i not in ids]
        iscsi.disks = [d for d in iscsi.disks if d.session_ids or d.bus_type != 'iSCSI']
        iscsi.sessions = [s for s in iscsi.sessions if s.id not in ids]

    @reads
    def list_disks(self) -> list[Disk]:
        """``Get-Disk`` (external disks only): those the host has found so far."""
        return sorted((d for d in self._state.iscsi.disks if d.hidden_rescans <= 0),
                      key=lambda d: d.number)

    @reads
    def get_disk(self, number: int) -> Disk:
        disk = self._find_disk(number)
        if disk is None:
            raise SimError(f'No MSFT_Disk objects found with property \'Number\' equal to '
                           f"'{number}'.", 'ObjectNotFound', 'CmdletizationQuery_NotFound',
                           CIM_EXCEPTION, str(number))
        return disk

    @writes
    def set_disk_offline(self, number: int, offline: bool = True) -> Disk:
        """``Set-Disk -IsOffline``; a disk given to a VM cannot come back online."""
        disk = self.get_disk(number)
        if not offline and any(d.disk_number == number for vm in self._state.vms.values()
                               for d in vm.drives):
            raise _iscsi_error(f'Disk {number} is attached to a virtual machine.',
                               'ResourceBusy', 'DiskInUse', str(number))
        disk.is_offline = bool(offline)
        return disk

    # -- MPIO -----------------------------------------------------------------------

    def _require_module(self, module: str) -> None:
        if not self._state.config.modules.get(module):
            raise SimError(f"The '{module}' feature is not installed on this host.",
                           'NotInstalled', 'ModuleNotInstalled', 'System.IO.FileNotFoundException',
                           module)

    @writes
    def mpio_claim(self, bus_type: str = 'iSCSI') -> None:
        """``Enable-MSDSMAutomaticClaim -BusType``: later sessions share disks.

        ``'FC'`` stands for the array's hardware id added with
        ``New-MSDSMSupportedHW`` (MPIO has no automatic claim for FC).
        """
        self._require_module('MPIO')
        if bus_type not in self._state.iscsi.mpio_claimed_bus_types:
            self._state.iscsi.mpio_claimed_bus_types.append(bus_type)

    @writes
    def mpio_unclaim(self, bus_type: str = 'iSCSI') -> None:
        self._require_module('MPIO')
        claimed = self._state.iscsi.mpio_claimed_bus_types
        if bus_type in claimed:
            claimed.remove(bus_type)

    @reads
    def mpio_claimed(self, bus_type: str = 'iSCSI') -> bool:
        return bus_type in self._state.iscsi.mpio_claimed_bus_types

    # -- SMB ---------------------------------------------------------------------------

    @writes
    def attach_smb_server(self, share: str, port: int, size_gb: float = 100) -> None:
        """Serve ``\\\\server\\share`` from a real SMB server listening on ``port``.

        Mappings then authenticate against it and the volume scripts read
        its files (see :mod:`psdriver.sim.smb_backend`).
        """
        root = paths.root(paths.normalize(share))
        if root.lower() not in self._state.volumes:
            self.add_volume(root, size_gb)
        self._state.iscsi.smb_servers[root.lower()] = int(port)

    @writes
    def sync_smb_file(self, path: str) -> None:
        """What the host sees of ``path`` on a real share: the file as the server has it."""
        norm = paths.normalize(path)
        port = self._state.iscsi.smb_servers.get(paths.root(norm).lower())
        if port is None:
            return
        found = smb_backend.inspect(norm, port)
        entry = self._entry(norm)
        if found is None:
            if entry is not None:
                self._allocate(norm, -entry.size)
                del self._state.files[paths.key(norm)]
            return
        vhd = VhdInfo(format=found['format'], vhd_type=found['vhd_type'],
                      size=found['virtual_size'])
        if entry is None:
            self.add_file(norm, found['size'], vhd=vhd)
        else:
            self._allocate(norm, found['size'] - entry.size)
            entry.size, entry.vhd = found['size'], vhd

    @writes
    def require_smb_credentials(self, share: str, username: str, password: str) -> None:
        """The share (see ``add_volume``) lets in only this user (test set-up)."""
        key = paths.root(paths.normalize(share)).lower()
        self._state.iscsi.smb_credentials[key] = [username, password]

    @writes
    def new_smb_mapping(self, remote_path: str, local_path: str = '',
                        username: str = '', password: str = '') -> SmbMapping:
        """``New-SmbGlobalMapping``: the share must exist (see ``add_volume``)."""
        remote = paths.normalize(remote_path)
        if not remote.startswith('\\\\') or not paths.is_root(remote):
            raise invalid_argument(f"'{remote_path}' is not a share path (\\\\server\\share).",
                                   remote_path)
        share = paths.root(remote)
        if share.lower() not in self._state.volumes:
            raise SimError('The network name cannot be found.', 'ObjectNotFound',
                           'NetworkNameNotFound', CIM_EXCEPTION, remote_path)
        for mapping in self._state.smb_mappings:
            if mapping.remote_path.lower() == share.lower():
                raise SimError(f"A mapping to '{share}' already exists.", 'ResourceExists',
                               'MappingExists', CIM_EXCEPTION, remote_path)
            if local_path and mapping.local_path.lower() == local_path.lower():
                raise SimError('The local device name is already in use.', 'ResourceExists',
                               'LocalNameInUse', CIM_EXCEPTION, local_path)
        port = self._state.iscsi.smb_servers.get(share.lower())
        if port is not None:
            smb_backend.login(share, port, username, password)
        wanted = self._state.iscsi.smb_credentials.get(share.lower())
        if wanted is not None and [username, password] != wanted:
            raise SimError('The user name or password is incorrect.', 'AuthenticationError',
                           'Windows System Error 1326', CIM_EXCEPTION, remote_path)
        mapping = SmbMapping(remote_path=share, local_path=local_path, username=username)
        self._state.smb_mappings.append(mapping)
        return mapping

    @writes
    def remove_smb_mapping(self, remote_path: str) -> None:
        share = paths.root(paths.normalize(remote_path)).lower()
        keep = [m for m in self._state.smb_mappings if m.remote_path.lower() != share]
        if len(keep) == len(self._state.smb_mappings):
            raise SimError(f"No SMB mapping to '{remote_path}' exists.", 'ObjectNotFound',
                           'MappingNotFound', CIM_EXCEPTION, remote_path)
        self._state.smb_mappings = keep
        port = self._state.iscsi.smb_servers.get(share)
        if port is not None:
            smb_backend.logout(share, port)

    @reads
    def smb_mappings(self, pattern: str = '*') -> list[SmbMapping]:
        pat = pattern.lower()
        return [m for m in self._state.smb_mappings
                if fnmatch.fnmatchcase(m.remote_path.lower(), pat)]
