"""Add-, Remove- and Connect-InstanceNetworkAdapter: one adapter per Neutron port.

Adapters are named after the port id and carry the port's MAC as a static
MAC.  Generation 1 VMs change adapters only while Off (the scripts refuse
first, PsDriver.NicHotplugUnsupported); any refusal of the host's device
rules (a MAC change while running, a missing switch, a ninth adapter, ...)
becomes InvalidOperation / PsDriver.NicOperationFailed with its message.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import SimError
from psdriver.sim.handlers.ovs import (
    EXAMPLE_OVS_VSCTL, as_list, instance_guid, ovs_add_port, ovs_del_port, resolve_ovs_vsctl)
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import (
    hyperv_mac, int_param, nic_record, nics_named, not_empty, script_error, target_vm)
from psdriver.sim.state import NetworkAdapter, Vm

T = TypeVar('T')
EXAMPLE_SWITCHES = ('br-int',)


def assert_hotplug(vm: Vm, operation: str) -> None:
    """``Assert-PsDriverNicHotplug``."""
    if vm.state != 'Off' and vm.generation == 1:
        raise script_error(f"Cannot {operation} a network adapter on virtual machine "
                           f"'{vm.name}' while it is {vm.state}: generation 1 virtual machines "
                           'do not support network adapter hot plug; turn the virtual machine '
                           'off first.', 'InvalidOperation', 'PsDriver.NicHotplugUnsupported',
                           vm.name)


def nic_change(vm: Vm, description: str, change: Callable[[], T]) -> T:
    """``Invoke-PsDriverNicChange``: a refusal becomes PsDriver.NicOperationFailed."""
    state = vm.state
    try:
        return change()
    except SimError as exc:
        raise script_error(f"Cannot {description} on virtual machine '{vm.name}' (state "
                           f'{state}): {exc.message}', 'InvalidOperation',
                           'PsDriver.NicOperationFailed', vm.name) from None


def _add(host: SimHost, vm: Vm, port: str, mac: str, switch_name: str | None) -> NetworkAdapter:
    return nic_change(vm, f"add network adapter '{port}'",
                      lambda: host.add_nic(vm.name, port, switch_name=switch_name, mac=mac))


def _set_mac(host: SimHost, vm: Vm, adapter: NetworkAdapter, mac: str) -> bool:
    """The static MAC, if the adapter's differs or is dynamic; whether it changed."""
    if hyperv_mac(adapter.mac_address) == mac and not adapter.dynamic_mac:
        return False
    nic_change(vm, f"set the MAC address of network adapter '{adapter.name}'",
               lambda: host.set_nic_mac(vm.name, adapter.id, mac))
    return True


def _connect(host: SimHost, vm: Vm, adapter: NetworkAdapter, switch_name: str | None) -> bool:
    if not switch_name or (adapter.switch_name or '').lower() == switch_name.lower():
        return False
    nic_change(vm, f"connect network adapter '{adapter.name}' to switch '{switch_name}'",
               lambda: host.connect_nic(vm.name, adapter.id, switch_name))
    return True


def _set_vlan(host: SimHost, vm: Vm, adapter: NetworkAdapter, vlan: int,
              current: int | None) -> bool:
    """0: untagged, 1-4094: access mode; whether it changed."""
    if vlan == 0 and current is not None:
        nic_change(vm, f"make network adapter '{adapter.name}' untagged",
                   lambda: host.set_nic_vlan(vm.name, adapter.id, None))
        return True
    if vlan > 0 and current != vlan:
        nic_change(vm, f"set VLAN {vlan} on network adapter '{adapter.name}'",
                   lambda: host.set_nic_vlan(vm.name, adapter.id, vlan))
        return True
    return False


# -- Add-InstanceNetworkAdapter -------------------------------------------------------------

