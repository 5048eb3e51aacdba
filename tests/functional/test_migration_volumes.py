"""Live and cold migration of a server with a Cinder iSCSI volume attached.

Both simulated hosts reach the same iSCSI target.  After the move the
volume's session is on the destination only, and the VM there has the
volume's disk attached, by the destination's own disk number (host2
numbers its disks differently from host1).
"""

from __future__ import annotations

import pytest
from oslo_utils.fixture import uuidsentinel as uuids

from tests.functional import harness

pytestmark = pytest.mark.functional

IQN = 'iqn.2010-10.org.openstack:volume-data'
PORTAL = '10.0.0.5:3260'
SHARE = '\\\\fs01\\instances'


class _VolumeMigrationBase(harness.PsDriverTestBase):
    COMPUTE_HOSTS = ('host1', 'host2')
    FABRIC: dict[str, float] = {}
    CAST_AS_CALL = False

    def setUp(self) -> None:
        super().setUp()
        self.flags(mounted_disk_query_retry_interval=0, volume_attach_retry_interval=0,
                   volume_attach_retry_count=0, mounted_disk_query_retry_count=2,
                   group='hyperv')
        for name in self.COMPUTE_HOSTS:
            host = self.sim_host(name)
            host.set_migration(enabled=True, use_any_network=True)
            host.add_iscsi_target(PORTAL, IQN, [1])
        host2 = self.sim_host('host2')
        with host2.transaction():
            host2._state.iscsi.next_disk_number += 7      # other numbers than host1's
        self.cinder.VOLUME_CONNECTION_INFO = {uuids.iscsi_vol: {
            'driver_volume_type': 'iscsi',
            'data': {'target_portal': PORTAL, 'target_iqn': IQN, 'target_lun': 0}}}
        self.flavor = self._flavor(vcpu=1, memory_mb=512, disk=2)
        self.server = self.boot(self.flavor, host='host1')
        self._attach_volume(self.server, uuids.iscsi_vol)

    def assertVolumeOn(self, host: str, other: str) -> None:
        server = self.api.get_server(self.server['id'])
        self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([], self.sim_host(other).iscsi_sessions())
        self.assertEqual(1, len(self.sim_host(host).iscsi_sessions()))
        vm = self.host_vm(self.server, host)
        [drive] = [d for d in vm.drives if d.disk_number is not None]
        self.assertEqual(IQN, self.sim_host(host).get_disk(drive.disk_number).target_iqn)
        self.assertEqual('Running', vm.state)
        for name in self.COMPUTE_HOSTS:
            self.sim_host(name).check_consistency()


class SharedStorageVolumeLiveMigrationTest(_VolumeMigrationBase):
    FABRIC = {SHARE: 200}
    INSTANCES = SHARE

    @pytest.mark.xfail(strict=True, reason=(
        "Move-VM carries the source host's disk number of the pass-through drive to the "
        "destination, where it names no disk (or another one); the drive has to be "
        "re-pointed to the destination's disk (Compare-VM report fixed with "
        "Set-VMHardDiskDrive, then Move-VM -CompatibilityReport), which is not done yet"))
    def test_live_migrate_with_an_iscsi_volume(self):
        self._live_migrate(self.server, host='host2')
        self.assertVolumeOn('host2', 'host1')
        self.assertNoTraceback()


class VolumeColdMigrationTest(_VolumeMigrationBase):

    def test_cold_migrate_with_an_iscsi_volume_and_confirm(self):
        self._migrate_server(self.server, host='host2')
        self.assertVolumeOn('host2', 'host1')
        self._confirm_resize(self.server)
        self.assertVolumeOn('host2', 'host1')
        self.assertNoTraceback()

    def test_cold_migrate_with_an_iscsi_volume_and_revert(self):
        self._migrate_server(self.server, host='host2')
        self.assertVolumeOn('host2', 'host1')
        self._revert_resize(self.server)
        self.assertVolumeOn('host1', 'host2')
        self.assertNoTraceback()
