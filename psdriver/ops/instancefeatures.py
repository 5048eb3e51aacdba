"""Flavor and image requests that need something of the host: nested virtualization, disk QoS.

compute-hyperv read these from the flavor's extra specs and the image's
properties.  Image properties nova's ImageMeta does not know
(``hw_cpu_features``) are read from the instance's system metadata, where
nova keeps every image property under ``image_<name>``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from nova import exception

#: Hyper-V's storage QoS counts normalized I/O operations of 8 KB.
IOPS_BASE_BYTES = 8 * 1024

#: Windows builds from which Hyper-V nests: Intel (Server 2016), AMD (Server 2022).
NESTED_MIN_BUILD = {'GenuineIntel': 14393, 'AuthenticAMD': 20348}


def _image_property(instance: Any, name: str) -> str | None:
    return (instance.system_metadata or {}).get(f'image_{name}')


def requested_cpu_features(instance: Any) -> set[str]:
    """``hw:cpu_features`` (flavor) and ``hw_cpu_features`` (image), lower case."""
    wanted = set()
    for value in ((instance.flavor.extra_specs or {}).get('hw:cpu_features'),
                  _image_property(instance, 'hw_cpu_features')):
        wanted |= {item.lower() for item in re.split(r'[\s,]+', value or '') if item}
    return wanted


def wants_nested_virtualization(instance: Any) -> bool:
    return 'vmx' in requested_cpu_features(instance)


def nested_virtualization_refusal(host_info: dict[str, Any]) -> str | None:
    """Why the host Get-HostInfo describes cannot nest (None: it can).

    Hyper-V exposes VT-x with EPT from Windows Server 2016 and AMD-V with
    RVI from Windows Server 2022; both need second level address
    translation (processor feature ``slat``).
    """
    cpu = host_info['cpu']
    vendor = cpu.get('vendor') or ''
    parts = (host_info.get('os_version') or '').split('.')
    build = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    if 'slat' not in {f.lower() for f in cpu.get('features') or []}:
        return 'its processor has no second level address translation (EPT or RVI)'
    minimum = NESTED_MIN_BUILD.get(vendor)
    if minimum is None:
        return f'{vendor or "its"} processors do not support nested virtualization'
    if build < minimum:
        return (f'it runs Windows build {build}; nested virtualization on {vendor} '
                f'processors needs build {minimum} or later')
    return None


def _spec_int(instance: Any, key: str) -> int:
    value = (instance.flavor.extra_specs or {}).get(key)
    if value in (None, ''):
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise exception.InvalidInput(
            reason=f'flavor extra spec {key} must be a whole number of 0 or more, '
                   f'got {value!r}')
    return number


def disk_max_iops(instance: Any) -> int | None:
    """The IOPS limit of the local disks (None: no limit), as compute-hyperv computed it.

    ``quota:disk_total_iops_sec`` when set, else ``quota:disk_total_bytes_sec``
    in 8 KB normalized operations, rounded up.
    """
    iops = _spec_int(instance, 'quota:disk_total_iops_sec')
    if not iops:
        iops = math.ceil(_spec_int(instance, 'quota:disk_total_bytes_sec') / IOPS_BASE_BYTES)
    return iops or None
