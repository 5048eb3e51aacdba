"""New-Instance: the whole spawn in one call, undone completely when a step fails.

The spec is checked first against the contract's ``x-spec-schema`` (the
script checks the same rules in ``ConvertTo-InstancePlan``), then for what a
schema cannot say; a break is ``Invalid instance spec: <field> <why>``,
InvalidArgument / PsDriver.InvalidSpec.  Then the steps run against the host model in the
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
import uuid
from dataclasses import dataclass, field
from typing import Any

from psdriver.bridge import contracts
from psdriver.sim import paths
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import SimError
from psdriver.sim.console_logger import ensure_logger
from psdriver.sim.handlers.ovs import ovs_add_port, ovs_del_port, resolve_ovs_vsctl
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import (
    hyperv_mac, is_absolute, is_dir, is_file, join, number, remove_vm,
    script_error, two_places)
from psdriver.sim.state import GIB, MIB
from psdriver.sim.vms import secure_boot_templates

NAME = 'New-Instance'
_PIPE = re.compile(r'^(?:\\\\\.\\pipe\\)?([^\\/]+)$', re.IGNORECASE)


def spec_error(field_name: str, message: str) -> SimError:
    return script_error(f'Invalid instance spec: {field_name} {message}', 'InvalidArgument',
                        'PsDriver.InvalidSpec', field_name)


# -- the spec's schema ---------------------------------------------------------------------

def check_schema(spec: Any) -> None:
    """The contract's ``x-spec-schema``: the one description of a valid spec.

    The script checks the same rules in ``ConvertTo-InstancePlan``; the
    simulator does not keep a copy of them but reads the contract the bridge
    checks callers against.  A break is InvalidArgument / PsDriver.InvalidSpec
    naming the field, as the script's is.
    """
    try:
        contracts.load_contract(NAME).validate_spec(spec)
    except contracts.ShapeError as exc:
        where = '.'.join(['spec'] + [f'[{p}]' if isinstance(p, int) else p
                                     for p in exc.path]).replace('.[', '[')
        raise spec_error(where, _schema_words(exc)) from None


def _schema_words(exc: Any) -> str:
    """fastjsonschema's message without its leading field path (``where`` names it)."""
    message = exc.message
    for prefix in ('.'.join(str(p) for p in exc.path) + ' ', 'the value '):
        if message.startswith(prefix):
            return message[len(prefix):] + '.'
    return message + '.'


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
    max_iops: int | None = None      # a volume file's Storage QoS limit

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
    #: ovs-vsctl's full path when a nic has an ovs_bridge.
    ovs_vsctl: str | None = None
    serial_ports: list[dict[str, Any]] = field(default_factory=list)
    enable_metrics: bool = False
    power_on: bool = True
    notes: str = ''
    stop_action: str | None = None
    #: ``{'path', 'max_bytes'}`` of the console log, or None.
    console_log: dict[str, Any] | None = None
    nested_virtualization: bool = False
    disk_max_iops: int | None = None
    tpm: bool = False
    assignable_devices: list[str] = field(default_factory=list)
    mmio_space: dict[str, int] | None = None
    #: ``ConvertTo-ShieldingPlan``: data_file, specialization_file, catalog_file,
    #: specialization, timeout, poll, key_protector, only_data_in_folder; or None.
    shielding: dict[str, Any] | None = None


def _disk_controller(disk: dict[str, Any], where: str, generation: int) -> str:
    """``Read-DiskSpec``: the controller of an ephemeral or swap entry (schema-checked)."""
    controller = disk.get('controller')
    if controller == 'ide' and generation == 2:
        raise spec_error(f'{where}.controller', 'cannot be ide on a generation 2 VM.')
    return controller or 'scsi'


