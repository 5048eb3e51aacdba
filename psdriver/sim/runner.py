"""``SimRunner``: the Runner protocol against a simulated host, in-process.

It takes the same path as the out-of-process doubles (``execute_rendered``
on the rendered text and the encoded document) and maps a host that is down
to a transport error and an over-long call to a timeout, as the real
runners do.
"""

from __future__ import annotations

import ntpath
import os
import uuid
from typing import Any

from psdriver.bridge.call import ScriptCall
from psdriver.bridge.errors import BridgeTimeout, BridgeTransportError, BridgeUnavailable
from psdriver.sim.dispatch import execute_rendered
from psdriver.sim.errors import SimError, SimHostDown, SimTimeout
from psdriver.sim.host import SimHost
from psdriver.sim.state import VhdInfo


class SimRunner:
    features: frozenset[str] = frozenset()

    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.target = f'sim://{host.hostname}'
        #: Calls made through this runner (tests count round trips with it).
        self.calls = 0

    def run(self, call: ScriptCall) -> str:
        self.calls += 1
        try:
            return execute_rendered(call.text, call.document, self.host, timeout=call.timeout)
        except SimHostDown as exc:
            raise BridgeTransportError(call.name, self.target,
                                       f'cannot connect to the host: {exc}') from None
        except SimTimeout:
            raise BridgeTimeout(call.name, self.target,
                                f'no result within {call.timeout:g}s; the call was '
                                'stopped') from None

    def close(self) -> None:
        """Nothing to release: the host lives on (other runners may share it)."""

    def put_file(self, host_path: str, facts: dict[str, Any]) -> bool:
        """Register a finished image download on the host (``[powershell] transport = sim``).

        ``facts``: ``format`` (vhd, vhdx, iso), ``virtual_size_bytes``,
        ``file_size_bytes``, ``vhd_type``; the bytes themselves are dropped.
        Returns False when a file is already at ``host_path`` (kept).
        Raises :class:`BridgeTransportError` when the host refuses.
        """
        return put_image_file(self.host, self.target, host_path, facts)

    def read_file(self, host_path: str) -> bytes:
        """The bytes of a disk file the host made (a snapshot image), for the way back.

        The simulated host keeps no disk content: this is a blank VHD/VHDX of
        the same format and virtual size, which Glance and a later spawn take
        as that image.
        """
        from psdriver.sim import image_files
        try:
            entry = self.host.get_vhd(host_path)
        except SimError as exc:
            raise BridgeTransportError('file download', self.target, exc.message) from None
        if entry.vhd.format == 'VHDX':
            return image_files.vhdx(entry.vhd.size)
        return image_files.dynamic_vhd(entry.vhd.size)

    def write_file(self, host_path: str, data: bytes) -> None:
        """Write a small file over the share (shielding data), creating its folder."""
        try:
            with self.host.transaction(write=True):
                self.host.make_dir(ntpath.dirname(host_path))
                self.host.write_file(host_path, data, keep_content=True)
        except SimError as exc:
            raise BridgeTransportError('file upload', self.target, exc.message) from None

    def remove_file(self, host_path: str) -> None:
        """Delete a file over the share; a file already gone is fine."""
        try:
            with self.host.transaction(write=True):
                if self.host.exists(host_path):
                    self.host.remove_item(host_path)
        except SimError as exc:
            raise BridgeTransportError('file removal', self.target, exc.message) from None

    def copy_files_to(self, host_paths: list[str], target: str) -> int:
        """Copy files of this host into ``target``, a UNC folder of another host of its fabric.

        What the management node does over SMB; returns the bytes copied.
        """
        from psdriver.sim.fabric import fabric_of
        fabric = fabric_of(self.host)
        if fabric is None:
            raise BridgeTransportError('file copy', self.target,
                                       'the simulated host shares no fabric with other hosts')
        copied = 0
        try:
            fabric.make_dir(self.host, target)
            for path in host_paths:
                entry = fabric.copy_file(self.host, path, self.host,
                                         ntpath.join(target, ntpath.basename(path)),
                                         overwrite=True)
                copied += entry.size
        except SimError as exc:
            raise BridgeTransportError('file copy', self.target, exc.message) from None
        return copied


def put_image_file(host: SimHost, target: str, host_path: str, facts: dict[str, Any]) -> bool:
    vhd = None
    if facts['format'] in ('vhd', 'vhdx'):
        vhd = VhdInfo(format=facts['format'].upper(), vhd_type=facts.get('vhd_type') or 'Dynamic',
                      size=facts['virtual_size_bytes'], disk_identifier=str(uuid.uuid4()).upper())
        stem = ntpath.splitext(ntpath.basename(host_path))[0].lower()
        signature = {k.lower(): v for k, v in host.config.template_disk_images.items()}.get(stem)
        if signature and vhd.format == 'VHDX':
            vhd.template_signature = dict(signature)
    try:
        with host.transaction(write=True):
            if host.exists(host_path):
                return False
            host.make_dir(ntpath.dirname(host_path))
            host.add_file(host_path, facts['file_size_bytes'], vhd=vhd)
    except SimError as exc:
        raise BridgeTransportError('image upload', target, exc.message) from None
    return True


def make_runner(*, state_file: str | None = None, hostname: str | None = None) -> SimRunner:
    """The ``psdriver.transports`` entry point ``sim``: a runner on a new simulated host."""
    if state_file:
        folder = os.path.dirname(os.path.abspath(state_file))
        if not os.path.isdir(folder):
            raise BridgeUnavailable('init_host', 'sim',
                                    f'[powershell] sim_state_file {state_file}: the folder '
                                    f'{folder} does not exist')
    capacity = {'hostname': hostname} if hostname else {}
    return SimRunner(SimHost(state_file=state_file, **capacity))
