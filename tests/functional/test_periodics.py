"""nova-compute's periodic tasks cost the Hyper-V host the same whatever the instance count.

With one server and then with three, the scripts the driver runs on the
simulated host are recorded at the PowerShell boundary while nova's own
periodic code runs:

* ``update_available_resource`` (resource tracker, placement inventory)
  makes exactly one Get-HostInfo: node name, resources and provider tree
  share it, and no per-VM query is made;
* ``_sync_power_states`` makes exactly one Get-InstanceSummary, the
  snapshot of every VM that answers each instance's ``get_info``.

The driver's short-lived caches are dropped before each measurement, so the
counts do not depend on how long ago the boots ran.
"""

from __future__ import annotations

import pytest
from nova import context as nova_context

from tests.functional import harness

pytestmark = pytest.mark.functional


class PeriodicCostTest(harness.PsDriverTestBase):
    # The event poller's own snapshots are not part of these periodics.
    LIFECYCLE_EVENTS = False

    def _measure(self):
        driver = self.driver()
        driver.hostops.invalidate()
        driver.vmops.invalidate()
        with self.scripts_run() as resources:
            self._run_periodics(raise_on_error=True)
        driver.vmops.invalidate()
        with self.scripts_run() as power:
            self.compute.manager._sync_power_states(nova_context.get_admin_context())
        return [name for name, _ in resources], [name for name, _ in power]

    def test_periodics_do_not_grow_with_instances(self):
        flavor = self._flavor(vcpu=1, memory_mb=512, disk=1)
        self.boot(flavor)
        resources_1, power_1 = self._measure()
        self.boot(flavor)
        self.boot(flavor)
        resources_3, power_3 = self._measure()

        self.assertEqual(3, len(self.driver().list_instance_uuids()))
        self.assertEqual(['Get-HostInfo'], resources_1)
        self.assertEqual(resources_1, resources_3)
        self.assertEqual(['Get-InstanceSummary'], power_1)
        self.assertEqual(power_1, power_3)

        self.assertNoTraceback()
