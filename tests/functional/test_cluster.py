"""The cluster driver end to end: three compute services on three nodes of one simulated cluster.

Real nova API, conductor, scheduler, placement and the Neutron fixture;
each service runs HyperVClusterDriver on its own simulated Hyper-V host,
and the three hosts are the nodes of one :class:`~psdriver.sim.simcluster.SimCluster`
(one cluster state, one Cluster Shared Volume holding the instances).  Taking a node
down is what the cluster would do: its VMs restart on the other nodes.
"""

from __future__ import annotations

import time

from psdriver.sim import SimHost
from psdriver.sim.fabric import Fabric
from psdriver.sim.simcluster import SimCluster
from tests import daemons
from tests.functional import harness

HOSTS = ('host1', 'host2', 'host3')
CSV = 'C:\\ClusterStorage\\Volume1'


class ClusterTestBase(harness.PsDriverTestBase):
    COMPUTE_HOSTS = HOSTS
    COMPUTE_DRIVER = 'psdriver.cluster.driver.HyperVClusterDriver'
    # As the cluster guide recommends: the cluster, not Nova, owns the VMs' power state.
    LIFECYCLE_EVENTS = False
    FABRIC = {CSV: 500}
    INSTANCES = f'{CSV}\\Instances'

    def setUp(self) -> None:
        self.flags(sync_power_state_interval=-1)
        self.flags(cluster_event_check_interval=1, group='hyperv')
        super().setUp()

    def fabric_ready(self, fabric: Fabric) -> None:
        self.cluster = SimCluster.create(fabric, 'hvcluster')

    def node(self, host: str) -> SimHost:
        """The cluster node ``host`` as the cluster sees it (not through its service)."""
        return self.fabric.host(host)

    # -- helpers --------------------------------------------------------------------------

    def boot_on(self, host: str, port: dict | None = None) -> dict:
        networks = [{'port': port['id']}] if port else 'none'
        server = self.boot(self._flavor(vcpu=1, memory_mb=512, disk=1), networks=networks,
                           host=host)
        self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        return server

    def wait_for_host(self, server: dict, host: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = self.api.get_server(server['id'])
            if found['OS-EXT-SRV-ATTR:host'] == host:
                return found
            if time.monotonic() > deadline:
                self.fail(f"{server['id']} still on {found['OS-EXT-SRV-ATTR:host']}, "
                          f'not {host}')
            time.sleep(0.1)

    def handled(self, *hosts: str) -> list[tuple[str, str | None, str]]:
        return [entry for host in hosts
                for entry in self.driver(host).clusterops.handled]

    def wait_for_takeover(self, server: dict, host: str, timeout: float = 20) -> None:
        """Until ``host`` finished recording the failover, ports and allocations included.

        The instance's new host is saved first, so it alone proves nothing.
        """
        deadline = time.monotonic() + timeout
        while server['id'] not in [uuid for uuid, _, _ in self.handled(host)]:
            if time.monotonic() > deadline:
                self.fail(f"{host} never finished recording the failover of {server['id']}")
            time.sleep(0.1)

    def assert_recorded_on(self, server: dict, host: str, port: dict | None = None) -> None:
        found = self.wait_for_host(server, host)
        self.wait_for_takeover(server, host)
        found = self.api.get_server(server['id'])
        self.assertEqual(host, found['OS-EXT-SRV-ATTR:hypervisor_hostname'])
        rp = self._get_provider_uuid_by_host(host)
        self.assertEqual([rp], list(self._get_allocations_by_server_uuid(server['id'])))
        if port is not None:
            self.assertEqual(host, self.neutron._ports[port['id']]['binding:host_id'])
        self.assertEqual('Running', self.node(host).get_vm(self.instance(server).name).state)



class ClusterTest(ClusterTestBase):

    def test_spawn_makes_a_role_and_destroy_removes_it(self):
        server = self.boot_on('host1')
        name = self.instance(server).name
        group = self.node('host3').get_cluster_group(name)
        self.assertEqual(('host1', 1, 6, 1, 1), (
            group.owner_node, group.failover_threshold, group.failover_period,
            group.auto_failback_type, group.persistent_state))

        self._delete_server(server)

        self.assertIsNone(self.node('host1').find_cluster_group(name))
        self.assertIsNone(self.node('host1').find_vm(name))
        self.assertNoTraceback()

    def test_node_down_fails_over_and_nova_follows_once(self):
        port_a = self.neutron.port_1
        port_b = self.neutron.create_port(
            {'port': {'network_id': self.neutron.network_1['id']}})['port']
        server_a = self.boot_on('host2', port_a)
        server_b = self.boot_on('host2', port_b)
        server_c = self.boot_on('host1')
        self.assertEqual('host2', self.neutron._ports[port_a['id']]['binding:host_id'])

        # The node is lost with its compute service.
        self.computes['host2'].stop()
        started = time.monotonic()
        moves = dict(self.cluster.node_down('host2'))
        self.assertEqual(['host1', 'host3'], sorted(moves.values()))

        for server, port in ((server_a, port_a), (server_b, port_b)):
            owner = moves[self.instance(server).name]
            self.wait_for_host(server, owner)
            self.assert_recorded_on(server, owner, port)
        # Polled every second ([hyperv] cluster_event_check_interval = 1): about 1.4 s
        # on an idle machine; the bound leaves room for a loaded test machine.
        noticed = time.monotonic() - started
        print(f'failover recorded in Nova {noticed:.2f} s after the node went down')
        self.assertLess(noticed, 10.0)
        self.assertEqual('host1', self.api.get_server(server_c['id'])['OS-EXT-SRV-ATTR:host'])

        # Both surviving services saw both moves; each failover was recorded once.
        time.sleep(2.5)
        handled = self.handled('host1', 'host3')
        self.assertCountEqual([server_a['id'], server_b['id']], [uuid for uuid, _, _ in handled])
        self.assertEqual({'host2'}, {source for _, source, _ in handled})

        # The instance now lives on its new node: destroying it removes its role there.
        name = self.instance(server_a).name
        owner = moves[name]
        self._delete_server(server_a)
        self.assertIsNone(self.node(owner).find_cluster_group(name))
        self.assertIsNone(self.node(owner).find_vm(name))
        self.assertNoTraceback()

    def test_a_planned_move_is_recorded_by_the_receiver_and_released_by_the_sender(self):
        port = self.neutron.port_1
        server = self.boot_on('host1', port)

        self.cluster.move(self.instance(server).name, 'host3')

        self.assert_recorded_on(server, 'host3', port)
        deadline = time.monotonic() + 20
        while not self.driver('host1').clusterops.released:
            self.assertLess(time.monotonic(), deadline, 'host1 never released the instance')
            time.sleep(0.1)
        self.assertEqual([server['id']], self.driver('host1').clusterops.released)
        self.assertEqual([(server['id'], 'host1', 'host3')], self.handled(*HOSTS))
        self.assertNoTraceback()

    def test_failover_while_a_service_was_stopped_is_reclaimed_at_its_start(self):
        servers = [self.boot_on('host2') for _ in range(2)]
        self.computes['host3'].stop()
        self.computes['host2'].stop()

        moves = dict(self.cluster.node_down('host2'))
        self.assertEqual(['host1', 'host3'], sorted(moves.values()))
        on_host3 = [s for s in servers if moves[self.instance(s).name] == 'host3']
        on_host1 = [s for s in servers if moves[self.instance(s).name] == 'host1']
        for server in on_host1:
            self.assert_recorded_on(server, 'host1')
        # Nobody records what went to the stopped service's node...
        time.sleep(1.5)
        for server in on_host3:
            self.assertEqual('host2', self.api.get_server(server['id'])['OS-EXT-SRV-ATTR:host'])

        # ...until it starts: init_host reclaims it before the service takes requests.
        self.computes['host3'] = self._start_compute('host3')
        for server in on_host3:
            found = self.api.get_server(server['id'])
            self.assertEqual('host3', found['OS-EXT-SRV-ATTR:host'])
            self.assert_recorded_on(server, 'host3')
        self.assertEqual([s['id'] for s in on_host3],
                         [uuid for uuid, _, _ in self.handled('host3')])
        self.assertNoTraceback()


class ClusterLockBackendLossTest(ClusterTestBase):
    """The services share their locks in a real MariaDB, which goes away during a failover."""

    def setUp(self) -> None:
        mariadb = daemons.run_mariadb()
        self.mariadb, self.lock_db = mariadb.__enter__()
        self.addCleanup(mariadb.__exit__, None, None, None)
        super().setUp()

    def lock_backend_url(self, folder: str) -> str:
        return self.lock_db.tooz_url()

    def test_no_failover_recorded_without_locks_then_exactly_once(self):
        servers = [self.boot_on('host2') for _ in range(2)]
        self.mariadb.stop()
        self.computes['host2'].stop()

        moves = dict(self.cluster.node_down('host2'))

        time.sleep(2.5)
        for server in servers:
            self.assertEqual('host2', self.api.get_server(server['id'])['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([], self.handled('host1', 'host3'))
        self.assertIn('not recorded yet, retrying at the next poll', self.stdlog.logger.output)

        self.mariadb.start()
        for server in servers:
            self.assert_recorded_on(server, moves[self.instance(server).name])
        time.sleep(1.5)
        self.assertCountEqual([s['id'] for s in servers],
                              [uuid for uuid, _, _ in self.handled('host1', 'host3')])


class ClusterLiveMigrationTest(ClusterTestBase):
    """``os-migrateLive`` within the cluster: the cluster moves the role, Nova records it once."""

    CAST_AS_CALL = False

    def setUp(self) -> None:
        super().setUp()
        # As compute-hyperv, the destination checks read the host's own migration settings.
        for host in HOSTS:
            self.node(host).set_migration(enabled=True, use_any_network=True)

    def test_live_migration_within_the_cluster_moves_the_role(self):
        port = self.neutron.port_1
        server = self.boot_on('host1', port)
        name = self.instance(server).name
        before = self.node('host1').get_vm(name)
        root = before.drives[0].path
        with self.scripts_run('host1') as source_calls, \
                self.scripts_run('host3') as dest_calls:
            self._live_migrate(server, host='host3')

        self.assertIn('Connect-InstanceNetworkAdapter', [n for n, _ in dest_calls])
        found = self.api.get_server(server['id'])
        self.assertEqual(('ACTIVE', 'host3', 'host3'), (
            found['status'], found['OS-EXT-SRV-ATTR:host'],
            found['OS-EXT-SRV-ATTR:hypervisor_hostname']))
        self.assertEqual([self._get_provider_uuid_by_host('host3')],
                         list(self._get_allocations_by_server_uuid(server['id'])))
        self.assertEqual('host3', self.neutron._ports[port['id']]['binding:host_id'])
        vm = self.node('host3').get_vm(name)
        self.assertEqual(('Running', before.id, before.started_at),
                         (vm.state, vm.id, vm.started_at))
        self.assertIsNone(self.node('host1').find_vm(name))
        self.assertEqual(root, vm.drives[0].path)
        self.assertTrue(self.node('host3').exists(root))     # the source's clean-up kept it
        self.assertEqual('host3', self.node('host2').get_cluster_group(name).owner_node)
        names = [n for n, _ in source_calls]
        self.assertIn('Move-InstanceClusterRole', names)
        self.assertNotIn('Move-Instance', names)        # shared CSV: no disk copy, no Move-VM
        # Every watcher polled past the move: none recorded it as a failover.
        time.sleep(2.5)
        self.assertEqual([], self.handled(*HOSTS))
        self.assertNoTraceback()

    def test_a_failed_move_leaves_the_instance_recovered_on_the_source(self):
        server = self.boot_on('host1')
        name = self.instance(server).name
        self.cluster.pause('host3')        # a Paused node receives no group: the move fails
        self._live_migrate(server, 'failed', host='host3')

        found = self.api.get_server(server['id'])
        self.assertEqual(('ACTIVE', 'host1'), (found['status'], found['OS-EXT-SRV-ATTR:host']))
        self.assertEqual([self._get_provider_uuid_by_host('host1')],
                         list(self._get_allocations_by_server_uuid(server['id'])))
        self.assertEqual('Running', self.node('host1').get_vm(name).state)
        self.assertIsNone(self.node('host3').find_vm(name))
        self.assertEqual('host1', self.node('host2').get_cluster_group(name).owner_node)
        self.assertIn('within the cluster failed', self.stdlog.logger.output)
        time.sleep(2.5)
        self.assertEqual([], self.handled(*HOSTS))


class ClusterToStandaloneLiveMigrationTest(ClusterTestBase):
    """A live migration to a Hyper-V host outside the cluster: the role goes, then Move-VM."""

    CAST_AS_CALL = False

    def fabric_ready(self, fabric: Fabric) -> None:
        self.cluster = SimCluster.create(fabric, 'hvcluster', nodes=list(HOSTS[:2]))

    def setUp(self) -> None:
        super().setUp()
        for host in HOSTS:
            self.node(host).set_migration(enabled=True, use_any_network=True)

    def _start_compute(self, host, cell_name=None):
        if host != 'host3':
            return super()._start_compute(host, cell_name=cell_name)
        # Not a node of the cluster: the standalone driver runs there.
        self.flags(compute_driver='psdriver.driver.HyperVDriver')
        try:
            return super()._start_compute(host, cell_name=cell_name)
        finally:
            self.flags(compute_driver=self.COMPUTE_DRIVER)

    def test_live_migration_out_of_the_cluster_removes_the_role_first(self):
        server = self.boot_on('host1')
        name = self.instance(server).name
        with self.scripts_run('host1') as source_calls:
            self._live_migrate(server, host='host3')

        found = self.api.get_server(server['id'])
        self.assertEqual(('ACTIVE', 'host3'), (found['status'], found['OS-EXT-SRV-ATTR:host']))
        self.assertEqual([self._get_provider_uuid_by_host('host3')],
                         list(self._get_allocations_by_server_uuid(server['id'])))
        self.assertEqual('Running', self.node('host3').get_vm(name).state)
        self.assertIsNone(self.node('host1').find_vm(name))
        self.assertIsNone(self.node('host2').find_cluster_group(name))
        names = [n for n, _ in source_calls]
        self.assertLess(names.index('Remove-InstanceClusterRole'), names.index('Move-Instance'))
        self.assertNotIn('Move-InstanceClusterRole', names)
        self.assertNoTraceback()
