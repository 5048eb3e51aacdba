"""New-Instance: the whole spawn in one call, undone completely when a step fails.

The spec is checked first, with the script's own rules and messages
(``Invalid instance spec: <field> <why>``, InvalidArgument /
PsDriver.InvalidSpec).  Then the steps run against the host model in the
script's order (folder, root disk, ephemerals, swap, config drive, VM,
settings, drives, boot order, adapters, serial ports, metering, console
logger, start).
Every step that creates something records how to undo it first; when a
later step fails the undo runs newest first and the original error is
raised unchanged, so the host is as it was before the call.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from psdriver.sim import paths
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import SimError
from psdriver.sim.handlers.console import ensure_logger
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import (
    extension, hyperv_mac, is_absolute, is_dir, is_file, join, number, remove_vm,
    script_error, two_places)
from psdriver.sim.state import GIB, MIB

NAME = 'New-Instance'
_UUID = re.compile(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
                   r'[0-9a-fA-F]{12}$')
_PIPE = re.compile(r'^(?:\\\\\.\\pipe\\)?([^\\/]+)$', re.IGNORECASE)
_MISSING = object()
_MIN = -1.7976931348623157e308
_MAX = 1.7976931348623157e308
TOP_FIELDS = ('name', 'instance_uuid', 'instance_dir', 'generation', 'secure_boot', 'vcpus',
              'memory_mb', 'dynamic_memory_ratio', 'vnuma', 'limit_cpu_features', 'root_disk',
              'ephemerals', 'swap', 'nics', 'serial_ports', 'config_drive', 'enable_metrics',
              'power_on', 'notes_extra', 'automatic_stop_action', 'console_log', 'volumes')


def spec_error(field_name: str, message: str) -> SimError:
    return script_error(f'Invalid instance spec: {field_name} {message}', 'InvalidArgument',
                        'PsDriver.InvalidSpec', field_name)


# -- reading the spec (Read-SpecField and friends) ----------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read(obj: dict[str, Any], path: str, name: str, kind: str, *, required: bool = False,
         nullable: bool = False, default: Any = None) -> Any:
    """One field of a spec object, type-checked as ``Read-SpecField`` does."""
    where = f'{path}.{name}'
    value = obj.get(name, _MISSING)
    if value is _MISSING:
        if required:
            raise spec_error(where, 'is required.')
        return default
    if value is None:
        if nullable:
            return None
        raise spec_error(where, 'must not be null.')
    if kind == 'string':
        if not isinstance(value, str):
            raise spec_error(where, 'must be a string.')
        return value
    if kind == 'integer':
        if not _is_number(value) or not float(value).is_integer():
            raise spec_error(where, 'must be an integer.')
        return int(value)
    if kind == 'number':
        if not _is_number(value):
            raise spec_error(where, 'must be a number.')
        return float(value)
    if kind == 'boolean':
        if not isinstance(value, bool):
            raise spec_error(where, 'must be true or false.')
        return value
    if kind == 'object':
        if not isinstance(value, dict):
            raise spec_error(where, 'must be an object.')
        return value
    if not isinstance(value, list):
        raise spec_error(where, 'must be a list.')
    return value


def known_fields(obj: dict[str, Any], path: str, allowed: tuple[str, ...]) -> None:
    for name in obj:
        if name not in allowed:
            raise spec_error(f'{path}.{name}',
                             f'is not a known field (known: {", ".join(allowed)}).')


def in_range(where: str, value: float, low: float = _MIN, high: float = _MAX) -> None:
    if value < low or value > high:
        raise spec_error(where, f'must be between {number(float(low))} and '
                                f'{number(float(high))} (got {number(value)}).')


def choice(where: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed or isinstance(value, bool):
        shown = ', '.join(str(a) for a in allowed)
        raise spec_error(where, f"must be one of {shown} (got '{value}').")


# -- the plan -----------------------------------------------------------------------------

@dataclass
class PlannedDrive:
    role: str
    index: int | None
    path: str | None                 # None: a pass-through volume (disk_number)
    drive_type: str                  # disk | dvd
    controller_type: str             # IDE | SCSI
    controller_number: int
    controller_location: int
    disk_number: int | None = None
    boot: bool = False

    def record(self) -> dict[str, Any]:
        return {'role': self.role, 'index': self.index, 'path': self.path,
                'drive_type': self.drive_type, 'controller_type': self.controller_type,
                'controller_number': self.controller_number,
                'controller_location': self.controller_location}


@dataclass
class Plan:
    name: str
    uuid: str
    instance_dir: str
    generation: int
    secure_boot: bool = False
    secure_boot_template: str | None = None
    vcpus: int = 1
    memory_mb: int = 512
    dynamic_memory: bool = False
    startup_mb: int = 512
    vnuma: bool = False
    vnuma_processors: int | None = None
    vnuma_memory_mb: int | None = None
    limit_cpu_features: bool = False
    root: dict[str, Any] | None = None
    disks: list[dict[str, Any]] = field(default_factory=list)
    config_drive: dict[str, Any] | None = None
    drives: list[PlannedDrive] = field(default_factory=list)
    nics: list[dict[str, Any]] = field(default_factory=list)
    serial_ports: list[dict[str, Any]] = field(default_factory=list)
    enable_metrics: bool = False
    power_on: bool = True
    notes: str = ''
    stop_action: str | None = None
    #: ``{'path', 'max_bytes'}`` of the console log, or None.
    console_log: dict[str, Any] | None = None


def _disk_spec(obj: dict[str, Any], path: str, size_field: str,
               generation: int) -> tuple[int, str, str]:
    """``Read-DiskSpec``: (size, format, controller) of an ephemeral or swap entry."""
    known_fields(obj, path, (size_field, 'format', 'controller'))
    size = read(obj, path, size_field, 'integer', required=True)
    in_range(f'{path}.{size_field}', size, 1)
    fmt = read(obj, path, 'format', 'string', required=True)
    choice(f'{path}.format', fmt, ('vhd', 'vhdx'))
    controller = read(obj, path, 'controller', 'string', nullable=True)
    if controller is not None:
        choice(f'{path}.controller', controller, ('ide', 'scsi'))
        if controller == 'ide' and generation == 2:
            raise spec_error(f'{path}.controller', 'cannot be ide on a generation 2 VM.')
    else:
        controller = 'scsi'
    return size, fmt, controller


def build_plan(spec: Any) -> Plan:
    """``ConvertTo-InstancePlan``: check the whole spec, change nothing."""
    s = 'spec'
    if not isinstance(spec, dict):
        raise spec_error(s, 'must be an object.')
    known_fields(spec, s, TOP_FIELDS)
    name = read(spec, s, 'name', 'string', required=True)
    if not name.strip() or len(name) > 100:
        raise spec_error(f'{s}.name', 'must be 1 to 100 characters, not only blanks.')
    uuid_text = read(spec, s, 'instance_uuid', 'string', required=True)
    if not _UUID.match(uuid_text):
        raise spec_error(f'{s}.instance_uuid',
                         f"must be a UUID (8-4-4-4-12 hex digits), got '{uuid_text}'.")
    folder = read(spec, s, 'instance_dir', 'string', required=True)
    if not is_absolute(folder):
        raise spec_error(f'{s}.instance_dir', f"must be an absolute path, got '{folder}'.")
    generation = read(spec, s, 'generation', 'integer', required=True)
    choice(f'{s}.generation', generation, (1, 2))
    plan = Plan(name=name, uuid=uuid_text.lower(), instance_dir=folder.rstrip('\\/'),
                generation=generation)

    secure = read(spec, s, 'secure_boot', 'object', nullable=True)
    if secure is not None:
        p = f'{s}.secure_boot'
        known_fields(secure, p, ('enabled', 'template'))
        plan.secure_boot = read(secure, p, 'enabled', 'boolean', required=True)
        template = read(secure, p, 'template', 'string', nullable=True)
        if template is not None:
            choice(f'{p}.template', template, ('MicrosoftWindows',
                                               'MicrosoftUEFICertificateAuthority',
                                               'OpenSourceShieldedVM'))
        if plan.secure_boot:
            if generation != 2:
                raise spec_error(f'{p}.enabled', 'secure boot needs a generation 2 VM.')
            plan.secure_boot_template = template or 'MicrosoftWindows'

    plan.vcpus = read(spec, s, 'vcpus', 'integer', required=True)
    in_range(f'{s}.vcpus', plan.vcpus, 1, 240)
    plan.memory_mb = read(spec, s, 'memory_mb', 'integer', required=True)
    in_range(f'{s}.memory_mb', plan.memory_mb, 32)
    if plan.memory_mb % 2:
        raise spec_error(f'{s}.memory_mb', 'must be even (Hyper-V assigns memory in 2 MB '
                                           f'units), got {plan.memory_mb}.')
    ratio = read(spec, s, 'dynamic_memory_ratio', 'number', default=1.0)
    in_range(f'{s}.dynamic_memory_ratio', ratio, 1)
    plan.dynamic_memory = ratio > 1
    plan.startup_mb = plan.memory_mb
    if plan.dynamic_memory:
        startup = int(plan.memory_mb // ratio)
        startup -= startup % 2
        plan.startup_mb = max(2, min(startup, plan.memory_mb))
    vnuma = read(spec, s, 'vnuma', 'object', nullable=True)
    if vnuma is not None:
        p = f'{s}.vnuma'
        known_fields(vnuma, p, ('enabled', 'max_processors_per_node', 'max_memory_per_node_mb'))
        plan.vnuma = read(vnuma, p, 'enabled', 'boolean', required=True)
        plan.vnuma_processors = read(vnuma, p, 'max_processors_per_node', 'integer',
                                     nullable=True)
        if plan.vnuma_processors is not None:
            in_range(f'{p}.max_processors_per_node', plan.vnuma_processors, 1, 240)
        plan.vnuma_memory_mb = read(vnuma, p, 'max_memory_per_node_mb', 'integer',
                                    nullable=True)
        if plan.vnuma_memory_mb is not None:
            in_range(f'{p}.max_memory_per_node_mb', plan.vnuma_memory_mb, 2)
        if plan.vnuma and plan.dynamic_memory:
            raise spec_error(f'{p}.enabled', 'cannot be combined with dynamic memory '
                                             f'(dynamic_memory_ratio {number(ratio)}); pass '
                                             'dynamic_memory_ratio 1 for vNUMA instances.')
    plan.limit_cpu_features = read(spec, s, 'limit_cpu_features', 'boolean', default=False)

    _plan_drives(plan, spec)
    _plan_nics(plan, spec)

    plan.enable_metrics = read(spec, s, 'enable_metrics', 'boolean', default=False)
    plan.power_on = read(spec, s, 'power_on', 'boolean', default=True)
    extra = read(spec, s, 'notes_extra', 'string', nullable=True)
    plan.notes = plan.uuid + (f'\n{extra}' if extra else '')
    plan.stop_action = read(spec, s, 'automatic_stop_action', 'string', nullable=True)
    if plan.stop_action is not None:
        choice(f'{s}.automatic_stop_action', plan.stop_action, ('Save', 'TurnOff', 'ShutDown'))
    console_log = read(spec, s, 'console_log', 'object', nullable=True)
    if console_log is not None:
        p = f'{s}.console_log'
        known_fields(console_log, p, ('path', 'max_bytes'))
        log_path = read(console_log, p, 'path', 'string', required=True)
        if not is_absolute(log_path):
            raise spec_error(f'{p}.path', f"must be an absolute path, got '{log_path}'.")
        max_bytes = read(console_log, p, 'max_bytes', 'integer', nullable=True)
        if max_bytes is None:
            max_bytes = 524288
        in_range(f'{p}.max_bytes', max_bytes, 4096, 1073741824)
        plan.console_log = {'path': log_path, 'max_bytes': max_bytes}
    return plan


def _plan_drives(plan: Plan, spec: dict[str, Any]) -> None:
    s = 'spec'
    ide_free: list[tuple[int, int]] = []
    scsi_next = 1 if plan.generation == 2 else 0
    config = read(spec, s, 'config_drive', 'object', nullable=True)
    if plan.generation == 1:
        ide_free = [(0, 1)] + ([(1, 0)] if config is None else []) + [(1, 1)]

    root = read(spec, s, 'root_disk', 'object', nullable=True)
    if root is not None:
        p = f'{s}.root_disk'
        known_fields(root, p, ('source', 'cow', 'format', 'size_gb', 'controller'))
        source = read(root, p, 'source', 'string', nullable=True)
        cow = read(root, p, 'cow', 'boolean', default=False)
        fmt = read(root, p, 'format', 'string', required=True)
        choice(f'{p}.format', fmt, ('vhd', 'vhdx', 'iso'))
        size_gb = read(root, p, 'size_gb', 'integer', nullable=True)
        if size_gb is not None:
            in_range(f'{p}.size_gb', size_gb, 0)
        controller = read(root, p, 'controller', 'string', nullable=True)
        expected = 'ide' if plan.generation == 1 else 'scsi'
        if controller is not None and controller != expected:
            raise spec_error(f'{p}.controller', f'must be {expected} for a generation '
                                                f"{plan.generation} VM (got '{controller}').")
        if fmt == 'vhd' and plan.generation == 2:
            raise spec_error(f'{p}.format', 'generation 2 VMs cannot boot from a vhd image; '
                                            'vhdx is required.')
        if fmt == 'iso':
            if source is None:
                raise spec_error(f'{p}.source', 'is required for an iso root disk.')
            if cow:
                raise spec_error(f'{p}.cow', 'must be false for an iso root disk (the iso is '
                                             'copied).')
        if source is not None:
            if not is_absolute(source):
                raise spec_error(f'{p}.source', f"must be an absolute path, got '{source}'.")
            ext = extension(source).lstrip('.')
            if ext != fmt:
                raise spec_error(f'{p}.format',
                                 f"is '{fmt}' but the image '{source}' is a .{ext} file.")
        if source is not None or (size_gb is not None and size_gb > 0):
            path = join(plan.instance_dir, f'root.{fmt}')
            plan.root = {'source': source, 'cow': cow, 'format': fmt, 'size_gb': size_gb,
                         'path': path, 'reused': False, 'image_size': None}
            plan.drives.append(PlannedDrive('root', None, path,
                                            'dvd' if fmt == 'iso' else 'disk',
                                            expected.upper(), 0, 0))

    extra: list[dict[str, Any]] = []
    ephemerals = read(spec, s, 'ephemerals', 'array', default=[])
    for i, entry in enumerate(ephemerals):
        p = f'{s}.ephemerals[{i}]'
        if not isinstance(entry, dict):
            raise spec_error(p, 'must be an object.')
        size, fmt, controller = _disk_spec(entry, p, 'size_gb', plan.generation)
        extra.append({'role': 'ephemeral', 'index': i, 'field': p, 'size': size * GIB,
                      'controller': controller, 'file': f'eph{i}.{fmt}'})
    swap = read(spec, s, 'swap', 'object', nullable=True)
    if swap is not None:
        p = f'{s}.swap'
        size, fmt, controller = _disk_spec(swap, p, 'size_mb', plan.generation)
        extra.append({'role': 'swap', 'index': None, 'field': p, 'size': size * MIB,
                      'controller': controller, 'file': f'swap.{fmt}'})
    for disk in extra:
        path = join(plan.instance_dir, disk['file'])
        if disk['controller'] == 'ide':
            if not ide_free:
                raise spec_error(f'{disk["field"]}.controller',
                                 'is ide but no IDE slot is free (a generation 1 VM has 4, the '
                                 'root disk and the config drive take one each); use scsi.')
            number_, location = ide_free.pop(0)
            drive = PlannedDrive(disk['role'], disk['index'], path, 'disk', 'IDE', number_,
                                 location)
        else:
            drive = PlannedDrive(disk['role'], disk['index'], path, 'disk', 'SCSI', 0,
                                 scsi_next)
            scsi_next += 1
        plan.drives.append(drive)
        plan.disks.append({'path': path, 'size': disk['size']})

    if config is not None:
        p = f'{s}.config_drive'
        known_fields(config, p, ('content_base64', 'format', 'as_dvd'))
        content = read(config, p, 'content_base64', 'string', required=True)
        fmt = read(config, p, 'format', 'string', required=True)
        choice(f'{p}.format', fmt, ('iso', 'vhd'))
        as_dvd = read(config, p, 'as_dvd', 'boolean', required=True)
        if as_dvd != (fmt == 'iso'):
            raise spec_error(f'{p}.as_dvd', 'must be true for an iso config drive and false '
                                            f"for a vhd one (format '{fmt}', as_dvd "
                                            f'{as_dvd}).')
        try:
            data = base64.b64decode(re.sub(r'\s', '', content), validate=True)
        except (binascii.Error, ValueError):
            raise spec_error(f'{p}.content_base64', 'is not valid base64.') from None
        if not data:
            raise spec_error(f'{p}.content_base64', 'is empty.')
        path = join(plan.instance_dir, f'configdrive.{fmt}')
        kind = 'dvd' if as_dvd else 'disk'
        if plan.generation == 1:
            drive = PlannedDrive('config_drive', None, path, kind, 'IDE', 1, 0)
        else:
            drive = PlannedDrive('config_drive', None, path, kind, 'SCSI', 0, scsi_next)
            scsi_next += 1
        plan.drives.append(drive)
        plan.config_drive = {'path': path, 'data': data}
    scsi_next = _plan_volumes(plan, spec, scsi_next)
    if scsi_next > 64:
        raise spec_error(f'{s}.ephemerals',
                         f'needs {scsi_next} SCSI locations; a SCSI controller has 64.')


def _plan_volumes(plan: Plan, spec: dict[str, Any], scsi_next: int) -> int:
    """``volumes``: connected Cinder volumes; the boot one takes the root slot."""
    s = 'spec'
    boots = 0
    for i, entry in enumerate(read(spec, s, 'volumes', 'array', default=[])):
        p = f'{s}.volumes[{i}]'
        if not isinstance(entry, dict):
            raise spec_error(p, 'must be an object.')
        known_fields(entry, p, ('disk_number', 'path', 'boot'))
        number_ = read(entry, p, 'disk_number', 'integer', nullable=True)
        path = read(entry, p, 'path', 'string', nullable=True)
        boot = read(entry, p, 'boot', 'boolean', default=False)
        if (number_ is None) == (path is None):
            raise spec_error(p, 'needs exactly one of disk_number and path.')
        if path is not None and not is_absolute(path):
            raise spec_error(f'{p}.path', f"must be an absolute path, got '{path}'.")
        if boot:
            boots += 1
            if plan.root is not None or boots > 1:
                raise spec_error(f'{p}.boot', 'is true but the VM already has a root disk or a '
                                              'boot volume.')
            slot = ('IDE' if plan.generation == 1 else 'SCSI', 0, 0)
        else:
            slot = ('SCSI', 0, scsi_next)
            scsi_next += 1
        plan.drives.append(PlannedDrive('volume', i, path, 'disk', *slot, disk_number=number_,
                                        boot=boot))
    return scsi_next


def _plan_nics(plan: Plan, spec: dict[str, Any]) -> None:
    s = 'spec'
    for i, entry in enumerate(read(spec, s, 'nics', 'array', default=[])):
        p = f'{s}.nics[{i}]'
        if not isinstance(entry, dict):
            raise spec_error(p, 'must be an object.')
        known_fields(entry, p, ('id', 'mac', 'switch', 'vlan'))
        port = read(entry, p, 'id', 'string', required=True)
        if not port.strip():
            raise spec_error(f'{p}.id', 'must not be empty.')
        if any(n['id'].lower() == port.lower() for n in plan.nics):
            raise spec_error(f'{p}.id', f"repeats the port id '{port}'.")
        mac_text = read(entry, p, 'mac', 'string', required=True)
        mac = hyperv_mac(mac_text)
        if mac is None:
            raise spec_error(f'{p}.mac', f"is not a MAC address: '{mac_text}'.")
        switch_name = read(entry, p, 'switch', 'string', nullable=True)
        vlan = read(entry, p, 'vlan', 'integer', nullable=True)
        if vlan is not None:
            in_range(f'{p}.vlan', vlan, 1, 4094)
        plan.nics.append({'id': port, 'mac': mac, 'switch': switch_name, 'vlan': vlan})
    for i, entry in enumerate(read(spec, s, 'serial_ports', 'array', default=[])):
        p = f'{s}.serial_ports[{i}]'
        if not isinstance(entry, dict):
            raise spec_error(p, 'must be an object.')
        known_fields(entry, p, ('port', 'pipe'))
        port_number = read(entry, p, 'port', 'integer', required=True)
        choice(f'{p}.port', port_number, (1, 2))
        if any(sp['number'] == port_number for sp in plan.serial_ports):
            raise spec_error(f'{p}.port', f'repeats COM port {port_number}.')
        pipe = read(entry, p, 'pipe', 'string', required=True)
        match = _PIPE.match(pipe)
        if match is None:
            raise spec_error(f'{p}.pipe', f'must be a pipe name or \\\\.\\pipe\\<name>, got '
                                          f"'{pipe}'.")
        plan.serial_ports.append({'number': port_number,
                                  'path': '\\\\.\\pipe\\' + match.group(1)})


# -- running the plan ---------------------------------------------------------------------

def _check_root_source(host: SimHost, root: dict[str, Any]) -> None:
    """``Assert-RootSource``: the image exists and is not bigger than the size asked for."""
    source = root['source']
    if not is_file(host, source):
        raise script_error(f"The image '{source}' for the root disk was not found.",
                           'ObjectNotFound', 'PsDriver.ImageNotFound', source)
    if root['format'] == 'iso' or root['size_gb'] is None:
        return
    image_size = host.get_vhd(source).vhd.size
    wanted = root['size_gb'] * GIB
    if wanted < image_size:
        raise script_error(
            f"The root disk of {root['size_gb']} GB ({wanted} bytes) is smaller than the "
            f"virtual size of the image '{source}' ({image_size} bytes, "
            f'{two_places(image_size / GIB)} GB); a disk is never shrunk.',
            'InvalidArgument', 'PsDriver.RootDiskTooSmall', source)
    if root['cow'] and root['format'] == 'vhd' and wanted > image_size:
        raise script_error(
            f"A vhd differencing disk cannot be grown: the image '{source}' is {image_size} "
            f"bytes but {root['size_gb']} GB were asked for. Pass a base image already "
            'resized to that size.', 'InvalidArgument', 'PsDriver.DifferencingVhdResize',
            source)
    root['image_size'] = image_size


def logging_pipe(plan: Plan) -> str | None:
    """``Get-LoggingPipePath``: a pipe ending in _ro, else COM 1's, else the first."""
    ports = plan.serial_ports
    for port in ports:
        if port['path'].lower().endswith('_ro'):
            return port['path']
    for port in ports:
        if port['number'] == 1:
            return port['path']
    return ports[0]['path'] if ports else None


