"""Get-VolumeConnector, Connect-, Disconnect- and Update-InstanceVolume on the host model.

The same steps as the scripts and their helpers (``PsDriver/Storage.ps1``):
disks are found by target and LUN (iSCSI) or target WWN and LUN (Fibre
Channel), never by a remembered number; a LUN seen as several disks is
refused; a disk the SAN policy left online is taken offline before Hyper-V
gets it; Connect undoes everything it did when a step fails.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from psdriver.sim import paths
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import SimError
from psdriver.sim.handlers.rescue import Slot, free_slot
from psdriver.sim.host import SimHost
from psdriver.sim.iscsi import normalize_portal, normalize_wwn
from psdriver.sim.scriptlib import (
    _validation_error, hard_disks, int_param, is_file, join, not_empty, same_path,
    script_error, switch, target_vm, text_list)
from psdriver.sim.state import Disk, Drive, Vm

TYPES = ('iscsi', 'fibre_channel', 'smbfs')
_SHARE = re.compile(r'^\\\\[^\\]+\\[^\\]+$')
Undo = list[Callable[[], None]]


# -- volume records (Get-PsDriverVolumeField and friends) -------------------------------

def field(volume: dict[str, Any], name: str, optional: bool = False) -> Any:
    value = volume.get(name)
    if value is None or value == '':
        if optional:
            return None
        raise script_error(f"Volume {volume.get('volume_id') or '?'}: field {name} is missing.",
                           'InvalidArgument', 'PsDriver.InvalidVolume',
                           volume.get('volume_id') or '?')
    return value


def _record(volume: Any, vm_name: str) -> tuple[dict[str, Any], str, str]:
    if not isinstance(volume, dict):
        raise script_error('A volume record is not an object.', 'InvalidArgument',
                           'PsDriver.InvalidVolume', vm_name)
    return volume, str(field(volume, 'volume_id')), str(field(volume, 'type'))


def _unsupported(volume_id: str, kind: str) -> SimError:
    return script_error(f"Volume {volume_id}: driver_volume_type '{kind}' is not supported "
                        '(iscsi, fibre_channel, smbfs).', 'InvalidArgument',
                        'PsDriver.InvalidVolume', volume_id)


def share_path(volume: dict[str, Any]) -> str:
    """``Get-PsDriverSmbSharePath``."""
    share = str(field(volume, 'share')).replace('/', '\\').rstrip('\\')
    if not _SHARE.match(share):
        raise script_error(f"Volume {volume.get('volume_id')}: '{share}' is not a share "
                           '(\\\\server\\share).', 'InvalidArgument', 'PsDriver.InvalidVolume',
                           volume.get('volume_id'))
    return share


def smb_file(volume: dict[str, Any]) -> tuple[str, str]:
    share = share_path(volume)
    return share, join(share, str(field(volume, 'file_name')))


def is_local_server(host: SimHost, server: str) -> bool:
    """``Test-PsDriverLocalServer``: localhost, the host's name, DNS name or an address."""
    cfg = host.config
    names = {'localhost', '127.0.0.1', '::1', cfg.hostname.lower(),
             *(a.lower() for a in cfg.ip_addresses)}
    if cfg.domain:
        names.add(f'{cfg.hostname}.{cfg.domain}'.lower())
    return server.strip('[]').lower() in names


def volume_file(host: SimHost, volume: dict[str, Any]) -> tuple[str, str, bool]:
    """``Resolve-PsDriverSmbVolumeFile``: share, file path, whether the share is this host's."""
    share, path = smb_file(volume)
    server, name = share.lstrip('\\').split('\\', 1)
    exported = host.smb_share(name) if is_local_server(host, server) else None
    if exported is not None and exported.path:
        return share, join(exported.path, str(field(volume, 'file_name'))), True
    return share, path, False


# -- disks ----------------------------------------------------------------------------------

