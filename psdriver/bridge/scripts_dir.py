"""Where ps_scripts/ lives: the source checkout or the installed package."""

from __future__ import annotations

import functools
from pathlib import Path

import psdriver


@functools.lru_cache(maxsize=None)
def scripts_dir() -> Path:
    here = Path(psdriver.__file__).resolve().parent
    for candidate in (here / 'ps_scripts', here.parent / 'ps_scripts'):
        if (candidate / 'PsDriver.psm1').is_file():
            return candidate
    raise FileNotFoundError('ps_scripts/ not found next to the psdriver package')
