"""The data of one simulated Hyper-V host.

Plain dataclasses, JSON-native fields only (str, int, float, bool, None,
lists, dicts with string keys and other persisted dataclasses), so that
:mod:`psdriver.sim.store` can save and load the whole host quickly.  The
rules live in the :class:`~psdriver.sim.host.SimHost` methods, not here.

Keys of the lookup dicts are case-folded (Windows names and paths are
case-insensitive); each object keeps its display name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

GIB = 1024 ** 3
MIB = 1024 ** 2

#: Registry of persisted classes, by name, for the tagged JSON codec.
PERSISTED: dict[str, type] = {}


def persisted(cls: type) -> type:
    """Register a dataclass so the store can rebuild it from JSON."""
    cls = dataclasses.dataclass(cls)
    PERSISTED[cls.__name__] = cls
    return cls


def _default_modules() -> dict[str, bool]:
    return {'Hyper-V': True, 'FailoverClusters': False, 'MPIO': True, 'iSCSI': True,
            'Storage': True}


def _default_features() -> list[str]:
    return ['mmx', 'sse', 'sse2', 'sse3', 'ssse3', 'sse4_1', 'sse4_2', 'popcnt', 'aes',
            'pclmulqdq', 'avx', 'avx2', 'fma', 'rdrand', 'xsave', 'nx', 'pae', 'vmx',
            'slat']


@persisted
class HostConfig:
    """What the host is; every field can be overridden by a ``SimHost(**kwargs)``."""

    hostname: str = 'SIMHV01'
    os_name: str = 'Microsoft Windows Server 2022 Datacenter'
    os_version: str = '10.0.20348'
    hyperv_version: str = '10.0.20348.1'
    ps_version: str = '5.1.20348.2400'
    ps_edition: str = 'Desktop'
    logical_processors: int = 16
    sockets: int = 2
    threads_per_core: int = 2
    numa_nodes: int = 2
    memory_mb: int = 65536
    #: Memory the root partition (the host OS) keeps for itself.
    host_reserved_memory_mb: int = 2048
    instances_path: str = 'C:\\OpenStack\\Instances'
    #: Size of the volume that holds ``instances_path``.
    disk_gb: float = 500
    #: Other volumes (``'D:'`` or ``'\\\\server\\share'``) and their sizes in GiB.
    extra_volumes: dict[str, float] = field(default_factory=dict)
    cpu_vendor: str = 'GenuineIntel'
    cpu_model: str = 'Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz'
    cpu_arch: str = 'x86_64'
    cpu_features: list[str] = field(default_factory=_default_features)
    ip_addresses: list[str] = field(default_factory=lambda: ['192.0.2.11', 'fe80::11'])
    #: Open vSwitch for Windows: where ovs-vsctl.exe is installed (also on PATH);
    #: None: not installed.
    ovs_vsctl: str | None = None
    #: Open vSwitch bridges present at start (when ovs_vsctl is set).
    ovs_bridges: list[str] = field(default_factory=lambda: ['br-int'])
    #: Virtual switches present at start: name -> type (External, Internal, Private).
    switches: dict[str, str] = field(default_factory=lambda: {'external': 'External'})
    modules: dict[str, bool] = field(default_factory=_default_modules)
    is_admin: bool = True
    iscsi_initiator: str = ''
    max_running_vms: int = 1024
    #: Enable-VMTPM exists (Windows Server 2016 and later).
    vtpm: bool = True
    #: Get-HgsClientConfiguration IsHostGuarded: shielded VMs can run here.
    host_guarded: bool = False
    #: Get-HgsClientConfiguration Mode: HostGuardianService (attested by a Host Guardian
    #: Service) or Local (a host outside a guarded fabric).
    hgs_mode: str = 'HostGuardianService'
    #: The ShieldedVMProvisioning cmdlets (Initialize-ShieldedVM ...) are installed.
    shielded_vm_tools: bool = True
    #: How many times Get-ShieldedVMProvisioningStatus answers "running" after
    #: Initialize-ShieldedVM before the provisioning ends; -1: it never ends.
    shielded_provisioning_polls: int = 2
    #: Images that were prepared as shielded VM template disks (Protect-TemplateDisk)
    #: before they reached Glance: image file stem (the Glance image id) -> its volume
    #: signature catalog ``{'name', 'version'}``, given to the file when it is cached.
    template_disk_images: dict[str, dict[str, str]] = field(default_factory=dict)
    #: TCP ports other programs on the host listen on (a serial relay cannot bind them).
    tcp_ports_in_use: list[int] = field(default_factory=list)
    #: PCI Express devices dismounted for Discrete Device Assignment: each a dict with
    #: location_path, instance_id, vendor_id, product_id, address, numa_node.
    assignable_devices: list[dict[str, Any]] = field(default_factory=list)
    #: Whether the Virtual Machine Management service answers (Get-VMHost).
    vmms_running: bool = True
    #: Default VM configuration version (Get-VMHostSupportedVersion -Default).
    default_vm_version: str = '10.0'
    #: How long the merge of a removed VM's checkpoints into its disks takes (Remove-VM
    #: returns at once and merges afterwards; the files are busy until it is done).
    checkpoint_merge_seconds: float = 0.3
    #: NUMA spanning (Set-VMHost -NumaSpanningEnabled); vNUMA guests want it off.
    numa_spanning_enabled: bool = True
    #: Drive letters mapped to network shares (``'Z:'``), as Win32_LogicalDisk type 4.
    mapped_drives: list[str] = field(default_factory=list)
    #: Other users logged on: a reboot or shutdown without -Force is refused.
    interactive_sessions: int = 0
    #: SAN policy (Get-StorageSetting NewDiskPolicy): OfflineShared (the Windows
    #: Server default) leaves new iSCSI and Fibre Channel disks offline; OnlineAll
    #: brings them online.
    san_policy: str = 'OfflineShared'
    #: Fibre Channel HBA ports (Get-InitiatorPort): [{'wwnn': ..., 'wwpn': ...}], 16 hex digits.
    fc_ports: list[dict[str, str]] = field(default_factory=list)
    #: SMB shares the host starts with (New-SmbShare): share name -> the folder it
    #: exposes; they become the host's ``smb_shares`` (its state), where New-SmbShare adds more.
    smb_shares: dict[str, str] = field(default_factory=dict)
    #: Seconds the host's clock is ahead of the real time (negative: behind).
    clock_offset_seconds: float = 0.0
    #: VM configuration versions this host runs (Get-VMHostSupportedVersion).
    supported_vm_versions: list[str] = field(default_factory=lambda: [
        '5.0', '6.2', '7.0', '7.1', '8.0', '8.1', '8.2', '8.3', '9.0', '9.1', '9.2', '9.3',
        '10.0'])
    #: Active Directory domain ('' : a workgroup host, Kerberos is not available).
    domain: str = ''
    #: Hosts this computer account may delegate to (Kerberos constrained
    #: delegation for the 'Microsoft Virtual System Migration Service' and
    #: 'cifs' services), as set up in Active Directory.
    kerberos_delegation: list[str] = field(default_factory=list)


@persisted
class Volume:
    root: str                      # 'C:' or '\\server\share'
    capacity: int                  # bytes
    used: int = 0                  # bytes, kept by the file rules


@persisted
class VhdInfo:
    format: str                    # VHD | VHDX
    vhd_type: str                  # Fixed | Dynamic | Differencing
    size: int                      # virtual size, bytes
    parent_path: str | None = None
    #: A shielded VM template disk (Protect-TemplateDisk): its volume signature
    #: catalog, ``{'name', 'version'}``; None: not a template disk.
    template_signature: dict[str, str] | None = None
    disk_identifier: str = ''
    logical_sector_size: int = 512
    physical_sector_size: int = 4096
    block_size: int = 33554432


@persisted
class FileEntry:
    path: str                      # display path, normalised
    is_dir: bool
    size: int = 0                  # bytes on the volume (0 for directories)
    created: float = 0.0
    vhd: VhdInfo | None = None
    #: Last write (0: the creation time).
    modified: float = 0.0
    #: The bytes of a file whose content the host keeps (console logs), one
    #: character per byte (latin-1), so any byte sequence survives JSON;
    #: ``None`` for files whose content is not simulated (disks, images).
    content: str | None = None


@persisted
class Drive:
    controller_type: str           # IDE | SCSI
    controller_number: int
    location: int
    kind: str                      # HardDisk | DvdDrive
    path: str | None = None        # VHD/VHDX or ISO path
    disk_number: int | None = None  # pass-through physical disk
    #: Storage QoS (Set-VMHardDiskDrive -MaximumIOPS, 8 KB normalised); 0: no limit.
    max_iops: int = 0


@persisted
class NetworkAdapter:
    id: str
    name: str
    mac_address: str = '000000000000'
    dynamic_mac: bool = True
    switch_name: str | None = None
    vlan_id: int | None = None


@persisted
class Snapshot:
    id: str
    name: str
    parent_id: str | None
    created: float
    #: Drive slot ('SCSI:0:1') -> the disk path the snapshot froze.
    disks: dict[str, str] = field(default_factory=dict)
    processor_count: int = 1
    memory_startup_mb: int = 512
    notes: str = ''


@persisted
class Vm:
    id: str
    name: str
    generation: int
    path: str
    state: str = 'Off'
    notes: str = ''
    processor_count: int = 1
    memory_startup_mb: int = 512
    dynamic_memory: bool = False
    memory_minimum_mb: int = 512
    memory_maximum_mb: int = 1048576
    secure_boot: bool = False
    secure_boot_template: str = ''
    scsi_controllers: int = 0
    drives: list[Drive] = field(default_factory=list)
    nics: list[NetworkAdapter] = field(default_factory=list)
    com_ports: dict[str, str] = field(default_factory=lambda: {'COM1': '', 'COM2': ''})
    console_log: list[str] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    current_snapshot_id: str | None = None
    created: float = 0.0
    started_at: float | None = None
    #: Whether the guest answers a shutdown request (a hung guest does not).
    guest_shutdown: bool = True
    automatic_stop_action: str = 'Save'
    automatic_start_action: str = 'StartIfRunning'
    #: Seconds the guest needs to shut down when asked (if it answers at all).
    guest_shutdown_seconds: int = 3
    #: Set-VMProcessor -CompatibilityForMigrationEnabled.
    limit_cpu_features: bool = False
    #: vNUMA limits (Set-VMProcessor -MaximumCountPerNumaNode,
    #: Set-VMMemory -MaximumAmountPerNumaNodeBytes); None: Hyper-V's default.
    numa_max_processors: int | None = None
    numa_max_memory_mb: int | None = None
    #: Enable-VMResourceMetering: when metering started (None: off).
    metering_since: float | None = None
    #: Generation 1 boot order (Set-VMBios -StartupOrder).
    boot_order: list[str] = field(default_factory=lambda: ['CD', 'IDE',
                                                           'LegacyNetworkAdapter', 'Floppy'])
    #: Generation 2 first boot device: a drive slot such as ``'SCSI:0:0'``.
    first_boot_device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Configuration version (Get-VM .Version); '' : the host's default.
    version: str = ''


@persisted
class MigrationSettings:
    """Live migration settings of a host (Get-VMHost, Get-VMMigrationNetwork).

    The defaults are those of a freshly installed Hyper-V host.
    """

    enabled: bool = False                       # VirtualMachineMigrationEnabled
    authentication: str = 'CredSSP'             # CredSSP | Kerberos
    use_any_network: bool = False               # UseAnyNetworkForMigration
    #: Migration networks (Add-VMMigrationNetwork): subnets such as '192.0.2.0/24'.
    networks: list[str] = field(default_factory=list)
    max_migrations: int = 2                     # MaximumVirtualMachineMigrations
    max_storage_migrations: int = 2             # MaximumStorageMigrations
    performance_option: str = 'Compression'     # TCPIP | Compression | SMB


@persisted
class SmbShare:
    """A folder this host exports over SMB (New-SmbShare)."""

    name: str
    path: str
    full_access: list[str] = field(default_factory=list)


@persisted
class SharedVolume:
    """A volume several hosts of a fabric see (an SMB 3 share or a CSV): its files."""

    volume: 'Volume'
    files: dict[str, 'FileEntry'] = field(default_factory=dict)
    generation: int = 0


@persisted
class Switch:
    name: str
    switch_type: str               # External | Internal | Private
    id: str = ''


@persisted
class IscsiLun:
    lun: int
    size: int
    serial: str
    #: Rescans (Update-HostStorageCache) the host needs before the disk shows up.
    rescans_needed: int = 0


@persisted
class IscsiTarget:
    """A target offered by a storage array behind a portal (set up by tests)."""

    iqn: str
    portals: list[str]             # 'address:port' of each path to the target
    luns: list[IscsiLun] = field(default_factory=list)
    chap_username: str | None = None
    chap_secret: str | None = None


@persisted
class FcTarget:
    """A Fibre Channel array port set (target WWPNs) offering LUNs to the host's HBAs."""

    wwpns: list[str]               # target port WWNs, 16 lower-case hex digits
    luns: list[IscsiLun] = field(default_factory=list)


