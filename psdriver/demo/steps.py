"""The demo's steps: an instance's life, one nova-compute operation per step.

Each step makes the driver calls ``nova.compute.manager.ComputeManager``
makes for that operation, in the same order and with the same arguments
(after a power operation the manager reads the power state back with
``get_info(use_cache=False)``; before a rescue it powers the instance off).
A step may name the Nova power state the instance must be in afterwards and
a check of the host; either failing fails the step.

The demo grows with the driver: a new operation (snapshot, resize) is one
more :class:`Step` in :data:`STEPS`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from nova.compute import power_state, provider_tree

from psdriver.demo import nova_objects

ADMIN_PASSWORD = 'Demo-admin-Passw0rd'
RESCUE_PASSWORD = 'Demo-rescue-Passw0rd'


class StepCheckFailed(Exception):
    """The driver call returned, but Nova or the host are not where they should be."""


@dataclasses.dataclass
class World:
    """What the steps work on: the driver and the Nova objects nova-compute would hold."""

    driver: Any                      # RecordingDriver over HyperVDriver
    host: Any                        # the SimHost, for the checks only
    conf: Any
    context: Any
    image: Any
    image_meta: Any
    instance: Any
    network_info: Any
    extra_vif: Any
    nodename: str = ''
    #: The attached volumes, as the block device mappings nova-compute keeps.
    volumes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: Set by the resize steps: the flavor resized to and migrate_disk_and_power_off's answer.
    new_flavor: Any = None
    disk_info: str = ''

    def block_device_info(self) -> dict[str, Any]:
        """``driver.get_block_device_info``: a boot from image with the attached volumes."""
        return {'root_device_name': self.instance.root_device_name, 'ephemerals': [],
                'block_device_mapping': list(self.volumes.values()), 'swap': None}

    def vm(self) -> Any:
        return self.host.find_vm(self.instance.name)


@dataclasses.dataclass(frozen=True)
class Step:
    name: str                                   # the ComputeManager operation
    what: str                                   # what it means for the instance
    run: Callable[[World], str | None]          # the driver calls; returns a result line
    power_state: int | None = None              # Nova power state afterwards
    check: Callable[[World], None] | None = None


# -- what several steps do ------------------------------------------------------------

def sync_power_state(w: World) -> str:
    """``ComputeManager._get_power_state``: what the manager does after each power operation."""
    w.instance.power_state = w.driver.get_info(w.instance, use_cache=False).state
    return f'power state {power_state.STATE_MAP[w.instance.power_state]}'


def _shutdown(w: World) -> None:
    """``ComputeManager._power_off_instance`` with a clean shutdown."""
    w.driver.power_off(w.instance, w.conf.shutdown_timeout,
                       w.conf.compute.shutdown_retry_interval)


def nic_count(count: int) -> Callable[[World], None]:
    def check(w: World) -> None:
        vm = w.vm()
        have = len(vm.nics) if vm else 0
        if have != count:
            raise StepCheckFailed(f'the host shows {have} network adapter(s), not {count}')
    return check


def rescue_disk_attached(attached: bool) -> Callable[[World], None]:
    def check(w: World) -> None:
        vm = w.vm()
        paths = [d.path or '' for d in (vm.drives if vm else [])]
        found = any('rescue' in p.lower() for p in paths)
        if found != attached:
            raise StepCheckFailed('the host %s a rescue disk attached (drives: %s)' % (
                'has no' if attached else 'still has', ', '.join(paths) or 'none'))
    return check


def _gone(w: World) -> None:
    if w.vm() is not None:
        raise StepCheckFailed(f'VM {w.instance.name} is still on the host')
    volumes_on_host(0, 0)(w)


# -- volumes: what Cinder's drivers hand nova ------------------------------------------

ISCSI_PORTAL = '192.0.2.50:3260'
ISCSI_IQN = 'iqn.2010-10.org.openstack:volume-demo'
CHAP = ('demo-chap', 'Demo-chap-s3cret')
SMB_SHARE = '\\\\fs01\\cinder'
SMB_CREDENTIALS = ('cinder', 'Demo-smb-s3cret')
ISCSI_VOLUME = nova_objects.demo_uuid('iscsi-volume')
SMB_VOLUME = nova_objects.demo_uuid('smb-volume')


def storage_array(host: Any) -> None:
    """The Cinder back ends outside the host: an iSCSI target and an SMB share (once)."""
    if not any(t.iqn == ISCSI_IQN for t in host.state.iscsi.targets):
        host.add_iscsi_target(ISCSI_PORTAL, ISCSI_IQN, [1], chap_username=CHAP[0],
                              chap_secret=CHAP[1])
    if SMB_SHARE.lower() not in host.state.volumes:
        host.add_volume(SMB_SHARE, 100)
        host.require_smb_credentials(SMB_SHARE, *SMB_CREDENTIALS)
    disk = f'{SMB_SHARE}\\volume-{SMB_VOLUME}.vhdx'
    if not host.exists(disk):
        host.new_vhd(disk, 1024 ** 3)


def connection_info(volume_id: str) -> dict[str, Any]:
    if volume_id == ISCSI_VOLUME:
        return {'driver_volume_type': 'iscsi', 'serial': volume_id, 'data': {
            'volume_id': volume_id, 'target_portal': ISCSI_PORTAL, 'target_iqn': ISCSI_IQN,
            'target_lun': 0, 'auth_method': 'CHAP', 'auth_username': CHAP[0],
            'auth_password': CHAP[1]}}
    return {'driver_volume_type': 'smbfs', 'serial': volume_id, 'data': {
        'volume_id': volume_id, 'export': SMB_SHARE.replace('\\', '/'),
        'name': f'volume-{volume_id}.vhdx', 'format': 'vhdx',
        'options': f'-o username={SMB_CREDENTIALS[0]},password={SMB_CREDENTIALS[1]}',
        'qos_specs': {'total_iops_sec': 500}}}


def volumes_on_host(sessions: int, mappings: int) -> Callable[[World], None]:
    def check(w: World) -> None:
        have = (len(w.host.iscsi_sessions()), len(w.host.smb_mappings()))
        if have != (sessions, mappings):
            raise StepCheckFailed(f'the host has {have[0]} iSCSI session(s) and {have[1]} SMB '
                                  f'mapping(s), not {sessions} and {mappings}')
    return check


def attach_volume(volume_id: str, device: str) -> Callable[[World], str]:
    """``ComputeManager.attach_volume``: the connector for Cinder, then the attach."""
    def run(w: World) -> str:
        connector = w.driver.get_volume_connector(w.instance)
        info = connection_info(volume_id)
        w.driver.attach_volume(w.context, info, w.instance, device)
        w.volumes[volume_id] = {'connection_info': info, 'mount_device': device,
                                'boot_index': None, 'disk_bus': None, 'device_type': 'disk'}
        return (f"{info['driver_volume_type']} volume attached; connector initiator "
                f"{connector['initiator']}")
    return run


def extend_volume(w: World) -> str:
    """Cinder grew the LUN to 2 GiB; nova's volume-extended event reaches the driver."""
    w.host.resize_lun(ISCSI_IQN, 0, 2)
    w.driver.extend_volume(w.context, connection_info(ISCSI_VOLUME), w.instance, 2 * 1024 ** 3)
    return 'the host sees 2 GiB'


