"""Device and flavor features through nova's API: what psdriver refuses and what it builds."""

from __future__ import annotations

import io
import json

import fixtures
import pytest
from oslo_utils.fixture import uuidsentinel as uuids

from psdriver.sim import image_files
from psdriver.sim.shielding import shielding_data_file
from tests.functional import harness
from tests.infra.barbican import FakeBarbican

pytestmark = pytest.mark.functional


def _legacy_extra_specs(test: harness.PsDriverTestBase, flavor: str, specs: dict) -> None:
    """Set extra specs nova 34 no longer validates (Hyper-V's).

    Below microversion 2.86 the API stores them unchecked, as a cloud
    upgraded from compute-hyperv has them.
    """
    test.api.microversion = '2.85'
    try:
        test.api.post_extra_spec(flavor, {'extra_specs': specs})
    finally:
        test.api.microversion = 'latest'


class RemoteFXTest(harness.PsDriverTestBase):

    def test_a_remotefx_flavor_fails_the_build_and_says_why(self):
        flavor = self._flavor()
        _legacy_extra_specs(self, flavor, {'os:resolution': '1920x1200', 'os:monitors': '2'})
        server = self.boot(flavor, expected_state='ERROR')
        self.assertIn('RemoteFX', server['fault']['message'])
        self.assertIsNone(self.host_vm(server))


class MetricsTest(harness.PsDriverTestBase):

    def test_diagnostics_list_each_disk_and_nic_and_metering_survives_a_power_cycle(self):
        self.flags(enable_instance_metrics_collection=True, group='hyperv')
        port = self.neutron.port_1
        server = self.boot(self._flavor(ephemeral=1), networks=[{'port': port['id']}])
        self.assertIsNotNone(self.host_vm(server).metering_since)

        server = self._stop_server(server)
        self.assertIsNone(self.host_vm(server).metering_since)    # Hyper-V dropped it
        server = self._start_server(server)
        self.assertIsNotNone(self.host_vm(server).metering_since)

        # Nova 34's response schema lists the drivers nova still ships: 'hyperv', which
        # nova's Diagnostics object accepts, fails it. Production's default 'warn' logs
        # that (with a traceback) and answers; the harness's 'error' would answer 400.
        self.flags(response_validation='warn', group='api')
        diags = self.api.get_server_diagnostics(server['id'])
        self.assertEqual('hyperv', diags['driver'])
        self.assertIs(False, diags['config_drive'])
        self.assertEqual([port['mac_address']], [n['mac_address'] for n in diags['nic_details']])
        self.assertEqual(2, len(diags['disk_details']))          # root and ephemeral
        self.assertIn('rx_octets', diags['nic_details'][0])


class NestedVirtualizationAndDiskQosTest(harness.PsDriverTestBase):

    def test_vmx_and_an_iops_quota_reach_the_vm(self):
        self.flags(dynamic_memory_ratio=2.0, group='hyperv')
        flavor = self._flavor(ephemeral=1)
        _legacy_extra_specs(self, flavor, {'hw:cpu_features': 'vmx',
                                           'quota:disk_total_iops_sec': '400'})
        server = self.boot(flavor)
        vm = self.host_vm(server)
        self.assertTrue(vm.extra.get('expose_virtualization_extensions'))
        self.assertFalse(vm.dynamic_memory)
        self.assertEqual({'root.vhdx': 400, 'eph0.vhdx': 400},
                         {p.rsplit('\\', 1)[-1]: v for p, v in vm.extra['disk_max_iops'].items()})
        self.assertNoTraceback()


