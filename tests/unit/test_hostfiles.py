"""How downloads reach the host's image cache: local rename, simulated host, SMB.

The SMB tests run against a real Samba (Debian ``samba``) started on
127.0.0.1 by a fixture; they skip when smbd is missing, except under
``CI=true``, where a missing smbd fails them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import smbclient
from oslo_config import cfg
from oslo_config import fixture as config_fixture

import psdriver.conf  # noqa: F401  (registers the options)
from psdriver.bridge.client import Bridge
from psdriver.ops import hostfiles
from psdriver.ops.hostfiles import ImageFileInfo, ImageTransferError
from psdriver.sim import SimHost, SimRunner

from tests.daemons import LOOPBACK, Daemon, free_port, require_binary, scratch_dir
from tests.prerequisites import missing

GIB = 1024 ** 3
IMAGE = '0c7e2a55-6f0e-4d7c-9e4c-2b8f1a3d5e70'
OTHER = '7d1e5b20-3c4a-4f6e-8b9d-0a1b2c3d4e5f'
INSTANCES = 'C:\\OpenStack\\Instances'
BASE = INSTANCES + '\\_base'
VHDX = ImageFileInfo('vhdx', 20 * GIB, 4 * 1024 * 1024, 'Dynamic')


def staged_file(files: hostfiles.HostFiles, host_dir: str, stem: str, data: bytes) -> str:
    path = files.stage(host_dir, stem)
    Path(path).write_bytes(data)
    return path


# -- local: nova-compute on the Hyper-V host ------------------------------------------

def test_local_download_lands_in_the_cache_folder_under_a_temporary_name(tmp_path):
    files = hostfiles.LocalFiles()
    base = str(tmp_path / 'Instances' / '_base')

    staged = files.stage(base, IMAGE)

    assert os.path.dirname(staged) == base and os.path.isdir(base)
    assert os.path.basename(staged).startswith(f'{IMAGE}.partial-')
    assert files.stage(base, IMAGE) != staged


def test_local_publish_renames_into_place(tmp_path):
    files = hostfiles.LocalFiles()
    base = str(tmp_path / '_base')
    staged = staged_file(files, base, IMAGE, b'image bytes')
    final = os.path.join(base, f'{IMAGE}.vhdx')

    files.publish(staged, final, VHDX)

    assert Path(final).read_bytes() == b'image bytes'
    assert os.listdir(base) == [f'{IMAGE}.vhdx']


def test_local_publish_keeps_a_file_that_appeared_meanwhile(tmp_path):
    files = hostfiles.LocalFiles()
    base = tmp_path / '_base'
    staged = staged_file(files, str(base), IMAGE, b'new')
    (base / f'{IMAGE}.vhdx').write_bytes(b'old')

    files.publish(staged, str(base / f'{IMAGE}.vhdx'), VHDX)

    assert (base / f'{IMAGE}.vhdx').read_bytes() == b'old'
    assert sorted(os.listdir(base)) == [f'{IMAGE}.vhdx']


def test_local_stage_removes_left_overs_of_the_same_image_only(tmp_path):
    files = hostfiles.LocalFiles()
    base = tmp_path / '_base'
    base.mkdir()
    (base / f'{IMAGE}.partial-0a1b2c3d4e5f').write_bytes(b'crashed')
    (base / f'{OTHER}.partial-0a1b2c3d4e5f').write_bytes(b'in progress elsewhere')
    (base / f'{IMAGE}.vhdx').write_bytes(b'image')

    files.stage(str(base), IMAGE)

    assert sorted(os.listdir(base)) == sorted([f'{IMAGE}.vhdx',
                                               f'{OTHER}.partial-0a1b2c3d4e5f'])


def test_local_failure_names_the_folder(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    with pytest.raises(ImageTransferError, match='file'):
        hostfiles.LocalFiles().stage(str(blocker / '_base'), IMAGE)


def test_discard_removes_the_staged_file_once(tmp_path):
    files = hostfiles.LocalFiles()
    staged = staged_file(files, str(tmp_path), IMAGE, b'x')
    files.discard(staged)
    files.discard(staged)
    assert os.listdir(tmp_path) == []


# -- sim: the simulated host -------------------------------------------------------------

@pytest.fixture
def host():
    return SimHost()


def test_sim_registers_the_image_with_its_real_format_and_size(host, tmp_path):
    files = hostfiles.RunnerFiles(SimRunner(host).put_file, staging_dir=str(tmp_path))
    staged = staged_file(files, BASE, IMAGE, b'v' * 1000)

    files.publish(staged, f'{BASE}\\{IMAGE}.vhdx', VHDX)

    entry = host.get_vhd(f'{BASE}\\{IMAGE}.vhdx')
    assert entry.size == VHDX.file_size_bytes
    assert (entry.vhd.format, entry.vhd.vhd_type, entry.vhd.size) == ('VHDX', 'Dynamic',
                                                                      20 * GIB)
    assert os.listdir(tmp_path) == []
    host.check_consistency()


def test_sim_iso_is_a_plain_file(host, tmp_path):
    files = hostfiles.RunnerFiles(SimRunner(host).put_file, staging_dir=str(tmp_path))
    staged = staged_file(files, BASE, IMAGE, b'i' * 2048)

    files.publish(staged, f'{BASE}\\{IMAGE}.iso', ImageFileInfo('iso', 2048, 2048))

    assert host.get_item(f'{BASE}\\{IMAGE}.iso').size == 2048
    assert host.get_item(f'{BASE}\\{IMAGE}.iso').vhd is None


def test_sim_keeps_an_existing_file(host, tmp_path):
    files = hostfiles.RunnerFiles(SimRunner(host).put_file, staging_dir=str(tmp_path))
    host.make_dir(BASE)
    host.new_vhd(f'{BASE}\\{IMAGE}.vhdx', GIB)

    files.publish(staged_file(files, BASE, IMAGE, b'x'), f'{BASE}\\{IMAGE}.vhdx', VHDX)

    assert host.get_vhd(f'{BASE}\\{IMAGE}.vhdx').vhd.size == GIB
    assert os.listdir(tmp_path) == []


def test_sim_full_volume_is_a_transfer_error(tmp_path):
    host = SimHost(disk_gb=1)
    files = hostfiles.RunnerFiles(SimRunner(host).put_file, staging_dir=str(tmp_path))
    staged = staged_file(files, BASE, IMAGE, b'x')

    with pytest.raises(ImageTransferError, match='not enough space'):
        files.publish(staged, f'{BASE}\\{IMAGE}.vhdx',
                      ImageFileInfo('vhdx', 20 * GIB, 2 * GIB, 'Fixed'))

    assert not host.exists(f'{BASE}\\{IMAGE}.vhdx')
    assert os.listdir(tmp_path) == []


# -- psrp: SMB paths ---------------------------------------------------------------------

@pytest.mark.parametrize('instances_path, share, host_path, unc', [
    (INSTANCES, 'Instances', f'{BASE}\\{IMAGE}.vhdx',
     f'\\\\hv01\\Instances\\_base\\{IMAGE}.vhdx'),
    ('c:\\openstack\\instances\\', 'Instances', f'{BASE}\\{IMAGE}.vhdx',
     f'\\\\hv01\\Instances\\_base\\{IMAGE}.vhdx'),
    ('C:\\ClusterStorage\\Volume1\\Instances', 'CSV1Instances',
     f'C:\\ClusterStorage\\Volume1\\Instances\\_base\\{IMAGE}.vhd',
     f'\\\\hv01\\CSV1Instances\\_base\\{IMAGE}.vhd'),
    ('D:\\VMs', '\\\\fs01\\VMs', f'D:\\VMs\\_base\\{IMAGE}.iso',
     f'\\\\fs01\\VMs\\_base\\{IMAGE}.iso'),
    ('\\\\sofs\\openstack\\Instances', '', f'\\\\sofs\\openstack\\Instances\\_base\\{IMAGE}.vhdx',
     f'\\\\sofs\\openstack\\Instances\\_base\\{IMAGE}.vhdx'),
])
def test_unc_path_of_a_host_path(instances_path, share, host_path, unc):
    files = hostfiles.SmbFiles('hv01', share, instances_path)
    assert files.unc_path(host_path) == unc


def test_empty_share_is_reported_at_first_use_with_what_to_do(tmp_path):
    files = hostfiles.SmbFiles('hv01', '', INSTANCES, staging_dir=str(tmp_path))
    staged = staged_file(files, BASE, IMAGE, b'x')

    with pytest.raises(ImageTransferError, match='instances_path_share is empty') as err:
        files.publish(staged, f'{BASE}\\{IMAGE}.vhdx', VHDX)

    assert 'New-SmbShare' in str(err.value) and INSTANCES in str(err.value)


def test_a_path_outside_instances_path_is_refused():
    files = hostfiles.SmbFiles('hv01', 'Instances', INSTANCES)
    with pytest.raises(ImageTransferError, match='not under instances_path'):
        files.unc_path('C:\\OpenStack\\Instances2\\_base\\x.vhdx')


def test_unreachable_server_is_a_transfer_error(tmp_path):
    files = hostfiles.SmbFiles(LOOPBACK, 'Instances', INSTANCES, username='u', password='p',
                               port=free_port(), connection_timeout=2,
                               staging_dir=str(tmp_path))
    staged = staged_file(files, BASE, IMAGE, b'x')
    with pytest.raises(ImageTransferError, match=LOOPBACK):
        files.publish(staged, f'{BASE}\\{IMAGE}.vhdx', VHDX)
    assert os.listdir(tmp_path) == []


# -- choosing by transport ----------------------------------------------------------------

@pytest.fixture
def conf():
    fixture = config_fixture.Config(cfg.CONF)
    fixture.setUp()
    yield fixture
    fixture.cleanUp()


def test_files_follow_the_transport(conf, host):
    bridge = Bridge(SimRunner(host))
    conf.config(transport='local', group='powershell')
    assert isinstance(hostfiles.for_transport(cfg.CONF, bridge), hostfiles.LocalFiles)
    conf.config(transport='sim', group='powershell')
    sim = hostfiles.for_transport(cfg.CONF, bridge)
    assert isinstance(sim, hostfiles.RunnerFiles) and sim._put_file.__self__ is bridge.runner
    conf.config(transport='psrp', psrp_host='hv01.example.org', psrp_username='EXAMPLE\\nova',
                psrp_password='s3cret', psrp_auth='ntlm', group='powershell')
    conf.config(instances_path=INSTANCES)
    conf.config(instances_path_share='Instances', group='hyperv')
    smb = hostfiles.for_transport(cfg.CONF, bridge)
    assert isinstance(smb, hostfiles.SmbFiles)
    assert smb.unc_path(f'{BASE}\\x.vhdx') == '\\\\hv01.example.org\\Instances\\_base\\x.vhdx'
    assert (smb._username, smb._password, smb._auth_protocol) == ('EXAMPLE\\nova', 's3cret',
                                                                  'ntlm')


# -- psrp: a real SMB server ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SambaServer:
    port: int
    share: str
    share_dir: Path
    username: str
    password: str


SMB_CONF = """[global]
    workgroup = WORKGROUP
    netbios name = PSDRIVERTEST
    server role = standalone server
    interfaces = lo
    bind interfaces only = yes
    smb ports = {port}
    disable netbios = yes
    server signing = mandatory
    server min protocol = SMB2_10
    private dir = {work}/private
    lock directory = {work}/lock
    state directory = {work}/state
    cache directory = {work}/cache
    pid directory = {work}/pid
    ncalrpc dir = {work}/ncalrpc
    passdb backend = tdbsam:{work}/private/passdb.tdb
    log file = {work}/log.%m
    load printers = no
    printing = bsd
    printcap name = /dev/null
    disable spoolss = yes

