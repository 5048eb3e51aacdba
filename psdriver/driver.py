"""Nova compute driver for Hyper-V, driven through PowerShell.

``[DEFAULT] compute_driver = psdriver.driver.HyperVDriver`` (or the
compute-hyperv name ``compute_hyperv.driver.HyperVDriver``) loads this class
through the shims under ``nova/virt/``.

Thin by design: every method hands off to one ops module.  Ops build plain
requests (script name + parameters); the bridge renders and runs them on the
host through the transport ``[powershell] transport`` names.
"""

from __future__ import annotations

import ntpath
from typing import Any

from nova import exception
from nova.virt import driver
from nova.virt import node as nova_node
from oslo_log import log as logging

import psdriver.conf
from psdriver import coordination
from psdriver.bridge import errors as bridge_errors
from psdriver.bridge import factory
from psdriver.ops import (
    errors, eventhandler, hostfiles, hostops, imagecache, instancefeatures, livemigrationops,
    maintenanceops, migrationops, serialconsoleops, snapshotops, vifops, vmops, volumeops)

LOG = logging.getLogger(__name__)
CONF = psdriver.conf.CONF


class HyperVDriver(driver.ComputeDriver):
    """Hyper-V compute driver."""

    # Only what works today; each grows true as its issue lands.
    capabilities = dict(
        driver.ComputeDriver.capabilities,
        has_imagecache=True,
        supports_evacuate=False,
        supports_migrate_to_same_host=True,
        supports_attach_interface=True,
        supports_device_tagging=False,
        supports_tagged_attach_interface=False,
        supports_tagged_attach_volume=False,
        supports_extend_volume=True,
        supports_multiattach=False,
        supports_trusted_certs=False,
        supports_secure_boot=True,
        supports_vtpm=True,
        supports_image_type_vhd=True,
        supports_image_type_vhdx=True,
        supports_image_type_iso=True,
    )

    #: Cinder driver_volume_types this driver attaches (the cluster driver narrows it).
    VOLUME_TYPES: tuple[str, ...] = ('iscsi', 'fibre_channel', 'smbfs')

    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi)
        # A bad option value stops nova-compute here, naming the option, not at
        # the first operation that reads it.
        try:
            psdriver.conf.validate(CONF)
        except psdriver.conf.InvalidOptionValue as exc:
            raise exception.InvalidConfiguration(message=str(exc)) from None
        self._bridge = None
        self._hostops: hostops.HostOps | None = None
        self._vmops: vmops.VMOps | None = None
        self._snapshotops: snapshotops.SnapshotOps | None = None
        self._migrationops: migrationops.MigrationOps | None = None
        self._livemigrationops: livemigrationops.LiveMigrationOps | None = None
        #: Volume connections (attach/detach, migrations); None until volume support lands.
        self._volumeops: Any = None
        self._vifops: vifops.VifOps | None = None
        self._volumeops: volumeops.VolumeOps | None = None
        self._imagecache: imagecache.ImageCache | None = None
        self._serialconsole: serialconsoleops.SerialConsoleOps | None = None
        self._events: eventhandler.LifecycleEventPoller | None = None
        self.host_report: dict[str, Any] | None = None
        self._node_id: str | None = None

    # -- wiring -----------------------------------------------------------------------

    def _connect(self) -> None:
        if self._bridge is not None:
            return
        bridge = factory.build_bridge(CONF)
        self._bridge = bridge
        self._hostops = hostops.HostOps(bridge, lambda: CONF.instances_path)
        self._vifops = vifops.VifOps(bridge, CONF)
        self._imagecache = imagecache.ImageCache(bridge, CONF)
        self._volumeops = volumeops.VolumeOps(bridge, CONF, self.VOLUME_TYPES)
        self._files = hostfiles.for_transport(CONF, bridge)
        self._vmops = vmops.VMOps(bridge, CONF, self._imagecache, self._vifops,
                                  virtapi=self.virtapi, host_facts=self._hostops.host_facts,
                                  host_info=self._hostops.host_info, volumes=self._volumeops,
                                  files=self._files)
        self._serialconsole = serialconsoleops.SerialConsoleOps(bridge, CONF,
                                                                self._vmops.instance_dir)
        self._snapshotops = snapshotops.SnapshotOps(bridge, CONF, self._files,
                                                    on_change=self._vmops.invalidate)
        self._migrationops = migrationops.MigrationOps(bridge, CONF, self._vmops,
                                                       self._imagecache, self._files,
                                                       self._volumeops)
        self._livemigrationops = livemigrationops.LiveMigrationOps(
            bridge, CONF, self._vmops, self._imagecache, self._vifops, self._files,
            self._volumeops)

    @property
    def bridge(self):
        self._connect()
        return self._bridge

    @property
    def hostops(self) -> hostops.HostOps:
        self._connect()
        return self._hostops

    @property
    def vmops(self) -> vmops.VMOps:
        self._connect()
        return self._vmops

    @property
    def snapshotops(self) -> snapshotops.SnapshotOps:
        self._connect()
        return self._snapshotops

    @property
    def migrationops(self) -> migrationops.MigrationOps:
        self._connect()
        return self._migrationops

    @property
    def livemigrationops(self) -> livemigrationops.LiveMigrationOps:
        self._connect()
        return self._livemigrationops

    @property
    def vifops(self) -> vifops.VifOps:
        self._connect()
        return self._vifops

    @property
    def serialconsole(self) -> serialconsoleops.SerialConsoleOps:
        self._connect()
        return self._serialconsole

    @property
    def volumeops(self) -> volumeops.VolumeOps:
        self._connect()
        return self._volumeops

    @property
    def imagecache(self) -> imagecache.ImageCache:
        self._connect()
        return self._imagecache

    # -- host ---------------------------------------------------------------------------

    def init_host(self, host: str) -> None:
        """Check the host, create the instance folders, start locks and events.

        No usable transport, no Hyper-V, or an unreachable instances_path
        stop the service here with the host's own message.
        """
        try:
            self._connect()
        except bridge_errors.BridgeUnavailable as exc:
            raise exception.NovaException(str(exc)) from exc
        params: dict[str, Any] = {
            'InstancesPath': CONF.instances_path,
            'BaseDirectoryName': CONF.image_cache.subdirectory_name,
            # Console loggers do not survive a host reboot: the running instances get
            # theirs back in the same round trip.
            'ConsoleLogFileName': vmops.CONSOLE_LOG,
            'ConsoleLogMaxBytes': vmops.CONSOLE_LOG_BYTES,
        }
        if CONF.hyperv.vswitch_name:
            params['RequiredSwitches'] = [CONF.hyperv.vswitch_name]
        with errors.translate(operation='init_host'):
            report = self._bridge.call('Initialize-ComputeHost', params)
        if not report['hyperv_module_native']:
            raise exception.NovaException(
                f"{report['hostname']} runs Windows {report['os_version']} "
                f"({report['os_caption']}) and the scripts ran in PowerShell "
                f"{report['powershell_version']}: PowerShell 7 uses the Hyper-V module of "
                'Windows before build 17763 (Windows Server 2016) only through the '
                'compatibility layer, whose serialized objects the scripts cannot pass to '
                'Hyper-V cmdlets. Use Windows PowerShell 5.1 on this host: [powershell] '
                'executable = powershell.exe (or auto) for transport = local; the default '
                'Microsoft.PowerShell endpoint for transport = psrp.')
        where = report['instances_path']
        if where.get('kind') == 'mapped':
            # The Virtual Machine Management service runs in no logon session:
            # it never sees a drive letter mapped in one.
            raise exception.NovaException(
                f"instances_path {where.get('path')} is on a drive letter mapped to a network "
                f"share in a user's logon session on {report['hostname']}; Hyper-V cannot "
                'keep virtual machines there. Map the share for the whole host instead '
                '(New-SmbGlobalMapping -LocalPath X: -RemotePath \\\\server\\share '
                '-Credential ... -Persistent $true) or set instances_path to the UNC path of '
                'the share (\\\\server\\share\\...).')
        self.host_report = report
        for switch in report['missing_switches']:
            LOG.warning('Virtual switch %s ([hyperv] vswitch_name) does not exist on %s',
                        switch, report['hostname'])
        LOG.info('Hyper-V host %s ready: Windows %s, instances in %s (%s)', report['hostname'],
                 report['os_version'], report['instances_path'].get('path'),
                 report['instances_path'].get('kind'))
        for logger in report['console_loggers']:
            if not logger['running']:
                LOG.warning('Console log of %s not started: %s', logger['name'], logger['error'])
        if CONF.hyperv.enable_remotefx:
            LOG.error('[hyperv] enable_remotefx = True is not supported: Microsoft removed '
                      'RemoteFX vGPU from Windows Server. Flavors asking for it (os:resolution, '
                      'os:monitors, os:vram) are refused; set enable_remotefx = False.')
        coordination.COORDINATOR.start()
        if CONF.workarounds.handle_virt_lifecycle_events:
            self._events = eventhandler.LifecycleEventPoller(
                lambda: self._vmops.summary(refresh=True), self.emit_event,
                CONF.hyperv.power_state_event_polling_interval)
            self._events.start()

    def cleanup_host(self, host: str) -> None:
        if self._events is not None:
            self._events.stop()
            self._events = None
        coordination.COORDINATOR.stop()
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        return [self.hostops.nodename()]

    def _node_uuid(self) -> str:
        """This node's identity (nova's compute_id file), read once as the libvirt driver does."""
        if self._node_id is None:
            self._node_id = nova_node.get_local_node_uuid()
        return self._node_id

    def get_nodenames_by_uuid(self, refresh: bool = False) -> dict[str, str]:
        return {self._node_uuid(): self.hostops.nodename()}

    def get_available_resource(self, nodename: str) -> dict[str, Any]:
        resources = self.hostops.get_available_resource(nodename)
        resources['uuid'] = self._node_uuid()
        return resources

    def update_provider_tree(self, provider_tree: Any, nodename: str,
                             allocations: Any = None) -> None:
        inventory = provider_tree.data(nodename).inventory
        ratios = self._get_allocation_ratios(inventory)
        provider_tree.update_inventory(nodename, self.hostops.provider_inventory(
            CONF, self._get_reserved_host_disk_gb_from_config(), ratios))
        ours = {t for t in provider_tree.data(nodename).traits
                if t.startswith('HW_CPU_X86_') or t in instancefeatures.SECURITY_TRAITS}
        wanted = self.hostops.host_traits()
        if ours - wanted:
            provider_tree.remove_traits(nodename, *(ours - wanted))
        if wanted - ours:
            provider_tree.add_traits(nodename, *(wanted - ours))

    def get_host_ip_addr(self) -> str:
        return self.hostops.get_host_ip_addr(CONF.my_ip)

    def get_host_uptime(self) -> str:
        return self.hostops.get_host_uptime()

    def host_power_action(self, action: str) -> str:
        return self.hostops.host_power_action(action)

    def host_maintenance_mode(self, host: str, mode: bool) -> str:
        return maintenanceops.HostMaintenance(
            CONF, self.vmops.list_instance_uuids).set_mode(host, mode)

    # -- instances: listing and state ------------------------------------------------

    def list_instances(self) -> list[str]:
        return self.vmops.list_instances()

    def list_instance_uuids(self) -> list[str]:
        return self.vmops.list_instance_uuids()

    def instance_exists(self, instance: Any) -> bool:
        return self.vmops.instance_exists(instance)

    def get_info(self, instance: Any, use_cache: bool = True):
        return self.vmops.get_info(instance, use_cache)

    # -- instances: life cycle ----------------------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files, admin_password,
              allocations, network_info=None, block_device_info=None, power_on=True,
              accel_info=None) -> None:
        self.vmops.spawn(context, instance, image_meta, injected_files, admin_password,
                         network_info, block_device_info, power_on)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True) -> None:
        self._destroy(instance, destroy_disks, block_device_info, network_info)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True) -> None:
        # Idempotent: whatever destroy left (or a failed spawn) is removed.
        self._destroy(instance, destroy_disks, block_device_info,
                      network_info if destroy_vifs else None)

    def _destroy(self, instance, destroy_disks: bool, block_device_info=None,
                 network_info=None) -> None:
        # A snapshot in progress finishes first, unless force_destroy_instances.
        if CONF.hyperv.force_destroy_instances:
            self.vmops.destroy(instance, destroy_disks, block_device_info, network_info)
            return
        with snapshotops.instance_lock(instance.uuid):
            self.vmops.destroy(instance, destroy_disks, block_device_info, network_info)

    def snapshot(self, context, instance, image_id, update_task_state) -> None:
        self.snapshotops.snapshot(context, instance, image_id, update_task_state)

    # -- resize and cold migration -------------------------------------------------------

    def migrate_disk_and_power_off(self, context, instance, dest, flavor, network_info,
                                   block_device_info=None, timeout=0, retry_interval=0) -> str:
        return self.migrationops.migrate_disk_and_power_off(
            context, instance, dest, flavor, network_info, block_device_info, timeout,
            retry_interval)

    def finish_migration(self, context, migration, instance, disk_info, network_info,
                         image_meta, resize_instance, allocations, block_device_info=None,
                         power_on=True, share_info=None) -> None:
        self.migrationops.finish_migration(context, migration, instance, disk_info,
                                           network_info, image_meta, resize_instance,
                                           block_device_info, power_on)

    def confirm_migration(self, context, migration, instance, network_info) -> None:
        self.migrationops.confirm_migration(context, migration, instance)

    def finish_revert_migration(self, context, instance, network_info, migration,
                                block_device_info=None, power_on=True,
                                share_info=None) -> None:
        self.migrationops.finish_revert_migration(context, instance, network_info, migration,
                                                  block_device_info, power_on)

    # -- live migration -------------------------------------------------------------------

    def check_can_live_migrate_destination(self, context, instance, src_compute_info,
                                           dst_compute_info, block_migration=False,
                                           disk_over_commit=False):
        return self.livemigrationops.check_can_live_migrate_destination(
            context, instance, src_compute_info, dst_compute_info, block_migration,
            disk_over_commit)

    def cleanup_live_migration_destination_check(self, context, dest_check_data) -> None:
        self.livemigrationops.cleanup_live_migration_destination_check(context,
                                                                       dest_check_data)

    def check_can_live_migrate_source(self, context, instance, dest_check_data,
                                      block_device_info=None):
        return self.livemigrationops.check_can_live_migrate_source(
            context, instance, dest_check_data, block_device_info)

    def pre_live_migration(self, context, instance, block_device_info, network_info,
                           disk_info, migrate_data):
        return self.livemigrationops.pre_live_migration(
            context, instance, block_device_info, network_info, disk_info, migrate_data)

    def live_migration(self, context, instance, dest, post_method, recover_method,
                       block_migration=False, migrate_data=None) -> None:
        self.livemigrationops.live_migration(context, instance, dest, post_method,
                                             recover_method, block_migration, migrate_data)

    def post_live_migration(self, context, instance, block_device_info,
                            migrate_data=None) -> None:
        self.livemigrationops.post_live_migration(context, instance, block_device_info,
                                                  migrate_data)

    def post_live_migration_at_source(self, context, instance, network_info) -> None:
        self.vifops.unplug(instance, network_info)

    def post_live_migration_at_destination(self, context, instance, network_info,
                                           block_migration=False,
                                           block_device_info=None) -> None:
        self.livemigrationops.post_live_migration_at_destination(
            context, instance, network_info, block_migration, block_device_info)

    def rollback_live_migration_at_destination(self, context, instance, network_info,
                                               block_device_info, destroy_disks=True,
                                               migrate_data=None) -> None:
        self.livemigrationops.rollback_live_migration_at_destination(
            context, instance, network_info, block_device_info, destroy_disks, migrate_data)

    def check_instance_shared_storage_local(self, context, instance):
        return self.livemigrationops.check_instance_shared_storage_local(context, instance)

    def check_instance_shared_storage_remote(self, context, data) -> bool:
        return self.livemigrationops.check_instance_shared_storage_remote(context, data)

    def check_instance_shared_storage_cleanup(self, context, data) -> None:
        self.livemigrationops.check_instance_shared_storage_cleanup(context, data)

    def reboot(self, context, instance, network_info, reboot_type, block_device_info=None,
               bad_volumes_callback=None, accel_info=None, share_info=None) -> None:
        self.vmops.reboot(instance, reboot_type)

    def power_off(self, instance, timeout=0, retry_interval=0) -> None:
        self.vmops.power_off(instance, timeout, retry_interval)

    def power_on(self, context, instance, network_info, block_device_info=None,
                 accel_info=None, share_info=None) -> None:
        self.vmops.power_on(instance)

    def resume_state_on_host_boot(self, context, instance, network_info, share_info,
                                  block_device_info=None) -> None:
        self.vmops.power_on(instance)

    def pause(self, instance) -> None:
        self.vmops.pause(instance)

    def unpause(self, instance) -> None:
        self.vmops.unpause(instance)

    def suspend(self, context, instance) -> None:
        self.vmops.suspend(instance)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None) -> None:
        self.vmops.resume(instance)

    def rescue(self, context, instance, network_info, image_meta, rescue_password,
               block_device_info, share_info=None) -> None:
        self.vmops.rescue(context, instance, network_info, image_meta, rescue_password,
                          block_device_info)

    def unrescue(self, context, instance) -> None:
        self.vmops.unrescue(instance)

    def get_console_output(self, context, instance) -> bytes:
        return self.vmops.get_console_output(instance)

    def get_serial_console(self, context, instance):
        return self.serialconsole.get_serial_console(instance)

    def get_instance_diagnostics(self, instance):
        return self.vmops.get_instance_diagnostics(instance)

    def instance_on_disk(self, instance) -> bool:
        # A UNC or CSV instances_path is shared between hosts.
        path = CONF.instances_path or ''
        return path.startswith('\\\\') or 'clusterstorage' in ntpath.normcase(path)

    # -- networking ---------------------------------------------------------------------

    def plug_vifs(self, instance, network_info) -> None:
        self.vifops.plug(instance, network_info)

    def unplug_vifs(self, instance, network_info) -> None:
        self.vifops.unplug(instance, network_info)

    def attach_interface(self, context, instance, image_meta, vif) -> None:
        self.vifops.attach(instance, vif)

    def detach_interface(self, context, instance, vif) -> None:
        self.vifops.detach(instance, vif)

    # -- volumes ------------------------------------------------------------------------

    def get_volume_connector(self, instance) -> dict[str, Any]:
        return self.volumeops.get_volume_connector()

    def attach_volume(self, context, connection_info, instance, mountpoint, disk_bus=None,
                      device_type=None, encryption=None) -> None:
        if encryption:
            raise exception.VolumeEncryptionNotSupported(
                volume_type=connection_info.get('driver_volume_type'),
                volume_id=volumeops.volume_id_of(connection_info))
        self.volumeops.attach_volume(instance, connection_info)

    def detach_volume(self, context, connection_info, instance, mountpoint,
                      encryption=None) -> None:
        self.volumeops.detach_volume(instance, connection_info)

    def extend_volume(self, context, connection_info, instance, requested_size) -> None:
        self.volumeops.extend_volume(instance, connection_info, requested_size)

    def volume_snapshot_create(self, context, instance, volume_id, create_info) -> None:
        self.volumeops.volume_snapshot_create(context, instance, volume_id, create_info)

    def volume_snapshot_delete(self, context, instance, volume_id, snapshot_id,
                               delete_info) -> None:
        self.volumeops.volume_snapshot_delete(context, instance, volume_id, snapshot_id,
                                              delete_info)

    # -- image cache --------------------------------------------------------------------

    def manage_image_cache(self, context, all_instances) -> None:
        self.imagecache.update(context, all_instances)

    def cache_image(self, context, image_id) -> bool:
        return self.imagecache.cache_image(context, image_id)

