"""Windows path handling for the simulated file system (case-insensitive keys)."""

from __future__ import annotations

import ntpath
from typing import Iterable

from psdriver.sim.errors import invalid_argument


def normalize(path: str) -> str:
    """Absolute Windows path, backslashes, no trailing separator except at a root.

    ``C:/a//b\\`` -> ``C:\\a\\b``; ``\\\\srv\\share\\x`` stays UNC.  Relative
    paths are rejected the way PowerShell rejects them for Hyper-V cmdlets.
    """
    if not isinstance(path, str) or not path.strip():
        raise invalid_argument('The path is empty.', str(path))
    if '\0' in path:
        raise invalid_argument('Illegal characters in path.', path)
    norm = ntpath.normpath(path.replace('/', '\\'))
    drive, rest = ntpath.splitdrive(norm)
    if not drive or not rest.startswith('\\') and rest:
        raise invalid_argument(f"The path '{path}' is not an absolute path.", path)
    if drive.startswith('\\\\') and drive.count('\\') < 3:
        raise invalid_argument(f"The path '{path}' is not a valid UNC path.", path)
    if len(drive) == 2:
        norm = drive.upper() + norm[2:]
        drive = drive.upper()
    if not rest or rest == '\\':
        return drive + '\\'
    return norm.rstrip('\\')


def key(path: str) -> str:
    """Lookup key of an already normalised path."""
    return path.lower()


def root(path: str) -> str:
    """The volume of a normalised path: ``C:`` or ``\\\\server\\share``."""
    drive = ntpath.splitdrive(path)[0]
    return drive.upper() if len(drive) == 2 else drive


def parent(path: str) -> str | None:
    """Parent directory of a normalised path, ``None`` for a volume root."""
    if is_root(path):
        return None
    return normalize(ntpath.dirname(path))


def is_root(path: str) -> bool:
    drive, rest = ntpath.splitdrive(path)
    return rest in ('', '\\')


def join(*parts: str) -> str:
    return normalize(ntpath.join(*parts))


def basename(path: str) -> str:
    return ntpath.basename(path)


def is_under(path_key: str, dir_key: str) -> bool:
    """Whether the file key lies strictly below the directory key."""
    prefix = dir_key if dir_key.endswith('\\') else dir_key + '\\'
    return path_key.startswith(prefix) and path_key != dir_key


def volume_key(volume_keys: Iterable[str], path: str) -> str:
    """Key of the volume holding a normalised path.

    A drive letter or a UNC share is a volume; a volume mounted in a folder
    (a Cluster Shared Volume, ``C:\\ClusterStorage\\Volume1``) wins over the
    drive it sits on.
    """
    path_key = key(path)
    best = root(path).lower()
    for k in volume_keys:
        if len(k) > len(best) and (path_key == k or is_under(path_key, k)):
            best = k
    return best
