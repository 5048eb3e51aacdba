"""The simulated Hyper-V host.

Everything above the bridge is tested against it, and the demo runs on it::

    from psdriver.bridge.client import Bridge
    from psdriver.sim import SimHost, SimRunner

    host = SimHost()                               # or SimHost(state_file=path)
    bridge = Bridge(SimRunner(host))
    bridge.call('Get-HostInfo', {})

* :class:`SimHost`: the host's state and Hyper-V's rules (VMs and their state
  machine, disks and volumes, switches and NICs, controllers, iSCSI, SMB,
  cluster), optionally shared between processes through a state file, with
  ``host.faults`` for fault injection.
* :class:`SimRunner`: the in-process Runner.
* :func:`execute_rendered`: rendered script + document -> envelope text; what
  the out-of-process doubles call too.
* :func:`handler` / :func:`prepare`: register a script's simulation.
"""

from psdriver.sim.dispatch import STATE_ENV, execute_rendered, handler, prepare
from psdriver.sim.errors import SimError, SimHostDown, SimTimeout
from psdriver.sim.host import SimHost
from psdriver.sim.runner import SimRunner

__all__ = ['STATE_ENV', 'SimError', 'SimHost', 'SimHostDown', 'SimRunner', 'SimTimeout',
           'execute_rendered', 'handler', 'prepare']