def _iscsi_disks(host: SimHost, iqn: str, lun: int) -> list[Disk]:
    """``Find-PsDriverIscsiDisk``: disks of the target's sessions showing that LUN."""
    sessions = {s.id for s in host.iscsi_sessions() if s.target_iqn == iqn}
    return [d for d in host.list_disks()
            if d.bus_type == 'iSCSI' and sessions.intersection(d.session_ids) and d.lun == lun]


def _fc_disks(host: SimHost, wwns: list[str], lun: int) -> list[Disk]:
    """``Find-PsDriverFcDisk``: what the HBAs' FCP target mappings name."""
    if not host.config.fc_ports:
        return []
    wanted = set()
    for wwn in wwns:
        try:
            wanted.add(normalize_wwn(wwn))
        except SimError:
            continue
    return [d for d in host.list_disks() if d.bus_type == 'Fibre Channel' and d.lun == lun
            and wanted.intersection(d.target_wwns)]


def find_disk(host: SimHost, volume: dict[str, Any]) -> Disk | None:
    """``Find-PsDriverVolumeDisk``: the one disk of the LUN, refusing duplicates."""
    volume_id = volume.get('volume_id')
    if volume.get('type') == 'iscsi':
        found: list[Disk] = []
        for path in field(volume, 'paths'):
            found += _iscsi_disks(host, str(path.get('iqn')), int(path.get('lun') or 0))
    else:
        found = _fc_disks(host, list(field(volume, 'target_wwns')), int(field(volume, 'lun')))
    unique = sorted({d.number: d for d in found}.values(), key=lambda d: d.number)
    if len(unique) > 1:
        numbers = ', '.join(str(d.number) for d in unique)
        raise script_error(
            f'Volume {volume_id}: the LUN shows up as disks {numbers}, one per path: Multipath '
            'I/O is not claiming these disks. Using them would corrupt the volume; install '
            'MPIO and claim the bus type (Enable-MSDSMAutomaticClaim) or turn use_multipath_io '
            'off.', 'InvalidOperation', 'PsDriver.DuplicateDisk', volume_id)
    return unique[0] if unique else None


def wait_disk(host: SimHost, volume: dict[str, Any], retries: int) -> Disk:
    """``Wait-PsDriverVolumeDisk`` (the interval is not slept here)."""
    for attempt in range(retries + 1):
        if volume.get('type') == 'fibre_channel' or attempt > 0:
            host.rescan_storage()
        disk = find_disk(host, volume)
        if disk is not None:
            return disk
    volume_id = volume.get('volume_id')
    raise script_error(f'Volume {volume_id}: its disk did not show up on this host after '
                       f'{retries + 1} looks (mounted_disk_query_retry_count).',
                       'ObjectNotFound', 'PsDriver.VolumeDiskNotFound', volume_id)


def disk_in_use(host: SimHost, number: int) -> bool:
    """``Test-PsDriverDiskInUse``."""
    return any(d.disk_number == number for vm in host.list_vms() for d in vm.drives)


def volume_drive(vm: Vm, disk_number: int | None, path: str | None) -> Drive | None:
    """``Get-PsDriverVolumeDrive``."""
    for drive in hard_disks(vm):
        if disk_number is not None and drive.disk_number == disk_number:
            return drive
        if path and same_path(drive.path, path):
            return drive
    return None


# -- connecting -----------------------------------------------------------------------------

def _portal(text: str) -> tuple[str, int]:
    norm = normalize_portal(text)
    address, _, port = norm.rpartition(':')
    return address, int(port)


