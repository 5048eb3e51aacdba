"""What a host runspace does with the bridge's loader, for the test doubles.

The PSRP transports send :func:`psdriver.bridge.call.loader_text` with the
script's hash, and the whole wrapped script only when the runspace may not
know it.  A real runspace runs the loader; the doubles (the WS-Man endpoint,
the stand-in ``pwsh -s``) use :class:`RunspaceScripts` to do the same on the
simulated host: check the hash of a sent text, keep it, and answer
``UNKNOWN`` for a hash they do not hold.
"""

from __future__ import annotations

import threading
from typing import Any

from psdriver.bridge.call import (
    HASH_PARAMETER, INPUT_PARAMETER, TEXT_PARAMETER, UNKNOWN, loader_text, script_digest,
)


class LoaderError(ValueError):
    """The pipeline is not the bridge's loader, or its text does not match its hash."""


class RunspaceScripts:
    """The script blocks one runspace has parsed, by SHA-256 of their text."""

    def __init__(self) -> None:
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()
        #: Number of full script texts received (tests count them).
        self.defined = 0

    def resolve(self, script: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """(wrapped text, parameters) to run, or None when the loader would print UNKNOWN.

        A pipeline without the hash parameter is a plain wrapped script and
        runs as it is.
        """
        if HASH_PARAMETER not in params:
            return script, params
        first = script.split('\n', 1)[0]
        name = first.removeprefix('# psdriver-script: ').strip()
        if script != loader_text(name):
            raise LoaderError(f'a pipeline with {HASH_PARAMETER} is not the bridge loader')
        unknown = set(params) - {INPUT_PARAMETER, HASH_PARAMETER, TEXT_PARAMETER}
        if unknown:
            raise LoaderError(f'the loader has no parameter(s) {sorted(unknown)}')
        digest = str(params[HASH_PARAMETER])
        text = params.get(TEXT_PARAMETER) or ''
        with self._lock:
            if text:
                if script_digest(text) != digest:
                    raise LoaderError('psdriver: the script does not match its SHA-256')
                self._known[digest] = text
                self.defined += 1
            known = self._known.get(digest)
        if known is None:
            return None
        return known, {INPUT_PARAMETER: params.get(INPUT_PARAMETER, '')}

    def forget(self) -> None:
        """Forget every script, as a new runspace would."""
        with self._lock:
            self._known.clear()


__all__ = ['LoaderError', 'RunspaceScripts', 'UNKNOWN']
