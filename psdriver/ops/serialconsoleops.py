"""Interactive serial console: a TCP relay on the Hyper-V host to the VM's read-write pipe.

Every instance gets COM 1 on ``\\\\.\\pipe\\<uuid>_ro``, read by the console
logger; with ``[serial_console] enabled`` it also gets COM 2 on
``\\\\.\\pipe\\<uuid>_rw``.  ``get_serial_console`` makes sure a relay process
on the Hyper-V host listens on ``[serial_console] proxyclient_address`` at a
port from ``port_range`` and copies bytes between one TCP client (nova's
serial console proxy) and that pipe; the host picks the port (the first one
no other relay holds and no other program uses), so that compute services
never collide, and the relay exits, freeing it, when the instance is
destroyed.

Why on the Hyper-V host: a VM's serial port pipe is a local named pipe of
that host.  When nova-compute runs on the host this is where its own
process would listen anyway; from a Linux management node there is no
other way to reach the pipe, and one relay on the host serves both.  So the
address the proxy connects to is the Hyper-V host's: ``proxyclient_address``
of the compute service that manages it, as nova's libvirt driver uses it.
"""

from __future__ import annotations

from typing import Any, Callable

from nova import exception
from nova.console import type as console_type

from psdriver.bridge import errors as bridge_errors
from psdriver.bridge.client import Bridge
from psdriver.ops import errors

#: COM port of the interactive console (COM 1 is the console log's).
INTERACTIVE_COM_PORT = 2
DEFAULT_PORT_RANGE = (10000, 20000)


def interactive_pipe(instance: Any) -> str:
    return f'\\\\.\\pipe\\{instance.uuid}_rw'


def serial_port_specs(conf: Any, instance: Any) -> list[dict[str, Any]]:
    """New-Instance ``serial_ports`` entries for the interactive console (none when off)."""
    if not conf.serial_console.enabled:
        return []
    return [{'port': INTERACTIVE_COM_PORT, 'pipe': f'{instance.uuid}_rw'}]


def port_range(conf: Any) -> tuple[int, int]:
    """``[serial_console] port_range`` (``start:stop``), nova's default when malformed."""
    try:
        start, stop = (int(part) for part in conf.serial_console.port_range.split(':'))
    except (AttributeError, ValueError):
        return DEFAULT_PORT_RANGE
    if not 1 <= start <= stop <= 65535:
        return DEFAULT_PORT_RANGE
    return start, stop


class SerialConsoleOps:
    def __init__(self, bridge: Bridge, conf: Any, instance_dir: Callable[[Any], str]) -> None:
        self._bridge = bridge
        self._conf = conf
        self._instance_dir = instance_dir

    def get_serial_console(self, instance: Any) -> console_type.ConsoleSerial:
        """The relay's address and port (started if needed: one round trip)."""
        if not self._conf.serial_console.enabled:
            raise exception.ConsoleTypeUnavailable(console_type='serial')
        start, stop = port_range(self._conf)
        address = self._conf.serial_console.proxyclient_address
        params = {'Name': instance.name, 'PipePath': interactive_pipe(instance),
                  'InstanceDir': self._instance_dir(instance), 'ListenAddress': address,
                  'PortRangeStart': start, 'PortRangeEnd': stop}
        with errors.translate(instance.uuid, 'get_serial_console'):
            try:
                result = self._bridge.call('Start-InstanceSerialConsole', params)
            except bridge_errors.ScriptObjectNotFound as exc:
                if exc.error_id == 'PsDriver.NoSerialPort':
                    # Spawned before [serial_console] enabled: it has no COM 2 pipe.
                    raise exception.ConsoleTypeUnavailable(console_type='serial') from exc
                raise
            except bridge_errors.ScriptResourceUnavailable as exc:
                raise exception.SocketPortRangeExhaustedException(host=address) from exc
        if result['port'] is None:
            raise exception.ConsoleTypeUnavailable(console_type='serial')
        return console_type.ConsoleSerial(host=address, port=result['port'])
