"""Initialize-ComputeHost and Invoke-HostPowerAction."""

from __future__ import annotations

import re
from typing import Any

from psdriver.sim import paths
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import PARAMETER_BINDING_EXCEPTION, SimError
from psdriver.sim.console_logger import RUNNING_STATES, ensure_logger
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import (
    in_set, int_param, is_absolute, is_dir, join, not_empty, notes_uuid, script_error, switch,
    text_list)
from psdriver.sim.state import GIB

_UNC_ROOT = re.compile(r'^\\\\([^\\]+)\\([^\\]+)')
_CSV_ROOT = re.compile(r'^([A-Za-z]:)\\ClusterStorage\\([^\\]+)', re.IGNORECASE)
_BASE_NAME = re.compile(r'^[^\\/:*?"<>|]+$')


def _version(text: Any, script: str, param: str) -> tuple[int, ...]:
    """A ``[version]`` parameter: two to four dot-separated numbers."""
    value = str(text).strip()
    if not re.fullmatch(r'\d+(\.\d+){1,3}', value):
        raise SimError(f"Cannot process argument transformation on parameter '{param}'. "
                       f'Cannot convert value "{text}" to type "System.Version".',
                       'InvalidData', f'ParameterArgumentTransformationError,{script}',
                       PARAMETER_BINDING_EXCEPTION, value)
    return tuple(int(part) for part in value.split('.'))


def path_kind(host: SimHost, path: str) -> tuple[str, str]:
    """``Get-PathKind``: (unc | csv | mapped | local, the root that must exist)."""
    unc = _UNC_ROOT.match(path)
    if unc:
        return 'unc', unc.group(0)
    csv = _CSV_ROOT.match(path)
    if csv:
        return 'csv', csv.group(0)
    drive = path[:2].upper()
    root = drive + '\\'
    mapped = {d.rstrip('\\').upper() for d in host.config.mapped_drives}
    return ('mapped' if drive in mapped else 'local'), root


def _new_folder(host: SimHost, path: str) -> None:
    """``New-Folder``: any failure is ObjectNotFound / PsDriver.InstancesPathNotFound."""
    try:
        host.make_dir(path)
    except SimError as exc:
        raise script_error(f"Cannot create folder '{path}': {exc.message}", 'ObjectNotFound',
                           'PsDriver.InstancesPathNotFound', path) from None


def _pattern_error(script: str, param: str, value: str, pattern: str) -> SimError:
    """``[ValidatePattern()]`` refusing ``value``."""
    return SimError(f"Cannot validate argument on parameter '{param}'. The argument "
                    f'"{value}" does not match the "{pattern}" pattern. Supply an argument '
                    f'that matches "{pattern}" and try the command again.', 'InvalidData',
                    f'ParameterArgumentValidationError,{script}', PARAMETER_BINDING_EXCEPTION,
                    value)


def _console_loggers(host: SimHost, instances: str, file_name: str,
                     max_bytes: int) -> list[dict[str, Any]]:
    """Step 6: every running instance (Notes carry a UUID) gets its console logger back."""
    loggers = []
    for vm in sorted(host.state.vms.values(), key=lambda v: v.name.lower()):
        if vm.state not in RUNNING_STATES or notes_uuid(vm.notes) is None:
            continue
        log_path = join(join(instances, vm.name), file_name)
        record = ensure_logger(host, vm, log_path, max_bytes)
        loggers.append({'name': vm.name, 'started': record['started'],
                        'running': record['running'], 'error': record['error']})
    return loggers


def _probe(host: SimHost, folder: str) -> None:
    """``Test-FolderWritable``: write and delete a probe file."""
    probe = join(folder, '.psdriver-probe.tmp')
    try:
        host.add_file(probe, 0, overwrite=True)
        host.remove_item(probe)
    except SimError as exc:
        raise script_error(f"Cannot write to the instances folder '{folder}': {exc.message}",
                           'ObjectNotFound', 'PsDriver.InstancesPathNotFound', folder) from None


#: The first Windows build whose Hyper-V module PowerShell 7 loads natively (1809).
NATIVE_PS7_BUILD = 17763


