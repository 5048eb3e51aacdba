"""Files, volumes and virtual hard disks."""

from __future__ import annotations

import pytest

from psdriver.sim import SimError, SimHost
from psdriver.sim.storage import EMPTY_VHD_FILE, FIXED_OVERHEAD

from tests.sim.conftest import GIB, INSTANCES, disk_vm

BASE = f'{INSTANCES}\\_base'


def test_instances_path_exists_and_base_does_not(host):
    assert host.get_item(INSTANCES).is_dir
    assert host.exists('c:/openstack/instances/')
    assert not host.exists(BASE)
    host.make_dir(BASE)
    assert [e.path for e in host.list_dir(INSTANCES)] == [BASE]


def test_paths_must_be_absolute_and_on_a_known_volume(host):
    with pytest.raises(SimError) as exc:
        host.make_dir('relative\\dir')
    assert exc.value.category == 'InvalidArgument'
    with pytest.raises(SimError) as exc:
        host.make_dir('Q:\\x')
    assert exc.value.category == 'ObjectNotFound' and exc.value.error_id == 'DriveNotFound'
    with pytest.raises(SimError) as exc:
        host.add_file('C:\\no\\such\\dir\\f.txt', 1)
    assert exc.value.error_id == 'DirectoryNotFound'


def test_free_space_shrinks_and_grows(host):
    total = host.volume_capacity(INSTANCES)
    assert total == 500 * GIB
    host.add_file(f'{INSTANCES}\\img.vhdx', 3 * GIB)
    assert host.volume_free(INSTANCES) == total - 3 * GIB
    host.copy_file(f'{INSTANCES}\\img.vhdx', f'{INSTANCES}\\copy.vhdx')
    assert host.volume_free(INSTANCES) == total - 6 * GIB
    host.remove_item(f'{INSTANCES}\\img.vhdx')
    assert host.volume_free(INSTANCES) == total - 3 * GIB
    host.check_consistency()


def test_full_volume_refuses_new_data():
    host = SimHost(disk_gb=10)
    host.add_file(f'{INSTANCES}\\a.bin', 9 * GIB)
    with pytest.raises(SimError) as exc:
        host.add_file(f'{INSTANCES}\\b.bin', 2 * GIB)
    err = exc.value
    assert err.category == 'ResourceUnavailable' and err.error_id == 'DiskFull'
    assert 'not enough space on the disk' in err.message
    assert not host.exists(f'{INSTANCES}\\b.bin')
    with pytest.raises(SimError, match='not enough space'):
        host.new_vhd(f'{INSTANCES}\\fixed.vhdx', 2 * GIB, fixed=True)
    host.new_vhd(f'{INSTANCES}\\dynamic.vhdx', 100 * GIB)    # dynamic: only its header
    with pytest.raises(SimError, match='not enough space'):
        host.copy_file(f'{INSTANCES}\\a.bin', f'{INSTANCES}\\a2.bin')
    host.check_consistency()


def test_existing_files_and_overwrite(host):
    path = f'{INSTANCES}\\f.iso'
    host.add_file(path, 100)
    with pytest.raises(SimError) as exc:
        host.add_file(path, 100)
    assert exc.value.category == 'ResourceExists'
    host.add_file(path, 300, overwrite=True)
    assert host.get_item(path).size == 300
    host.check_consistency()


def test_remove_directory_needs_recurse(host):
    folder = f'{INSTANCES}\\inst'
    host.make_dir(folder)
    host.add_file(f'{folder}\\console.log', 10)
    with pytest.raises(SimError, match='not empty'):
        host.remove_item(folder)
    host.remove_item(folder, recurse=True)
    assert not host.exists(folder) and not host.exists(f'{folder}\\console.log')
    with pytest.raises(SimError):
        host.remove_item('C:\\')


def test_make_dir_over_a_file_fails(host):
    host.add_file(f'{INSTANCES}\\x', 1)
    with pytest.raises(SimError) as exc:
        host.make_dir(f'{INSTANCES}\\x\\y')
    assert exc.value.category == 'ResourceExists'


