"""Test-wide set-up.

* nova-compute 34 runs with native threads; make nova's test packages do the same,
  and apply nova's concurrency set-up before any module can import eventlet (nova's
  functional harness refuses to start in threading mode once eventlet is loaded).
* Make the in-repo shims (nova/virt/psdriver, nova/virt/compute_hyperv) importable
  without installing: nova.virt is a regular package, so its __path__ is extended.
  The wheel-install test (tests/unit/test_driver_loading.py) checks the real install.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nova import monkey_patch  # noqa: E402

monkey_patch.patch()

import nova.virt  # noqa: E402

_shim_dir = str(REPO / 'nova' / 'virt')
if _shim_dir not in nova.virt.__path__:
    nova.virt.__path__.append(_shim_dir)


def pytest_configure(config):
    config.addinivalue_line('markers', 'etcd: needs a real etcd server (started by a fixture)')
    config.addinivalue_line('markers', 'functional: nova in-process functional harness')
    config.addinivalue_line('markers', 'slow: takes more than a few seconds')
