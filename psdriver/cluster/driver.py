"""Nova compute driver for Hyper-V failover clusters.

``[DEFAULT] compute_driver = psdriver.cluster.driver.HyperVClusterDriver``
(or ``compute_hyperv.cluster.driver.HyperVClusterDriver``).

Every instance is a clustered role (a cluster group named after its VM) on
storage all nodes share.  When a node fails, the cluster restarts its VMs on
other nodes; the failover watcher of the node that received one records
that in Nova (host, node, port bindings, placement allocations) under the
distributed lock ``failover-<instance name>``.  Operations that take a VM
out of Nova's hands on this node (destroy, cold migration) remove its role
first.
"""

from __future__ import annotations

from typing import Any

from nova import exception
from nova.virt import driver as nova_driver
from oslo_log import log as logging

import psdriver.conf
from psdriver import coordination
from psdriver import driver
from psdriver.cluster import clusterops, failover

LOG = logging.getLogger(__name__)
CONF = psdriver.conf.CONF

class ClusterVolumeNotSupported(exception.VolumeDriverNotFound):
    msg_fmt = ('Clustered instances can only use SMB volumes (smbfs): a %(driver_type)s '
               'volume is attached to one node and would not follow the instance when it '
               'fails over')


def _warn_unless_cluster_workarounds() -> None:
    """Say so when Nova may fight the cluster over the power state of failed-over VMs.

    Between a failover and the moment the receiving node records it, Nova
    still places the instance on the node that lost it, where the VM is
    gone: a lifecycle event or a power-state sync there would see it as
    stopped and could stop it or mark it shut down.
    """
    if CONF.workarounds.handle_virt_lifecycle_events:
        LOG.warning('[workarounds] handle_virt_lifecycle_events is on: with the cluster '
                    'driver set it to False, the cluster owns the power state of its VMs')
    if CONF.sync_power_state_interval != -1:
        LOG.warning('[DEFAULT] sync_power_state_interval is %s: with the cluster driver set '
                    'it to -1, or Nova may stop an instance that just failed over',
                    CONF.sync_power_state_interval)


