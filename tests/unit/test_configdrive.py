"""Config drive images: readable ISO 9660 (Joliet + Rock Ridge) and valid fixed VHDs."""

import io
import json
import struct
import subprocess
import uuid

import pycdlib
import pytest

from psdriver.ops import configdrive

from tests.prerequisites import require_tool

FILES = [
    ('openstack/latest/meta_data.json', json.dumps({'uuid': 'f1e2'}).encode()),
    ('openstack/latest/user_data', b'#cloud-config\nruncmd: [echo hi]\n'),
    ('openstack/2012-08-10/meta_data.json', b'{}'),
    ('ec2/2009-04-04/meta-data.json', b'{"x": 1}'),
    ('openstack/content/0000', 'Grüße ✓ 日本'.encode()),
]


def _read(iso_bytes: bytes, **path) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(iso_bytes))
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    iso.close()
    return out.getvalue()


def test_iso_has_config2_label_and_all_files_in_every_namespace():
    data = configdrive.build_iso(FILES)
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    assert iso.pvd.volume_identifier.decode().strip() == 'config-2'
    assert iso.joliet_vd is not None
    iso.close()
    for path, content in FILES:
        assert _read(data, joliet_path='/' + path) == content
        assert _read(data, rr_path='/' + path) == content
        assert _read(data, iso_path='/' + path) == content


@pytest.mark.parametrize('bad', ['../etc/passwd', 'openstack/../x', '', '/'])
def test_iso_rejects_paths_outside_the_drive(bad):
    with pytest.raises(ValueError):
        configdrive.build_iso([(bad, b'x')])


def test_fixed_vhd_is_the_iso_plus_a_valid_footer():
    iso = configdrive.build_iso(FILES)
    vhd = configdrive.iso_to_fixed_vhd(iso)
    data, footer = vhd[:-512], vhd[-512:]
    assert data[:len(iso)] == iso and set(data[len(iso):]) <= {0}
    assert footer[:8] == b'conectix'
    (features, version, offset, _ts, creator, _cv, host_os, orig, cur, cyl, heads, spt,
     disk_type, checksum) = struct.unpack('>IIQI4sI4sQQHBBII', footer[8:68])
    assert (features, version, offset) == (2, 0x10000, 0xFFFFFFFFFFFFFFFF)
    assert creator == b'psdr' and host_os == b'Wi2k'
    assert orig == cur == len(data)
    assert disk_type == 2
    # The geometry describes the data size exactly, so readers that derive the
    # size from CHS agree with those that read current_size.
    assert cyl * heads * spt * 512 == len(data)
    zeroed = footer[:64] + b'\0\0\0\0' + footer[68:]
    assert checksum == (~sum(zeroed)) & 0xFFFFFFFF


def test_footer_geometry_matches_the_spec_for_large_disks():
    # 127 GiB: beyond 65535*16*63 sectors the spec uses 255 sectors/track, 16 heads.
    size = configdrive.chs_aligned_size(127 * 1024 ** 3)
    footer = configdrive.vhd_footer(size, unique_id=uuid.UUID(int=1), timestamp=946684800)
    cyl, heads, spt = struct.unpack('>HBB', footer[56:60])
    assert (heads, spt) == (16, 255)
    assert cyl * heads * spt * 512 == size


def test_footer_needs_sector_multiple():
    with pytest.raises(ValueError):
        configdrive.vhd_footer(1000)


def test_qemu_img_reads_the_vhd_as_the_same_disk(tmp_path):
    qemu_img = require_tool('qemu-img', 'qemu-utils')
    iso = configdrive.build_iso(FILES)
    vhd_path = tmp_path / 'configdrive.vhd'
    vhd_path.write_bytes(configdrive.build_config_drive(FILES, as_vhd=True))
    info = json.loads(subprocess.run(
        [qemu_img, 'info', '-f', 'vpc', '--output=json', str(vhd_path)],
        check=True, capture_output=True, text=True).stdout)
    assert info['format'] == 'vpc'
    assert info['virtual-size'] == configdrive.chs_aligned_size(len(iso))
    raw = tmp_path / 'out.raw'
    subprocess.run([qemu_img, 'convert', '-f', 'vpc', '-O', 'raw', str(vhd_path), str(raw)],
                   check=True)
    assert raw.read_bytes()[:len(iso)] == iso


def test_build_config_drive_iso_mode_returns_plain_iso():
    assert configdrive.build_config_drive(FILES, as_vhd=False)[32769:32774] == b'CD001'
