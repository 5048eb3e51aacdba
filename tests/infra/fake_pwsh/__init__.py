"""A stand-in ``pwsh`` executable for testing the local runner without PowerShell.

Put this directory first on PATH: the executable file ``pwsh`` in it runs
:func:`tests.infra.fake_pwsh.stand_in.main`.  See ``stand_in.py`` for the
conventions it enforces and its test knobs.
"""

import os

#: Directory holding the ``pwsh`` launcher (put it first on PATH).
BIN_DIR = os.path.dirname(os.path.abspath(__file__))
