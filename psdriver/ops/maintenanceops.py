"""Host maintenance mode (nova's os-hosts ``maintenance_mode``), as compute-hyperv did it.

Enable: the host's nova-compute service is disabled (the scheduler sends
nothing new here) and every nova instance on the host is moved away through
nova's compute API, a running one by live migration and the others by cold
migration, each waited for up to ``[hyperv] evacuate_task_state_timeout``
seconds.  Disable: the service is enabled again.

The result goes back to the os-hosts API as is: ``on_maintenance`` /
``off_maintenance``, or, when an instance could not be moved, a text naming
each one and why (the API answers it as a 400 with that text); the service
stays disabled then, so that the administrator can move them by hand.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from nova import context as nova_context
from nova import exception, objects
from nova.compute import api as compute_api
from nova.compute import vm_states
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

ON, OFF = 'on_maintenance', 'off_maintenance'
BINARY = 'nova-compute'
DISABLED_REASON = 'host maintenance (psdriver)'


class HostMaintenance:
    def __init__(self, conf: Any, instance_uuids: Callable[[], list[str]],
                 compute: Callable[[], Any] = compute_api.API,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._conf = conf
        self._instance_uuids = instance_uuids
        self._compute = compute
        self._sleep = sleep
        self._clock = clock

    def set_mode(self, host: str, mode: bool) -> str:
        ctxt = nova_context.get_admin_context()
        service = objects.Service.get_by_args(ctxt, host, BINARY)
        if not mode:
            service.disabled = False
            service.disabled_reason = None
            service.save()
            LOG.info('Host %s is no longer in maintenance', host)
            return OFF
        service.disabled = True
        service.disabled_reason = DISABLED_REASON
        service.save()
        api = self._compute()
        not_moved: dict[str, str] = {}
        for uuid in self._instance_uuids():
            try:
                reason = self._move(ctxt, api, host, uuid)
            except exception.NovaException as exc:
                reason = exc.format_message()
            except Exception as exc:              # noqa: BLE001 - reported to the caller
                reason = str(exc) or type(exc).__name__
            if reason:
                LOG.warning('Instance %s was not moved off %s: %s', uuid, host, reason)
                not_moved[uuid] = reason
        if not_moved:
            return (f'Host {host} is disabled but {len(not_moved)} instance(s) could not be '
                    'moved: ' + '; '.join(f'{uuid}: {why}' for uuid, why in not_moved.items()))
        LOG.info('Host %s is in maintenance: every instance was moved away', host)
        return ON

    def _move(self, ctxt: Any, api: Any, host: str, uuid: str) -> str | None:
        """Move one instance away; why it is still here, or None."""
        instance = objects.Instance.get_by_uuid(ctxt, uuid)
        self._wait_idle(instance)
        if instance.host != host:
            return None
        if instance.vm_state == vm_states.ACTIVE:
            api.live_migrate(ctxt, instance, None, None, None)
        elif instance.vm_state in (vm_states.STOPPED, vm_states.SHELVED):
            api.resize(ctxt, instance)                   # no flavor: a cold migration
        else:
            return f'it is {instance.vm_state}; only active and stopped instances are moved'
        self._wait_idle(instance)
        if instance.host == host:
            return f'it is still on this host after the migration (vm_state ' \
                   f'{instance.vm_state})'
        return None

    def _wait_idle(self, instance: Any) -> None:
        """Until the instance has no task state, at most evacuate_task_state_timeout seconds."""
        deadline = self._clock() + self._conf.hyperv.evacuate_task_state_timeout
        instance.refresh()
        while instance.task_state:
            if self._clock() >= deadline:
                raise exception.InternalError(
                    f'task state {instance.task_state} did not clear within '
                    f'{self._conf.hyperv.evacuate_task_state_timeout} s')
            self._sleep(1)
            instance.refresh()
