"""Resize and cold migration, on one host or between two.

Source side, :meth:`MigrationOps.migrate_disk_and_power_off`: refuse a
smaller root or ephemeral disk before anything changes, shut the guest down
within the timeout (Set-InstancePowerState), then Export-InstanceDisk
removes the VM and renames its folder to ``<folder>_revert``, where the
files wait until the migration is confirmed (Remove-InstanceFolder) or
reverted (Restore-InstanceFolder, then New-Instance over the kept files).

The disks reach the destination's instance folder

* on the same host, or on shared storage (an SMB or CSV ``instances_path``
  both hosts see): copied by the host itself, in the Export-InstanceDisk
  call; with ``[hyperv] move_disks_on_cold_migration = False`` on shared
  storage they are not copied at all and the destination uses them in
  place (a revert then cannot undo a root disk that grew);
* on another host: from this host's ``instances_path_share`` to the
  destination's, through the machine nova-compute runs on
  (:meth:`HostFiles.copy_to_peer`): with ``transport = psrp`` the bytes
  pass through the management node, with the credentials that already
  reach both hosts, so no delegation between hosts is needed.

Destination side, :meth:`finish_migration`: the root disk's base image is
put in the destination's image cache if it is missing there, the root disk
and the flavor's ephemeral disk grow to the new flavor (Resize-InstanceDisk)
and New-Instance creates the VM over the copied files with the new vCPUs,
memory and disk QoS limit; when Neutron is to report the ports plugged, the
VM is created off and started once it has (as spawn does).

Volumes: when the instance has block devices, they are disconnected on
the source and connected on the destination through the volume-ops object
given; with no block devices nothing is called.
"""

from __future__ import annotations

import json
import math
import ntpath
from typing import Any

from nova import exception, objects
from nova.compute import vm_states
from nova.virt import driver as virt_driver
from oslo_log import log as logging

from psdriver.bridge.client import Bridge
from psdriver.ops import errors, instancefeatures
from psdriver.ops.hostfiles import HostFiles
from psdriver.ops.vmops import VMOps, vm_generation

LOG = logging.getLogger(__name__)

GIB = 1024 ** 3
REVERT_SUFFIX = '_revert'


def is_shared_path(path: str) -> bool:
    """An instances_path every host sees the same: UNC or a Cluster Shared Volume."""
    return (path or '').startswith('\\\\') or 'clusterstorage' in ntpath.normcase(path or '')


