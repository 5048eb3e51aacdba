"""Live migration with Move-VM: checks on both hosts, the move, and clean-up.

Checks (a clear ``MigrationPreCheckError`` when one fails):

* destination (``check_can_live_migrate_destination``, one Test-MigrationHost
  call): live migration enabled, a migration network (or any network),
  an authentication the move can use, the source's processor vendor (from
  its compute node record) the same as this host's; it also leaves a probe
  file in its instances_path;
* source (``check_can_live_migrate_source``, one call): the same settings
  here, and whether the destination's probe file is visible here: the
  instances_path is shared (as compute-hyperv detected it); a VM with a
  pass-through disk needs shared storage.  The destination removes its
  probe in ``cleanup_live_migration_destination_check``.

CredSSP lets Hyper-V delegate the caller's credentials only when the move
is started on the source host itself: with ``[powershell] transport = psrp``
(nova-compute on a management node) CredSSP works only if PowerShell
Remoting itself uses CredSSP (``psrp_auth = credssp``); otherwise Kerberos
with constrained delegation is required and the check says so.

The move (``live_migration``, on the source): Move-Instance runs Move-VM as
a job with a timeout (the migration is cancelled, the VM stays, when it
runs out), with ``-IncludeStorage`` into the destination's instance folder
unless the storage is shared; an ISO config drive is copied there first
(Move-VM moves disks, not DVD images).  The destination's
``pre_live_migration`` puts the root disk's base image in its image cache
(the differencing disk needs its parent there) and connects volumes;
``post_live_migration_at_destination`` plugs the VIFs on the arrived VM and
starts its console logger; ``rollback_live_migration_at_destination``
removes whatever the destination got (never the shared folder).
"""

from __future__ import annotations

import ntpath
from typing import Any

from nova import exception
from nova.objects import migrate_data as migrate_data_obj
from nova.virt import configdrive as nova_configdrive
from nova.virt import driver as virt_driver
from oslo_log import log as logging
from oslo_serialization import jsonutils

from psdriver.bridge.client import Bridge
from psdriver.ops import errors, instancefeatures
from psdriver.ops.hostfiles import HostFiles
from psdriver.ops.vmops import CONSOLE_LOG, CONSOLE_LOG_BYTES, VMOps

LOG = logging.getLogger(__name__)

#: How long Move-VM may take before it is cancelled.
MIGRATION_TIMEOUT = 1800


def probe_name(instance_uuid: str, kind: str = 'lm') -> str:
    return f'psdriver-{kind}-{instance_uuid}.tmp'


