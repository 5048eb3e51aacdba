"""Shielded VMs: the shielding data (PDK) from Barbican and New-Instance's ``shielding`` field.

As compute-hyperv did: the image property ``img_pdk_reference`` (or the
instance metadata key of the same name, which wins) names a Barbican
container; the shielding data file is the payloads of its secrets named
``"1"``, ``"2"``, ... concatenated in that order.  The container is read with
the requesting user's token (the request context's auth plugin, whose
service catalog names Barbican's ``key-manager`` endpoint).

The bytes go to the host through the same file channel as images
(:class:`psdriver.ops.hostfiles.HostFiles`), into the instance folder, and are
deleted by New-Instance when it ends (and by the driver again, in case the
call never ran).  They are never logged and never part of a script's input.

Specialization (``New-ShieldedVMSpecializationDataFile``): ``@ComputerName@``
is the instance's hostname; instance metadata ``fsk:<Name>`` adds
``@<Name>@`` (compute-hyperv's ``fsk:`` keys); an ``fsk:ComputerName`` that
differs from the hostname is refused, as compute-hyperv refused it.
"""

from __future__ import annotations

import logging as std_logging
import re
from typing import Any

from nova import exception
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

#: Image property and instance metadata key naming the Barbican container.
PDK_REFERENCE = 'img_pdk_reference'
#: Instance metadata prefix of the specialization values.
FSK_PREFIX = 'fsk:'
COMPUTER_NAME = 'ComputerName'
#: The file New-Instance reads the shielding data from, in the instance folder.
DATA_FILE_NAME = 'shielding.pdk'
#: keystoneauth logs text and JSON response bodies at DEBUG, and Barbican's answers
#: carry the shielding data: its requests log here, never below INFO.
BARBICAN_HTTP_LOG = std_logging.getLogger('psdriver.shielding.barbican_http')
BARBICAN_HTTP_LOG.setLevel(std_logging.INFO)


class ShieldingDataUnavailable(exception.ImageUnacceptable):
    """The image's shielding data cannot be had: no host can do better, the build aborts."""


def pdk_reference(instance: Any) -> str | None:
    """The container reference: instance metadata first, then the image property."""
    from_metadata = (instance.metadata or {}).get(PDK_REFERENCE)
    from_image = (instance.system_metadata or {}).get(f'image_{PDK_REFERENCE}')
    return (from_metadata or from_image or '').strip() or None


def specialization_pairs(instance: Any) -> dict[str, str]:
    """``-SpecializationDataPairs``: ``@ComputerName@`` and the ``fsk:`` metadata."""
    pairs = {f'@{key[len(FSK_PREFIX):]}@': str(value)
             for key, value in (instance.metadata or {}).items()
             if key.startswith(FSK_PREFIX) and key[len(FSK_PREFIX):]}
    key = f'@{COMPUTER_NAME}@'
    wanted = pairs.get(key)
    if wanted and wanted != instance.hostname:
        raise exception.InvalidInput(
            reason=f'instance {instance.uuid}: the metadata {FSK_PREFIX}{COMPUTER_NAME}='
                   f'{wanted!r} differs from the instance hostname {instance.hostname!r}')
    pairs[key] = instance.hostname
    return pairs


def _image_id(instance: Any) -> str:
    return instance.image_ref or instance.uuid


def _barbican(context: Any, conf: Any) -> Any:
    """A Barbican client acting with the request's token (compute-hyperv's way).

    The endpoint is nova's own ``[barbican] barbican_endpoint`` when set (the
    options nova's key manager reads), else the request's service catalog
    entry ``key-manager`` of type ``barbican_endpoint_type`` in
    ``barbican_region_name``; it is given to the client without its version
    (the client adds ``/v1/``), as castellan does: nova's context auth plugin
    returns catalog URLs as they are, without version discovery.
    """
    from barbicanclient import client as barbican_client
    from keystoneauth1 import session as ks_session

    options = getattr(conf, 'barbican', None)
    session = ks_session.Session(auth=context.get_auth_plugin())
    endpoint = getattr(options, 'barbican_endpoint', None)
    if not endpoint:
        endpoint = session.get_endpoint(
            service_type='key-manager',
            interface=getattr(options, 'barbican_endpoint_type', None) or 'public',
            region_name=getattr(options, 'barbican_region_name', None))
    if not endpoint:
        raise LookupError('no Barbican endpoint: the request\'s service catalog names no '
                          'key-manager endpoint and [barbican] barbican_endpoint is not set')
    endpoint = re.sub(r'/v1$', '', endpoint.rstrip('/'))
    return barbican_client.Client(session=session, endpoint=endpoint, logger=BARBICAN_HTTP_LOG)


def fetch_shielding_data(context: Any, instance: Any, reference: str, conf: Any = None) -> bytes:
    """The shielding data file: the container's secrets "1".."n", concatenated.

    Raises :class:`ShieldingDataUnavailable` (nova aborts the build) when the
    container cannot be read or its secrets are not numbered 1 to n.
    """
    if context is None:
        raise ShieldingDataUnavailable(image_id=_image_id(instance),
                                       reason='no request context to read the shielding data '
                                              'with')
    try:
        container = _barbican(context, conf).containers.get(reference)
        secrets = dict(container.secrets)
        expected = [str(n) for n in range(1, len(secrets) + 1)]
        if not secrets or sorted(secrets, key=lambda n: (len(n), n)) != expected:
            raise ValueError(f'its secrets must be named 1 to {len(secrets) or "n"}, in the '
                             f'order of the file; found {sorted(secrets) or "none"}')
        data = b''
        for name in expected:
            payload = secrets[name].payload
            data += payload.encode('utf-8') if isinstance(payload, str) else bytes(payload)
    except Exception as exc:  # noqa: BLE001 (barbicanclient, keystoneauth, the checks above)
        raise ShieldingDataUnavailable(
            image_id=_image_id(instance),
            reason=f'the shielding data ({PDK_REFERENCE} {reference}) cannot be read from '
                   f'Barbican: {type(exc).__name__}: {exc}') from None
    if not data:
        raise ShieldingDataUnavailable(image_id=_image_id(instance),
                                       reason=f'the shielding data ({PDK_REFERENCE} '
                                              f'{reference}) is empty')
    LOG.info('Read %d bytes of shielding data from Barbican', len(data), instance=instance)
    return data
