"""Snapshot through nova's API: the image Glance gets boots a new server."""

from __future__ import annotations

import time

import pytest

from tests.functional import harness

pytestmark = pytest.mark.functional


class SnapshotTest(harness.PsDriverTestBase):

    def test_snapshot_then_boot_from_it(self):
        server = self.boot(self._flavor(disk=2))
        vm = self.host_vm(server)
        with self.scripts_run() as calls:
            resp = self.api.post_server_action(server['id'],
                                               {'createImage': {'name': 'snap-1'}})
            image_id = resp['image_id']
            self._wait_for_snapshot_upload(server)
            image = self._wait_for_image(image_id)
        self.assertEqual(['New-InstanceImage'],
                         [name for name, _ in calls if name != 'Get-InstanceSummary'])
        self.assertEqual('vhdx', image['disk_format'])
        self.assertGreater(image['size'], 0)
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertIsNone(server['OS-EXT-STS:task_state'])
        after = self.host_vm(server)
        self.assertEqual('Running', after.state)
        self.assertEqual([], after.snapshots)
        self.assertEqual(vm.started_at, after.started_at)     # the guest kept running
        self.assertFalse(self.sim_host().exists(harness.INSTANCES_PATH + '\\_snapshots\\'
                                                + image_id + '.vhdx'))

        clone = self.boot(self._flavor(disk=2), image_uuid=image_id)
        cloned_vm = self.host_vm(clone)
        root = self.sim_host().get_vhd(cloned_vm.drives[0].path).vhd
        parent = self.sim_host().get_vhd(root.parent_path)
        self.assertIn(image_id, parent.path)                 # cached from the snapshot image
        self.assertNoTraceback()

    def _wait_for_snapshot_upload(self, server: dict) -> None:
        for _ in range(100):
            if self.api.get_server(server['id'])['OS-EXT-STS:task_state'] is None:
                return
            time.sleep(0.1)
        self.fail('the snapshot never finished')

    def _wait_for_image(self, image_id: str) -> dict:
        for _ in range(100):
            image = self.glance.show(None, image_id)
            if image.get('status') == 'active':
                return image
            time.sleep(0.1)
        self.fail(f'image {image_id} never became active')
