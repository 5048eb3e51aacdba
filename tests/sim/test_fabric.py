"""Simulated hosts that see each other (psdriver.sim.fabric)."""

from __future__ import annotations

import re
import threading

import pytest

from psdriver.sim import SimError, SimHost
from psdriver.sim.fabric import Fabric, fabric_of

GIB = 1024 ** 3
SHARE = '\\\\fs01\\instances'
CSV = 'C:\\ClusterStorage\\Volume1'


@pytest.fixture
def fabric(tmp_path) -> Fabric:
    return Fabric.create(str(tmp_path / 'fabric'), {'host1': {}, 'host2': {}},
                         shared_volumes={SHARE: 100})


def test_a_state_file_in_the_folder_makes_a_member(fabric, tmp_path):
    again = SimHost(state_file=fabric.state_file('host2'))
    assert fabric_of(again).host('HOST2.example.org') is again
    assert fabric.hostnames() == ['host1', 'host2']
    assert fabric_of(SimHost(state_file=str(tmp_path / 'alone.json'))) is None
    assert fabric_of(SimHost()) is None


def test_shared_volume_is_one_volume_on_every_host(fabric):
    host1, host2 = fabric.host('host1'), fabric.host('host2')
    host1.make_dir(SHARE + '\\vm1')
    host1.new_vhd(SHARE + '\\vm1\\root.vhdx', 10 * GIB)
    assert host2.get_vhd(SHARE + '\\vm1\\root.vhdx').vhd.size == 10 * GIB
    assert host2.volume_free(SHARE) == host1.volume_free(SHARE) < 100 * GIB
    host2.remove_item(SHARE + '\\vm1', recurse=True)
    assert not host1.exists(SHARE + '\\vm1')
    assert host1.volume_free(SHARE) == 100 * GIB
    host1.check_consistency()
    host2.check_consistency()
    assert fabric.is_shared(host1, SHARE + '\\x')
    assert not fabric.is_shared(host1, 'C:\\OpenStack\\Instances')


def test_cluster_shared_volume_mounted_in_a_folder(tmp_path):
    fabric = Fabric.create(str(tmp_path), ['node1', 'node2', 'node3'],
                           shared_volumes={CSV: 200})
    nodes = [fabric.host(n) for n in ('node1', 'node2', 'node3')]
    nodes[0].make_dir(CSV + '\\vm')
    nodes[0].new_vhd(CSV + '\\vm\\disk.vhdx', GIB)
    for node in nodes:
        assert node.exists(CSV + '\\vm\\disk.vhdx')
        assert node.volume_capacity(CSV + '\\vm') == 200 * GIB     # not the C: volume
        assert node.volume_capacity('C:\\OpenStack') == 500 * GIB
        node.check_consistency()


def test_unc_path_to_a_peer_share(fabric):
    host1, host2 = fabric.host('host1'), fabric.host('host2')
    host2.new_smb_share('Instances', 'C:\\OpenStack\\Instances', full_access=['DOM\\HOST1$'])
    owner, local = fabric.resolve(host1, '\\\\HOST2\\instances\\vm1\\root.vhdx')
    assert owner is host2 and local == 'C:\\OpenStack\\Instances\\vm1\\root.vhdx'
    with pytest.raises(SimError) as err:
        fabric.resolve(host1, '\\\\host2\\instances\\x', principal='DOM\\mallory')
    assert err.value.category == 'PermissionDenied'
    with pytest.raises(SimError) as err:
        fabric.resolve(host1, '\\\\host2\\nosuch\\x')
    assert err.value.error_id == 'NetworkPathNotFound'
    with pytest.raises(SimError):
        fabric.resolve(host1, '\\\\host9\\share\\x')


def test_copy_between_hosts_keeps_the_disk(fabric):
    host1, host2 = fabric.host('host1'), fabric.host('host2')
    host2.new_smb_share('Instances', 'C:\\OpenStack\\Instances')
    host1.new_vhd('C:\\OpenStack\\Instances\\a.vhdx', 4 * GIB)
    size = host1.get_item('C:\\OpenStack\\Instances\\a.vhdx').size
    free2 = host2.volume_free('C:\\')
    fabric.copy_file(host1, 'C:\\OpenStack\\Instances\\a.vhdx', host1,
                     '\\\\host2\\Instances\\a.vhdx')
    copied = host2.get_vhd('C:\\OpenStack\\Instances\\a.vhdx')
    assert copied.vhd.size == 4 * GIB and host2.volume_free('C:\\') == free2 - size
    with pytest.raises(SimError):
        fabric.copy_file(host1, 'C:\\OpenStack\\Instances\\a.vhdx', host2,
                         'C:\\OpenStack\\Instances\\a.vhdx')


