"""Server actions through nova's API agree with the VM on the simulated Hyper-V host.

For stop, start, soft and hard reboot, pause and unpause, suspend and
resume, rescue and unrescue and delete, each action goes API -> conductor
-> nova-compute -> psdriver -> one script on the host, and afterwards the
server's status and power state as the API reports them match the VM's
state on the host (and, for reboots, the guest really booted again).
After delete the VM and its instance folder are gone, the cached image
stays.  A VM turned off on the host behind nova's back is reported by the
driver's lifecycle events, and nova records the server as stopped.
"""

from __future__ import annotations

import ntpath

import pytest
from nova.compute import power_state

from tests.functional import harness

pytestmark = pytest.mark.functional

#: API status -> (power state, Hyper-V VM state) they must agree with.
AGREE = {
    'ACTIVE': (power_state.RUNNING, 'Running'),
    'SHUTOFF': (power_state.SHUTDOWN, 'Off'),
    'PAUSED': (power_state.PAUSED, 'Paused'),
    'SUSPENDED': (power_state.SUSPENDED, 'Saved'),
    'RESCUE': (power_state.RUNNING, 'Running'),
}


class ServerActionsTest(harness.PsDriverTestBase):

    def setUp(self) -> None:
        super().setUp()
        self.server = self.boot(self._flavor(vcpu=1, memory_mb=512, disk=2), config_drive=True)

    def assertAgree(self, server, status):
        """The API's view of ``server`` and the host's VM match ``status``."""
        server = self._show_server(server)
        want_power, want_vm = AGREE[status]
        self.assertEqual(status, server['status'])
        self.assertIsNone(server['OS-EXT-STS:task_state'])
        self.assertEqual(want_power, server['OS-EXT-STS:power_state'])
        vm = self.host_vm(server)
        self.assertEqual(want_vm, vm.state)
        return vm

    def boots(self, vm):
        """Console lines that start a boot: what a reboot must add."""
        return [line for line in vm.console_log
                if ': booting (' in line or ': rebooting (' in line]

    def test_stop_start_and_reboots(self):
        vm = self.assertAgree(self.server, 'ACTIVE')
        booted = len(self.boots(vm))

        self._stop_server(self.server)
        vm = self.assertAgree(self.server, 'SHUTOFF')
        self.assertIsNone(vm.started_at)

        self._start_server(self.server)
        vm = self.assertAgree(self.server, 'ACTIVE')
        self.assertEqual(booted + 1, len(self.boots(vm)))

        # Soft: the guest is asked to shut down, then the VM starts again.
        self._reboot_server(self.server, hard=False)
        vm = self.assertAgree(self.server, 'ACTIVE')
        self.assertEqual(booted + 2, len(self.boots(vm)))
        self.assertIn(': booting (', self.boots(vm)[-1])

        # Hard: a reset, no guest shutdown.
        self._reboot_server(self.server, hard=True)
        vm = self.assertAgree(self.server, 'ACTIVE')
        self.assertEqual(booted + 3, len(self.boots(vm)))
        self.assertIn(': rebooting (', self.boots(vm)[-1])

        # The serial console log reaches nova's console-output API.
        output = self.api.post_server_action(
            self.server['id'], {'os-getConsoleOutput': {}})['output']
        self.assertIn('rebooting', output)
        self.assertNoTraceback()

    def test_pause_unpause_suspend_resume(self):
        self.api.post_server_action(self.server['id'], {'pause': {}})
        self._wait_for_state_change(self.server, 'PAUSED')
        self.assertAgree(self.server, 'PAUSED')

        self.api.post_server_action(self.server['id'], {'unpause': {}})
        self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertAgree(self.server, 'ACTIVE')

        self._suspend_server(self.server)
        vm = self.assertAgree(self.server, 'SUSPENDED')
        saved = ntpath.join(vm.path, 'Virtual Machines', f'{vm.id}.vmrs')
        self.assertTrue(self.sim_host().exists(saved), 'no saved memory image')

        self._resume_server(self.server)
        vm = self.assertAgree(self.server, 'ACTIVE')
        self.assertFalse(self.sim_host().exists(saved))
        self.assertIn(': restored from saved state (', vm.console_log[-1])
        self.assertNoTraceback()

    def test_rescue_unrescue(self):
        name = self.instance(self.server).name
        instance_dir = ntpath.join(harness.INSTANCES_PATH, name)
        root = ntpath.join(instance_dir, 'root.vhdx')
        rescue_disk = ntpath.join(instance_dir, 'root-rescue.vhdx')
        config_drive = ntpath.join(instance_dir, 'configdrive.vhd')
        rescue_drive = ntpath.join(instance_dir, 'configdrive-rescue.vhd')
        host = self.sim_host()

        def disks(vm):
            return {(d.controller_type, d.controller_number, d.location): d.path.lower()
                    for d in vm.drives if d.kind == 'HardDisk'}

        self._rescue_server(self.server)
        vm = self.assertAgree(self.server, 'RESCUE')
        attached = disks(vm)
        # Generation 1 boots from IDE 0:0: the rescue disk is there, the root
        # disk is still attached (on SCSI) for the rescued guest to repair.
        self.assertEqual(rescue_disk.lower(), attached[('IDE', 0, 0)])
        self.assertEqual('SCSI', next(slot for slot, path in attached.items()
                                      if path == root.lower())[0])
        base = ntpath.join(harness.INSTANCES_PATH, '_base', f'{self.vhdx_image_id}.vhdx')
        self.assertEqual(base.lower(), host.get_vhd(rescue_disk).vhd.parent_path.lower())
        # The rescue config drive stands in for the instance's own, which is kept.
        self.assertIn(rescue_drive.lower(), attached.values())
        self.assertNotIn(config_drive.lower(), attached.values())
        self.assertTrue(host.exists(config_drive))

        self._unrescue_server(self.server)
        vm = self.assertAgree(self.server, 'ACTIVE')
        self.assertEqual({('IDE', 0, 0): root.lower(), ('IDE', 1, 0): config_drive.lower()},
                         disks(vm))
        self.assertFalse(host.exists(rescue_disk))
        self.assertFalse(host.exists(rescue_drive))
        self.assertNoTraceback()

    def test_delete_removes_vm_and_folder(self):
        name = self.instance(self.server).name
        instance_dir = ntpath.join(harness.INSTANCES_PATH, name)
        host = self.sim_host()
        self.assertTrue(host.exists(instance_dir))

        self._delete_server(self.server)
        self.assertIsNone(host.find_vm(name))
        self.assertFalse(host.exists(instance_dir))
        self.assertEqual([], self.driver().list_instance_uuids())
        # The image stays cached for the next boot.
        base = ntpath.join(harness.INSTANCES_PATH, '_base', f'{self.vhdx_image_id}.vhdx')
        self.assertTrue(host.exists(base))
        host.check_consistency()
        self.assertNoTraceback()

    def test_vm_stopped_on_the_host_is_noticed(self):
        """psdriver's event poller tells nova; nova stops the server in its records."""
        # Events are state changes between two polls: wait until the poller
        # has seen the new VM running.
        poller = self.driver()._events
        self._wait_for_assert(
            lambda: self.assertEqual('Running', (poller._states or {}).get(self.server['id'])))
        self.sim_host().stop_vm(self.instance(self.server).name, turn_off=True)
        self._wait_for_state_change(self.server, 'SHUTOFF')
        self.assertAgree(self.server, 'SHUTOFF')
        self.assertIn('Instance shutdown by itself', self.stdlog.logger.output)
        self.assertNoTraceback()
