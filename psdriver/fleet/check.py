"""``psdriver fleet check``: one Test-PsDriverConnection round trip per host, in parallel.

Each host is reached exactly as its nova-compute service will reach it: the
``[powershell]`` options come from the inventory, the password from the
host's credentials file read by oslo.config (as nova-compute reads it), and
the bridge from :func:`psdriver.bridge.factory.build_bridge`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import time
from typing import Any, Callable

from psdriver.fleet.inventory import Fleet, Host

SCRIPT = 'Test-PsDriverConnection'
#: Oldest PowerShell psdriver's scripts run on.
MIN_PS_VERSION = (5, 1)
#: Kerberos refuses tickets beyond 5 minutes of skew; nova's service heartbeats and the
#: image cache's ages read the host clock too.  Default limit for a warning-free fleet.
DEFAULT_MAX_SKEW = 30.0


@dataclasses.dataclass
class HostCheck:
    """What one host answered, and what is wrong with it."""

    host: Host
    report: dict[str, Any] | None = None
    #: Host clock minus this node's clock, seconds, and the half round trip it may be off by.
    skew: float | None = None
    skew_uncertainty: float = 0.0
    seconds: float = 0.0
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def host_conf(fleet: Fleet, host: Host, timeout: float) -> Any:
    """A private ConfigOpts with the ``[powershell]`` options this host's service gets."""
    from oslo_config import cfg

    import psdriver.conf

    conf = cfg.ConfigOpts()
    psdriver.conf.register_opts(conf)
    conf.register_opt(cfg.StrOpt('host'))
    # The credentials file is read the way nova-compute reads it: one more config file.
    conf([], project='nova', prog='psdriver-fleet-check',
         default_config_files=[host.credentials] if host.credentials else [],
         default_config_dirs=[])
    conf.set_override('host', host.name)
    overrides: dict[str, Any] = {'transport': host.transport,
                                 'default_timeout': max(1, int(timeout)),
                                 'psrp_reconnect_attempts': 0,
                                 'psrp_connection_timeout': max(1, int(timeout)),
                                 'psrp_pool_size': 1}
    if host.transport == 'sim':
        overrides['sim_state_file'] = host.sim_state_file
    else:
        overrides.update(psrp_host=host.address, psrp_port=host.port, psrp_ssl=host.ssl,
                         psrp_cert_validation=str(host.cert_validation).lower()
                         if isinstance(host.cert_validation, bool) else host.cert_validation,
                         psrp_auth=host.auth, psrp_username=host.username,
                         psrp_message_encryption=host.message_encryption,
                         psrp_certificate_pem=host.certificate_pem,
                         psrp_certificate_key_pem=host.certificate_key_pem)
    for name, value in overrides.items():
        conf.set_override(name, value, group='powershell')
    return conf


def _parse_utc(text: str) -> float:
    """Seconds since the epoch of ``DateTime.ToString('o')`` in UTC (7 fraction digits)."""
    head, _, fraction = text.rstrip('Z').partition('.')
    moment = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp() + (float(f'0.{fraction}') if fraction else 0.0)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split('.'):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def judge(check: HostCheck, max_skew: float) -> None:
    """Fill ``check.problems`` from the host's report."""
    report, host = check.report, check.host
    assert report is not None
    modules = report['modules']
    if _version(report['ps_version'])[:2] < MIN_PS_VERSION:
        check.problems.append(f'PowerShell {report["ps_version"]} is older than 5.1')
    if not modules.get('Hyper-V'):
        check.problems.append('the Hyper-V PowerShell module is not installed')
    if host.cluster and not modules.get('FailoverClusters'):
        check.problems.append(f'member of cluster {host.cluster} but the FailoverClusters '
                              'module is not installed')
    if not report['is_admin']:
        check.problems.append(f'the session of {host.username or "the account"} is not '
                              'elevated (not an administrator)')
    instances = report['instances_path']
    if instances is not None and not instances['exists']:
        check.problems.append(f'instances_path {instances["path"]} does not exist')
    share = report['share']
    if share is not None:
        if not share['exists']:
            check.problems.append(f'SMB share {share["name"]} does not exist')
        elif not share['matches_instances_path']:
            check.problems.append(f'SMB share {share["name"]} exposes {share["path"]}, not '
                                  f'instances_path {host.instances_path}')
    if check.skew is not None and abs(check.skew) - check.skew_uncertainty > max_skew:
        check.problems.append(f'clock is {check.skew:+.1f} s off this node\'s (limit '
                              f'{max_skew:g} s): fix NTP on the host or here')