@handler('Add-InstanceNetworkAdapter')
def add_adapter(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Add-InstanceNetworkAdapter'
    name = not_empty(script, params, 'Name')
    port = not_empty(script, params, 'Id')
    raw_mac = not_empty(script, params, 'MacAddress')
    switch_name = params.get('SwitchName') or None
    vlan = int_param(script, params, 'VlanId', 0, 0, 4094)
    mac = hyperv_mac(raw_mac)
    if mac is None:
        raise script_error(f"'{raw_mac}' is not a MAC address.", 'InvalidArgument',
                           'PsDriver.InvalidMacAddress', raw_mac)
    ovs_bridge = params.get('OvsBridge') or None
    ovs_vsctl, guid = None, None
    if ovs_bridge:
        guid = instance_guid(params.get('InstanceUuid'))
        ovs_vsctl = resolve_ovs_vsctl(host, params.get('OvsVsctlPath'))
    vm = target_vm(host, name)
    existing = nics_named(vm, port)
    created = not existing
    if created:
        assert_hotplug(vm, 'add')
        adapter = _add(host, vm, port, mac, switch_name)
    else:
        adapter = existing[0]
        _set_mac(host, vm, adapter, mac)
        _connect(host, vm, adapter, switch_name)
    if vlan > 0:
        _set_vlan(host, vm, adapter, vlan, adapter.vlan_id)
    if ovs_vsctl and ovs_bridge and guid:
        try:
            ovs_add_port(host, ovs_vsctl, ovs_bridge, port, mac, guid)
        except SimError:
            if created:
                host.remove_nic(vm.name, adapter.id)
            raise
    final = nics_named(vm, port)
    return {'name': vm.name, 'created': created,
            'nic': nic_record(final[0]) if final else None,
            'ovs_bridge': ovs_bridge if ovs_vsctl else None}


# -- Remove-InstanceNetworkAdapter ----------------------------------------------------------

@handler('Remove-InstanceNetworkAdapter')
def remove_adapter(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Remove-InstanceNetworkAdapter'
    name = not_empty(script, params, 'Name')
    port = not_empty(script, params, 'Id')
    ovs_port = bool(params.get('OvsPort'))
    ovs_vsctl = resolve_ovs_vsctl(host, params.get('OvsVsctlPath')) if ovs_port else ''
    vm = target_vm(host, name)
    adapters = nics_named(vm, port)
    if ovs_port:
        ovs_del_port(host, ovs_vsctl, port)
    if adapters:
        assert_hotplug(vm, 'remove')

        def remove_all() -> None:
            for adapter in adapters:
                host.remove_nic(vm.name, adapter.id)
        nic_change(vm, f"remove network adapter '{port}'", remove_all)
    return {'name': vm.name, 'id': port, 'removed': bool(adapters), 'ovs_port_removed': ovs_port}


# -- Connect-InstanceNetworkAdapter ---------------------------------------------------------

def _wanted(entries: Any) -> list[dict[str, Any]]:
    """The Nics entries, all checked before anything changes (PsDriver.InvalidNicSpec)."""
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        entries = [entries]
    wanted = []
    for index, spec in enumerate(entries, start=1):
        if spec is None:
            raise script_error(f'Nics entry {index} is null.', 'InvalidArgument',
                               'PsDriver.InvalidNicSpec', index)
        spec = _fields(spec)
        port = '' if spec.get('id') is None else str(spec.get('id'))
        raw_mac = '' if spec.get('mac') is None else str(spec.get('mac'))
        mac = hyperv_mac(raw_mac)
        if not port.strip() or mac is None:
            raise script_error(f"Nics entry {index} needs an id and a MAC address (got id "
                               f"'{port}', mac '{raw_mac}').", 'InvalidArgument',
                               'PsDriver.InvalidNicSpec', index)
        switch_value = spec.get('switch')
        vlan_value = spec.get('vlan')
        vlan = None
        if vlan_value is not None:
            vlan = _vlan_number(vlan_value)
            if vlan is None or not 0 <= vlan <= 4094:
                raise script_error(f"Nics entry {index} has VLAN '{vlan_value}'; expected 0 to "
                                   '4094 or null.', 'InvalidArgument',
                                   'PsDriver.InvalidNicSpec', index)
        ovs_bridge = spec.get('ovs_bridge')
        wanted.append({'id': port, 'mac': mac,
                       'switch': str(switch_value) if switch_value not in (None, '') else None,
                       'vlan': vlan,
                       'ovs_bridge': str(ovs_bridge) if ovs_bridge not in (None, '') else None})
    return wanted


def _fields(spec: Any) -> dict[str, Any]:
    """``Get-SpecValue``: an entry's keys, case-insensitively; the first of a case wins."""
    fields: dict[str, Any] = {}
    if isinstance(spec, dict):
        for key, value in spec.items():
            fields.setdefault(str(key).lower(), value)
    return fields


def _vlan_number(value: Any) -> int | None:
    """``[int]::TryParse([string]$vlan)``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = str(value).strip()
    return int(text) if text.lstrip('+-').isdigit() else None


@handler('Connect-InstanceNetworkAdapter')
def connect_adapters(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Connect-InstanceNetworkAdapter'
    name = not_empty(script, params, 'Name')
    wanted = _wanted(params.get('Nics'))
    ovs_vsctl, guid = None, None
    if any(w['ovs_bridge'] for w in wanted):
        guid = instance_guid(params.get('InstanceUuid'))
        ovs_vsctl = resolve_ovs_vsctl(host, params.get('OvsVsctlPath'))
    vm = target_vm(host, name)
    initial = list(vm.nics)
    initial_vlans = {nic.id: nic.vlan_id for nic in initial}

    def existing(port: str) -> NetworkAdapter | None:
        return next((n for n in initial if n.name.lower() == port.lower()), None)

    if any(existing(w['id']) is None for w in wanted):
        assert_hotplug(vm, 'add')
    created: list[str] = []
    updated: list[str] = []
    ovs_ports: list[str] = []
    for want in wanted:
        adapter = existing(want['id'])
        changed = False
        if adapter is None:
            adapter = _add(host, vm, want['id'], want['mac'], want['switch'])
            created.append(want['id'])
        else:
            changed = _set_mac(host, vm, adapter, want['mac'])
            changed = _connect(host, vm, adapter, want['switch']) or changed
        if want['vlan'] is not None:
            current = None if want['id'] in created else initial_vlans.get(adapter.id)
            changed = _set_vlan(host, vm, adapter, want['vlan'], current) or changed
        if changed and want['id'] not in created:
            updated.append(want['id'])
        if want['ovs_bridge'] and ovs_vsctl and guid:
            ovs_add_port(host, ovs_vsctl, want['ovs_bridge'], want['id'], want['mac'], guid)
            ovs_ports.append(want['id'])
    records = []
    for want in wanted:
        final = nics_named(vm, want['id'])
        if final:
            records.append(nic_record(final[0]))
    return {'name': vm.name, 'nics': records, 'created': created, 'updated': updated,
            'ovs_ports': ovs_ports}


def _prepare_vm(host: SimHost, params: dict[str, Any]) -> None:
    """The example's instance (generation 2, running), the switches examples name, OVS."""
    from psdriver.sim.scenario import add_instance, ensure_switch
    for switch_name in EXAMPLE_SWITCHES:
        ensure_switch(host, switch_name)
    host.install_ovs(EXAMPLE_OVS_VSCTL)
    add_instance(host, params['Name'])


prepare('Add-InstanceNetworkAdapter')(_prepare_vm)
prepare('Connect-InstanceNetworkAdapter')(_prepare_vm)


@prepare('Remove-InstanceNetworkAdapter')
def _remove_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The instance with the example's adapter."""
    from psdriver.sim.scenario import add_instance
    add_instance(host, params['Name'], nics=[{'id': params['Id'], 'mac': 'fa:16:3e:01:02:03',
                                              'switch': 'external'}])
    if params.get('OvsPort'):
        host.install_ovs(EXAMPLE_OVS_VSCTL)
        host.ovs_add_port('br-int', params['Id'], {'iface-id': params['Id']})


# -- Disconnect-InstanceNetworkAdapter ------------------------------------------------------

@handler('Disconnect-InstanceNetworkAdapter')
def disconnect_adapters(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Disconnect-InstanceNetworkAdapter'
    name = not_empty(script, params, 'Name')
    switch_name = params.get('SwitchName') or ''
    ports = as_list(params.get('Id'))
    if ports and not switch_name:
        raise script_error('Disconnecting network adapters needs the virtual switch name '
                           '(SwitchName).', 'InvalidArgument', 'PsDriver.InvalidNicSpec', name)
    ovs_ports = [str(p) for p in as_list(params.get('OvsPortId')) if p]
    ovs_vsctl = resolve_ovs_vsctl(host, params.get('OvsVsctlPath')) if ovs_ports else ''
    result: dict[str, Any] = {'name': name, 'vm_found': False, 'disconnected': [],
                              'not_connected': [], 'missing': [], 'ovs_ports': ovs_ports}
    vm = host.find_vm(name)
    for port in ovs_ports:
        ovs_del_port(host, ovs_vsctl, port)
    if vm is None:
        return result
    result['vm_found'] = True
    for port in (str(p) for p in ports):
        named = nics_named(vm, port)
        if not named:
            result['missing'].append(port)
            continue
        on_switch = [n for n in named
                     if n.switch_name and n.switch_name.lower() == switch_name.lower()]
        if not on_switch:
            result['not_connected'].append(port)
            continue

        def disconnect(adapters: list[NetworkAdapter] = on_switch) -> None:
            for adapter in adapters:
                host.connect_nic(vm.name, adapter.id, None)
        nic_change(vm, f"disconnect network adapter '{port}' from switch '{switch_name}'",
                   disconnect)
        result['disconnected'].append(port)
    return result


@prepare('Disconnect-InstanceNetworkAdapter')
def _disconnect_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The instance with the example's adapter on the example's switch (and OVS port)."""
    from psdriver.sim.scenario import add_instance, ensure_switch
    switch_name = params.get('SwitchName') or 'external'
    ensure_switch(host, switch_name)
    port = (as_list(params.get('Id')) or as_list(params.get('OvsPortId')))[0]
    add_instance(host, params['Name'], nics=[{'id': port, 'mac': 'fa:16:3e:01:02:03',
                                              'switch': switch_name}])
    if params.get('OvsPortId'):
        host.install_ovs(EXAMPLE_OVS_VSCTL)
        host.ovs_add_port('br-int', port, {'iface-id': port})
