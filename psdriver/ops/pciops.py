"""PCI passthrough with Hyper-V's Discrete Device Assignment (DDA).

Devices an administrator dismounted from the host
(``Dismount-VMHostAssignableDevice``) are reported, free or assigned, by
Get-HostInfo; here they become nova's ``pci_passthrough_devices`` (the PCI
tracker then applies ``[pci] device_spec``, or its old name
``passthrough_whitelist``).  At spawn, the devices nova claimed for the
instance's ``pci_requests`` (``pci_passthrough:alias``) are found by PCI
address and handed to New-Instance by location path, with what DDA needs:
automatic stop action TurnOff, static memory and memory-mapped I/O space.
Removing the VM gives the devices back to the host's pool.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from nova import exception
from nova.objects import fields as obj_fields
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

#: Memory-mapped I/O space Microsoft's DDA guidance gives a GPU: 3 GB below 4 GB
#: and 33280 MB above.
MMIO_LOW_MB = 3072
MMIO_HIGH_MB = 33280


def pci_passthrough_devices(host_info: dict[str, Any]) -> str:
    """The host's assignable devices as nova's ``pci_passthrough_devices`` JSON."""
    devices = []
    for device in host_info.get('assignable_devices') or []:
        address, vendor, product = (device.get('address'), device.get('vendor_id'),
                                    device.get('product_id'))
        if not (address and vendor and product):
            LOG.warning('Assignable device %s has no PCI address or ids Windows reports; '
                        'nova cannot track it', device.get('location_path'))
            continue
        devices.append({
            'dev_id': 'pci_' + address.replace(':', '_').replace('.', '_'),
            'address': address,
            'vendor_id': vendor,
            'product_id': product,
            'numa_node': device.get('numa_node'),
            'label': f'label_{vendor}_{product}',
            'dev_type': obj_fields.PciDeviceType.STANDARD,
        })
    return json.dumps(devices)


def device_spec(instance: Any, host_facts: Callable[[bool], dict[str, Any]]
                ) -> dict[str, Any]:
    """New-Instance fields for the devices nova claimed for the instance (empty: none).

    ``host_facts(refresh)`` gives the host report; a claimed address the
    last report does not know is looked up once more before giving up.
    """
    if not instance.obj_attr_is_set('pci_devices'):
        return {}
    claimed = instance.get_pci_devices()
    if not claimed:
        return {}
    paths = _location_paths(host_facts(False))
    if any(dev.address not in paths for dev in claimed):
        paths = _location_paths(host_facts(True))
    missing = sorted(dev.address for dev in claimed if dev.address not in paths)
    if missing:
        raise exception.ComputeResourcesUnavailable(
            reason=f'PCI device(s) {", ".join(missing)} claimed for the instance are not '
                   'dismounted for assignment on this host (Dismount-VMHostAssignableDevice)')
    return {
        'assignable_devices': [{'location_path': paths[dev.address]} for dev in claimed],
        'mmio_space': {'low_mb': MMIO_LOW_MB, 'high_mb': MMIO_HIGH_MB},
        'automatic_stop_action': 'TurnOff',
        'dynamic_memory_ratio': 1.0,
    }


def _location_paths(host_info: dict[str, Any]) -> dict[str, str]:
    return {d['address']: d['location_path'] for d in host_info.get('assignable_devices') or []
            if d.get('address')}
