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
