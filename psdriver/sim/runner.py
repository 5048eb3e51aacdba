"""``SimRunner``: the Runner protocol against a simulated host, in-process.

It takes the same path as the out-of-process doubles (``execute_rendered``
on the rendered text and the encoded document) and maps a host that is down
to a transport error and an over-long call to a timeout, as the real
runners do.
"""

from __future__ import annotations

from psdriver.bridge.call import ScriptCall
from psdriver.bridge.errors import BridgeTimeout, BridgeTransportError
from psdriver.sim.dispatch import execute_rendered
from psdriver.sim.errors import SimHostDown, SimTimeout
from psdriver.sim.host import SimHost


class SimRunner:
    features: frozenset[str] = frozenset()

    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.target = f'sim://{host.hostname}'
        #: Calls made through this runner (tests count round trips with it).
        self.calls = 0

    def run(self, call: ScriptCall) -> str:
        self.calls += 1
        try:
            return execute_rendered(call.text, call.document, self.host, timeout=call.timeout)
        except SimHostDown as exc:
            raise BridgeTransportError(call.name, self.target,
                                       f'cannot connect to the host: {exc}') from None
        except SimTimeout:
            raise BridgeTimeout(call.name, self.target,
                                f'no result within {call.timeout:g}s; the call was '
                                'stopped') from None

    def close(self) -> None:
        """Nothing to release: the host lives on (other runners may share it)."""