@persisted
class IscsiSession:
    id: str
    target_iqn: str
    portal: str
    persistent: bool = False
    auth_type: str = 'NONE'


@persisted
class Disk:
    """A physical disk of the host (iSCSI LUNs show up as these)."""

    number: int
    serial: str
    size: int
    bus_type: str = 'iSCSI'        # iSCSI | Fibre Channel
    target_iqn: str = ''
    lun: int = 0
    session_ids: list[str] = field(default_factory=list)
    is_offline: bool = False
    mpio: bool = False
    #: Fibre Channel: the target port WWNs the disk is reached through.
    target_wwns: list[str] = field(default_factory=list)
    #: Rescans still needed before Get-Disk lists it (0: visible).
    hidden_rescans: int = 0


@persisted
class SmbMapping:
    remote_path: str
    local_path: str = ''
    username: str = ''
    status: str = 'OK'


@persisted
class IscsiState:
    initiator: str = ''
    portals: list[str] = field(default_factory=list)
    targets: list[IscsiTarget] = field(default_factory=list)
    sessions: list[IscsiSession] = field(default_factory=list)
    disks: list[Disk] = field(default_factory=list)
    #: Bus types MPIO claims automatically (Enable-MSDSMAutomaticClaim).
    mpio_claimed_bus_types: list[str] = field(default_factory=list)
    next_disk_number: int = 1
    fc_targets: list[FcTarget] = field(default_factory=list)
    #: SMB shares that want credentials: share (lower case) -> [user name, password].
    smb_credentials: dict[str, list[str]] = field(default_factory=dict)
    #: Update-HostStorageCache calls so far.
    rescans: int = 0
    #: Shares served by a real SMB server: share (lower case) -> its TCP port.
    smb_servers: dict[str, int] = field(default_factory=dict)


