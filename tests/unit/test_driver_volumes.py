"""Cinder volumes on the simulated host: each connector, multipath, faults, boot from volume."""

from __future__ import annotations

import logging

import pytest
from nova import exception
from oslo_serialization import jsonutils

from psdriver.cluster.driver import HyperVClusterDriver
from psdriver.ops import volumeops

from psdriver.sim.image_files import vhdx
from tests.unit.driver_env import GIB, DriverEnv
from tests.unit.test_hostfiles import run_samba

IQN = 'iqn.2010-10.org.openstack:volume-1'
PORTALS = ['10.0.0.5:3260', '10.0.0.6:3260']
WWN = '500a098280feeba5'
SHARE = '\\\\fs01\\cinder'
FC_PORT = {'wwnn': '20000090fa000001', 'wwpn': '10000090fa000001'}
CHAP_SECRET = 'chap-secret-never-logged'


@pytest.fixture
def env(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.flags('hyperv', mounted_disk_query_retry_interval=0, volume_attach_retry_interval=0,
                  volume_attach_retry_count=0)
        env.start()
        yield env


def iscsi(volume_id: str = 'vol-1', lun: int = 0, *, portals: list[str] | None = None,
          iqn: str = IQN, chap: bool = False) -> dict:
    data = {'volume_id': volume_id, 'target_portal': (portals or PORTALS)[0],
            'target_iqn': iqn, 'target_lun': lun}
    if portals and len(portals) > 1:
        data.update(target_portals=portals, target_iqns=[iqn] * len(portals),
                    target_luns=[lun] * len(portals))
    if chap:
        data.update(auth_method='CHAP', auth_username='chapuser', auth_password=CHAP_SECRET)
    return {'driver_volume_type': 'iscsi', 'data': data, 'serial': volume_id}


def fc(volume_id: str = 'vol-fc', lun: int = 0) -> dict:
    return {'driver_volume_type': 'fibre_channel', 'serial': volume_id,
            'data': {'volume_id': volume_id, 'target_wwn': [WWN], 'target_lun': lun,
                     'initiator_target_map': {FC_PORT['wwpn']: [WWN]}}}


def smb(volume_id: str = 'vol-smb', password: str = 's3cret', **data) -> dict:
    values = {'volume_id': volume_id, 'export': '//fs01/cinder', 'name': f'volume-{volume_id}',
              'format': 'vhdx', 'options': f'-o username=cinder,password={password}'}
    values.update(data)
    return {'driver_volume_type': 'smbfs', 'serial': volume_id, 'data': values}


def running(env):
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)
    return instance


def attach(env, instance, connection_info):
    env.driver.attach_volume(None, connection_info, instance, '/dev/sdb')


def detach(env, instance, connection_info):
    env.driver.detach_volume(None, connection_info, instance, '/dev/sdb')


def passthrough(env, instance) -> list:
    return [d for d in env.vm(instance).drives if d.disk_number is not None]


def assert_disconnected(env) -> None:
    assert env.host.iscsi_sessions() == []
    assert env.host.smb_mappings() == []
    assert not any(d.disk_number is not None or (d.path or '').startswith(SHARE)
                   for vm in env.host.list_vms() for d in vm.drives)


# -- connector -------------------------------------------------------------------------------

def test_connector_reports_initiator_hbas_and_multipath(env):
    env.host.set_fc_ports([FC_PORT])
    env.flags(my_block_storage_ip='198.51.100.7')
    connector = env.driver.get_volume_connector(None)
    assert connector == {
        'host': 'SIMHV01', 'ip': '198.51.100.7', 'multipath': False, 'os_type': 'nt',
        'platform': 'AMD64', 'initiator': env.host.initiator_name(),
        'wwpns': [FC_PORT['wwpn']], 'wwnns': [FC_PORT['wwnn']]}
    assert len(env.calls_of('Get-VolumeConnector')) == 1


