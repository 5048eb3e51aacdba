"""How a downloaded image file reaches the image cache folder of the Hyper-V host.

Glance downloads land on the machine that runs nova-compute; the image cache
lives on the Hyper-V host.  ``[powershell] transport`` decides the way between:

``local``
    nova-compute runs on the Hyper-V host: the download is written straight
    into the cache folder under a temporary name and renamed into place.
``psrp``
    nova-compute runs elsewhere: the download goes to a local staging file,
    which is copied over SMB to ``\\\\<psrp_host>\\<[hyperv] instances_path_share>``
    (with the PSRP credentials) under a temporary name and renamed into place.
    An ``instances_path`` that is itself a UNC path is written to directly.
``sim``
    the runner takes the file's facts (format, virtual size) and registers
    the file in the simulated host's storage; the downloaded bytes are dropped.

Either way a file never carries its final cache name before it is complete.
Temporary names are ``<stem>.partial-<random>``: no image extension, so the
cache listing (Get-CachedImage) never mistakes one for an image.  Left-overs
of a crash are removed the next time the same image is downloaded.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import errno
import io
import ntpath
import os
import shutil
import tempfile
import threading
import uuid
from typing import Any, BinaryIO, Callable, Iterator

from nova import exception
from oslo_log import log as logging

from psdriver.bridge import errors as bridge_errors

LOG = logging.getLogger(__name__)

PARTIAL_MARK = '.partial-'
#: Bytes per SMB write; large writes keep a multi-GB copy at wire speed.
SMB_CHUNK = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ImageFileInfo:
    """What the format inspection found in a downloaded image file."""

    format: str                    # vhd | vhdx | iso
    virtual_size_bytes: int
    file_size_bytes: int
    vhd_type: str | None = None    # Fixed | Dynamic; None for an iso


class ImageTransferError(exception.NovaException):
    msg_fmt = 'Cannot put the image file %(path)s on the Hyper-V host: %(reason)s'


def partial_name(stem: str) -> str:
    """A fresh temporary file name for ``stem`` (see the module doc)."""
    return f'{stem}{PARTIAL_MARK}{uuid.uuid4().hex[:12]}'


def _is_partial_of(name: str, stem: str) -> bool:
    return name.lower().startswith((stem + PARTIAL_MARK).lower())


def peer_unc(server: str, share: str, instances_path: str, host_path: str) -> str:
    """``host_path`` (under ``instances_path``) of another Hyper-V host, as a UNC path.

    ``share`` is ``[hyperv] instances_path_share`` (the same on every host, as
    compute-hyperv assumed); empty means the administrative share of the
    drive (``\\\\server\\C$\\...``), as compute-hyperv used.
    """
    norm = ntpath.normpath(host_path.replace('/', '\\'))
    if norm.startswith('\\\\'):
        return norm                    # shared storage: the same path everywhere
    share = (share or '').strip().strip('\\/')
    if not share:
        drive, rest = ntpath.splitdrive(norm)
        return f'\\\\{server}\\{drive[0].upper()}$' + rest
    base = ntpath.normpath(instances_path.replace('/', '\\')).rstrip('\\')
    if norm.lower() != base.lower() and not norm.lower().startswith(base.lower() + '\\'):
        raise ImageTransferError(path=host_path, reason=f'it is not under instances_path {base}')
    rest = norm[len(base):].lstrip('\\')
    root = f'\\\\{server}\\{share.split(chr(92))[-1]}'
    return ntpath.join(root, rest) if rest else root


class HostFiles(abc.ABC):
    """Moves finished downloads into the host's image cache folder."""

    #: Path flavour of host paths; the cache builds its paths with it.
    path: Any = ntpath
    #: ``[hyperv] instances_path_share`` and ``instances_path`` (for copies to peers).
    share: str = ''
    instances_path: str = ''

    @abc.abstractmethod
    def stage(self, host_dir: str, stem: str) -> str:
        """A new local path to download the image ``stem`` into.

        Call it holding the image's lock: stale temporary files of ``stem``
        are removed.
        """

    @abc.abstractmethod
    def publish(self, staged: str, host_path: str, info: ImageFileInfo) -> None:
        """Make the complete file ``staged`` appear on the host at ``host_path``.

        A file already at ``host_path`` (put there by another compute service
        sharing the folder) is kept and the staged one dropped.
        """

    def discard(self, staged: str) -> None:
        """Remove the staged file if it is still there (after a failure)."""
        try:
            os.unlink(staged)
        except FileNotFoundError:
            pass
        except OSError as exc:
            LOG.warning('Cannot remove the temporary image file %s: %s', staged, exc)

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections (SMB sessions)."""

    # -- the way back: files the host made (snapshot images) ---------------------------

    @abc.abstractmethod
    def open_read(self, host_path: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Read a file of the host (an image the host wrote) from this machine."""

    @abc.abstractmethod
    def remove(self, host_path: str) -> None:
        """Delete a file of the host; a file already gone is fine."""

    @abc.abstractmethod
    def write_bytes(self, host_path: str, data: bytes) -> None:
        """Put a small file (shielding data) on the host, creating its folder.

        The file appears complete or not at all (written under a temporary
        name, then renamed over any file of that name).  Its content is
        never logged.
        """

    @abc.abstractmethod
    def copy_to_peer(self, host_paths: list[str], peer: str, peer_folder: str) -> int:
        """Copy files of this host into ``peer_folder`` of the Hyper-V host ``peer``.

        ``peer_folder`` is a path as ``peer`` sees it (under its
        instances_path); the files go over SMB to ``peer``'s
        ``instances_path_share``.  Returns the bytes copied.
        """


