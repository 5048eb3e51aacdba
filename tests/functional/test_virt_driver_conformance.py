"""Nova's generic virt-driver conformance suite, run against psdriver on a simulated host.

``nova.tests.unit.virt.test_virt_drivers._VirtDriverTestCase`` is what nova
holds its in-tree drivers to: every public driver call with the argument
types nova uses, and the result types it expects.  Here it drives
``psdriver.driver.HyperVDriver`` (``[powershell] transport = sim``), with two
adaptations a Hyper-V driver needs: the suite's instances are
``objects.Instance`` (what nova passes to drivers; the suite's default is a
bare database row) and boot from a VHDX image, since Hyper-V cannot boot the
suite's raw image.

The suite passes a test that meets ``NotImplementedError`` and only logs it.
A hook on that log makes it exact here: each test must meet precisely the
unimplemented methods ``NOT_IMPLEMENTED`` lists for it, so the table has to
change when the driver grows.  ``NOT_IMPLEMENTED_METHODS`` is the resulting
list.
"""

from __future__ import annotations

import io

import fixtures
import pytest
from nova import test
from nova.tests.unit import utils as test_utils
from nova.tests.unit.virt import test_virt_drivers
from nova.virt import driver as nova_driver
from oslo_utils.fixture import uuidsentinel as uuids

import psdriver.conf  # noqa: F401  (registers [powershell] and [hyperv])
from psdriver import coordination
from psdriver.driver import HyperVDriver
from psdriver.ops.volumeops import UnsupportedVolumeType
from psdriver.sim import image_files
from tests.functional import harness

pytestmark = pytest.mark.functional

#: Conformance test -> the driver methods it finds raising NotImplementedError.
NOT_IMPLEMENTED: dict[str, set[str]] = {
    'test_block_stats': {'block_stats'},
    'test_get_device_name_for_instance': {'get_device_name_for_instance'},
    'test_get_diagnostics': {'get_diagnostics'},
    'test_get_host_cpu_stats': {'get_host_cpu_stats'},
    'test_get_instance_disk_info': {'get_instance_disk_info'},
    'test_get_mks_console': {'get_mks_console'},
    'test_get_spice_console': {'get_spice_console'},
    'test_get_vnc_console': {'get_vnc_console'},
    'test_host_power_action_startup': {'host_power_action'},
    'test_live_migration_abort': {'live_migration_abort'},
    'test_poll_rebooting_instances': {'poll_rebooting_instances'},
    'test_restore_running': {'restore'},
    'test_restore_soft_deleted': {'soft_delete'},
    'test_set_admin_password': {'set_admin_password'},
    'test_set_host_enabled': {'set_host_enabled'},
    'test_soft_delete': {'soft_delete'},
    'test_trigger_crash_dump': {'trigger_crash_dump'},
}

#: Implemented, but NotImplementedError for some arguments: method -> why.
PARTLY_IMPLEMENTED = {
    'host_power_action': "'startup' needs out-of-band management, not the host itself",
}

#: Every method the suite finds unimplemented (the gap list).
NOT_IMPLEMENTED_METHODS = frozenset().union(*NOT_IMPLEMENTED.values())