def connect_iscsi(host: SimHost, volume: dict[str, Any], chap_secret: str,
                  initiators: list[str], multipath: bool, undo: Undo) -> int:
    """``Connect-PsDriverIscsiVolume``."""
    volume_id = volume.get('volume_id')
    chap_user = field(volume, 'auth_username', optional=True)
    known = {p['instance_name'].lower() for p in host.initiator_ports()
             if p['connection_type'] == 'iSCSI'}
    names = [n for n in initiators if n] or ['']
    connected, last_error = 0, None
    for path in field(volume, 'paths'):
        iqn, portal = str(path.get('iqn')), str(path.get('portal'))
        for initiator in names:
            try:
                if initiator and initiator.lower() not in known:
                    raise SimError(f"The initiator instance name '{initiator}' is not valid.",
                                   'InvalidArgument', 'InitiatorNotFound', target=initiator)
                address, port = _portal(portal)
                norm = f'{address}:{port}'
                if any(s.target_iqn == iqn and s.portal == norm for s in host.iscsi_sessions()):
                    connected += 1
                else:
                    if norm not in host.state.iscsi.portals:
                        host.add_target_portal(norm)
                        undo.append(lambda n=norm: host.remove_target_portal(n))
                    session = host.connect_iscsi_target(
                        iqn, norm, chap_username=chap_user, chap_secret=chap_secret or None,
                        persistent=True, multipath=multipath)
                    undo.append(lambda q=iqn, i=session.id: host.disconnect_iscsi_target(q, i))
                    connected += 1
            except SimError as exc:
                last_error = exc
            if connected and not multipath:
                return connected
    if not connected:
        why = f'{last_error.category}: {last_error.message}' if last_error else 'no path given'
        raise script_error(f'Volume {volume_id}: cannot log in to its iSCSI target ({why})',
                           'InvalidOperation', 'PsDriver.IscsiLoginFailed', volume_id)
    return connected


def connect_share(host: SimHost, share: str, username: str | None, password: str,
                  undo: Undo) -> bool:
    """``Connect-PsDriverSmbShare``."""
    if not username or host.smb_mappings(share):
        return False
    host.new_smb_mapping(share, username=username, password=password)
    undo.append(lambda: host.remove_smb_mapping(share))
    return True


def _secret(secrets: Any, volume_id: str, key: str) -> str:
    entry = secrets.get(volume_id) if isinstance(secrets, dict) else None
    return str(entry.get(key) or '') if isinstance(entry, dict) else ''


def _attach(host: SimHost, vm: Vm, volume: dict[str, Any], disk_number: int | None,
            path: str | None, undo: Undo) -> Drive:
    drive = volume_drive(vm, disk_number, path)
    if drive is not None:
        return drive
    if field(volume, 'boot', optional=True):
        slot = Slot('IDE' if vm.generation == 1 else 'SCSI', 0, 0)
        if slot.controller_type == 'SCSI' and vm.scsi_controllers == 0:
            host.add_scsi_controller(vm.name)
    else:
        slot = free_slot(host, vm, 'SCSI')
    drive = host.attach_disk(vm.name, path, disk_number=disk_number,
                             controller_type=slot.controller_type,
                             controller_number=slot.number, location=slot.location)
    undo.append(lambda d=drive: host.detach_drive(vm.name, d.controller_type,
                                                  d.controller_number, d.location))
    max_iops = field(volume, 'max_iops', optional=True)
    if path and max_iops and int(max_iops) > 0:
        host.set_drive_max_iops(vm.name, drive.controller_type, drive.controller_number,
                                drive.location, int(max_iops))
    if field(volume, 'boot', optional=True) and vm.generation == 2:
        host.set_first_boot_device(vm.name, drive.controller_type, drive.controller_number,
                                   drive.location)
    return drive