@pytest.mark.parametrize('ext,fmt', [('vhd', 'VHD'), ('vhdx', 'VHDX')])
def test_new_vhd_sizes(host, ext, fmt):
    fixed = host.new_vhd(f'{INSTANCES}\\f.{ext}', GIB, fixed=True)
    dynamic = host.new_vhd(f'{INSTANCES}\\d.{ext}', GIB)
    assert (fixed.vhd.vhd_type, fixed.vhd.format, fixed.vhd.size) == ('Fixed', fmt, GIB)
    assert fixed.size == GIB + FIXED_OVERHEAD[fmt]
    assert dynamic.vhd.vhd_type == 'Dynamic' and dynamic.size == EMPTY_VHD_FILE[fmt]
    assert fixed.vhd.disk_identifier != dynamic.vhd.disk_identifier


@pytest.mark.parametrize('path,size', [
    (f'{INSTANCES}\\x.img', GIB),                  # not a VHD extension
    (f'{INSTANCES}\\x.vhdx', 1000),                # not a multiple of 512
    (f'{INSTANCES}\\x.vhd', 2041 * GIB),           # beyond the VHD format
    (f'{INSTANCES}\\x.vhdx', 0),
])
def test_new_vhd_refuses_bad_requests(host, path, size):
    with pytest.raises(SimError) as exc:
        host.new_vhd(path, size)
    assert exc.value.category == 'InvalidArgument'


def test_new_vhd_refuses_an_existing_file(host):
    host.new_vhd(f'{INSTANCES}\\x.vhdx', GIB)
    with pytest.raises(SimError) as exc:
        host.new_vhd(f'{INSTANCES}\\X.VHDX', GIB)
    assert exc.value.category == 'ResourceExists'


def test_differencing_disks(host):
    host.make_dir(BASE)
    base = host.new_vhd(f'{BASE}\\img.vhdx', 10 * GIB)
    child = host.new_vhd(f'{INSTANCES}\\root.vhdx', parent_path=f'{BASE}\\IMG.vhdx')
    assert child.vhd.vhd_type == 'Differencing'
    assert child.vhd.parent_path == base.path
    assert child.vhd.size == 10 * GIB
    grandchild = host.new_vhd(f'{INSTANCES}\\snap.avhdx', parent_path=child.path)
    assert [e.path for e in host.vhd_chain(grandchild.path)] == \
        [grandchild.path, child.path, base.path]
    assert host.test_vhd(grandchild.path)
    assert [e.path for e in host.vhd_children(base.path)] == [child.path]
    with pytest.raises(SimError, match='must match'):
        host.new_vhd(f'{INSTANCES}\\bad.vhd', parent_path=base.path)
    with pytest.raises(SimError, match='smaller than its parent'):
        host.new_vhd(f'{INSTANCES}\\small.vhdx', GIB, parent_path=base.path)
    with pytest.raises(SimError) as exc:
        host.new_vhd(f'{INSTANCES}\\orphan.vhdx', parent_path=f'{BASE}\\missing.vhdx')
    assert exc.value.category == 'ObjectNotFound'


def test_parent_in_use_cannot_be_deleted(host):
    host.make_dir(BASE)
    base = f'{BASE}\\img.vhdx'
    host.new_vhd(base, 10 * GIB)
    folder = f'{INSTANCES}\\vm1'
    host.make_dir(folder)
    root = host.new_vhd(f'{folder}\\root.vhdx', parent_path=base).path
    host.create_vm('vm1', path=folder)
    host.attach_disk('vm1', root)
    host.start_vm('vm1')
    for victim in (base, root):
        with pytest.raises(SimError) as exc:
            host.remove_item(victim)
        assert exc.value.category == 'ResourceBusy'
        assert 'being used by another process' in exc.value.message
    with pytest.raises(SimError):
        host.remove_item(BASE, recurse=True)
    with pytest.raises(SimError):
        host.move_file(base, f'{INSTANCES}\\moved.vhdx')
    assert host.exists(base) and host.exists(root)
    host.stop_vm('vm1')
    # Off: Windows no longer holds the files.  Deleting the parent breaks the child.
    host.remove_item(base)
    assert not host.test_vhd(root)
    with pytest.raises(SimError) as exc:
        host.start_vm('vm1')
    assert exc.value.category == 'ObjectNotFound'


def test_moving_a_parent_is_refused_while_children_point_at_it(host):
    host.make_dir(BASE)
    host.new_vhd(f'{BASE}\\img.vhdx', GIB)
    host.new_vhd(f'{INSTANCES}\\c.vhdx', parent_path=f'{BASE}\\img.vhdx')
    with pytest.raises(SimError, match='parent of the differencing disk'):
        host.move_file(f'{BASE}\\img.vhdx', f'{INSTANCES}\\img.vhdx')