class VirtualTPMTest(harness.PsDriverTestBase):

    def _gen2_image(self) -> str:
        data = image_files.vhdx(harness.IMAGE_VIRTUAL_SIZE)
        self.glance.create(None, {
            'id': uuids.gen2_image, 'name': 'gen2', 'status': 'active', 'visibility': 'public',
            'disk_format': 'vhdx', 'container_format': 'bare', 'size': len(data),
            'min_ram': 0, 'min_disk': 0,
            'properties': {'hw_machine_type': 'hyperv-gen2', 'os_secure_boot': 'required'},
        }, data=io.BytesIO(data))
        return uuids.gen2_image

    def test_a_tpm_flavor_lands_on_the_host_that_offers_it_and_gets_a_vtpm(self):
        flavor = self._flavor(extra_spec={'hw:tpm_version': '2.0', 'hw:tpm_model': 'tpm-crb',
                                          'hw:tpm_secret_security': 'host'})
        server = self.boot(flavor, image_uuid=self._gen2_image())
        vm = self.host_vm(server)
        self.assertTrue(vm.secure_boot)
        self.assertEqual((True, 'local'), (vm.extra.get('tpm'), vm.extra.get('key_protector')))
        self.assertNoTraceback()

    def test_tpm_1_2_finds_no_host(self):
        flavor = self._flavor(extra_spec={'hw:tpm_version': '1.2'})
        server = self.boot(flavor, image_uuid=self._gen2_image(), expected_state='ERROR')
        self.assertIn('No valid host', server['fault']['message'])


GPU = {'location_path': 'PCIROOT(0)#PCI(0300)#PCI(0000)',
       'instance_id': 'PCIP\\VEN_10DE&DEV_1EB8&SUBSYS_12A210DE&REV_A1\\6&2B1C0D3E&0&0000',
       'vendor_id': '10de', 'product_id': '1eb8', 'address': '0000:03:00.0', 'numa_node': None}


class PciPassthroughTest(harness.PsDriverTestBase):
    """One host with one GPU dismounted for Discrete Device Assignment."""

    SIM_HOSTS = {'host1': {'assignable_devices': [GPU]}}

    def setUp(self) -> None:
        self.flags(device_spec=[json.dumps({'vendor_id': '10de', 'product_id': '1eb8'})],
                   alias=[json.dumps({'name': 'gpu', 'vendor_id': '10de', 'product_id': '1eb8',
                                      'device_type': 'type-PCI'})], group='pci')
        self.flags(enabled_filters=['ComputeFilter', 'PciPassthroughFilter'],
                   group='filter_scheduler')
        super().setUp()

    def test_a_server_with_the_alias_gets_the_device_and_a_second_does_not_fit(self):
        flavor = self._flavor(extra_spec={'pci_passthrough:alias': 'gpu:1'})
        first = self.boot(flavor)
        vm = self.host_vm(first)
        self.assertEqual([GPU['location_path']], vm.extra['assigned_devices'])
        self.assertEqual('TurnOff', vm.automatic_stop_action)

        second = self.boot(flavor, expected_state='ERROR')
        self.assertIn('No valid host', second['fault']['message'])
        self.assertEqual([vm.name], [v.name for v in self.sim_host().state.vms.values()])

        # Deleting the first server gives the device back: the next one fits again.
        self._delete_server(first)
        third = self.boot(flavor)
        self.assertEqual([GPU['location_path']], self.host_vm(third).extra['assigned_devices'])


class SerialConsoleTest(harness.PsDriverTestBase):

    def setUp(self) -> None:
        self.flags(enabled=True, port_range='10000:10001', proxyclient_address='192.0.2.11',
                   group='serial_console')
        super().setUp()

    def _console(self, server: dict) -> dict:
        return self.api.api_post(f'/servers/{server["id"]}/remote-consoles', {
            'remote_console': {'protocol': 'serial', 'type': 'serial'}}).body['remote_console']

    def test_the_console_api_gets_a_relay_and_its_port_is_freed_on_delete(self):
        first = self.boot()
        console = self._console(first)
        self.assertEqual(('serial', 'serial'), (console['protocol'], console['type']))
        self.assertIn('token=', console['url'])
        relay = self.sim_host().serial_relay(self.instance(first).name)
        self.assertEqual((10000, '192.0.2.11'), (relay['port'], relay['listen_address']))

        second = self.boot()
        self._console(second)
        self.assertEqual(10001, self.sim_host().serial_relay(self.instance(second).name)['port'])

        self._delete_server(first)
        third = self.boot()
        self._console(third)
        self.assertEqual(10000, self.sim_host().serial_relay(self.instance(third).name)['port'])
        self.assertNoTraceback()