class MigrationOps:
    def __init__(self, bridge: Bridge, conf: Any, vmops: VMOps, images: Any, files: HostFiles,
                 volumeops: Any = None) -> None:
        self._bridge = bridge
        self._conf = conf
        self._vmops = vmops
        self._images = images
        self._files = files
        self._volumeops = volumeops
        #: Bytes the last migrate_disk_and_power_off sent to another host.
        self.last_bytes = 0

    # -- volumes ----------------------------------------------------------------

    def _has_volumes(self, instance: Any, block_device_info: Any) -> bool:
        return bool(virt_driver.block_device_info_get_mapping(block_device_info))

    def _volumes(self, instance: Any, block_device_info: Any, action: str) -> None:
        """disconnect_volumes / connect_volumes, only when there are block devices."""
        if self._has_volumes(instance, block_device_info):
            getattr(self._volumeops, action)(instance, block_device_info)

    # -- source ---------------------------------------------------------------------

    def revert_dir(self, instance: Any) -> str:
        return self._vmops.instance_dir(instance) + REVERT_SUFFIX

    @staticmethod
    def check_target_flavor(instance: Any, flavor: Any) -> None:
        """A disk is never shrunk, a shielded VM never remade: refuse before the VM is touched."""
        if instancefeatures.wants_shielded_vm(instance):
            raise exception.InstanceFaultRollback(exception.ResizeError(
                reason='a shielded VM (os_shielded_vm) cannot be resized or cold migrated: '
                       'its disk is sealed to the key protector of the VM that was '
                       'provisioned, which psdriver does not carry over'))
        old = instance.flavor
        for what, new_gb, old_gb in (('root', flavor.root_gb, old.root_gb),
                                     ('ephemeral', flavor.ephemeral_gb, old.ephemeral_gb)):
            if new_gb < old_gb and not (what == 'root' and new_gb == 0):
                raise exception.InstanceFaultRollback(exception.ResizeError(
                    reason=f'the {what} disk cannot shrink from {old_gb} GB to {new_gb} GB '
                           f'(flavor {flavor.name}); Hyper-V disks only grow'))

    @staticmethod
    def _migration(context: Any, instance: Any) -> Any:
        mig_ctxt = instance.migration_context if 'migration_context' in instance else None
        if mig_ctxt is None or context is None:
            return None
        try:
            return objects.Migration.get_by_id(context, mig_ctxt.migration_id)
        except exception.MigrationNotFound:
            return None

    def migrate_disk_and_power_off(self, context: Any, instance: Any, dest: str, flavor: Any,
                                   network_info: Any, block_device_info: Any = None,
                                   timeout: int = 0, retry_interval: int = 0) -> str:
        self.check_target_flavor(instance, flavor)
        self._has_volumes(instance, block_device_info)     # refused before the VM stops
        migration = self._migration(context, instance)
        dest_node = migration.dest_node if migration is not None else dest
        same_host = migration is None and dest == self._conf.host or \
            migration is not None and migration.dest_compute == migration.source_compute
        shared = is_shared_path(self._conf.instances_path)
        instance_dir = self._vmops.instance_dir(instance)
        keep = shared and not same_host and not self._conf.hyperv.move_disks_on_cold_migration
        params: dict[str, Any] = {'Name': instance.name, 'InstanceUuid': instance.uuid,
                                  'InstanceDir': instance_dir,
                                  'RootSizeBytes': (flavor.root_gb or 0) * GIB}
        if keep:
            params['KeepInPlace'] = True
        else:
            params['RevertDir'] = self.revert_dir(instance)
            if same_host or shared:
                params['CopyTo'] = instance_dir
        self._vmops.power_off(instance, timeout, retry_interval)
        self._volumes(instance, block_device_info, 'disconnect_volumes')
        with errors.translate(instance.uuid, 'migrate_disk_and_power_off'):
            try:
                result = self._bridge.call('Export-InstanceDisk', params)
            except Exception as exc:
                if getattr(exc, 'error_id', '') == 'PsDriver.RootDiskTooSmall':
                    raise exception.InstanceFaultRollback(
                        exception.ResizeError(reason=exc.message)) from None
                raise
            finally:
                self._vmops.invalidate()
        self.last_bytes = 0
        if not (keep or same_host or shared):
            sources = [d['path'] for d in result['disks']]
            LOG.info('Copying %d disk files of %s to %s', len(sources), instance.name,
                     dest_node, instance=instance)
            try:
                self.last_bytes = self._files.copy_to_peer(sources, dest_node, instance_dir)
            except Exception as exc:
                LOG.error('Copying the disks of %s to %s failed (%s); restoring it here',
                          instance.name, dest_node, exc, instance=instance)
                self._restore(context, instance, network_info, block_device_info,
                              instance.vm_state != vm_states.STOPPED)
                raise exception.InstanceFaultRollback(exception.MigrationError(
                    reason=f'the disks of {instance.name} could not be copied to '
                           f'{dest_node}: {exc}')) from None
        return json.dumps({'disks': result['disks'], 'generation': result['generation'],
                           'source_folder': result['folder'], 'in_place': keep})

    # -- destination -----------------------------------------------------------------

    @staticmethod
    def _root(disk_info: Any) -> dict[str, Any] | None:
        info = json.loads(disk_info) if isinstance(disk_info, str) and disk_info else {}
        for disk in info.get('disks', []):
            if disk.get('root'):
                return disk
        return None

    def _ensure_base_image(self, context: Any, instance: Any, root: dict[str, Any]) -> None:
        """The root disk's parent (a cached image) must be in this host's image cache."""
        parent = root.get('parent_path')
        if not parent or not instance.image_ref:
            return
        old = instance.old_flavor if 'old_flavor' in instance and instance.old_flavor \
            else instance.flavor
        cached = self._images.get_cached_image(context, instance, old.root_gb or None,
                                               reuse_known=True)
        if ntpath.normcase(cached.path) != ntpath.normcase(parent):
            raise exception.MigrationError(
                reason=f'the root disk of {instance.name} is a differencing disk of {parent}, '
                       f'but this host caches that image as {cached.path}: give both hosts '
                       'the same instances_path')

    def finish_migration(self, context: Any, migration: Any, instance: Any, disk_info: Any,
                         network_info: Any, image_meta: Any, resize_instance: bool,
                         block_device_info: Any = None, power_on: bool = True) -> None:
        root = self._root(disk_info)
        info = json.loads(disk_info) if disk_info else {}
        if root is not None:
            self._ensure_base_image(context, instance, root)
        if resize_instance:
            for disk, wanted_gb in self._disks_to_grow(instance, info, root):
                path = ntpath.join(self._vmops.instance_dir(instance), disk['name'])
                with errors.translate(instance.uuid, 'finish_migration'):
                    self._bridge.call('Resize-InstanceDisk', {'Path': path,
                                                             'SizeBytes': wanted_gb * GIB})
        self._recreate(context, instance, image_meta, network_info, block_device_info,
                       power_on, info.get('generation'), root)

    @staticmethod
    def _disks_to_grow(instance: Any, info: dict[str, Any],
                       root: dict[str, Any] | None) -> list[tuple[dict[str, Any], int]]:
        """The root disk and the flavor's one ephemeral disk (eph0) the new flavor makes bigger.

        Ephemeral disks given as block devices (several, own sizes) are left as they are.
        """
        grow = []
        if root is not None and (instance.flavor.root_gb or 0) * GIB > root['virtual_size_bytes']:
            grow.append((root, instance.flavor.root_gb))
        ephemerals = [d for d in info.get('disks', [])
                      if d['name'].rsplit('.', 1)[0].lower().startswith('eph')]
        wanted = instance.flavor.ephemeral_gb or 0
        if len(ephemerals) == 1 and ephemerals[0]['name'].lower().startswith('eph0.') \
                and wanted * GIB > ephemerals[0]['virtual_size_bytes']:
            grow.append((ephemerals[0], wanted))
        return grow

    def _recreate(self, context: Any, instance: Any, image_meta: Any, network_info: Any,
                  block_device_info: Any, power_on: bool, generation: int | None,
                  root: dict[str, Any] | None) -> None:
        generation = generation or vm_generation(image_meta)
        root_format = root['format'] if root else None
        # A root file there is reused as it is; the size only has to say "a root disk".
        size_gb = instance.flavor.root_gb or (
            max(1, math.ceil(root['virtual_size_bytes'] / GIB)) if root else None)
        # create_from_disks connects the volumes and attaches them as spawn does, and
        # sets the flavor's disk QoS limit (New-Instance), so a resize applies the new one.
        if not (power_on and self._vmops.waits_for_vifs(network_info)):
            self._vmops.create_from_disks(context, instance, image_meta, network_info,
                                          block_device_info, power_on, generation,
                                          root_format, size_gb)
            return
        # Ports Neutron binds to this host: the VM is made off, started once they are.
        self._vmops.power_on_when_vifs_plugged(
            instance, network_info,
            plug=lambda: self._vmops.create_from_disks(
                context, instance, image_meta, network_info, block_device_info, False,
                generation, root_format, size_gb))

    # -- confirm and revert (source) ---------------------------------------------------

    def confirm_migration(self, context: Any, migration: Any, instance: Any) -> None:
        with errors.translate(instance.uuid, 'confirm_migration'):
            self._bridge.call('Remove-InstanceFolder', {'Path': self.revert_dir(instance)})

    def finish_revert_migration(self, context: Any, instance: Any, network_info: Any,
                                migration: Any, block_device_info: Any = None,
                                power_on: bool = True) -> None:
        self._restore(context, instance, network_info, block_device_info, power_on)

    def _restore(self, context: Any, instance: Any, network_info: Any,
                 block_device_info: Any, power_on: bool) -> None:
        """The kept files back in the instance folder, the VM made again over them."""
        with errors.translate(instance.uuid, 'finish_revert_migration'):
            restored = self._bridge.call('Restore-InstanceFolder', {
                'InstanceDir': self._vmops.instance_dir(instance),
                'RevertDir': self.revert_dir(instance)})
        LOG.info('Files of %s back in place (%s)', instance.name,
                 ', '.join(restored['files']), instance=instance)
        image_meta = objects.ImageMeta.from_instance(instance)
        root_format = None
        for name in restored['files']:
            stem, _, ext = name.rpartition('.')
            if stem == 'root' and ext in ('vhd', 'vhdx'):
                root_format = ext
        root = {'format': root_format, 'virtual_size_bytes': 0} if root_format else None
        self._recreate(context, instance, image_meta, network_info, block_device_info,
                       power_on, None, root)
