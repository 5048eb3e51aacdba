"""Host round trips per Nova operation, counted with the bridge's ``round_trips`` counter.

The real HyperVDriver runs on the simulated host (``[powershell] transport =
sim``); only Glance and the two metadata lookups of the config drive are stood
in for (see :func:`benchmarks.common.sim_compute`).  Nothing here is timed:
the figure is how many scripts each operation runs on the host, which on a
real host is what an operation costs beyond the cmdlets themselves.

Before every operation the driver's 5-second host-info and VM snapshot caches
are expired, as they would be between two periodic runs or two API requests,
except in the one row that shows the cache at work.
"""

from __future__ import annotations

from typing import Any, Callable

from nova import objects
from oslo_serialization import jsonutils

from benchmarks import common
from psdriver.demo import steps as demo_steps

#: Instances the power-state sync walks over (the two spawned first, plus these).
SYNC_EXTRA = {True: 2, False: 8}


def run(quick: bool = False) -> list[common.Table]:
    table = common.Table(
        'lifecycle.round_trips', 'Host round trips per Nova operation (simulated host)',
        ['operation', 'round trips', 'scripts run on the host', 'JSON to host (bytes)',
         'JSON from host (bytes)'])

    with common.sim_compute() as compute:
        driver, ctx = compute.driver, compute.context
        first, second = compute.instance(1), compute.instance(2)

        def row(operation: str, action: Callable[[], Any], expire: bool = True) -> None:
            if expire:
                compute.expire_caches()
            with compute.meter.measure() as traffic:
                action()
            table.add(operation, traffic.round_trips, traffic.script_list(),
                      traffic.bytes_to_host, traffic.bytes_from_host)

        row('spawn, first instance of an image (downloaded from Glance)',
            lambda: compute.spawn(first))
        downloads = len(compute.glance.downloads)
        if downloads != 1:
            raise AssertionError(f'the first spawn made {downloads} downloads, not one')
        row('spawn, image already cached', lambda: compute.spawn(second))
        third = compute.instance(3)

        def spawn_unknown_image() -> None:
            driver.imagecache.forget(common.IMAGE_ID)
            compute.spawn(third)

        row('spawn, image on the host but not known to this service (as after a restart)',
            spawn_unknown_image)
        if len(compute.glance.downloads) != downloads:
            raise AssertionError('a spawn downloaded the cached image again')
        row('get_info', lambda: driver.get_info(first))
        row('get_info again within 5 s (snapshot reused)', lambda: driver.get_info(first),
            expire=False)
        row('power_off (hard)', lambda: driver.power_off(first))
        row('power_on', lambda: driver.power_on(ctx, first, None))
        row('power_off (clean shutdown, timeout 60 s)',
            lambda: driver.power_off(first, timeout=60, retry_interval=5))
        driver.power_on(ctx, first, None)
        row('reboot (soft)', lambda: driver.reboot(ctx, first, None, 'SOFT'))
        row('reboot (hard)', lambda: driver.reboot(ctx, first, None, 'HARD'))
        row('pause', lambda: driver.pause(first))
        row('unpause', lambda: driver.unpause(first))
        row('suspend', lambda: driver.suspend(ctx, first))
        row('resume', lambda: driver.resume(ctx, first, None))
        row('get_console_output', lambda: driver.get_console_output(ctx, first))
        volume_rows(compute, row)
        row('destroy', lambda: driver.destroy(ctx, second, None))
        driver.destroy(ctx, third, None)
        row('destroy of a VM that is already gone', lambda: driver.destroy(ctx, second, None))

        fleet = [first] + [compute.instance(10 + i) for i in range(SYNC_EXTRA[quick])]
        for instance in fleet[1:]:
            compute.spawn(instance)
        row('update_available_resource (get_available_nodes + get_available_resource'
            ' + update_provider_tree)', lambda: common.update_available_resource(driver))
        row('list_instances', driver.list_instances)
        row('list_instance_uuids', driver.list_instance_uuids)
        row(f'power-state sync over {len(fleet)} instances (get_num_instances + get_info'
            ' each)', lambda: common.sync_power_states(driver, fleet))
        row('manage_image_cache (image in use)',
            lambda: driver.manage_image_cache(ctx, fleet))

    table.notes.append('Spawns carry a config drive (base64 in the spec: most of the JSON '
                       'sent to the host) and one network port. The image download is not '
                       'a round trip; on the simulated host the file is registered directly.')
    table.notes.append('Caches are expired before each operation (as between two periodic '
                       'runs) except in the "within 5 s" row.')
    table.notes.append('Volumes: connection_info as Cinder\'s iSCSI (CHAP) and SMB drivers '
                       'return it. Boot from volume connects every volume in one call, then '
                       'New-Instance creates the VM with them attached. The volume '
                       "snapshots run on the stopped instance, with nova's BDM row and "
                       "Cinder's status call stood in for.")
    return [table]


