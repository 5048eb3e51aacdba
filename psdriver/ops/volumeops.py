"""Cinder volumes: iSCSI, Fibre Channel and SMB, attached to Hyper-V VMs.

One small connector class per ``driver_volume_type`` turns Cinder's
``connection_info`` into a *volume record* (see ``ps_scripts/PsDriver/Storage.ps1``)
and its secrets; the host scripts do the rest in one round trip each:

* ``Get-VolumeConnector``: what Cinder needs to export a volume to this host;
* ``Connect-InstanceVolume``: log in / rescan / map, find the disk, attach it
  (undone on the host when a step fails);
* ``Disconnect-InstanceVolume``: detach, log out of a target no other disk
  of it is used, remove an SMB mapping nothing uses (idempotent);
* ``Update-InstanceVolume``: rescan and report the size after an extend;
* ``New-InstanceVolumeSnapshot`` / ``Merge-InstanceVolumeSnapshot``: Cinder's
  assisted snapshots of SMB volumes (a differencing disk chain).

Disks are found by target and LUN (or target WWN and LUN), never by a
remembered disk number: numbers change across host reboots.

For other ops (migrations): :meth:`VolumeOps.connect_volumes`,
:meth:`VolumeOps.disconnect_volumes` and :meth:`VolumeOps.volume_disks`.
"""

from __future__ import annotations

import math
import ntpath
import re
import time
from typing import Any, Callable, Iterable

from nova import exception, objects
from nova.virt import driver as virt_driver
from oslo_log import log as logging
from oslo_serialization import jsonutils

from psdriver.bridge import errors as bridge_errors
from psdriver.bridge.client import Bridge
from psdriver.ops import errors

LOG = logging.getLogger(__name__)

#: Storage QoS counts IOPS in 8 KB units (Set-VMHardDiskDrive -MaximumIOPS).
QOS_IO_BYTES = 8 * 1024
#: Seconds a Connect-InstanceVolume call gets besides its rescans (logins, attach).
CONNECT_BASE_TIMEOUT = 300
#: Script errors that another attach attempt cannot fix.
PERMANENT_ERRORS = frozenset({'PsDriver.InvalidVolume', 'PsDriver.VMNotFound',
                              'PsDriver.DuplicateDisk', 'PsDriver.VolumeFileNotFound',
                              'PsDriver.NoFreeControllerSlot'})


class UnsupportedVolumeType(exception.VolumeDriverNotFound):
    msg_fmt = ('Volume %(volume_id)s: driver_volume_type %(driver_type)s is not supported '
               'here (supported: %(supported)s)')


class MultipathUnavailable(exception.NovaException):
    msg_fmt = ('[hyperv] use_multipath_io is on but Multipath I/O on %(host)s %(reason)s; '
               'without it every path of a volume shows up as its own disk, and writing to '
               'them corrupts the volume')


def volume_id_of(connection_info: dict[str, Any]) -> str:
    data = connection_info.get('data') or {}
    return str(data.get('volume_id') or connection_info.get('serial') or '?')


def _missing(volume_id: str, what: str) -> exception.VolumeAttachFailed:
    return exception.VolumeAttachFailed(volume_id=volume_id,
                                        reason=f'connection_info has no {what}')


# -- connectors: connection_info -> volume record -------------------------------------------

