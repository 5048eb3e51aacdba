"""Repeatable measurements of psdriver; ``python benchmarks/run_all.py`` runs them all."""

import os

# nova-compute 34 runs with native threads: keep nova's modules from loading eventlet
# (set before anything imports nova, as tests/conftest.py does for the tests).
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

from nova import monkey_patch  # noqa: E402

monkey_patch.patch()
