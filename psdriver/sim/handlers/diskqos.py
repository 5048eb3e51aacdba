"""Set-InstanceDiskQosLimit: the storage QoS limit of an instance's local disks."""

from __future__ import annotations

from typing import Any

from psdriver.sim import paths
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import int_param, not_empty, target_vm

NAME = 'Set-InstanceDiskQosLimit'


@handler(NAME)
def set_disk_qos(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    vm = target_vm(host, not_empty(NAME, params, 'Name'))
    folder = paths.normalize(not_empty(NAME, params, 'InstanceDir')).rstrip('\\') + '\\'
    maximum = int_param(NAME, params, 'MaximumIops', None, 0, 1000000000)
    done = []
    for drive in list(vm.drives):
        path = drive.path or ''
        if drive.kind != 'HardDisk' or not path.lower().startswith(folder.lower()):
            continue
        if path.rsplit('\\', 1)[-1].lower().startswith('configdrive'):
            continue
        host.set_disk_max_iops(vm.name, path, maximum)
        done.append(path)
    return {'name': vm.name, 'maximum_iops': maximum, 'disks': done}


@prepare(NAME)
def _prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The example's instance, with its root disk in the instance folder."""
    from psdriver.sim.scenario import add_instance
    add_instance(host, params['Name'])
