"""Configuration options of the psdriver compute driver.

psdriver accepts every option that compute-hyperv and the former in-tree
Hyper-V driver of nova (removed in nova 29) used, with the same names,
groups, types and defaults, so an existing ``nova.conf`` keeps working:

* ``[hyperv]``: the options nova registered until release 28, plus the
  cluster options compute-hyperv added;
* ``[coordination] backend_url``: the distributed lock backend;
* ``[rdp]``: nova's old RDP console options (no longer registered by nova);
* ``[os_win]``: the os-win library options; accepted, without effect.

``[powershell]`` holds psdriver's own options: how the Hyper-V host is
reached (a local PowerShell process, PowerShell Remoting, or the simulator).

Options that nova itself registers are read but never registered here:
``[DEFAULT] compute_driver``, ``instances_path``, ``sync_power_state_interval``,
``mkisofs_cmd``, ``[image_cache] remove_unused_base_images`` (with its old
``[DEFAULT]`` name), ``[workarounds] handle_virt_lifecycle_events``,
``[pci] device_spec`` (old name ``passthrough_whitelist``) and
``[serial_console]``. If a later nova registers one of the options defined
here, nova's definition wins and ours is skipped.

Like the ``nova.conf`` modules, importing this module registers the options
on the global ``cfg.CONF`` (which is ``nova.conf.CONF``), so
``CONF.hyperv.use_multipath_io`` works wherever the driver is loaded.
:func:`register_opts` registers them on any other ``ConfigOpts`` and may be
called more than once. :func:`list_opts` feeds ``oslo-config-generator``
(namespace ``psdriver``). :func:`validate` reads every option once, so that
the driver (and the ``psdriver`` command) stop at start on a bad value,
naming the option and the file.
"""

from __future__ import annotations

import functools
import logging
import math
import re

from oslo_config import cfg

import nova.conf

LOG = logging.getLogger(__name__)

CONF = nova.conf.CONF


# --- [hyperv] ---------------------------------------------------------------

hyperv_group = cfg.OptGroup(
    'hyperv',
    title='Hyper-V driver options',
    help='Options of the Hyper-V compute driver. The names, types and defaults '
         'are those of compute-hyperv and of the Hyper-V driver nova shipped '
         'until release 28, so existing configuration files keep working.')

