"""Shares of the simulated host served by a real SMB server (Samba in the tests).

``SimHost.attach_smb_server(r'\\\\127.0.0.1\\Instances', port)`` makes that share
real: a global mapping authenticates against the server with the user name
and password it is given (a wrong one is the server's refusal), and the
volume scripts see the disk files the server has (existence, VHD/VHDX
format and virtual size read from the file itself) instead of files the
test registered in the simulator.  The sessions live in this process
(smbprotocol's connection pool), the host's state only names the server.
"""

from __future__ import annotations

import threading
from typing import Any

from psdriver.sim.errors import CIM_EXCEPTION, SimError

_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()


def _server(share: str) -> str:
    return share.lstrip('\\').split('\\', 1)[0]


def login(share: str, port: int, username: str, password: str) -> None:
    """``New-SmbGlobalMapping -Credential``: a session with the server, or its refusal."""
    import smbclient
    from smbprotocol.exceptions import SMBException
    server = _server(share)
    with _LOCK:
        try:
            smbclient.register_session(server, username=username, password=password, port=port,
                                       connection_cache=_CACHE, auth_protocol='ntlm')
        except (SMBException, OSError, ValueError) as exc:
            raise SimError(f'The user name or password is incorrect. ({exc})',
                           'AuthenticationError', 'Windows System Error 1326', CIM_EXCEPTION,
                           share) from None


def logout(share: str, port: int) -> None:
    import smbclient
    with _LOCK:
        try:
            smbclient.delete_session(_server(share), port=port, connection_cache=_CACHE)
        except Exception:   # noqa: BLE001  a session already gone is what we want
            pass


def inspect(path: str, port: int) -> dict[str, Any] | None:
    """Size, format and virtual size of a disk file on the share; None when it is missing.

    Reading needs a session (a global mapping): without one the server
    refuses, as it refuses the Hyper-V host's own account.
    """
    import smbclient
    from smbprotocol.exceptions import SMBException, SMBOSError

    with _LOCK:
        try:
            size = smbclient.stat(path, port=port, connection_cache=_CACHE).st_size
            with smbclient.open_file(path, mode='rb', port=port,
                                     connection_cache=_CACHE) as f:
                info = _disk_file_info(f, size)
        except FileNotFoundError:
            return None
        except SMBOSError as exc:
            if exc.errno == 2:
                return None
            raise SimError(f"Access to '{path}' is denied: {exc}", 'PermissionDenied',
                           'AccessDenied', CIM_EXCEPTION, path) from None
        except (SMBException, OSError, ValueError) as exc:
            raise SimError(f"Access to '{path}' is denied: {exc}", 'PermissionDenied',
                           'AccessDenied', CIM_EXCEPTION, path) from None
        except NotADiskFile as exc:
            raise SimError(f"The file '{path}' is not a virtual hard disk file: {exc}",
                           'InvalidData', 'NotAVirtualHardDisk', target=path) from None
    return {'size': size, **info}


class NotADiskFile(Exception):
    """The file on the share is neither a VHD nor a VHDX."""


#: VHD footer disk types (the footer's 4 bytes at offset 60).
_VHD_TYPES = {2: 'Fixed', 3: 'Dynamic', 4: 'Differencing'}


def _disk_file_info(f: Any, size: int) -> dict[str, Any]:
    """Format, virtual size and type of a VHD/VHDX file read from a stream.

    oslo.utils' format inspector (what nova checks images with) tells the format
    and virtual size; a VHD's type is in its footer. The VHDX type is not read
    (only the VHD files of these tests are fixed): a VHDX counts as Dynamic.
    Raises :class:`NotADiskFile` for anything else.
    """
    from oslo_utils.imageutils import format_inspector

    wrapper = format_inspector.InspectWrapper(f)
    while wrapper.read(1 << 16):
        pass
    wrapper.close()
    found = wrapper.format
    name = str(found)
    if name == 'vhdx':
        return {'format': 'VHDX', 'virtual_size': found.virtual_size, 'vhd_type': 'Dynamic'}
    f.seek(size - 512)
    footer = f.read(512)
    if footer[:8] != b'conectix':
        f.seek(0)
        footer = f.read(512)
    if footer[:8] != b'conectix':
        raise NotADiskFile(f'it is a {name} file, not a VHD or VHDX')
    disk_type = _VHD_TYPES.get(int.from_bytes(footer[60:64], 'big'))
    if disk_type is None:
        raise NotADiskFile('its VHD footer names no known disk type')
    return {'format': 'VHD', 'virtual_size': int.from_bytes(footer[48:56], 'big'),
            'vhd_type': disk_type}