#: The token the API's requests carry (keystonemiddleware's job in a real deployment).
USER_TOKEN = 'token-of-the-user'
#: The volume signature catalog of the shielded VM template disk the tests' image is.
TEMPLATE_DISK = {'name': 'WindowsServer2022', 'version': '1.0.0.0'}


class ShieldedVMTest(harness.PsDriverTestBase):
    """host1 is not guarded, host2 is: a shielded VM, shielding data from a local Barbican.

    An image that asks for the trait CUSTOM_HYPERV_SHIELDED_VM lands on the guarded host;
    one that does not and is sent to the unguarded host fails there with the reason.
    """

    COMPUTE_HOSTS = ('host1', 'host2')
    SIM_HOSTS = {
        'host1': {'template_disk_images': {uuids.shielded_image: TEMPLATE_DISK}},
        'host2': {'host_guarded': True,
                  'template_disk_images': {uuids.shielded_image: TEMPLATE_DISK}},
    }

    def setUp(self) -> None:
        self.barbican = FakeBarbican(USER_TOKEN)
        self.barbican.__enter__()
        self.addCleanup(self.barbican.__exit__, None, None, None)
        super().setUp()
        self.flags(barbican_endpoint=self.barbican.url, group='barbican')
        # nova's API fixture replaces keystonemiddleware and makes contexts without the
        # user's token; keystonemiddleware passes it on, and the compute service reads
        # Barbican with it: give the API's contexts one, as a real deployment has.
        from nova.api import auth as api_auth
        make_context = api_auth.NovaKeystoneContext._create_context

        def with_token(env, **kwargs):
            ctx = make_context(env, **kwargs)
            ctx.auth_token = USER_TOKEN
            return ctx

        self.useFixture(fixtures.MonkeyPatch(
            'nova.api.auth.NovaKeystoneContext._create_context', with_token))

    def _shielded_image(self, **properties: str) -> str:
        data = image_files.vhdx(harness.IMAGE_VIRTUAL_SIZE)
        pdk = shielding_data_file(b'guardians', [dict(TEMPLATE_DISK,
                                                      version_rule='GreaterThanOrEquals')])
        reference = self.barbican.add_container({'1': pdk[:16], '2': pdk[16:]})
        self.glance.create(None, {
            'id': uuids.shielded_image, 'name': 'shielded', 'status': 'active',
            'visibility': 'public', 'disk_format': 'vhdx', 'container_format': 'bare',
            'size': len(data), 'min_ram': 0, 'min_disk': 0,
            'properties': {'hw_machine_type': 'hyperv-gen2', 'os_secure_boot': 'required',
                           'os_shielded_vm': 'required', 'img_pdk_reference': reference,
                           **properties},
        }, data=io.BytesIO(data))
        return uuids.shielded_image

    def test_the_trait_takes_a_shielded_vm_to_the_guarded_host_where_it_is_provisioned(self):
        image = self._shielded_image(**{'trait:CUSTOM_HYPERV_SHIELDED_VM': 'required'})
        server = self.boot(image_uuid=image)
        self.assertEqual('host2', server['OS-EXT-SRV-ATTR:host'])
        vm = self.host_vm(server, 'host2')
        self.assertEqual((True, True, True),
                         (vm.extra['shielded'], vm.extra['tpm'], vm.extra['provisioned']))
        self.assertEqual('Running', vm.state)
        self.assertEqual({USER_TOKEN}, set(self.barbican.tokens))
        self.assertEqual([], [e.path for e in self.sim_host('host2').list_dir(
            f'{harness.INSTANCES_PATH}\\{self.instance(server).name}')
            if e.path.lower().endswith(('.pdk', '.fsk', '.vsc'))])
        self.assertNoTraceback()

    def test_an_unguarded_host_refuses_it_with_the_reason(self):
        self.flags(max_attempts=1, group='scheduler')
        server = self.boot(image_uuid=self._shielded_image(), host='host1',
                           expected_state='ERROR')
        self.assertIsNone(self.host_vm(server, 'host1'))
        self.assertIn('this host cannot run one: it is not guarded by a Host Guardian Service',
                      server['fault']['message'])
        self.assertEqual([], self.barbican.requests)      # refused before reading the data