[{share}]
    path = {work}/share
    read only = no
    valid users = {user}
"""


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.2):
        return True
    return False


@contextlib.contextmanager
def run_samba() -> Iterator[SambaServer]:
    """smbd on a free loopback port, one share, one user (this process's user)."""
    smbd = require_binary('smbd', 'samba', candidates=('/usr/sbin/smbd',))
    smbpasswd = require_binary('smbpasswd', 'samba', candidates=('/usr/bin/smbpasswd',))
    if os.geteuid() != 0:
        missing('smbpasswd -a and smbd need root')
    work = Path(scratch_dir('psdriver-smb-'))
    user = pwd.getpwuid(os.geteuid()).pw_name
    password = 'Pw-' + secrets.token_hex(8)
    daemon = None
    try:
        for sub in ('private', 'lock', 'state', 'cache', 'pid', 'ncalrpc', 'share'):
            (work / sub).mkdir()
        port = free_port()
        conf_path = work / 'smb.conf'
        conf_path.write_text(SMB_CONF.format(port=port, work=work, share='Instances', user=user))
        subprocess.run([smbpasswd, '-c', str(conf_path), '-s', '-a', user],
                       input=f'{password}\n{password}\n', text=True, check=True,
                       capture_output=True)
        daemon = Daemon([smbd, '-F', '--no-process-group', '-s', str(conf_path),
                         '--debug-stdout', '-d', '1'], work / 'smbd.log')
        if not daemon.wait_until(lambda: _listening(port), timeout=20):
            pytest.fail(f'smbd did not start:\n{daemon.log_tail()}', pytrace=False)
        yield SambaServer(port, 'Instances', work / 'share', user, password)
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope='module')
def samba() -> Iterator[SambaServer]:
    with run_samba() as server:
        yield server


