"""Spawn waits for Neutron's network-vif-plugged event, through nova's own event machinery.

The port is one Neutron reports as DOWN (not bound yet), so nova-compute's
network info marks it inactive and psdriver creates the VM off, waits in
nova's ``wait_for_instance_event`` and starts it only once the event came in
through the API (``os-server-external-events``, what Neutron calls), or, when
the event never comes, fails the build cleanly (``vif_plugging_is_fatal``) or
boots anyway.
"""

from __future__ import annotations

import ntpath
import time

import pytest

from tests.functional import harness

pytestmark = pytest.mark.functional


class VifPluggedEventTest(harness.PsDriverTestBase):

    def setUp(self) -> None:
        super().setUp()
        self.port = self.neutron.port_1
        # Neutron has not bound the port yet: nova's network info says inactive.
        self.neutron._ports[self.port['id']]['status'] = 'DOWN'

    def _post(self, flavor: str) -> dict:
        body = self._build_server(image_uuid=self.vhdx_image_id, flavor_id=flavor,
                                  networks=[{'port': self.port['id']}])
        return self.api.post_server({'server': body})

    def _wait_for_vm(self, server: dict, deadline: float = 20.0):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            vm = self.sim_host().find_vm(self.instance(server).name)
            if vm is not None:
                return vm
            time.sleep(0.05)
        self.fail('spawn never created the VM')

    def _instance_dir(self, server: dict) -> str:
        return ntpath.join(harness.INSTANCES_PATH, self.instance(server).name)

    def test_the_vm_starts_once_the_event_arrives(self):
        self.flags(vif_plugging_timeout=60, vif_plugging_is_fatal=True)
        server = self._post(self._flavor())
        vm = self._wait_for_vm(server)
        time.sleep(0.3)
        # Created with its adapter, but not started while Neutron has not answered.
        self.assertEqual('Off', self.sim_host().find_vm(vm.name).state)
        self.assertEqual([self.port['id']], [nic.name for nic in vm.nics])
        self.assertEqual('BUILD', self.api.get_server(server['id'])['status'])

        self.api.api_post('/os-server-external-events', {'events': [{
            'name': 'network-vif-plugged', 'server_uuid': server['id'],
            'tag': self.port['id'], 'status': 'completed'}]})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('Running', self.host_vm(server).state)
        self.assertNoTraceback()

    def test_no_event_and_fatal_fails_the_build_and_leaves_nothing(self):
        self.flags(vif_plugging_timeout=1, vif_plugging_is_fatal=True)
        server = self._wait_for_state_change(self._post(self._flavor()), 'ERROR')
        # VirtualInterfaceCreateException: nova aborts the build without rescheduling.
        self.assertIn('Failed to allocate the network(s), not rescheduling',
                      server['fault']['message'])
        self.assertIn('VirtualInterfaceCreateException', self.stdlog.logger.output)
        self.assertIsNone(self.host_vm(server))
        self.assertFalse(self.sim_host().exists(self._instance_dir(server)))

    def test_no_event_and_not_fatal_boots_anyway(self):
        self.flags(vif_plugging_timeout=1, vif_plugging_is_fatal=False)
        server = self._wait_for_state_change(self._post(self._flavor()), 'ACTIVE')
        self.assertEqual('Running', self.host_vm(server).state)
        self.assertIn('Neutron did not report', self.stdlog.logger.output)
        self.assertNoTraceback()
