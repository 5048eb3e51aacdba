"""iSCSI sessions and disks, MPIO, SMB mappings, cluster groups."""

from __future__ import annotations

import pytest

from psdriver.sim import SimError, SimHost

IQN = 'iqn.2010-10.org.openstack:volume-1'


@pytest.fixture
def array(host):
    host.add_iscsi_target(['10.0.0.5:3260', '10.0.0.6'], IQN, [1, 2])   # two paths
    host.add_iscsi_target('10.0.0.5', 'iqn.chap', [1], chap_username='u', chap_secret='s')
    return host


def test_portal_must_answer(host):
    with pytest.raises(SimError) as exc:
        host.add_target_portal('10.9.9.9')
    assert exc.value.category == 'ConnectionError'


def test_login_shows_luns_as_disks(array):
    array.add_target_portal('10.0.0.5')
    assert {t.iqn for t in array.discovered_targets()} == {IQN, 'iqn.chap'}
    session = array.connect_iscsi_target(IQN)
    disks = array.list_disks()
    assert [(d.number, d.lun, d.target_iqn) for d in disks] == [(1, 0, IQN), (2, 1, IQN)]
    assert all(d.session_ids == [session.id] and d.is_offline for d in disks)   # OfflineShared
    with pytest.raises(SimError, match='already been logged in'):
        array.connect_iscsi_target(IQN)
    array.disconnect_iscsi_target(IQN)
    assert array.list_disks() == [] and array.iscsi_sessions() == []
    with pytest.raises(SimError) as exc:
        array.disconnect_iscsi_target(IQN)
    assert exc.value.category == 'ObjectNotFound'


def test_unknown_target_and_chap(array):
    array.add_target_portal('10.0.0.5')
    with pytest.raises(SimError, match='not found or is marked as hidden'):
        array.connect_iscsi_target('iqn.nope')
    with pytest.raises(SimError) as exc:
        array.connect_iscsi_target('iqn.chap', chap_username='u', chap_secret='wrong')
    assert exc.value.category == 'AuthenticationError'
    session = array.connect_iscsi_target('iqn.chap', chap_username='u', chap_secret='s')
    assert session.auth_type == 'ONEWAYCHAP'


def test_login_through_a_registered_portal_only(array):
    array.add_target_portal('10.0.0.5')
    with pytest.raises(SimError):
        array.connect_iscsi_target(IQN, '10.0.0.6')
    assert array.connect_iscsi_target(IQN).portal == '10.0.0.5:3260'


def test_multipath_without_mpio_duplicates_disks(array):
    for portal in ('10.0.0.5', '10.0.0.6'):
        array.add_target_portal(portal)
    array.connect_iscsi_target(IQN, '10.0.0.5')
    array.connect_iscsi_target(IQN, '10.0.0.6', multipath=True)
    assert len(array.list_disks()) == 4


def test_multipath_with_mpio_shares_disks(array):
    for portal in ('10.0.0.5', '10.0.0.6'):
        array.add_target_portal(portal)
    array.mpio_claim('iSCSI')
    assert array.mpio_claimed()
    first = array.connect_iscsi_target(IQN, '10.0.0.5')
    second = array.connect_iscsi_target(IQN, '10.0.0.6', multipath=True)
    disks = array.list_disks()
    assert len(disks) == 2
    assert all(d.mpio and d.session_ids == [first.id, second.id] for d in disks)
    array.disconnect_iscsi_target(IQN, second.id)        # one path goes, the disks stay
    assert [d.session_ids for d in array.list_disks()] == [[first.id], [first.id]]


def test_mpio_needs_the_feature():
    host = SimHost(modules={'Hyper-V': True, 'MPIO': False})
    with pytest.raises(SimError) as exc:
        host.mpio_claim()
    assert exc.value.category == 'NotInstalled'


def test_logout_refused_while_a_vm_uses_the_disk(array):
    array.add_target_portal('10.0.0.5')
    array.connect_iscsi_target(IQN)
    array.set_disk_offline(1)
    array.create_vm('vm')
    array.attach_disk('vm', disk_number=1)
    with pytest.raises(SimError) as exc:
        array.disconnect_iscsi_target(IQN)
    assert exc.value.category == 'ResourceBusy'
    with pytest.raises(SimError):
        array.set_disk_offline(1, offline=False)
    drive = array.get_vm('vm').drives[0]
    array.detach_drive('vm', drive.controller_type, drive.controller_number, drive.location)
    array.disconnect_iscsi_target(IQN)


def test_get_disk_missing(host):
    with pytest.raises(SimError) as exc:
        host.get_disk(7)
    assert exc.value.category == 'ObjectNotFound'


def test_smb_mappings(host):
    with pytest.raises(SimError, match='network name cannot be found'):
        host.new_smb_mapping('\\\\fs01\\vols')
    host.add_volume('\\\\fs01\\vols', 100)
    mapping = host.new_smb_mapping('\\\\FS01\\vols', username='DOMAIN\\svc')
    assert mapping.remote_path == '\\\\FS01\\vols'
    with pytest.raises(SimError) as exc:
        host.new_smb_mapping('\\\\fs01\\VOLS')
    assert exc.value.category == 'ResourceExists'
    with pytest.raises(SimError):
        host.new_smb_mapping('C:\\not-a-share')
    assert len(host.smb_mappings('\\\\fs01\\*')) == 1
    host.remove_smb_mapping('\\\\fs01\\vols')
    assert host.smb_mappings() == []
    with pytest.raises(SimError) as exc:
        host.remove_smb_mapping('\\\\fs01\\vols')
    assert exc.value.category == 'ObjectNotFound'