def _start_console_log(host: SimHost, plan: Plan, undo: list[tuple[str, str]]) -> dict[str, Any]:
    """``Start-InstanceConsoleLog``: a logger that cannot start is reported, not raised."""
    log = plan.console_log or {}
    record = ensure_logger(host, host.get_vm(plan.name), log['path'], log['max_bytes'],
                           pipe=logging_pipe(plan))
    if record['started']:
        undo.append(('ConsoleLogger', plan.name))
    return record


def _undo(host: SimHost, steps: list[tuple[str, str]]) -> None:
    """``Undo-Creation``: newest first; a step that fails is skipped (the script warns)."""
    for kind, what in reversed(steps):
        try:
            if kind == 'ConsoleLogger':
                if host.find_vm(what) is not None:
                    host.stop_console_logger(what)
            elif kind == 'VM':
                vm = host.find_vm(what)
                if vm is not None:
                    remove_vm(host, vm)
            elif kind == 'File':
                if is_file(host, what):
                    host.remove_item(what)
            elif is_dir(host, what):
                host.remove_item(what, recurse=True)
        except SimError:
            continue


def _create(host: SimHost, plan: Plan, undo: list[tuple[str, str]], created: list[str],
            reused: list[str], logger: dict[str, Any]) -> str:
    """The spawn steps; returns the VM id (``logger`` gets the console_logger record)."""
    if not is_dir(host, plan.instance_dir):
        undo.append(('Directory', plan.instance_dir))
        host.make_dir(plan.instance_dir)
        created.append(plan.instance_dir)
    root = plan.root
    if root is not None:
        if root['reused']:
            reused.append(root['path'])
        else:
            undo.append(('File', root['path']))
            wanted = root['size_gb'] * GIB if root['size_gb'] else None
            if root['source'] is None:
                host.new_vhd(root['path'], wanted)
            elif root['format'] == 'iso':
                host.copy_file(root['source'], root['path'], overwrite=True)
            else:
                if root['cow']:
                    host.new_vhd(root['path'], parent_path=root['source'])
                else:
                    host.copy_file(root['source'], root['path'], overwrite=True)
                if wanted is not None and wanted > root['image_size']:
                    host.resize_vhd(root['path'], wanted)
            created.append(root['path'])
    for disk in plan.disks:
        if is_file(host, disk['path']):
            reused.append(disk['path'])
            continue
        undo.append(('File', disk['path']))
        host.new_vhd(disk['path'], disk['size'])
        created.append(disk['path'])
    if plan.config_drive is not None:
        path = plan.config_drive['path']
        new = not is_file(host, path)
        if new:
            undo.append(('File', path))
        host.write_file(path, plan.config_drive['data'])
        if new:
            created.append(path)

    undo.append(('VM', plan.name))
    leaf = re.split(r'[\\/]', plan.instance_dir)[-1]
    vm_path = plan.instance_dir if leaf.lower() == plan.name.lower() \
        else join(plan.instance_dir, plan.name)
    vm = host.create_vm(plan.name, generation=plan.generation,
                        memory_startup_mb=plan.startup_mb, path=vm_path)
    name = vm.name
    host.set_notes(name, plan.notes)
    host.set_vm_options(name, automatic_start_action='Nothing',
                        automatic_stop_action=plan.stop_action)
    host.set_processor(name, plan.vcpus, limit_cpu_features=plan.limit_cpu_features,
                       max_per_numa_node=plan.vnuma_processors if plan.vnuma else None)
    if plan.dynamic_memory:
        host.set_memory(name, plan.startup_mb, dynamic=True, minimum_mb=plan.startup_mb,
                        maximum_mb=plan.memory_mb)
    else:
        host.set_memory(name, plan.startup_mb, dynamic=False)
    if plan.vnuma and plan.vnuma_memory_mb is not None:
        host.set_numa_memory(name, plan.vnuma_memory_mb)
    if plan.generation == 2:
        host.set_secure_boot(name, plan.secure_boot, plan.secure_boot_template)
    elif host.get_vm(name).scsi_controllers == 0:
        host.add_scsi_controller(name)

    root_drive = None
    for drive in plan.drives:
        if drive.drive_type == 'dvd':
            host.add_dvd_drive(name, drive.path, controller_number=drive.controller_number,
                               location=drive.controller_location)
        else:
            host.attach_disk(name, drive.path, disk_number=drive.disk_number,
                             controller_type=drive.controller_type,
                             controller_number=drive.controller_number,
                             location=drive.controller_location)
        if drive.role == 'root' or drive.boot:
            root_drive = drive
    if plan.generation == 1:
        order = ['IDE', 'CD', 'LegacyNetworkAdapter', 'Floppy']
        if root is not None and root['format'] == 'iso':
            order = ['CD', 'IDE', 'LegacyNetworkAdapter', 'Floppy']
        host.set_boot_order(name, order)
    elif root_drive is not None:
        host.set_first_boot_device(name, root_drive.controller_type,
                                   root_drive.controller_number, root_drive.controller_location)

    for nic in plan.nics:
        adapter = host.add_nic(name, nic['id'], switch_name=nic['switch'] or None,
                               mac=nic['mac'])
        if nic['vlan'] is not None:
            host.set_nic_vlan(name, adapter.id, nic['vlan'])
    for port in plan.serial_ports:
        host.set_com_port(name, f'COM{port["number"]}', port['path'])
    if plan.enable_metrics:
        host.enable_metering(name)
    if plan.console_log is not None:
        # Before the start: the logger waits for the pipe and so sees the first boot.
        logger.update(_start_console_log(host, plan, undo))
    if plan.power_on:
        host.start_vm(name)
    return vm.id