def test_connector_refuses_multipath_without_mpio_claiming_iscsi(env):
    env.flags('hyperv', use_multipath_io=True)
    with pytest.raises(volumeops.MultipathUnavailable, match='does not claim iSCSI'):
        env.driver.get_volume_connector(None)
    env.host.mpio_claim('iSCSI')
    assert env.driver.get_volume_connector(None)['multipath'] is True


def test_connector_refuses_multipath_without_the_feature(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.start()
        env.host.config.modules['MPIO'] = False
        env.flags('hyperv', use_multipath_io=True)
        with pytest.raises(volumeops.MultipathUnavailable, match='not installed'):
            env.driver.get_volume_connector(None)


# -- iSCSI -------------------------------------------------------------------------------------

def test_iscsi_attach_and_detach_one_round_trip_each(env, caplog):
    env.host.add_iscsi_target(PORTALS[0], IQN, [1, 2], chap_username='chapuser',
                              chap_secret=CHAP_SECRET)
    instance = running(env)
    caplog.set_level(logging.DEBUG)
    assert env.round_trips(attach, env, instance, iscsi(chap=True)) == 1
    [drive] = passthrough(env, instance)
    disk = env.host.get_disk(drive.disk_number)
    assert (disk.target_iqn, disk.lun, disk.is_offline) == (IQN, 0, True)
    assert (drive.controller_type, drive.location) == ('SCSI', 0)    # generation 1: root on IDE
    [session] = env.host.iscsi_sessions()
    assert session.persistent and session.auth_type == 'ONEWAYCHAP'
    assert CHAP_SECRET not in caplog.text
    assert env.round_trips(detach, env, instance, iscsi(chap=True)) == 1
    assert_disconnected(env)
    detach(env, instance, iscsi())                      # idempotent
    assert env.vm(instance).state == 'Running'


def test_two_luns_of_one_target_log_out_only_at_the_end(env):
    env.host.add_iscsi_target(PORTALS[0], IQN, [1, 2])
    instance = running(env)
    attach(env, instance, iscsi('vol-a', 0))
    attach(env, instance, iscsi('vol-b', 1))
    assert len(env.host.iscsi_sessions()) == 1 and len(passthrough(env, instance)) == 2
    detach(env, instance, iscsi('vol-a', 0))
    assert len(env.host.iscsi_sessions()) == 1 and len(passthrough(env, instance)) == 1
    detach(env, instance, iscsi('vol-b', 1))
    assert_disconnected(env)


def test_multipath_two_portals_give_one_disk_with_two_paths(env):
    env.host.add_iscsi_target(PORTALS, IQN, [1])
    env.host.mpio_claim('iSCSI')
    env.flags('hyperv', use_multipath_io=True)
    instance = running(env)
    attach(env, instance, iscsi(portals=PORTALS))
    [disk] = env.host.list_disks()
    assert disk.mpio and len(disk.session_ids) == 2
    assert {s.portal for s in env.host.iscsi_sessions()} == set(PORTALS)
    assert [d.disk_number for d in passthrough(env, instance)] == [disk.number]
    detach(env, instance, iscsi(portals=PORTALS))
    assert_disconnected(env)


def test_without_multipath_only_the_first_path_logs_in(env):
    env.host.add_iscsi_target(PORTALS, IQN, [1])
    instance = running(env)
    attach(env, instance, iscsi(portals=PORTALS))
    assert [s.portal for s in env.host.iscsi_sessions()] == [PORTALS[0]]


def test_multipath_with_mpio_not_claiming_is_refused_and_leaves_nothing(env):
    """Windows would show the LUN twice; writing to both corrupts it."""
    env.host.add_iscsi_target(PORTALS, IQN, [1])
    env.flags('hyperv', use_multipath_io=True)
    instance = running(env)
    with pytest.raises(exception.VolumeAttachFailed, match='vol-1.*Multipath I/O is not '
                       'claiming'):
        attach(env, instance, iscsi(portals=PORTALS))
    assert_disconnected(env)
    assert env.host.list_disks() == []


def test_iscsi_initiator_list_is_tried_in_order(env):
    env.host.add_iscsi_target(PORTALS[0], IQN, [1])
    env.flags('hyperv', iscsi_initiator_list=['PCI\\VEN_8086\\NOPE_0',
                                              'ROOT\\ISCSIPRT\\0000_0'])
    instance = running(env)
    attach(env, instance, iscsi())
    params = env.calls_of('Connect-InstanceVolume')[-1].params
    assert params['InitiatorNames'] == ['PCI\\VEN_8086\\NOPE_0', 'ROOT\\ISCSIPRT\\0000_0']
    assert len(env.host.iscsi_sessions()) == 1


def test_a_portal_that_does_not_answer_falls_back_to_the_next_path(env):
    env.host.add_iscsi_target(PORTALS[1], IQN, [1])
    instance = running(env)
    attach(env, instance, iscsi(portals=['10.9.9.9:3260', PORTALS[1]]))
    assert [s.portal for s in env.host.iscsi_sessions()] == [PORTALS[1]]


def test_a_portal_that_does_not_answer_fails_naming_the_volume(env):
    instance = running(env)
    with pytest.raises(exception.VolumeAttachFailed, match='vol-1.*ConnectionError'):
        attach(env, instance, iscsi(portals=['10.9.9.9:3260']))
    assert_disconnected(env)
    assert env.host.state.iscsi.portals == []


def test_wrong_chap_fails_and_leaves_no_portal(env, caplog):
    env.host.add_iscsi_target(PORTALS[0], IQN, [1], chap_username='chapuser',
                              chap_secret='the-right-one')
    instance = running(env)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(exception.VolumeAttachFailed, match='AuthenticationError'):
        attach(env, instance, iscsi(chap=True))
    assert CHAP_SECRET not in caplog.text
    assert_disconnected(env)
    assert env.host.state.iscsi.portals == []


def test_a_disk_that_shows_up_after_some_rescans(env):
    env.host.add_iscsi_target(PORTALS[0], IQN, [1], rescans_needed=3)
    env.flags('hyperv', mounted_disk_query_retry_count=3)
    instance = running(env)
    attach(env, instance, iscsi())
    assert len(passthrough(env, instance)) == 1
    assert env.host.state.iscsi.rescans == 3


def test_a_lun_that_never_appears_fails_naming_the_volume_and_leaves_nothing(env):
    env.host.add_iscsi_target(PORTALS[0], IQN, [1], rescans_needed=1000)
    env.flags('hyperv', mounted_disk_query_retry_count=2, volume_attach_retry_count=1)
    instance = running(env)
    with pytest.raises(exception.VolumeAttachFailed, match='vol-1: its disk did not show up'):
        attach(env, instance, iscsi())
    assert len(env.calls_of('Connect-InstanceVolume')) == 2         # retried once
    assert_disconnected(env)


def test_attach_is_retried_after_a_transient_failure(env):
    env.host.add_iscsi_target(PORTALS[0], IQN, [1])
    env.flags('hyperv', volume_attach_retry_count=2)
    instance = running(env)
    env.host.faults.fail('Connect-InstanceVolume', 'The iSCSI service is restarting.')
    attach(env, instance, iscsi())
    assert len(env.calls_of('Connect-InstanceVolume')) == 2
    assert len(passthrough(env, instance)) == 1


def test_detach_finds_the_disk_after_a_host_reboot_renumbered_it(env):
    env.host.add_iscsi_target(PORTALS[0], IQN, [1])
    instance = running(env)
    attach(env, instance, iscsi())
    before = passthrough(env, instance)[0].disk_number
    env.host.host_power_action('Reboot')
    env.driver.resume_state_on_host_boot(None, instance, [], None)   # nova, once it is back
    after = passthrough(env, instance)[0].disk_number
    assert after != before and env.host.get_disk(after).target_iqn == IQN
    detach(env, instance, iscsi())
    assert_disconnected(env)


def test_a_disk_left_online_by_the_san_policy_is_taken_offline(tmp_path, caplog):
    with DriverEnv(tmp_path) as env:
        env.flags('hyperv', mounted_disk_query_retry_interval=0)
        env.start()
        env.host.config.san_policy = 'OnlineAll'
        env.host.add_iscsi_target(PORTALS[0], IQN, [1])
        instance = running(env)
        attach(env, instance, iscsi())
        assert env.calls_of('Connect-InstanceVolume')[-1].result['volumes'][0]['taken_offline']
        assert 'NewDiskPolicy OfflineShared' in caplog.text


def test_extend_reports_the_size_the_host_sees_after_a_rescan(env):
    env.host.add_iscsi_target(PORTALS[0], IQN, [1])
    instance = running(env)
    attach(env, instance, iscsi())
    env.host.resize_lun(IQN, 0, 3)
    assert env.driver.volumeops.extend_volume(instance, iscsi(), 3 * GIB) == 3 * GIB
    env.driver.extend_volume(None, iscsi(), instance, 3 * GIB)
    assert env.driver.capabilities['supports_extend_volume']


# -- Fibre Channel ----------------------------------------------------------------------------

def test_fibre_channel_attach_extend_detach(env):
    env.host.set_fc_ports([FC_PORT])
    env.host.add_fc_target(WWN, [1, 2], rescans_needed=1)
    instance = running(env)
    attach(env, instance, fc(lun=1))
    [drive] = passthrough(env, instance)
    disk = env.host.get_disk(drive.disk_number)
    assert (disk.bus_type, disk.lun, disk.target_wwns) == ('Fibre Channel', 1, [WWN])
    env.host.resize_lun(WWN, 1, 4)
    assert env.driver.volumeops.extend_volume(instance, fc(lun=1), 4 * GIB) == 4 * GIB
    detach(env, instance, fc(lun=1))
    assert passthrough(env, instance) == []


def test_fibre_channel_without_hbas_finds_no_disk(env):
    env.host.add_fc_target(WWN, [1])
    instance = running(env)
    with pytest.raises(exception.VolumeAttachFailed, match='vol-fc: its disk did not show up'):
        attach(env, instance, fc())


# -- SMB ---------------------------------------------------------------------------------------

@pytest.fixture
def share(env):
    env.host.add_volume(SHARE, 100)
    env.host.require_smb_credentials(SHARE, 'cinder', 's3cret')
    env.host.new_vhd(f'{SHARE}\\volume-vol-smb.vhdx', GIB)
    return SHARE


def test_smb_attach_maps_the_share_and_detach_unmaps_it(env, share, caplog):
    instance = running(env)
    caplog.set_level(logging.DEBUG)
    attach(env, instance, smb(qos_specs={'total_bytes_sec': 8 * 1024 * 1000,
                                         'total_iops_sec': 200}))
    assert 's3cret' not in caplog.text
    [mapping] = env.host.smb_mappings()
    assert (mapping.remote_path, mapping.username) == (SHARE, 'cinder')
    drive = next(d for d in env.vm(instance).drives if d.path and d.path.startswith(SHARE))
    assert drive.controller_type == 'SCSI' and drive.max_iops == 1000
    detach(env, instance, smb())
    assert_disconnected(env)
    detach(env, instance, smb())


def test_smb_wrong_password_fails_and_leaves_nothing(env, share):
    instance = running(env)
    with pytest.raises(exception.VolumeAttachFailed, match='vol-smb.*password is incorrect'):
        attach(env, instance, smb(password='wrong'))
    assert_disconnected(env)


def test_smb_missing_file_fails_and_leaves_no_mapping(env, share):
    instance = running(env)
    with pytest.raises(exception.VolumeAttachFailed, match='vol-gone: its disk file'):
        attach(env, instance, smb('vol-gone'))
    assert_disconnected(env)


def test_smb_extend_reads_the_grown_file(env, share):
    instance = running(env)
    attach(env, instance, smb())
    env.host.resize_vhd(f'{SHARE}\\volume-vol-smb.vhdx', 2 * GIB)
    assert env.driver.volumeops.extend_volume(instance, smb(), 2 * GIB) == 2 * GIB


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize('connection_info, match', [
    ({'driver_volume_type': 'rbd', 'data': {'volume_id': 'vol-x'}},
     'vol-x: driver_volume_type rbd is not supported'),
    ({'driver_volume_type': 'iscsi', 'data': {'volume_id': 'vol-x', 'target_portal': 'p',
                                              'target_lun': 1}}, 'vol-x.*no target_iqn'),
    ({'driver_volume_type': 'fibre_channel', 'data': {'volume_id': 'vol-x',
                                                      'target_lun': 1}}, 'vol-x.*target_wwn'),
    ({'driver_volume_type': 'smbfs', 'data': {'volume_id': 'vol-x', 'name': 'v'}},
     'vol-x.*no export'),
])
def test_bad_connection_info_is_refused_before_any_round_trip(env, connection_info, match):
    instance = running(env)
    before = env.bridge.round_trips
    with pytest.raises(exception.NovaException, match=match):
        attach(env, instance, connection_info)
    assert env.bridge.round_trips == before


def test_the_cluster_driver_refuses_passthrough_volumes():
    assert HyperVClusterDriver.VOLUME_TYPES == ('smbfs',)
    ops = volumeops.VolumeOps(None, None, HyperVClusterDriver.VOLUME_TYPES)
    with pytest.raises(exception.VolumeDriverNotFound, match='vol-1: driver_volume_type iscsi'):
        ops.volume_record(iscsi())
    assert ops.volume_record(smb())[0]['type'] == 'smbfs'


# -- boot from volume ---------------------------------------------------------------------------

def bdi(root: dict, *data: dict, root_device: str = '/dev/sda') -> dict:
    mapping = [{'connection_info': root, 'mount_device': root_device, 'boot_index': 0}]
    mapping += [{'connection_info': d, 'mount_device': f'/dev/sd{chr(98 + i)}',
                 'boot_index': None} for i, d in enumerate(data)]
    return {'root_device_name': root_device, 'block_device_mapping': mapping,
            'ephemerals': [], 'swap': None}


@pytest.mark.parametrize('generation, slot', [(2, ('SCSI', 0, 0)), (1, ('IDE', 0, 0))])
def test_boot_from_an_iscsi_volume_with_a_data_volume(env, share, generation, slot):
    env.host.add_iscsi_target(PORTALS[0], IQN, [10])
    image = env.image(hw_machine_type=f'hyperv-gen{generation}')
    instance = env.instance(image, image_ref='')
    info = bdi(iscsi(), smb())
    assert env.round_trips(env.spawn, instance, image, block_device_info=info) == 2
    assert [c.name for c in env.calls[-2:]] == ['Connect-InstanceVolume', 'New-Instance']
    assert 'Name' not in env.calls[-2].params            # connected only, then New-Instance
    assert env.glance.fetched == []
    vm = env.vm(instance)
    assert vm.state == 'Running'
    [root] = passthrough(env, instance)
    assert (root.controller_type, root.controller_number, root.location) == slot
    if generation == 2:
        assert vm.first_boot_device == 'SCSI:0:0'
    with pytest.raises(exception.InstanceNotRescuable, match='boots from a volume'):
        env.driver.rescue(None, instance, [], image, 'pw', info)
    env.driver.destroy(None, instance, [], info)
    assert env.host.find_vm(instance.name) is None
    assert_disconnected(env)


def test_a_boot_volume_that_fails_creates_no_vm(env):
    image = env.image()
    instance = env.instance(image, image_ref='')
    with pytest.raises(exception.VolumeAttachFailed, match='vol-1'):
        env.spawn(instance, image, block_device_info=bdi(iscsi(portals=['10.9.9.9:3260'])))
    assert env.calls_of('New-Instance') == []
    assert env.host.find_vm(instance.name) is None
    assert_disconnected(env)


def test_a_failed_new_instance_disconnects_the_volumes(env, share):
    env.host.add_iscsi_target(PORTALS[0], IQN, [10])
    image = env.image()
    instance = env.instance(image, image_ref='')
    env.host.faults.fail('New-Instance', 'Not enough memory in the system to start the '
                         'virtual machine.', category='ResourceUnavailable')
    with pytest.raises(exception.ComputeResourcesUnavailable):
        env.spawn(instance, image, block_device_info=bdi(iscsi(), smb()))
    assert env.host.find_vm(instance.name) is None
    assert_disconnected(env)


def test_data_volumes_at_boot_from_an_image(env, share):
    env.host.add_iscsi_target(PORTALS[0], IQN, [1])
    image = env.image(hw_machine_type='hyperv-gen2')
    instance = env.instance(image)
    info = {'root_device_name': '/dev/sda', 'ephemerals': [], 'swap': None,
            'block_device_mapping': [
                {'connection_info': iscsi(), 'mount_device': '/dev/sdb', 'boot_index': None},
                {'connection_info': smb(), 'mount_device': '/dev/sdc', 'boot_index': None}]}
    env.spawn(instance, image, block_device_info=info)
    vm = env.vm(instance)
    slots = {(d.controller_type, d.controller_number, d.location): d for d in vm.drives}
    assert slots[('SCSI', 0, 0)].path.endswith('root.vhdx')
    assert vm.first_boot_device == 'SCSI:0:0'
    assert len(passthrough(env, instance)) == 1 and len(env.host.smb_mappings()) == 1
    env.driver.destroy(None, instance, [], info)
    assert_disconnected(env)


# -- SMB against a real Samba ----------------------------------------------------------------

@pytest.fixture(scope='module')
def samba():
    with run_samba() as server:
        yield server


def test_smb_volume_on_a_real_samba_share(env, samba):
    """Mapping, file lookup and extend go to smbd; Hyper-V's attach is the simulator's."""
    share = f'\\\\127.0.0.1\\{samba.share}'
    env.host.attach_smb_server(share, samba.port)
    volume_file = samba.share_dir / 'volume-vol-real.vhdx'
    volume_file.write_bytes(vhdx(GIB))

    def info(password: str) -> dict:
        return {'driver_volume_type': 'smbfs', 'serial': 'vol-real', 'data': {
            'volume_id': 'vol-real', 'export': f'//127.0.0.1/{samba.share}',
            'name': 'volume-vol-real.vhdx', 'format': 'vhdx',
            'options': f'-o username={samba.username},password={password}'}}

    instance = running(env)
    with pytest.raises(exception.VolumeAttachFailed, match='vol-real.*password is incorrect'):
        attach(env, instance, info('wrong-password'))
    assert env.host.smb_mappings() == []

    attach(env, instance, info(samba.password))
    [drive] = [d for d in env.vm(instance).drives if (d.path or '').startswith(share)]
    assert env.host.get_vhd(drive.path).vhd.size == GIB
    volume_file.write_bytes(vhdx(3 * GIB))           # Cinder's SMB driver grew the file
    assert env.driver.volumeops.extend_volume(instance, info(samba.password), 3 * GIB) \
        == 3 * GIB
    detach(env, instance, info(samba.password))
    assert_disconnected(env)

    volume_file.unlink()
    with pytest.raises(exception.VolumeAttachFailed, match='vol-real: its disk file'):
        attach(env, instance, info(samba.password))
    assert_disconnected(env)


# -- assisted snapshots of SMB volumes ----------------------------------------------------------

class FakeBdm:
    """The BDM row nova keeps for the volume (its connection_info is a JSON text)."""

    def __init__(self, connection_info: dict) -> None:
        self.connection_info = jsonutils.dumps(connection_info)
        self.saved = 0

    def save(self) -> None:
        self.saved += 1

    @property
    def info(self) -> dict:
        return jsonutils.loads(self.connection_info)


class SnapshotStatuses:
    """Stands in for Cinder's os-update_snapshot_status (Cinder does not run here)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def update_snapshot_status(self, context, snapshot_id, status) -> None:
        self.sent.append((snapshot_id, status))


@pytest.fixture
def snapshots(env, share, monkeypatch):
    """A stopped instance with the SMB volume attached, its BDM and Cinder's status calls."""
    instance = running(env)
    attach(env, instance, smb())
    env.driver.power_off(instance)
    bdm = FakeBdm(smb())
    monkeypatch.setattr(volumeops.objects.BlockDeviceMapping, 'get_by_volume_and_instance',
                        lambda context, volume_id, uuid: bdm)
    statuses = SnapshotStatuses()
    monkeypatch.setattr(env.driver.volumeops, '_volume_api_instance', statuses)
    return instance, bdm, statuses


def create_info(snapshot_id: str, new_file: str) -> dict:
    return {'snapshot_id': snapshot_id, 'type': 'qcow2', 'new_file': new_file, 'id': 'x'}


def volume_file(env, instance) -> str:
    return next(d.path for d in env.vm(instance).drives if d.path and d.path.startswith(SHARE))


def test_snapshot_create_and_delete_chain_and_merge_one_round_trip_each(env, snapshots):
    instance, bdm, statuses = snapshots
    base = f'{SHARE}\\volume-vol-smb.vhdx'
    snap1 = f'{SHARE}\\volume-vol-smb.snap-1.vhdx'
    assert env.round_trips(env.driver.volume_snapshot_create, None, instance, 'vol-smb',
                           create_info('snap-1', 'volume-vol-smb.snap-1.vhdx')) == 1
    assert volume_file(env, instance) == snap1
    assert env.host.get_vhd(snap1).vhd.parent_path == base
    assert bdm.info['data']['name'] == 'volume-vol-smb.snap-1.vhdx'
    assert statuses.sent == [('snap-1', 'creating')]

    delete_info = {'type': 'qcow2', 'file_to_merge': None, 'merge_target_file': None,
                   'volume_id': 'vol-smb'}
    assert env.round_trips(env.driver.volume_snapshot_delete, None, instance, 'vol-smb',
                           'snap-1', delete_info) == 1
    # the base folded into the active file, which keeps its name and has no parent now
    assert volume_file(env, instance) == snap1
    assert env.host.get_vhd(snap1).vhd.parent_path is None
    assert not env.host.exists(base)
    assert statuses.sent[-1] == ('snap-1', 'deleting')
    # detach with what the BDM now says finds the drive
    detach(env, instance, bdm.info)
    assert not any(d.path == snap1 for d in env.vm(instance).drives)
    assert_disconnected(env)


def test_snapshot_delete_commits_a_middle_file_into_its_parent(env, snapshots):
    instance, bdm, statuses = snapshots
    for n in (1, 2):
        info = create_info(f'snap-{n}', f'volume-vol-smb.snap-{n}.vhdx')
        env.driver.volume_snapshot_create(None, instance, 'vol-smb', info)
    env.driver.volume_snapshot_delete(None, instance, 'vol-smb', 'snap-1', {
        'type': 'qcow2', 'file_to_merge': 'volume-vol-smb.snap-1.vhdx',
        'merge_target_file': 'volume-vol-smb.vhdx', 'volume_id': 'vol-smb'})
    active = f'{SHARE}\\volume-vol-smb.snap-2.vhdx'
    assert volume_file(env, instance) == active
    assert env.host.get_vhd(active).vhd.parent_path == f'{SHARE}\\volume-vol-smb.vhdx'
    assert not env.host.exists(f'{SHARE}\\volume-vol-smb.snap-1.vhdx')
    assert statuses.sent[-1] == ('snap-1', 'deleting')


def test_snapshot_of_a_running_instance_is_refused_and_reported(env, snapshots):
    instance, bdm, statuses = snapshots
    env.driver.power_on(None, instance, None)
    with pytest.raises(exception.InstanceInvalidState, match='running VM'):
        env.driver.volume_snapshot_create(None, instance, 'vol-smb',
                                          create_info('snap-1', 'volume-vol-smb.snap-1.vhdx'))
    assert not env.host.exists(f'{SHARE}\\volume-vol-smb.snap-1.vhdx')
    assert statuses.sent == [('snap-1', 'error')] and bdm.saved == 0


def test_snapshot_delete_of_a_file_outside_the_chain_is_refused(env, snapshots):
    instance, bdm, statuses = snapshots
    with pytest.raises(exception.InternalError, match='vol-smb'):
        env.driver.volume_snapshot_delete(None, instance, 'vol-smb', 'snap-9', {
            'type': 'qcow2', 'file_to_merge': 'other.vhdx', 'merge_target_file': 'base.vhdx',
            'volume_id': 'vol-smb'})
    assert statuses.sent == [('snap-9', 'error_deleting')]
    assert volume_file(env, instance) == f'{SHARE}\\volume-vol-smb.vhdx'


def test_snapshot_of_a_non_smb_volume_makes_no_round_trip(env, snapshots, monkeypatch):
    instance, _bdm, statuses = snapshots
    monkeypatch.setattr(volumeops.objects.BlockDeviceMapping, 'get_by_volume_and_instance',
                        lambda context, volume_id, uuid: FakeBdm(iscsi()))
    before = env.bridge.round_trips
    with pytest.raises(exception.InternalError, match='smbfs'):
        env.driver.volume_snapshot_create(None, instance, 'vol-1',
                                          create_info('snap-1', 'volume-1.snap-1.vhdx'))
    assert env.bridge.round_trips == before
    assert statuses.sent == [('snap-1', 'error')]


def test_the_simulator_refuses_merging_a_disk_a_running_vm_holds(env, share):
    instance = running(env)
    attach(env, instance, smb())
    child = env.host.new_vhd(f'{SHARE}\\child.vhdx', parent_path=f'{SHARE}\\volume-vol-smb.vhdx')
    with pytest.raises(Exception, match='in use|being used'):
        env.host.merge_vhd(child.path)


# -- an SMB share of this host -------------------------------------------------------------------

@pytest.mark.parametrize('server', ['SIMHV01', '192.0.2.11', 'localhost'])
def test_a_volume_on_a_share_of_this_host_is_attached_by_its_local_path(env, server):
    """Hyper-V cannot open a VM disk through a loopback SMB path (and needs no mapping)."""
    folder = 'C:\\Shares\\cinder'
    env.host.make_dir(folder)
    env.host.new_smb_share('cinder', folder)
    env.host.new_vhd(f'{folder}\\volume-vol-smb.vhdx', GIB)
    instance = running(env)
    attach(env, instance, smb(export=f'//{server}/cinder'))
    assert env.host.smb_mappings() == []
    [drive] = [d for d in env.vm(instance).drives if d.path and d.path.startswith(folder)]
    assert drive.path == f'{folder}\\volume-vol-smb.vhdx'
    assert env.driver.volumeops.extend_volume(instance, smb(export=f'//{server}/cinder'),
                                              GIB) == GIB
    detach(env, instance, smb(export=f'//{server}/cinder'))
    assert not any(d.path == drive.path for d in env.vm(instance).drives)


def test_a_share_named_like_one_of_this_host_on_another_server_is_mapped(env, share):
    env.host.make_dir('C:\\Shares\\cinder')
    env.host.new_smb_share('cinder', 'C:\\Shares\\cinder')
    instance = running(env)
    attach(env, instance, smb())
    assert len(env.host.smb_mappings()) == 1
    assert volume_file(env, instance) == f'{SHARE}\\volume-vol-smb.vhdx'


def test_smb_qos_applies_to_a_volume_attached_at_spawn(env, share):
    image = env.image()
    instance = env.instance(image)
    qos = smb(qos_specs={'total_iops_sec': 300})
    env.spawn(instance, image, block_device_info={'block_device_mapping': [
        {'connection_info': qos, 'mount_device': '/dev/sdb', 'boot_index': None}]})
    [spec_volume] = env.calls_of('New-Instance')[-1].params['Spec']['volumes']
    assert spec_volume['max_iops'] == 300
    drive = next(d for d in env.vm(instance).drives if d.path and d.path.startswith(SHARE))
    assert drive.max_iops == 300
