"""Host round trips and bytes moved per snapshot, resize and migration (simulated hosts).

Two HyperVDrivers, each on its own simulated host; the two hosts see each
other (an in-memory fabric: each reaches the other's administrative share).
Round trips are counted on each host's bridge; bytes are what crossed from
the source host to the destination (disk files the management node copied,
or Move-VM moved), and, for a snapshot, the image uploaded to Glance.
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks import common

DEST = 'bench-hv02'


def _flavor(vcpus: int, memory_mb: int, root_gb: int) -> Any:
    from nova import objects
    return objects.Flavor(id=vcpus, flavorid=str(vcpus), name=f'm1.{vcpus}', vcpus=vcpus,
                          memory_mb=memory_mb, root_gb=root_gb, ephemeral_gb=0, swap=0,
                          extra_specs={}, rxtx_factor=1.0, is_public=True)


class _Images:
    """Glance's image API for the snapshot upload: counts the bytes."""

    def __init__(self) -> None:
        self.bytes = 0

    def update(self, context, image_id, metadata, data=None, purge_props=True):
        self.bytes += sum(len(chunk) for chunk in iter(lambda: data.read(1 << 20), b''))
        return {'id': image_id}


def _second_driver(compute: common.SimCompute) -> tuple[Any, Any, common.BridgeMeter]:
    """A second driver on a second simulated host that shares a fabric with the first."""
    from psdriver.driver import HyperVDriver
    from psdriver.sim import SimHost, SimRunner
    from psdriver.sim.fabric import Fabric

    host = SimHost(hostname=DEST)
    driver = HyperVDriver(virtapi=None)
    driver._connect()
    runner = driver._bridge.runner = SimRunner(host)
    for files in (driver._files, driver._imagecache._files):
        files._put_file, files._runner = runner.put_file, runner
    Fabric.in_memory(compute.host, host)
    for member in (compute.host, host):
        member.set_migration(enabled=True, use_any_network=True)
    return driver, host, common.BridgeMeter(driver.bridge)


def run(quick: bool = False) -> list[common.Table]:
    from nova.objects import migrate_data as migrate_data_obj

    table = common.Table(
        'migrations.round_trips',
        'Round trips and bytes moved per snapshot, resize and migration (simulated hosts)',
        ['operation', 'round trips (source)', 'round trips (destination)',
         'scripts run', 'bytes moved'])
    with common.sim_compute() as compute:
        src_driver, ctx = compute.driver, compute.context
        dst_driver, dst_host, dst_meter = _second_driver(compute)

        def measured(action: Any) -> tuple[common.Traffic, common.Traffic]:
            compute.expire_caches()
            with compute.meter.measure() as src, dst_meter.measure() as dst:
                action()
            return src, dst

        def row(label: str, src: common.Traffic, dst: common.Traffic, moved: int) -> None:
            scripts = ', '.join(filter(None, [src.script_list() if src.scripts else '',
                                              dst.script_list() if dst.scripts else '']))
            table.add(label, src.round_trips, dst.round_trips, scripts or '-', moved)

        # Snapshot of a running instance.
        first = compute.instance(1)
        compute.spawn(first)
        images = _Images()
        src_driver.snapshotops._image_api = images
        src, dst = measured(lambda: src_driver.snapshot(ctx, first, 'bench-snap',
                                                        lambda **kw: None))
        row('snapshot (image uploaded to Glance)', src, dst, images.bytes)

        # Resize on the same host, then confirm.
        bigger = _flavor(2, 2048, 20)
        info: dict[str, str] = {}
        here = compute.driver.hostops.nodename()
        src, dst = measured(lambda: info.update(disk=src_driver.migrate_disk_and_power_off(
            ctx, first, here, bigger, common.network_info(1))))
        row('resize, same host: migrate_disk_and_power_off', src, dst, 0)
        first.old_flavor, first.flavor = first.flavor, bigger
        src, dst = measured(lambda: src_driver.finish_migration(
            ctx, None, first, info['disk'], common.network_info(1), compute.image_meta(), True,
            {}, None, True))
        row('resize, same host: finish_migration (root grown, VM made again)', src, dst, 0)
        src, dst = measured(lambda: src_driver.confirm_migration(ctx, None, first, None))
        row('resize: confirm_migration', src, dst, 0)

        # Cold migration to the other host.
        second = compute.instance(2)
        compute.spawn(second)
        src, dst = measured(lambda: info.update(disk=src_driver.migrate_disk_and_power_off(
            ctx, second, DEST, second.flavor, common.network_info(2))))
        moved = src_driver.migrationops.last_bytes
        row('cold migration: migrate_disk_and_power_off (disks to the other host)', src, dst,
            moved)
        if moved <= 0 or not json.loads(info['disk'])['disks']:
            raise AssertionError('the cold migration moved no disk')
        src, dst = measured(lambda: dst_driver.finish_migration(
            ctx, None, second, info['disk'], common.network_info(2), compute.image_meta(), False,
            {}, None, True))
        row('cold migration: finish_migration (image cached there, VM made)', src, dst, 0)

        # Live migration of a third instance, with its storage.
        third = compute.instance(3)
        compute.spawn(third)
        data: dict[str, Any] = {}

        def checks() -> None:
            dest_data = dst_driver.check_can_live_migrate_destination(ctx, third, {}, {})
            data['m'] = src_driver.check_can_live_migrate_source(ctx, third, dest_data)
            dst_driver.cleanup_live_migration_destination_check(ctx, dest_data)

        src, dst = measured(checks)
        row('live migration: checks on both hosts (shared-storage probe)', src, dst, 0)
        src, dst = measured(lambda: dst_driver.pre_live_migration(
            ctx, third, None, common.network_info(3), None, data['m']))
        row('live migration: pre_live_migration (the base image is already in its cache)',
            src, dst, 0)

        def move() -> None:
            src_driver.live_migration(ctx, third, DEST, lambda *a: None,
                                      _failed, False, data['m'])
            dst_driver.post_live_migration_at_destination(ctx, third, common.network_info(3))

        src, dst = measured(move)
        row('live migration with storage: Move-VM, then post_live_migration_at_destination',
            src, dst, src_driver.livemigrationops.last_bytes)
        if dst_host.find_vm(third.name) is None:
            raise AssertionError('the live migration did not move the VM')
        assert isinstance(data['m'], migrate_data_obj.HyperVLiveMigrateData)
    return [table]


def _failed(*args: Any) -> None:
    raise AssertionError('the live migration failed')