def detach_volume(volume_id: str, device: str) -> Callable[[World], str]:
    def run(w: World) -> str:
        w.driver.detach_volume(w.context, connection_info(volume_id), w.instance, device)
        w.volumes.pop(volume_id, None)
        return 'detached'
    return run


# -- the operations --------------------------------------------------------------------

def init_host(w: World) -> str:
    w.driver.init_host(host=w.conf.host)
    report = w.driver.real.host_report
    return (f"{report['hostname']}: Windows {report['os_version']}, instances in "
            f"{report['instances_path'].get('path')} ({report['instances_path'].get('kind')})")


def update_available_resource(w: World) -> str:
    w.nodename = w.driver.get_available_nodes()[0]
    resources = w.driver.get_available_resource(w.nodename)
    tree = provider_tree.ProviderTree()
    tree.new_root(w.nodename, nova_objects.demo_uuid('resource-provider'))
    w.driver.update_provider_tree(tree, w.nodename)
    data = tree.data(w.nodename)
    inventory = ', '.join(f"{rc} {inv['total']}" for rc, inv in sorted(data.inventory.items()))
    return (f"{resources['vcpus']} vCPUs, {resources['memory_mb']} MB, "
            f"{resources['local_gb']} GB; placement: {inventory}; {len(data.traits)} traits")


