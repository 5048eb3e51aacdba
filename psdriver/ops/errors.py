"""Translate bridge exceptions into the Nova exceptions the compute manager expects.

The script's own message is always kept: an operator reading
``nova instance-action-list`` sees what Hyper-V said, not a generic text.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from nova import exception

from psdriver.bridge import errors as bridge_errors


class HyperVHostError(exception.NovaException):
    msg_fmt = 'Hyper-V host operation failed: %(reason)s'


@contextlib.contextmanager
def translate(instance_uuid: str | None = None, operation: str = '') -> Iterator[None]:
    """Map bridge errors raised in the block to Nova exceptions.

    ``ScriptObjectNotFound`` for an instance becomes ``InstanceNotFound``;
    invalid VM state becomes ``InstanceInvalidState``; anything else a
    ``HyperVHostError`` carrying the script's message.  Transport errors
    (``BridgeError``) also become ``HyperVHostError``: nova treats them as a
    failed operation, which is what they are.
    """
    try:
        yield
    except bridge_errors.ScriptObjectNotFound as exc:
        if instance_uuid:
            raise exception.InstanceNotFound(instance_id=instance_uuid)
        raise HyperVHostError(reason=exc.message)
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
