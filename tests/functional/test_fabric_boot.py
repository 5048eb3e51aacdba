"""Two compute services whose simulated hosts share a fabric (a shared volume)."""

from __future__ import annotations

from tests.functional import harness

SHARE = '\\\\fs01\\instances'


class TestFabricHosts(harness.PsDriverTestBase):
    COMPUTE_HOSTS = ('host1', 'host2')
    FABRIC = {SHARE: 100}

    def test_servers_on_both_hosts_and_a_shared_volume_both_see(self):
        on1 = self.boot(host='host1')
        on2 = self.boot(host='host2')
        assert self.host_vm(on1, 'host1') is not None and self.host_vm(on2, 'host2') is not None
        self.sim_host('host1').make_dir(SHARE + '\\seen')
        assert self.sim_host('host2').exists(SHARE + '\\seen')
        assert self.fabric.host('host2') is not self.sim_host('host1')