@pytest.fixture
def smb(samba, tmp_path):
    """SmbFiles for the share, with an empty share folder and staging folder."""
    for child in samba.share_dir.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    staging = tmp_path / 'staging'
    files = hostfiles.SmbFiles(LOOPBACK, samba.share, INSTANCES, username=samba.username,
                               password=samba.password, port=samba.port,
                               staging_dir=str(staging))
    yield files
    files.close()


def test_smb_copy_arrives_complete_under_its_final_name(smb, samba, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 7)
    staged = staged_file(smb, BASE, IMAGE, data)
    final = samba.share_dir / '_base' / f'{IMAGE}.vhdx'
    real_rename = smbclient.rename
    seen = []

    def rename(src, dst, **kwargs):
        # At the rename, the whole file is there under the temporary name only.
        seen.append((src, dst, Path(samba.share_dir, '_base', src.rsplit('\\', 1)[1])
                     .read_bytes() == data, final.exists()))
        return real_rename(src, dst, **kwargs)

    with mock.patch('smbclient.rename', side_effect=rename, autospec=True):
        smb.publish(staged, f'{BASE}\\{IMAGE}.vhdx', VHDX)

    assert final.read_bytes() == data
    assert os.listdir(samba.share_dir / '_base') == [f'{IMAGE}.vhdx']
    assert not os.path.exists(staged)
    [(src, dst, complete, final_existed)] = seen
    assert src.startswith(f'\\\\{LOOPBACK}\\Instances\\_base\\{IMAGE}.partial-')
    assert dst == f'\\\\{LOOPBACK}\\Instances\\_base\\{IMAGE}.vhdx'
    assert complete and not final_existed


