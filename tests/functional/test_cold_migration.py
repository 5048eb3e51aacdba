"""Resize and cold migration through nova's API, between two simulated Hyper-V hosts.

host1 and host2 share a fabric (they reach each other's administrative
share); the disks go from one to the other through the management node's
file channel.  After each step the VM is where the API says the server is,
the other host is clean, and placement holds the allocations nova expects.
"""

from __future__ import annotations

import pytest

from tests.functional import harness

pytestmark = pytest.mark.functional

GIB = 1024 ** 3


class ColdMigrationTest(harness.PsDriverTestBase):
    COMPUTE_HOSTS = ('host1', 'host2')
    FABRIC: dict[str, float] = {}
    #: RPC casts stay casts, as in a deployment (a refusal on the source must
    #: not travel back through the destination's prep_resize).
    CAST_AS_CALL = False

    def setUp(self) -> None:
        super().setUp()
        self.small = self._flavor(vcpu=1, memory_mb=512, disk=2)
        self.server = self.boot(self.small, host='host1')

    def folder(self, suffix: str = '') -> str:
        return f'{harness.INSTANCES_PATH}\\{self.instance(self.server).name}{suffix}'

    def assertOn(self, host: str, other: str, status: str = 'ACTIVE') -> None:
        server = self.api.get_server(self.server['id'])
        self.assertEqual(status, server['status'])
        self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        vm = self.host_vm(self.server, host)
        self.assertIsNotNone(vm)
        self.assertEqual('Running', vm.state)
        self.assertIsNone(self.host_vm(self.server, other))
        self.sim_host(host).check_consistency()

    def assertAllocated(self, flavor_id: str, host: str) -> None:
        flavor = self.api.get_flavor(flavor_id)
        self.assertFlavorMatchesAllocation(flavor, self.server['id'],
                                           self._get_provider_uuid_by_host(host))

    def test_cold_migrate_and_confirm(self):
        with self.scripts_run('host1') as source_calls:
            self._migrate_server(self.server, host='host2')
        self.assertOn('host2', 'host1', 'VERIFY_RESIZE')
        self.assertEqual(['Set-InstancePowerState', 'Export-InstanceDisk'],
                         [n for n, _ in source_calls if n != 'Get-InstanceSummary'])
        self.assertTrue(self.sim_host('host1').exists(self.folder('_revert') + '\\root.vhdx'))
        self.assertTrue(self.sim_host('host2').exists(self.folder() + '\\root.vhdx'))
        # During VERIFY_RESIZE the migration holds the source's allocations.
        migration_uuid = self.get_migration_uuid_for_instance(self.server['id'])
        self.assertIn(self._get_provider_uuid_by_host('host1'),
                      self._get_allocations_by_server_uuid(migration_uuid))
        self.assertAllocated(self.small, 'host2')

        self._confirm_resize(self.server)
        self.assertOn('host2', 'host1')
        self.assertFalse(self.sim_host('host1').exists(self.folder('_revert')))
        self.assertFalse(self.sim_host('host1').exists(self.folder()))
        self.assertAllocated(self.small, 'host2')
        self.assertEqual({}, self._get_allocations_by_server_uuid(migration_uuid))
        self.assertNoTraceback()

    def test_cold_migrate_and_revert(self):
        vm_before = self.host_vm(self.server, 'host1')
        self._migrate_server(self.server, host='host2')
        self._revert_resize(self.server)
        self.assertOn('host1', 'host2')
        vm = self.host_vm(self.server, 'host1')
        self.assertEqual(vm_before.processor_count, vm.processor_count)
        self.assertEqual([d.path for d in vm_before.drives if d.kind == 'HardDisk'],
                         [d.path for d in vm.drives if d.kind == 'HardDisk'])
        self.assertFalse(self.sim_host('host1').exists(self.folder('_revert')))
        self.assertFalse(self.sim_host('host2').exists(self.folder()))
        self.assertAllocated(self.small, 'host1')
        self.assertNoTraceback()

    def test_resize_up_grows_the_root_disk_and_the_vm(self):
        big = self._flavor(vcpu=2, memory_mb=1024, disk=4)
        self._resize_server(self.server, big)
        self.assertOn('host2', 'host1', 'VERIFY_RESIZE')
        vm = self.host_vm(self.server, 'host2')
        self.assertEqual(2, vm.processor_count)
        self.assertEqual(1024, vm.memory_startup_mb)
        root = self.sim_host('host2').get_vhd(self.folder() + '\\root.vhdx').vhd
        self.assertEqual(4 * GIB, root.size)
        self._confirm_resize(self.server)
        self.assertAllocated(big, 'host2')
        self.assertNoTraceback()

    def test_resize_down_of_the_root_disk_is_refused(self):
        bigger = self._flavor(vcpu=1, memory_mb=512, disk=4)
        self._resize_server(self.server, bigger)
        self._confirm_resize(self.server)
        host = self.api.get_server(self.server['id'])['OS-EXT-SRV-ATTR:host']
        other = 'host1' if host == 'host2' else 'host2'

        self.api.post_server_action(self.server['id'], {'resize': {'flavorRef': self.small}})
        self._wait_for_migration_status(self.server, ['error'])
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual(4, server['flavor']['disk'])
        self.assertOn(host, other)                 # untouched: still running where it was
        root = self.sim_host(host).get_vhd(self.folder() + '\\root.vhdx').vhd
        self.assertEqual(4 * GIB, root.size)
        self.assertAllocated(bigger, host)
        self.assertIn('the root disk cannot shrink from 4 GB to 2 GB', self.stdlog.logger.output)


class SameHostResizeTest(harness.PsDriverTestBase):
    COMPUTE_HOSTS = ('host1',)

    def setUp(self) -> None:
        self.flags(allow_resize_to_same_host=True)
        super().setUp()

    def test_resize_on_one_host_then_revert_then_confirm(self):
        small = self._flavor(vcpu=1, memory_mb=512, disk=2)
        big = self._flavor(vcpu=2, memory_mb=1024, disk=3)
        server = self.boot(small)
        name = self.instance(server).name
        self._resize_server(server, big)
        self.assertEqual(2, self.host_vm(server).processor_count)
        self._revert_resize(server)
        vm = self.host_vm(server)
        self.assertEqual((1, 'Running'), (vm.processor_count, vm.state))
        root = self.sim_host().get_vhd(f'{harness.INSTANCES_PATH}\\{name}\\root.vhdx').vhd
        self.assertEqual(2 * GIB, root.size)
        self._resize_server(server, big)
        self._confirm_resize(server)
        self.assertEqual(2, self.host_vm(server).processor_count)
        self.assertFalse(self.sim_host().exists(f'{harness.INSTANCES_PATH}\\{name}_revert'))
        self.sim_host().check_consistency()
        self.assertNoTraceback()
