"""Virtual switches and the host's dynamic MAC address pool."""

from __future__ import annotations

import hashlib
import uuid

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

    def _next_mac(self) -> str:
        """Next address of this host's dynamic pool (``00155D`` + host byte + counter)."""
        host_byte = hashlib.sha256(self._state.config.hostname.lower().encode()).digest()[0]
        counter = self._state.mac_counter
        if counter >= 0xFFFF:
            raise SimError('The dynamic MAC address pool of this host is exhausted.',
                           'LimitsExceeded', 'MacPoolExhausted')
        self._state.mac_counter = counter + 1
        return f'{HYPERV_OUI}{host_byte:02X}{counter + 1:04X}'
