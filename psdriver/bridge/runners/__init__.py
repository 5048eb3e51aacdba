"""Runners execute a rendered :class:`ScriptCall` and return the raw envelope text.

A runner knows transports, never Nova.  It must:

* return the script's stdout (one JSON envelope) as ``str``;
* raise :class:`~psdriver.bridge.errors.BridgeTimeoutAfterStart` after
  ``call.timeout`` seconds once the script has started, having stopped the
  work (killed the process tree / stopped the pipeline and recycled the
  session), and plain :class:`~psdriver.bridge.errors.BridgeTimeout` only when
  the script never started;
* raise :class:`~psdriver.bridge.errors.BridgeTransportError` (or a subclass)
  when it cannot reach or start PowerShell, and
  :class:`~psdriver.bridge.errors.BridgeError` for a non-zero exit with no
  envelope, naming the script, the target and the stderr tail;
* never log ``call.document`` or secret parameters.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from psdriver.bridge.call import ScriptCall


@runtime_checkable
class Runner(Protocol):
    #: Human-readable target for error messages, e.g. ``local pwsh`` or
    #: ``psrp://hv01.example.com:5986``.
    target: str
    #: Render features this transport needs, merged into every render: the
    #: local runner asks for ``local_process`` (read the input document from
    #: stdin, set the console encoding, exit 0/1); PSRP asks for none.
    features: frozenset[str]

    def run(self, call: ScriptCall) -> str:
        """Run the call; return its stdout (the JSON envelope text)."""

    def close(self) -> None:
        """Release sessions and processes.  Safe to call twice."""
