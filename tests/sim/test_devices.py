"""Controller slots, drives, network adapters, serial ports and checkpoints."""

from __future__ import annotations

import pytest

from psdriver.sim import SimError

from tests.sim.conftest import GIB, INSTANCES, disk_vm


def _disks(host, count, prefix='d'):
    out = []
    for i in range(count):
        out.append(host.new_vhd(f'{INSTANCES}\\{prefix}{i}.vhdx', GIB).path)
    return out


def test_gen1_ide_has_two_controllers_of_two_slots(host):
    host.create_vm('g1', generation=1)
    disks = _disks(host, 5)
    slots = [host.attach_disk('g1', p) for p in disks[:4]]
    assert [(d.controller_type, d.controller_number, d.location) for d in slots] == \
        [('IDE', 0, 0), ('IDE', 0, 1), ('IDE', 1, 0), ('IDE', 1, 1)]
    with pytest.raises(SimError) as exc:
        host.attach_disk('g1', disks[4])
    assert exc.value.category == 'LimitsExceeded'
    # The fifth disk fits on the SCSI controller a generation 1 VM also has.
    assert host.attach_disk('g1', disks[4], controller_type='SCSI').controller_type == 'SCSI'


def test_gen2_has_no_ide(host):
    host.create_vm('g2')
    disk = _disks(host, 1)[0]
    with pytest.raises(SimError, match='no IDE controller'):
        host.attach_disk('g2', disk, controller_type='IDE')
    assert host.attach_disk('g2', disk).controller_type == 'SCSI'


def test_scsi_slots_and_controllers(host):
    host.create_vm('vm')
    disks = _disks(host, 65)
    for path in disks[:64]:
        host.attach_disk('vm', path)
    with pytest.raises(SimError) as exc:
        host.attach_disk('vm', disks[64])
    assert exc.value.category == 'LimitsExceeded'
    assert host.add_scsi_controller('vm') == 1
    assert host.attach_disk('vm', disks[64]).controller_number == 1
    host.add_scsi_controller('vm')
    host.add_scsi_controller('vm')
    with pytest.raises(SimError, match='maximum of 4 SCSI'):
        host.add_scsi_controller('vm')


def test_explicit_slots(host):
    host.create_vm('vm')
    a, b = _disks(host, 2)
    host.attach_disk('vm', a, controller_number=0, location=5)
    with pytest.raises(SimError) as exc:
        host.attach_disk('vm', b, controller_number=0, location=5)
    assert exc.value.error_id == 'LocationInUse'
    with pytest.raises(SimError) as exc:
        host.attach_disk('vm', b, controller_number=1)
    assert exc.value.category == 'ObjectNotFound'
    with pytest.raises(SimError):
        host.attach_disk('vm', b, controller_number=0, location=64)


def test_hot_plug_rules(host):
    disk_vm(host, 'g1', generation=1)
    disk_vm(host, 'g2')
    extra1, extra2, extra3 = _disks(host, 3, 'x')
    host.start_vm('g1')
    host.start_vm('g2')
    with pytest.raises(SimError, match='current state'):
        host.attach_disk('g1', extra1)                    # IDE: no hot-add
    host.attach_disk('g1', extra1, controller_type='SCSI')
    drive = host.attach_disk('g2', extra2)                # SCSI hot-add
    host.detach_drive('g2', 'SCSI', drive.controller_number, drive.location)
    with pytest.raises(SimError, match='current state'):
        host.add_scsi_controller('g2')
    with pytest.raises(SimError, match='current state'):
        host.detach_drive('g1', 'IDE', 0, 0)
    host.save_vm('g2')
    with pytest.raises(SimError, match='current state'):
        host.attach_disk('g2', extra3)                    # no changes while Saved


def test_the_same_disk_twice(host):
    root = disk_vm(host, 'a')
    with pytest.raises(SimError) as exc:
        host.attach_disk('a', root)
    assert exc.value.category == 'ResourceBusy'


def test_a_disk_cannot_run_in_two_vms(host):
    root = disk_vm(host, 'a')
    host.create_vm('b')
    host.attach_disk('b', root)                           # allowed while b is off
    host.start_vm('a')
    with pytest.raises(SimError) as exc:
        host.start_vm('b')
    assert exc.value.category == 'ResourceBusy'
    host.create_vm('c')
    host.start_vm('c')
    with pytest.raises(SimError, match='being used by another process'):
        host.attach_disk('c', root)


