"""Ready-made host set-ups for prepare hooks, tests and demos.

They build state the way the scripts would (an instance is spawned with the
New-Instance simulation itself), so what a test starts from is what the
driver would have left on a real host::

    host = SimHost()
    add_image(host, r'C:\\OpenStack\\Instances\\_base\\cirros.vhdx', 1 * GIB)
    add_instance(host, 'instance-00000001', image=r'C:\\OpenStack\\Instances\\_base\\cirros.vhdx')
    host.write_console('instance-00000001', 'hello from the guest')
"""

from __future__ import annotations

from typing import Any

from psdriver.sim import paths
from psdriver.sim.handlers.spawn import spawn
from psdriver.sim.host import SimHost
from psdriver.sim.layout import (  # noqa: F401 (re-exported: the scenario toolbox)
    add_image, ensure_folder, ensure_switch, ensure_volume, instance_uuid_for)
from psdriver.sim.state import GIB


def add_instance(host: SimHost, name: str, *, instance_uuid: str | None = None,
                 instance_dir: str | None = None, generation: int = 2,
                 image: str | None = None, image_size: int = 1 * GIB, root_gb: int = 10,
                 vcpus: int = 1, memory_mb: int = 1024, power_on: bool = True,
                 nics: list[dict[str, Any]] | None = None, console: bool = True,
                 config_drive: bool = False, **spec: Any) -> dict[str, Any]:
    """Spawn an instance with New-Instance's simulation; returns its result.

    By default: generation 2, a differencing root disk over a 1 GiB image in
    the image cache (created if missing), COM1 on the ``<uuid>_ro`` pipe as
    the driver sets it, an ISO config drive if ``config_drive``.
    """
    uuid_text = instance_uuid or instance_uuid_for(name)
    folder = instance_dir or paths.join(host.config.instances_path, name)
    ensure_folder(host, paths.parent(paths.normalize(folder)) or folder)
    fmt = 'vhd' if generation == 1 and image and image.lower().endswith('.vhd') else 'vhdx'
    if image is None:
        image = paths.join(host.config.instances_path, '_base', f'image-{fmt}.{fmt}')
    add_image(host, image, image_size)
    full: dict[str, Any] = {
        'name': name, 'instance_uuid': uuid_text, 'instance_dir': folder,
        'generation': generation, 'vcpus': vcpus, 'memory_mb': memory_mb,
        'root_disk': {'source': image, 'cow': True, 'format': fmt,
                      'size_gb': root_gb if not fmt == 'vhd' else None},
        'nics': nics or [],
        'serial_ports': [{'port': 1, 'pipe': f'{uuid_text}_ro'}] if console else [],
        'power_on': power_on,
    }
    if config_drive:
        full['config_drive'] = {'content_base64': 'Q0QwMDEgY29uZmlnLTI=', 'format': 'iso',
                                'as_dvd': True}
    full.update(spec)
    return spawn(host, full)
