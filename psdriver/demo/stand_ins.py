"""What the demo answers locally, because it runs without the rest of OpenStack.

Everything the driver does is real; the host is the simulated one.  Three
lookups would leave this process in a real deployment, and only those are
answered here, while :func:`local_lookups` is active:

* **Glance**: ``nova.virt.images.IMAGE_API`` (what ``images.fetch`` and
  ``images.get_info`` use) is a :class:`GlanceStandIn` that serves the bytes of
  one small VHDX image (:func:`psdriver.sim.image_files.vhdx`); the image
  cache inspects them exactly as it does a real download; a snapshot's
  upload is kept in memory.
* **Nova's database**: ``BlockDeviceMappingList.get_by_instance_uuid``, which
  the config drive's ``InstanceMetadata`` calls, returns the instance's one
  block device mapping (the image on the local root disk), as the database
  would after a boot from image.
* **Neutron**: ``security_group_api.get_instance_security_groups``, also
  called by ``InstanceMetadata``, returns the ``default`` group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Iterator

from nova import objects
from nova.network import security_group_api
from nova.virt import images

from psdriver.sim import image_files


@dataclasses.dataclass(frozen=True)
class DemoImage:
    """The one Glance image of the demo."""

    id: str
    name: str
    virtual_size: int
    properties: dict[str, str]

    @functools.cached_property
    def data(self) -> bytes:
        return image_files.vhdx(self.virtual_size)

    def meta(self) -> dict[str, Any]:
        """The image as Glance describes it (what ``ImageMeta.from_dict`` takes)."""
        return {'id': self.id, 'name': self.name, 'disk_format': 'vhdx',
                'container_format': 'bare', 'status': 'active', 'visibility': 'public',
                'size': len(self.data), 'min_disk': 0, 'min_ram': 0,
                'properties': dict(self.properties)}


class GlanceStandIn:
    """The two calls of ``nova.image.glance.API`` that ``nova.virt.images`` makes."""

    def __init__(self, image: DemoImage) -> None:
        self._image = image
        #: Image ids downloaded, in order (the demo reports them).
        self.downloads: list[str] = []
        #: Image id -> (metadata, bytes) of what snapshots uploaded.
        self.uploads: dict[str, tuple[dict[str, Any], bytes]] = {}

    def update(self, context: Any, image_id: str, metadata: dict[str, Any], data: Any = None,
               purge_props: bool = True) -> dict[str, Any]:
        """A snapshot's upload: kept in memory."""
        content = b''.join(iter(lambda: data.read(1024 * 1024), b'')) if data is not None \
            else b''
        self.uploads[image_id] = (dict(metadata), content)
        return {'id': image_id, 'status': 'active', 'size': len(content), **metadata}

    def _known(self, image_id: str) -> DemoImage:
        if image_id != self._image.id:
            from nova import exception
            raise exception.ImageNotFound(image_id=image_id)
        return self._image

    def get(self, context: Any, image_id: str, **kwargs: Any) -> dict[str, Any]:
        return self._known(image_id).meta()

    def download(self, context: Any, image_id: str, data: Any = None, dest_path: str | None = None,
                 trusted_certs: Any = None) -> None:
        content = self._known(image_id).data
        self.downloads.append(image_id)
        if dest_path is None:
            raise ValueError('the demo Glance stand-in only downloads to a file')
        with open(dest_path, 'wb') as f:
            f.write(content)


def _root_bdm(instance_uuid: str, image_id: str) -> objects.BlockDeviceMapping:
    return objects.BlockDeviceMapping(
        instance_uuid=instance_uuid, source_type='image', destination_type='local',
        image_id=image_id, boot_index=0, device_name='/dev/sda', device_type='disk',
        delete_on_termination=True, no_device=False, guest_format=None, disk_bus=None,
        volume_id=None, snapshot_id=None, volume_size=None, tag=None)


@contextlib.contextmanager
def local_lookups(image: DemoImage) -> Iterator[GlanceStandIn]:
    """Answer Glance, the BDM query and the security-group query locally (see the module doc)."""
    glance = GlanceStandIn(image)
    bdm_list = objects.BlockDeviceMappingList

    def get_by_instance_uuid(cls: Any, context: Any, instance_uuid: str,
                             use_slave: bool = False) -> objects.BlockDeviceMappingList:
        return bdm_list(objects=[_root_bdm(instance_uuid, image.id)])

    def get_instance_security_groups(context: Any, instance: Any,
                                     detailed: bool = False) -> list[dict[str, Any]]:
        return [{'name': 'default'}]

    saved = (images.IMAGE_API, bdm_list.__dict__['get_by_instance_uuid'],
             security_group_api.get_instance_security_groups)
    images.IMAGE_API = glance
    bdm_list.get_by_instance_uuid = classmethod(get_by_instance_uuid)
    security_group_api.get_instance_security_groups = get_instance_security_groups
    try:
        yield glance
    finally:
        images.IMAGE_API = saved[0]
        bdm_list.get_by_instance_uuid = saved[1]
        security_group_api.get_instance_security_groups = saved[2]