def build_plan(spec: Any) -> Plan:
    """``ConvertTo-InstancePlan``: check the whole spec, change nothing.

    The contract's schema first (:func:`check_schema`); then what a schema
    cannot say (fields that depend on each other, unique ids, free slots).
    """
    check_schema(spec)
    s = 'spec'
    generation = spec['generation']
    plan = Plan(name=spec['name'], uuid=spec['instance_uuid'].lower(),
                instance_dir=spec['instance_dir'].rstrip('\\/'), generation=generation)
    secure = spec.get('secure_boot')
    if secure is not None and secure['enabled']:
        if generation != 2:
            raise spec_error(f'{s}.secure_boot.enabled', 'secure boot needs a generation 2 VM.')
        plan.secure_boot = True
        plan.secure_boot_template = secure.get('template') or 'MicrosoftWindows'

    plan.vcpus = int(spec['vcpus'])
    plan.memory_mb = int(spec['memory_mb'])
    ratio = float(spec.get('dynamic_memory_ratio', 1.0))
    plan.dynamic_memory = ratio > 1
    plan.startup_mb = plan.memory_mb
    if plan.dynamic_memory:
        startup = int(plan.memory_mb // ratio)
        startup -= startup % 2
        plan.startup_mb = max(2, min(startup, plan.memory_mb))
    vnuma = spec.get('vnuma')
    if vnuma is not None:
        plan.vnuma = vnuma['enabled']
        plan.vnuma_processors = vnuma.get('max_processors_per_node')
        plan.vnuma_memory_mb = vnuma.get('max_memory_per_node_mb')
        if plan.vnuma and plan.dynamic_memory:
            raise spec_error(f'{s}.vnuma.enabled', 'cannot be combined with dynamic memory '
                                                   f'(dynamic_memory_ratio {number(ratio)}); '
                                                   'pass dynamic_memory_ratio 1 for vNUMA '
                                                   'instances.')
    plan.limit_cpu_features = spec.get('limit_cpu_features', False)

    _plan_drives(plan, spec)
    _plan_nics(plan, spec)

    plan.enable_metrics = spec.get('enable_metrics', False)
    plan.power_on = spec.get('power_on', True)
    extra = spec.get('notes_extra')
    plan.notes = plan.uuid + (f'\n{extra}' if extra else '')
    plan.stop_action = spec.get('automatic_stop_action')
    console_log = spec.get('console_log')
    if console_log is not None:
        max_bytes = console_log.get('max_bytes')
        plan.console_log = {'path': console_log['path'],
                            'max_bytes': 524288 if max_bytes is None else int(max_bytes)}
    plan.nested_virtualization = spec.get('nested_virtualization', False)
    if plan.nested_virtualization and plan.dynamic_memory:
        raise spec_error(f'{s}.nested_virtualization', 'cannot be combined with dynamic memory '
                                                       f'(dynamic_memory_ratio {number(ratio)}); '
                                                       'pass dynamic_memory_ratio 1.')
    plan.disk_max_iops = spec.get('disk_max_iops')
    if spec.get('tpm') is not None:
        if plan.generation != 2 or not plan.secure_boot:
            raise spec_error(f'{s}.tpm', 'needs a generation 2 VM with secure boot on '
                                         '(secure_boot.enabled true).')
        plan.tpm = True
    for index, device in enumerate(spec.get('assignable_devices') or []):
        location = device['location_path']
        if not location.strip():
            raise spec_error(f'{s}.assignable_devices[{index}].location_path',
                             'must not be empty.')
        plan.assignable_devices.append(location)
    mmio = spec.get('mmio_space')
    if mmio is not None:
        plan.mmio_space = {'low_mb': mmio['low_mb'], 'high_mb': mmio['high_mb']}
    if plan.assignable_devices:
        if plan.stop_action != 'TurnOff':
            raise spec_error(f'{s}.automatic_stop_action', 'must be TurnOff for a VM with '
                                                           'assignable_devices (Discrete Device '
                                                           'Assignment).')
        if plan.dynamic_memory:
            raise spec_error(f'{s}.assignable_devices', 'cannot be combined with dynamic memory '
                                                        f'(dynamic_memory_ratio {number(ratio)}).')
    plan.shielding = _plan_shielding(plan, spec.get('shielding'))
    return plan


def _plan_shielding(plan: Plan, shielding: dict[str, Any] | None) -> dict[str, Any] | None:
    """``ConvertTo-ShieldingPlan``: spec.shielding against the rest of the plan."""
    if shielding is None:
        return None
    p = 'spec.shielding'
    data_file = shielding['data_file']
    if not is_absolute(data_file) or \
            paths.key(paths.parent(paths.normalize(data_file)) or '') != \
            paths.key(paths.normalize(plan.instance_dir)):
        raise spec_error(f'{p}.data_file', f"must be a file directly in instance_dir, got "
                                           f"'{data_file}'.")
    specialization = dict(shielding.get('specialization') or {})
    if any(not key.strip() for key in specialization):
        raise spec_error(f'{p}.specialization', 'has an empty key.')
    if plan.generation != 2 or not plan.secure_boot:
        raise spec_error(p, 'needs a generation 2 VM with secure boot on '
                            '(secure_boot.enabled true).')
    if plan.tpm:
        raise spec_error(p, 'cannot be combined with tpm: a shielded VM gets its TPM with the '
                            'key protector of the shielding data.')
    if not plan.power_on:
        raise spec_error(p, 'needs power_on true: Initialize-ShieldedVM starts the VM.')
    root = plan.root
    if root is None or root['source'] is None or root['format'] != 'vhdx':
        raise spec_error(p, 'needs a root_disk whose source is a vhdx image (a signed template '
                            'disk).')
    return {'data_file': data_file,
            'specialization_file': join(plan.instance_dir, 'specialization.fsk'),
            'catalog_file': join(plan.instance_dir, 'template.vsc'),
            'specialization': specialization,
            'timeout': shielding.get('provisioning_timeout_s', 900),
            'poll': shielding.get('poll_interval_s', 5),
            'key_protector': None, 'only_data_in_folder': False}


def _plan_drives(plan: Plan, spec: dict[str, Any]) -> None:
    s = 'spec'
    ide_free: list[tuple[int, int]] = []
    scsi_next = 1 if plan.generation == 2 else 0
    config = spec.get('config_drive')
    if plan.generation == 1:
        ide_free = [(0, 1)] + ([(1, 0)] if config is None else []) + [(1, 1)]

    root = spec.get('root_disk')
    if root is not None:
        p = f'{s}.root_disk'
        source, fmt, size_gb = root.get('source'), root['format'], root.get('size_gb')
        cow = root.get('cow', False)
        controller = root.get('controller')
        expected = 'ide' if plan.generation == 1 else 'scsi'
        if controller is not None and controller != expected:
            raise spec_error(f'{p}.controller', f'must be {expected} for a generation '
                                                f"{plan.generation} VM (got '{controller}').")
        if fmt == 'vhd' and plan.generation == 2:
            raise spec_error(f'{p}.format', 'generation 2 VMs cannot boot from a vhd image; '
                                            'vhdx is required.')
        if source is not None or (size_gb is not None and size_gb > 0):
            path = join(plan.instance_dir, f'root.{fmt}')
            plan.root = {'source': source, 'cow': cow, 'format': fmt, 'size_gb': size_gb,
                         'path': path, 'reused': False, 'image_size': None}
            plan.drives.append(PlannedDrive('root', None, path,
                                            'dvd' if fmt == 'iso' else 'disk',
                                            expected.upper(), 0, 0))

    extra: list[dict[str, Any]] = []
    for i, entry in enumerate(spec.get('ephemerals') or []):
        p = f'{s}.ephemerals[{i}]'
        extra.append({'role': 'ephemeral', 'index': i, 'field': p,
                      'size': int(entry['size_gb']) * GIB,
                      'controller': _disk_controller(entry, p, plan.generation),
                      'file': f'eph{i}.{entry["format"]}'})
    swap = spec.get('swap')
    if swap is not None:
        p = f'{s}.swap'
        extra.append({'role': 'swap', 'index': None, 'field': p,
                      'size': int(swap['size_mb']) * MIB,
                      'controller': _disk_controller(swap, p, plan.generation),
                      'file': f'swap.{swap["format"]}'})
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
        fmt, as_dvd = config['format'], config['as_dvd']
        try:
            data = base64.b64decode(re.sub(r'\s', '', config['content_base64']), validate=True)
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
    for i, entry in enumerate(spec.get('volumes') or []):
        p = f'{s}.volumes[{i}]'
        number_, path, boot = entry.get('disk_number'), entry.get('path'), entry.get('boot', False)
        max_iops = entry.get('max_iops')
        if (number_ is None) == (path is None):
            raise spec_error(p, 'needs exactly one of disk_number and path.')
        if max_iops is not None:
            if not isinstance(max_iops, int) or not 1 <= max_iops <= 1_000_000_000:
                raise spec_error(f'{p}.max_iops', 'must be between 1 and 1000000000.')
            if path is None:
                raise spec_error(f'{p}.max_iops', 'applies to a volume file (path) only.')
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
                                        boot=boot, max_iops=max_iops))
    return scsi_next