class LocalFiles(HostFiles):
    """nova-compute runs on the Hyper-V host: host paths are local paths."""

    path = os.path

    def stage(self, host_dir: str, stem: str) -> str:
        try:
            os.makedirs(host_dir, exist_ok=True)
            with os.scandir(host_dir) as entries:
                stale = [e.path for e in entries if e.is_file() and _is_partial_of(e.name, stem)]
        except OSError as exc:
            raise ImageTransferError(path=host_dir, reason=str(exc)) from exc
        for path in stale:
            LOG.info('Removing the left-over partial image file %s', path)
            self.discard(path)
        return os.path.join(host_dir, partial_name(stem))

    def publish(self, staged: str, host_path: str, info: ImageFileInfo) -> None:
        if os.path.exists(host_path):
            LOG.info('%s appeared meanwhile; keeping it', host_path)
            self.discard(staged)
            return
        try:
            os.replace(staged, host_path)
        except OSError as exc:
            raise ImageTransferError(path=host_path, reason=str(exc)) from exc


    def open_read(self, host_path: str) -> contextlib.AbstractContextManager[BinaryIO]:
        try:
            return open(host_path, 'rb')
        except OSError as exc:
            raise ImageTransferError(path=host_path, reason=str(exc)) from exc

    def remove(self, host_path: str) -> None:
        self.discard(host_path)

    def write_bytes(self, host_path: str, data: bytes) -> None:
        directory = os.path.dirname(host_path)
        temp = os.path.join(directory, partial_name(os.path.basename(host_path)))
        try:
            os.makedirs(directory, exist_ok=True)
            with open(temp, 'wb') as handle:
                handle.write(data)
            os.replace(temp, host_path)
        except OSError as exc:
            self.discard(temp)
            raise ImageTransferError(path=host_path, reason=str(exc)) from exc

    def copy_to_peer(self, host_paths: list[str], peer: str, peer_folder: str) -> int:
        """nova-compute runs on the Hyper-V host: a Windows SMB copy to the peer's share."""
        target = peer_unc(peer, self.share, self.instances_path, peer_folder)
        copied = 0
        try:
            os.makedirs(target, exist_ok=True)
            for path in host_paths:
                shutil.copyfile(path, ntpath.join(target, ntpath.basename(path)))
                copied += os.path.getsize(path)
        except OSError as exc:
            raise ImageTransferError(path=target, reason=str(exc)) from exc
        return copied


