"""Open vSwitch for Windows as the scripts' helpers (PsDriver/OpenVSwitch.ps1) run it."""

from __future__ import annotations

import re
import uuid
from typing import Any, Callable, TypeVar

from psdriver.sim.errors import SimError
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import script_error

T = TypeVar('T')
EXAMPLE_OVS_VSCTL = 'C:\\Program Files\\Open vSwitch\\bin\\ovs-vsctl.exe'
OVS_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$')


def as_list(value: Any) -> list[Any]:
    """A ``[string[]]`` parameter: absent is empty, one value is a list of one."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def resolve_ovs_vsctl(host: SimHost, path: Any) -> str:
    """``Resolve-PsDriverOvsVsctl``."""
    wanted = str(path) if path else 'ovs-vsctl.exe'
    found = host.ovs_vsctl(wanted)
    if found is None:
        raise script_error(f"Open vSwitch's ovs-vsctl was not found on this host (looked for "
                           f"'{wanted}'); install Open vSwitch for Windows or set [hyperv] "
                           'ovs_vsctl_path.', 'ObjectNotFound', 'PsDriver.OvsVsctlNotFound',
                           wanted)
    return found


def _ovs_name(name: str) -> None:
    """``Test-PsDriverOvsName``, refused as the helpers refuse it."""
    if not OVS_NAME.match(name or ''):
        raise script_error(f"'{name}' is not an Open vSwitch bridge or port name psdriver uses "
                           "(letters, digits, '_', '.', '-').", 'InvalidArgument',
                           'PsDriver.InvalidOvsName', name)


def _ovs_vsctl(ovs_vsctl: str, arguments: list[str], change: Callable[[], T]) -> T:
    """``Invoke-PsDriverOvsVsctl``: ovs-vsctl's refusal, exit code 1."""
    try:
        return change()
    except SimError as exc:
        raise script_error(f"ovs-vsctl {' '.join(arguments)} failed (exit code 1): "
                           f'{exc.message}', 'InvalidOperation', 'PsDriver.OvsVsctlFailed',
                           ovs_vsctl) from None


def ovs_add_port(host: SimHost, ovs_vsctl: str, bridge: str, port: str, mac: str,
                 instance_uuid: uuid.UUID) -> None:
    """``Add-PsDriverOvsPort`` (mac: 12 hex digits)."""
    _ovs_name(bridge)
    _ovs_name(port)
    attached = ':'.join(mac.lower()[i:i + 2] for i in range(0, 12, 2))
    ids = {'iface-id': port, 'attached-mac': attached, 'iface-status': 'active',
           'vm-uuid': str(instance_uuid)}
    arguments = ['--may-exist', 'add-port', bridge, port, '--', 'set', 'Interface', port,
                 *(f'external-ids:{key}={value}' for key, value in ids.items())]
    _ovs_vsctl(ovs_vsctl, arguments, lambda: host.ovs_add_port(bridge, port, ids))


def ovs_del_port(host: SimHost, ovs_vsctl: str, port: str) -> None:
    """``Remove-PsDriverOvsPort``."""
    _ovs_name(port)
    _ovs_vsctl(ovs_vsctl, ['--if-exists', 'del-port', port], lambda: host.ovs_del_port(port))


def instance_guid(value: Any) -> uuid.UUID:
    """``[guid]::TryParse`` of the InstanceUuid Open vSwitch ports need."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise script_error(f"Open vSwitch ports need the instance UUID (got '{value or ''}').",
                           'InvalidArgument', 'PsDriver.InvalidNicSpec', value) from None
