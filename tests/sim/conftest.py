"""Fixtures for the simulated host tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from psdriver.sim import SimHost, dispatch

GIB = 1024 ** 3
INSTANCES = 'C:\\OpenStack\\Instances'


@pytest.fixture
def host() -> SimHost:
    return SimHost()


@pytest.fixture
def script_dir(tmp_path, monkeypatch):
    """A private ps_scripts/ for dispatch tests; ``add(name, param_block)`` writes a script."""
    root = tmp_path / 'ps_scripts'
    root.mkdir()
    monkeypatch.setattr(dispatch, 'scripts_root', lambda: root)

    def add(name: str, param_block: str) -> Path:
        path = root / f'{name}.ps1'
        path.write_text('<#\n.SYNOPSIS\n    Test script.\n#>\n[CmdletBinding()]\n'
                        f'param(\n{param_block}\n)\nSet-StrictMode -Version Latest\n',
                        encoding='utf-8')
        return path

    return add


@pytest.fixture
def register():
    """Register a throw-away handler; removed again after the test."""
    names = []

    def reg(name, func, readonly=False, prepare=None):
        dispatch.handlers()  # load the real ones first
        dispatch.handler(name, readonly=readonly)(func)
        if prepare is not None:
            dispatch.prepare(name)(prepare)
        names.append(name)
        return func

    yield reg
    for name in names:
        dispatch.unregister(name)


def rendered(name: str) -> str:
    """The shape of a rendered wrapper as far as the simulator reads it."""
    return f'# psdriver-script: {name}\n[CmdletBinding()]\nparam([string]$PsDriverInput)\n'


def disk_vm(host: SimHost, name: str = 'vm1', generation: int = 2, size_gb: int = 10,
            **kwargs) -> str:
    """A VM with a dynamic root disk in its instance folder; returns the disk path."""
    folder = f'{INSTANCES}\\{name}'
    host.make_dir(folder)
    ext = 'vhdx'
    path = f'{folder}\\root.{ext}'
    host.new_vhd(path, size_gb * GIB)
    host.create_vm(name, generation=generation, path=folder, **kwargs)
    host.attach_disk(name, path)
    return path