hyperv_opts = [
    cfg.FloatOpt(
        'dynamic_memory_ratio',
        default=1.0,
        min=0.0,
        help='Ratio between the memory of an instance and the memory it is '
             'started with. 1.0 turns Hyper-V dynamic memory off. A value '
             'above 1.0 turns it on: with 2.0, an instance of 4096 MB starts '
             'with 2048 MB and Hyper-V may grow it up to 4096 MB.'),
    cfg.BoolOpt(
        'enable_instance_metrics_collection',
        default=False,
        help='Turn on Hyper-V resource metering for every instance, so that '
             'other services (for example a telemetry agent) can read '
             'per-instance CPU, disk and network usage.'),
    cfg.StrOpt(
        'instances_path_share',
        default='',
        help='Name of a Windows SMB share that exposes instances_path. Cold '
             'migration and resize copy instance files to the destination '
             'host through this share. When empty, the administrative share '
             'of the drive holding instances_path (for example C$) is used.'),
    cfg.BoolOpt(
        'limit_cpu_features',
        default=False,
        help='Create instances with processor compatibility mode on, which '
             'hides host-specific CPU features. Needed to live migrate between '
             'hosts with different processors. Only affects instances created '
             'after the change.'),
    cfg.IntOpt(
        'mounted_disk_query_retry_count',
        default=10,
        min=0,
        help='How many times to look for the disk of a newly attached volume '
             'before giving up.'),
    cfg.IntOpt(
        'mounted_disk_query_retry_interval',
        default=5,
        min=0,
        help='Seconds between two looks for the disk of a newly attached '
             'volume (see mounted_disk_query_retry_count).'),
    cfg.IntOpt(
        'power_state_check_timeframe',
        default=60,
        min=0,
        help='Time window, in seconds, within which instance power state '
             'changes are looked for.'),
    cfg.IntOpt(
        'power_state_event_polling_interval',
        default=2,
        min=0,
        help='Seconds between two polls of the host for instance power state '
             'changes, which become lifecycle events for nova.'),
    cfg.StrOpt(
        'qemu_img_cmd',
        default='qemu-img.exe',
        help='qemu-img executable used for image conversions that Hyper-V '
             'cannot do itself, such as turning a config drive ISO into a VHD '
             'when config_drive_cdrom is False. A bare name is looked up on '
             'PATH; a full path may be given instead.'),
    cfg.StrOpt(
        'ovs_vsctl_path',
        help='ovs-vsctl of Open vSwitch for Windows on the Hyper-V host, used '
             'to add the network adapters of ports whose VIF type is ovs to '
             'the integration bridge (and remove them again). Unset: '
             'ovs-vsctl.exe is looked up on the PATH of the host. Connect the '
             'adapters to the switch that has the Open vSwitch extension '
             'enabled with vswitch_name.'),
    cfg.IntOpt(
        'shielded_vm_provisioning_timeout',
        default=900,
        min=60,
        max=1700,
        help='Seconds spawn waits for the provisioning of a shielded VM '
             '(os_shielded_vm) that Initialize-ShieldedVM starts on the host. '
             'A provisioning that fails or takes longer fails the build and '
             'removes the VM.'),
    cfg.StrOpt(
        'vswitch_name',
        help='Name of the external Hyper-V virtual switch that instance '
             'network adapters are connected to. When unset, the first '
             'external switch of the host is used.'),
    cfg.IntOpt(
        'wait_soft_reboot_seconds',
        default=60,
        min=0,
        help='Seconds to wait for a guest to shut down during a soft reboot. '
             'If it is still running after that, a hard reboot is done.'),
    cfg.BoolOpt(
        'config_drive_cdrom',
        default=False,
        help='Attach the config drive as a DVD drive (ISO image) instead of '
             'as a disk (VHD image). Requires config_drive_format = iso9660.'),
    cfg.BoolOpt(
        'config_drive_inject_password',
        default=False,
        help='Write the admin password of the instance into its config '
             'drive.'),
    cfg.IntOpt(
        'volume_attach_retry_count',
        default=10,
        min=0,
        help='How many times to try attaching a volume before the attach '
             'fails. Helps with transient storage connectivity problems.'),
    cfg.IntOpt(
        'volume_attach_retry_interval',
        default=5,
        min=0,
        help='Seconds between two volume attach attempts (see '
             'volume_attach_retry_count).'),
    cfg.BoolOpt(
        'enable_remotefx',
        default=False,
        help='Kept for compute-hyperv compatibility only. Microsoft removed '
             'RemoteFX vGPU from Windows Server, and psdriver does not '
             'support it: True is logged as an error when the service '
             'starts, and an instance whose flavor asks for RemoteFX (extra '
             'specs os:resolution, os:monitors, os:vram) is refused either '
             'way instead of booting without it.'),
    cfg.BoolOpt(
        'use_multipath_io',
        default=False,
        help='Use every available path when attaching iSCSI or Fibre Channel '
             'volumes. Needs the Windows Multipath I/O feature, configured to '
             'claim iSCSI and FC devices. SMB and RBD volumes are not '
             'affected.'),
    cfg.ListOpt(
        'iscsi_initiator_list',
        default=[],
        help='Comma separated list of iSCSI initiators (as reported by '
             'Get-InitiatorPort, for example hardware HBA instance names) used '
             'to open iSCSI sessions. When empty, the Microsoft iSCSI '
             'initiator service picks one.'),
    # Added by compute-hyperv.
    cfg.IntOpt(
        'evacuate_task_state_timeout',
        min=0,
        default=600,
        help='Seconds to wait for instances to be evacuated while the host '
             'enters maintenance mode.'),
    cfg.IntOpt(
        'cluster_event_check_interval',
        default=2,
        min=1,
        help='Seconds between two polls of the failover cluster for instances '
             'that changed owner node (one Get-ClusterInstanceState call for '
             'all of them). A failover is recorded in Nova at most this long '
             'after the cluster moved the instance.'),
    cfg.BoolOpt(
        'instance_automatic_shutdown',
        default=False,
        help='Shut instances down when the host shuts down, instead of '
             'saving their state. Saving needs disk space for each '
             'instance memory. Only affects instances created after the '
             'change.'),
    cfg.IntOpt(
        'instance_live_migration_timeout',
        default=300,
        min=0,
        help='Seconds to wait for a live migration of a clustered instance '
             'to finish.'),
    cfg.IntOpt(
        'max_failover_count',
        default=1,
        min=1,
        help='Failovers allowed for one clustered instance within '
             'failover_period hours. Past this number the cluster leaves the '
             'instance in the Failed state.'),
    cfg.IntOpt(
        'failover_period',
        default=6,
        min=1,
        help='Length, in hours, of the window in which max_failover_count '
             'applies.'),
    cfg.BoolOpt(
        'auto_failback',
        default=True,
        help='Let the cluster move a clustered instance back to its preferred '
             'host once that host is available again.'),
    cfg.BoolOpt(
        'recreate_ports_on_failover',
        default=True,
        help='After an instance failed over to another cluster node, unplug '
             'and plug its virtual network adapters again on that node, so '
             'that they are connected to its virtual switch with their VLAN.'),
    cfg.BoolOpt(
        'force_destroy_instances',
        default=False,
        help='Destroy instances at once, even while other tasks on them are '
             'pending. The destroy may then fail (for example because of file '
             'locks) and need to be retried.'),
    cfg.BoolOpt(
        'move_disks_on_cold_migration',
        default=True,
        help='During cold migration and resize, move instance files into the '
             'instances_path of the destination host. Turn off to keep the '
             'files where they are, for example with several CSVs or shares.'),
]