class Connector:
    """What one ``driver_volume_type`` needs from ``connection_info``."""

    volume_type = ''

    def __init__(self, conf: Any) -> None:
        self._conf = conf

    def record(self, volume_id: str, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def secrets(self, data: dict[str, Any]) -> dict[str, str]:
        return {}


class IscsiConnector(Connector):
    """``iscsi``: target_portal(s), target_iqn(s), target_lun(s), CHAP auth_*."""

    volume_type = 'iscsi'

    def record(self, volume_id: str, data: dict[str, Any]) -> dict[str, Any]:
        paths = []
        portals = data.get('target_portals')
        if portals:
            iqns = data.get('target_iqns') or [data.get('target_iqn')] * len(portals)
            luns = data.get('target_luns') or [data.get('target_lun')] * len(portals)
            if len(iqns) != len(portals) or len(luns) != len(portals):
                raise exception.VolumeAttachFailed(
                    volume_id=volume_id, reason='target_portals, target_iqns and target_luns '
                    'differ in length')
            paths = list(zip(portals, iqns, luns, strict=True))
        main = (data.get('target_portal'), data.get('target_iqn'), data.get('target_lun'))
        if main[0] and main not in paths:
            paths.insert(0, main)
        if not paths:
            raise _missing(volume_id, 'target_portal')
        records = []
        for portal, iqn, lun in paths:
            if not iqn:
                raise _missing(volume_id, 'target_iqn')
            if lun is None or not str(lun).isdigit():
                raise _missing(volume_id, 'target_lun (a number)')
            records.append({'portal': str(portal), 'iqn': str(iqn), 'lun': int(lun)})
        record: dict[str, Any] = {'volume_id': volume_id, 'type': self.volume_type,
                                  'paths': records}
        if str(data.get('auth_method', '')).upper() == 'CHAP':
            if not data.get('auth_username'):
                raise _missing(volume_id, 'auth_username for CHAP')
            record['auth_username'] = str(data['auth_username'])
        return record

    def secrets(self, data: dict[str, Any]) -> dict[str, str]:
        if str(data.get('auth_method', '')).upper() == 'CHAP':
            return {'chap_secret': str(data.get('auth_password') or '')}
        return {}


class FibreChannelConnector(Connector):
    """``fibre_channel``: target_wwn (one or a list), target_lun, initiator_target_map."""

    volume_type = 'fibre_channel'

    def record(self, volume_id: str, data: dict[str, Any]) -> dict[str, Any]:
        wwns = data.get('target_wwn') or data.get('target_wwns')
        if isinstance(wwns, str):
            wwns = [wwns]
        if not wwns:
            mapped = data.get('initiator_target_map') or {}
            wwns = sorted({t for targets in mapped.values() for t in targets})
        if not wwns:
            raise _missing(volume_id, 'target_wwn')
        lun = data.get('target_lun')
        if lun is None or not str(lun).isdigit():
            raise _missing(volume_id, 'target_lun (a number)')
        return {'volume_id': volume_id, 'type': self.volume_type,
                'target_wwns': [str(w).replace(':', '').lower() for w in wwns],
                'lun': int(lun)}


class SmbConnector(Connector):
    """``smbfs``: export (//server/share), name, format, options, qos_specs."""

    volume_type = 'smbfs'
    _OPTION = re.compile(r'(?:^|[\s,])(username|user|password|pass)=([^,\s]*)')

    def _options(self, data: dict[str, Any]) -> dict[str, str]:
        found = {}
        for key, value in self._OPTION.findall(str(data.get('options') or '')):
            found['username' if key.startswith('user') else 'password'] = value
        return found

    def record(self, volume_id: str, data: dict[str, Any]) -> dict[str, Any]:
        export = data.get('export')
        if not export:
            raise _missing(volume_id, 'export')
        name = data.get('name')
        if not name:
            raise _missing(volume_id, 'name')
        fmt = str(data.get('format') or 'vhdx').lower()
        file_name = str(name) if '.' in str(name) else f'{name}.{fmt}'
        record: dict[str, Any] = {'volume_id': volume_id, 'type': self.volume_type,
                                  'share': str(export).replace('/', '\\'),
                                  'file_name': file_name}
        username = self._options(data).get('username')
        if username:
            record['username'] = username
        iops = self.max_iops(data.get('qos_specs') or {})
        if iops:
            record['max_iops'] = iops
        return record

    def secrets(self, data: dict[str, Any]) -> dict[str, str]:
        password = self._options(data).get('password')
        return {'smb_password': password} if password else {}

    @staticmethod
    def max_iops(qos: dict[str, Any]) -> int:
        """total_iops_sec or total_bytes_sec, as 8 KB normalised IOPS (the larger wins)."""
        iops = int(qos.get('total_iops_sec') or 0)
        by_bytes = math.ceil(int(qos.get('total_bytes_sec') or 0) / QOS_IO_BYTES)
        return max(iops, by_bytes)


CONNECTORS: dict[str, type[Connector]] = {
    c.volume_type: c for c in (IscsiConnector, FibreChannelConnector, SmbConnector)}


# -- the operations ------------------------------------------------------------------------------

#: create_info/delete_info types of Cinder's assisted snapshots (remotefs sends qcow2
#: whatever the file format is; the file on the share is what Hyper-V reads).
SNAPSHOT_INFO_TYPES = frozenset({'qcow2', 'vhd', 'vhdx'})


class VolumeOps:
    def __init__(self, bridge: Bridge, conf: Any, volume_types: Iterable[str] = tuple(CONNECTORS),
                 sleep: Callable[[float], None] = time.sleep,
                 volume_api: Callable[[], Any] | None = None) -> None:
        self._bridge = bridge
        self._conf = conf
        self._types = tuple(volume_types)
        self._sleep = sleep
        self._volume_api_factory = volume_api
        self._volume_api_instance: Any = None

    @property
    def volume_api(self) -> Any:
        """nova's Cinder API (made on first use: it reads [cinder] options)."""
        if self._volume_api_instance is None:
            if self._volume_api_factory is None:
                from nova.volume import cinder
                self._volume_api_factory = cinder.API
            self._volume_api_instance = self._volume_api_factory()
        return self._volume_api_instance

    # -- connection_info -> script parameters ----------------------------------------------

    def connector_for(self, connection_info: dict[str, Any]) -> Connector:
        kind = connection_info.get('driver_volume_type')
        if kind not in CONNECTORS or kind not in self._types:
            raise UnsupportedVolumeType(volume_id=volume_id_of(connection_info),
                                        driver_type=kind, supported=', '.join(self._types))
        return CONNECTORS[kind](self._conf)

    def volume_record(self, connection_info: dict[str, Any], boot: bool = False
                      ) -> tuple[dict[str, Any], dict[str, str]]:
        """The script's volume record and its secrets (kept apart: secrets are never logged)."""
        connector = self.connector_for(connection_info)
        data = connection_info.get('data') or {}
        volume_id = volume_id_of(connection_info)
        record = connector.record(volume_id, data)
        if boot:
            record['boot'] = True
        return record, connector.secrets(data)

    def _connect_params(self, instance: Any, items: list[tuple[dict[str, Any], dict[str, str]]]
                        ) -> dict[str, Any]:
        hyperv = self._conf.hyperv
        params: dict[str, Any] = {
            'Name': instance.name, 'Volumes': [record for record, _ in items],
            'RetryCount': int(hyperv.mounted_disk_query_retry_count),
            'RetryIntervalSeconds': int(hyperv.mounted_disk_query_retry_interval)}
        secrets = {record['volume_id']: secret for record, secret in items if secret}
        if secrets:
            params['Secrets'] = secrets
        if hyperv.use_multipath_io:
            params['Multipath'] = True
        if hyperv.iscsi_initiator_list:
            params['InitiatorNames'] = list(hyperv.iscsi_initiator_list)
        return params

    def _connect_timeout(self, volumes: int) -> float:
        """Long enough for every volume to wait out its rescans (mounted_disk_query_retry_*)."""
        hyperv = self._conf.hyperv
        rescans = (int(hyperv.mounted_disk_query_retry_count) + 1) * \
            max(int(hyperv.mounted_disk_query_retry_interval), 1)
        return float(CONNECT_BASE_TIMEOUT + volumes * rescans)

    # -- connector ----------------------------------------------------------------------------

    def get_volume_connector(self) -> dict[str, Any]:
        """host, ip, initiator, wwpns/wwnns, multipath, os_type, platform (one round trip)."""
        with errors.translate(operation='get_volume_connector'):
            found = self._bridge.call('Get-VolumeConnector')
        multipath = bool(self._conf.hyperv.use_multipath_io)
        if multipath:
            self._check_mpio(found)
        connector: dict[str, Any] = {
            'host': self._conf.host, 'ip': self._conf.my_block_storage_ip,
            'initiator': found['iscsi_initiator'], 'multipath': multipath,
            'os_type': 'nt', 'platform': 'AMD64'}
        if found['fc_ports']:
            connector['wwpns'] = [p['wwpn'] for p in found['fc_ports']]
            connector['wwnns'] = sorted({p['wwnn'] for p in found['fc_ports']})
        return connector

    @staticmethod
    def _check_mpio(found: dict[str, Any]) -> None:
        mpio = found['mpio']
        if not mpio['installed']:
            raise MultipathUnavailable(host=found['hostname'], reason='is not installed '
                                       '(Install-WindowsFeature Multipath-IO)')
        if found['iscsi_initiator'] and 'iSCSI' not in mpio['claimed_bus_types']:
            raise MultipathUnavailable(host=found['hostname'], reason='does not claim iSCSI '
                                       'disks (Enable-MSDSMAutomaticClaim -BusType iSCSI)')
        if found['fc_ports'] and not mpio['supported_hardware']:
            raise MultipathUnavailable(host=found['hostname'], reason='claims no Fibre Channel '
                                       'array (New-MSDSMSupportedHW)')

    # -- attach / detach -------------------------------------------------------------------------

    def attach_volume(self, instance: Any, connection_info: dict[str, Any],
                      boot: bool = False) -> dict[str, Any]:
        """Connect and attach one volume, retrying ``volume_attach_retry_*``.

        After the last failed try whatever may be left is disconnected and
        ``VolumeAttachFailed`` names the volume.
        """
        record, secrets = self.volume_record(connection_info, boot)
        volume_id = record['volume_id']
        params = self._connect_params(instance, [(record, secrets)])
        tries = int(self._conf.hyperv.volume_attach_retry_count) + 1
        for attempt in range(1, tries + 1):
            try:
                result = self._bridge.call('Connect-InstanceVolume', params,
                                           timeout=self._connect_timeout(1))
                attached = result['volumes'][0]
                self._log_attached(instance, attached)
                return attached
            except bridge_errors.ScriptError as exc:
                permanent = exc.error_id in PERMANENT_ERRORS
                if exc.error_id == errors.VM_NOT_FOUND:
                    raise exception.InstanceNotFound(instance_id=instance.uuid) from exc
                if permanent or attempt == tries:
                    self._cleanup_after_failure(instance, [record])
                    raise exception.VolumeAttachFailed(volume_id=volume_id,
                                                       reason=exc.message) from exc
                LOG.warning('Attaching volume %s failed (try %d of %d): %s', volume_id,
                            attempt, tries, exc.message, instance=instance)
                self._sleep(float(self._conf.hyperv.volume_attach_retry_interval))
            except bridge_errors.PsDriverBridgeException as exc:
                self._cleanup_after_failure(instance, [record])
                raise exception.VolumeAttachFailed(volume_id=volume_id, reason=str(exc)) from exc
        raise AssertionError('unreachable')

    @staticmethod
    def _log_attached(instance: Any, attached: dict[str, Any]) -> None:
        where = (f"{attached['controller_type']} {attached['controller_number']}:"
                 f"{attached['controller_location']}")
        what = attached['path'] or f"disk {attached['disk_number']}"
        LOG.info('Attached volume %s (%s) at %s', attached['volume_id'], what, where,
                 instance=instance)
        if attached['taken_offline']:
            LOG.warning('Disk %s of volume %s came up online: the SAN policy should leave new '
                        'disks offline (Set-StorageSetting -NewDiskPolicy OfflineShared); it '
                        'was taken offline for Hyper-V', attached['disk_number'],
                        attached['volume_id'], instance=instance)

    def _cleanup_after_failure(self, instance: Any, records: list[dict[str, Any]]) -> None:
        try:
            self._bridge.call('Disconnect-InstanceVolume',
                              {'Name': instance.name, 'Volumes': records})
        except bridge_errors.PsDriverBridgeException as exc:
            LOG.warning('Could not clean up after a failed attach: %s', exc, instance=instance)

    def detach_volume(self, instance: Any, connection_info: dict[str, Any]) -> dict[str, Any]:
        """Detach and disconnect one volume; nothing attached is fine."""
        record, _secrets = self.volume_record(connection_info)
        result = self._disconnect(instance, [record])
        return result['volumes'][0]

    def _disconnect(self, instance: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            result = self._bridge.call('Disconnect-InstanceVolume',
                                       {'Name': instance.name, 'Volumes': records})
        except bridge_errors.ScriptError as exc:
            raise exception.VolumeDetachFailed(
                volume_id=', '.join(r['volume_id'] for r in records), reason=exc.message
            ) from exc
        except bridge_errors.PsDriverBridgeException as exc:
            raise errors.HyperVHostError(reason=str(exc)) from exc
        for done in result['volumes']:
            LOG.info('Volume %s: detached %s, logged out of %s, unmapped %s', done['volume_id'],
                     done['detached'], done['logged_out'] or 'nothing',
                     done['unmapped'] or 'nothing', instance=instance)
        return result

    # -- several volumes: spawn, destroy, migrations ---------------------------------------------

    @staticmethod
    def volumes(block_device_info: Any) -> list[dict[str, Any]]:
        """The volume mappings of ``block_device_info``, boot volume first."""
        mapping = list(virt_driver.block_device_info_get_mapping(block_device_info))
        return sorted(mapping, key=lambda v: (not VolumeOps.is_boot(v, block_device_info),))

    @staticmethod
    def is_boot(volume: Any, block_device_info: Any) -> bool:
        """Whether the mapping ``volume`` is the instance's root (boot) volume."""
        root = virt_driver.block_device_info_get_root_device(block_device_info)
        return volume.get('boot_index') == 0 or (
            root is not None and volume.get('mount_device') == root)

    def is_boot_from_volume(self, block_device_info: Any) -> bool:
        return any(self.is_boot(v, block_device_info) for v in self.volumes(block_device_info))

    def connect_volumes(self, instance: Any, block_device_info: Any,
                        attach: bool = True) -> list[dict[str, Any]]:
        """Connect (and attach) every volume of ``block_device_info`` in one round trip.

        The results come in :meth:`volumes` order (boot volume first). With
        ``attach`` the boot volume goes to the boot slot (the VM must be off
        then); without, the volumes are only connected to the host and their
        ``disk_number``/``path`` are what New-Instance's ``spec.volumes``
        takes (spawn, and a migration's destination).  On failure nothing
        stays connected and ``VolumeAttachFailed`` names the volumes.
        """
        items = [self.volume_record(v['connection_info'], self.is_boot(v, block_device_info))
                 for v in self.volumes(block_device_info)]
        if not items:
            return []
        params = self._connect_params(instance, items)
        if not attach:
            del params['Name']
        try:
            result = self._bridge.call('Connect-InstanceVolume', params,
                                       timeout=self._connect_timeout(len(items)))
        except bridge_errors.PsDriverBridgeException as exc:
            records = [record for record, _ in items]
            self._cleanup_after_failure(instance, records)
            reason = getattr(exc, 'message', str(exc))
            raise exception.VolumeAttachFailed(
                volume_id=', '.join(r['volume_id'] for r in records), reason=reason) from exc
        for attached in result['volumes']:
            self._log_attached(instance, attached)
        return result['volumes']

    def disconnect_volumes(self, instance: Any, block_device_info: Any) -> list[dict[str, Any]]:
        """Detach (if the VM still exists) and disconnect every volume; idempotent."""
        records = []
        for volume in self.volumes(block_device_info):
            try:
                records.append(self.volume_record(volume['connection_info'])[0])
            except (exception.VolumeDriverNotFound, exception.VolumeAttachFailed) as exc:
                LOG.warning('Not disconnecting a volume: %s', exc, instance=instance)
        if not records:
            return []
        return self._disconnect(instance, records)['volumes']

    def volume_disks(self, connection_info: dict[str, Any]) -> dict[str, Any]:
        """Where the volume is on this host now: {volume_id, size_bytes, disk_number, path}.

        Looked up by target and LUN (or file), so it is right after a host
        reboot renumbered the disks.
        """
        record, _secrets = self.volume_record(connection_info)
        try:
            return self._bridge.call('Update-InstanceVolume', {
                'Volume': record,
                'RetryCount': int(self._conf.hyperv.mounted_disk_query_retry_count),
                'RetryIntervalSeconds': int(self._conf.hyperv.mounted_disk_query_retry_interval)})
        except bridge_errors.ScriptObjectNotFound as exc:
            raise exception.VolumeBDMPathNotFound(path=exc.message) from exc

    # -- extend ----------------------------------------------------------------------------------

    def extend_volume(self, instance: Any, connection_info: dict[str, Any],
                      requested_size: int) -> int:
        """Rescan so the host (and the guest) see the new size; returns it in bytes."""
        volume_id = volume_id_of(connection_info)
        try:
            found = self.volume_disks(connection_info)
        except (exception.VolumeBDMPathNotFound, bridge_errors.PsDriverBridgeException) as exc:
            raise exception.VolumeExtendFailed(volume_id=volume_id, reason=str(exc)) from exc
        size = int(found['size_bytes'])
        if size < requested_size:
            LOG.warning('Volume %s: the host sees %d bytes, %d were asked for', volume_id, size,
                        requested_size, instance=instance)
        else:
            LOG.info('Volume %s now has %d bytes', volume_id, size, instance=instance)
        return size

    # -- assisted snapshots (SMB) ----------------------------------------------------------------

    def volume_snapshot_create(self, context: Any, instance: Any, volume_id: str,
                               create_info: dict[str, Any]) -> dict[str, Any]:
        """Cinder's assisted snapshot: the drive moves to a differencing disk ``new_file``.

        As nova's libvirt driver does, the snapshot goes to ``creating`` (Cinder
        then finishes it) or ``error``; the BDM's connection_info names the new
        active file, as Cinder's remotefs ``initialize_connection`` would.
        """
        snapshot_id = create_info.get('snapshot_id')
        if not snapshot_id:
            raise exception.InternalError('snapshot_id required in create_info')
        try:
            if create_info.get('type') not in SNAPSHOT_INFO_TYPES:
                raise exception.InternalError(f"Unknown type: {create_info.get('type')}")
            if not create_info.get('new_file'):
                raise exception.InternalError('new_file required in create_info')
            bdm, connection_info = self._snapshot_bdm(context, instance, volume_id)
            record = self._smb_record(connection_info, volume_id)
            new_file = ntpath.basename(str(create_info['new_file']).replace('/', '\\'))
            result = self._snapshot_call(instance, volume_id, 'New-InstanceVolumeSnapshot', {
                'Name': instance.name, 'Volume': record, 'NewFileName': new_file})
            self._save_active_file(bdm, connection_info, result['path'])
        except Exception:
            LOG.exception('Volume %s: snapshot %s failed', volume_id, snapshot_id,
                          instance=instance)
            self._snapshot_status(context, snapshot_id, 'error')
            raise
        LOG.info('Volume %s: snapshot %s froze %s; the drive now uses %s', volume_id,
                 snapshot_id, result['parent_path'], result['path'], instance=instance)
        self._snapshot_status(context, snapshot_id, 'creating')
        return result

    def volume_snapshot_delete(self, context: Any, instance: Any, volume_id: str,
                               snapshot_id: str, delete_info: dict[str, Any]) -> dict[str, Any]:
        """Cinder's assisted snapshot delete: ``Merge-VHD`` as ``delete_info`` says.

        ``merge_target_file`` set: ``file_to_merge`` commits into it; unset: the
        active file's parent folds into the active file (libvirt's pull), whose
        parent becomes ``file_to_merge``. Status ``deleting`` or ``error_deleting``.
        """
        try:
            if delete_info.get('type') not in SNAPSHOT_INFO_TYPES:
                raise exception.InternalError(f"Unknown type: {delete_info.get('type')}")
            bdm, connection_info = self._snapshot_bdm(context, instance, volume_id)
            record = self._smb_record(connection_info, volume_id)
            params: dict[str, Any] = {'Name': instance.name, 'Volume': record}
            for key, param in (('file_to_merge', 'FileToMerge'),
                               ('merge_target_file', 'MergeTargetFile')):
                if delete_info.get(key):
                    params[param] = ntpath.basename(str(delete_info[key]).replace('/', '\\'))
            result = self._snapshot_call(instance, volume_id, 'Merge-InstanceVolumeSnapshot',
                                         params)
            self._save_active_file(bdm, connection_info, result['path'])
        except Exception:
            LOG.exception('Volume %s: deleting snapshot %s failed', volume_id, snapshot_id,
                          instance=instance)
            self._snapshot_status(context, snapshot_id, 'error_deleting')
            raise
        LOG.info('Volume %s: snapshot %s deleted, %s merged', volume_id, snapshot_id,
                 result['merged'], instance=instance)
        self._snapshot_status(context, snapshot_id, 'deleting')
        return result

    @staticmethod
    def _snapshot_bdm(context: Any, instance: Any, volume_id: str) -> tuple[Any, dict[str, Any]]:
        bdm = objects.BlockDeviceMapping.get_by_volume_and_instance(context, volume_id,
                                                                    instance.uuid)
        return bdm, jsonutils.loads(bdm.connection_info or '{}')

    def _smb_record(self, connection_info: dict[str, Any], volume_id: str) -> dict[str, Any]:
        if connection_info.get('driver_volume_type') != SmbConnector.volume_type:
            raise exception.InternalError(
                f'Volume {volume_id}: assisted snapshots are for smbfs volumes, not '
                f"{connection_info.get('driver_volume_type')}")
        return self.volume_record(connection_info)[0]

    def _snapshot_call(self, instance: Any, volume_id: str, script: str,
                       params: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._bridge.call(script, params)
        except bridge_errors.ScriptError as exc:
            if exc.error_id == errors.VM_NOT_FOUND:
                raise exception.InstanceNotFound(instance_id=instance.uuid) from exc
            if exc.error_id == 'PsDriver.VolumeSnapshotNeedsVMOff':
                LOG.warning('%s', exc.message, instance=instance)
                raise exception.InstanceInvalidState(
                    attr='power state', instance_uuid=instance.uuid,
                    state='on (Hyper-V keeps the disks of a running VM open)',
                    method='snapshot its volume') from exc
            raise exception.InternalError(f'Volume {volume_id}: {exc.message}') from exc
        except bridge_errors.PsDriverBridgeException as exc:
            raise errors.HyperVHostError(reason=str(exc)) from exc

    @staticmethod
    def _save_active_file(bdm: Any, connection_info: dict[str, Any], path: str) -> None:
        """The BDM's connection_info names the file the drive uses now (detach finds it)."""
        data = connection_info.setdefault('data', {})
        data['name'] = ntpath.basename(path)
        bdm.connection_info = jsonutils.dumps(connection_info)
        bdm.save()

    def _snapshot_status(self, context: Any, snapshot_id: str, status: str) -> None:
        """Tell Cinder; a failure is only logged (Cinder times out waiting), as libvirt does."""
        try:
            self.volume_api.update_snapshot_status(context, snapshot_id, status)
        except Exception:
            LOG.exception('Could not send snapshot %s status %s to Cinder', snapshot_id, status)
