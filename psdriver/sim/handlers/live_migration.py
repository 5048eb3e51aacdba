"""Test-MigrationHost and Move-Instance: live migration between hosts of a fabric."""

from __future__ import annotations

import re
import time
from typing import Any

from psdriver.sim import paths
from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import SimError
from psdriver.sim.fabric import fabric_of
from psdriver.sim.host import SimHost
from psdriver.sim.migration import live_migration_refusal
from psdriver.sim.scriptlib import (
    dvd_drives, hard_disks, join, not_empty, script_error, switch, target_vm)

_BAD_PROBE = re.compile(r'[\\/:*?"<>|]')


@handler('Test-MigrationHost')
def test_migration_host(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    instances = not_empty('Test-MigrationHost', params, 'InstancesPath')
    probe = params.get('Probe') or 'None'
    probe_file = params.get('ProbeFile') or ''
    exists = None
    if probe != 'None':
        if not probe_file or _BAD_PROBE.search(probe_file) or probe_file in ('.', '..'):
            raise script_error(f"ProbeFile '{probe_file}' must be a plain file name.",
                               'InvalidArgument', 'PsDriver.InvalidProbeFile', probe_file)
        path = join(instances, probe_file)
        if probe == 'Create':
            host.add_file(path, 0, overwrite=True)
            exists = True
        elif probe == 'Check':
            exists = host.exists(path)
        else:
            if host.exists(path):
                host.remove_item(path)
            exists = False
    vm_info = None
    if params.get('VMName'):
        vm = target_vm(host, params['VMName'])
        vm_info = {'name': vm.name, 'version': vm.version or host.config.default_vm_version,
                   'generation': vm.generation, 'state': vm.state,
                   'limit_cpu_features': vm.limit_cpu_features,
                   'passthrough_disks': sum(d.disk_number is not None for d in vm.drives),
                   'dvd_paths': [d.path for d in dvd_drives(vm) if d.path],
                   'switches': sorted({n.switch_name for n in vm.nics if n.switch_name})}
    settings = host.migration_settings()
    cfg = host.config
    return {'hostname': cfg.hostname, 'migration_enabled': settings.enabled,
            'authentication': settings.authentication,
            'use_any_network': settings.use_any_network,
            'migration_networks': list(settings.networks),
            'max_migrations': settings.max_migrations,
            'supported_versions': list(cfg.supported_vm_versions),
            'processor_vendor': cfg.cpu_vendor, 'probe_exists': exists, 'vm': vm_info}


@prepare('Test-MigrationHost')
def _test_prepare(host: SimHost, params: dict[str, Any]) -> None:
    from psdriver.sim.scenario import add_instance
    if params.get('VMName'):
        add_instance(host, params['VMName'])


@handler('Move-Instance', crosses_hosts=True)
def move_instance(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    script = 'Move-Instance'
    name = not_empty(script, params, 'Name')
    destination = not_empty(script, params, 'DestinationHost')
    include_storage = switch(params, 'IncludeStorage')
    dest_path = params.get('DestinationPath') or ''
    if include_storage and not dest_path:
        raise script_error('A migration with storage needs DestinationPath.', 'InvalidArgument',
                           'PsDriver.DestinationPathRequired', name)
    with host.transaction(write=False):
        target_vm(host, name)
    started = time.monotonic()
    fabric = fabric_of(host)
    try:
        if fabric is None:
            raise SimError(f"The host '{destination}' could not be reached.", 'ObjectNotFound',
                           'HostNotFound', target=destination)
        dst = fabric.host(destination)
        if dst is host:
            raise SimError(f"'{name}' is already on '{destination}'.", 'InvalidOperation',
                           'SameHost', target=name)
        with fabric.transaction(host, dst):
            moved_bytes = _move(fabric, host, dst, name, include_storage, dest_path)
    except SimError as exc:
        raise script_error(f"Hyper-V could not live migrate '{name}' to '{destination}': "
                           f'{exc.message}', 'InvalidOperation', 'PsDriver.MigrationFailed',
                           name) from None
    return {'name': name, 'destination_host': destination, 'include_storage': include_storage,
            'storage_bytes': moved_bytes, 'seconds': round(time.monotonic() - started, 3),
            'moved': True}


def _move(fabric: Any, src: SimHost, dst: SimHost, name: str, include_storage: bool,
          dest_path: str) -> int:
    vm = src._vm(name)
    refusal = live_migration_refusal(src, dst, vm, include_storage)
    if refusal:
        raise SimError(refusal, 'InvalidOperation', 'MigrationRefused', target=name)
    for drive in dvd_drives(vm):
        if drive.path and not dst.exists(drive.path):
            raise SimError(f"The image '{drive.path}' in a DVD drive of '{name}' is not "
                           f"reachable on '{dst.hostname}'.", 'ObjectNotFound', 'IsoNotFound',
                           target=drive.path)
    moved: list[tuple[str, str]] = []
    moved_bytes = 0
    if include_storage:
        disks = [drive for drive in hard_disks(vm) if drive.path]
        for drive in disks:                   # all checks first: a refusal copies nothing
            for parent in src.vhd_chain(drive.path)[1:]:
                if not dst.exists(parent.path):
                    raise SimError(f"The parent '{parent.path}' of the virtual hard disk "
                                   f"'{drive.path}' is not on '{dst.hostname}'.",
                                   'ObjectNotFound', 'ParentNotFound', target=parent.path)
        if not dst.exists(dest_path):
            dst.make_dir(dest_path)
        for drive in disks:
            target = join(dest_path, paths.basename(drive.path))
            moved_bytes += fabric.copy_file(src, drive.path, dst, target).size
            moved.append((drive.path, target))
            drive.path = target
    fabric.move_vm(src, name, dst)
    for old, _new in moved:
        src.remove_item(old)
    return moved_bytes


@prepare('Move-Instance')
def _move_prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The example's instance and a destination host that sees this one (in memory)."""
    from psdriver.sim.fabric import Fabric
    from psdriver.sim.scenario import add_image, add_instance
    add_instance(host, params['Name'])
    peer = SimHost(hostname=params['DestinationHost'])
    for member in (host, peer):
        member.set_migration(enabled=True, use_any_network=True)
    for drive in hard_disks(host.get_vm(params['Name'])):
        for parent in host.vhd_chain(drive.path)[1:]:
            add_image(peer, parent.path, parent.vhd.size)
    if not params.get('IncludeStorage'):
        # Shared storage stands in as copies at the same paths.
        for drive in host.get_vm(params['Name']).drives:
            if drive.path and not peer.exists(drive.path):
                peer.make_dir(paths.parent(drive.path))
                peer.add_file(drive.path, 0, vhd=host.get_item(drive.path).vhd)
    Fabric.in_memory(host, peer)
