"""What psdriver reports to placement, read back from the real placement service.

Two compute services run psdriver on two different simulated Hyper-V hosts
(the default one, and a bigger one with fewer CPU features).  Each compute
node provider's VCPU, MEMORY_MB and DISK_GB inventory equals what its host
reports, with nova's allocation ratios (an explicit ``cpu_allocation_ratio``,
the ``initial_*`` ones otherwise) and reserved values; its traits are the
host's CPU features plus the driver's capabilities.  A server's allocations
match its flavor on the host it landed on, and are gone after delete.
"""

from __future__ import annotations

import math

import pytest

from tests.functional import harness

pytestmark = pytest.mark.functional

RESERVED_CPUS = 2
RESERVED_MEMORY_MB = 4096
RESERVED_DISK_MB = 10 * 1024 + 1     # rounded up to whole GB: 11
CPU_RATIO = 3.0


class PlacementTest(harness.PsDriverTestBase):
    COMPUTE_HOSTS = ('host1', 'host2')
    SIM_HOSTS = {'host2': {'logical_processors': 32, 'sockets': 2, 'threads_per_core': 2,
                           'numa_nodes': 2, 'memory_mb': 262144, 'disk_gb': 2000,
                           'cpu_features': ['mmx', 'sse', 'sse2', 'sse3', 'sse4_1']}}

    def setUp(self) -> None:
        self.flags(reserved_host_cpus=RESERVED_CPUS, reserved_host_memory_mb=RESERVED_MEMORY_MB,
                   reserved_host_disk_mb=RESERVED_DISK_MB, cpu_allocation_ratio=CPU_RATIO)
        super().setUp()

    def _expected_inventory(self, host_name):
        host = self.sim_host(host_name)
        vcpus = host.config.logical_processors
        memory_mb = host.config.memory_mb
        disk_gb = int(host.disk_usage(harness.INSTANCES_PATH)['total'] // harness.GIB)
        reserved_disk_gb = math.ceil(RESERVED_DISK_MB / 1024)

        def record(total, ratio, reserved):
            return {'total': total, 'allocation_ratio': ratio, 'reserved': reserved,
                    'min_unit': 1, 'max_unit': total, 'step_size': 1}
        return {
            'VCPU': record(vcpus, CPU_RATIO, RESERVED_CPUS),
            'MEMORY_MB': record(memory_mb, 1.0, RESERVED_MEMORY_MB),
            'DISK_GB': record(disk_gb, 1.0, reserved_disk_gb),
        }

    def test_inventory_and_traits_match_each_host(self):
        self._run_periodics(raise_on_error=True)
        expected = {host: self._expected_inventory(host) for host in self.COMPUTE_HOSTS}
        self.assertNotEqual(expected['host1'], expected['host2'])
        for host in self.COMPUTE_HOSTS:
            rp = self._get_provider_uuid_by_host(host)
            self.assertEqual(expected[host], self._get_provider_inventory(rp))

        traits1 = set(self._get_provider_traits(self._get_provider_uuid_by_host('host1')))
        traits2 = set(self._get_provider_traits(self._get_provider_uuid_by_host('host2')))
        capability = {'COMPUTE_IMAGE_TYPE_VHDX', 'COMPUTE_IMAGE_TYPE_VHD',
                      'COMPUTE_IMAGE_TYPE_ISO', 'COMPUTE_NET_ATTACH_INTERFACE',
                      'COMPUTE_SECURITY_UEFI_SECURE_BOOT'}
        self.assertLessEqual(capability, traits1 & traits2)
        self.assertNotIn('COMPUTE_IMAGE_TYPE_QCOW2', traits1 | traits2)
        self.assertLessEqual({'HW_CPU_X86_AVX2', 'HW_CPU_X86_SSE42', 'HW_CPU_X86_AESNI'},
                             traits1)
        cpu2 = {t for t in traits2 if t.startswith('HW_CPU_X86_')}
        self.assertEqual({'HW_CPU_X86_MMX', 'HW_CPU_X86_SSE', 'HW_CPU_X86_SSE2',
                          'HW_CPU_X86_SSE3', 'HW_CPU_X86_SSE41'}, cpu2)
        self.assertNoTraceback()

    def test_allocations_follow_the_server(self):
        flavor = self._flavor(vcpu=3, memory_mb=1536, disk=5)
        rp1 = self._get_provider_uuid_by_host('host1')
        rp2 = self._get_provider_uuid_by_host('host2')

        server = self.boot(flavor, host='host2')
        name = self.instance(server).name
        self.assertEqual('host2', server['OS-EXT-SRV-ATTR:host'])
        self.assertIsNotNone(self.host_vm(server, 'host2'))
        self.assertIsNone(self.host_vm(server, 'host1'))
        want = {'VCPU': 3, 'MEMORY_MB': 1536, 'DISK_GB': 5}
        allocations = self._get_allocations_by_server_uuid(server['id'])
        self.assertEqual({rp2: want}, {rp: a['resources'] for rp, a in allocations.items()})
        self._run_periodics(raise_on_error=True)
        self.assertEqual(want, self._get_provider_usages(rp2))
        self.assertEqual({'VCPU': 0, 'MEMORY_MB': 0, 'DISK_GB': 0},
                         self._get_provider_usages(rp1))

        self._delete_server(server)
        self.assertEqual({}, self._get_allocations_by_server_uuid(server['id']))
        self.assertEqual({'VCPU': 0, 'MEMORY_MB': 0, 'DISK_GB': 0},
                         self._get_provider_usages(rp2))
        self.assertIsNone(self.sim_host('host2').find_vm(name))
        self.assertNoTraceback()
