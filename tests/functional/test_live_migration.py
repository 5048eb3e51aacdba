"""Live migration through nova's API between two simulated Hyper-V hosts.

Without shared storage the disks move with the VM (Move-VM -IncludeStorage);
with an instances_path on a share both hosts see, only the VM moves.  A
running VM keeps running (same start time) and leaves nothing on the
source; refusals (checked on both hosts, or by Move-VM itself) leave the
server where it was and nothing on the destination.  Placement follows.
"""

from __future__ import annotations

import pytest

from tests.functional import harness

pytestmark = pytest.mark.functional

SHARE = '\\\\fs01\\instances'


class _LiveMigrationBase(harness.PsDriverTestBase):
    COMPUTE_HOSTS = ('host1', 'host2')
    FABRIC: dict[str, float] = {}
    CAST_AS_CALL = False

    def setUp(self) -> None:
        super().setUp()
        for host in self.COMPUTE_HOSTS:
            self.sim_host(host).set_migration(enabled=True, use_any_network=True)
        self.flavor = self._flavor(vcpu=1, memory_mb=512, disk=2)
        self.server = self.boot(self.flavor, host='host1', config_drive=True)

    def folder(self) -> str:
        return f'{self.INSTANCES}\\{self.instance(self.server).name}'

    def assertOn(self, host: str, other: str) -> None:
        server = self.api.get_server(self.server['id'])
        self.assertEqual(('ACTIVE', host), (server['status'], server['OS-EXT-SRV-ATTR:host']))
        vm = self.host_vm(self.server, host)
        self.assertEqual('Running', vm.state)
        self.assertIsNone(self.host_vm(self.server, other))
        self.assertFlavorMatchesAllocation(self.api.get_flavor(self.flavor), self.server['id'],
                                           self._get_provider_uuid_by_host(host))
        for name in self.COMPUTE_HOSTS:
            self.sim_host(name).check_consistency()

    def no_probe_files(self, host: str) -> bool:
        return not [e for e in self.sim_host(host).list_dir(self.INSTANCES)
                    if 'psdriver-lm-' in e.path]


class LiveMigrationTest(_LiveMigrationBase):

    def test_live_migrate_with_storage(self):
        before = self.host_vm(self.server, 'host1')
        with self.scripts_run('host1') as source_calls:
            self._live_migrate(self.server, host='host2')
        self.assertOn('host2', 'host1')
        vm = self.host_vm(self.server, 'host2')
        self.assertEqual((before.id, before.started_at), (vm.id, vm.started_at))
        self.assertTrue(self.sim_host('host2').exists(self.folder() + '\\root.vhdx'))
        moved = {e.path.rsplit('\\', 1)[-1]
                 for e in self.sim_host('host2').list_dir(self.folder())}
        self.assertIn('configdrive.vhd', moved)      # a disk ([hyperv] config_drive_cdrom off)
        self.assertFalse(self.sim_host('host1').exists(self.folder()))
        moves = [p for n, p in source_calls if n == 'Move-Instance']
        self.assertEqual(1, len(moves))
        self.assertTrue(moves[0]['IncludeStorage'])
        self.assertIsNotNone(self.sim_host('host2').console_logger(vm.name))
        self.assertTrue(self.no_probe_files('host1') and self.no_probe_files('host2'))
        self.assertNoTraceback()

    def test_a_destination_without_live_migration_refuses(self):
        self.sim_host('host2').set_migration(enabled=False)
        self._live_migrate(self.server, 'error', host='host2')
        self.assertOn('host1', 'host2')
        self.assertFalse(self.sim_host('host2').exists(self.folder()))
        self.assertTrue(self.no_probe_files('host2'))
        self.assertIn('live migration is not enabled on the destination host host2',
                      self.stdlog.logger.output)

    def test_move_vm_refusal_rolls_back_and_leaves_the_destination_clean(self):
        host2 = self.sim_host('host2')
        with host2.transaction():
            host2._state.config.supported_vm_versions = ['9.0']
        # Past the checks: Move-VM refuses, nova rolls the migration back.
        self._live_migrate(self.server, 'failed', host='host2')
        self.assertOn('host1', 'host2')
        self.assertFalse(host2.exists(self.folder()))
        self.assertIn('configuration version 10.0', self.stdlog.logger.output)


class ProcessorVendorTest(_LiveMigrationBase):
    SIM_HOSTS = {'host2': {'cpu_vendor': 'AuthenticAMD',
                           'cpu_model': 'AMD EPYC 7763 64-Core Processor'}}

    def test_different_processor_vendors_are_refused(self):
        self._live_migrate(self.server, 'error', host='host2')
        self.assertOn('host1', 'host2')
        self.assertIn('Hyper-V cannot live migrate between processor manufacturers',
                      self.stdlog.logger.output)


class SharedStorageLiveMigrationTest(_LiveMigrationBase):
    FABRIC = {SHARE: 200}
    INSTANCES = SHARE

    def test_live_migrate_on_shared_storage_moves_only_the_vm(self):
        root = self.host_vm(self.server, 'host1').drives[0].path
        with self.scripts_run('host1') as source_calls:
            self._live_migrate(self.server, host='host2')
        self.assertOn('host2', 'host1')
        self.assertEqual(root, self.host_vm(self.server, 'host2').drives[0].path)
        self.assertTrue(self.sim_host('host1').exists(root))       # the same file, shared
        moves = [p for n, p in source_calls if n == 'Move-Instance']
        self.assertNotIn('IncludeStorage', moves[0])
        self.assertTrue(self.no_probe_files('host2'))
        self.assertNoTraceback()