def spawn(w: World) -> str:
    w.driver.spawn(w.context, w.instance, w.image_meta, [], ADMIN_PASSWORD, {},
                   network_info=w.network_info, block_device_info=w.block_device_info(),
                   accel_info=[])
    return sync_power_state(w)


def get_info(w: World) -> str:
    return sync_power_state(w)


def power_off(w: World) -> str:
    _shutdown(w)
    return sync_power_state(w)


def power_on(w: World) -> str:
    w.driver.power_on(w.context, w.instance, w.network_info,
                      block_device_info=w.block_device_info(), accel_info=[], share_info=None)
    return sync_power_state(w)


def reboot(reboot_type: str) -> Callable[[World], str]:
    def run(w: World) -> str:
        w.driver.reboot(w.context, w.instance, w.network_info, reboot_type,
                        block_device_info=w.block_device_info(), accel_info=[],
                        share_info=None, bad_volumes_callback=None)
        return sync_power_state(w)
    return run


def pause(w: World) -> str:
    w.driver.pause(w.instance)
    return sync_power_state(w)


def unpause(w: World) -> str:
    w.driver.unpause(w.instance)
    return sync_power_state(w)


def suspend(w: World) -> str:
    w.driver.suspend(w.context, w.instance)
    return sync_power_state(w)


def resume(w: World) -> str:
    w.driver.resume(w.context, w.instance, w.network_info,
                    block_device_info=w.block_device_info(), share_info=None)
    return sync_power_state(w)


def rescue(w: World) -> str:
    _shutdown(w)
    w.driver.rescue(w.context, w.instance, w.network_info, w.image_meta, RESCUE_PASSWORD,
                    w.block_device_info(), None)
    return sync_power_state(w)


def unrescue(w: World) -> str:
    w.driver.unrescue(w.context, w.instance)
    return sync_power_state(w)


def attach_interface(w: World) -> str:
    w.driver.attach_interface(w.context, w.instance, w.image_meta, w.extra_vif)
    return f"port {w.extra_vif['id']} attached as {w.extra_vif['address']}"


def detach_interface(w: World) -> str:
    w.driver.detach_interface(w.context, w.instance, w.extra_vif)
    return f"port {w.extra_vif['id']} detached"


def get_console_output(w: World) -> str:
    output = w.driver.get_console_output(w.context, w.instance)
    if isinstance(output, bytes):
        output = output.decode('utf-8', 'replace')
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        raise StepCheckFailed('the console log is empty')
    return f'{len(output)} characters of serial console log; last line {lines[-1][:60]!r}'


def get_instance_diagnostics(w: World) -> str:
    diags = w.driver.get_instance_diagnostics(w.instance)
    return (f'state {diags.state}, {diags.num_cpus} vCPUs, {diags.num_disks} disks, '
            f'{diags.num_nics} NIC, config drive {"yes" if diags.config_drive else "no"}')


def snapshot(w: World) -> str:
    from nova.virt import images
    states: list[str] = []
    image_id = nova_objects.demo_uuid('snapshot')
    w.driver.snapshot(w.context, w.instance, image_id,
                      lambda task_state, expected_state=None: states.append(task_state))
    metadata, data = images.IMAGE_API.uploads[image_id]
    return (f"{metadata['disk_format']} image of {len(data)} bytes uploaded as {image_id}; "
            f"task states {' -> '.join(states)}")


def _snapshot_gone(w: World) -> None:
    vm = w.vm()
    if vm is None or vm.snapshots or vm.state != 'Running':
        raise StepCheckFailed('the instance should run on, without a checkpoint')
    folder = w.conf.instances_path + '\\_snapshots'
    if w.host.exists(folder) and w.host.list_dir(folder):
        raise StepCheckFailed(f'the image file was left in {folder}')


def resize(w: World) -> str:
    """``resize_instance`` on the source (here the same host: allow_resize_to_same_host)."""
    w.new_flavor = nova_objects.bigger_flavor()
    w.disk_info = w.driver.migrate_disk_and_power_off(
        w.context, w.instance, w.conf.host, w.new_flavor, w.network_info,
        w.block_device_info(), w.conf.shutdown_timeout, w.conf.compute.shutdown_retry_interval)
    return f'VM removed, its disks kept in {w.instance.name}_revert and copied for the resize'


