"""Clustered roles of instances and what Nova must learn when one fails over.

One host script per step (:mod:`ps_scripts`): ``Get-ClusterInstanceState``
(the nodes and the owner of every VM group, in one call),
``Add-InstanceClusterRole`` and ``Remove-InstanceClusterRole``.  A failover
found by :mod:`psdriver.cluster.failover` is handled here, under the
distributed lock ``failover-<instance name>`` that compute-hyperv used, so
that it is handled once however many services see it.
"""

from __future__ import annotations

import dataclasses
import ntpath
from typing import Any, Callable

from nova import context as nova_context
from nova import exception
from nova import objects
from nova.compute import power_state, task_states, vm_states
from oslo_log import log as logging

from psdriver import coordination
from psdriver.bridge import errors as bridge_errors
from psdriver.bridge.client import Bridge
from psdriver.ops import errors

LOG = logging.getLogger(__name__)

#: Seconds to wait for the failover lock of one instance before trying at the next poll.
FAILOVER_LOCK_TIMEOUT = 60.0
CLUSTER_UNAVAILABLE = 'PsDriver.ClusterUnavailable'


class NotAClusterNode(exception.NovaException):
    msg_fmt = ('The cluster driver needs a Hyper-V host that is a node of a running failover '
               'cluster: %(reason)s')


@dataclasses.dataclass(frozen=True)
class ClusterView:
    """One answer of Get-ClusterInstanceState."""

    cluster_name: str
    node_name: str
    nodes: dict[str, str]             # node name -> Up | Down | Paused | Joining
    owners: dict[str, str | None]     # group (instance) name, lower case -> owner node
    states: dict[str, str]            # group name, lower case -> group state

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> ClusterView:
        return cls(cluster_name=result['cluster_name'], node_name=result['node_name'],
                   nodes={n['name']: n['state'] for n in result['nodes']},
                   owners={g['name'].lower(): g['owner_node'] for g in result['groups']},
                   states={g['name'].lower(): g['state'] for g in result['groups']})


def same_host(left: str | None, right: str | None) -> bool:
    """Cluster node names and Nova host names compare case-insensitively (NetBIOS names)."""
    return bool(left) and bool(right) and left.lower() == right.lower()


