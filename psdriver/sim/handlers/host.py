"""Host-level scripts: Get-HostInfo and Test-PsDriverConnection."""

from __future__ import annotations

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
        'security': {'vtpm': cfg.vtpm, 'host_guarded': cfg.host_guarded},
        'assignable_devices': host.assignable_devices(),
    }


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
    return {
        'hostname': cfg.hostname,
        'ps_version': cfg.ps_version,
        'ps_edition': cfg.ps_edition,
        'os_version': cfg.os_version,
        'modules': {m: bool(cfg.modules.get(m, False)) for m in modules},
        'is_admin': cfg.is_admin,
        'echo': '' if params.get('Echo') is None else str(params['Echo']),
    }
