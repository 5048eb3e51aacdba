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

    # Imported here: the image inspection lives with nova's code, which a
    # stand-in pwsh process must not pay for on every start.
    from psdriver.ops.imagecache import ImageFormatError, inspect_image_stream
    with _LOCK:
        try:
            size = smbclient.stat(path, port=port, connection_cache=_CACHE).st_size
            with smbclient.open_file(path, mode='rb', port=port,
                                     connection_cache=_CACHE) as f:
                info = inspect_image_stream(f, size)
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
        except ImageFormatError as exc:
            raise SimError(f"The file '{path}' is not a virtual hard disk file: {exc}",
                           'InvalidData', 'NotAVirtualHardDisk', target=path) from None
    return {'size': size, 'format': info.format.upper(), 'virtual_size': info.virtual_size_bytes,
            'vhd_type': info.vhd_type or 'Fixed'}
