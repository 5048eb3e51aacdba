"""What a test needs from the machine, and what happens when it is missing.

One rule for every test: a missing tool (etcd, smbd, qemu-img, ...) or other
prerequisite skips the test with a message saying how to get it, except
under ``CI=true``: CI installs everything (see ``.ci/run``), so a missing one
there is a broken set-up and fails the test instead of hiding it.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """``CI`` set to true (any case), 1 or yes: the one reading of it."""
    return os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')


def missing(message: str) -> NoReturn:
    """Skip with ``message``; under CI, fail with it."""
    if in_ci():
        pytest.fail(f'CI=true and {message}', pytrace=False)
    pytest.skip(message)


def require_tool(name: str, debian_package: str, candidates: tuple[str, ...] = ()) -> str:
    """Path of the program ``name`` (on PATH or one of ``candidates``), or :func:`missing`."""
    for path in (*candidates, shutil.which(name)):
        if path and os.access(path, os.X_OK):
            return path
    missing(f'{name} not found; install it with: '
            f'apt-get install -y --no-install-recommends {debian_package}')