def spawn(host: SimHost, spec: Any) -> dict[str, Any]:
    """Everything New-Instance does; also used by other handlers' ``prepare`` hooks."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as exc:
            raise spec_error('spec', f'is a string but not JSON: {exc}') from None
    plan = build_plan(spec)
    if host.find_vm(plan.name) is not None:
        raise script_error(f"A virtual machine named '{plan.name}' already exists on this "
                           'host.', 'ResourceExists', 'PsDriver.VMExists', plan.name)
    if plan.root is not None:
        if is_file(host, plan.root['path']):
            plan.root['reused'] = True
        elif plan.root['source'] is not None:
            _check_root_source(host, plan.root)

    created: list[str] = []
    reused: list[str] = []
    undo: list[tuple[str, str]] = []
    logger: dict[str, Any] = {}
    try:
        vm_id = _create(host, plan, undo, created, reused, logger)
    except SimError:
        _undo(host, undo)
        raise
    return {
        'name': plan.name,
        'instance_uuid': plan.uuid,
        'vm_id': vm_id,
        'state': host.get_vm(plan.name).state,
        'generation': plan.generation,
        'root_disk_path': plan.root['path'] if plan.root else None,
        'drives': [d.record() for d in plan.drives],
        'created': created,
        'reused': reused,
        'console_logger': logger or None,
    }


@handler(NAME)
def new_instance(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    if params.get('Spec') is None:
        raise SimError("Cannot validate argument on parameter 'Spec'. The argument is null. "
                       'Provide a valid value for the argument, and then try running the '
                       'command again.', 'InvalidData',
                       f'ParameterArgumentValidationError,{NAME}',
                       'System.Management.Automation.ParameterBindingException')
    return spawn(host, params['Spec'])


@prepare(NAME)
def _prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The example's volume, cached image (smaller than the flavor size) and switches."""
    from psdriver.sim.scenario import add_image, ensure_folder, ensure_switch
    spec = params['Spec']
    ensure_folder(host, paths.parent(paths.normalize(spec['instance_dir'])) or
                  spec['instance_dir'])
    root = spec.get('root_disk') or {}
    if root.get('source'):
        size = 1 * GIB if root['format'] == 'iso' else 10 * GIB
        add_image(host, root['source'], size)
    for nic in spec.get('nics') or []:
        if nic.get('switch'):
            ensure_switch(host, nic['switch'])