@persisted
class ClusterNode:
    name: str
    state: str = 'Up'              # Up | Down | Paused


@persisted
class ClusterGroup:
    name: str
    owner_node: str
    state: str = 'Online'          # Online | Offline | Failed | Pending
    group_type: str = 'VirtualMachine'
    vm_name: str | None = None
    #: Failovers allowed within failover_period hours (the cluster's default: no limit).
    failover_threshold: int = 4294967295
    failover_period: int = 6
    auto_failback_type: int = 0    # 0 Prevent | 1 Allow
    persistent_state: int = 0
    #: Preferred owners, in order (Set-ClusterOwnerNode); failback goes to the first one Up.
    preferred_owners: list[str] = field(default_factory=list)
    #: When the group failed over (seconds since the epoch), for the failover threshold.
    failover_times: list[float] = field(default_factory=list)


@persisted
class ClusterState:
    name: str
    nodes: list[ClusterNode] = field(default_factory=list)
    groups: dict[str, ClusterGroup] = field(default_factory=dict)
    #: Bumped on every save of a fabric's shared cluster state (psdriver.sim.store).
    generation: int = 0


@persisted
class ConsoleLogger:
    """A background process copying a VM's serial pipe into a log file."""

    vm_id: str
    pipe_path: str                 # \\.\pipe\<name>
    log_path: str
    max_log_bytes: int
    pid: int
    started: float = 0.0