def test_cluster_groups_fail_over(host):
    with pytest.raises(SimError, match='cluster service is not running'):
        host.add_vm_group('vm')
    host.create_cluster('hvcluster', ['SIMHV02', 'SIMHV03'])
    assert host.config.modules['FailoverClusters'] is True
    host.create_vm('vm')
    group = host.add_vm_group('vm')
    assert (group.owner_node, group.state) == ('SIMHV01', 'Offline')
    with pytest.raises(SimError):
        host.add_vm_group('vm')
    with pytest.raises(SimError, match='clustered role'):
        host.remove_vm('vm')
    host.set_node_state('SIMHV02', 'Paused')
    with pytest.raises(SimError, match='Up'):
        host.move_cluster_group('vm', 'SIMHV02')
    host.move_cluster_group('vm', 'SIMHV03')
    host.set_node_state('SIMHV03', 'Down')
    assert host.get_cluster_group('vm').owner_node == 'SIMHV01'
    host.set_node_state('SIMHV01', 'Down')
    assert host.get_cluster_group('vm').state == 'Failed'
    host.remove_cluster_group('vm')
    host.remove_vm('vm')
    with pytest.raises(SimError):
        host.get_cluster_group('vm')


# -- what real hosts do that volume attach must cope with -------------------------------------

def test_a_lun_may_need_rescans_before_its_disk_shows(host):
    host.add_iscsi_target('10.0.0.5', IQN, [1], rescans_needed=2)
    host.add_target_portal('10.0.0.5')
    host.connect_iscsi_target(IQN)
    assert host.list_disks() == []
    host.rescan_storage()
    assert host.list_disks() == []
    assert host.rescan_storage() == 1


def test_san_policy_decides_whether_new_disks_are_online():
    host = SimHost(san_policy='OnlineAll')
    host.add_iscsi_target('10.0.0.5', IQN, [1])
    host.add_target_portal('10.0.0.5')
    host.connect_iscsi_target(IQN)
    assert not host.list_disks()[0].is_offline


def test_fibre_channel_luns_show_on_a_rescan_once_per_port_without_mpio(host):
    host.add_fc_target(['500a098280feeba5', '500a098290feeba5'], [1])
    host.rescan_storage()
    assert host.list_disks() == []                      # no HBA in the host
    host.set_fc_ports([{'wwnn': '20000090fa000001', 'wwpn': '10000090fa000001'}])
    host.rescan_storage()
    disks = host.list_disks()
    assert len(disks) == 2 and {d.bus_type for d in disks} == {'Fibre Channel'}
    assert disks[0].serial == disks[1].serial               # the same LUN twice


def test_fibre_channel_with_mpio_is_one_disk_with_two_paths(host):
    host.set_fc_ports([{'wwnn': '20000090fa000001', 'wwpn': '10000090fa000001'}])
    host.mpio_claim('FC')
    host.add_fc_target(['500a098280feeba5', '500a098290feeba5'], [1])
    host.rescan_storage()
    [disk] = host.list_disks()
    assert disk.mpio and disk.target_wwns == ['500a098280feeba5', '500a098290feeba5']
    assert host.initiator_ports()[1]['port_address'] == '10000090fa000001'


def test_a_grown_lun_shows_its_size_after_a_rescan(array):
    array.add_target_portal('10.0.0.5')
    array.connect_iscsi_target(IQN)
    array.resize_lun(IQN, 0, 5)
    assert array.list_disks()[0].size == 1024 ** 3
    array.rescan_storage()
    assert array.list_disks()[0].size == 5 * 1024 ** 3


def test_a_reboot_renumbers_disks_and_pass_through_drives_follow(array):
    array.add_target_portal('10.0.0.5')
    array.connect_iscsi_target(IQN)
    array.create_vm('vm')
    array.attach_disk('vm', disk_number=2)
    serial = array.get_disk(2).serial
    array.host_power_action('Reboot')
    [drive] = array.get_vm('vm').drives
    assert drive.disk_number != 2
    assert array.get_disk(drive.disk_number).serial == serial


def test_a_share_wanting_credentials(host):
    share = '\\\\fs01\\vols'
    host.add_volume(share, 10)
    host.require_smb_credentials(share, 'cinder', 'right')
    host.new_vhd(f'{share}\\v.vhdx', 1024 ** 3)
    host.create_vm('vm')
    with pytest.raises(SimError) as exc:
        host.attach_disk('vm', f'{share}\\v.vhdx')          # Hyper-V cannot open it unmapped
    assert exc.value.category == 'PermissionDenied'
    with pytest.raises(SimError) as exc:
        host.new_smb_mapping(share, username='cinder', password='wrong')
    assert exc.value.category == 'AuthenticationError'
    host.new_smb_mapping(share, username='cinder', password='right')
    drive = host.attach_disk('vm', f'{share}\\v.vhdx', controller_type='SCSI')
    host.set_drive_max_iops('vm', 'SCSI', drive.controller_number, drive.location, 500)
    assert host.get_vm('vm').drives[0].max_iops == 500


def test_storage_qos_is_for_virtual_disks_only(array):
    array.add_target_portal('10.0.0.5')
    array.connect_iscsi_target(IQN)
    array.create_vm('vm')
    drive = array.attach_disk('vm', disk_number=1)
    with pytest.raises(SimError, match='virtual hard disks only'):
        array.set_drive_max_iops('vm', drive.controller_type, drive.controller_number,
                                 drive.location, 100)