def test_move_across_volumes_moves_the_space():
    host = SimHost(extra_volumes={'D:': 100})
    host.add_file(f'{INSTANCES}\\f.bin', GIB)
    c_free, d_free = host.volume_free('C:\\'), host.volume_free('D:\\')
    moved = host.move_file(f'{INSTANCES}\\f.bin', 'D:\\')
    assert moved.path == 'D:\\f.bin'
    assert host.volume_free('C:\\') == c_free + GIB
    assert host.volume_free('D:\\') == d_free - GIB
    host.check_consistency()


def test_resize(host):
    fixed = host.new_vhd(f'{INSTANCES}\\f.vhdx', GIB, fixed=True)
    free = host.volume_free(INSTANCES)
    host.resize_vhd(fixed.path, 3 * GIB)
    assert host.get_vhd(fixed.path).vhd.size == 3 * GIB
    assert host.volume_free(INSTANCES) == free - 2 * GIB
    with pytest.raises(SimError, match='smaller than its current size'):
        host.resize_vhd(fixed.path, GIB)
    dynamic = host.new_vhd(f'{INSTANCES}\\d.vhdx', GIB)
    free = host.volume_free(INSTANCES)
    host.resize_vhd(dynamic.path, 100 * GIB)             # dynamic: no room taken
    assert host.volume_free(INSTANCES) == free
    host.check_consistency()


def test_resize_of_a_disk_in_use(host):
    root = disk_vm(host, 'gen1', generation=1)              # VHDX on IDE
    scsi = host.new_vhd(f'{INSTANCES}\\gen1\\data.vhdx', GIB)
    host.attach_disk('gen1', scsi.path, controller_type='SCSI')
    host.start_vm('gen1')
    with pytest.raises(SimError) as exc:
        host.resize_vhd(root, 20 * GIB)
    assert exc.value.category == 'ResourceBusy'
    host.resize_vhd(scsi.path, 2 * GIB)                     # online resize on SCSI
    assert host.get_vhd(scsi.path).vhd.size == 2 * GIB


def test_full_volume_refuses_a_fixed_resize():
    host = SimHost(disk_gb=5)
    disk = host.new_vhd(f'{INSTANCES}\\f.vhdx', GIB, fixed=True)
    with pytest.raises(SimError, match='not enough space'):
        host.resize_vhd(disk.path, 10 * GIB)
    assert host.get_vhd(disk.path).vhd.size == GIB


def test_merge_folds_the_child_into_its_parent(host):
    host.make_dir(BASE)
    base = host.new_vhd(f'{BASE}\\img.vhdx', 10 * GIB)
    child = host.new_vhd(f'{INSTANCES}\\c.vhdx', parent_path=base.path)
    host.set_file_size(child.path, GIB)                     # the guest wrote 1 GiB
    grandchild = host.new_vhd(f'{INSTANCES}\\g.avhdx', parent_path=child.path)
    before = host.get_item(base.path).size
    host.merge_vhd(child.path)
    assert not host.exists(child.path)
    assert host.get_item(base.path).size > before
    assert host.get_vhd(grandchild.path).vhd.parent_path == base.path
    host.check_consistency()


def test_set_vhd_parent(host):
    host.make_dir(BASE)
    a = host.new_vhd(f'{BASE}\\a.vhdx', GIB)
    b = host.new_vhd(f'{BASE}\\b.vhdx', GIB)
    child = host.new_vhd(f'{INSTANCES}\\c.vhdx', parent_path=a.path)
    host.set_vhd_parent(child.path, b.path)
    assert host.get_vhd(child.path).vhd.parent_path == b.path
    with pytest.raises(SimError, match='not a differencing disk'):
        host.set_vhd_parent(a.path, b.path)
    with pytest.raises(SimError, match='its own parent'):
        host.set_vhd_parent(child.path, child.path)


def test_get_vhd_of_a_plain_file(host):
    host.add_file(f'{INSTANCES}\\x.txt', 5)
    with pytest.raises(SimError) as exc:
        host.get_vhd(f'{INSTANCES}\\x.txt')
    assert exc.value.category == 'InvalidData'


def test_shares_are_volumes(host):
    host.add_volume('\\\\fs01\\vols', 50)
    host.add_file('\\\\fs01\\vols\\volume-1.vhdx', GIB)
    assert host.volume_free('\\\\FS01\\vols\\x') == 49 * GIB
    with pytest.raises(SimError, match='network path'):
        host.add_file('\\\\other\\share\\f', 1)
