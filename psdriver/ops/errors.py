"""Translate bridge exceptions into the Nova exceptions the compute manager expects.

The script's own message is always kept: an operator reading
``nova instance-action-list`` sees what Hyper-V said, not a generic text.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from nova import exception

from psdriver.bridge import errors as bridge_errors


#: Error id of every script's "no VM of that name" error.
VM_NOT_FOUND = 'PsDriver.VMNotFound'


class HyperVHostError(exception.NovaException):
    msg_fmt = 'Hyper-V host operation failed: %(reason)s'


@contextlib.contextmanager
def translate(instance_uuid: str | None = None, operation: str = '') -> Iterator[None]:
    """Map bridge errors raised in the block to Nova exceptions.

    A missing VM (``ObjectNotFound`` with error id ``PsDriver.VMNotFound``)
    of an instance becomes ``InstanceNotFound``; another missing object (a
    file, a switch) is a host error naming it, never "instance not found";
    invalid VM state becomes ``InstanceInvalidState``; parameters the script
    refuses before running (its schema) ``InstanceUnacceptable`` (or
    ``InvalidInput`` without an instance); anything else a
    ``HyperVHostError`` carrying the script's message.  Transport errors
    (``BridgeError``) also become ``HyperVHostError``: nova treats them as a
    failed operation, which is what they are.
    """
    try:
        yield
    except bridge_errors.ScriptObjectNotFound as exc:
        if instance_uuid and exc.error_id == VM_NOT_FOUND:
            raise exception.InstanceNotFound(instance_id=instance_uuid)
        raise HyperVHostError(reason=f'{exc.script}: {exc.message}')
    except bridge_errors.ScriptInvalidOperation as exc:
        if instance_uuid:
            raise exception.InstanceInvalidState(
                attr='power state', instance_uuid=instance_uuid, state=exc.message,
                method=operation or exc.script)
        raise HyperVHostError(reason=exc.message)
    except bridge_errors.ScriptError as exc:
        raise HyperVHostError(reason=f'{exc.script}: {exc.message}')
    except bridge_errors.BridgeError as exc:
        raise HyperVHostError(reason=str(exc))
    except bridge_errors.BridgeParameterError as exc:
        # Refused before anything ran: what the instance asks for does not fit
        # the script (its schema says why, without the values).
        if instance_uuid:
            raise exception.InstanceUnacceptable(instance_id=instance_uuid, reason=str(exc))
        raise exception.InvalidInput(reason=str(exc))