# --- [coordination] ---------------------------------------------------------

coordination_group = cfg.OptGroup(
    'coordination',
    title='Distributed coordination',
    help='Lock backend shared by the compute services, used to serialise '
         'operations on the same instance or volume across hosts.')

coordination_opts = [
    cfg.StrOpt(
        'backend_url',
        default='file:///C:/OpenStack/Lock',
        # mysql://user:password@host/db, redis://:password@host, ?password=...
        secret=True,
        help='tooz backend URL for distributed locks, for example '
             'etcd3+http://etcd.example.org:2379 (needs the etcd3gw package), '
             'or file:////fileserver/share/locks for a lock directory on a '
             'file share reachable by every compute service. A file:// URL '
             'of a drive-letter folder (like the default) means a Windows '
             'folder: where nova-compute runs on Linux, locks are then local '
             'to that machine and a warning says so.'),
]


# --- [rdp] ------------------------------------------------------------------

rdp_group = cfg.OptGroup(
    'rdp',
    title='RDP console options',
    help='RDP console options of the former Hyper-V driver. Nova no longer '
         'offers an RDP console, so they are only accepted.')

_RDP_REASON = ('Nova has no RDP console API any more; the option is accepted '
               'so existing configuration files load, and has no effect.')

rdp_opts = [
    cfg.BoolOpt(
        'enabled',
        default=False,
        deprecated_for_removal=True,
        deprecated_reason=_RDP_REASON,
        help='Offer RDP consoles for instances.'),
    cfg.URIOpt(
        'html5_proxy_base_url',
        schemes=['http', 'https'],
        default='http://127.0.0.1:6083/',
        deprecated_for_removal=True,
        deprecated_reason=_RDP_REASON,
        help='Base URL of the RDP HTML5 console proxy given to end users.'),
]


