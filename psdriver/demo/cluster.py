"""``psdriver demo --cluster``: an instance failing over between the nodes of a cluster.

Three real ``HyperVClusterDriver`` objects, one per node, drive three
simulated Hyper-V hosts that form one failover cluster
(:class:`~psdriver.sim.simcluster.SimCluster` on a sim fabric: one cluster
state, one Cluster Shared Volume).  The demo boots an instance on the
second node, takes that node down (the cluster restarts the VM on another
node), lets every surviving service poll the cluster once, and shows the
receiving service recording the failover: the instance's host and node,
its port binding and its placement allocations, its VIFs and console log.
Then it deletes the instance on its new node.

Nova's database, Neutron and placement are stand-ins that keep what they
are told (the instance record, the port binding, the allocations) and show
each call; the locks are a tooz ``file://`` backend in a temporary folder,
as on a share the services see.  Exit status 0 when the failover is
recorded once, on the right node, and the cluster ends clean.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from typing import Any, Iterator, TextIO
from unittest import mock

from nova import objects
from nova.compute import task_states, vm_states
from nova.virt import virtapi

from psdriver.bridge.client import CallRecord
from psdriver.demo import nova_objects, stand_ins
from psdriver.demo.calls import script_line
from psdriver.demo.nova_objects import demo_uuid

NODES = ('SIMHV01', 'SIMHV02', 'SIMHV03')
CSV = 'C:\\ClusterStorage\\Volume1'
INSTANCES_PATH = CSV + '\\Instances'


class NovaStandIns:
    """Nova's database, Neutron and placement as far as a failover needs them."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.instances: dict[str, objects.Instance] = {}
        self.saves: list[tuple[str, str]] = []
        self.bindings: dict[str, str] = {}
        self.allocations: dict[str, dict[str, Any]] = {}
        self.node_ids = {name: index for index, name in enumerate(NODES, 1)}

    def say(self, text: str) -> None:
        print(f'      {text}', file=self.out)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        stand_in = self

        def get_by_uuid(cls: Any, context: Any, instance_uuid: str, **kwargs: Any) -> Any:
            return stand_in.instances[instance_uuid]

        def save(instance: Any, *args: Any, **kwargs: Any) -> None:
            stand_in.saves.append((instance.uuid, instance.host))
            stand_in.say(f'nova db: instance {instance.name} saved: host {instance.host}, '
                         f'node {instance.node}')
            instance.obj_reset_changes()

        def node_by_uuid(cls: Any, context: Any, uuid: str) -> Any:
            name = next(n for n in NODES if demo_uuid(f'node-{n}') == uuid)
            return objects.ComputeNode(id=stand_in.node_ids[name], uuid=uuid,
                                       host=name, hypervisor_hostname=name)

        def node_by_host(cls: Any, context: Any, host: str, nodename: str) -> Any:
            return node_by_uuid(cls, context, demo_uuid(f'node-{host}'))

        with mock.patch.object(objects.Instance, 'get_by_uuid', classmethod(get_by_uuid)), \
                mock.patch.object(objects.Instance, 'save', save), \
                mock.patch.object(objects.ComputeNode, 'get_by_uuid', classmethod(node_by_uuid)), \
                mock.patch.object(objects.ComputeNode, 'get_by_host_and_nodename',
                                  classmethod(node_by_host)):
            yield

    # -- Neutron ------------------------------------------------------------------------

    def setup_networks_on_host(self, context: Any, instance: Any, host: Any = None,
                               teardown: bool = False) -> None:
        pass

    def migrate_instance_start(self, context: Any, instance: Any, migration: Any) -> None:
        pass

    def migrate_instance_finish(self, context: Any, instance: Any, migration: Any,
                                provider_mappings: Any) -> None:
        for vif in instance.get_network_info():
            self.bindings[vif['id']] = migration.dest_compute
            self.say(f'neutron: port {vif["id"][:8]} binding:host_id = {migration.dest_compute}')

    # -- placement ----------------------------------------------------------------------

    def get_allocs_for_consumer(self, context: Any, consumer: str) -> dict[str, Any]:
        return {'allocations': self.allocations[consumer], 'consumer_generation': 1,
                'project_id': nova_objects.PROJECT_ID, 'user_id': nova_objects.USER_ID}

    def put_allocations(self, context: Any, consumer: str, payload: dict[str, Any]) -> bool:
        self.allocations[consumer] = payload['allocations']
        providers = ', '.join(self.provider_name(rp) for rp in payload['allocations'])
        self.say(f'placement: allocations of {consumer[:8]} now on {providers}')
        return True

    @staticmethod
    def provider_name(rp: str) -> str:
        return next((n for n in NODES if demo_uuid(f'node-{n}') == rp), rp)


