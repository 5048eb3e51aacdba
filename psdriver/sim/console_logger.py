"""The console logger the scripts share (``Start-PsDriverConsoleLogger``,
``Invoke-PsDriverConsoleLogger`` in PsDriver.psm1): one per VM, copying its
serial pipe into a log file.

Used by the handlers of Start-InstanceConsoleLogger, New-Instance,
Set-InstancePowerState and Initialize-ComputeHost.  Kept apart from those
handlers so that none of them imports another handler module.
"""

from __future__ import annotations

import ntpath
import re
from typing import Any

from psdriver.sim.errors import SimError
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import is_dir, script_error
from psdriver.sim.state import Vm

_PIPE = re.compile(r'^\\\\\.\\pipe\\([^\\]+)$', re.IGNORECASE)


#: States in which a VM is running and wants its console logger (Set-InstancePowerState,
#: Initialize-ComputeHost).
RUNNING_STATES = frozenset({'Running', 'Starting', 'Resuming', 'Reset'})
#: ``ensure_logger`` without a pipe: the VM's logging pipe.
_VM_PIPE = object()


def serial_pipe(vm: Vm) -> str | None:
    """``Get-PsDriverConsolePipePath``: a ``*_ro`` pipe, else COM 1's, else any."""
    ports = [(port, pipe) for port, pipe in sorted(vm.com_ports.items()) if pipe]
    for _port, pipe in ports:
        if pipe.lower().endswith('_ro'):
            return pipe
    for port, pipe in ports:
        if port.endswith('1'):
            return pipe
    return ports[0][1] if ports else None


def check_log_target(host: SimHost, pipe: str, log_path: str) -> None:
    """``Assert-PsDriverConsoleLogTarget``: a local pipe path and an existing log folder."""
    if not _PIPE.match(pipe):
        raise script_error(f"'{pipe}' is not a local named pipe path (\\\\.\\pipe\\<name>).",
                           'InvalidArgument', 'PsDriver.InvalidPipePath', pipe)
    folder = ntpath.dirname(log_path.replace('/', '\\'))
    if not folder or not is_dir(host, folder):
        raise script_error(f"The directory of console log '{log_path}' does not exist.",
                           'ObjectNotFound', 'PsDriver.LogDirectoryNotFound', log_path)


def launch_logger(host: SimHost, vm: Vm, pipe: str, log_path: str, max_bytes: int,
                  restart: bool = False) -> dict[str, Any]:
    """``Start-PsDriverConsoleLogger``: started, running and pid of the VM's logger.

    Shared by Start-InstanceConsoleLogger and New-Instance, as the script
    function is.
    """
    check_log_target(host, pipe, log_path)
    running = host.console_logger(vm.name) is not None
    if running and not restart:
        return {'started': False, 'running': True, 'pid': None}
    if running:
        host.stop_console_logger(vm.name)
    pid = host.start_console_logger(vm.name, log_path, pipe, max_bytes).pid
    return {'started': True, 'running': True, 'pid': pid}


def ensure_logger(host: SimHost, vm: Vm, log_path: str, max_bytes: int,
                  pipe: Any = _VM_PIPE) -> dict[str, Any]:
    """``Invoke-PsDriverConsoleLogger``: the logger record; a failure is its error, never raised.

    ``pipe`` is the serial port pipe to read (None or empty: the VM has none);
    not given, the VM's logging pipe.
    """
    record: dict[str, Any] = {'pipe_path': None, 'log_path': log_path, 'started': False,
                              'running': False, 'pid': None, 'error': None}
    if pipe is _VM_PIPE:
        pipe = serial_pipe(vm)
    if not pipe:
        record['error'] = 'the virtual machine has no serial port connected to a named pipe'
        return record
    record['pipe_path'] = pipe
    try:
        record.update(launch_logger(host, vm, pipe, log_path, max_bytes))
    except SimError as exc:
        record['error'] = exc.message
    return record