# --- [os_win] ---------------------------------------------------------------

os_win_group = cfg.OptGroup(
    'os_win',
    title='os-win library options',
    help='Options of the os-win library used by compute-hyperv. psdriver '
         'does not use os-win; they are accepted so existing configuration '
         'files load.')

_OS_WIN_REASON = ('psdriver does not use os-win; the option is accepted so '
                  'existing configuration files load, and has no effect.')

os_win_opts = [
    cfg.StrOpt(
        'hbaapi_lib_path',
        default='hbaapi.dll',
        deprecated_for_removal=True,
        deprecated_reason=_OS_WIN_REASON,
        help='Fibre Channel HBA API library.'),
    cfg.BoolOpt(
        'cache_temporary_wmi_objects',
        default=False,
        deprecated_for_removal=True,
        deprecated_reason=_OS_WIN_REASON,
        help='Cache temporary WMI objects.'),
    cfg.IntOpt(
        'wmi_job_terminate_timeout',
        default=120,
        deprecated_for_removal=True,
        deprecated_reason=_OS_WIN_REASON,
        help='Seconds to wait when stopping pending WMI jobs.'),
    cfg.IntOpt(
        'connect_cluster_timeout',
        default=0,
        deprecated_for_removal=True,
        deprecated_reason=_OS_WIN_REASON,
        help='Seconds to wait for the failover cluster service.'),
    cfg.IntOpt(
        'file_in_use_timeout',
        default=15,
        deprecated_for_removal=True,
        deprecated_reason=_OS_WIN_REASON,
        help='Seconds to wait for files in use when moving or deleting.'),
]


# --- [powershell] -----------------------------------------------------------

powershell_group = cfg.OptGroup(
    'powershell',
    title='PowerShell transport',
    help='How psdriver reaches the Hyper-V host: a PowerShell process on '
         'this machine, PowerShell Remoting (WinRM) to a remote host, or the '
         'built-in simulated host.')