class PsDriverConformanceTest(test_virt_drivers._VirtDriverTestCase, test.TestCase):
    """The suite's 64 tests with ``self.connection`` a psdriver HyperVDriver."""

    def setUp(self) -> None:
        self.driver_module = 'psdriver.driver.HyperVDriver'
        self.flags(transport='sim', group='powershell')
        super().setUp()
        # The suite points instances_path at a local temporary folder; the
        # simulated host has its own.
        self.flags(instances_path=harness.INSTANCES_PATH, use_cow_images=True)
        locks = self.useFixture(fixtures.TempDir()).path
        self.flags(backend_url=f'file://{locks}', group='coordination')
        self.addCleanup(coordination.COORDINATOR.stop)
        self.not_implemented: set[str] = set()
        real_error = test_virt_drivers.LOG.error

        def record(msg, *args, **kwargs):
            if args and isinstance(args[0], dict) and 'method' in args[0]:
                self.not_implemented.add(args[0]['method'])
            return real_error(msg, *args, **kwargs)

        self.useFixture(fixtures.MockPatchObject(test_virt_drivers.LOG, 'error',
                                                 side_effect=record, autospec=True))
        self.addCleanup(self._check_not_implemented)
        data = image_files.vhdx(harness.IMAGE_VIRTUAL_SIZE)
        self.image_service.create(self.ctxt, {
            'id': uuids.vhdx_image, 'name': 'psdriver-vhdx', 'status': 'active',
            'visibility': 'public', 'disk_format': 'vhdx', 'container_format': 'bare',
            'size': len(data), 'min_ram': 0, 'min_disk': 0, 'properties': {}},
            data=io.BytesIO(data))
        # nova's fake network info has VIFs of type ovs on bridge br0: the host has Open vSwitch.
        self.connection.bridge.runner.host.install_ovs(harness.OVS_VSCTL, ['br-int', 'br0'])
        self.connection.init_host('myhostname')
        self.addCleanup(self.connection.cleanup_host, 'myhostname')

    def _clear_attrs(self) -> None:
        """Keep pytest's attributes: nova's clean-up would delete the test method."""

    def _check_not_implemented(self) -> None:
        name = self._testMethodName
        self.assertEqual(NOT_IMPLEMENTED.get(name, set()), self.not_implemented,
                         f'{name}: the methods found raising NotImplementedError changed; '
                         'update NOT_IMPLEMENTED')

    def _get_running_instance(self, obj=True):
        instance = test_utils.get_test_instance(obj=True)
        instance.image_ref = uuids.vhdx_image
        instance.save()
        network_info = test_utils.get_test_network_info()
        network_info[0]['network']['subnets'][0]['meta']['dhcp_server'] = '1.1.1.1'
        image_meta = test_utils.get_test_image_object(None, instance)
        self.connection.spawn(self.ctxt, instance, image_meta, [], 'herp', {},
                              network_info=network_info)
        return instance, network_info

    # -- FakeDriver-specific tests --------------------------------------------------

    def test_get_console_output(self):
        """Bytes, as libvirt returns and ComputeManager.get_console_output takes.

        The suite asks for a str, which only FakeDriver returns; this checks
        the log really is the guest's serial output.
        """
        instance, _ = self._get_running_instance()
        output = self.connection.get_console_output(self.ctxt, instance)
        self.assertIsInstance(output, bytes)
        self.assertIn(f'{instance.name}: booting'.encode(), output)

    # The suite's volumes are of driver_volume_type 'fake': psdriver refuses a type it
    # has no connector for, naming the volume (real types: tests/functional/test_volumes.py).

    def test_attach_detach_volume(self):
        instance, _ = self._get_running_instance()
        info = {'driver_volume_type': 'fake', 'serial': 'fake_serial', 'data': {}}
        for call in (self.connection.attach_volume, self.connection.detach_volume):
            error = self.assertRaises(UnsupportedVolumeType, call, None, info, instance,
                                      '/dev/sda')
            self.assertIn('fake_serial', str(error))

    def test_attach_detach_different_power_states(self):
        instance, _ = self._get_running_instance()
        self.connection.power_off(instance)
        self.assertRaises(UnsupportedVolumeType, self.connection.attach_volume, None,
                          {'driver_volume_type': 'fake', 'serial': 'x', 'data': {}}, instance,
                          '/dev/sda')

    def test_swap_volume(self):
        instance, _ = self._get_running_instance()
        self.assertRaises(NotImplementedError, self.connection.swap_volume, None,
                          {'driver_volume_type': 'fake', 'data': {}},
                          {'driver_volume_type': 'fake', 'data': {}}, instance, '/dev/sda', 2)

    def test_live_migration(self):
        self.skipTest('written for libvirt: LibvirtLiveMigrateData and the fake libvirt '
                      'job stats')

    def test_migrate_disk_and_power_off(self):
        self.skipTest("migrates to 'dest_host', a host that does not exist: psdriver copies the "
                      'disks there, fails and restores the source (tests/unit/'
                      'test_driver_migration.py)')

    def test_live_migration_force_complete(self):
        self.skipTest("written for FakeDriver: fills the driver's active_migrations dict")


class NotImplementedListTest(test.NoDBTestCase):
    """The gap list names methods psdriver really leaves to ComputeDriver's default."""

    def _clear_attrs(self) -> None:
        """Keep pytest's attributes: nova's clean-up would delete the test method."""

    def test_gap_list(self):
        self.assertEqual(frozenset({
            'block_stats', 'get_device_name_for_instance',
            'get_diagnostics', 'get_host_cpu_stats', 'get_instance_disk_info',
            'get_mks_console', 'get_spice_console', 'get_vnc_console',
            'host_power_action', 'live_migration_abort',
            'poll_rebooting_instances', 'restore',
            'set_admin_password', 'set_host_enabled', 'soft_delete',
            'trigger_crash_dump',
        }), NOT_IMPLEMENTED_METHODS)

    def test_listed_methods_are_not_implemented(self):
        for method in sorted(NOT_IMPLEMENTED_METHODS - set(PARTLY_IMPLEMENTED)):
            self.assertIs(getattr(nova_driver.ComputeDriver, method),
                          getattr(HyperVDriver, method),
                          f'HyperVDriver.{method} is implemented now: update NOT_IMPLEMENTED')
        for method in PARTLY_IMPLEMENTED:
            self.assertIsNot(getattr(nova_driver.ComputeDriver, method),
                             getattr(HyperVDriver, method))
