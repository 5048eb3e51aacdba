"""HyperVDriver.snapshot on the simulated host: image file, upload, task states, locking."""

from __future__ import annotations

import threading

import pytest
from nova import exception
from nova.compute import task_states

from psdriver.ops import imagecache

from tests.unit.driver_env import GIB, INSTANCES, DriverEnv


class ImageService:
    """Glance's image API as the driver's snapshot uses it: ``update`` with data."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, dict, bytes, bool]] = []
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.fail = False

    def update(self, context, image_id, metadata, data=None, purge_props=True):
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise exception.ImageNotAuthorized(image_id=image_id)
        self.updates.append((image_id, metadata, b''.join(data), purge_props))
        return {'id': image_id}


@pytest.fixture
def env(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.start()
        env.images = ImageService()
        env.driver.snapshotops._image_api = env.images
        yield env


def spawn(env, **properties):
    image = env.image(**properties)
    instance = env.instance(image)
    env.spawn(instance, image)
    return instance


def snapshot(env, instance, image_id='5e1c0a7b-9d8e-4f3a-b2c1-0d9e8f7a6b5c'):
    states = []
    env.driver.snapshot(None, instance, image_id,
                        lambda task_state, expected_state=None: states.append(
                            (task_state, expected_state)))
    return states


def test_snapshot_uploads_the_root_disk_as_one_vhdx(env, tmp_path):
    instance = spawn(env, hw_machine_type='hyperv-gen2')
    before = env.round_trips(lambda: None)
    trips = env.round_trips(snapshot, env, instance)

    assert trips == 1 + before
    image_id, metadata, data, purge = env.images.updates[0]
    assert metadata == {'disk_format': 'vhdx', 'container_format': 'bare',
                        'properties': {'hw_machine_type': 'hyperv-gen2'}}
    assert purge is False
    staged = tmp_path / 'image.vhdx'
    staged.write_bytes(data)
    info = imagecache.inspect_image_file(str(staged))
    assert (info.format, info.virtual_size_bytes) == ('vhdx', 10 * GIB)
    vm = env.vm(instance)
    assert vm.state == 'Running' and vm.snapshots == []
    assert vm.drives[0].path == f'{INSTANCES}\\{instance.name}\\root.vhdx'
    assert env.host.list_dir(f'{INSTANCES}\\_snapshots') == []
    assert env.driver.snapshotops.last_bytes == len(data)
    env.host.check_consistency()


def test_task_states_are_the_ones_nova_expects(env):
    instance = spawn(env)
    assert snapshot(env, instance) == [
        (task_states.IMAGE_PENDING_UPLOAD, None),
        (task_states.IMAGE_UPLOADING, task_states.IMAGE_PENDING_UPLOAD)]


def test_generation_1_vhd_image(env):
    from psdriver.sim.image_files import dynamic_vhd
    image = env.image(dynamic_vhd(GIB), disk_format='vhd')
    instance = env.instance(image)
    env.spawn(instance, image)
    snapshot(env, instance)
    _, metadata, data, _ = env.images.updates[0]
    assert metadata == {'disk_format': 'vhd', 'container_format': 'bare'}
    assert data[-512:].startswith(b'conectix')


def test_snapshot_of_a_missing_vm_is_instance_not_running(env):
    instance = env.instance(env.image())
    with pytest.raises(exception.InstanceNotRunning):
        snapshot(env, instance)


def test_failed_upload_leaves_no_file_and_no_checkpoint(env):
    instance = spawn(env)
    env.images.fail = True
    with pytest.raises(exception.ImageNotAuthorized):
        snapshot(env, instance)
    assert env.host.list_dir(f'{INSTANCES}\\_snapshots') == []
    assert env.vm(instance).snapshots == []
    env.host.check_consistency()


def _destroy_during_snapshot(env, instance) -> tuple[bool, threading.Thread]:
    env.images.gate = threading.Event()
    snap = threading.Thread(target=snapshot, args=(env, instance))
    snap.start()
    assert env.images.started.wait(10)
    destroyed = threading.Event()
    killer = threading.Thread(target=lambda: (env.driver.destroy(None, instance, []),
                                              destroyed.set()))
    killer.start()
    finished_early = destroyed.wait(0.5)
    env.images.gate.set()
    snap.join(10)
    killer.join(10)
    return finished_early, snap


def test_destroy_waits_for_a_snapshot_in_progress(env):
    instance = spawn(env)
    finished_early, _ = _destroy_during_snapshot(env, instance)
    assert not finished_early
    assert len(env.images.updates) == 1
    assert env.host.find_vm(instance.name) is None


def test_force_destroy_instances_does_not_wait(env):
    env.flags('hyperv', force_destroy_instances=True)
    instance = spawn(env)
    finished_early, _ = _destroy_during_snapshot(env, instance)
    assert finished_early
