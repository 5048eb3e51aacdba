"""Get-HostInfo and Test-PsDriverConnection on the simulated host."""

from __future__ import annotations

import datetime
import re

import pytest

from psdriver.sim import SimError, SimHost, dispatch

from tests.sim.conftest import GIB, INSTANCES


def _run(host, name, params=None):
    with host.transaction(write=False):
        return dispatch.get_handler(name).func(host, params or {})


def test_host_info_shape_and_defaults(host):
    info = _run(host, 'Get-HostInfo')
    assert set(info) == {'hostname', 'os_name', 'os_version', 'hyperv_version', 'ps_version',
                         'logical_processors', 'cpu', 'memory_mb_total', 'memory_mb_free',
                         'instances_path', 'numa_nodes', 'uptime_seconds', 'ip_addresses',
                         'security', 'assignable_devices'}
    assert info['security'] == {'vtpm': True, 'host_guarded': False,
                                'hgs_mode': 'HostGuardianService', 'shielded_vm_tools': True}
    assert info['assignable_devices'] == []
    assert info['hostname'] == 'SIMHV01'
    assert info['logical_processors'] == 16
    cpu = info['cpu']
    assert set(cpu) == {'vendor', 'model', 'arch', 'sockets', 'cores', 'threads', 'features'}
    assert cpu['sockets'] * cpu['cores'] * cpu['threads'] == 16
    assert info['memory_mb_total'] == 65536
    assert info['instances_path'] == {'path': INSTANCES, 'exists': True, 'total_gb': 500.0,
                                      'free_gb': 500.0}
    assert [n['id'] for n in info['numa_nodes']] == [0, 1]
    assert sum(n['memory_mb_free'] for n in info['numa_nodes']) == info['memory_mb_free']
    assert info['uptime_seconds'] > 0


def test_host_info_follows_vms_and_disks(host):
    before = _run(host, 'Get-HostInfo')
    host.create_vm('vm', memory_startup_mb=4096)
    host.start_vm('vm')
    host.new_vhd(f'{INSTANCES}\\big.vhdx', 50 * GIB, fixed=True)
    after = _run(host, 'Get-HostInfo')
    assert after['memory_mb_free'] == before['memory_mb_free'] - 4096
    assert after['instances_path']['free_gb'] == pytest.approx(450.0, abs=0.01)
    assert after['instances_path']['total_gb'] == 500.0


def test_host_info_for_another_path():
    host = SimHost(extra_volumes={'D:': 100}, hostname='HV2', memory_mb=16384)
    info = _run(host, 'Get-HostInfo', {'InstancesPath': 'd:\\vms'})
    assert info['hostname'] == 'HV2' and info['memory_mb_total'] == 16384
    assert info['instances_path'] == {'path': 'D:\\vms', 'exists': False, 'total_gb': 100.0,
                                      'free_gb': 100.0}
    with pytest.raises(SimError) as exc:
        _run(host, 'Get-HostInfo', {'InstancesPath': 'Q:\\vms'})
    assert exc.value.category == 'ObjectNotFound'


def test_host_info_leaves_out_loopback_and_link_local_addresses():
    host = SimHost(ip_addresses=['127.0.0.1', '169.254.3.4', '192.0.2.11', '::1',
                                 'fe80::11', '2001:db8::11'])
    assert _run(host, 'Get-HostInfo')['ip_addresses'] == ['192.0.2.11', '2001:db8::11']


@pytest.mark.parametrize('echo', ['', "it's", 'nul\x00inside', '\U0001F600 non-BMP',
                                  '"; Stop-Computer; "', 'x' * 10000])
def test_connection_echo_is_exact(host, echo):
    assert _run(host, 'Test-PsDriverConnection', {'Echo': echo})['echo'] == echo


def test_connection_report():
    host = SimHost(modules={'Hyper-V': True, 'MPIO': False}, ps_version='7.4.6',
                   ps_edition='Core', is_admin=False)
    out = _run(host, 'Test-PsDriverConnection')
    utc_now = out.pop('utc_now')
    assert out == {'hostname': 'SIMHV01', 'ps_version': '7.4.6', 'ps_edition': 'Core',
                   'os_version': '10.0.20348', 'is_admin': False, 'echo': '',
                   'modules': {'Hyper-V': True, 'FailoverClusters': False, 'MPIO': False,
                               'iSCSI': False, 'Storage': False},
                   'instances_path': None, 'share': None}
    # DateTime.ToString('o') in UTC: seven fraction digits, then Z
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z', utc_now)
    host_time = datetime.datetime.fromisoformat(utc_now[:26] + '+00:00')
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((host_time - now).total_seconds()) < 5


def test_connection_reports_clock_skew_paths_and_share():
    host = SimHost(clock_offset_seconds=-90, extra_volumes={'D:': 10},
                   smb_shares={'OpenStackInstances': 'C:\\OpenStack\\Instances\\',
                               'Other': 'D:\\data'})
    out = _run(host, 'Test-PsDriverConnection',
               {'InstancesPath': 'c:\\openstack\\instances', 'Share': 'openstackinstances'})
    host_time = datetime.datetime.fromisoformat(out['utc_now'][:26] + '+00:00')
    skew = (host_time - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert -95 < skew < -85
    assert out['instances_path'] == {'path': 'c:\\openstack\\instances', 'exists': True}
    assert out['share'] == {'name': 'openstackinstances', 'exists': True,
                            'path': 'C:\\OpenStack\\Instances',
                            'matches_instances_path': True}
    other = _run(host, 'Test-PsDriverConnection', {'InstancesPath': 'D:\\vms', 'Share': 'Other'})
    assert other['instances_path'] == {'path': 'D:\\vms', 'exists': False}
    assert other['share'] == {'name': 'Other', 'exists': True, 'path': 'D:\\data',
                              'matches_instances_path': False}
    missing = _run(host, 'Test-PsDriverConnection', {'InstancesPath': 'Q:\\x', 'Share': 'Nope'})
    assert missing['instances_path']['exists'] is False
    assert missing['share'] == {'name': 'Nope', 'exists': False, 'path': None,
                                'matches_instances_path': False}
    # a file is not a folder (Test-Path -PathType Container)
    host.add_file('D:\\afile.txt', 10)
    assert _run(host, 'Test-PsDriverConnection',
                {'InstancesPath': 'D:\\afile.txt'})['instances_path']['exists'] is False
