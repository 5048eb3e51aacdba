"""Host-level scripts: Get-HostInfo and Test-PsDriverConnection."""

from __future__ import annotations

import datetime
from typing import Any

from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.host import SimHost
from psdriver.sim.state import GIB


def _unreachable(address: str) -> bool:
    """Loopback and link-local addresses, which Get-HostInfo leaves out."""
    text = address.lower()
    return text.startswith(('127.', '169.254.', 'fe80:')) or text == '::1'


@handler('Get-HostInfo', readonly=True)
def get_host_info(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    cfg = host.config
    usage = host.disk_usage(params.get('InstancesPath') or cfg.instances_path)
    return {
        'hostname': cfg.hostname,
        'os_name': cfg.os_name,
        'os_version': cfg.os_version,
        'hyperv_version': cfg.hyperv_version,
        'ps_version': cfg.ps_version,
        'logical_processors': cfg.logical_processors,
        'cpu': {
            'vendor': cfg.cpu_vendor,
            'model': cfg.cpu_model,
            'arch': cfg.cpu_arch,
            'sockets': cfg.sockets,
            'cores': cfg.logical_processors // (cfg.sockets * cfg.threads_per_core),
            'threads': cfg.threads_per_core,
            'features': list(cfg.cpu_features),
        },
        'memory_mb_total': cfg.memory_mb,
        'memory_mb_free': host.memory_free_mb(),
        'instances_path': {
            'path': usage['path'],
            'exists': usage['exists'],
            'total_gb': round(usage['total'] / GIB, 2),
            'free_gb': round(usage['free'] / GIB, 2),
        },
        'numa_nodes': host.numa_nodes(),
        'uptime_seconds': host.uptime_seconds(),
        'ip_addresses': [ip for ip in cfg.ip_addresses if not _unreachable(ip)],
        'security': {'vtpm': cfg.vtpm, **_guardian_state(host)},
        'assignable_devices': host.assignable_devices(),
    }


def _guardian_state(host: SimHost) -> dict[str, Any]:
    """``Get-PsDriverHostGuardianState``: Get-HgsClientConfiguration and the tools."""
    hgs = host.hgs_client_configuration()
    return {'host_guarded': hgs['IsHostGuarded'], 'hgs_mode': hgs['Mode'],
            'shielded_vm_tools': host.config.shielded_vm_tools}


@prepare('Get-HostInfo')
def _host_info_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The share (or drive) of the example's InstancesPath exists."""
    from psdriver.sim.scenario import ensure_volume
    if params.get('InstancesPath'):
        ensure_volume(host, params['InstancesPath'])


@handler('Test-PsDriverConnection', readonly=True)
def test_connection(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    cfg = host.config
    modules = ('Hyper-V', 'FailoverClusters', 'MPIO', 'iSCSI', 'Storage')
    instances_path = params.get('InstancesPath') or ''
    share_name = params.get('Share') or ''
    instances = None
    if instances_path:
        # Test-Path -PathType Container: false for a file, a missing folder or drive.
        exists = host.exists(instances_path) and host.get_item(instances_path).is_dir
        instances = {'path': instances_path, 'exists': exists}
    share = None
    if share_name:
        # Share names are case-insensitive, like Get-SmbShare -Name.
        exported = host.smb_share(share_name)
        found = None if exported is None else exported.path
        share = {'name': share_name, 'exists': found is not None, 'path': found,
                 'matches_instances_path': bool(
                     found and instances_path
                     and found.rstrip('\\').lower() == instances_path.rstrip('\\').lower())}
    now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=cfg.clock_offset_seconds)
    return {
        'hostname': cfg.hostname,
        'ps_version': cfg.ps_version,
        'ps_edition': cfg.ps_edition,
        'os_version': cfg.os_version,
        'modules': {m: bool(cfg.modules.get(m, False)) for m in modules},
        'is_admin': cfg.is_admin,
        'echo': '' if params.get('Echo') is None else str(params['Echo']),
        # DateTime.ToString('o') of a UTC time: seven fraction digits and Z.
        'utc_now': now.strftime('%Y-%m-%dT%H:%M:%S.%f') + '0Z',
        'instances_path': instances,
        'share': share,
    }