class ClusterDemo:
    def __init__(self, conf: Any, work_dir: str, out: TextIO, quiet: bool) -> None:
        self.conf = conf
        self.work_dir = work_dir
        self.out = out
        self.quiet = quiet
        self.nova = NovaStandIns(out)
        self.drivers: dict[str, Any] = {}
        self.failures: list[str] = []
        self.round_trips = 0

    def say(self, text: str = '', always: bool = False) -> None:
        if always or not self.quiet:
            print(text, file=self.out)

    def check(self, ok: bool, what: str) -> None:
        self.say(f'    {"ok" if ok else "FAILED"}: {what}', always=not ok)
        if not ok:
            self.failures.append(what)

    # -- set-up -------------------------------------------------------------------------

    def build(self) -> Any:
        from psdriver.cluster import clusterops
        from psdriver.cluster.driver import HyperVClusterDriver
        from psdriver.sim.fabric import Fabric
        from psdriver.sim.simcluster import SimCluster

        fabric = Fabric.create(os.path.join(self.work_dir, 'fabric'), list(NODES),
                               shared_volumes={CSV: 500})
        self.cluster = SimCluster.create(fabric, 'hvcluster')
        self.fabric = fabric
        conf = self.conf
        conf.set_override('state_path', self.work_dir)
        conf.set_override('instances_path', INSTANCES_PATH)
        conf.set_override('transport', 'sim', group='powershell')
        conf.set_override('vswitch_name', 'external', group='hyperv')
        conf.set_override('lock_path', os.path.join(self.work_dir, 'locks'),
                          group='oslo_concurrency')
        conf.set_override('handle_virt_lifecycle_events', False, group='workarounds')
        conf.set_override('sync_power_state_interval', -1)
        # The watchers poll when the demo says so (poll_once), not on their own.
        conf.set_override('cluster_event_check_interval', 3600, group='hyperv')
        conf.set_override('backend_url', 'file://' + os.path.join(self.work_dir, 'tooz'),
                          group='coordination')
        for node in NODES:
            conf.set_override('host', node)
            conf.set_override('sim_state_file', fabric.state_file(node), group='powershell')
            driver = HyperVClusterDriver(virtapi.VirtAPI())
            driver._connect()
            driver._node_id = demo_uuid(f'node-{node}')
            driver._clusterops = clusterops.ClusterOps(
                driver.bridge, conf, driver.vmops, driver.vifops, driver._node_uuid,
                driver.hostops.nodename, network_api=lambda: self.nova,
                placement=lambda: self.nova)
            driver.bridge.observers.append(lambda rec, node=node: self._script(node, rec))
            self.drivers[node] = driver
        conf.clear_override('host')
        return fabric

    def _script(self, node: str, record: CallRecord) -> None:
        self.round_trips += 1
        self.say(f'      [{node}] {script_line(record)}  ({record.seconds * 1000:.0f} ms)')

    # -- the scenario -------------------------------------------------------------------

    def run(self) -> None:
        context = nova_objects.request_context()
        image = nova_objects.image()
        network_info = nova_objects.network_info()
        instance = nova_objects.instance(context, 'SIMHV02', 'SIMHV02', image, network_info)
        self.nova.instances[instance.uuid] = instance
        self.nova.allocations[instance.uuid] = {
            demo_uuid('node-SIMHV02'): {'resources': {'VCPU': 2, 'MEMORY_MB': 2048}}}

        self.say('1. init_host on each node: locks, host checks, cluster check, reclaim')
        for node, driver in self.drivers.items():
            driver.init_host(node)
        self.say()
        self.say(f'2. spawn {instance.name} on SIMHV02: the VM, then its clustered role')
        self.drivers['SIMHV02'].spawn(context, instance, nova_objects.image_meta(image), [],
                                      None, {}, network_info, None, True)
        instance.vm_state, instance.task_state = vm_states.ACTIVE, None
        instance.obj_reset_changes()
        group = self.fabric.host('SIMHV01').get_cluster_group(instance.name)
        self.check(group.owner_node == 'SIMHV02', f'role {group.name} owned by SIMHV02')

        self.say()
        self.say('3. node SIMHV02 goes down: the cluster restarts its VM elsewhere')
        started = time.perf_counter()
        moves = dict(self.cluster.node_down('SIMHV02'))
        owner = moves.get(instance.name)
        self.check(owner in ('SIMHV01', 'SIMHV03'), f'the cluster moved the VM to {owner}')

        self.say()
        self.say('4. each surviving service polls the cluster once (one call for all roles)')
        for node in ('SIMHV01', 'SIMHV03'):
            self.drivers[node].failover_watcher.poll_once()
        noticed = time.perf_counter() - started
        handled = [h for d in self.drivers.values() for h in d.clusterops.handled]
        self.check([h[0] for h in handled] == [instance.uuid],
                   'the failover was recorded once, by the node that received the VM')
        self.check((instance.host, instance.node) == (owner, owner),
                   f'Nova places the instance on {owner}')
        self.check(self.nova.bindings.get(network_info[0]['id']) == owner,
                   f'its port is bound to {owner}')
        self.check(list(self.nova.allocations[instance.uuid]) == [demo_uuid(f'node-{owner}')],
                   f'its allocations moved to the compute node of {owner}')
        vm = self.fabric.host(owner).get_vm(instance.name)
        self.check(vm.state == 'Running', f'the VM runs on {owner}')
        self.say(f'    recorded {noticed:.2f} s after the node went down (polled at once here; '
                 'a service polls every [hyperv] cluster_event_check_interval seconds)')

        self.say()
        self.say(f'5. delete the instance on {owner}: its role first, then the VM')
        instance.task_state = task_states.DELETING
        self.drivers[owner].destroy(context, instance, network_info)
        self.check(self.fabric.host(owner).find_cluster_group(instance.name) is None
                   and self.fabric.host(owner).find_vm(instance.name) is None,
                   'no role and no VM left in the cluster')

    def stop(self) -> None:
        for node, driver in self.drivers.items():
            with contextlib.suppress(Exception):
                driver.cleanup_host(node)