def _without_generation(host: SimHost) -> str:
    return re.sub(r'"generation":\d+', '', host.dump())


def _running_vm(host: SimHost, name: str, disk: str) -> None:
    host.new_vhd(disk, GIB)
    host.create_vm(name, memory_startup_mb=2048)
    host.attach_disk(name, disk)
    host.add_nic(name, 'port1', switch_name='external')
    host.start_vm(name)


def test_move_vm_keeps_it_running_with_its_devices(fabric):
    host1, host2 = fabric.host('host1'), fabric.host('host2')
    _running_vm(host1, 'vm1', SHARE + '\\vm1.vhdx')
    before = host1.get_vm('vm1')
    moved = fabric.move_vm(host1, 'vm1', host2)
    assert host1.find_vm('vm1') is None
    got = host2.get_vm('vm1')
    assert (got.id, got.state, got.started_at) == (before.id, 'Running', before.started_at)
    assert [d.path for d in got.drives] == [SHARE + '\\vm1.vhdx'] == [d.path for d in moved.drives]
    assert [n.name for n in got.nics] == ['port1']
    assert host2.memory_free_mb() == 65536 - 2048 - 2048


def test_move_vm_refusals_leave_both_hosts_unchanged(fabric):
    host1, host2 = fabric.host('host1'), fabric.host('host2')
    _running_vm(host1, 'vm1', 'C:\\OpenStack\\Instances\\vm1.vhdx')
    dumps = _without_generation(host1), _without_generation(host2)
    with pytest.raises(SimError) as err:           # the disk is not on host2
        fabric.move_vm(host1, 'vm1', host2)
    assert err.value.error_id == 'VhdNotFoundOnDestination'
    host2.create_vm('vm1')
    with pytest.raises(SimError):
        fabric.move_vm(host1, 'vm1', host2)
    host2.remove_vm('vm1')
    assert (_without_generation(host1), _without_generation(host2)) == dumps
    assert host1.get_vm('vm1').state == 'Running'


def test_transactions_in_opposite_orders_do_not_deadlock(fabric):
    host1, host2 = fabric.host('host1'), fabric.host('host2')
    other = Fabric(fabric.directory)
    failures = []

    def work(first, second, prefix):
        try:
            for i in range(15):
                with fabric.transaction(first, second):
                    first.create_vm(f'{prefix}-{i}', memory_startup_mb=32)
                    second.make_dir(f'C:\\{prefix}-{i}')
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(host1, host2, 'a')),
               threading.Thread(target=work, args=(other.host('host2'), other.host('host1'),
                                                   'b'))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads) and not failures
    assert len(host1.list_vms('a-*')) == 15 and len(host2.list_vms('b-*')) == 15


def test_two_hosts_writing_one_shared_volume_in_one_transaction_is_refused(fabric):
    host1, host2 = fabric.host('host1'), fabric.host('host2')
    with pytest.raises(RuntimeError, match='changed by another host'):
        with fabric.transaction(host1, host2):
            host1.make_dir(SHARE + '\\a')
            host2.make_dir(SHARE + '\\b')


def test_migration_settings(fabric):
    host = fabric.host('host1')
    assert host.migration_settings().enabled is False
    with pytest.raises(SimError, match='domain'):
        host.set_migration(authentication='Kerberos')
    host.set_migration(enabled=True)
    assert host.migration_addresses() == []             # no migration network yet
    host.add_migration_network('192.0.2.0/24')
    assert host.migration_addresses() == ['192.0.2.11']
    with pytest.raises(SimError):
        host.add_migration_network('not-a-subnet')


def test_another_process_sees_the_shared_volume(fabric):
    import subprocess
    import sys
    fabric.host('host1').make_dir(SHARE + '\\from-host1')
    code = ('import sys; from psdriver.sim import SimHost; '
            'h = SimHost(state_file=sys.argv[1]); '
            'print(h.exists(sys.argv[2] + "\\\\from-host1")); '
            'h.make_dir(sys.argv[2] + "\\\\back")')
    out = subprocess.run([sys.executable, '-c', code, fabric.state_file('host2'), SHARE],
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == 'True'
    assert fabric.host('host1').exists(SHARE + '\\back')
