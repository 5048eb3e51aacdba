"""What a host offers other hosts: SMB shares it exports and its live migration settings.

These are one host's own settings (``New-SmbShare``, ``Enable-VMMigration``,
``Set-VMHost``, ``Add-VMMigrationNetwork``); what happens between two hosts
(resolving a UNC path to a peer, moving a VM) is in :mod:`psdriver.sim.fabric`.
"""

from __future__ import annotations

import ipaddress

from psdriver.sim import paths
from psdriver.sim.errors import CIM_EXCEPTION, SimError, invalid_argument
from psdriver.sim.hostpower import HostPowerRules
from psdriver.sim.state import MigrationSettings, SmbShare
from psdriver.sim.txn import reads, writes

AUTH_TYPES = ('CredSSP', 'Kerberos')
PERFORMANCE_OPTIONS = ('TCPIP', 'Compression', 'SMB')


def _subnet(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise invalid_argument(f"'{value}' is not a subnet (address/prefix length).",
                               value) from None


class MigrationRules(HostPowerRules):

    # -- SMB shares this host exports ------------------------------------------------

    @writes
    def new_smb_share(self, name: str, path: str, full_access: list[str] = ()) -> SmbShare:
        """``New-SmbShare -Name -Path -FullAccess``: the folder must exist."""
        if not name or any(c in name for c in '\\/:*?"<>|'):
            raise invalid_argument(f"'{name}' is not a valid share name.", name)
        if name.lower() in self._state.smb_shares:
            raise SimError(f"The name '{name}' has already been shared.", 'ResourceExists',
                           'ShareExists', CIM_EXCEPTION, name)
        norm = paths.normalize(path)
        entry = self._require(norm)
        if not entry.is_dir:
            raise invalid_argument(f"'{norm}' is not a folder.", path)
        share = SmbShare(name=name, path=norm, full_access=list(full_access))
        self._state.smb_shares[name.lower()] = share
        return share

    @writes
    def remove_smb_share(self, name: str) -> None:
        if self._state.smb_shares.pop(name.lower(), None) is None:
            raise SimError(f"No MSFT_SMBShare objects found with property 'Name' equal to "
                           f"'{name}'.", 'ObjectNotFound', 'ShareNotFound', CIM_EXCEPTION, name)

    @reads
    def smb_share(self, name: str) -> SmbShare | None:
        return self._state.smb_shares.get(name.lower())

    # -- live migration settings -------------------------------------------------------

    @reads
    def migration_settings(self) -> MigrationSettings:
        return self._state.migration

    @writes
    def set_migration(self, *, enabled: bool | None = None, authentication: str | None = None,
                      use_any_network: bool | None = None,
                      performance_option: str | None = None,
                      max_migrations: int | None = None) -> MigrationSettings:
        """``Enable-VMMigration`` / ``Disable-VMMigration`` / ``Set-VMHost``."""
        settings = self._state.migration
        if authentication is not None and authentication not in AUTH_TYPES:
            raise invalid_argument(f"'{authentication}' is not a migration authentication "
                                   f"type ({', '.join(AUTH_TYPES)}).", authentication)
        if performance_option is not None and performance_option not in PERFORMANCE_OPTIONS:
            raise invalid_argument(f"'{performance_option}' is not a migration performance "
                                   'option.', performance_option)
        if max_migrations is not None and max_migrations < 1:
            raise invalid_argument('MaximumVirtualMachineMigrations must be at least 1.',
                                   str(max_migrations))
        if authentication == 'Kerberos' and not self._state.config.domain:
            raise SimError('Kerberos authentication for live migration needs the host to be '
                           'joined to a domain.', 'InvalidOperation', 'NotDomainJoined',
                           target=self._state.config.hostname)
        for attr, value in (('enabled', enabled), ('authentication', authentication),
                            ('use_any_network', use_any_network),
                            ('performance_option', performance_option),
                            ('max_migrations', max_migrations)):
            if value is not None:
                setattr(settings, attr, value)
        return settings

    @writes
    def add_migration_network(self, subnet: str) -> list[str]:
        """``Add-VMMigrationNetwork``."""
        net = _subnet(subnet)
        if net not in self._state.migration.networks:
            self._state.migration.networks.append(net)
        return self._state.migration.networks

    @writes
    def remove_migration_network(self, subnet: str) -> list[str]:
        net = _subnet(subnet)
        self._state.migration.networks = [n for n in self._state.migration.networks
                                          if n != net]
        return self._state.migration.networks

    @reads
    def migration_addresses(self) -> list[str]:
        """Addresses of this host that live migration may use (its migration networks)."""
        settings = self._state.migration
        addresses = [a for a in self._state.config.ip_addresses
                     if not ipaddress.ip_address(a).is_link_local]
        if settings.use_any_network:
            return addresses
        nets = [ipaddress.ip_network(n) for n in settings.networks]
        return [a for a in addresses
                if any(ipaddress.ip_address(a) in n for n in nets
                       if n.version == ipaddress.ip_address(a).version)]