def run(conf: Any, *, quiet: bool = False, out: TextIO | None = None) -> int:
    """Run the cluster scenario; 0 when every check passed."""
    out = out or sys.stdout
    objects.register_all()
    with tempfile.TemporaryDirectory(prefix='psdriver-demo-cluster-') as work_dir:
        demo = ClusterDemo(conf, work_dir, out, quiet)
        print('psdriver demo --cluster: three HyperVClusterDriver services on the three nodes '
              'of a simulated failover cluster (one CSV, one cluster state); Nova database, '
              'Neutron and placement are stand-ins', file=out)
        started = time.perf_counter()
        try:
            demo.build()
            with stand_ins.local_lookups(nova_objects.image()), demo.nova.installed():
                demo.run()
        except Exception as exc:   # the demo's result, reported
            demo.failures.append(f'{type(exc).__name__}: {exc}')
            print(f'FAILED: {type(exc).__name__}: {exc}', file=out)
        finally:
            demo.stop()
        seconds = time.perf_counter() - started
    status = 'all checks passed' if not demo.failures else \
        f'{len(demo.failures)} check(s) failed: ' + '; '.join(demo.failures)
    print(f'{status}; {demo.round_trips} host round trips in {seconds:.2f} s', file=out)
    return 0 if not demo.failures else 1