def test_children_of_one_parent_run_side_by_side_but_the_parent_is_read_only(host):
    host.make_dir(f'{INSTANCES}\\_base')
    base = host.new_vhd(f'{INSTANCES}\\_base\\img.vhdx', GIB).path
    for name in ('a', 'b'):
        child = host.new_vhd(f'{INSTANCES}\\{name}.vhdx', parent_path=base).path
        host.create_vm(name)
        host.attach_disk(name, child)
        host.start_vm(name)
    host.create_vm('writer')
    host.attach_disk('writer', base)
    with pytest.raises(SimError, match='being used'):
        host.start_vm('writer')


def test_pass_through_disks(host):
    host.add_iscsi_target('10.0.0.5', 'iqn.2010-01.com.array:t1', [5])
    host.add_target_portal('10.0.0.5')
    host.connect_iscsi_target('iqn.2010-01.com.array:t1')
    disk = host.list_disks()[0]
    assert disk.is_offline                      # the default SAN policy, OfflineShared
    host.set_disk_offline(disk.number, offline=False)
    host.create_vm('vm')
    with pytest.raises(SimError, match='must be offline'):
        host.attach_disk('vm', disk_number=disk.number)
    host.set_disk_offline(disk.number)
    host.attach_disk('vm', disk_number=disk.number)
    host.create_vm('other')
    with pytest.raises(SimError, match='already attached'):
        host.attach_disk('other', disk_number=disk.number)
    with pytest.raises(SimError):
        host.attach_disk('other', disk_number=99)
    with pytest.raises(SimError):
        host.attach_disk('other')
    host.start_vm('vm')


def test_dvd_drives(host):
    iso = f'{INSTANCES}\\configdrive.iso'
    host.add_file(iso, 1024 * 1024)
    host.create_vm('g1', generation=1)
    host.create_vm('g2')
    assert host.add_dvd_drive('g1', iso).controller_type == 'IDE'
    drive = host.add_dvd_drive('g2')
    assert (drive.controller_type, drive.path) == ('SCSI', None)
    with pytest.raises(SimError):
        host.add_dvd_drive('g2', f'{INSTANCES}\\missing.iso')
    host.start_vm('g2')
    host.set_dvd_media('g2', drive.controller_number, drive.location, iso)   # while running
    assert host.find_drive('g2', iso) is not None
    with pytest.raises(SimError, match='current state'):
        host.add_dvd_drive('g2')
    with pytest.raises(SimError, match='being used'):
        host.remove_item(iso)
    host.start_vm('g1')                   # an ISO may be read by two VMs


def test_missing_iso_stops_a_start(host):
    iso = f'{INSTANCES}\\cd.iso'
    host.add_file(iso, 10)
    host.create_vm('vm')
    host.add_dvd_drive('vm', iso)
    host.remove_item(iso)
    with pytest.raises(SimError, match='cannot find the file'):
        host.start_vm('vm')


def test_network_adapters(host):
    host.create_vm('g2')
    nic = host.add_nic('g2', 'port-1', switch_name='EXTERNAL', mac='fa:16:3e:00:00:01')
    assert (nic.switch_name, nic.mac_address, nic.dynamic_mac) == \
        ('external', 'FA163E000001', False)
    assert nic.id.startswith('Microsoft:' + host.get_vm('g2').id.upper() + '\\')
    host.set_nic_vlan('g2', 'port-1', 100)
    assert host.get_vm('g2').nics[0].vlan_id == 100
    for bad in (0, 4095):
        with pytest.raises(SimError):
            host.set_nic_vlan('g2', 'port-1', bad)
    with pytest.raises(SimError) as exc:
        host.connect_nic('g2', 'port-1', 'nope')
    assert exc.value.category == 'ObjectNotFound'
    host.connect_nic('g2', 'port-1', None)
    assert host.get_vm('g2').nics[0].switch_name is None
    with pytest.raises(SimError):
        host.add_nic('g2', mac='01:00:5e:00:00:01')    # multicast
    with pytest.raises(SimError):
        host.add_nic('g2', mac='zz')
    with pytest.raises(SimError, match='no network adapter'):
        host.set_nic_vlan('g2', 'port-9', 5)


def test_nic_limits_and_hot_add(host):
    host.create_vm('g1', generation=1)
    host.create_vm('g2')
    for _ in range(8):
        host.add_nic('g2')
    with pytest.raises(SimError) as exc:
        host.add_nic('g2')
    assert exc.value.category == 'LimitsExceeded'
    with pytest.raises(SimError, match='use the adapter id'):
        host.remove_nic('g2', 'Network Adapter')     # eight share the default name
    host.remove_nic('g2', host.get_vm('g2').nics[0].id)
    host.start_vm('g2')
    host.start_vm('g1')
    assert host.add_nic('g2').mac_address.startswith('00155D')   # hot-add, gen 2
    with pytest.raises(SimError, match='current state'):
        host.add_nic('g1')
    with pytest.raises(SimError, match='current state'):
        host.set_nic_mac('g2', host.get_vm('g2').nics[0].id, '02:00:00:00:00:01')


