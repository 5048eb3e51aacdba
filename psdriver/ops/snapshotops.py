"""Snapshot: an image of an instance's root disk, uploaded to Glance.

One host round trip (New-InstanceImage: crash-consistent checkpoint, the
frozen root disk chain converted into one standalone VHD/VHDX in
``<instances_path>\\_snapshots``, checkpoint removed), then the file goes to
Glance through the same channel the image cache uses to bring images in
(:mod:`psdriver.ops.hostfiles`), reversed, and is deleted.

A snapshot and a destroy of one instance never run at once: both hold the
instance's lock (:func:`instance_lock`) unless ``[hyperv]
force_destroy_instances`` lets destroy go ahead, as compute-hyperv did.
"""

from __future__ import annotations

import contextlib
from typing import Any, BinaryIO, Callable

from nova import exception
from nova.compute import task_states
from nova.virt import images as nova_images
from oslo_log import log as logging

from psdriver import coordination
from psdriver.bridge import errors as bridge_errors
from psdriver.bridge.client import Bridge
from psdriver.ops import errors
from psdriver.ops.hostfiles import HostFiles

LOG = logging.getLogger(__name__)

#: Folder under instances_path where images wait for their upload.
STAGING_DIR = '_snapshots'
#: Generation 2 images boot only as generation 2 VMs.
GEN2_MACHINE_TYPE = 'hyperv-gen2'


def instance_lock(instance_uuid: str) -> contextlib.AbstractContextManager[None]:
    """The lock snapshot and (unless forced) destroy of one instance share."""
    return coordination.lock(f'instance-{instance_uuid}')


class CountingReader:
    """A read-only stream that counts the bytes read through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.bytes_read += len(data)
        return data

    def __iter__(self):
        while True:
            chunk = self.read(64 * 1024)
            if not chunk:
                return
            yield chunk


class SnapshotOps:
    def __init__(self, bridge: Bridge, conf: Any, files: HostFiles,
                 image_api: Any = None, on_change: Callable[[], None] | None = None) -> None:
        self._bridge = bridge
        self._conf = conf
        self._files = files
        #: None: nova's image API (``nova.virt.images.IMAGE_API``), looked up per call.
        self._image_api = image_api
        self._on_change = on_change or (lambda: None)
        #: Bytes uploaded by the last snapshot (the benchmark reports them).
        self.last_bytes = 0

    def snapshot(self, context: Any, instance: Any, image_id: str,
                 update_task_state: Callable[..., None]) -> dict[str, Any]:
        with instance_lock(instance.uuid):
            update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
            folder = self._files.path.join(self._conf.instances_path, STAGING_DIR)
            params = {'Name': instance.name, 'DestinationFolder': folder, 'FileStem': image_id}
            try:
                with errors.translate(instance.uuid, 'snapshot'):
                    try:
                        result = self._bridge.call('New-InstanceImage', params)
                    except bridge_errors.ScriptObjectNotFound as exc:
                        if exc.error_id == errors.VM_NOT_FOUND:
                            raise exception.InstanceNotRunning(
                                instance_id=instance.uuid) from None
                        raise
            finally:
                self._on_change()
            LOG.info('Image of %s made (%s, %d bytes); uploading it to image %s',
                     instance.name, result['format'], result['file_size_bytes'], image_id,
                     instance=instance)
            try:
                update_task_state(task_state=task_states.IMAGE_UPLOADING,
                                  expected_state=task_states.IMAGE_PENDING_UPLOAD)
                self._upload(context, image_id, result)
            finally:
                self._files.remove(result['path'])
            return result

    def _upload(self, context: Any, image_id: str, result: dict[str, Any]) -> None:
        metadata: dict[str, Any] = {'disk_format': result['format'],
                                    'container_format': 'bare'}
        if result['generation'] == 2:
            metadata['properties'] = {'hw_machine_type': GEN2_MACHINE_TYPE}
        with self._files.open_read(result['path']) as stream:
            reader = CountingReader(stream)
            api = self._image_api or nova_images.IMAGE_API
            api.update(context, image_id, metadata, reader, purge_props=False)
        self.last_bytes = reader.bytes_read