def _plan_nics(plan: Plan, spec: dict[str, Any]) -> None:
    s = 'spec'
    for i, entry in enumerate(spec.get('nics') or []):
        p = f'{s}.nics[{i}]'
        port = entry['id']
        if any(n['id'].lower() == port.lower() for n in plan.nics):
            raise spec_error(f'{p}.id', f"repeats the port id '{port}'.")
        mac = hyperv_mac(entry['mac'])
        if mac is None:
            raise spec_error(f'{p}.mac', f"is not a MAC address: '{entry['mac']}'.")
        plan.nics.append({'id': port, 'mac': mac, 'switch': entry.get('switch'),
                          'vlan': entry.get('vlan'),
                          'ovs_bridge': entry.get('ovs_bridge') or None})
    for i, entry in enumerate(spec.get('serial_ports') or []):
        p = f'{s}.serial_ports[{i}]'
        port_number = entry['port']
        if any(sp['number'] == port_number for sp in plan.serial_ports):
            raise spec_error(f'{p}.port', f'repeats COM port {port_number}.')
        match = _PIPE.match(entry['pipe'])
        if match is None:
            raise spec_error(f'{p}.pipe', f'must be a pipe name or \\\\.\\pipe\\<name>, '
                                          f"got '{entry['pipe']}'.")
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