class _StagedLocally(HostFiles):
    """Downloads go to a local staging folder first (the host is elsewhere)."""

    def __init__(self, staging_dir: str | None = None) -> None:
        self._staging_dir = staging_dir

    def stage(self, host_dir: str, stem: str) -> str:
        directory = self._staging_dir or tempfile.gettempdir()
        os.makedirs(directory, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f'psdriver-{stem}{PARTIAL_MARK}', dir=directory)
        os.close(fd)
        return path


class RunnerFiles(_StagedLocally):
    """A transport that takes files itself (``transport = sim``): hand it the file's facts.

    ``put_file(host_path, facts) -> bool`` is the runner's: it records the file
    (with its format and virtual size; the bytes are not needed) and returns
    False when a file is already there.  It raises a bridge error when the
    host refuses.
    """

    def __init__(self, put_file: Callable[[str, dict[str, Any]], bool],
                 staging_dir: str | None = None, runner: Any = None) -> None:
        super().__init__(staging_dir)
        self._put_file = put_file
        #: The runner's ``read_file``, ``remove_file`` and ``copy_file_to`` (the way back).
        self._runner = runner

    def publish(self, staged: str, host_path: str, info: ImageFileInfo) -> None:
        try:
            if not self._put_file(host_path, dataclasses.asdict(info)):
                LOG.info('%s appeared meanwhile; keeping it', host_path)
        except bridge_errors.BridgeError as exc:
            raise ImageTransferError(path=host_path, reason=exc.reason) from exc
        finally:
            self.discard(staged)

    def _runner_call(self, name: str, path: str, *args: Any) -> Any:
        method = getattr(self._runner, name, None)
        if method is None:
            raise ImageTransferError(path=path, reason=f'the runner has no {name}')
        try:
            return method(*args)
        except bridge_errors.BridgeError as exc:
            raise ImageTransferError(path=path, reason=exc.reason) from exc

    @contextlib.contextmanager
    def open_read(self, host_path: str) -> Iterator[BinaryIO]:
        yield io.BytesIO(self._runner_call('read_file', host_path, host_path))

    def remove(self, host_path: str) -> None:
        self._runner_call('remove_file', host_path, host_path)

    def write_bytes(self, host_path: str, data: bytes) -> None:
        self._runner_call('write_file', host_path, host_path, data)

    def copy_to_peer(self, host_paths: list[str], peer: str, peer_folder: str) -> int:
        """Through the management node: this host's share to the peer's."""
        target = peer_unc(peer, self.share, self.instances_path, peer_folder)
        return self._runner_call('copy_files_to', target, host_paths, target)


