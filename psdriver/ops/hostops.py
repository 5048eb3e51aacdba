"""Host resources: one Get-HostInfo round trip feeds both halves of the periodic task.

``update_available_resource`` calls ``get_available_resource`` and then
``update_provider_tree`` back to back; the host information is cached for a
few seconds so that the periodic costs one round trip, not two.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

import os_resource_classes as orc
import os_traits
from nova.objects import fields as obj_fields
from oslo_utils import versionutils

from psdriver.bridge.client import Bridge
from psdriver.ops import errors, instancefeatures, pciops

HOST_INFO_TTL = 5.0

#: Power actions nova's os-hosts API can ask for, mapped to the script's -Action.
_POWER_ACTIONS = {'reboot': 'Reboot', 'shutdown': 'Shutdown'}


def _cpu_traits(features: list[str]) -> set[str]:
    """Host CPU feature names (``sse4_2``, ``avx2``, ``aes``...) -> os-traits."""
    aliases = {'SSE4_1': 'SSE41', 'SSE4_2': 'SSE42', 'AES': 'AESNI', 'PCLMULQDQ': 'CLMUL'}
    known = set(os_traits.get_traits(prefix='HW_CPU_X86_'))
    traits = set()
    for feature in features:
        name = feature.strip().upper().replace('.', '_').replace('-', '_')
        trait = 'HW_CPU_X86_' + aliases.get(name, name)
        if trait in known:
            traits.add(trait)
    return traits


class HostOps:
    def __init__(self, bridge: Bridge, instances_path: Callable[[], str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._bridge = bridge
        self._instances_path = instances_path
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def host_info(self, refresh: bool = False) -> dict[str, Any]:
        """Get-HostInfo, cached for HOST_INFO_TTL seconds."""
        with self._lock:
            now = self._clock()
            if not refresh and self._cached and now - self._cached[0] < HOST_INFO_TTL:
                return self._cached[1]
            with errors.translate(operation='get host info'):
                info = self._bridge.call('Get-HostInfo',
                                         {'InstancesPath': self._instances_path()})
            self._cached = (now, info)
            return info

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def host_facts(self) -> dict[str, Any]:
        """The last Get-HostInfo report, however old, without a round trip of its own.

        For what does not change while the host runs: processor, Windows build.
        """
        with self._lock:
            cached = self._cached
        return cached[1] if cached else self.host_info()

    def nodename(self) -> str:
        """The node name compute-hyperv reported: the host's DNS host name."""
        return self.host_info()['hostname']

    def get_available_resource(self, nodename: str) -> dict[str, Any]:
        info = self.host_info()
        disk = info['instances_path']
        total_gb = int(disk['total_gb'])
        free_gb = int(disk['free_gb'])
        cpu = info['cpu']
        cpu_info = {
            'vendor': cpu['vendor'], 'model': cpu['model'], 'arch': cpu['arch'],
            'topology': {'sockets': cpu['sockets'], 'cores': cpu['cores'],
                         'threads': cpu['threads']},
            'features': sorted(cpu['features']),
        }
        return {
            'vcpus': info['logical_processors'],
            'memory_mb': info['memory_mb_total'],
            'memory_mb_used': info['memory_mb_total'] - info['memory_mb_free'],
            'local_gb': total_gb,
            'local_gb_used': total_gb - free_gb,
            'disk_available_least': free_gb,
            # Nova recomputes usage from its instances; compute-hyperv reported 0 too.
            'vcpus_used': 0,
            'hypervisor_type': obj_fields.HVType.HYPERV,
            'hypervisor_version': versionutils.convert_version_to_int(
                '.'.join(info['os_version'].split('.')[:3])),
            'hypervisor_hostname': nodename,
            'cpu_info': json.dumps(cpu_info, sort_keys=True),
            'supported_instances': [
                (obj_fields.Architecture.X86_64, obj_fields.HVType.HYPERV,
                 obj_fields.VMMode.HVM),
            ],
            'numa_topology': None,
            'pci_passthrough_devices': pciops.pci_passthrough_devices(info),
        }

    def provider_inventory(self, conf, reserved_disk_gb: int,
                           ratios: dict[str, float]) -> dict[str, dict[str, Any]]:
        info = self.host_info()
        vcpus = info['logical_processors']
        memory_mb = info['memory_mb_total']
        disk_gb = int(info['instances_path']['total_gb'])
        return {
            orc.VCPU: {'total': vcpus, 'min_unit': 1, 'max_unit': vcpus, 'step_size': 1,
                       'allocation_ratio': ratios[orc.VCPU],
                       'reserved': conf.reserved_host_cpus},
            orc.MEMORY_MB: {'total': memory_mb, 'min_unit': 1, 'max_unit': memory_mb,
                            'step_size': 1, 'allocation_ratio': ratios[orc.MEMORY_MB],
                            'reserved': conf.reserved_host_memory_mb},
            orc.DISK_GB: {'total': disk_gb, 'min_unit': 1, 'max_unit': disk_gb,
                          'step_size': 1, 'allocation_ratio': ratios[orc.DISK_GB],
                          'reserved': reserved_disk_gb},
        }

    def host_traits(self) -> set[str]:
        """Traits this host really has (CPU features, a virtual TPM for guests).

        Capability traits come from nova.
        """
        info = self.host_info()
        return _cpu_traits(info['cpu']['features']) | \
            instancefeatures.host_security_traits(info)

    def get_host_ip_addr(self, fallback: str) -> str:
        ips = self.host_info()['ip_addresses']
        v4 = [ip for ip in ips if '.' in ip and not ip.startswith('127.')]
        return v4[0] if v4 else (ips[0] if ips else fallback)

    def get_host_uptime(self) -> str:
        """Uptime in the ``uptime`` command's format, as the os-hypervisors API shows it."""
        info = self.host_info(refresh=True)
        seconds = int(info['uptime_seconds'])
        days, rem = divmod(seconds, 86400)
        hours, rem = divmod(rem, 3600)
        minutes = rem // 60
        now = time.strftime('%H:%M:%S')
        return f' {now} up {days} days, {hours:2d}:{minutes:02d},  0 users'

    def host_power_action(self, action: str) -> str:
        script_action = _POWER_ACTIONS.get(action)
        if script_action is None:
            raise NotImplementedError(
                f'Host power action {action!r} is not supported by Hyper-V from the host '
                'itself (startup needs out-of-band management)')
        with errors.translate(operation=f'host {action}'):
            self._bridge.call('Invoke-HostPowerAction', {'Action': script_action})
        return action