def check_host(fleet: Fleet, host: Host, *, timeout: float = 30.0,
               max_skew: float = DEFAULT_MAX_SKEW) -> HostCheck:
    """Run Test-PsDriverConnection on ``host`` (one round trip) and judge the answer."""
    from oslo_config import cfg

    from psdriver.bridge import errors, factory

    check = HostCheck(host)
    started = time.monotonic()
    try:
        conf = host_conf(fleet, host, timeout)
    except (cfg.ConfigFilesNotFoundError, cfg.ConfigFilesPermissionDeniedError) as exc:
        check.problems.append(f'cannot read credentials file {host.credentials}: {exc} '
                              '(run as root, or as the user the file belongs to)')
        return check
    except cfg.Error as exc:
        check.problems.append(f'credentials file {host.credentials}: {exc}')
        return check
    if host.credentials and host.auth in ('negotiate', 'ntlm', 'credssp', 'basic') \
            and not conf.powershell.psrp_password:
        check.problems.append(f'credentials file {host.credentials} has no [powershell] '
                              'psrp_password')
        return check
    params: dict[str, Any] = {'Echo': host.name, 'InstancesPath': host.instances_path}
    if host.share:
        params['Share'] = host.share
    bridge = None
    try:
        bridge = factory.build_bridge(conf)
        sent = time.time()
        report = bridge.call(SCRIPT, params)
        received = time.time()
    except errors.PsDriverBridgeException as exc:
        check.problems.append(f'{SCRIPT} failed: {exc}')
        return check
    except Exception as exc:   # a host must never take the whole check down
        check.problems.append(f'{SCRIPT} failed: {type(exc).__name__}: {exc}')
        return check
    finally:
        if bridge is not None:
            bridge.close()
        check.seconds = time.monotonic() - started
    check.report = report
    if report['echo'] != host.name:
        check.problems.append('the host answered with a different echo: values do not '
                              'travel intact')
    # The host read its clock between sending and receiving: take the middle.
    check.skew = _parse_utc(report['utc_now']) - (sent + received) / 2
    check.skew_uncertainty = (received - sent) / 2
    judge(check, max_skew)
    return check


def check_fleet(fleet: Fleet, hosts: list[Host] | None = None, *, parallel: int = 8,
                timeout: float = 30.0, max_skew: float = DEFAULT_MAX_SKEW,
                check: Callable[..., HostCheck] = check_host) -> list[HostCheck]:
    """Check every host, at most ``parallel`` at once; results in inventory order."""
    hosts = list(fleet.hosts if hosts is None else hosts)
    if not hosts:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(parallel, len(hosts))),
                                               thread_name_prefix='fleet-check') as pool:
        futures = [pool.submit(check, fleet, host, timeout=timeout, max_skew=max_skew)
                   for host in hosts]
        return [f.result() for f in futures]


# -- the table --------------------------------------------------------------------------------

COLUMNS = ('HOST', 'ADDRESS', 'REPORTED NAME', 'POWERSHELL', 'ELEVATED', 'MODULES',
           'INSTANCES_PATH', 'SHARE', 'CLOCK SKEW', 'RESULT')


def _row(check: HostCheck) -> tuple[str, ...]:
    host, report = check.host, check.report
    address = (f'sim:{host.sim_state_file.rsplit("/", 1)[-1]}' if host.transport == 'sim'
               else f'{host.address}:{host.port}')
    result = 'ok' if check.ok else 'FAILED'
    if report is None:
        return (host.name, address, '-', '-', '-', '-', '-', '-', '-', result)
    modules = ','.join(sorted(m for m, present in report['modules'].items() if present)) or '-'
    instances = report['instances_path']
    share = report['share']
    share_text = '-' if share is None else (
        f'{share["name"]} ' + ('ok' if share['exists'] and share['matches_instances_path']
                               else 'missing' if not share['exists'] else 'other folder'))
    skew = '-' if check.skew is None else f'{check.skew:+.1f}s'
    return (host.name, address, report['hostname'],
            f'{report["ps_version"]} {report["ps_edition"]}',
            'yes' if report['is_admin'] else 'NO', modules,
            '-' if instances is None else
            f'{instances["path"]} {"ok" if instances["exists"] else "missing"}',
            share_text, skew, result)


def table(checks: list[HostCheck]) -> str:
    """One line per host, then one line per problem."""
    rows = [COLUMNS] + [_row(c) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ['  '.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    for check in checks:
        lines += [f'{check.host.name}: {problem}' for problem in check.problems]
    failed = [c.host.name for c in checks if not c.ok]
    lines.append(f'{len(checks) - len(failed)} of {len(checks)} hosts ok'
                 + (f'; failing: {", ".join(failed)}' if failed else ''))
    return '\n'.join(lines) + '\n'


def as_json(checks: list[HostCheck]) -> list[dict[str, Any]]:
    return [{'host': c.host.name, 'ok': c.ok, 'problems': c.problems, 'report': c.report,
             'clock_skew_seconds': None if c.skew is None else round(c.skew, 3),
             'clock_skew_uncertainty_seconds': round(c.skew_uncertainty, 3),
             'seconds': round(c.seconds, 3)} for c in checks]
