"""``psdriver fleet render``: the files, re-rendering, hosts added, removed and renamed."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from psdriver import cli
from psdriver.fleet import inventory, render

HOSTS = {
    'hv01': '  - name: hv01\n    address: hv01.example.org\n'
            '    credentials: /etc/nova/fleet/credentials/hv01.conf\n',
    'hv02': '  - name: hv02\n    address: hv02.example.org\n    port: 5985\n    ssl: false\n'
            '    credentials: /etc/nova/fleet/credentials/hv02.conf\n    cluster: clu1\n'
            '    share: Instances$\n',
    'hv03': '  - name: hv03\n    address: hv03.example.org\n'
            '    credentials: /etc/nova/fleet/credentials/hv03.conf\n',
}
HEAD = ('defaults:\n  username: EXAMPLE\\nova-hyperv\n  instances_path: C:\\OpenStack\\Instances\n'
        'hosts:\n')


def inventory_file(tmp_path: Path, names: list[str], extra: str = '') -> str:
    path = tmp_path / 'fleet.yaml'
    path.write_text(extra + HEAD + ''.join(HOSTS[n] for n in names), encoding='utf-8')
    return str(path)


def tree(root: Path) -> dict[str, str]:
    return {'/' + str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob('*'))
            if p.is_file()}


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(['fleet', *argv])
    return code, capsys.readouterr().out


def oslo_ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, default_section='-')
    parser.read_string(text)
    return parser


# -- what is rendered ---------------------------------------------------------------------------

def test_each_host_gets_its_fragment_drop_in_and_the_shared_units(tmp_path, capsys):
    root = tmp_path / 'root'
    code, out = run_cli(capsys, 'render', '-i', inventory_file(tmp_path, ['hv01', 'hv02']),
                        '--root', str(root))
    assert code == 0
    files = tree(root)
    assert sorted(files) == [
        '/etc/nova/fleet/.psdriver-fleet.json', '/etc/nova/fleet/hv01.conf',
        '/etc/nova/fleet/hv02.conf', '/etc/systemd/system/nova-compute@.service',
        '/etc/systemd/system/nova-compute@hv01.service.d/psdriver-fleet.conf',
        '/etc/systemd/system/nova-compute@hv02.service.d/psdriver-fleet.conf',
        '/etc/systemd/system/psdriver-fleet.target']
    assert out.count('added') == 7 and '7 file(s) changed, 0 unchanged (2 hosts)' in out
    hv02 = oslo_ini(files['/etc/nova/fleet/hv02.conf'])
    assert dict(hv02['DEFAULT']) == {
        'host': 'hv02', 'state_path': '/var/lib/nova/fleet/hv02',
        'compute_driver': 'psdriver.cluster.driver.HyperVClusterDriver',
        'instances_path': 'C:\\OpenStack\\Instances'}
    assert dict(hv02['powershell']) == {
        'transport': 'psrp', 'psrp_host': 'hv02.example.org', 'psrp_port': '5985',
        'psrp_ssl': 'false', 'psrp_cert_validation': 'true', 'psrp_auth': 'negotiate',
        'psrp_message_encryption': 'auto', 'psrp_username': 'EXAMPLE\\nova-hyperv'}
    # oslo.config interpolates $name: a literal $ is written $$
    assert hv02['hyperv']['instances_path_share'] == 'Instances$$'
    assert hv02['oslo_concurrency']['lock_path'] == '/var/lib/nova/fleet/hv02/locks'
    hv01 = oslo_ini(files['/etc/nova/fleet/hv01.conf'])
    assert hv01['DEFAULT']['compute_driver'] == 'psdriver.driver.HyperVDriver'
    assert 'hyperv' not in hv01
    assert not [path for path, text in files.items() if 'psrp_password' in text]
    drop_in = files['/etc/systemd/system/nova-compute@hv02.service.d/psdriver-fleet.conf']
    assert ('LoadCredential=psrp-credentials.conf:/etc/nova/fleet/credentials/hv02.conf'
            in drop_in.splitlines())
    unit = files['/etc/systemd/system/nova-compute@.service']
    assert ('ExecStart=/usr/bin/nova-compute --config-file /etc/nova/nova.conf \\\n'
            '    --config-file /etc/nova/fleet/%i.conf --config-file '
            '%d/psrp-credentials.conf') in unit
    assert 'StateDirectory=nova/fleet/%i' in unit and 'User=nova' in unit
    target = files['/etc/systemd/system/psdriver-fleet.target']
    assert 'Wants=nova-compute@hv01.service nova-compute@hv02.service' in target


def test_the_rendered_fragment_is_what_oslo_config_reads(tmp_path):
    """nova-compute's view: the common file, then the host's fragment, then its credentials."""
    from oslo_config import cfg

    import psdriver.conf

    fleet = inventory.load(inventory_file(tmp_path, ['hv02']))
    files = render.render(fleet)
    common = tmp_path / 'nova.conf'
    common.write_text('[DEFAULT]\nhost = wrong\n[powershell]\npsrp_port = 1\n'
                      'psrp_pool_size = 2\n')
    fragment = tmp_path / 'hv02.conf'
    fragment.write_text(files['/etc/nova/fleet/hv02.conf'])
    secrets = tmp_path / 'credentials.conf'
    secrets.write_text('[powershell]\npsrp_password = pa$$word\n')
    conf = cfg.ConfigOpts()
    psdriver.conf.register_opts(conf)
    for name in ('host', 'state_path', 'instances_path', 'compute_driver'):
        conf.register_opt(cfg.StrOpt(name))
    conf(['--config-file', str(common), '--config-file', str(fragment),
          '--config-file', str(secrets)])
    assert conf.host == 'hv02' and conf.state_path == '/var/lib/nova/fleet/hv02'
    assert conf.powershell.psrp_port == 5985 and conf.powershell.psrp_pool_size == 2
    assert conf.powershell.psrp_ssl is False
    assert conf.powershell.psrp_username == 'EXAMPLE\\nova-hyperv'
    assert conf.powershell.psrp_password == 'pa$word'
    assert conf.hyperv.instances_path_share == 'Instances$'
    assert conf.instances_path == 'C:\\OpenStack\\Instances'


# -- re-rendering -------------------------------------------------------------------------------

def test_rerender_writes_nothing_and_check_passes(tmp_path, capsys):
    root = tmp_path / 'root'
    path = inventory_file(tmp_path, ['hv01', 'hv02'])
    run_cli(capsys, 'render', '-i', path, '--root', str(root))
    before = {p: os.stat(root / p.lstrip('/')).st_ino for p in tree(root)}
    code, out = run_cli(capsys, 'render', '-i', path, '--root', str(root))
    assert code == 0 and '0 file(s) changed, 7 unchanged' in out
    assert {p: os.stat(root / p.lstrip('/')).st_ino for p in tree(root)} == before
    code, out = run_cli(capsys, 'render', '-i', path, '--root', str(root), '--check')
    assert code == 0 and '0 file(s) would change' in out


def test_a_changed_host_changes_only_its_fragment(tmp_path, capsys):
    root = tmp_path / 'root'
    run_cli(capsys, 'render', '-i', inventory_file(tmp_path, ['hv01', 'hv02']),
            '--root', str(root))
    before = tree(root)
    changed_hosts = dict(HOSTS, hv01=HOSTS['hv01'] + '    port: 15986\n')
    (tmp_path / 'fleet.yaml').write_text(HEAD + changed_hosts['hv01'] + HOSTS['hv02'])
    code, out = run_cli(capsys, 'render', '-i', str(tmp_path / 'fleet.yaml'),
                        '--root', str(root), '--check')
    assert code == 1
    assert 'would change /etc/nova/fleet/hv01.conf' in out
    assert '-psrp_port = 5986\n+psrp_port = 15986\n' in out
    assert tree(root) == before          # --check writes nothing
    inode = (root / 'etc/nova/fleet/hv01.conf').stat().st_ino
    unchanged_inode = (root / 'etc/nova/fleet/hv02.conf').stat().st_ino
    code, out = run_cli(capsys, 'render', '-i', str(tmp_path / 'fleet.yaml'),
                        '--root', str(root))
    assert code == 0
    assert [line.split()[0:2] for line in out.splitlines() if line.startswith('changed')] == [
        ['changed', '/etc/nova/fleet/hv01.conf']]
    assert 'systemctl restart nova-compute@hv01.service\n' in out
    after = tree(root)
    assert {p for p in after if after[p] != before[p]} == {'/etc/nova/fleet/hv01.conf'}
    # a new file renamed over the old one (written while the old one still existed)
    assert (root / 'etc/nova/fleet/hv01.conf').stat().st_ino != inode
    assert (root / 'etc/nova/fleet/hv02.conf').stat().st_ino == unchanged_inode


def test_a_host_added_then_removed(tmp_path, capsys):
    root = tmp_path / 'root'
    run_cli(capsys, 'render', '-i', inventory_file(tmp_path, ['hv01']), '--root', str(root))
    code, out = run_cli(capsys, 'render', '-i', inventory_file(tmp_path, ['hv01', 'hv03']),
                        '--root', str(root))
    assert code == 0
    assert sorted(line.split()[1] for line in out.splitlines() if line.startswith(
        ('added', 'changed'))) == [
        '/etc/nova/fleet/.psdriver-fleet.json', '/etc/nova/fleet/hv03.conf',
        '/etc/systemd/system/nova-compute@hv03.service.d/psdriver-fleet.conf',
        '/etc/systemd/system/psdriver-fleet.target']
    # nova's state of the host (node identity) exists by now; removal must keep it
    state = root / 'var/lib/nova/fleet/hv03'
    state.mkdir(parents=True)
    (state / 'compute_id').write_text('5d7c1d5e-0000-4000-8000-000000000003')
    code, out = run_cli(capsys, 'render', '-i', inventory_file(tmp_path, ['hv01']),
                        '--root', str(root), '--check')
    assert code == 1 and 'would remove /etc/nova/fleet/hv03.conf' in out
    assert '-host = hv03' in out
    code, out = run_cli(capsys, 'render', '-i', inventory_file(tmp_path, ['hv01']),
                        '--root', str(root))
    assert code == 0
    assert sorted(line.split()[1] for line in out.splitlines()
                  if line.startswith('removed')) == [
        '/etc/nova/fleet/hv03.conf',
        '/etc/systemd/system/nova-compute@hv03.service.d/psdriver-fleet.conf']
    assert 'systemctl stop nova-compute@hv03.service' in out
    assert 'state directory /var/lib/nova/fleet/hv03' in out
    assert not (root / 'etc/systemd/system/nova-compute@hv03.service.d').exists()
    assert (state / 'compute_id').read_text().startswith('5d7c1d5e')
    manifest = json.loads((root / 'etc/nova/fleet/.psdriver-fleet.json').read_text())
    assert manifest['hosts'] == ['hv01']
    assert 'hv03' not in (root / 'etc/systemd/system/psdriver-fleet.target').read_text()
    # the next render has nothing left to do
    code, out = run_cli(capsys, 'render', '-i', inventory_file(tmp_path, ['hv01']),
                        '--root', str(root), '--check')
    assert code == 0


def test_a_renamed_host_is_a_removal_and_an_addition(tmp_path, capsys):
    root = tmp_path / 'root'
    run_cli(capsys, 'render', '-i', inventory_file(tmp_path, ['hv01', 'hv02']),
            '--root', str(root))
    renamed = HEAD + HOSTS['hv01'] + HOSTS['hv02'].replace('name: hv02', 'name: hv02b')
    (tmp_path / 'fleet.yaml').write_text(renamed)
    code, out = run_cli(capsys, 'render', '-i', str(tmp_path / 'fleet.yaml'),
                        '--root', str(root))
    assert code == 0
    lines = out.splitlines()
    assert 'added        /etc/nova/fleet/hv02b.conf' in lines
    assert 'removed      /etc/nova/fleet/hv02.conf' in lines
    assert 'nova-compute@hv02.service: the host left the inventory' in out
    assert (root / 'etc/nova/fleet/hv02b.conf').read_text().count('host = hv02b') == 1
    assert not (root / 'etc/nova/fleet/hv02.conf').exists()
    assert 'state_path = /var/lib/nova/fleet/hv02b' in (
        root / 'etc/nova/fleet/hv02b.conf').read_text()


def test_files_are_replaced_atomically_and_foreign_files_are_left_alone(tmp_path, capsys):
    root = tmp_path / 'root'
    foreign = root / 'etc/nova/fleet/credentials/hv01.conf'
    foreign.parent.mkdir(parents=True)
    foreign.write_text('[powershell]\npsrp_password = x\n')
    run_cli(capsys, 'render', '-i', inventory_file(tmp_path, ['hv01', 'hv02']),
            '--root', str(root))
    fragment = root / 'etc/nova/fleet/hv01.conf'
    fragment.write_text('edited by hand\n')
    code, out = run_cli(capsys, 'render', '-i', inventory_file(tmp_path, ['hv02']),
                        '--root', str(root))
    assert code == 0 and foreign.exists()          # not in the manifest: never removed
    # hv01 left: its hand-edited fragment is removed too (it was a generated file)
    assert not fragment.exists()
    code, out = run_cli(capsys, 'render', '-i', inventory_file(tmp_path, ['hv01', 'hv02']),
                        '--root', str(root))
    assert fragment.read_text().startswith('# Generated by `psdriver fleet render`')
    assert oct(fragment.stat().st_mode & 0o777) == '0o644'
    assert not list(root.rglob('*.tmp'))


def test_render_never_removes_a_file_outside_its_directories(tmp_path, capsys):
    root = tmp_path / 'root'
    path = inventory_file(tmp_path, ['hv01'])
    run_cli(capsys, 'render', '-i', path, '--root', str(root))
    manifest = root / 'etc/nova/fleet/.psdriver-fleet.json'
    victim = root / 'etc/passwd'
    victim.write_text('root:x:0:0::/root:/bin/sh\n')
    data = json.loads(manifest.read_text())
    data['files'].append('/etc/passwd')
    manifest.write_text(json.dumps(data))
    assert cli.main(['fleet', 'render', '-i', path, '--root', str(root)]) == 2
    assert 'not removing it' in capsys.readouterr().err
    assert victim.exists()


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'x.conf'
    target.write_text('old\n')

    def boom(src, dst):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'replace', boom)
    with pytest.raises(OSError, match='No space'):
        render.write_atomically(target, 'new\n')
    assert target.read_text() == 'old\n'
    assert [p.name for p in tmp_path.iterdir()] == ['x.conf']


def test_standby_renders_identical_files_from_the_same_inventory(tmp_path, capsys):
    """A standby proves with --check that it would write exactly what the active node has."""
    path = inventory_file(tmp_path, ['hv01', 'hv02', 'hv03'])
    active = tmp_path / 'active'
    run_cli(capsys, 'render', '-i', path, '--root', str(active))
    standby = tmp_path / 'standby'
    shutil.copytree(active, standby)
    assert run_cli(capsys, 'render', '-i', path, '--root', str(standby), '--check')[0] == 0
    (standby / 'etc/nova/fleet/hv02.conf').write_text('drifted\n')
    code, out = run_cli(capsys, 'render', '-i', path, '--root', str(standby), '--check')
    assert code == 1 and '-drifted' in out


def test_bad_inventory_exits_2_naming_the_line(tmp_path, capsys):
    path = tmp_path / 'fleet.yaml'
    path.write_text('hosts:\n  - name: hv01\n    address: a\n    password: hunter2\n')
    assert cli.main(['fleet', 'render', '-i', str(path), '--root', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f'{path}:4:' in err and 'hunter2' not in err


def test_a_compute_id_every_service_would_read_is_refused(tmp_path, capsys):
    root = tmp_path / 'root'
    stray = root / 'etc/nova/compute_id'      # next to the common nova.conf
    stray.parent.mkdir(parents=True)
    stray.write_text('5d7c1d5e-0000-4000-8000-000000000001\n')
    path = inventory_file(tmp_path, ['hv01'])
    assert cli.main(['fleet', 'render', '-i', path, '--root', str(root)]) == 2
    err = capsys.readouterr().err
    assert '/etc/nova/compute_id: nova would read this node identity for every host' in err
    assert not (root / 'etc/nova/fleet').exists()
    stray.rename(root / 'etc/nova/elsewhere')
    assert cli.main(['fleet', 'render', '-i', path, '--root', str(root)]) == 0


def test_loose_credentials_file_is_warned_about(tmp_path, capsys):
    secrets = tmp_path / 'hv01.conf'
    secrets.write_text('[powershell]\npsrp_password = x\n')
    secrets.chmod(0o644)
    path = tmp_path / 'fleet.yaml'
    path.write_text(f'hosts:\n  - name: hv01\n    address: a\n    username: u\n'
                    f'    credentials: {secrets}\n')
    assert cli.main(['fleet', 'render', '-i', str(path), '--root', str(tmp_path / 'r')]) == 0
    assert 'mode 0644; make it 0600' in capsys.readouterr().err
    secrets.chmod(0o600)
    assert cli.main(['fleet', 'render', '-i', str(path), '--root', str(tmp_path / 'r')]) == 0
    assert 'make it 0600' not in capsys.readouterr().err


# -- systemd ------------------------------------------------------------------------------------

def _verify(unit_dir: Path, *units: str) -> subprocess.CompletedProcess:
    return subprocess.run(['systemd-analyze', 'verify', '--man=no',
                           *(str(unit_dir / u) for u in units)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(shutil.which('systemd-analyze') is None,
                    reason='systemd-analyze is not installed')
def test_units_pass_systemd_analyze_verify(tmp_path):
    nova_compute = Path(sys.executable).with_name('nova-compute')
    if not nova_compute.exists():
        nova_compute = Path(shutil.which('true'))
    path = inventory_file(tmp_path, ['hv01', 'hv02'],
                          extra=f'fleet:\n  nova_compute: {nova_compute}\n')
    root = tmp_path / 'root'
    render.apply(inventory.load(path), root)
    units = root / 'etc/systemd/system'
    for name in ('hv01', 'hv02'):   # what `systemctl start nova-compute@hv01` instantiates
        (units / f'nova-compute@{name}.service').symlink_to('nova-compute@.service')
    done = _verify(units, 'nova-compute@hv01.service', 'nova-compute@hv02.service',
                   'psdriver-fleet.target')
    assert done.returncode == 0 and done.stderr == '', done.stderr
    # the check can fail: a unit with a mistake is reported
    template = units / 'nova-compute@.service'
    template.write_text(template.read_text().replace('ExecStart=' + str(nova_compute),
                                                     'ExecStart=/nonexistent/nova-compute'))
    done = _verify(units, 'nova-compute@hv01.service')
    assert done.returncode != 0 and 'not executable' in done.stderr