def volume_rows(compute: Any, row: Callable[..., None]) -> None:
    """Cinder volumes: connector, attach, extend, detach, boot from volume, destroy."""
    driver, ctx = compute.driver, compute.context
    demo_steps.storage_array(compute.host)
    iscsi = demo_steps.connection_info(demo_steps.ISCSI_VOLUME)
    smb = demo_steps.connection_info(demo_steps.SMB_VOLUME)
    holder = compute.instance(30)
    compute.spawn(holder)
    row('get_volume_connector', lambda: driver.get_volume_connector(holder))
    row('attach_volume (iSCSI, CHAP)',
        lambda: driver.attach_volume(ctx, iscsi, holder, '/dev/sdb'))
    compute.host.resize_lun(demo_steps.ISCSI_IQN, 0, 2)
    row('extend_volume (iSCSI: rescan, new size)',
        lambda: driver.extend_volume(ctx, iscsi, holder, 2 * 1024 ** 3))
    row('attach_volume (SMB: global mapping, VHDX)',
        lambda: driver.attach_volume(ctx, smb, holder, '/dev/sdc'))
    row('detach_volume (iSCSI: detach, log out)',
        lambda: driver.detach_volume(ctx, iscsi, holder, '/dev/sdb'))
    snapshot_rows(compute, row, holder, smb)
    attached = {'root_device_name': None, 'ephemerals': [], 'swap': None,
                'block_device_mapping': [{'connection_info': smb, 'mount_device': '/dev/sdc',
                                          'boot_index': None}]}
    row('destroy with a volume attached (SMB: unmapped)',
        lambda: driver.destroy(ctx, holder, None, attached))
    from_volume = compute.instance(31)
    from_volume.image_ref = ''
    boot = {'root_device_name': '/dev/sda', 'ephemerals': [], 'swap': None,
            'block_device_mapping': [{'connection_info': iscsi, 'mount_device': '/dev/sda',
                                      'boot_index': 0}]}
    row('spawn, boot from an iSCSI volume',
        lambda: driver.spawn(ctx, from_volume, compute.image_meta(), [], None, {},
                             common.network_info(from_volume.id), boot))
    driver.destroy(ctx, from_volume, None, boot)


class _Bdm:
    """Stands in for nova's BDM row (the database is not part of this benchmark)."""

    def __init__(self, connection_info: dict[str, Any]) -> None:
        self.connection_info = jsonutils.dumps(connection_info)

    def save(self) -> None:
        pass


class _Cinder:
    """Stands in for Cinder's snapshot status API."""

    def update_snapshot_status(self, context: Any, snapshot_id: str, status: str) -> None:
        pass


def snapshot_rows(compute: Any, row: Callable[..., None], holder: Any,
                  smb: dict[str, Any]) -> None:
    """Assisted snapshot create and delete of the attached SMB volume (instance stopped)."""
    driver, ctx = compute.driver, compute.context
    volume_id = smb['data']['volume_id']
    bdm = _Bdm(smb)
    ops = driver.volumeops
    ops._volume_api_instance = _Cinder()
    lookup = objects.BlockDeviceMapping.get_by_volume_and_instance
    objects.BlockDeviceMapping.get_by_volume_and_instance = staticmethod(
        lambda context, vid, uuid: bdm)
    try:
        driver.power_off(holder)
        new_file = f"volume-{volume_id}.snap-1.vhdx"
        row('volume_snapshot_create (SMB: differencing disk, drive moved to it)',
            lambda: driver.volume_snapshot_create(ctx, holder, volume_id, {
                'snapshot_id': 'snap-1', 'type': 'qcow2', 'new_file': new_file}))
        row('volume_snapshot_delete (SMB: Merge-VHD, drive on the merged file)',
            lambda: driver.volume_snapshot_delete(ctx, holder, volume_id, 'snap-1', {
                'type': 'qcow2', 'file_to_merge': None, 'merge_target_file': None,
                'volume_id': volume_id}))
    finally:
        objects.BlockDeviceMapping.get_by_volume_and_instance = lookup
