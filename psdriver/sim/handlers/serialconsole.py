"""Start-InstanceSerialConsole: a TCP relay to a VM's read-write serial port pipe."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import int_param, not_empty, script_error, target_vm

NAME = 'Start-InstanceSerialConsole'
_PIPE = re.compile(r'^\\\\\.\\pipe\\[^\\/]+$')


@handler(NAME)
def start_serial_console(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    name = not_empty(NAME, params, 'Name')
    pipe = not_empty(NAME, params, 'PipePath')
    if not _PIPE.match(pipe):
        raise script_error(f"Cannot validate argument on parameter 'PipePath'. The argument "
                           f'"{pipe}" does not match the pattern.', 'InvalidData',
                           f'ParameterArgumentValidationError,{NAME}', pipe)
    instance_dir = not_empty(NAME, params, 'InstanceDir')
    listen = not_empty(NAME, params, 'ListenAddress')
    first = int_param(NAME, params, 'PortRangeStart', None, 1, 65535)
    last = int_param(NAME, params, 'PortRangeEnd', None, 1, 65535)
    if last < first:
        raise script_error(f'The port range {first}-{last} is empty.', 'InvalidArgument',
                           'PsDriver.InvalidPortRange', name)
    try:
        address = str(ipaddress.ip_address(listen))
    except ValueError:
        raise script_error(f"'{listen}' is not an IP address.", 'InvalidArgument',
                           'PsDriver.InvalidListenAddress', listen) from None
    vm = target_vm(host, name)
    if not host.exists(instance_dir):
        raise script_error(f"The instance folder '{instance_dir}' does not exist.",
                           'ObjectNotFound', 'PsDriver.InstanceDirNotFound', instance_dir)
    if not any(path and path.lower() == pipe.lower() for path in vm.com_ports.values()):
        raise script_error(f"Virtual machine '{name}' has no serial port connected to "
                           f"'{pipe}'.", 'ObjectNotFound', 'PsDriver.NoSerialPort', name)
    # No free port: ResourceUnavailable / PsDriver.NoFreePort, raised by the host.
    relay, started = host.start_serial_relay(vm.name, pipe, instance_dir, address, first, last)
    return {'name': vm.name, 'vm_id': vm.id.lower(), 'pipe_path': pipe,
            'listen_address': relay['listen_address'], 'port': relay['port'],
            'started': started, 'running': True, 'pid': relay['pid'] if started else None}


@prepare(NAME)
def _prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The example's instance with COM 2 on the example's pipe."""
    from psdriver.sim.scenario import add_instance
    add_instance(host, params['Name'], serial_ports=[
        {'port': 1, 'pipe': params['PipePath'].replace('_rw', '_ro')},
        {'port': 2, 'pipe': params['PipePath']}], instance_dir=params['InstanceDir'])
