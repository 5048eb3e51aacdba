"""compute-hyperv configuration files load unchanged, with the same meaning.

Each fixture is parsed into a fresh ConfigOpts holding nova's options, the
oslo libraries' options a compute node uses, and psdriver's. Every option
in the file must be known (by its name or a deprecated name) and every
value must come out as documented.
"""

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from nova.conf import opts as nova_opts
from oslo_config import cfg

import psdriver.conf

FIXTURES = Path(__file__).resolve().parent / 'fixtures'
CLUSTER_CONF = FIXTURES / 'compute_hyperv_nova.conf'
CSV_CONF = FIXTURES / 'compute_hyperv_nova_csv.conf'

LIBRARY_NAMESPACES = ('oslo.log', 'oslo.messaging', 'oslo.concurrency')

INITIATORS = [
    r'PCI\VEN_1077&DEV_2031&SUBSYS_17E8103C&REV_02\4&257301f0&0&0010_0',
    r'PCI\VEN_1077&DEV_2031&SUBSYS_17E8103C&REV_02\4&257301f0&0&0010_1',
]

# (group, option, type, default) of every option compute-hyperv's nova.conf
# could hold in the groups nova 34 no longer registers: nova's [hyperv] (up
# to release 28), compute-hyperv's additions, [coordination] and [rdp].
COMPUTE_HYPERV_OPTIONS = [
    ('hyperv', 'dynamic_memory_ratio', cfg.FloatOpt, 1.0),
    ('hyperv', 'enable_instance_metrics_collection', cfg.BoolOpt, False),
    ('hyperv', 'instances_path_share', cfg.StrOpt, ''),
    ('hyperv', 'limit_cpu_features', cfg.BoolOpt, False),
    ('hyperv', 'mounted_disk_query_retry_count', cfg.IntOpt, 10),
    ('hyperv', 'mounted_disk_query_retry_interval', cfg.IntOpt, 5),
    ('hyperv', 'power_state_check_timeframe', cfg.IntOpt, 60),
    ('hyperv', 'power_state_event_polling_interval', cfg.IntOpt, 2),
    ('hyperv', 'qemu_img_cmd', cfg.StrOpt, 'qemu-img.exe'),
    ('hyperv', 'vswitch_name', cfg.StrOpt, None),
    ('hyperv', 'wait_soft_reboot_seconds', cfg.IntOpt, 60),
    ('hyperv', 'config_drive_cdrom', cfg.BoolOpt, False),
    ('hyperv', 'config_drive_inject_password', cfg.BoolOpt, False),
    ('hyperv', 'volume_attach_retry_count', cfg.IntOpt, 10),
    ('hyperv', 'volume_attach_retry_interval', cfg.IntOpt, 5),
    ('hyperv', 'enable_remotefx', cfg.BoolOpt, False),
    ('hyperv', 'use_multipath_io', cfg.BoolOpt, False),
    ('hyperv', 'iscsi_initiator_list', cfg.ListOpt, []),
    ('hyperv', 'evacuate_task_state_timeout', cfg.IntOpt, 600),
    ('hyperv', 'cluster_event_check_interval', cfg.IntOpt, 2),
    ('hyperv', 'instance_automatic_shutdown', cfg.BoolOpt, False),
    ('hyperv', 'instance_live_migration_timeout', cfg.IntOpt, 300),
    ('hyperv', 'max_failover_count', cfg.IntOpt, 1),
    ('hyperv', 'failover_period', cfg.IntOpt, 6),
    ('hyperv', 'auto_failback', cfg.BoolOpt, True),
    ('hyperv', 'force_destroy_instances', cfg.BoolOpt, False),
    ('hyperv', 'move_disks_on_cold_migration', cfg.BoolOpt, True),
    ('coordination', 'backend_url', cfg.StrOpt, 'file:///C:/OpenStack/Lock'),
    ('rdp', 'enabled', cfg.BoolOpt, False),
    ('rdp', 'html5_proxy_base_url', cfg.URIOpt, 'http://127.0.0.1:6083/'),
]