@persisted
class HostPower:
    """What host power actions did (Invoke-HostPowerAction)."""

    last_action: str = ''
    last_action_time: float = 0.0
    reboots: int = 0
    shutdowns: int = 0
    #: VMs that were running when the host went down (StartIfRunning brings them back).
    running_at_stop: list[str] = field(default_factory=list)


@persisted
class FaultRule:
    kind: str                      # fail | delay | garbage
    script: str                    # script name or fnmatch pattern ('*', 'Get-*')
    remaining: int | None = 1      # None: every call
    message: str = ''
    category: str = 'InvalidOperation'
    error_id: str = ''
    error_type: str = ''
    target: str = ''
    seconds: float = 0.0
    text: str = ''


@persisted
class FaultState:
    host_down: bool = False
    rules: list[FaultRule] = field(default_factory=list)


@persisted
class PendingMerge:
    """Checkpoint disks Remove-VM merges after the VM is gone.

    ``chain`` runs from the newest ``.avhdx`` to the disk they merge into; all
    of it is busy until ``ready_at``.
    """
    chain: list[str]
    ready_at: float


@persisted
class HostState:
    config: HostConfig
    boot_time: float
    volumes: dict[str, Volume] = field(default_factory=dict)
    files: dict[str, FileEntry] = field(default_factory=dict)
    vms: dict[str, Vm] = field(default_factory=dict)
    switches: dict[str, Switch] = field(default_factory=dict)
    iscsi: IscsiState = field(default_factory=IscsiState)
    smb_mappings: list[SmbMapping] = field(default_factory=list)
    cluster: ClusterState | None = None
    faults: FaultState = field(default_factory=FaultState)
    #: Serial console relays (Start-InstanceSerialConsole) by VM id: port, pid,
    #: listen_address, dir (the instance folder), pipe.
    serial_relays: dict[str, dict[str, Any]] = field(default_factory=dict)
    mac_counter: int = 0
    #: Console loggers by VM id (lower case).
    console_loggers: dict[str, ConsoleLogger] = field(default_factory=dict)
    power: HostPower = field(default_factory=HostPower)
    next_pid: int = 4000
    #: Checkpoint merges still running after Remove-VM.
    pending_merges: list[PendingMerge] = field(default_factory=list)
    migration: MigrationSettings = field(default_factory=MigrationSettings)
    #: Folders exported over SMB, by share name (lower case).
    smb_shares: dict[str, SmbShare] = field(default_factory=dict)
    #: Open vSwitch bridges (names as created) and their ports: port name (
    #: case-sensitive, as in OVS) -> {name, bridge, external_ids}.
    ovs_bridges: list[str] = field(default_factory=list)
    ovs_ports: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Bumped on every saved change; lets tests and tools see that state moved.
    generation: int = 0
