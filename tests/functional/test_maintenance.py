"""Host maintenance mode through nova's os-hosts API (microversion 2.42 and older).

psdriver cannot migrate instances yet, so the instances of the only host
cannot go anywhere: enabling maintenance disables the service and answers,
through the API, which instance stayed and why; disabling it enables the
service again.
"""

from __future__ import annotations

import pytest
from nova.tests.functional.api import client

from tests.functional import harness

pytestmark = pytest.mark.functional


class HostMaintenanceTest(harness.PsDriverTestBase):

    def _maintenance(self, mode: str):
        self.api.microversion = '2.42'        # os-hosts is gone from 2.43 on
        try:
            return self.api.api_put('/os-hosts/host1', {'maintenance_mode': mode})
        finally:
            self.api.microversion = 'latest'

    def _service(self) -> dict:
        return next(s for s in self.api.get_services()
                    if s['binary'] == 'nova-compute' and s['host'] == 'host1')

    def test_enable_disables_the_service_and_says_which_instance_could_not_move(self):
        self.flags(evacuate_task_state_timeout=5, group='hyperv')
        running = self.boot()
        stopped = self._stop_server(self.boot())

        with self.assertRaises(client.OpenStackApiException) as raised:
            self._maintenance('enable')
        message = raised.exception.response.text
        self.assertEqual(400, raised.exception.response.status_code)
        self.assertIn('2 instance(s) could not be moved', message)
        self.assertIn(running['id'], message)
        self.assertIn(stopped['id'], message)
        self.assertEqual('disabled', self._service()['status'])
        # Nothing moved, nothing lost.
        self.assertEqual('Running', self.host_vm(running).state)
        self.assertEqual('Off', self.host_vm(stopped).state)
        self.assertEqual('ACTIVE', self.api.get_server(running['id'])['status'])

        result = self._maintenance('disable').body
        self.assertEqual('off_maintenance', result['maintenance_mode'])
        self.assertEqual('enabled', self._service()['status'])

    def test_enable_on_an_empty_host_is_on_maintenance(self):
        result = self._maintenance('enable').body
        self.assertEqual('on_maintenance', result['maintenance_mode'])
        self.assertEqual('disabled', self._service()['status'])
        self.assertNoTraceback()
