"""Folders, volumes, switches and cached images on a simulated host.

The building blocks of :mod:`psdriver.sim.scenario` that need no script
simulation, so that handlers' prepare hooks can use them without importing
:mod:`psdriver.sim.scenario` (which spawns instances with New-Instance's
handler).
"""

from __future__ import annotations

import uuid

from psdriver.sim import paths
from psdriver.sim.host import SimHost
from psdriver.sim.state import GIB

#: Namespace of the instance UUIDs ``instance_uuid_for`` derives from VM names.
_UUID_NAMESPACE = uuid.UUID('6f0c2a1e-52b4-4d8f-9a51-3c7e0d9b2f64')


def instance_uuid_for(name: str) -> str:
    """A stable instance UUID for a VM name (examples name VMs, not UUIDs)."""
    return str(uuid.uuid5(_UUID_NAMESPACE, name.lower()))


def ensure_volume(host: SimHost, path: str, size_gb: float = 500) -> None:
    """The volume (drive or share) holding ``path`` exists."""
    root = paths.root(paths.normalize(path))
    if root.lower() not in host.state.volumes:
        host.add_volume(root, size_gb)


def ensure_folder(host: SimHost, path: str) -> str:
    """The folder (and its volume) exists; returns its normalised path."""
    ensure_volume(host, path)
    return host.make_dir(path).path


def ensure_switch(host: SimHost, name: str, switch_type: str = 'Private') -> None:
    if not any(s.name.lower() == name.lower() for s in host.list_switches()):
        host.add_switch(name, switch_type)


def add_image(host: SimHost, path: str, size: int = 1 * GIB) -> str:
    """A cached image: a dynamic disk of virtual ``size`` (or an ISO file of that size)."""
    norm = paths.normalize(path)
    ensure_folder(host, paths.parent(norm) or norm)
    if not host.exists(norm):
        if norm.lower().endswith('.iso'):
            host.add_file(norm, size)
        else:
            host.new_vhd(norm, size)
    return norm