# Read by the driver, registered by nova: psdriver must never define them.
NOVA_OWNED = [
    ('DEFAULT', 'compute_driver'),
    ('DEFAULT', 'instances_path'),
    ('DEFAULT', 'sync_power_state_interval'),
    ('DEFAULT', 'mkisofs_cmd'),
    ('image_cache', 'remove_unused_base_images'),
    ('workarounds', 'handle_virt_lifecycle_events'),
    ('pci', 'device_spec'),
    ('serial_console', 'enabled'),
]


def _group_name(group) -> str:
    if group is None:
        return 'DEFAULT'
    return getattr(group, 'name', group)


def _option_lists():
    lists = list(nova_opts.list_opts())
    by_name = {e.name: e for e in entry_points(group='oslo.config.opts')}
    for namespace in LIBRARY_NAMESPACES:
        lists.extend(by_name[namespace].load()())
    return lists


def _parse(conf: cfg.ConfigOpts, files=()) -> None:
    """Parse exactly ``files``: no command line, no default file search."""
    conf(args=[], default_config_files=[str(f) for f in files], default_config_dirs=[])


def _fresh_conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    for group, opts in _option_lists():
        if isinstance(group, cfg.OptGroup):
            conf.register_group(group)
        name = _group_name(group)
        for opt in opts:
            if opt.required:
                # keystoneauth plugin options nova lists for its clients; a
                # compute node registers them only for the configured plugin.
                continue
            try:
                conf.register_opt(opt, group=None if name == 'DEFAULT' else name)
            except cfg.DuplicateOptError:
                pass  # nova lists some keystoneauth options more than once
    psdriver.conf.register_opts(conf)
    return conf


def _known_names(conf_lists) -> set[tuple[str, str]]:
    known = set()
    for group, opts in conf_lists:
        name = _group_name(group)
        for opt in opts:
            known.add((name, opt.dest))
            for old in opt.deprecated_opts:
                known.add((old.group or name, (old.name or opt.name).replace('-', '_')))
    return known


def _unknown_options(path: Path) -> list[tuple[str, str]]:
    sections: dict = {}
    cfg.ConfigParser(str(path), sections).parse()
    known = _known_names(_option_lists() + psdriver.conf.list_opts())
    return sorted((section, key) for section, values in sections.items()
                  for key in values if (section, key) not in known)


def _load(path: Path) -> cfg.ConfigOpts:
    conf = _fresh_conf()
    _parse(conf, [path])
    return conf


@pytest.mark.parametrize('path', [CLUSTER_CONF, CSV_CONF], ids=lambda p: p.name)
def test_fixture_has_no_unknown_option(path):
    assert _unknown_options(path) == []


def test_unknown_option_is_reported(tmp_path):
    bad = tmp_path / 'bad.conf'
    bad.write_text('[hyperv]\nuse_multipath_io = True\nuse_multipath = True\n'
                   '[powershell]\ntransport = sim\nexecutable_path = pwsh\n')
    assert _unknown_options(bad) == [('hyperv', 'use_multipath'),
                                     ('powershell', 'executable_path')]


@pytest.mark.parametrize('path', [CLUSTER_CONF, CSV_CONF], ids=lambda p: p.name)
def test_every_psdriver_value_in_fixture_is_valid(path):
    conf = _load(path)
    for group, opts in psdriver.conf.list_opts():
        for opt in opts:
            getattr(conf[group.name], opt.dest)  # raises on a bad value