@handler('Initialize-ComputeHost')
def initialize_compute_host(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Initialize-ComputeHost'
    wanted_path = not_empty(script, params, 'InstancesPath')
    base_name = str(params.get('BaseDirectoryName', '_base'))
    if not base_name or not _BASE_NAME.match(base_name):
        raise _pattern_error(script, 'BaseDirectoryName', base_name, _BASE_NAME.pattern)
    log_name = params.get('ConsoleLogFileName')
    if log_name is not None and not _BASE_NAME.match(str(log_name)):
        raise _pattern_error(script, 'ConsoleLogFileName', str(log_name), _BASE_NAME.pattern)
    log_bytes = int_param(script, params, 'ConsoleLogMaxBytes', 524288, 4096, 1073741824)
    required = text_list(params, 'RequiredSwitches')
    minimum = _version(params.get('MinimumOSVersion', '10.0.14393'), script,
                       'MinimumOSVersion')
    cfg = host.config
    if not cfg.modules.get('Hyper-V', False):
        raise script_error('The Hyper-V PowerShell module is not installed on this host '
                           '(Install-WindowsFeature Hyper-V-PowerShell, or '
                           'Enable-WindowsOptionalFeature '
                           'Microsoft-Hyper-V-Management-PowerShell).', 'NotInstalled',
                           'PsDriver.HyperVModuleMissing', 'Hyper-V')
    if not cfg.is_admin:
        raise script_error('Access to Hyper-V was denied; the account must be a member of '
                           'Administrators or Hyper-V Administrators: You do not have the '
                           'required permission to complete this task.', 'PermissionDenied',
                           'PsDriver.HyperVAccessDenied', 'Hyper-V')
    if not cfg.vmms_running:
        raise script_error('The Hyper-V host does not answer (is the Virtual Machine '
                           'Management service running?): The Virtual Machine Management '
                           'Service on the host computer is not running.',
                           'ResourceUnavailable', 'PsDriver.HyperVUnavailable', 'Hyper-V')
    os_version = tuple(int(p) for p in cfg.os_version.split('.'))
    if os_version < minimum:
        raise script_error(f'This host runs Windows {cfg.os_version} ({cfg.os_name}); at '
                           f'least {".".join(map(str, minimum))} is required.', 'NotInstalled',
                           'PsDriver.UnsupportedHostVersion', cfg.os_version)
    if not is_absolute(wanted_path):
        raise script_error(f"instances_path '{wanted_path}' must be an absolute path (C:\\..., "
                           '\\\\server\\share\\... or C:\\ClusterStorage\\VolumeN\\...).',
                           'InvalidArgument', 'PsDriver.InvalidInstancesPath', wanted_path)
    full = wanted_path.rstrip('\\/')
    if re.fullmatch(r'[A-Za-z]:', full):
        full += '\\'
    kind, root = path_kind(host, full)
    if not is_dir(host, root):
        raise script_error(f"The root '{root}' of instances_path '{wanted_path}' ({kind}) "
                           'cannot be reached.', 'ObjectNotFound',
                           'PsDriver.InstancesPathNotFound', wanted_path)
    base_path = join(full, base_name)
    created = []
    for folder in (full, base_path):
        if not is_dir(host, folder):
            _new_folder(host, folder)
            created.append(folder)
    _probe(host, full)
    usage = host.disk_usage(full)
    cluster = host.state.cluster
    switch_names = [s.name for s in host.list_switches()]
    missing: list[str] = []
    for name in required:
        if name and name.lower() not in (s.lower() for s in switch_names) \
                and name not in missing:
            missing.append(name)
    # PowerShell 7 loads the Hyper-V module of builds before 17763 (Windows Server 2019)
    # through the compatibility layer: serialized objects, which -VM parameters refuse.
    native = cfg.ps_edition != 'Core' or (os_version + (0, 0, 0))[2] >= NATIVE_PS7_BUILD
    return {
        'hostname': cfg.hostname,
        'os_version': cfg.os_version,
        'os_caption': cfg.os_name,
        'hyperv_version': cfg.hyperv_version,
        'default_vm_version': cfg.default_vm_version or None,
        'powershell_edition': cfg.ps_edition,
        'powershell_version': cfg.ps_version,
        'hyperv_module_native': native,
        'instances_path': {
            'path': full, 'exists': True, 'kind': kind,
            'total_bytes': usage['total'], 'free_bytes': usage['free'],
            'total_gb': round(usage['total'] / GIB, 2), 'free_gb': round(usage['free'] / GIB, 2),
        },
        'base_path': base_path,
        'base_path_exists': True,
        'created': created,
        'switches': [{'name': s.name, 'type': s.switch_type, 'id': s.id}
                     for s in host.list_switches()],
        'missing_switches': missing,
        'is_cluster_node': cluster is not None,
        'cluster_name': cluster.name if cluster is not None else None,
        'numa_spanning_enabled': cfg.numa_spanning_enabled,
        'console_loggers': _console_loggers(host, full, str(log_name), log_bytes)
        if log_name and native else [],
    }


@prepare('Initialize-ComputeHost')
def _init_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The share of a UNC path; the CSV volume folder of a ClusterStorage path.

    With ConsoleLogFileName, a running instance in InstancesPath whose logger
    is gone, as after a host reboot.
    """
    from psdriver.sim.scenario import add_instance, ensure_folder, ensure_volume
    path = params['InstancesPath']
    ensure_volume(host, path)
    csv = _CSV_ROOT.match(path)
    if csv:
        ensure_folder(host, paths.normalize(csv.group(0)))
    if params.get('ConsoleLogFileName'):
        add_instance(host, 'instance-00000001',
                     instance_dir=join(paths.normalize(path), 'instance-00000001'))


@handler('Invoke-HostPowerAction')
def invoke_host_power_action(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    """The host reboots or shuts down in the model; nothing on this machine does."""
    action = in_set('Invoke-HostPowerAction', params, 'Action',
                    ('Reboot', 'Shutdown', 'Startup'))
    force = switch(params, 'Force')
    name = host.config.hostname
    if action == 'Startup':
        raise script_error(f"Host '{name}' cannot start itself up; use out-of-band management "
                           '(IPMI, iDRAC, iLO) to power it on.', 'NotImplemented',
                           'PsDriver.HostStartupNotSupported', name)
    try:
        host.host_power_action(action, force=force)
    except SimError as exc:
        raise script_error(f"Cannot {action.lower()} host '{name}': {exc.message}",
                           'InvalidOperation', 'PsDriver.HostPowerActionFailed', name) from None
    return {'action': action, 'computer_name': name, 'initiated': True, 'forced': force}
