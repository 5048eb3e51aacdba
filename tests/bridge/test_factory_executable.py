"""[powershell] executable = auto: Windows PowerShell 5.1 where PowerShell 7 cannot use Hyper-V."""

from __future__ import annotations

import pytest

from psdriver.bridge.factory import local_executable


def _which(installed):
    return lambda name: f'C:\\bin\\{name}' if name in installed else None


@pytest.mark.parametrize('build, installed, expected', [
    (14393, {'pwsh', 'powershell.exe'}, 'powershell.exe'),   # Server 2016: never pwsh
    (17763, {'pwsh', 'powershell.exe'}, 'pwsh'),             # Server 2019: native
    (20348, {'powershell.exe'}, 'powershell.exe'),           # no PowerShell 7 installed
    (None, set(), 'pwsh'),                                   # not Windows
])
def test_auto_picks_the_powershell_the_host_needs(build, installed, expected):
    assert local_executable('auto', build, _which(installed)) == expected
    assert local_executable('AUTO', build, _which(installed)) == expected


def test_an_explicit_executable_is_kept():
    assert local_executable('pwsh', 14393, _which({'pwsh'})) == 'pwsh'
    assert local_executable('C:\\PS\\pwsh.exe', None) == 'C:\\PS\\pwsh.exe'