def test_cluster_fixture_values():
    conf = _load(CLUSTER_CONF)
    assert conf.compute_driver == 'compute_hyperv.cluster.driver.HyperVClusterDriver'
    assert conf.instances_path == r'\\fileserver\share\OpenStack\Instances'
    assert conf.sync_power_state_interval == -1
    assert conf.image_cache.remove_unused_base_images is False
    assert conf.workarounds.handle_virt_lifecycle_events is False
    assert conf.mkisofs_cmd == (
        r'C:\Program Files\Cloudbase Solutions\OpenStack\Nova\bin\mkisofs.exe')
    assert conf.pci.device_spec == ['[{"vendor_id": "10de", "product_id": "1eb8"}]']
    assert conf.serial_console.enabled is True
    assert conf.oslo_concurrency.lock_path == r'C:\OpenStack\Lock'

    hv = conf.hyperv
    assert hv.vswitch_name == 'external-vswitch'
    assert hv.limit_cpu_features is True
    assert hv.dynamic_memory_ratio == 1.5
    assert hv.enable_instance_metrics_collection is True
    assert hv.instances_path_share == 'OpenStackInstances'
    assert hv.wait_soft_reboot_seconds == 120
    assert hv.config_drive_cdrom is True
    assert hv.config_drive_inject_password is True
    assert hv.qemu_img_cmd == (
        r'C:\Program Files\Cloudbase Solutions\OpenStack\Nova\bin\qemu-img.exe')
    assert hv.power_state_check_timeframe == 30
    assert hv.power_state_event_polling_interval == 3
    assert hv.enable_remotefx is False
    assert hv.use_multipath_io is True
    assert hv.volume_attach_retry_count == 20
    assert hv.volume_attach_retry_interval == 3
    assert hv.mounted_disk_query_retry_count == 15
    assert hv.mounted_disk_query_retry_interval == 4
    assert hv.iscsi_initiator_list == INITIATORS
    assert hv.evacuate_task_state_timeout == 900
    assert hv.instance_automatic_shutdown is True
    assert hv.instance_live_migration_timeout == 600
    assert hv.max_failover_count == 3
    assert hv.failover_period == 12
    assert hv.auto_failback is False
    assert hv.force_destroy_instances is True
    assert hv.move_disks_on_cold_migration is False

    assert conf.coordination.backend_url == 'etcd3+http://etcd.example.org:2379'
    assert conf.rdp.enabled is True
    assert conf.rdp.html5_proxy_base_url == 'https://rdp.example.org:8000/'
    assert conf.os_win.wmi_job_terminate_timeout == 180
    # Not in the file: psdriver's own defaults apply.
    assert conf.powershell.transport == 'local'


def test_csv_fixture_values():
    conf = _load(CSV_CONF)
    assert conf.compute_driver == 'compute_hyperv.driver.HyperVDriver'
    assert conf.instances_path == r'C:\ClusterStorage\Volume1\OpenStack\Instances'
    assert conf.image_cache.remove_unused_base_images is False
    assert conf.pci.device_spec == ['{"vendor_id": "8086", "product_id": "1572"}']
    assert conf.coordination.backend_url == 'file:////fileserver/locks/openstack'
    assert conf.hyperv.vswitch_name == 'br-ext'
    assert conf.hyperv.iscsi_initiator_list == [r'ROOT\ISCSIPRT\0000_0']
    assert conf.hyperv.use_multipath_io is False


@pytest.mark.parametrize('group,name,opt_type,default', COMPUTE_HYPERV_OPTIONS,
                         ids=lambda v: v if isinstance(v, str) else None)
def test_compute_hyperv_option_kept(group, name, opt_type, default):
    opts = {g.name: {o.dest: o for o in os} for g, os in psdriver.conf.list_opts()}
    opt = opts[group][name]
    assert type(opt) is opt_type
    assert opt.default == default
    conf = _fresh_conf()
    _parse(conf)
    assert conf[group][name] == default


def test_nova_options_are_never_registered_by_psdriver():
    ours = {(g.name, o.dest) for g, opts in psdriver.conf.list_opts() for o in opts}
    for pair in NOVA_OWNED:
        assert pair in psdriver.conf.nova_owned()
        assert pair not in ours


def test_register_opts_is_idempotent():
    conf = cfg.ConfigOpts()
    psdriver.conf.register_opts(conf)
    psdriver.conf.register_opts(conf)
    _parse(conf)
    assert conf.hyperv.volume_attach_retry_count == 10
    assert conf.powershell.psrp_pool_size == 4


def test_register_opts_keeps_an_existing_definition():
    conf = cfg.ConfigOpts()
    theirs = cfg.StrOpt('backend_url', default='etcd3+http://elsewhere:2379')
    conf.register_opt(theirs, group='coordination')
    psdriver.conf.register_opts(conf)
    _parse(conf)
    assert conf.coordination.backend_url == 'etcd3+http://elsewhere:2379'
    assert conf.hyperv.use_multipath_io is False