def test_dynamic_macs_are_assigned_at_start_and_unique(host):
    host.create_vm('a')
    host.create_vm('b')
    host.add_nic('a')
    host.add_nic('b')
    assert host.get_vm('a').nics[0].mac_address == '000000000000'
    host.start_vm('a')
    host.start_vm('b')
    macs = {host.get_vm(n).nics[0].mac_address for n in 'ab'}
    assert len(macs) == 2 and all(m.startswith('00155D') for m in macs)


def test_removing_a_switch_disconnects_adapters(host):
    host.add_switch('private-1', 'Private')
    with pytest.raises(SimError):
        host.add_switch('PRIVATE-1', 'Internal')
    with pytest.raises(SimError):
        host.add_switch('x', 'Bridged')
    host.create_vm('vm')
    host.add_nic('vm', switch_name='private-1')
    host.remove_switch('private-1')
    assert host.get_vm('vm').nics[0].switch_name is None
    with pytest.raises(SimError):
        host.get_switch('private-1')


def test_serial_ports(host):
    host.create_vm('vm')
    host.set_com_port('vm', 'COM2', '\\\\.\\pipe\\vm-serial')
    assert host.get_vm('vm').com_ports == {'COM1': '', 'COM2': '\\\\.\\pipe\\vm-serial'}
    with pytest.raises(SimError):
        host.set_com_port('vm', 'COM3', '\\\\.\\pipe\\x')
    with pytest.raises(SimError):
        host.set_com_port('vm', 'COM1', 'C:\\file.txt')


def test_checkpoint_and_remove_merges_back(host):
    root = disk_vm(host, 'vm')
    host.start_vm('vm')
    snap = host.checkpoint_vm('vm', 'before-upgrade')
    current = host.get_vm('vm').drives[0].path
    assert current.endswith(f'_{snap.id.upper()}.avhdx')
    assert host.get_vhd(current).vhd.parent_path == root
    with pytest.raises(SimError, match='being used'):
        host.remove_item(root)                        # now a read-only parent
    host.remove_snapshot('vm', 'before-upgrade')
    assert host.get_vm('vm').drives[0].path == root
    assert not host.exists(current)
    assert host.list_snapshots('vm') == []
    host.check_consistency()


def test_restore_checkpoint(host):
    root = disk_vm(host, 'vm')
    host.set_processor_count('vm', 2)
    snap = host.checkpoint_vm('vm')
    first_child = host.get_vm('vm').drives[0].path
    host.set_processor_count('vm', 4)
    host.start_vm('vm')
    with pytest.raises(SimError, match='current state'):
        host.restore_snapshot('vm', snap.id)
    host.stop_vm('vm')
    host.restore_snapshot('vm', snap.id)
    vm = host.get_vm('vm')
    assert vm.processor_count == 2 and vm.state == 'Off'
    assert not host.exists(first_child)               # the discarded state is gone
    assert host.get_vhd(vm.drives[0].path).vhd.parent_path == root
    with pytest.raises(SimError) as exc:
        host.remove_snapshot('vm', 'no-such-checkpoint')
    assert exc.value.category == 'ObjectNotFound'
    host.check_consistency()


def test_nested_checkpoints_merge_in_any_order(host):
    root = disk_vm(host, 'vm')
    s1 = host.checkpoint_vm('vm', 's1')
    s2 = host.checkpoint_vm('vm', 's2')
    assert s2.parent_id == s1.id
    assert len(host.vhd_chain(host.get_vm('vm').drives[0].path)) == 3
    host.remove_snapshot('vm', 's1')
    assert host.list_snapshots('vm')[0].parent_id is None
    chain = host.vhd_chain(host.get_vm('vm').drives[0].path)
    assert [e.path for e in chain][-1] == root and len(chain) == 2
    host.remove_snapshot('vm', 's2')
    assert host.get_vm('vm').drives[0].path == root
    host.check_consistency()


def test_no_checkpoint_with_pass_through_disks(host):
    host.add_iscsi_target('10.0.0.5', 'iqn.t', [1])
    host.add_target_portal('10.0.0.5')
    host.connect_iscsi_target('iqn.t')
    host.set_disk_offline(1)
    host.create_vm('vm')
    host.attach_disk('vm', disk_number=1)
    with pytest.raises(SimError, match='pass-through'):
        host.checkpoint_vm('vm')