def finish_resize(w: World) -> str:
    w.instance.old_flavor, w.instance.flavor = w.instance.flavor, w.new_flavor
    w.driver.finish_migration(w.context, None, w.instance, w.disk_info, w.network_info,
                              w.image_meta, True, {}, w.block_device_info(), True)
    vm = w.vm()
    return f'{vm.processor_count} vCPUs, {vm.memory_startup_mb} MB; ' + sync_power_state(w)


def _resized(w: World) -> None:
    vm = w.vm()
    root = w.host.get_vhd(vm.drives[0].path).vhd.size // 1024 ** 3 if vm and vm.drives else 0
    if vm is None or (vm.processor_count, root) != (4, 20):
        raise StepCheckFailed('the VM should have 4 vCPUs and a 20 GB root disk')


def confirm_resize(w: World) -> str:
    w.driver.confirm_migration(w.context, None, w.instance, w.network_info)
    return 'the files kept for a revert are deleted'


def _revert_folder_gone(w: World) -> None:
    folder = w.conf.instances_path + '\\' + w.instance.name + '_revert'
    if w.host.exists(folder):
        raise StepCheckFailed(f'{folder} is still there')


def destroy(w: World) -> str:
    w.driver.destroy(w.context, w.instance, w.network_info,
                     block_device_info=w.block_device_info(), destroy_disks=True)
    return 'deleted'


def cleanup_host(w: World) -> str:
    w.driver.cleanup_host(host=w.conf.host)
    return 'bridge closed'


RUNNING, SHUTDOWN = power_state.RUNNING, power_state.SHUTDOWN
#: The operations the clean-up after a failure looks for.
START, SPAWN, DELETE, STOP = ('init_host', 'build_and_run_instance', 'terminate_instance',
                              'cleanup_host')

STEPS: list[Step] = [
    Step(START, 'nova-compute starts', init_host),
    Step('update_available_resource', 'resource tracker periodic task',
         update_available_resource),
    Step(SPAWN, 'boot from a VHDX image, with a config drive', spawn, RUNNING),
    Step('get_info', 'power-state sync', get_info, RUNNING),
    Step('stop_instance', 'clean shutdown', power_off, SHUTDOWN),
    Step('start_instance', 'power on', power_on, RUNNING),
    Step('reboot_instance', 'soft reboot', reboot('SOFT'), RUNNING),
    Step('reboot_instance', 'hard reboot', reboot('HARD'), RUNNING),
    Step('pause_instance', 'pause', pause, power_state.PAUSED),
    Step('unpause_instance', 'unpause', unpause, RUNNING),
    Step('suspend_instance', 'suspend (saved state)', suspend, power_state.SUSPENDED),
    Step('resume_instance', 'resume', resume, RUNNING),
    Step('rescue_instance', 'boot from the rescue image', rescue, RUNNING,
         rescue_disk_attached(True)),
    Step('unrescue_instance', 'back to its own root disk', unrescue, RUNNING,
         rescue_disk_attached(False)),
    Step('attach_interface', 'a second Neutron port', attach_interface, None, nic_count(2)),
    Step('detach_interface', 'the second port goes', detach_interface, None, nic_count(1)),
    Step('attach_volume', 'an iSCSI volume with CHAP', attach_volume(ISCSI_VOLUME, '/dev/sdb'),
         None, volumes_on_host(1, 0)),
    Step('extend_volume', 'Cinder grew it to 2 GiB', extend_volume),
    Step('attach_volume', 'an SMB volume (VHDX on a share)',
         attach_volume(SMB_VOLUME, '/dev/sdc'), None, volumes_on_host(1, 1)),
    Step('detach_volume', 'the iSCSI volume goes', detach_volume(ISCSI_VOLUME, '/dev/sdb'),
         None, volumes_on_host(0, 1)),
    Step('get_console_output', 'the serial console log', get_console_output),
    Step('get_instance_diagnostics', 'diagnostics', get_instance_diagnostics),
    Step('snapshot_instance', 'an image of the running instance, to Glance', snapshot,
         RUNNING, _snapshot_gone),
    Step('resize_instance', 'resize to demo.medium: shut down, keep the disks', resize),
    Step('finish_resize', 'the VM again, bigger, over the same disks', finish_resize,
         RUNNING, _resized),
    Step('confirm_resize', 'confirm the resize', confirm_resize, None, _revert_folder_gone),
    Step(DELETE, 'delete (the SMB volume still attached)', destroy, None, _gone),
    Step(STOP, 'nova-compute stops', cleanup_host),
]
