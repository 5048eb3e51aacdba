"""Errors of the simulated host.

:class:`SimError` is what a cmdlet on a real Hyper-V host would throw: the
dispatcher turns it into the error envelope (category, message, error id,
exception type, target object).  The helper functions below keep the
Hyper-V wording in one place so that handlers and model rules agree.

:class:`SimHostDown` and :class:`SimTimeout` are not script errors: they
stand for a host that cannot be reached and for a call that outlived its
timeout.  The runners translate them into transport failures.
"""

from __future__ import annotations

HYPERV_EXCEPTION = 'Microsoft.HyperV.PowerShell.VirtualizationException'
IO_EXCEPTION = 'System.IO.IOException'
ITEM_NOT_FOUND_EXCEPTION = 'System.Management.Automation.ItemNotFoundException'
PARAMETER_BINDING_EXCEPTION = 'System.Management.Automation.ParameterBindingException'
ARGUMENT_EXCEPTION = 'System.ArgumentException'
CIM_EXCEPTION = 'Microsoft.Management.Infrastructure.CimException'
CLUSTER_EXCEPTION = 'Microsoft.FailoverClusters.PowerShell.ClusterCmdletException'

#: Hyper-V's text for a state change the VM's current state does not allow.
INVALID_STATE_TEXT = ('The operation cannot be performed while the virtual machine is in '
                      'its current state.')


class SimError(Exception):
    """A cmdlet error on the simulated host (becomes the error envelope)."""

    def __init__(self, message: str, category: str = 'InvalidOperation',
                 error_id: str = '', error_type: str = HYPERV_EXCEPTION,
                 target: str = '') -> None:
        super().__init__(message)
        self.message = message
        self.category = category
        self.error_id = error_id
        self.error_type = error_type
        self.target = target

    def __repr__(self) -> str:
        return (f'SimError({self.message!r}, category={self.category!r}, '
                f'error_id={self.error_id!r})')


class SimHostDown(Exception):
    """The simulated host is unreachable (see ``host.faults.host_down()``)."""


class SimTimeout(Exception):
    """The call did not finish within the timeout it was given."""

    def __init__(self, script: str, timeout: float) -> None:
        super().__init__(f'{script} did not finish within {timeout:g}s')
        self.script = script
        self.timeout = timeout


# -- Hyper-V wording ---------------------------------------------------------------

def vm_not_found(name: str) -> SimError:
    return SimError(f'Hyper-V was unable to find a virtual machine with name "{name}".',
                    'ObjectNotFound', 'PsDriver.VMNotFound', target=name)


def vm_id_not_found(vm_id: str) -> SimError:
    return SimError(f'Hyper-V was unable to find a virtual machine with id "{vm_id}".',
                    'ObjectNotFound', 'PsDriver.VMNotFound', target=vm_id)


def vm_exists(name: str) -> SimError:
    return SimError(f'A virtual machine with name "{name}" already exists.',
                    'ResourceExists', 'PsDriver.VMExists', target=name)


def invalid_state(name: str, state: str, action: str) -> SimError:
    return SimError(f"'{name}' failed to {action}. {INVALID_STATE_TEXT} "
                    f'(Current state: {state}.)', 'InvalidOperation', 'InvalidState',
                    target=name)


def invalid_argument(message: str, target: str = '') -> SimError:
    return SimError(message, 'InvalidArgument', 'InvalidParameter', target=target)


def path_not_found(path: str) -> SimError:
    return SimError(f"Cannot find path '{path}' because it does not exist.",
                    'ObjectNotFound', 'PathNotFound', ITEM_NOT_FOUND_EXCEPTION, path)


def drive_not_found(drive: str, path: str) -> SimError:
    return SimError(f"Cannot find drive. A drive with the name '{drive}' does not exist.",
                    'ObjectNotFound', 'DriveNotFound', ITEM_NOT_FOUND_EXCEPTION, path)


def file_exists(path: str) -> SimError:
    return SimError(f"The file '{path}' already exists.", 'ResourceExists', 'FileExists',
                    IO_EXCEPTION, path)


def disk_full(path: str, needed: int, free: int) -> SimError:
    return SimError(f"There is not enough space on the disk. Writing '{path}' needs "
                    f'{needed} bytes; {free} bytes are free.', 'ResourceUnavailable',
                    'DiskFull', IO_EXCEPTION, path)


def file_in_use(path: str) -> SimError:
    return SimError(f"The process cannot access the file '{path}' because it is being used "
                    'by another process.', 'ResourceBusy', 'FileInUse', IO_EXCEPTION, path)


def switch_not_found(name: str) -> SimError:
    return SimError(f'Hyper-V was unable to find a virtual switch with name "{name}".',
                    'ObjectNotFound', 'PsDriver.SwitchNotFound', target=name)