class LiveMigrationOps:
    def __init__(self, bridge: Bridge, conf: Any, vmops: VMOps, images: Any, vifops: Any,
                 files: HostFiles, volumeops: Any = None) -> None:
        self._bridge = bridge
        self._conf = conf
        self._vmops = vmops
        self._images = images
        self._vifops = vifops
        self._files = files
        self._volumeops = volumeops
        #: Probe file names of destination checks not cleaned up yet, by id() of the data.
        self._probes: dict[int, str] = {}
        #: Storage bytes the last live migration moved.
        self.last_bytes = 0

    # -- helpers -------------------------------------------------------------------------

    def _host_info(self, operation: str, **params: Any) -> dict[str, Any]:
        params['InstancesPath'] = self._conf.instances_path
        with errors.translate(operation=operation):
            return self._bridge.call('Test-MigrationHost', params)

    def _setting_refusal(self, info: dict[str, Any], role: str) -> str | None:
        """Why this host's own live migration settings cannot work, or None."""
        name = info['hostname']
        if not info['migration_enabled']:
            return (f'live migration is not enabled on the {role} host {name} '
                    '(Enable-VMMigration)')
        if not info['use_any_network'] and not info['migration_networks']:
            return (f'the {role} host {name} has no migration network '
                    '(Add-VMMigrationNetwork, or Set-VMHost -UseAnyNetworkForMigration $true)')
        ps = self._conf.powershell
        if info['authentication'] == 'CredSSP' and ps.transport == 'psrp' \
                and ps.psrp_auth != 'credssp':
            return (f'the {role} host {name} authenticates live migrations with CredSSP, which '
                    'only works when the move starts on the source host itself; psdriver '
                    'manages it remotely ([powershell] transport = psrp): use Kerberos with '
                    'constrained delegation (Set-VMHost '
                    '-VirtualMachineMigrationAuthenticationType Kerberos) or psrp_auth = '
                    'credssp')
        return None

    @staticmethod
    def _refuse(reason: str) -> None:
        raise exception.MigrationPreCheckError(reason=reason)

    def _volumes(self, instance: Any, block_device_info: Any, action: str) -> None:
        if not virt_driver.block_device_info_get_mapping(block_device_info):
            return
        if action == 'connect_volumes':
            # Connected to this host only: Move-VM brings the VM that uses them.
            self._volumeops.connect_volumes(instance, block_device_info, attach=False)
        else:
            getattr(self._volumeops, action)(instance, block_device_info)

    # -- checks ------------------------------------------------------------------------

    def check_can_live_migrate_destination(self, context: Any, instance: Any,
                                           src_compute_info: Any, dst_compute_info: Any,
                                           block_migration: bool = False,
                                           disk_over_commit: bool = False) -> Any:
        probe = probe_name(instance.uuid)
        info = self._host_info('check_can_live_migrate_destination', Probe='Create',
                               ProbeFile=probe)
        reason = self._setting_refusal(info, 'destination')
        src_vendor = _cpu_vendor(src_compute_info)
        if reason is None and src_vendor and src_vendor != info['processor_vendor']:
            reason = (f"the source's processors are {src_vendor} and this host's "
                      f"{info['processor_vendor']}: Hyper-V cannot live migrate between "
                      'processor manufacturers')
        if reason is None and instancefeatures.wants_shielded_vm(instance):
            refusal = self._vmops.shielded_vm_refusal()
            if refusal:
                reason = (f"{instance.name} is a shielded VM and the destination host "
                          f"{info['hostname']} cannot run one: {refusal}")
        if reason is not None:
            self._host_info('cleanup', Probe='Remove', ProbeFile=probe)
            self._refuse(reason)
        data = migrate_data_obj.HyperVLiveMigrateData(is_shared_instance_path=False)
        self._probes[id(data)] = probe
        return data

    def cleanup_live_migration_destination_check(self, context: Any,
                                                 dest_check_data: Any) -> None:
        probe = self._probes.pop(id(dest_check_data), None)
        if probe is not None:
            self._host_info('cleanup_live_migration_destination_check', Probe='Remove',
                            ProbeFile=probe)

    def check_can_live_migrate_source(self, context: Any, instance: Any, dest_check_data: Any,
                                      block_device_info: Any = None) -> Any:
        info = self._host_info('check_can_live_migrate_source', Probe='Check',
                               ProbeFile=probe_name(instance.uuid), VMName=instance.name)
        shared = bool(info['probe_exists'])
        reason = self._setting_refusal(info, 'source')
        if reason is None and info['vm']['passthrough_disks'] and not shared:
            reason = (f'{instance.name} has a pass-through disk, which cannot move without '
                      'shared storage')
        if reason is not None:
            self._refuse(reason)
        dest_check_data.is_shared_instance_path = shared
        return dest_check_data

    # -- shared storage probe for nova's other moves ---------------------------------------

    def check_instance_shared_storage_local(self, context: Any, instance: Any) -> dict:
        name = probe_name(instance.uuid, 'ss')
        self._host_info('check_instance_shared_storage_local', Probe='Create', ProbeFile=name)
        return {'filename': name}

    def check_instance_shared_storage_remote(self, context: Any, data: dict) -> bool:
        info = self._host_info('check_instance_shared_storage_remote', Probe='Check',
                               ProbeFile=data['filename'])
        return bool(info['probe_exists'])

    def check_instance_shared_storage_cleanup(self, context: Any, data: dict) -> None:
        self._host_info('check_instance_shared_storage_cleanup', Probe='Remove',
                        ProbeFile=data['filename'])

    # -- destination before and after ------------------------------------------------------

    def pre_live_migration(self, context: Any, instance: Any, block_device_info: Any,
                           network_info: Any, disk_info: Any, migrate_data: Any) -> Any:
        if not migrate_data.is_shared_instance_path and instance.image_ref \
                and instance.flavor.root_gb:
            # The moved root disk is a differencing disk of this image.
            self._images.get_cached_image(context, instance, instance.flavor.root_gb,
                                          reuse_known=True)
        self._volumes(instance, block_device_info, 'connect_volumes')
        return migrate_data

    def post_live_migration_at_destination(self, context: Any, instance: Any,
                                           network_info: Any, block_migration: bool = False,
                                           block_device_info: Any = None) -> None:
        self._vmops.invalidate()
        self._vifops.plug(instance, network_info)
        with errors.translate(instance.uuid, 'post_live_migration_at_destination'):
            logger = self._bridge.call('Start-InstanceConsoleLogger', {
                'Name': instance.name,
                'LogPath': ntpath.join(self._vmops.instance_dir(instance), CONSOLE_LOG),
                'MaxLogBytes': CONSOLE_LOG_BYTES})
        if not logger.get('running', True):
            LOG.warning('Console log of %s not started: %s', instance.name,
                        logger.get('error'), instance=instance)

    def rollback_live_migration_at_destination(self, context: Any, instance: Any,
                                               network_info: Any, block_device_info: Any,
                                               destroy_disks: bool = True,
                                               migrate_data: Any = None) -> None:
        shared = bool(migrate_data is not None and
                      migrate_data.obj_attr_is_set('is_shared_instance_path') and
                      migrate_data.is_shared_instance_path)
        self._vmops.destroy(instance, destroy_disks and not shared)
        self._volumes(instance, block_device_info, 'disconnect_volumes')

    # -- source ------------------------------------------------------------------------

    def live_migration(self, context: Any, instance: Any, dest: str, post_method: Any,
                       recover_method: Any, block_migration: bool = False,
                       migrate_data: Any = None) -> None:
        migration = migrate_data.migration if migrate_data is not None and \
            migrate_data.obj_attr_is_set('migration') else None
        dest_node = migration.dest_node if migration is not None else dest
        shared = bool(migrate_data is not None and
                      migrate_data.obj_attr_is_set('is_shared_instance_path') and
                      migrate_data.is_shared_instance_path)
        instance_dir = self._vmops.instance_dir(instance)
        params: dict[str, Any] = {'Name': instance.name, 'DestinationHost': dest_node,
                                  'TimeoutSeconds': MIGRATION_TIMEOUT}
        if not shared:
            params['IncludeStorage'] = True
            params['DestinationPath'] = instance_dir
        self.last_bytes = 0
        try:
            if not shared and nova_configdrive.required_by(instance) \
                    and self._conf.hyperv.config_drive_cdrom:
                self.last_bytes += self._files.copy_to_peer(
                    [ntpath.join(instance_dir, 'configdrive.iso')], dest_node, instance_dir)
            with errors.translate(operation='live_migration'):
                result = self._bridge.call('Move-Instance', params,
                                           timeout=MIGRATION_TIMEOUT + 120)
        except Exception as exc:
            # The VM is still running here (Move-VM moved nothing, or was
            # cancelled): nova's rollback puts the instance back to ACTIVE and the
            # migration to error; raising would mark the instance ERROR instead.
            LOG.error('Live migration of %s to %s failed: %s', instance.name, dest_node, exc,
                      instance=instance)
            recover_method(context, instance, dest, migrate_data)
            return
        finally:
            self._vmops.invalidate()
        self.last_bytes += result['storage_bytes']
        LOG.info('Live migrated %s to %s in %.1f s (%d bytes of storage)', instance.name,
                 dest_node, result['seconds'], result['storage_bytes'], instance=instance)
        post_method(context, instance, dest, block_migration, migrate_data)

    def post_live_migration(self, context: Any, instance: Any, block_device_info: Any,
                            migrate_data: Any = None) -> None:
        self._volumes(instance, block_device_info, 'disconnect_volumes')


def _cpu_vendor(compute_info: Any) -> str | None:
    """The processor vendor in a compute node record's cpu_info (psdriver's JSON)."""
    if not compute_info:
        return None
    cpu_info = compute_info.get('cpu_info') if isinstance(compute_info, dict) else None
    if cpu_info is None and isinstance(compute_info, dict):
        cpu_info = compute_info.get('nova_object.data', {}).get('cpu_info')
    try:
        return jsonutils.loads(cpu_info).get('vendor') if cpu_info else None
    except (TypeError, ValueError):
        return None
