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
from psdriver.sim.state import MigrationSettings, SmbShare, Vm
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


# -- what Move-VM refuses -----------------------------------------------------------------

def _short(name: str) -> str:
    return name.split('.')[0].lower()


def live_migration_refusal(src: MigrationRules, dst: MigrationRules, vm: Vm,
                           include_storage: bool) -> str | None:
    """Why Hyper-V refuses to live migrate ``vm`` from ``src`` to ``dst``; None if it does not.

    Call inside a transaction holding both hosts.  The rules (Hyper-V's
    live migration requirements): migration enabled on both hosts, the
    same authentication protocol (Kerberos: both in a domain and the
    source trusted to delegate to the destination), a migration network on
    each, the same processor vendor (always) and, for a running VM without
    processor compatibility mode, no processor feature the destination
    lacks, the VM's configuration version supported there, every switch
    its NICs use present there, and no pass-through disk unless the
    storage is shared.
    """
    s, d = src._state, dst._state
    dname = d.config.hostname
    if not s.migration.enabled:
        return (f"The Virtual Machine Management Service on '{s.config.hostname}' is not "
                'configured for live migration (Enable-VMMigration).')
    if not d.migration.enabled:
        return (f"The Virtual Machine Management Service on the destination host '{dname}' "
                'has not been configured for virtual machine migration.')
    if s.migration.authentication != d.migration.authentication:
        return (f"'{s.config.hostname}' authenticates migrations with "
                f"{s.migration.authentication} and '{dname}' with "
                f'{d.migration.authentication}: the connection could not be authenticated.')
    if s.migration.authentication == 'Kerberos':
        if not s.config.domain or s.config.domain.lower() != d.config.domain.lower():
            return 'Kerberos authentication needs both hosts in the same domain.'
        if _short(dname) not in {_short(h) for h in s.config.kerberos_delegation}:
            return ('The Virtual Machine Management Service failed to authenticate the '
                    'connection for a Virtual Machine migration at the source host: no suitable '
                    f"credentials available (constrained delegation to '{dname}' is not set "
                    'up).')
    for host in (src, dst):
        if not host.migration_addresses():
            return (f"'{host._state.config.hostname}' has no network available for live "
                    'migration (Add-VMMigrationNetwork or UseAnyNetworkForMigration).')
    if s.config.cpu_vendor != d.config.cpu_vendor:
        return (f"The virtual machine '{vm.name}' cannot move between processors of different "
                f'manufacturers ({s.config.cpu_vendor} to {d.config.cpu_vendor}).')
    if vm.state in ('Running', 'Paused') and not vm.limit_cpu_features:
        missing = sorted(set(s.config.cpu_features) - set(d.config.cpu_features))
        if missing:
            return (f"The virtual machine '{vm.name}' is using processor-specific features not "
                    f"supported on host '{dname}': {', '.join(missing)} (turn on processor "
                    'compatibility mode).')
    version = vm.version or s.config.default_vm_version
    if version not in d.config.supported_vm_versions:
        return (f"The virtual machine '{vm.name}' has configuration version {version}, which "
                f"'{dname}' does not support.")
    for nic in vm.nics:
        if nic.switch_name and nic.switch_name.lower() not in d.switches:
            return (f"Could not find Ethernet switch '{nic.switch_name}' on '{dname}' for "
                    f"'{vm.name}'.")
    if include_storage and any(drive.disk_number is not None for drive in vm.drives):
        return (f"The virtual machine '{vm.name}' has a pass-through disk, which cannot move "
                'without shared storage.')
    return None
