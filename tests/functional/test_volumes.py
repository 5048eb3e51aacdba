"""Cinder volumes end to end: nova's API and compute manager, nova's CinderFixture, psdriver.

The CinderFixture stands in for Cinder's API; the connection_info it returns
for each volume is what Cinder's iSCSI, Fibre Channel and SMB drivers return,
pointing at storage set up on the simulated Hyper-V host (targets, LUNs, a
share with a VHDX file).  Nova does the rest: get_volume_connector,
attachment updates, attach_volume/detach_volume, extend events, boot from
volume and delete.
"""

from __future__ import annotations

import time
import urllib.parse

import fixtures
import pytest
from nova.tests.functional.api import client
from oslo_serialization import jsonutils
from oslo_utils.fixture import uuidsentinel as uuids

from tests.functional import harness

pytestmark = pytest.mark.functional

IQN = 'iqn.2010-10.org.openstack:volume-boot'
DATA_IQN = 'iqn.2010-10.org.openstack:volume-data'
PORTAL = '10.0.0.5:3260'
WWN = '500a098280feeba5'
FC_PORT = {'wwnn': '20000090fa000001', 'wwpn': '10000090fa000001'}
SHARE = '\\\\fs01\\cinder'
GIB = harness.GIB


def iscsi(iqn: str, lun: int = 0) -> dict:
    return {'driver_volume_type': 'iscsi',
            'data': {'target_portal': PORTAL, 'target_iqn': iqn, 'target_lun': lun,
                     'auth_method': 'CHAP', 'auth_username': 'chapuser',
                     'auth_password': 'chap-secret'}}