class HyperVClusterDriver(driver.HyperVDriver):
    """Hyper-V compute driver for clustered hosts."""

    #: Pass-through disks (iSCSI, Fibre Channel) cannot fail over with their VM.
    VOLUME_TYPES = ('smbfs',)
    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        self._clusterops: clusterops.ClusterOps | None = None
        self._watcher: failover.FailoverWatcher | None = None

    @property
    def clusterops(self) -> clusterops.ClusterOps:
        if self._clusterops is None:
            self._clusterops = clusterops.ClusterOps(
                self.bridge, CONF, self.vmops, self.vifops, self._node_uuid,
                self.hostops.nodename)
        return self._clusterops

    @property
    def failover_watcher(self) -> failover.FailoverWatcher | None:
        return self._watcher

    # -- host ---------------------------------------------------------------------------

    def init_host(self, host: str) -> None:
        """Locks first, then the host checks, the cluster check, the reclaim, the watcher."""
        try:
            coordination.COORDINATOR.start()
        except coordination.LockError as exc:
            raise exception.NovaException(
                f'The cluster driver needs its distributed lock backend ([coordination] '
                f'backend_url): {exc}') from exc
        super().init_host(host)
        view = self.clusterops.check_node(host)
        _warn_unless_cluster_workarounds()
        self._watcher = failover.FailoverWatcher(
            self.clusterops, CONF.hyperv.cluster_event_check_interval)
        reclaimed = self._watcher.reclaim(view)
        if reclaimed:
            LOG.warning('Recorded %d instance(s) that failed over to %s while this service '
                        'was stopped', reclaimed, host)
        self._watcher.start()

    def cleanup_host(self, host: str) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        super().cleanup_host(host)

    # -- instances: clustered roles -------------------------------------------------------

    def _clustered(self, instance: Any) -> None:
        self.clusterops.add_to_cluster(instance)
        if self._watcher is not None:
            self._watcher.remember(instance.name, instance.uuid)

    def spawn(self, context, instance, image_meta, injected_files, admin_password,
              allocations, network_info=None, block_device_info=None, power_on=True,
              accel_info=None) -> None:
        for bdm in nova_driver.block_device_info_get_mapping(block_device_info):
            self._check_volume(bdm.get('connection_info'))
        super().spawn(context, instance, image_meta, injected_files, admin_password,
                      allocations, network_info, block_device_info, power_on, accel_info)
        # A failure here fails the spawn; nova's clean-up then destroys the VM.
        self._clustered(instance)

    def finish_migration(self, context, migration, instance, disk_info, network_info,
                         image_meta, resize_instance, allocations, block_device_info=None,
                         power_on=True, share_info=None) -> None:
        super().finish_migration(context, migration, instance, disk_info, network_info,
                                 image_meta, resize_instance, allocations, block_device_info,
                                 power_on, share_info=share_info)
        self._clustered(instance)

    def finish_revert_migration(self, context, instance, network_info, migration,
                                block_device_info=None, power_on=True,
                                share_info=None) -> None:
        super().finish_revert_migration(context, instance, network_info, migration,
                                        block_device_info, power_on, share_info=share_info)
        self._clustered(instance)

    def _unclustered(self, instance: Any):
        """Remove the role under the instance's failover lock, unless force_destroy_instances.

        Waiting for the lock keeps a destroy from racing the recording of a
        failover of the same instance; ``[hyperv] force_destroy_instances``
        skips the wait, as compute-hyperv skipped its pending-task wait.
        """
        if CONF.hyperv.force_destroy_instances:
            self.clusterops.remove_from_cluster(instance)
            return
        with coordination.lock(f'failover-{instance.name}',
                               timeout=clusterops.FAILOVER_LOCK_TIMEOUT):
            self.clusterops.remove_from_cluster(instance)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True) -> None:
        self._unclustered(instance)
        super().destroy(context, instance, network_info, block_device_info, destroy_disks,
                        destroy_secrets)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True) -> None:
        if migrate_data is not None and self._moved_within_cluster(instance):
            # The source's clean-up after a live migration within the cluster: the role
            # and its disks on the shared volume now belong to the destination node.
            destroy_disks = False
        else:
            self._unclustered(instance)
        super().cleanup(context, instance, network_info, block_device_info, destroy_disks,
                        migrate_data, destroy_vifs, destroy_secrets)

    def migrate_disk_and_power_off(self, context, instance, dest, flavor, network_info,
                                   block_device_info=None, timeout=0, retry_interval=0):
        self._unclustered(instance)
        return super().migrate_disk_and_power_off(context, instance, dest, flavor,
                                                  network_info, block_device_info, timeout,
                                                  retry_interval)

    def _moved_within_cluster(self, instance: Any) -> bool:
        """True when the instance's role is owned by another node of this cluster."""
        owner = self.clusterops.view().owners.get(instance.name.lower())
        return owner is not None and not clusterops.same_host(owner,
                                                              self.clusterops.node_name)

    # -- live migration -------------------------------------------------------------------------

    def live_migration(self, context, instance, dest, post_method, recover_method,
                       block_migration=False, migrate_data=None) -> None:
        """Within the cluster the cluster moves the role; elsewhere it leaves the cluster first.

        A failed move within the cluster is settled as compute-hyperv did:
        the VM where it started is recovered (``recover_method``), the VM
        that reached ``dest`` after all is finished (``post_method``), a VM
        on neither raises (nova's compute manager then sets ERROR).
        """
        view = self.clusterops.view()
        node = next((n for n in view.nodes if clusterops.same_host(n, dest)), None)
        if node is None:
            self._unclustered(instance)
            super().live_migration(context, instance, dest, post_method, recover_method,
                                   block_migration, migrate_data)
            return
        try:
            self.clusterops.live_migrate(instance, node)
        except Exception as exc:
            owner = self.clusterops.view().owners.get(instance.name.lower())
            LOG.error('Live migration of %s to %s within the cluster failed (%s); the VM is '
                      'on %s', instance.name, dest, exc, owner, instance=instance)
            if clusterops.same_host(owner, dest):
                post_method(context, instance, dest, block_migration, migrate_data)
                return
            if clusterops.same_host(owner, self.clusterops.node_name):
                recover_method(context, instance, dest, migrate_data)
                return
            raise       # nova's compute manager sets the instance to ERROR
        post_method(context, instance, dest, block_migration, migrate_data)

    # -- volumes ------------------------------------------------------------------------------

    def _check_volume(self, connection_info: Any) -> None:
        driver_type = (connection_info or {}).get('driver_volume_type') or 'unknown'
        if driver_type not in self.VOLUME_TYPES:
            raise ClusterVolumeNotSupported(driver_type=driver_type)

    def attach_volume(self, context, connection_info, instance, mountpoint, disk_bus=None,
                      device_type=None, encryption=None) -> None:
        self._check_volume(connection_info)
        super().attach_volume(context, connection_info, instance, mountpoint, disk_bus,
                              device_type, encryption)