def _connect_one(host: SimHost, vm: Vm | None, volume: dict[str, Any],
                 params: dict[str, Any], retries: int, undo: Undo) -> dict[str, Any]:
    volume, volume_id, kind = _record(volume, 'Volumes')
    field(volume, 'boot', optional=True)
    record: dict[str, Any] = {
        'volume_id': volume_id, 'type': kind, 'disk_number': None, 'path': None,
        'serial': None, 'size_bytes': 0, 'controller_type': None, 'controller_number': None,
        'controller_location': None, 'taken_offline': False, 'sessions': 0, 'mapped': False}
    disk_number = path = None
    secrets = params.get('Secrets') or {}
    if kind == 'iscsi':
        record['sessions'] = connect_iscsi(
            host, volume, _secret(secrets, volume_id, 'chap_secret'),
            text_list(params, 'InitiatorNames'), switch(params, 'Multipath'), undo)
    elif kind == 'smbfs':
        share, path, local = volume_file(host, volume)
        if not local:
            record['mapped'] = connect_share(host, share,
                                             field(volume, 'username', optional=True),
                                             _secret(secrets, volume_id, 'smb_password'), undo)
            host.sync_smb_file(path)
        if not is_file(host, path):
            raise script_error(f'Volume {volume_id}: its disk file {path} does not exist.',
                               'ObjectNotFound', 'PsDriver.VolumeFileNotFound', volume_id)
        record['path'] = path
        record['size_bytes'] = host.get_vhd(path).vhd.size
    elif kind != 'fibre_channel':
        raise _unsupported(volume_id, kind)
    if kind != 'smbfs':
        disk = wait_disk(host, volume, retries)
        disk_number = disk.number
        if not disk.is_offline and not disk_in_use(host, disk.number):
            host.set_disk_offline(disk.number)
            record['taken_offline'] = True
        record.update(disk_number=disk.number, serial=disk.serial, size_bytes=disk.size)
    if vm is None:
        return record               # connected only: New-Instance attaches it
    drive = _attach(host, vm, volume, disk_number, path, undo)
    record.update(controller_type=drive.controller_type,
                  controller_number=drive.controller_number,
                  controller_location=drive.location)
    return record


# -- the scripts ------------------------------------------------------------------------------

