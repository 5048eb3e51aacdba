"""Start-InstanceConsoleLogger and Get-InstanceConsoleOutput.

New-Instance starts the same logger before the VM first starts, and
Set-InstancePowerState and Initialize-ComputeHost make sure it runs
(:func:`psdriver.sim.console_logger.ensure_logger`, as
``Invoke-PsDriverConsoleLogger`` in the scripts' shared module).  The logger
is a record on the host (one per VM, like the script's named mutex) that
copies what the guest writes to the serial pipe it reads into the log file,
rotating to ``<log>.1`` at the size cap.  The guest writes to COM1: boot
lines when the VM starts, and whatever a test or demo passes to
``host.write_console(name, text)``.  Reading the log does not look at the VM
at all, as the script does not.
"""

from __future__ import annotations

import re
from typing import Any

from psdriver.sim import paths
from psdriver.sim.console_logger import launch_logger, serial_pipe
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import int_param, is_file, not_empty, script_error, switch, target_vm

@handler('Start-InstanceConsoleLogger')
def start_console_logger(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Start-InstanceConsoleLogger'
    name = not_empty(script, params, 'Name')
    log_path = not_empty(script, params, 'LogPath')
    max_bytes = int_param(script, params, 'MaxLogBytes', 524288, 4096, 1073741824)
    vm = target_vm(host, name)
    pipe = params.get('PipePath') or serial_pipe(vm)
    if not pipe:
        raise script_error(f"Virtual machine '{name}' has no serial port connected to a named "
                           'pipe.', 'InvalidOperation', 'PsDriver.NoSerialPipe', name)
    launch = launch_logger(host, vm, pipe, log_path, max_bytes, restart=switch(params, 'Restart'))
    return {'name': vm.name, 'vm_id': vm.id.lower(), 'pipe_path': pipe, 'log_path': log_path,
            'max_log_bytes': max_bytes, **launch}


def _prepare_logger(host: SimHost, params: dict[str, Any]) -> None:
    """The example's instance (COM1 on its ``<uuid>_ro`` pipe) in the log's folder."""
    from psdriver.sim.scenario import add_instance, instance_uuid_for
    name = params['Name']
    uuid_text = instance_uuid_for(name)
    pipe = params.get('PipePath') or ''
    match = re.match(r'^\\\\\.\\pipe\\([0-9a-fA-F-]{36})_ro$', pipe)
    if match:
        uuid_text = match.group(1).lower()
    folder = paths.parent(paths.normalize(params['LogPath']))
    add_instance(host, name, instance_uuid=uuid_text, instance_dir=folder)


prepare('Start-InstanceConsoleLogger')(_prepare_logger)


def read_tail(host: SimHost, path: str, count: int) -> tuple[int, bytes]:
    """``Read-FileTail``: (file length, its last ``count`` bytes)."""
    size = host.get_item(path).size
    take = min(count, size)
    return size, host.read_file(path, size - take, take) if take else b''


@handler('Get-InstanceConsoleOutput', readonly=True)
def get_console_output(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Get-InstanceConsoleOutput'
    name = not_empty(script, params, 'Name')
    log_path = not_empty(script, params, 'LogPath')
    max_bytes = int_param(script, params, 'MaxBytes', 1048576, 1, 16777216)
    files = [f for f in (log_path + '.1', log_path) if is_file(host, f)]
    chunks: list[bytes] = []
    total = 0
    remaining = max_bytes
    for path in reversed(files):              # newest first: the tail comes from the end
        size, data = read_tail(host, path, remaining)
        total += size
        chunks.insert(0, data)
        remaining -= len(data)
    data = b''.join(chunks)
    truncated = total > len(data)
    start = 0
    if truncated:                             # a character cut by the tail
        while start < len(data) and start < 3 and data[start] & 0xC0 == 0x80:
            start += 1
    return {'name': name, 'content': data[start:].decode('utf-8', errors='replace'),
            'truncated': truncated, 'size_bytes': total}


@prepare('Get-InstanceConsoleOutput')
def _prepare_output(host: SimHost, params: dict[str, Any]) -> None:
    """A running instance whose logger has copied its boot lines and some guest output."""
    _prepare_logger(host, params)
    name = params['Name']
    host.start_console_logger(name, params['LogPath'], host.get_vm(name).com_ports['COM1'],
                              524288)
    host.restart_vm(name)
    host.write_console(name, 'cloud-init: datasource ConfigDrive\nwelcome to the simulator')
