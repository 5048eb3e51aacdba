"""Booting from a VHDX Glance image, end to end through nova's own services.

Proves that a server request travels API -> conductor -> scheduler ->
placement -> nova-compute -> psdriver and ends as a running Hyper-V VM on
the simulated host with the flavor's vCPUs and memory, a copy-on-write root
disk (a VHDX differencing disk over the image cached in
``<instances_path>\\_base``, downloaded from Glance and inspected as real
VHDX bytes), the Neutron port's adapter, and, when asked for, a config drive
attached to the VM that carries the instance's metadata.  The image is
downloaded once for every server booted from it; a download that is not what
Glance says it is fails the build and leaves nothing on the host.
"""

from __future__ import annotations

import base64
import io
import json
import ntpath

import pycdlib
import pytest
from oslo_utils.fixture import uuidsentinel as uuids

from tests.functional import harness

pytestmark = pytest.mark.functional

VHD_FOOTER = 512


def _read_iso_file(iso_bytes: bytes, path: str) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(iso_bytes))
    try:
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, joliet_path=path)
        return out.getvalue()
    finally:
        iso.close()


class BootFromVhdxTest(harness.PsDriverTestBase):

    def _assert_vm_matches_flavor(self, server, vcpus, memory_mb):
        vm = self.host_vm(server)
        self.assertIsNotNone(vm, 'no VM on the simulated host')
        self.assertEqual('Running', vm.state)
        self.assertEqual(vcpus, vm.processor_count)
        self.assertEqual(memory_mb, vm.memory_startup_mb)
        self.assertEqual(server['id'], vm.notes.splitlines()[0])
        return vm

    def _assert_cow_root_disk(self, server, vm):
        host = self.sim_host()
        instance_dir = ntpath.join(harness.INSTANCES_PATH, self.instance(server).name)
        base = ntpath.join(harness.INSTANCES_PATH, '_base', f'{self.vhdx_image_id}.vhdx')
        disks = [d.path for d in vm.drives if d.kind == 'HardDisk']
        root = ntpath.join(instance_dir, 'root.vhdx')
        self.assertEqual(root.lower(), disks[0].lower())
        root_vhd = host.get_vhd(root).vhd
        self.assertEqual('VHDX', root_vhd.format)
        self.assertEqual('Differencing', root_vhd.vhd_type)
        self.assertEqual(base.lower(), root_vhd.parent_path.lower())
        cached = host.get_vhd(base).vhd
        self.assertEqual(('VHDX', harness.IMAGE_VIRTUAL_SIZE), (cached.format, cached.size))
        # The flavor's 4 GB root, not the 1 GiB image, is what the guest sees.
        self.assertEqual(4 * harness.GIB, root_vhd.size)
        return instance_dir

    def test_boot_without_config_drive(self):
        flavor = self._flavor(vcpu=2, memory_mb=1024, disk=4)
        port = self.neutron.port_1
        server = self.boot(flavor, networks=[{'port': port['id']}])

        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual(1, server['OS-EXT-STS:power_state'])
        self.assertEqual('host1', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual('host1', server['OS-EXT-SRV-ATTR:hypervisor_hostname'])
        vm = self._assert_vm_matches_flavor(server, 2, 1024)
        instance_dir = self._assert_cow_root_disk(server, vm)
        self.assertFalse(self.sim_host().exists(ntpath.join(instance_dir, 'configdrive.vhd')))
        self.assertFalse(any('configdrive' in (d.path or '').lower() for d in vm.drives))
        # One adapter for the port, named after it, with the port's MAC.
        self.assertEqual([port['id']], [nic.name for nic in vm.nics])
        self.assertEqual(port['mac_address'].replace(':', '').upper(),
                         vm.nics[0].mac_address.upper())
        self.assertFalse(vm.nics[0].dynamic_mac)
        self.assertNoTraceback()

    def test_boot_with_config_drive(self):
        flavor = self._flavor(vcpu=1, memory_mb=512, disk=4)
        with self.scripts_run() as calls:
            server = self.boot(flavor, config_drive=True)

        self.assertEqual('True', str(server['config_drive']))
        vm = self._assert_vm_matches_flavor(server, 1, 512)
        instance_dir = self._assert_cow_root_disk(server, vm)
        drive_path = ntpath.join(instance_dir, 'configdrive.vhd')
        attached = [d for d in vm.drives if (d.path or '').lower() == drive_path.lower()]
        self.assertEqual(1, len(attached), f'config drive not attached: {vm.drives}')
        # [hyperv] config_drive_cdrom = False: a fixed VHD holding the ISO, as a hard disk.
        self.assertEqual('HardDisk', attached[0].kind)
        on_host = self.sim_host().get_vhd(drive_path)
        self.assertEqual(('VHD', 'Fixed'), (on_host.vhd.format, on_host.vhd.vhd_type))
        # The host keeps no config drive bytes (they can hold secrets); read
        # what spawn sent in its one New-Instance call instead.
        specs = [params['Spec'] for name, params in calls if name == 'New-Instance']
        self.assertEqual(1, len(specs))
        image = base64.b64decode(specs[0]['config_drive']['content_base64'])
        self.assertEqual(on_host.size, len(image))
        self.assertEqual(on_host.vhd.size, len(image) - VHD_FOOTER)
        meta = json.loads(_read_iso_file(image[:-VHD_FOOTER],
                                         '/openstack/latest/meta_data.json'))
        self.assertEqual(server['id'], meta['uuid'])
        self.assertEqual(server['name'], meta['name'])
        self.assertNoTraceback()

    def test_image_downloaded_once_for_several_servers(self):
        flavor = self._flavor(disk=2)
        first = self.boot(flavor)
        second = self.boot(flavor)
        host = self.sim_host()
        base_dir = ntpath.join(harness.INSTANCES_PATH, '_base')
        self.assertEqual([f'{self.vhdx_image_id}.vhdx'.lower()],
                         [entry.path.rsplit('\\', 1)[1].lower()
                          for entry in host.list_dir(base_dir)])
        parents = {host.get_vhd(ntpath.join(harness.INSTANCES_PATH,
                                            self.instance(s).name, 'root.vhdx')).vhd.parent_path
                   for s in (first, second)}
        self.assertEqual({ntpath.join(base_dir, f'{self.vhdx_image_id}.vhdx')}, parents)
        self.assertNoTraceback()

    def test_image_that_is_not_vhdx_is_refused(self):
        """Glance says vhdx, the bytes say otherwise: the build fails, nothing is left."""
        qcow2 = b'QFI\xfb' + bytes(4096)
        self.glance.create(None, {
            'id': uuids.bad_image, 'name': 'not-vhdx', 'status': 'active',
            'visibility': 'public', 'disk_format': 'vhdx', 'container_format': 'bare',
            'size': len(qcow2), 'min_ram': 0, 'min_disk': 0, 'properties': {}},
            data=io.BytesIO(qcow2))
        server = self.boot(image_uuid=uuids.bad_image, expected_state='ERROR')
        self.assertIn('it is a qcow2 image', server['fault']['message'])
        # Nova logs the spawn failure with its traceback; nothing else fails.
        output = self.stdlog.logger.output
        self.assertEqual(1, output.count('Traceback'))
        self.assertIn('nova.exception.ImageUnacceptable: ', output)
        self.assertIsNone(self.host_vm(server))
        base_dir = ntpath.join(harness.INSTANCES_PATH, '_base')
        self.assertEqual([], self.sim_host().list_dir(base_dir))
