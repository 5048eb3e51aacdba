"""Virtual switches, the host's dynamic MAC address pool and Open vSwitch for Windows."""

from __future__ import annotations

import hashlib
import ntpath
import uuid
from typing import Any

from psdriver.sim.errors import SimError, invalid_argument, switch_not_found
from psdriver.sim.state import Switch
from psdriver.sim.storage import StorageRules
from psdriver.sim.txn import reads, writes

SWITCH_TYPES = ('External', 'Internal', 'Private')
#: Microsoft's OUI, which Hyper-V's dynamic MAC pool uses.
HYPERV_OUI = '00155D'


class NetworkRules(StorageRules):

    def _switch(self, name: str) -> Switch:
        switch = self._state.switches.get(name.lower()) if isinstance(name, str) else None
        if switch is None:
            raise switch_not_found(str(name))
        return switch

    @reads
    def get_switch(self, name: str) -> Switch:
        return self._switch(name)

    @reads
    def list_switches(self) -> list[Switch]:
        return sorted(self._state.switches.values(), key=lambda s: s.name.lower())

    @writes
    def add_switch(self, name: str, switch_type: str = 'External') -> Switch:
        """``New-VMSwitch``; names are unique, the type is External, Internal or Private."""
        if not isinstance(name, str) or not name.strip():
            raise invalid_argument('The virtual switch name cannot be empty.', str(name))
        if switch_type not in SWITCH_TYPES:
            raise invalid_argument(f"'{switch_type}' is not a switch type; use one of "
                                   f"{', '.join(SWITCH_TYPES)}.", name)
        if name.lower() in self._state.switches:
            raise SimError(f'A virtual switch with name "{name}" already exists.',
                           'ResourceExists', 'PsDriver.SwitchExists', target=name)
        switch = Switch(name=name, switch_type=switch_type, id=str(uuid.uuid4()))
        self._state.switches[name.lower()] = switch
        return switch

    @writes
    def remove_switch(self, name: str) -> None:
        """``Remove-VMSwitch``: adapters connected to it are left disconnected."""
        switch = self._switch(name)
        for vm in self._state.vms.values():
            for nic in vm.nics:
                if nic.switch_name and nic.switch_name.lower() == switch.name.lower():
                    nic.switch_name = None
        del self._state.switches[switch.name.lower()]

    # -- Open vSwitch for Windows (ovs-vsctl) ----------------------------------------

    @reads
    def ovs_vsctl(self, path: str | None) -> str | None:
        """``Get-Command <path> -CommandType Application``: ovs-vsctl's full path, or None.

        An empty path looks for ovs-vsctl.exe on PATH (where the installer puts it).
        """
        installed = self._state.config.ovs_vsctl
        if not installed:
            return None
        if not path or path.lower() in ('ovs-vsctl', 'ovs-vsctl.exe'):
            return installed
        return installed if ntpath.normcase(path) == ntpath.normcase(installed) else None

    @reads
    def ovs_ports(self) -> dict[str, dict[str, Any]]:
        """The ports by name (OVS names are case-sensitive): {name, bridge, external_ids}."""
        return {key: dict(port, external_ids=dict(port['external_ids']))
                for key, port in self._state.ovs_ports.items()}

    @writes
    def install_ovs(self, path: str, bridges: list[str] | tuple[str, ...] = ('br-int',)) -> None:
        """Open vSwitch for Windows installed at ``path`` with its bridges (a scenario step)."""
        self._state.config.ovs_vsctl = path
        for bridge in bridges:
            if bridge not in self._state.ovs_bridges:
                self._state.ovs_bridges.append(bridge)

    @writes
    def ovs_add_bridge(self, bridge: str) -> None:
        """``ovs-vsctl --may-exist add-br``."""
        if bridge not in self._state.ovs_bridges:
            self._state.ovs_bridges.append(bridge)

    @writes
    def ovs_add_port(self, bridge: str, port: str, external_ids: dict[str, str]) -> None:
        """``ovs-vsctl --may-exist add-port <bridge> <port> -- set Interface <port> ...``.

        As ovs-vsctl: a missing bridge is refused; a port already on another
        bridge is refused even with --may-exist; the same port on the same
        bridge only gets its external ids set.
        """
        if bridge not in self._state.ovs_bridges:
            raise SimError(f'ovs-vsctl: no bridge named {bridge}', 'InvalidOperation',
                           'PsDriver.OvsVsctlFailed', target=bridge)
        current = self._state.ovs_ports.get(port)
        if current is not None and current['bridge'] != bridge:
            raise SimError(f'ovs-vsctl: "--may-exist add-port {bridge} {port}" but {port} is '
                           f'actually attached to bridge {current["bridge"]}',
                           'InvalidOperation', 'PsDriver.OvsVsctlFailed', target=port)
        if current is None:
            current = {'name': port, 'bridge': bridge, 'external_ids': {}}
            self._state.ovs_ports[port] = current
        current['external_ids'].update(external_ids)

    @writes
    def ovs_del_port(self, port: str) -> bool:
        """``ovs-vsctl --if-exists del-port <port>``; whether there was one."""
        return self._state.ovs_ports.pop(port, None) is not None

    def _next_mac(self) -> str:
        """Next address of this host's dynamic pool (``00155D`` + host byte + counter)."""
        host_byte = hashlib.sha256(self._state.config.hostname.lower().encode()).digest()[0]
        counter = self._state.mac_counter
        if counter >= 0xFFFF:
            raise SimError('The dynamic MAC address pool of this host is exhausted.',
                           'LimitsExceeded', 'MacPoolExhausted')
        self._state.mac_counter = counter + 1
        return f'{HYPERV_OUI}{host_byte:02X}{counter + 1:04X}'