def test_smb_keeps_a_file_that_is_there_and_removes_left_overs(smb, samba):
    base = samba.share_dir / '_base'
    base.mkdir()
    (base / f'{IMAGE}.vhdx').write_bytes(b'old')
    (base / f'{IMAGE}.partial-0a1b2c3d4e5f').write_bytes(b'crashed copy')
    (base / f'{OTHER}.partial-0a1b2c3d4e5f').write_bytes(b'another image')
    staged = staged_file(smb, BASE, IMAGE, b'new')

    smb.publish(staged, f'{BASE}\\{IMAGE}.vhdx', VHDX)

    assert (base / f'{IMAGE}.vhdx').read_bytes() == b'old'
    assert sorted(os.listdir(base)) == sorted([f'{IMAGE}.vhdx',
                                               f'{OTHER}.partial-0a1b2c3d4e5f'])
    assert not os.path.exists(staged)


def test_smb_wrong_password_is_a_transfer_error_without_the_password(smb, samba, tmp_path):
    files = hostfiles.SmbFiles(LOOPBACK, samba.share, INSTANCES, username=samba.username,
                               password='Wrong-' + samba.password, port=samba.port,
                               staging_dir=str(tmp_path))
    staged = staged_file(files, BASE, IMAGE, b'x')
    try:
        with pytest.raises(ImageTransferError, match='LogonFailure') as err:
            files.publish(staged, f'{BASE}\\{IMAGE}.vhdx', VHDX)
    finally:
        files.close()
    assert samba.password not in str(err.value)
    assert not os.path.exists(staged)
    assert not (samba.share_dir / '_base').exists()


def test_smb_reuses_its_session(smb, samba):
    for image_id in (IMAGE, OTHER):
        smb.publish(staged_file(smb, BASE, image_id, image_id.encode()),
                    f'{BASE}\\{image_id}.vhdx', VHDX)
    assert sorted(os.listdir(samba.share_dir / '_base')) == sorted([f'{IMAGE}.vhdx',
                                                                    f'{OTHER}.vhdx'])
    assert len(smb._cache) == 1


# -- small files the driver writes (shielding data) ----------------------------------------

SECRET = b'\x00\x01 shielding data \xff'


def test_local_write_bytes_creates_the_folder_and_replaces_a_file(tmp_path):
    files = hostfiles.LocalFiles()
    target = tmp_path / 'instance-1' / 'shielding.pdk'
    files.write_bytes(str(target), b'old')
    files.write_bytes(str(target), SECRET)
    assert target.read_bytes() == SECRET
    assert os.listdir(target.parent) == ['shielding.pdk']     # no temporary file left
    files.remove(str(target))
    files.remove(str(target))                                  # gone already: fine
    assert not target.exists()


def test_sim_write_bytes_keeps_the_content_on_the_host(host):
    files = hostfiles.RunnerFiles(SimRunner(host).put_file, runner=SimRunner(host))
    path = f'{INSTANCES}\\instance-1\\shielding.pdk'
    files.write_bytes(path, SECRET)
    assert host.read_file(path) == SECRET
    files.remove(path)
    assert not host.exists(path)


def test_smb_write_bytes_arrives_whole_over_the_share(smb, samba):
    path = f'{INSTANCES}\\instance-1\\shielding.pdk'
    smb.write_bytes(path, b'old')
    smb.write_bytes(path, SECRET)
    assert (samba.share_dir / 'instance-1' / 'shielding.pdk').read_bytes() == SECRET
    assert os.listdir(samba.share_dir / 'instance-1') == ['shielding.pdk']
    smb.remove(path)
    assert os.listdir(samba.share_dir / 'instance-1') == []
