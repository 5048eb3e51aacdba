"""The cold migration scripts' simulations refuse what the scripts refuse."""

from __future__ import annotations

import pytest

from psdriver.bridge.client import Bridge
from psdriver.bridge import errors
from psdriver.sim import SimHost, SimRunner
from psdriver.sim.scenario import add_instance

DIR = 'C:\\OpenStack\\Instances\\vm1'
REVERT = DIR + '_revert'


@pytest.fixture
def host():
    host = SimHost()
    add_instance(host, 'vm1', instance_dir=DIR)
    return host


@pytest.fixture
def bridge(host):
    return Bridge(SimRunner(host))


def test_export_then_restore_round_trip(host, bridge):
    out = bridge.call('Export-InstanceDisk', {'Name': 'vm1', 'InstanceDir': DIR,
                                              'RevertDir': REVERT})
    assert out['vm_existed'] and out['folder'] == REVERT and host.find_vm('vm1') is None
    again = bridge.call('Export-InstanceDisk', {'Name': 'vm1', 'InstanceDir': DIR,
                                                'RevertDir': REVERT})
    assert not again['vm_existed'] and [d['name'] for d in again['disks']] == ['root.vhdx']
    back = bridge.call('Restore-InstanceFolder', {'InstanceDir': DIR, 'RevertDir': REVERT})
    assert back['restored'] and 'root.vhdx' in back['files']
    host.check_consistency()


def test_restore_and_remove_leave_a_folder_a_vm_uses(host, bridge):
    host.make_dir(REVERT)
    with pytest.raises(errors.ScriptInvalidOperation) as err:
        bridge.call('Restore-InstanceFolder', {'InstanceDir': DIR, 'RevertDir': REVERT})
    assert err.value.error_id == 'PsDriver.InstanceDirInUse'
    with pytest.raises(errors.ScriptInvalidOperation):
        bridge.call('Remove-InstanceFolder', {'Path': DIR})
    assert host.exists(DIR + '\\root.vhdx')


def test_nothing_to_revert_to(bridge):
    with pytest.raises(errors.ScriptObjectNotFound) as err:
        bridge.call('Restore-InstanceFolder', {'InstanceDir': 'C:\\X\\vm9',
                                               'RevertDir': 'C:\\X\\vm9_revert'})
    assert err.value.error_id == 'PsDriver.RevertDirNotFound'


@pytest.mark.parametrize('revert', ['C:\\Elsewhere\\vm1_revert', DIR, ''])
def test_revert_folder_must_sit_next_to_the_instance_folder(bridge, revert):
    with pytest.raises(errors.ScriptError) as err:
        bridge.call('Export-InstanceDisk', {'Name': 'vm1', 'InstanceDir': DIR,
                                            'RevertDir': revert})
    assert err.value.error_id == 'PsDriver.UnsafeInstanceDir'


def test_remove_refuses_a_drive_root(bridge):
    with pytest.raises(errors.ScriptError) as err:
        bridge.call('Remove-InstanceFolder', {'Path': 'C:\\'})
    assert err.value.error_id == 'PsDriver.UnsafeInstanceDir'


def test_a_folder_with_running_disks_cannot_move(host):
    from psdriver.sim import SimError
    with pytest.raises(SimError) as err:
        host.move_dir(DIR, REVERT)
    assert err.value.error_id == 'FileInUse' or 'in use' in err.value.message