powershell_opts = [
    cfg.StrOpt(
        'transport',
        default='local',
        choices=[
            ('local', 'Run a PowerShell process on this machine; '
                      'nova-compute runs on the Hyper-V host itself.'),
            ('psrp', 'Use PowerShell Remoting over WinRM to psrp_host; '
                     'nova-compute runs elsewhere, for example on Linux.'),
            ('sim', 'Use the simulated Hyper-V host, for tests and demos '
                    'only. Nothing real is created.'),
        ],
        help='Transport used to run host scripts.'),
    cfg.StrOpt(
        'executable',
        default='auto',
        help='PowerShell executable for transport = local: pwsh '
             '(PowerShell 7), powershell.exe (Windows PowerShell 5.1), a '
             'full path to either, or auto: powershell.exe on Windows before '
             'build 17763 (Windows Server 2016, where PowerShell 7 reaches the '
             'Hyper-V module only through its compatibility layer), else pwsh '
             'when it is on PATH, else powershell.exe.'),
    cfg.IntOpt(
        'local_pool_size',
        default=4,
        min=0,
        help='For transport = local: how many PowerShell processes are kept '
             'running (started as "executable -s", PowerShell\'s '
             'out-of-process remoting server), that is how many scripts may '
             'run at the same time. A kept process parses each script once. '
             'A process that crashes or outlasts its call\'s timeout is '
             'killed and replaced. 0 starts a new process for every call '
             '(about 0.3 to 3 seconds each).'),
    cfg.StrOpt(
        'scripts_dir',
        help='Directory holding the host scripts. When unset, the scripts '
             'shipped with the psdriver package are used. Only set this to '
             'try out modified scripts.'),
    cfg.IntOpt(
        'default_timeout',
        min=1,
        help='Timeout, in seconds, for one host script call. When unset, each '
             'script uses the timeout declared in its contract. When set, it '
             'replaces those timeouts for every call.'),
    cfg.HostAddressOpt(
        'psrp_host',
        help='Hyper-V host to manage with transport = psrp (host name or IP '
             'address). Kerberos needs the fully qualified name.'),
    cfg.PortOpt(
        'psrp_port',
        default=5986,
        help='WinRM port on psrp_host: 5986 for HTTPS, 5985 for HTTP.'),
    cfg.BoolOpt(
        'psrp_ssl',
        default=True,
        help='Connect to WinRM over HTTPS.'),
    cfg.StrOpt(
        'psrp_cert_validation',
        default='true',
        help='How the WinRM server certificate is checked when psrp_ssl is '
             'True: "true" checks it against the system CA store, "false" '
             'does not check it (not for production; a warning is logged for '
             'every new session), and any other value is the path of an '
             'existing CA bundle file to check it against (checked at start).'),
    cfg.StrOpt(
        'psrp_auth',
        default='negotiate',
        choices=[
            ('negotiate', 'Kerberos, falling back to NTLM.'),
            ('ntlm', 'NTLM.'),
            ('kerberos', 'Kerberos only.'),
            ('credssp', 'CredSSP; delegates credentials to the host, which '
                        'second-hop access (SMB shares, other cluster nodes) '
                        'may need.'),
            ('certificate', 'Client certificate mapped to a local account; '
                            'needs psrp_certificate_pem and '
                            'psrp_certificate_key_pem, and HTTPS.'),
            ('basic', 'Basic authentication, local accounts only; only '
                      'over HTTPS.'),
        ],
        help='WinRM authentication method.'),
    cfg.BoolOpt(
        'psrp_insecure_cleartext_basic_auth_lab_only',
        default=False,
        help='Allow psrp_auth = basic over plain HTTP (psrp_ssl = False), '
             'which sends the password and every value in clear: refused at '
             'start unless this is True. For an isolated lab only; a warning '
             'is logged at every start.'),
    cfg.StrOpt(
        'psrp_username',
        help='User name for WinRM authentication, for example '
             'DOMAIN\\user or user@REALM. Unused with certificate '
             'authentication.'),
    cfg.StrOpt(
        'psrp_password',
        secret=True,
        help='Password of psrp_username.'),
    cfg.StrOpt(
        'psrp_certificate_pem',
        help='Path of the PEM client certificate for psrp_auth = '
             'certificate.'),
    cfg.StrOpt(
        'psrp_certificate_key_pem',
        help='Path of the PEM private key of psrp_certificate_pem.'),
    cfg.StrOpt(
        'psrp_message_encryption',
        default='auto',
        choices=[
            ('auto', 'Encrypt messages when the transport is HTTP and the '
                     'authentication method supports it.'),
            ('always', 'Always encrypt messages; fail if the authentication '
                       'method cannot.'),
            ('never', 'Never encrypt messages at the WinRM layer.'),
        ],
        help='WinRM message-level encryption.'),
    cfg.IntOpt(
        'psrp_operation_timeout',
        default=20,
        min=1,
        help='WinRM operation timeout, in seconds: how long the server holds '
             'one receive request before answering that no output is ready. '
             'Does not limit how long a script may run.'),
    cfg.IntOpt(
        'psrp_connection_timeout',
        default=30,
        min=1,
        help='Seconds to wait when connecting to psrp_host.'),
    cfg.IntOpt(
        'psrp_pool_size',
        default=4,
        min=1,
        help='Number of runspaces kept open on psrp_host, that is how many '
             'scripts may run there at the same time.'),
    cfg.IntOpt(
        'psrp_reconnect_attempts',
        default=3,
        min=0,
        help='How many times to reconnect after a lost WinRM connection '
             'before the call fails.'),
    cfg.FloatOpt(
        'psrp_reconnect_backoff',
        default=2.0,
        min=0,
        help='Seconds to wait before the first reconnect attempt; the wait '
             'doubles with each further attempt.'),
    cfg.StrOpt(
        'sim_state_file',
        help='For transport = sim: JSON file in which the simulated host '
             'keeps its state between restarts. When unset, the state lives '
             'in memory only.'),
]


