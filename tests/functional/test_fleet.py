"""A fleet end to end: three compute services configured from `psdriver fleet render` output.

nova's own API, conductor, scheduler and placement (the functional harness)
and three nova-compute services, each started with the options its rendered
nova.conf fragment sets (read back with oslo.config) and driving its own
simulated Hyper-V host (one state file each; the state files share a folder
with a ``fabric.json``, so the hosts see each other and a server live-migrates
between two of the services).  Each service keeps its node
identity where the fragment says (``state_path/compute_id``), written and
read by nova's own ``nova.virt.node`` code; a service restarted from the
same files, as a standby management node would start it, is the same
compute node for nova.

One process runs all three services here, so two things differ from real
nova-compute processes: nova caches the node identity in a process-wide
global (bypassed: each start reads its own ``state_path``), and options
read while the services run (instances_path, transport, ...) have one value
per process: the test checks that the rendered value is that value.  The
fragments' ``[oslo_concurrency] lock_path`` is not applied (the services
share the harness's).  The paths of the rendered files are
absolute (``/var/lib/nova/fleet/...``); the test reads them under its
temporary root directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import fixtures
import pytest
from oslo_config import cfg
from oslo_utils import uuidutils

from nova.tests import fixtures as nova_fixtures
from nova.virt import node as nova_node

import psdriver.conf
from psdriver.fleet import inventory, render, status
from psdriver.sim.fabric import Fabric

from tests.functional import harness

pytestmark = pytest.mark.functional
CONF = cfg.CONF

HOSTS = ('hv01', 'hv02', 'hv03')
SHARE = 'OpenStackInstances'
#: Options a service reads once, while it starts: applied per service (group, name).
PER_SERVICE = {('DEFAULT', 'host'), ('DEFAULT', 'state_path'), ('powershell', 'sim_state_file')}
#: Options read while the services run: one process holds one value, so the rendered value
#: must be the process-wide one.
PROCESS_WIDE = {('DEFAULT', 'compute_driver'), ('DEFAULT', 'instances_path'),
                ('powershell', 'transport'), ('hyperv', 'instances_path_share'),
                ('oslo_concurrency', 'lock_path')}

def read_fragment(path: Path) -> dict[tuple[str, str], object]:
    """(group, option) -> value of every option the fragment sets, as oslo.config reads it."""
    conf = cfg.ConfigOpts()
    psdriver.conf.register_opts(conf)
    for name in ('host', 'state_path', 'compute_driver', 'instances_path'):
        conf.register_opt(cfg.StrOpt(name))
    conf.register_opt(cfg.StrOpt('lock_path'), group='oslo_concurrency')
    conf(['--config-file', str(path)], default_config_files=[], default_config_dirs=[])
    sections: dict[str, dict[str, list[str]]] = {}
    cfg.ConfigParser(str(path), sections).parse()
    values = {}
    for group, options in sections.items():
        holder = conf if group == 'DEFAULT' else conf[group]
        for name in options:
            values[(group, name)] = holder[name]
    return values


class FleetOfThreeTest(harness.PsDriverTestBase):
    COMPUTE_HOSTS = ()
    #: nova's own node identity code reads and writes compute_id (nova's tests stub it).
    STUB_COMPUTE_ID = False

    def setUp(self) -> None:
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.sim_dir = self.root / 'sim'
        self.sim_dir.mkdir()
        entries = ''.join(
            f'  - name: {h}\n    transport: sim\n    sim_state_file: {self.sim_dir}/{h}.json\n'
            for h in HOSTS)
        self.inventory = self.root / 'fleet.yaml'
        self.inventory.write_text(f'defaults:\n  instances_path: {harness.INSTANCES_PATH}\n'
                                  f'  share: {SHARE}\nhosts:\n{entries}')
        self.fleet = inventory.load(str(self.inventory))
        outcome = render.apply(self.fleet, self.root)
        assert len(outcome.changed) == 2 * len(HOSTS) + 3
        # The hosts see each other (one fabric: their state files share a folder, as the
        # inventory's sim_state_file paths put them); each has its share, nothing else set up.
        Fabric.create(str(self.sim_dir),
                      {h: {'smb_shares': {SHARE: harness.INSTANCES_PATH}} for h in HOSTS})
        super().setUp()
        self.flags(instances_path_share=SHARE, group='hyperv')
        for host in HOSTS:
            self._start_compute(host)

    def on_disk(self, path: str) -> Path:
        return self.root / path.lstrip('/')

    def _start_compute(self, host, cell_name=None):
        """Start ``host``'s compute with what its rendered fragment sets."""
        fragment = self.on_disk(render.host_config_path(self.fleet, self.fleet.host(host)))
        values = read_fragment(fragment)
        self.assertEqual(host, values[('DEFAULT', 'host')])
        state_path = self.on_disk(values[('DEFAULT', 'state_path')])
        state_path.mkdir(parents=True, exist_ok=True)   # systemd's StateDirectory=
        self.assertEqual(PER_SERVICE | PROCESS_WIDE, set(values))
        for group, name in PROCESS_WIDE - {('oslo_concurrency', 'lock_path')}:
            holder = CONF if group == 'DEFAULT' else CONF[group]
            self.assertEqual(values[(group, name)], holder[name], f'[{group}] {name}')
        patches = [nova_fixtures.ConfPatcher(state_path=str(state_path)),
                   nova_fixtures.ConfPatcher(
                       sim_state_file=values[('powershell', 'sim_state_file')],
                       group='powershell')]

        def node_identity() -> str:
            # nova.virt.node.get_local_node_uuid without its process-wide cache
            found = nova_node.read_local_node_uuid()
            if not found:
                found = uuidutils.generate_uuid()
                nova_node.write_local_node_uuid(found)
            return found

        with fixtures.MockPatch('nova.virt.node.get_local_node_uuid',
                                side_effect=node_identity):
            for patch in patches:
                patch.setUp()
            try:
                # the grandparent: harness.PsDriverTestBase would patch the identity itself
                return super(harness.PsDriverTestBase, self)._start_compute(
                    host, cell_name=cell_name)
            finally:
                for patch in reversed(patches):
                    patch.cleanUp()

    def hypervisors(self) -> dict[str, str]:
        """service host -> compute node uuid, from nova's API."""
        found = self.api.api_get('/os-hypervisors/detail').body['hypervisors']
        return {h['service']['host']: h['id'] for h in found}

    def test_three_services_from_rendered_files(self):
        for host in HOSTS:
            driver = self.driver(host)
            self.assertEqual(host, self.sim_host(host).hostname)
            self.assertEqual(str(self.sim_dir / f'{host}.json'), self.sim_host(host).state_file)
            self.assertEqual('psdriver.driver.HyperVDriver',
                             f'{type(driver).__module__}.{type(driver).__name__}')
        # each node identity is nova's compute node, kept in that host's own state_path
        nodes = self.hypervisors()
        self.assertEqual(set(HOSTS), set(nodes))
        self.assertEqual(len(HOSTS), len(set(nodes.values())))
        for host in HOSTS:
            identity = self.on_disk(f'{self.fleet.state_path(self.fleet.host(host))}/compute_id')
            self.assertEqual(nodes[host], identity.read_text().strip())

        flavor = self._flavor()
        servers = {host: self.boot(flavor_id=flavor, host=host) for host in HOSTS}
        for host, server in servers.items():
            self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
            vm = self.host_vm(server, host)
            self.assertIsNotNone(vm)
            self.assertEqual('Running', vm.state)
            others = [h for h in HOSTS if h != host]
            for other in others:   # one host's VM is on its host only
                self.assertIsNone(self.sim_host(other).find_vm(self.instance(server).name))

        # fleet status reads nova's real service list
        services = status.parse_services(self.api.api_get('/os-services').body['services'])
        statuses, strangers = status.fleet_status(
            self.fleet, services, states=dict.fromkeys(
                [render.unit_name(h) for h in self.fleet.hosts], 'active'))
        self.assertEqual([], strangers)
        self.assertEqual([(h, 'up', 'enabled', []) for h in HOSTS],
                         [(s.host, s.nova.state, s.nova.status, s.problems) for s in statuses])
        self.assert_live_migration_between_fleet_hosts(flavor, servers['hv01'], 'hv01', 'hv03')
        self.assert_restart_keeps_the_node(servers['hv02'], servers['hv03'])
        self.assertNoTraceback()

    def node_identities(self) -> dict[str, str]:
        """host -> the compute_id in that host's own state_path."""
        return {h: self.on_disk(f'{self.fleet.state_path(self.fleet.host(h))}/compute_id')
                .read_text() for h in HOSTS}

    def assert_live_migration_between_fleet_hosts(self, flavor, server, source, destination):
        """Two services of the fleet, two hosts that see each other: nova moves the VM."""
        for host in (source, destination):   # what an operator enables on each host
            self.sim_host(host).set_migration(enabled=True, use_any_network=True)
        identities, nodes = self.node_identities(), self.hypervisors()
        before = self.host_vm(server, source)
        self._live_migrate(server, host=destination)
        server = self.api.get_server(server['id'])
        self.assertEqual(('ACTIVE', destination),
                         (server['status'], server['OS-EXT-SRV-ATTR:host']))
        vm = self.host_vm(server, destination)
        self.assertEqual(('Running', before.id, before.started_at),
                         (vm.state, vm.id, vm.started_at))
        self.assertIsNone(self.host_vm(server, source))
        self.assertFlavorMatchesAllocation(self.api.get_flavor(flavor), server['id'],
                                           self._get_provider_uuid_by_host(destination))
        self.assertEqual({}, self._get_allocations_by_provider_uuid(
            self._get_provider_uuid_by_host(source)))
        self.assertEqual(identities, self.node_identities())   # no node changed identity
        self.assertEqual(nodes, self.hypervisors())
        for host in HOSTS:
            self.sim_host(host).check_consistency()

    def assert_restart_keeps_the_node(self, server, other):
        """What a standby does: start a host's service from the same files and state dir."""
        before = self.hypervisors()
        self.computes['hv02'].stop()          # the active node's process dies
        self.computes['hv02'] = self._start_compute('hv02')
        self.assertEqual(before, self.hypervisors())     # no new compute node
        self._run_periodics(raise_on_error=True)
        self.assertEqual(before, self.hypervisors())
        self.assertEqual('Running', self.host_vm(server, 'hv02').state)
        self.assertEqual('Running', self.host_vm(other, 'hv03').state)
        server = self._stop_server(server)
        self.assertEqual('Off', self.host_vm(server, 'hv02').state)
        self.assertEqual('Running', self.host_vm(other, 'hv03').state)
        self.assertEqual(sorted(os.listdir(self.on_disk('/var/lib/nova/fleet/hv02'))),
                         ['compute_id'])