def _start_console_log(host: SimHost, plan: Plan, undo: list[tuple[str, ...]]) -> dict[str, Any]:
    """``Start-InstanceConsoleLog``: a logger that cannot start is reported, not raised."""
    log = plan.console_log or {}
    record = ensure_logger(host, host.get_vm(plan.name), log['path'], log['max_bytes'],
                           pipe=logging_pipe(plan))
    if record['started']:
        undo.append(('ConsoleLogger', plan.name))
    return record


def _undo(host: SimHost, steps: list[tuple[str, ...]]) -> None:
    """``Undo-Creation``: newest first; a step that fails is skipped (the script warns)."""
    for kind, what, *more in reversed(steps):
        try:
            if kind == 'OvsPort':
                ovs_del_port(host, more[0], what)
            elif kind == 'ConsoleLogger':
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


def _check_shielding(host: SimHost, plan: Plan) -> None:
    """``Assert-PsDriverGuardedHost`` and ``Get-PsDriverShieldingKeyProtector``."""
    shielding = plan.shielding
    if plan.root['reused']:
        raise script_error(f"A shielded VM is provisioned from its template disk: "
                           f"'{plan.root['path']}' exists already.", 'ResourceExists',
                           'PsDriver.RootDiskExists', plan.root['path'])
    cfg = host.config
    hgs = host.hgs_client_configuration()
    why = None
    if not cfg.shielded_vm_tools:
        why = ('the shielded VM provisioning cmdlets (Initialize-ShieldedVM) are not '
               'installed')
    elif not hgs['IsHostGuarded']:
        why = 'it is not guarded (Get-HgsClientConfiguration IsHostGuarded is false)'
    elif hgs['Mode'] != 'HostGuardianService':
        why = (f"its Host Guardian Service client is in mode '{hgs['Mode']}', not "
               'HostGuardianService')
    if why:
        raise script_error(f'This host cannot run shielded virtual machines: {why}.',
                           'ResourceUnavailable', 'PsDriver.HostNotGuarded', cfg.hostname)
    if not is_file(host, shielding['data_file']):
        raise script_error(f"The shielding data file '{shielding['data_file']}' was not found.",
                           'ObjectNotFound', 'PsDriver.ShieldingDataNotFound',
                           shielding['data_file'])
    try:
        shielding['key_protector'] = host.key_protector_from_shielding_data(
            shielding['data_file'])
    except SimError as exc:
        raise script_error(f'The shielding data cannot be read: {exc.message}', 'InvalidData',
                           'PsDriver.InvalidShieldingData', shielding['data_file']) from None