def test_registered_on_the_global_nova_conf():
    import nova.conf
    assert nova.conf.CONF is cfg.CONF
    assert nova.conf.CONF.hyperv.iscsi_initiator_list == []
    assert nova.conf.CONF.powershell.transport == 'local'


def _psdriver_conf(tmp_path, text: str) -> cfg.ConfigOpts:
    path = tmp_path / 'nova.conf'
    path.write_text(text, encoding='utf-8')
    conf = cfg.ConfigOpts()
    psdriver.conf.register_opts(conf)
    _parse(conf, [path])
    return conf


def test_powershell_defaults():
    conf = cfg.ConfigOpts()
    psdriver.conf.register_opts(conf)
    _parse(conf)
    ps = conf.powershell
    assert (ps.transport, ps.executable, ps.scripts_dir, ps.default_timeout) == (
        'local', 'auto', None, None)
    assert (ps.psrp_host, ps.psrp_port, ps.psrp_ssl, ps.psrp_cert_validation) == (
        None, 5986, True, 'true')
    assert (ps.psrp_auth, ps.psrp_message_encryption, ps.psrp_pool_size) == (
        'negotiate', 'auto', 4)
    assert (ps.psrp_username, ps.psrp_password) == (None, None)
    assert (ps.psrp_certificate_pem, ps.psrp_certificate_key_pem, ps.sim_state_file) == (
        None, None, None)


def test_powershell_psrp_settings(tmp_path):
    conf = _psdriver_conf(tmp_path, (
        '[powershell]\ntransport = psrp\nexecutable = powershell.exe\n'
        'psrp_host = hv01.example.org\npsrp_port = 5985\npsrp_ssl = False\n'
        'psrp_cert_validation = /etc/ssl/certs/hyperv-ca.pem\npsrp_auth = credssp\n'
        'psrp_username = EXAMPLE\\nova\npsrp_password = s3cr3t&$$x\n'
        'psrp_message_encryption = always\npsrp_pool_size = 8\n'
        'psrp_reconnect_backoff = 0.5\ndefault_timeout = 900\n'))
    ps = conf.powershell
    assert ps.transport == 'psrp'
    assert ps.executable == 'powershell.exe'
    assert (ps.psrp_host, ps.psrp_port, ps.psrp_ssl) == ('hv01.example.org', 5985, False)
    assert ps.psrp_cert_validation == '/etc/ssl/certs/hyperv-ca.pem'
    assert ps.psrp_auth == 'credssp'
    assert ps.psrp_username == 'EXAMPLE\\nova'
    assert ps.psrp_password == 's3cr3t&$x'
    assert ps.psrp_message_encryption == 'always'
    assert ps.psrp_pool_size == 8
    assert ps.psrp_reconnect_backoff == 0.5
    assert ps.default_timeout == 900


@pytest.mark.parametrize('group,name,value', [
    ('powershell', 'transport', 'winrm'),
    ('powershell', 'psrp_auth', 'digest'),
    ('powershell', 'psrp_message_encryption', 'sometimes'),
    ('powershell', 'psrp_pool_size', '0'),
    ('powershell', 'psrp_port', '70000'),
    ('powershell', 'psrp_host', 'not a host name'),
    ('hyperv', 'max_failover_count', '0'),
    ('hyperv', 'volume_attach_retry_count', '-1'),
    ('hyperv', 'use_multipath_io', 'maybe'),
])
def test_invalid_values_are_rejected(tmp_path, group, name, value):
    conf = _psdriver_conf(tmp_path, f'[{group}]\n{name} = {value}\n')
    with pytest.raises(cfg.ConfigFileValueError):
        getattr(conf[group], name)


def test_password_is_secret():
    opts = {o.dest: o for g, os in psdriver.conf.list_opts()
            if g.name == 'powershell' for o in os}
    assert opts['psrp_password'].secret is True
    assert [name for name, opt in opts.items() if opt.secret] == ['psrp_password']
