"""What the ps_scripts share, in Python: their error records, lookups and formats.

Handlers use these so that a simulated script fails with the same category,
error id, exception type and wording as the real one (``New-PsDriverErrorRecord``
in the scripts throws ``System.InvalidOperationException`` records), and
reports VMs, adapters and drives in the same shapes.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Iterable

from psdriver.sim import paths
from psdriver.sim.errors import PARAMETER_BINDING_EXCEPTION, SimError
from psdriver.sim.state import Drive, NetworkAdapter, Vm

#: Exception type of every error a script raises itself (New-PsDriverErrorRecord).
SCRIPT_EXCEPTION = 'System.InvalidOperationException'

_UUID_IN_NOTES = re.compile(
    r'^(?:openstack-instance-uuid:\s*)?\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
    r'[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$')
_MAC = re.compile(r'^(?:[0-9a-fA-F]{2}([:-]?)){5}[0-9a-fA-F]{2}$')
_ABSOLUTE = re.compile(r'^(\\\\[^\\/]+[\\/][^\\/]+|[A-Za-z]:[\\/])')
_CONTROLLER_ORDER = {'IDE': 0, 'SCSI': 1}


def script_error(message: str, category: str, error_id: str, target: Any = '') -> SimError:
    """An error a script throws with ``New-PsDriverErrorRecord``."""
    return SimError(message, category, error_id, SCRIPT_EXCEPTION,
                    '' if target is None else str(target))


# -- parameter validation (the attributes of the param() block) --------------------

def _validation_error(script: str, param: str, message: str, value: Any) -> SimError:
    return SimError(f"Cannot validate argument on parameter '{param}'. {message}",
                    'InvalidData', f'ParameterArgumentValidationError,{script}',
                    PARAMETER_BINDING_EXCEPTION, '' if value is None else str(value))


def not_empty(script: str, params: dict[str, Any], name: str) -> str:
    """``[ValidateNotNullOrEmpty()][string]``: the value as a string."""
    value = params.get(name)
    if value is None or value == '':
        raise _validation_error(script, name, 'The argument is null or empty. Provide an '
                                'argument that is not null or empty, and then try the '
                                'command again.', value)
    return str(value)


def in_set(script: str, params: dict[str, Any], name: str, allowed: Iterable[str],
           default: str | None = None) -> str:
    """``[ValidateSet(...)]`` (case-insensitive): the allowed spelling of the value."""
    allowed = tuple(allowed)
    value = params.get(name, default)
    for choice in allowed:
        if isinstance(value, str) and value.lower() == choice.lower():
            return choice
    raise _validation_error(script, name, f'The argument "{value}" does not belong to the set '
                            f'"{",".join(allowed)}" specified by the ValidateSet attribute. '
                            'Supply an argument that is in the set and then try the command '
                            'again.', value)


def int_param(script: str, params: dict[str, Any], name: str, default: int,
              low: int | None = None, high: int | None = None) -> int:
    """An ``[int]`` parameter (numbers and numeric strings convert), with ``[ValidateRange]``."""
    value = params.get(name, default)
    number: int | None = None
    if isinstance(value, bool):
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r'\s*[+-]?\d+\s*', value):
        number = int(value)
    if number is None:
        raise SimError(f"Cannot process argument transformation on parameter '{name}'. Cannot "
                       f'convert value "{value}" to type "System.Int32".', 'InvalidData',
                       f'ParameterArgumentTransformationError,{script}',
                       PARAMETER_BINDING_EXCEPTION, '' if value is None else str(value))
    if low is not None and number < low:
        raise _validation_error(script, name, f'The {number} argument is less than the minimum '
                                f'allowed range of {low}. Supply an argument that is greater '
                                f'than or equal to {low} and then try the command again.',
                                value)
    if high is not None and number > high:
        raise _validation_error(script, name, f'The {number} argument is greater than the '
                                f'maximum allowed range of {high}. Supply an argument that is '
                                f'less than or equal to {high} and then try the command again.',
                                value)
    return number


def switch(params: dict[str, Any], name: str) -> bool:
    """A ``[switch]`` parameter."""
    return bool(params.get(name, False))


def text_list(params: dict[str, Any], name: str) -> list[str]:
    """A ``[string[]]`` parameter: a single value becomes a list of one."""
    value = params.get(name)
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return ['' if v is None else str(v) for v in value]
    return [str(value)]


# -- VMs ------------------------------------------------------------------------------

def target_vm(host: Any, name: str) -> Vm:
    """``Get-PsDriverVM``: the one VM named ``name`` (case-insensitive, no wildcards)."""
    vm = host.find_vm(name)
    if vm is None:
        raise script_error(f"Virtual machine '{name}' was not found on this host.",
                           'ObjectNotFound', 'PsDriver.VMNotFound', name)
    return vm


#: States Remove-VM takes as they are (``Remove-PsDriverVM``); any other is turned off first.
STOPPED_STATES = ('Off', 'Saved', 'OffCritical', 'SavedCritical')


def remove_vm(host: Any, vm: Vm) -> None:
    """``Remove-PsDriverVM``: turn the VM off hard unless it is off or saved, then remove it."""
    if vm.state not in STOPPED_STATES:
        host.stop_vm(vm.name, turn_off=True)
    host.remove_vm(vm.name)


def notes_uuid(notes: str | None) -> str | None:
    """``ConvertTo-PsDriverInstanceUuid``: the instance UUID on the first line of the Notes."""
    if notes is None or not notes.strip():
        return None
    first = re.split(r'\r?\n', notes, maxsplit=1)[0].strip()
    match = _UUID_IN_NOTES.match(first)
    return match.group(1).lower() if match else None


def uptime_seconds(vm: Vm, now: float) -> int:
    return max(0, int(now - vm.started_at)) if vm.started_at else 0


# -- MAC addresses and adapters -------------------------------------------------------

def hyperv_mac(text: str | None) -> str | None:
    """``ConvertTo-PsDriverHyperVMac``: 'fa:16:3e:01:02:03' -> 'FA163E010203'; None if no MAC."""
    if text is None or not str(text).strip():
        return None
    value = str(text).strip()
    if not _MAC.match(value):
        return None
    return value.replace(':', '').replace('-', '').upper()


def mac_string(mac: str | None) -> str | None:
    """``ConvertTo-PsDriverMacString``: 'FA163E010203' -> 'fa:16:3e:01:02:03'; None for zeros."""
    hex_digits = re.sub(r'[^0-9a-fA-F]', '', mac or '')
    if len(hex_digits) != 12 or hex_digits == '000000000000':
        return None
    hex_digits = hex_digits.lower()
    return ':'.join(hex_digits[i:i + 2] for i in range(0, 12, 2))


def nic_record(nic: NetworkAdapter) -> dict[str, Any]:
    """``Get-PsDriverNicRecord``."""
    return {'name': nic.name, 'mac': mac_string(nic.mac_address),
            'switch': nic.switch_name or None, 'vlan': nic.vlan_id,
            'connected': bool(nic.switch_name)}


def nics_named(vm: Vm, name: str) -> list[NetworkAdapter]:
    """Adapters whose name equals ``name`` (PowerShell ``-eq``: case-insensitive)."""
    return [nic for nic in vm.nics if nic.name.lower() == str(name).lower()]


# -- drives ---------------------------------------------------------------------------

def slot_key(drive: Drive) -> tuple[int, int, int]:
    return _CONTROLLER_ORDER.get(drive.controller_type, 9), drive.controller_number, \
        drive.location


def hard_disks(vm: Vm) -> list[Drive]:
    """``Get-VMHardDiskDrive``: by controller type, number and location."""
    return sorted((d for d in vm.drives if d.kind == 'HardDisk'), key=slot_key)


def dvd_drives(vm: Vm) -> list[Drive]:
    """``Get-VMDvdDrive``."""
    return sorted((d for d in vm.drives if d.kind == 'DvdDrive'), key=slot_key)


# -- paths ----------------------------------------------------------------------------

def is_absolute(path: str) -> bool:
    """``Test-PsDriverAbsolutePath``: ``C:\\...`` or ``\\\\server\\share...``."""
    return isinstance(path, str) and bool(_ABSOLUTE.match(path))


def same_path(left: str | None, right: str | None) -> bool:
    """``Test-PsDriverSamePath``: equal ignoring case, slashes and a trailing separator."""
    if not left or not left.strip() or not right or not right.strip():
        return False
    a = left.strip().replace('/', '\\').rstrip('\\')
    b = right.strip().replace('/', '\\').rstrip('\\')
    return a.lower() == b.lower()


def path_key(path: str) -> str | None:
    """Comparable form of a path (``Get-PsDriverPathKey``); None when it is not a usable path."""
    try:
        return paths.key(paths.normalize(path))
    except SimError:
        return None


def is_under(path: str, folder: str) -> bool:
    """``Test-PathUnder``: ``path`` lies strictly below ``folder``."""
    p, f = path_key(path), path_key(folder)
    return p is not None and f is not None and paths.is_under(p, f)


def is_file(host: Any, path: str | None) -> bool:
    """``Test-Path -PathType Leaf``."""
    if not path or path_key(path) is None:
        return False
    return host.exists(path) and not host.get_item(path).is_dir


def is_dir(host: Any, path: str | None) -> bool:
    """``Test-Path -PathType Container``."""
    if not path or path_key(path) is None:
        return False
    return host.exists(path) and host.get_item(path).is_dir


def join(folder: str, child: str) -> str:
    """``Join-Path``: one backslash between the parts."""
    return folder.rstrip('\\/') + '\\' + child


def extension(path: str) -> str:
    """``[IO.Path]::GetExtension``: '.vhdx' (lower case here), '' when none."""
    name = re.split(r'[\\/]', path)[-1]
    return name[name.rfind('.'):].lower() if '.' in name else ''


# -- formats --------------------------------------------------------------------------

def iso8601(timestamp: float) -> str:
    """A UTC time as .NET's round-trip ``'o'`` format (seven fraction digits, ``Z``)."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%f') + '0Z'


def number(value: float) -> str:
    """A number as PowerShell prints it in a string (``1``, ``1.5``, ``1.79769313486232E+308``)."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        if abs(value) >= 1e15:
            mantissa, exp = f'{value:.14E}'.split('E')
            return f'{mantissa.rstrip("0").rstrip(".")}E{exp[0]}{exp[1:].lstrip("0")}'
    return str(value)


def two_places(value: float) -> str:
    """.NET ``{0:0.##}``: at most two decimals, no trailing zeros."""
    return f'{value:.2f}'.rstrip('0').rstrip('.')