def _check_template_disk(host: SimHost, plan: Plan) -> None:
    """``Assert-PsDriverTemplateDisk``: a signed template disk the shielding data trusts."""
    shielding, source = plan.shielding, plan.root['source']
    try:
        try:
            host.save_volume_signature_catalog(source, shielding['catalog_file'])
        except SimError as exc:
            raise script_error(f"The root disk image '{source}' is not a signed shielded VM "
                               f'template disk (Protect-TemplateDisk): {exc.message}',
                               'InvalidArgument', 'PsDriver.NotATemplateDisk', source) from None
        if not host.test_shielding_data_applicability(shielding['data_file'],
                                                      shielding['catalog_file']):
            raise script_error(f"The shielding data cannot be used with the template disk "
                               f"'{source}': its volume signature catalog matches no volume ID "
                               'qualifier of the shielding data.', 'InvalidArgument',
                               'PsDriver.ShieldingDataNotApplicable', source)
    finally:
        if is_file(host, shielding['catalog_file']):
            host.remove_item(shielding['catalog_file'])


def _provision_shielded(host: SimHost, plan: Plan) -> float:
    """Initialize-ShieldedVM, then ``Wait-PsDriverShieldedProvisioning`` (simulated time)."""
    shielding = plan.shielding
    host.new_specialization_data_file(shielding['specialization_file'],
                                      shielding['specialization'])
    host.initialize_shielded_vm(plan.name, shielding['data_file'],
                                shielding['specialization_file'])
    elapsed = 0.0
    while True:
        job = host.shielded_vm_provisioning_status(plan.name)
        if job['JobState'] == 7:
            return elapsed
        if job['JobState'] in (8, 9, 10):
            detail = job['ErrorDescription'] or \
                f"the provisioning job ended in state {job['JobState']}"
            raise script_error(f"Provisioning the shielded virtual machine '{plan.name}' "
                               f'failed: {detail}', 'InvalidResult',
                               'PsDriver.ShieldedProvisioningFailed', plan.name)
        if elapsed + shielding['poll'] > shielding['timeout']:
            raise script_error(f"Provisioning the shielded virtual machine '{plan.name}' did "
                               f"not finish within {shielding['timeout']} seconds.",
                               'OperationTimeout', 'PsDriver.ShieldedProvisioningTimeout',
                               plan.name)
        elapsed += shielding['poll']


def _remove_shielding_files(host: SimHost, plan: Plan, failed: bool) -> None:
    """``Remove-ShieldingFile``: the data and specialization files; the folder after a failure."""
    shielding = plan.shielding
    for path in (shielding['data_file'], shielding['specialization_file'],
                 shielding['catalog_file']):
        try:
            if is_file(host, path):
                host.remove_item(path)
        except SimError:
            continue
    if failed and shielding['only_data_in_folder'] and is_dir(host, plan.instance_dir):
        try:        # it held nothing but the data file at the start: all in it is ours
            host.remove_item(plan.instance_dir, recurse=True)
        except SimError:
            pass