@handler('Get-VolumeConnector', readonly=True)
def get_connector(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    ports = host.initiator_ports()
    iscsi = [p for p in ports if p['connection_type'] == 'iSCSI']
    installed = bool(host.config.modules.get('MPIO'))
    claimed = [b for b in host.state.iscsi.mpio_claimed_bus_types if b != 'FC'] \
        if installed else []
    return {
        'hostname': host.hostname,
        'iscsi_initiator': iscsi[0]['node_address'] if iscsi else None,
        'fc_ports': [{'wwpn': p['port_address'], 'wwnn': p['node_address']}
                     for p in ports if p['connection_type'] == 'Fibre Channel'],
        'iscsi_initiators': [p['instance_name'] for p in iscsi],
        'mpio': {'installed': installed, 'claimed_bus_types': claimed,
                 'supported_hardware': int(installed and host.mpio_claimed('FC'))},
    }


@handler('Connect-InstanceVolume')
def connect_volumes(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Connect-InstanceVolume'
    vm = target_vm(host, str(params['Name'])) if params.get('Name') else None
    retries = int_param(script, params, 'RetryCount', 10, 0, 1000)
    int_param(script, params, 'RetryIntervalSeconds', 5, 0, 3600)
    volumes = params.get('Volumes')
    if volumes is None:
        raise script_error("Cannot validate argument on parameter 'Volumes'.", 'InvalidData',
                           'ParameterArgumentValidationError', 'Volumes')
    undo: Undo = []
    results = []
    try:
        for volume in volumes if isinstance(volumes, list) else [volumes]:
            results.append(_connect_one(host, vm, volume, params, retries, undo))
    except SimError:
        for step in reversed(undo):
            try:
                step()
            except SimError:
                pass
        raise
    return {'name': vm.name if vm else None, 'volumes': results}


@handler('Disconnect-InstanceVolume')
def disconnect_volumes(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    name = not_empty('Disconnect-InstanceVolume', params, 'Name')
    vm = host.find_vm(name)
    results = []
    volumes = params.get('Volumes') or []
    for volume in volumes if isinstance(volumes, list) else [volumes]:
        volume, volume_id, kind = _record(volume, name)
        record: dict[str, Any] = {'volume_id': volume_id, 'detached': False, 'logged_out': [],
                                  'unmapped': None}
        disk_number = path = share = None
        if kind == 'smbfs':
            share, path, _local = volume_file(host, volume)
        elif kind in ('iscsi', 'fibre_channel'):
            disk = find_disk(host, volume)
            disk_number = disk.number if disk else None
        else:
            raise _unsupported(volume_id, kind)
        if vm is not None and (disk_number is not None or path):
            drive = volume_drive(vm, disk_number, path)
            if drive is not None:
                host.detach_drive(vm.name, drive.controller_type, drive.controller_number,
                                  drive.location)
                record['detached'] = True
        if kind == 'iscsi':
            for iqn in dict.fromkeys(str(p.get('iqn')) for p in field(volume, 'paths')):
                if _logout_if_unused(host, iqn):
                    record['logged_out'].append(iqn)
        elif kind == 'smbfs' and host.smb_mappings(share) and not _share_in_use(host, share):
            host.remove_smb_mapping(share)
            record['unmapped'] = share
        results.append(record)
    return {'name': name, 'vm_found': vm is not None, 'volumes': results}


def _logout_if_unused(host: SimHost, iqn: str) -> bool:
    """``Disconnect-PsDriverIscsiTarget``."""
    sessions = {s.id for s in host.iscsi_sessions() if s.target_iqn == iqn}
    if not sessions:
        return False
    if any(disk_in_use(host, d.number) for d in host.list_disks()
           if sessions.intersection(d.session_ids)):
        return False
    host.disconnect_iscsi_target(iqn)
    return True


def _share_in_use(host: SimHost, share: str) -> bool:
    """``Test-PsDriverShareInUse``."""
    root = paths.key(paths.normalize(share))
    return any(d.path and paths.is_under(paths.key(d.path), root)
               for vm in host.list_vms() for d in vm.drives)


@handler('Update-InstanceVolume')
def update_volume(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Update-InstanceVolume'
    retries = int_param(script, params, 'RetryCount', 2, 0, 1000)
    int_param(script, params, 'RetryIntervalSeconds', 1, 0, 3600)
    volume, volume_id, kind = _record(params.get('Volume'), '')
    disk_number = path = None
    if kind == 'smbfs':
        _share, path, _local = volume_file(host, volume)
        host.sync_smb_file(path)
        if not is_file(host, path):
            raise script_error(f'Volume {volume_id}: its disk file {path} does not exist.',
                               'ObjectNotFound', 'PsDriver.VolumeFileNotFound', volume_id)
        size = host.get_vhd(path).vhd.size
    elif kind in ('iscsi', 'fibre_channel'):
        host.rescan_storage()
        disk = wait_disk(host, volume, retries)
        disk_number, size = disk.number, disk.size
    else:
        raise _unsupported(volume_id, kind)
    return {'volume_id': volume_id, 'size_bytes': size, 'disk_number': disk_number,
            'path': path}


# -- contract examples --------------------------------------------------------------------------

def _example_storage(host: SimHost, volumes: list[dict[str, Any]], secrets: Any) -> None:
    for volume in volumes:
        kind = volume.get('type')
        if kind == 'iscsi':
            first = volume['paths'][0]
            if not any(t.iqn == first['iqn'] for t in host.state.iscsi.targets):
                host.add_iscsi_target([p['portal'] for p in volume['paths']], first['iqn'],
                                      [1] * (int(first['lun']) + 1),
                                      chap_username=volume.get('auth_username'),
                                      chap_secret=_secret(secrets, volume['volume_id'],
                                                          'chap_secret') or None)
            if len(volume['paths']) > 1:
                host.mpio_claim('iSCSI')
        elif kind == 'fibre_channel':
            host.set_fc_ports([{'wwnn': '20000090fa000001', 'wwpn': '10000090fa000001'}])
            host.add_fc_target(volume['target_wwns'], [1] * (int(volume['lun']) + 1))
        elif kind == 'smbfs':
            share, path = smb_file(volume)
            if share.lower() not in host.state.volumes:
                host.add_volume(share, 100)
            host.new_vhd(path, 1024 ** 3)


@prepare('Connect-InstanceVolume')
def _connect_prepare(host: SimHost, params: dict[str, Any]) -> None:
    from psdriver.sim.scenario import add_instance
    if params.get('Name'):
        add_instance(host, params['Name'])
    _example_storage(host, params['Volumes'], params.get('Secrets'))


@prepare('Disconnect-InstanceVolume')
def _disconnect_prepare(host: SimHost, params: dict[str, Any]) -> None:
    _connect_prepare(host, params)
    connect_volumes(host, {'Name': params['Name'], 'Volumes': params['Volumes'],
                           'RetryIntervalSeconds': 0})


@prepare('Update-InstanceVolume')
def _update_prepare(host: SimHost, params: dict[str, Any]) -> None:
    _example_storage(host, [params['Volume']], None)
    volume = params['Volume']
    if volume['type'] == 'iscsi':
        for path in volume['paths']:
            host.add_target_portal(path['portal'])
        host.connect_iscsi_target(volume['paths'][0]['iqn'])


# -- assisted snapshots of SMB volumes ------------------------------------------------------------

_FILE_NAME = re.compile(r'^[^\\/:*?"<>|]+$')


def _snapshot_target(host: SimHost, params: dict[str, Any]) -> tuple[Vm, Drive, str, str]:
    """The VM (Off), its drive holding the record's file, that file and the volume id."""
    volume, volume_id, kind = _record(params.get('Volume'), params.get('Name', ''))
    if kind != 'smbfs':
        raise script_error(f"Volume {volume_id}: assisted snapshots are for smbfs volumes, not "
                           f"'{kind}'.", 'InvalidArgument', 'PsDriver.InvalidVolume', volume_id)
    vm = target_vm(host, params['Name'])
    _share, active, _local = volume_file(host, volume)
    drive = volume_drive(vm, None, active)
    if drive is None:
        raise script_error(f"Volume {volume_id}: no drive of VM {vm.name} holds {active}.",
                           'ObjectNotFound', 'PsDriver.VolumeDriveNotFound', volume_id)
    if vm.state != 'Off':
        raise script_error(f'Volume {volume_id}: VM {vm.name} is {vm.state}; Hyper-V keeps the '
                           'disks of a running VM open, so a volume snapshot needs the instance '
                           'stopped.', 'InvalidOperation', 'PsDriver.VolumeSnapshotNeedsVMOff',
                           volume_id)
    return vm, drive, active, volume_id


def _file_param(script: str, params: dict[str, Any], name: str, pattern: re.Pattern[str],
                optional: bool = False) -> str:
    value = params.get(name)
    if optional and not value:
        return ''
    text = not_empty(script, params, name)
    if not pattern.match(text):
        raise _validation_error(script, name, f'The argument "{text}" does not match the '
                                f'"{pattern.pattern}" pattern.', text)
    return text


def _set_drive_path(host: SimHost, drive: Drive, path: str) -> None:
    """``Set-VMHardDiskDrive -Path``: the file must be a virtual hard disk."""
    drive.path = host.get_vhd(path).path


@handler('New-InstanceVolumeSnapshot')
def new_volume_snapshot(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    new_name = _file_param('New-InstanceVolumeSnapshot', params, 'NewFileName',
                           re.compile(r'^[^\\/:*?"<>|]+\.a?vhdx?$', re.IGNORECASE))
    _vm, drive, current, volume_id = _snapshot_target(host, params)
    new_path = join(paths.parent(current) or current, new_name)
    created = False
    if host.exists(new_path):
        parent = host.get_vhd(new_path).vhd.parent_path
        if not parent or not same_path(parent, current):
            raise script_error(f'Volume {volume_id}: {new_path} exists and is not a '
                               f'differencing disk of {current}.', 'InvalidArgument',
                               'PsDriver.InvalidVolume', volume_id)
    else:
        host.new_vhd(new_path, parent_path=current)
        created = True
    try:
        _set_drive_path(host, drive, new_path)
    except SimError:
        if created:
            host.remove_item(new_path)
        raise
    return {'volume_id': volume_id, 'parent_path': host.get_vhd(current).path,
            'path': drive.path, 'created': created}


@handler('Merge-InstanceVolumeSnapshot')
def merge_volume_snapshot(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Merge-InstanceVolumeSnapshot'
    to_merge_name = _file_param(script, params, 'FileToMerge', _FILE_NAME, optional=True)
    target_name = _file_param(script, params, 'MergeTargetFile', _FILE_NAME, optional=True)
    _vm, drive, active, volume_id = _snapshot_target(host, params)
    folder = paths.parent(active) or active
    chain = [entry.path for entry in host.vhd_chain(active)]

    def index(path: str) -> int:
        return next((i for i, link in enumerate(chain) if same_path(link, path)), -1)

    if not target_name:
        # pull: the active file's parent folds into it (Merge-VHD, then the name back)
        wanted = index(join(folder, to_merge_name)) if to_merge_name else 2
        if len(chain) < 2 or wanted != 2 or (not to_merge_name and len(chain) != 2):
            raise script_error(f"Volume {volume_id}: the chain of {active} "
                               f"({' <- '.join(chain)}) does not have '{to_merge_name}' as the "
                               'parent of its parent.', 'InvalidArgument',
                               'PsDriver.InvalidVolume', volume_id)
        merged = chain[1]
        host.merge_vhd(active)
        host.move_file(merged, active)
    else:
        merged = join(folder, to_merge_name) if to_merge_name else ''
        target = join(folder, target_name)
        merge_index = index(merged) if merged else -1
        if merge_index < 1 or index(target) != merge_index + 1:
            raise script_error(f'Volume {volume_id}: {target} is not the parent of {merged} '
                               f'below the active file {active}.', 'InvalidArgument',
                               'PsDriver.InvalidVolume', volume_id)
        host.merge_vhd(merged)
    _set_drive_path(host, drive, active)
    parent = host.get_vhd(active).vhd.parent_path
    return {'volume_id': volume_id, 'merged': paths.normalize(merged), 'path': drive.path,
            'parent_path': parent or None}


def _snapshot_example(host: SimHost, params: dict[str, Any], links: list[str]) -> None:
    """The example's VM (Off) with the volume's chain ``links`` (base first) on SCSI."""
    from psdriver.sim.scenario import add_instance
    volume = params['Volume']
    share = share_path(volume)
    if share.lower() not in host.state.volumes:
        host.add_volume(share, 100)
    parent = None
    for name in links:
        path = join(share, name)
        parent = host.new_vhd(path, None if parent else 1024 ** 3, parent_path=parent).path
    add_instance(host, params['Name'], power_on=False)
    host.attach_disk(params['Name'], parent, controller_type='SCSI')


@prepare('New-InstanceVolumeSnapshot')
def _new_snapshot_prepare(host: SimHost, params: dict[str, Any]) -> None:
    _snapshot_example(host, params, [params['Volume']['file_name']])


@prepare('Merge-InstanceVolumeSnapshot')
def _merge_snapshot_prepare(host: SimHost, params: dict[str, Any]) -> None:
    active = params['Volume']['file_name']
    if params.get('MergeTargetFile'):
        links = [params['MergeTargetFile'], params['FileToMerge']]
    else:
        links = [name for name in (params.get('FileToMerge'), f'{active}.parent.vhdx') if name]
    _snapshot_example(host, params, links + [active])
