"""Waiting for Neutron's ``network-vif-plugged`` events before a VM starts.

A Hyper-V VM's ports are bound by the Neutron agent (or OVS) once the VM's
adapters exist; a guest started before that boots without DHCP replies or
security group flows.  So, as compute-hyperv did, spawn creates the VM with
its adapters switched off, waits for the events of the ports Neutron reports
as not yet active (nova's ``wait_for_instance_event``, bounded by
``[DEFAULT] vif_plugging_timeout``), then starts it.  A timeout, or Neutron
reporting a failed port, is fatal when ``[DEFAULT] vif_plugging_is_fatal``
is set (the caller removes what it created), otherwise logged.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from nova import exception
from nova.network import model as network_model
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

VIF_PLUGGED = 'network-vif-plugged'


def neutron_events(conf: Any, network_info: Any) -> list[tuple[str, str]]:
    """``(event, port id)`` for every port Neutron has not reported active yet.

    Ports already active undergo no down-to-up transition and send no event;
    ``vif_plugging_timeout = 0`` turns waiting off.  Remote-managed ports
    (SmartNIC DPUs) are bound elsewhere, as nova's libvirt driver skips them.
    """
    if not conf.vif_plugging_timeout:
        return []
    return [(VIF_PLUGGED, vif['id']) for vif in (network_info or [])
            if vif.get('active', True) is False
            and vif.get('vnic_type') != network_model.VNIC_TYPE_REMOTE_MANAGED]


class VifPlugWait:
    """Nova's event wait around the step that makes Neutron bind the ports."""

    def __init__(self, virtapi: Any, conf: Any) -> None:
        self._virtapi = virtapi
        self._conf = conf

    def events(self, network_info: Any) -> list[tuple[str, str]]:
        """The events to wait for; none without nova's VirtAPI (the benchmarks' driver)."""
        if self._virtapi is None:
            return []
        return neutron_events(self._conf, network_info)

    @contextlib.contextmanager
    def waiting(self, instance: Any, events: list[tuple[str, str]]) -> Iterator[None]:
        """Run the block, then wait for ``events``.

        Raises ``VirtualInterfaceCreateException`` when the wait times out or
        Neutron reports a port as failed and ``vif_plugging_is_fatal`` is
        set; otherwise logs a warning and returns.  The block's own errors
        pass through unchanged.
        """
        if not events:
            yield
            return
        fatal = bool(self._conf.vif_plugging_is_fatal)

        def neutron_failed(event_name: str, failed_instance: Any) -> None:
            LOG.error('Neutron reported failure on event %s', event_name,
                      instance=failed_instance)
            if fatal:
                raise exception.VirtualInterfaceCreateException()

        try:
            with self._virtapi.wait_for_instance_event(
                    instance, events, timeout=self._conf.vif_plugging_timeout,
                    error_callback=neutron_failed):
                yield
        except exception.InstanceEventTimeout:
            if fatal:
                LOG.error('Neutron did not report %s within %s s (vif_plugging_is_fatal)',
                          ', '.join(tag for _name, tag in events),
                          self._conf.vif_plugging_timeout, instance=instance)
                raise exception.VirtualInterfaceCreateException() from None
            LOG.warning('Neutron did not report %s within %s s; starting the instance anyway '
                        '(vif_plugging_is_fatal = False)',
                        ', '.join(tag for _name, tag in events),
                        self._conf.vif_plugging_timeout, instance=instance)