class VolumeTest(harness.PsDriverTestBase):
    """Volumes of each type through nova's volume API on host1's simulated Hyper-V."""

    BOOT_VOLUME = 'BOOT'

    def setUp(self) -> None:
        super().setUp()
        self.flags(mounted_disk_query_retry_interval=0, volume_attach_retry_interval=0,
                   volume_attach_retry_count=0, mounted_disk_query_retry_count=2,
                   group='hyperv')
        host = self.sim_host()
        host.add_iscsi_target(PORTAL, IQN, [10], chap_username='chapuser',
                              chap_secret='chap-secret')
        host.add_iscsi_target(PORTAL, DATA_IQN, [1, 1], chap_username='chapuser',
                              chap_secret='chap-secret')
        host.set_fc_ports([FC_PORT])
        host.add_fc_target(WWN, [1, 2])
        host.add_volume(SHARE, 100)
        host.require_smb_credentials(SHARE, 'cinder', 'smb-secret')
        host.new_vhd(f'{SHARE}\\volume-{uuids.smb_vol}.vhdx', GIB)
        self.cinder.VOLUME_CONNECTION_INFO = {
            self.cinder.IMAGE_BACKED_VOL: iscsi(IQN),
            uuids.iscsi_vol: iscsi(DATA_IQN, 0),
            uuids.iscsi_vol2: iscsi(DATA_IQN, 1),
            uuids.fc_vol: {'driver_volume_type': 'fibre_channel',
                           'data': {'target_wwn': [WWN], 'target_lun': 1,
                                    'initiator_target_map': {FC_PORT['wwpn']: [WWN]}}},
            uuids.smb_vol: {'driver_volume_type': 'smbfs',
                            'data': {'export': '//fs01/cinder',
                                     'name': f'volume-{uuids.smb_vol}.vhdx', 'format': 'vhdx',
                                     'options': '-o username=cinder,password=smb-secret'}},
            uuids.bad_vol: {'driver_volume_type': 'iscsi', 'data': {'target_portal': PORTAL}},
            'fake': {'driver_volume_type': 'fake', 'data': {}},
        }

    # -- what the host has ---------------------------------------------------------------

    def passthrough(self, server) -> list:
        return [d for d in self.host_vm(server).drives if d.disk_number is not None]

    def share_disks(self, server) -> list:
        return [d for d in self.host_vm(server).drives if (d.path or '').startswith(SHARE)]

    def assert_host_clean(self) -> None:
        host = self.sim_host()
        self.assertEqual([], host.iscsi_sessions())
        self.assertEqual([], host.smb_mappings())
        self.assertFalse([d for vm in host.list_vms() for d in vm.drives
                          if d.disk_number is not None or (d.path or '').startswith(SHARE)])

    # -- tests ---------------------------------------------------------------------------

    def test_boot_from_iscsi_volume_and_delete(self):
        body = self._build_server(image_uuid='', flavor_id=self._flavor(), networks='none')
        body['block_device_mapping_v2'] = [{
            'boot_index': 0, 'uuid': self.cinder.IMAGE_BACKED_VOL, 'source_type': 'volume',
            'destination_type': 'volume'}]
        with self.scripts_run() as seen:
            server = self._wait_for_state_change(self.api.post_server({'server': body}),
                                                 'ACTIVE')
        names = [name for name, _ in seen]
        self.assertIn('Get-VolumeConnector', names)
        self.assertNotIn('Get-CachedImage', names)
        self.assertEqual(['Connect-InstanceVolume', 'New-Instance'],
                         [n for n in names if n not in ('Get-VolumeConnector',
                                                        'Get-InstanceSummary')])
        vm = self.host_vm(server)
        self.assertEqual('Running', vm.state)
        [root] = self.passthrough(server)
        self.assertEqual(('IDE', 0, 0), (root.controller_type, root.controller_number,
                                         root.location))
        self.assertEqual(IQN, self.sim_host().get_disk(root.disk_number).target_iqn)
        self._delete_server(server)
        self.assertIsNone(self.sim_host().find_vm(vm.name))
        self.assert_host_clean()

    def test_attach_and_detach_iscsi_fc_and_smb_to_a_running_server(self):
        server = self.boot()
        for volume in (uuids.iscsi_vol, uuids.fc_vol, uuids.smb_vol):
            self._attach_volume(server, volume)
        self.assertEqual(2, len(self.passthrough(server)))
        self.assertEqual(1, len(self.share_disks(server)))
        self.assertEqual(1, len(self.sim_host().smb_mappings()))
        for volume in (uuids.iscsi_vol, uuids.fc_vol, uuids.smb_vol):
            self.api.delete_server_volume(server['id'], volume)
            self._wait_for_volume_detach(server['id'], volume)
        self.assertEqual('Running', self.host_vm(server).state)
        self.assert_host_clean()
        self.assertNoTraceback()

    def test_assisted_snapshot_create_and_delete_of_an_smb_volume(self):
        """os-assisted-volume-snapshots, as Cinder's SMB driver calls it, on a stopped server."""
        statuses: list[tuple[str, str]] = []
        self.useFixture(fixtures.MonkeyPatch(
            'nova.volume.cinder.API.update_snapshot_status',
            lambda _api, _ctxt, snapshot_id, status: statuses.append((snapshot_id, status))))
        server = self.boot()
        self._attach_volume(server, uuids.smb_vol)
        server = self._stop_server(server)
        base = f'{SHARE}\\volume-{uuids.smb_vol}.vhdx'
        snap = f'{SHARE}\\volume-{uuids.smb_vol}.{uuids.snap}.vhdx'
        admin = self.api_fixture.admin_api
        admin.api_post('/os-assisted-volume-snapshots', {'snapshot': {
            'volume_id': uuids.smb_vol, 'create_info': {
                'snapshot_id': uuids.snap, 'type': 'qcow2', 'id': uuids.snap,
                'new_file': f'volume-{uuids.smb_vol}.{uuids.snap}.vhdx'}}})
        self.wait_for_status(statuses, (uuids.snap, 'creating'))
        [drive] = self.share_disks(server)
        self.assertEqual(snap, drive.path)
        self.assertEqual(base, self.sim_host().get_vhd(snap).vhd.parent_path)

        delete_info = {'type': 'qcow2', 'file_to_merge': None, 'merge_target_file': None,
                       'volume_id': uuids.smb_vol}
        query = urllib.parse.urlencode({'delete_info': jsonutils.dumps(delete_info)})
        admin.api_delete(f'/os-assisted-volume-snapshots/{uuids.snap}?{query}')
        self.wait_for_status(statuses, (uuids.snap, 'deleting'))
        [drive] = self.share_disks(server)
        self.assertEqual(snap, drive.path)
        self.assertIsNone(self.sim_host().get_vhd(snap).vhd.parent_path)
        self.assertFalse(self.sim_host().exists(base))
        # detach goes by the file the BDM names now
        self.api.delete_server_volume(server['id'], uuids.smb_vol)
        self._wait_for_volume_detach(server['id'], uuids.smb_vol)
        self.assert_host_clean()

    @staticmethod
    def wait_for_status(statuses: list, expected: tuple[str, str]) -> None:
        for _ in range(100):
            if expected in statuses:
                return
            time.sleep(0.1)
        raise AssertionError(f'{expected} never sent; sent: {statuses}')

    def test_extend_an_attached_volume_then_delete_the_server(self):
        server = self.boot()
        for volume in (uuids.iscsi_vol, uuids.iscsi_vol2, uuids.smb_vol):
            self._attach_volume(server, volume)
        self.assertEqual(1, len(self.sim_host().iscsi_sessions()))   # two LUNs, one login
        self.sim_host().resize_lun(DATA_IQN, 0, 3)
        self.cinder.volumes[uuids.iscsi_vol] = {'id': uuids.iscsi_vol, 'size': 3,
                                                'display_name': 'data', 'multiattach': False,
                                                'availability_zone': 'nova'}
        with self.scripts_run() as seen:
            self.api.microversion = '2.51'
            self.api.api_post('/os-server-external-events', {'events': [{
                'name': 'volume-extended', 'server_uuid': server['id'],
                'tag': uuids.iscsi_vol}]})
            self._wait_for_instance_action_event(server, 'extend_volume',
                                                 'compute_extend_volume', 'Success')
        self.assertEqual(['Update-InstanceVolume'], [n for n, _ in seen])
        sizes = sorted(self.sim_host().get_disk(d.disk_number).size
                       for d in self.passthrough(server))
        self.assertEqual([GIB, 3 * GIB], sizes)
        self.api.microversion = 'latest'
        self._delete_server(server)
        self.assert_host_clean()

    def test_bad_connection_info_fails_the_attach_naming_the_volume(self):
        server = self.boot()
        for volume in (uuids.bad_vol, uuids.unknown_type_vol):
            if volume == uuids.unknown_type_vol:
                self.cinder.VOLUME_CONNECTION_INFO[volume] = {
                    'driver_volume_type': 'nfs', 'data': {'export': 'x:/y'}}
            # The harness turns nova's RPC casts into calls: the compute's failure
            # comes back through the API call.
            failure = self.assertRaises(client.OpenStackApiException,
                                        self.api.post_server_volume, server['id'],
                                        {'volumeAttachment': {'volumeId': volume}})
            self.assertIn('VolumeAttachFailed' if volume == uuids.bad_vol
                          else 'UnsupportedVolumeType', str(failure))
            self.assertIn(f'Volume {volume}', self.stdlog.logger.output)
            self.assertEqual([], self.api.get_server_volumes(server['id']))
        self.assertEqual('Running', self.host_vm(server).state)
        self.assert_host_clean()