def _create(host: SimHost, plan: Plan, undo: list[tuple[str, ...]], created: list[str],
            reused: list[str], logger: dict[str, Any]) -> str:
    """The spawn steps; returns the VM id (``logger`` gets the console_logger record)."""
    if plan.shielding is not None:
        _check_template_disk(host, plan)
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
    if plan.nested_virtualization:
        host.set_nested_virtualization(name, True)
    if plan.generation == 2:
        host.set_secure_boot(name, plan.secure_boot, plan.secure_boot_template)
    elif host.get_vm(name).scsi_controllers == 0:
        host.add_scsi_controller(name)
    if plan.assignable_devices:
        if plan.mmio_space is not None:
            host.set_mmio_space(name, plan.mmio_space['low_mb'], plan.mmio_space['high_mb'])
        for location in plan.assignable_devices:
            try:
                host.add_assignable_device(name, location)
            except SimError as exc:
                raise script_error(f"Cannot assign the device at '{location}' to '{plan.name}': "
                                   f'{exc.message}', 'ResourceUnavailable',
                                   'PsDriver.DeviceUnavailable', location) from None
    if plan.tpm:
        host.set_local_key_protector(name)
        host.enable_vtpm(name)
    if plan.shielding is not None:
        host.set_key_protector(name, plan.shielding['key_protector'])
        host.set_security_policy(name, True)
        host.enable_vtpm(name)

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
    if plan.disk_max_iops is not None:
        for drive in plan.drives:
            if drive.drive_type == 'disk' and drive.role in ('root', 'ephemeral', 'swap'):
                host.set_disk_max_iops(name, drive.path, plan.disk_max_iops)
    for drive in plan.drives:
        if drive.role == 'volume' and drive.max_iops is not None:
            host.set_drive_max_iops(name, drive.controller_type, drive.controller_number,
                                    drive.controller_location, drive.max_iops)

    for nic in plan.nics:
        adapter = host.add_nic(name, nic['id'], switch_name=nic['switch'] or None,
                               mac=nic['mac'])
        if nic['vlan'] is not None:
            host.set_nic_vlan(name, adapter.id, nic['vlan'])
        if nic['ovs_bridge'] and plan.ovs_vsctl:
            undo.append(('OvsPort', nic['id'], plan.ovs_vsctl))
            ovs_add_port(host, plan.ovs_vsctl, nic['ovs_bridge'], nic['id'], nic['mac'],
                         uuid.UUID(plan.uuid))
    for port in plan.serial_ports:
        host.set_com_port(name, f'COM{port["number"]}', port['path'])
    if plan.enable_metrics:
        host.enable_metering(name)
    if plan.console_log is not None:
        # Before the start: the logger waits for the pipe and so sees the first boot.
        logger.update(_start_console_log(host, plan, undo))
    if plan.shielding is not None:
        plan.shielding['seconds'] = _provision_shielded(host, plan)
    elif plan.power_on:
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
    if plan.shielding is None:
        return _spawn_plan(host, plan, spec)
    shielding = plan.shielding
    if is_dir(host, plan.instance_dir):
        inside = host.list_dir(plan.instance_dir)
        shielding['only_data_in_folder'] = len(inside) == 1 and \
            paths.key(inside[0].path) == paths.key(paths.normalize(shielding['data_file']))
    failed = True
    try:
        result = _spawn_plan(host, plan, spec)
        failed = False
        return result
    finally:
        _remove_shielding_files(host, plan, failed)


def _spawn_plan(host: SimHost, plan: Plan, spec: dict[str, Any]) -> dict[str, Any]:
    if any(nic['ovs_bridge'] for nic in plan.nics):
        # ConvertTo-InstancePlan resolves ovs-vsctl with the rest of the plan.
        plan.ovs_vsctl = resolve_ovs_vsctl(host, spec.get('ovs_vsctl_path'))
    offered = secure_boot_templates(host.config.os_version)
    if plan.secure_boot and plan.secure_boot_template not in offered:
        raise script_error(f"Secure boot template '{plan.secure_boot_template}' is not "
                           f'available on this host (Windows {host.config.os_version}); it '
                           f'offers {", ".join(offered)}.', 'InvalidArgument',
                           'PsDriver.SecureBootTemplateUnavailable', plan.secure_boot_template)
    if host.find_vm(plan.name) is not None:
        raise script_error(f"A virtual machine named '{plan.name}' already exists on this "
                           'host.', 'ResourceExists', 'PsDriver.VMExists', plan.name)
    if plan.root is not None:
        if is_file(host, plan.root['path']):
            plan.root['reused'] = True
        elif plan.root['source'] is not None:
            _check_root_source(host, plan.root)
    if plan.shielding is not None:
        _check_shielding(host, plan)

    created: list[str] = []
    reused: list[str] = []
    undo: list[tuple[str, ...]] = []
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
        'shielding': None if plan.shielding is None else {
            'provisioned': True, 'provisioning_seconds': plan.shielding['seconds']},
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
    from psdriver.sim.layout import add_image, ensure_folder, ensure_switch
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