_GROUPS = (
    (hyperv_group, hyperv_opts),
    (coordination_group, coordination_opts),
    (rdp_group, rdp_opts),
    (os_win_group, os_win_opts),
    (powershell_group, powershell_opts),
)


@functools.lru_cache(maxsize=None)
def nova_owned() -> frozenset[tuple[str, str]]:
    """(group, option) pairs that nova registers itself."""
    from nova.conf import opts as nova_opts

    owned = set()
    for group, opts in nova_opts.list_opts():
        name = getattr(group, 'name', group)
        owned.update((name, opt.dest) for opt in opts)
    return frozenset(owned)


def _ours(group: cfg.OptGroup, opts: list[cfg.Opt]) -> list[cfg.Opt]:
    owned = nova_owned()
    return [opt for opt in opts if (group.name, opt.dest) not in owned]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register psdriver's options on ``conf``; safe to call repeatedly.

    An option that nova defines, or that ``conf`` already has under another
    definition, is skipped: the existing definition stays in force.
    """
    for group, opts in _GROUPS:
        # A group of its own for each ConfigOpts: register_group keeps a shallow copy,
        # whose option table (with each option's override) the copies would share.
        conf.register_group(cfg.OptGroup(
            group.name, title=group.title, help=group.help,
            dynamic_group_owner=group.dynamic_group_owner, driver_option=group.driver_option))
        for opt in _ours(group, opts):
            try:
                conf.register_opt(opt, group=group.name)
            except cfg.DuplicateOptError:
                LOG.debug('[%s] %s is already registered by another '
                          'component; keeping that definition',
                          group.name, opt.name)


class InvalidOptionValue(ValueError):
    """An option value psdriver cannot work with; the message names the option."""


_OSLO_VALUE_ERROR = re.compile(
    r"Value for option (?P<name>\S+) from .*?detail='(?P<where>[^']*)'\) is not valid: "
    r"(?P<reason>.*)", re.DOTALL)


def _describe(group: str, opt: cfg.Opt, exc: Exception) -> str:
    text = str(exc)
    match = _OSLO_VALUE_ERROR.match(text)
    where, reason = '', text
    if match:
        where = f' in {match["where"]}' if match['where'] else ''
        reason = match['reason']
    if opt.secret:
        reason = 'the value is not valid (not shown: the option is secret)'
    return f'[{group}] {opt.name}{where}: {reason}'


def validate(conf: cfg.ConfigOpts = CONF) -> None:
    """Read every psdriver option now, so that a bad value stops the service at start.

    oslo.config converts and range-checks a value only when it is read: a
    ``dynamic_memory_ratio = abc`` would otherwise surface at the first spawn.
    Float options must also be finite (``nan`` and ``inf`` pass oslo's range
    checks, then break the JSON sent to the host).  Raises
    :class:`InvalidOptionValue` naming every bad option.
    """
    problems = []
    for group, opts in _GROUPS:
        for opt in _ours(group, opts):
            try:
                value = conf[group.name][opt.dest]
            except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
                continue
            except ValueError as exc:      # ConfigFileValueError and friends
                problems.append(_describe(group.name, opt, exc))
                continue
            if isinstance(opt, cfg.FloatOpt) and value is not None \
                    and not math.isfinite(value):
                loc = conf.get_location(opt.dest, group.name)
                where = f' in {loc.detail}' if loc and loc.detail else ''
                problems.append(f'[{group.name}] {opt.name}{where}: {value} is not a finite '
                                'number')
    if problems:
        raise InvalidOptionValue('invalid configuration: ' + '; '.join(problems))


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """Options for oslo-config-generator (entry point ``psdriver``)."""
    return [(group, _ours(group, opts)) for group, opts in _GROUPS]


register_opts(CONF)