class SmbFiles(_StagedLocally):
    """A remote host: copy over SMB into the share that exposes instances_path.

    :param server: the Hyper-V host (``[powershell] psrp_host``).
    :param share: ``[hyperv] instances_path_share``: the share name (``Instances``)
        or a UNC root (``\\\\server\\Instances``) exposing ``instances_path``.
    :param instances_path: ``instances_path`` as the host sees it.
    :param port: SMB port; tests use another one (UNC paths carry none).
    """

    def __init__(self, server: str, share: str, instances_path: str, *,
                 username: str | None = None, password: str | None = None,
                 auth_protocol: str = 'negotiate', port: int = 445,
                 connection_timeout: int = 60, staging_dir: str | None = None) -> None:
        super().__init__(staging_dir)
        self._server = server
        self._share = (share or '').strip().strip('\\/')
        self._instances_path = instances_path
        self._username = username
        self._password = password
        self._auth_protocol = auth_protocol
        self._port = port
        self._connection_timeout = connection_timeout
        self._cache: dict[str, Any] = {}
        self._session_lock = threading.Lock()
        self._registered = False

    def unc_path(self, host_path: str) -> str:
        """The UNC path through which this machine reaches ``host_path``."""
        norm = ntpath.normpath(host_path.replace('/', '\\'))
        if norm.startswith('\\\\'):
            return norm
        if not self._share:
            raise ImageTransferError(
                path=host_path,
                reason='[hyperv] instances_path_share is empty. With [powershell] transport = '
                       'psrp, images are copied to the Hyper-V host over SMB: share '
                       'instances_path on the host (for example New-SmbShare -Name Instances '
                       f'-Path "{self._instances_path}" -FullAccess <psrp_username>) and set '
                       '[hyperv] instances_path_share = Instances')
        base = ntpath.normpath(self._instances_path.replace('/', '\\')).rstrip('\\')
        if norm.lower() != base.lower() and not norm.lower().startswith(base.lower() + '\\'):
            raise ImageTransferError(
                path=host_path, reason=f'it is not under instances_path {base}, which '
                                       f'[hyperv] instances_path_share exposes')
        rest = norm[len(base):].lstrip('\\')
        root = f'\\\\{self._share}' if '\\' in self._share else \
            f'\\\\{self._server}\\{self._share}'
        return ntpath.join(root, rest) if rest else root

    def _kwargs(self) -> dict[str, Any]:
        return {'port': self._port, 'connection_cache': self._cache}

    def _register(self, unc: str) -> None:
        import smbclient

        with self._session_lock:
            if self._registered:
                return
            server = unc.lstrip('\\').split('\\', 1)[0]
            smbclient.register_session(
                server, username=self._username, password=self._password, port=self._port,
                connection_timeout=self._connection_timeout, connection_cache=self._cache,
                auth_protocol=self._auth_protocol)
            self._registered = True

    def publish(self, staged: str, host_path: str, info: ImageFileInfo) -> None:
        import smbclient
        from smbprotocol import exceptions as smb_exc

        unc = self.unc_path(host_path)
        directory, name = ntpath.split(unc)
        stem = name.rsplit('.', 1)[0]
        temp = ntpath.join(directory, partial_name(stem))
        kwargs = self._kwargs()
        writing = False
        try:
            self._register(unc)
            smbclient.makedirs(directory, exist_ok=True, **kwargs)
            self._remove_partials(directory, stem)
            if self._exists(unc):
                LOG.info('%s appeared meanwhile; keeping it', unc)
                return
            LOG.debug('Copying %s to %s', staged, temp)
            writing = True
            with open(staged, 'rb') as src, \
                    smbclient.open_file(temp, mode='wb', **kwargs) as dst:
                shutil.copyfileobj(src, dst, SMB_CHUNK)
            try:
                smbclient.rename(temp, unc, **kwargs)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                LOG.info('%s appeared meanwhile; keeping it', unc)
                self._remove_quietly(temp)
        except (OSError, smb_exc.SMBException, ValueError) as exc:
            if writing:
                self._remove_quietly(temp)
            # The message names the server and path, never the credentials.
            raise ImageTransferError(path=unc, reason=f'{type(exc).__name__}: {exc}') from None
        finally:
            self.discard(staged)

    def _exists(self, unc: str) -> bool:
        import smbclient

        try:
            smbclient.stat(unc, **self._kwargs())
        except OSError as exc:
            # smbprotocol's SMBOSError carries the errno but is no FileNotFoundError.
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def _remove_partials(self, directory: str, stem: str) -> None:
        import smbclient

        for entry in smbclient.scandir(directory, search_pattern=f'{stem}{PARTIAL_MARK}*',
                                       **self._kwargs()):
            if entry.is_file() and _is_partial_of(entry.name, stem):
                LOG.info('Removing the left-over partial image file %s', entry.path)
                self._remove_quietly(entry.path)

    def _remove_quietly(self, unc: str) -> None:
        import smbclient
        from smbprotocol import exceptions as smb_exc

        try:
            smbclient.remove(unc, **self._kwargs())
        except (OSError, smb_exc.SMBException, ValueError) as exc:
            if getattr(exc, 'errno', None) != errno.ENOENT:
                LOG.warning('Cannot remove %s: %s', unc, exc)

    @contextlib.contextmanager
    def open_read(self, host_path: str) -> Iterator[BinaryIO]:
        import smbclient
        from smbprotocol import exceptions as smb_exc

        unc = self.unc_path(host_path)
        try:
            self._register(unc)
            handle = smbclient.open_file(unc, mode='rb', **self._kwargs())
        except (OSError, smb_exc.SMBException, ValueError) as exc:
            raise ImageTransferError(path=unc, reason=f'{type(exc).__name__}: {exc}') from None
        with handle:
            yield handle

    def remove(self, host_path: str) -> None:
        self._register(self.unc_path(host_path))
        self._remove_quietly(self.unc_path(host_path))

    def write_bytes(self, host_path: str, data: bytes) -> None:
        import smbclient
        from smbprotocol import exceptions as smb_exc

        unc = self.unc_path(host_path)
        directory, name = ntpath.split(unc)
        temp = ntpath.join(directory, partial_name(name))
        kwargs = self._kwargs()
        try:
            self._register(unc)
            smbclient.makedirs(directory, exist_ok=True, **kwargs)
            with smbclient.open_file(temp, mode='wb', **kwargs) as handle:
                handle.write(data)
            if self._exists(unc):
                smbclient.remove(unc, **kwargs)
            smbclient.rename(temp, unc, **kwargs)
        except (OSError, smb_exc.SMBException, ValueError) as exc:
            self._remove_quietly(temp)
            raise ImageTransferError(path=unc, reason=f'{type(exc).__name__}: {exc}') from None

    def copy_to_peer(self, host_paths: list[str], peer: str, peer_folder: str) -> int:
        """Through this management node: read this host's share, write the peer's share.

        The same credentials open both (one service account that administers
        every Hyper-V host); no delegation between the hosts is needed.
        """
        import smbclient
        from smbprotocol import exceptions as smb_exc

        target = peer_unc(peer, self._share, self._instances_path, peer_folder)
        kwargs = self._kwargs()
        copied = 0
        try:
            smbclient.register_session(
                peer, username=self._username, password=self._password, port=self._port,
                connection_timeout=self._connection_timeout, connection_cache=self._cache,
                auth_protocol=self._auth_protocol)
            smbclient.makedirs(target, exist_ok=True, **kwargs)
            for path in host_paths:
                source = self.unc_path(path)
                self._register(source)
                with smbclient.open_file(source, mode='rb', **kwargs) as src, \
                        smbclient.open_file(ntpath.join(target, ntpath.basename(path)),
                                            mode='wb', **kwargs) as dst:
                    while True:
                        chunk = src.read(SMB_CHUNK)
                        if not chunk:
                            break
                        dst.write(chunk)
                        copied += len(chunk)
        except (OSError, smb_exc.SMBException, ValueError) as exc:
            raise ImageTransferError(path=target, reason=f'{type(exc).__name__}: {exc}') from None
        return copied

    def close(self) -> None:
        import smbclient

        with self._session_lock:
            if self._cache:
                smbclient.reset_connection_cache(fail_on_error=False,
                                                 connection_cache=self._cache)
            self._registered = False


_SMB_AUTH = {'ntlm': 'ntlm', 'kerberos': 'kerberos'}


def for_transport(conf: Any, bridge: Any) -> HostFiles:
    """The HostFiles of ``[powershell] transport``."""
    transport = conf.powershell.transport
    files: HostFiles | None = None
    if transport == 'local':
        files = LocalFiles()
    elif transport == 'sim':
        put_file = getattr(bridge.runner, 'put_file', None)
        if put_file is None:
            raise ValueError('[powershell] transport = sim: the runner takes no files')
        files = RunnerFiles(put_file, runner=bridge.runner)
    if files is not None:
        files.share = conf.hyperv.instances_path_share
        files.instances_path = conf.instances_path
        return files
    if transport == 'psrp':
        opts = conf.powershell
        return SmbFiles(opts.psrp_host, conf.hyperv.instances_path_share, conf.instances_path,
                        username=opts.psrp_username, password=opts.psrp_password,
                        auth_protocol=_SMB_AUTH.get(opts.psrp_auth, 'negotiate'),
                        connection_timeout=opts.psrp_connection_timeout)
    raise ValueError(f'unknown [powershell] transport {transport!r}')
