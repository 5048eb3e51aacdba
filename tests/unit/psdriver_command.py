"""Run the ``psdriver`` command of this checkout in a child process.

``python -m psdriver.cli`` with the checkout first on ``PYTHONPATH`` (the
installed package may be older), from a directory of the test's choosing, so
no file of the checkout or of the caller's cwd is read by accident.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_psdriver(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH', '')) if p)
    env = dict(os.environ, PYTHONPATH=path, PYTHONDONTWRITEBYTECODE='1')
    return subprocess.run([sys.executable, '-m', 'psdriver.cli', *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