class ClusterOps:
    """The cluster half of the cluster driver; ``host`` is this service's ``CONF.host``."""

    def __init__(self, bridge: Bridge, conf: Any, vmops: Any, vifops: Any,
                 node_uuid: Callable[[], str], nodename: Callable[[], str],
                 network_api: Callable[[], Any] | None = None,
                 placement: Callable[[], Any] | None = None) -> None:
        self._bridge = bridge
        self._conf = conf
        self._vmops = vmops
        self._vifops = vifops
        self._node_uuid = node_uuid
        self._nodename = nodename
        self._network_api_factory = network_api or _neutron_api
        self._placement_factory = placement or _report_client
        self._network_api_obj: Any = None
        self._placement_obj: Any = None
        self.host: str | None = None
        #: This node's name in the cluster (its Hyper-V host name), once check_node ran.
        self.node_name: str | None = None
        #: Handled failovers, for tests and the demo: (instance uuid, from host, to host).
        self.handled: list[tuple[str, str | None, str]] = []
        #: Instances that left this node, whose VIFs were unplugged here (uuids).
        self.released: list[str] = []

    # -- the cluster -------------------------------------------------------------------

    def view(self) -> ClusterView:
        """Every node and the owner of every VM group, in one host call."""
        try:
            result = self._bridge.call('Get-ClusterInstanceState', {})
        except bridge_errors.ScriptError as exc:
            if exc.error_id == CLUSTER_UNAVAILABLE:
                raise NotAClusterNode(reason=exc.message) from None
            raise errors.HyperVHostError(reason=f'{exc.script}: {exc.message}') from None
        except bridge_errors.BridgeError as exc:
            raise errors.HyperVHostError(reason=str(exc)) from None
        return ClusterView.from_result(result)

    def check_node(self, host: str) -> ClusterView:
        """This host is a node of a running cluster, and its node name is Nova's host name.

        compute-hyperv recorded failed-over instances under the node name
        that received them, so ``[DEFAULT] host`` must be that name.
        """
        self.host = host
        view = self.view()
        self.node_name = view.node_name
        if not same_host(view.node_name, host):
            raise NotAClusterNode(reason=(
                f'this compute service is host {host!r} but its Hyper-V host is cluster node '
                f'{view.node_name!r} of {view.cluster_name}; set [DEFAULT] host to the node '
                'name so that instances that fail over are recorded on the right service'))
        LOG.info('Hyper-V host %s is a node of failover cluster %s (nodes: %s)',
                 view.node_name, view.cluster_name,
                 ', '.join(f'{n} {s}' for n, s in view.nodes.items()))
        return view

    # -- clustered roles ---------------------------------------------------------------

    def add_to_cluster(self, instance: Any) -> dict[str, Any]:
        """Make the instance's VM a clustered role with the configured failover policy."""
        hyperv = self._conf.hyperv
        params = {'Name': instance.name, 'MaxFailoverCount': hyperv.max_failover_count,
                  'FailoverPeriod': hyperv.failover_period,
                  'AutoFailback': bool(hyperv.auto_failback)}
        with errors.translate(instance.uuid, 'add to cluster'):
            result = self._bridge.call('Add-InstanceClusterRole', params)
        LOG.info('VM %s is a clustered role owned by %s', instance.name, result['owner_node'],
                 instance=instance)
        return result

    def remove_from_cluster(self, instance: Any) -> dict[str, Any]:
        """Remove the instance's clustered role (none is fine); the VM stays."""
        with errors.translate(operation='remove from cluster'):
            result = self._bridge.call('Remove-InstanceClusterRole', {'Name': instance.name})
        if result['removed']:
            LOG.info('VM %s is no longer a clustered role', instance.name, instance=instance)
        return result

    def live_migrate(self, instance: Any, node: str) -> dict[str, Any]:
        """Move the running VM to ``node`` of this cluster (Move-ClusterVirtualMachineRole)."""
        timeout = self._conf.hyperv.instance_live_migration_timeout
        params = {'Name': instance.name, 'Node': node, 'TimeoutSeconds': max(1, timeout)}
        try:
            with errors.translate(operation='live migration in the cluster'):
                result = self._bridge.call('Move-InstanceClusterRole', params,
                                           timeout=max(1, timeout) + 60)
        finally:
            self._vmops.invalidate()
        LOG.info('VM %s live migrated within the cluster from %s to %s', instance.name,
                 result['source_node'], result['owner_node'], instance=instance)
        return result

    # -- failover ------------------------------------------------------------------------

    @property
    def _network_api(self) -> Any:
        if self._network_api_obj is None:
            self._network_api_obj = self._network_api_factory()
        return self._network_api_obj

    @property
    def _placement(self) -> Any:
        if self._placement_obj is None:
            self._placement_obj = self._placement_factory()
        return self._placement_obj

    def local_uuids(self) -> dict[str, str]:
        """Instance UUID of each Nova VM on this node, by lower-case VM name."""
        return {vm['name'].lower(): uuid for uuid, vm in self._vmops.summary(refresh=True).items()}

    def take_over(self, name: str, instance_uuid: str) -> bool:
        """Record in Nova that ``name`` failed over to this node; True if this call did it.

        Under the lock ``failover-<name>`` the instance is read again: when
        its host already is this one (another thread, an earlier poll or a
        reclaim handled it), nothing is done.  Raises
        :class:`~psdriver.coordination.LockError` when the lock backend
        fails; the watcher then tries again at its next poll.
        """
        ctx = nova_context.get_admin_context()
        with coordination.lock(f'failover-{name}', timeout=FAILOVER_LOCK_TIMEOUT):
            try:
                instance = objects.Instance.get_by_uuid(
                    ctx, instance_uuid, expected_attrs=['info_cache', 'flavor'])
            except exception.InstanceNotFound:
                LOG.debug('VM %s failed over here but instance %s is not in Nova', name,
                          instance_uuid)
                return False
            if same_host(instance.host, self.host):
                return False
            if instance.task_state == task_states.MIGRATING:
                LOG.debug('Instance %s is being live migrated by Nova: not a failover',
                          instance.name, instance=instance)
                return False
            self._failover(ctx, instance)
            return True

    def _failover(self, ctx: Any, instance: Any) -> None:
        old_host, old_node = instance.host, instance.node
        new_node = self.node_name or self._nodename()
        LOG.warning('Instance %s failed over from %s to this node %s', instance.name, old_host,
                    self.host, instance=instance)
        network_info = instance.get_network_info()
        # As compute-hyperv: a long failover may have left the instance in ERROR or NOSTATE.
        if instance.vm_state == vm_states.ERROR:
            instance.vm_state = vm_states.ACTIVE
        if instance.power_state == power_state.NOSTATE:
            instance.power_state = power_state.RUNNING
        instance.host = self.host
        instance.node = new_node
        instance.compute_id = objects.ComputeNode.get_by_uuid(ctx, self._node_uuid()).id
        instance.save(expected_task_state=[None])

        self._move_ports(ctx, instance, old_host, old_node, new_node)
        self._move_allocations(ctx, instance, old_host, old_node)
        if self._conf.hyperv.recreate_ports_on_failover and network_info:
            try:
                self._vifops.unplug(instance, network_info)
                self._vifops.plug(instance, network_info)
            except Exception as exc:   # the instance is ours now; its NICs can be fixed later
                LOG.error('Re-plugging the VIFs of %s after its failover failed: %s',
                          instance.name, exc, instance=instance)
        self._start_console_logger(instance)
        self._vmops.invalidate()
        self.handled.append((instance.uuid, old_host, self.host))

    def _move_ports(self, ctx: Any, instance: Any, old_host: str | None,
                    old_node: str | None, new_node: str) -> None:
        """Bind the instance's Neutron ports to this host, as after an evacuation."""
        migration = objects.Migration(source_compute=old_host, dest_compute=self.host,
                                      source_node=old_node, dest_node=new_node,
                                      migration_type='evacuation')
        api = self._network_api
        try:
            api.setup_networks_on_host(ctx, instance, self.host)
            api.migrate_instance_start(ctx, instance, migration)
            api.migrate_instance_finish(ctx, instance, migration, provider_mappings=None)
            if old_host:
                api.setup_networks_on_host(ctx, instance, old_host, teardown=True)
        except Exception as exc:
            LOG.error('Binding the ports of %s to %s after its failover failed: %s',
                      instance.name, self.host, exc, instance=instance)

    def _move_allocations(self, ctx: Any, instance: Any, old_host: str | None,
                          old_node: str | None) -> None:
        """Move the instance's placement allocations from the old node's provider to ours."""
        new_rp = self._node_uuid()
        try:
            old_rp = objects.ComputeNode.get_by_host_and_nodename(ctx, old_host, old_node).uuid
        except (exception.ComputeHostNotFound, exception.NotFound):
            LOG.warning('Compute node %s/%s of failed-over instance %s not found: its '
                        'allocations stay where they are', old_host, old_node, instance.name,
                        instance=instance)
            return
        if old_rp == new_rp:
            return
        client = self._placement
        try:
            current = client.get_allocs_for_consumer(ctx, instance.uuid)
            allocations = current.get('allocations') or {}
            if old_rp not in allocations:
                LOG.warning('Instance %s has no allocation on provider %s', instance.name,
                            old_rp, instance=instance)
                return
            moved = {rp: {'resources': alloc['resources']} for rp, alloc in allocations.items()
                     if rp != old_rp}
            merged = dict(allocations[old_rp]['resources'])
            for rc, amount in (moved.get(new_rp, {}).get('resources') or {}).items():
                merged[rc] = merged.get(rc, 0) + amount
            moved[new_rp] = {'resources': merged}
            payload = {'allocations': moved,
                       'consumer_generation': current.get('consumer_generation'),
                       'project_id': current.get('project_id') or instance.project_id,
                       'user_id': current.get('user_id') or instance.user_id}
            if not client.put_allocations(ctx, instance.uuid, payload):
                raise exception.AllocationUpdateFailed(consumer_uuid=instance.uuid,
                                                       error='placement refused the update')
        except Exception as exc:
            LOG.error('Moving the allocations of %s from provider %s to %s failed: %s',
                      instance.name, old_rp, new_rp, exc, instance=instance)
            return
        LOG.info('Moved the allocations of %s from provider %s to %s', instance.name, old_rp,
                 new_rp, instance=instance)

    def _start_console_logger(self, instance: Any) -> None:
        from psdriver.ops import vmops as vmops_module

        params = {'Name': instance.name,
                  'LogPath': ntpath.join(self._vmops.instance_dir(instance),
                                         vmops_module.CONSOLE_LOG),
                  'MaxLogBytes': vmops_module.CONSOLE_LOG_BYTES}
        try:
            self._bridge.call('Start-InstanceConsoleLogger', params)
        except bridge_errors.PsDriverBridgeException as exc:
            LOG.warning('Console log of %s not restarted after its failover: %s',
                        instance.name, exc, instance=instance)

    def release(self, name: str, instance_uuid: str) -> None:
        """This node lost ``name`` to another: unplug its VIFs here (compute-hyperv did)."""
        ctx = nova_context.get_admin_context()
        self._vmops.invalidate()
        try:
            instance = objects.Instance.get_by_uuid(ctx, instance_uuid,
                                                    expected_attrs=['info_cache'])
            LOG.info('Instance %s moved away from this node', name, instance=instance)
            self._vifops.unplug(instance, instance.get_network_info())
        except exception.InstanceNotFound:
            return
        except Exception as exc:   # the VM is gone from here either way
            LOG.warning('Unplugging the VIFs of %s after it left this node failed: %s', name,
                        exc)
            return
        self.released.append(instance_uuid)


def _neutron_api() -> Any:
    from nova.network import neutron

    return neutron.API()


def _report_client() -> Any:
    from nova.scheduler.client import report

    return report.report_client_singleton()
