"""Network adapters on the Hyper-V virtual switch, one per Neutron port.

The model is compute-hyperv's: the VM gets one adapter per port, named after
the port id and carrying the port's MAC as a static MAC.  With the Neutron
Hyper-V agent (``vif_type = hyperv``) the agent binds the adapter to its
switch and VLAN; for OVS on Windows, and whenever ``[hyperv] vswitch_name``
is set, psdriver connects the adapter to that switch itself.  A VLAN given
in the port's binding details is set in access mode.

A port of VIF type ``ovs`` (Open vSwitch for Windows) is also made a port of
the integration bridge, named after the port id, with the external ids the
OVS agent reads, as os-vif's Windows plug did; unplug, detach and destroy
delete it again.  Both happen on the host inside the same script call.
"""

from __future__ import annotations

from typing import Any

from nova import exception
from nova.network import model as network_model

from psdriver.bridge.client import Bridge
from psdriver.ops import errors


def _reason(exc: Exception) -> str:
    """The host's own words: the script message a translated error carries."""
    cause = exc.__cause__ or exc.__context__
    return getattr(cause, 'message', None) or str(exc)


def _vlan(vif: Any) -> int | None:
    details = vif.get('details') or {}
    vlan = details.get(network_model.VIF_DETAILS_VLAN)
    if vlan in (None, ''):
        return None
    vlan = int(vlan)
    return vlan if 1 <= vlan <= 4094 else None


def ovs_bridge(vif: Any, conf: Any) -> str | None:
    """The OVS bridge of a VIF of type ``ovs``: the network's, or ``[neutron] ovs_bridge``."""
    if vif.get('type') != network_model.VIF_TYPE_OVS:
        return None
    network = vif.get('network') or {}
    return network.get('bridge') or conf.neutron.ovs_bridge


def ovs_port_ids(network_info: Any) -> list[str]:
    """The ids of the ports whose VIF type is ``ovs`` (also their OVS port names)."""
    return [vif['id'] for vif in (network_info or [])
            if vif.get('type') == network_model.VIF_TYPE_OVS]


class InterfaceAttachFailed(exception.InterfaceAttachFailed):
    msg_fmt = 'Failed to attach network adapter device to %(instance_uuid)s: %(reason)s'


class InterfaceDetachFailed(exception.InterfaceDetachFailed):
    msg_fmt = 'Failed to detach network adapter device from %(instance_uuid)s: %(reason)s'


class VifOps:
    def __init__(self, bridge: Bridge, conf: Any) -> None:
        self._bridge = bridge
        self._conf = conf

    def nic_spec(self, vif: Any) -> dict[str, Any]:
        """The ``nics`` entry of New-Instance / Connect-InstanceNetworkAdapter for one VIF."""
        return {
            'id': vif['id'],
            'mac': vif['address'],
            'switch': self._conf.hyperv.vswitch_name or None,
            'vlan': _vlan(vif),
        }

    def nic_specs(self, network_info: Any) -> list[dict[str, Any]]:
        """The entries, with ``ovs_bridge`` on those of VIF type ``ovs``."""
        nics = []
        for vif in network_info or []:
            nic = self.nic_spec(vif)
            bridge = ovs_bridge(vif, self._conf)
            if bridge:
                nic['ovs_bridge'] = bridge
            nics.append(nic)
        return nics

    def ovs_params(self) -> dict[str, Any]:
        """Where the host finds ovs-vsctl: the configured path, or PATH when unset."""
        path = self._conf.hyperv.ovs_vsctl_path
        return {'OvsVsctlPath': path} if path else {}

    def plug(self, instance: Any, network_info: Any) -> dict[str, Any] | None:
        """Make sure every VIF has its adapter, MAC, switch, VLAN and OVS port (one round trip)."""
        nics = self.nic_specs(network_info)
        if not nics:
            return None
        params: dict[str, Any] = {'Name': instance.name, 'Nics': nics}
        if any('ovs_bridge' in nic for nic in nics):
            params.update(self.ovs_params(), InstanceUuid=instance.uuid)
        with errors.translate(instance.uuid, 'plug_vifs'):
            return self._bridge.call('Connect-InstanceNetworkAdapter', params)

    def unplug(self, instance: Any, network_info: Any) -> dict[str, Any] | None:
        """Undo plug: delete the OVS ports and disconnect what plug connected.

        One round trip for all ports; none when plug connected nothing (no
        ``ovs`` VIFs and no vswitch_name: the L2 agent owns the connection)
        or there are no ports.  The adapters stay on the VM (they go with the
        VM or with detach); a missing VM, adapter or OVS port is fine, so it
        is safe to repeat.
        """
        switch = self._conf.hyperv.vswitch_name
        ports = [vif['id'] for vif in (network_info or [])]
        ovs_ports = ovs_port_ids(network_info)
        if not ports or not (switch or ovs_ports):
            return None
        params: dict[str, Any] = {'Name': instance.name, 'Id': ports if switch else []}
        if switch:
            params['SwitchName'] = switch
        if ovs_ports:
            params['OvsPortId'] = ovs_ports
            params.update(self.ovs_params())
        with errors.translate(instance.uuid, 'unplug_vifs'):
            return self._bridge.call('Disconnect-InstanceNetworkAdapter', params)

    def attach(self, instance: Any, vif: Any) -> dict[str, Any]:
        nic = self.nic_spec(vif)
        params = {'Name': instance.name, 'Id': nic['id'], 'MacAddress': nic['mac']}
        if nic['switch']:
            params['SwitchName'] = nic['switch']
        if nic['vlan'] is not None:
            params['VlanId'] = nic['vlan']
        bridge = ovs_bridge(vif, self._conf)
        if bridge:
            params.update(self.ovs_params(), OvsBridge=bridge, InstanceUuid=instance.uuid)
        try:
            with errors.translate(instance.uuid, 'attach_interface'):
                return self._bridge.call('Add-InstanceNetworkAdapter', params)
        except (errors.HyperVHostError, exception.InstanceInvalidState) as exc:
            raise InterfaceAttachFailed(instance_uuid=instance.uuid, reason=_reason(exc)) \
                from exc

    def detach(self, instance: Any, vif: Any) -> dict[str, Any]:
        try:
            with errors.translate(instance.uuid, 'detach_interface'):
                params = {'Name': instance.name, 'Id': vif['id']}
                if ovs_bridge(vif, self._conf):
                    params.update(self.ovs_params(), OvsPort=True)
                return self._bridge.call('Remove-InstanceNetworkAdapter', params)
        except (errors.HyperVHostError, exception.InstanceInvalidState) as exc:
            raise InterfaceDetachFailed(instance_uuid=instance.uuid, reason=_reason(exc)) \
                from exc
