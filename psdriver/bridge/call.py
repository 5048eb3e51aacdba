"""The plain request a runner executes: one rendered script plus its values."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any


#: Name of the single parameter of every rendered (wrapped) script.  It carries
#: all caller values as base64 of UTF-8 JSON; see ps_scripts/Invoke-PsDriverScript.ps1.j2.
INPUT_PARAMETER = 'PsDriverInput'


def encode_document(params: dict[str, Any]) -> str:
    """Encode the parameters as the one document the wrapper decodes.

    base64 keeps NUL, lone surrogate-free non-BMP text, newlines and every
    quote character inert on any transport (stdin, PSRP, command line).
    """
    raw = json.dumps(params, ensure_ascii=False, separators=(',', ':'),
                     allow_nan=False).encode('utf-8')
    return base64.b64encode(raw).decode('ascii')


def decode_document(document: str) -> dict[str, Any]:
    """Inverse of :func:`encode_document` (used by the simulator and tests)."""
    return json.loads(base64.b64decode(document.encode('ascii')).decode('utf-8'))


@dataclasses.dataclass(frozen=True)
class ScriptCall:
    """One invocation: what a runner needs and nothing Nova-specific.

    ``text`` is the rendered wrapper (structure only); ``document`` is the
    encoded values.  ``params`` is kept for the simulator and for logging
    (through :meth:`loggable_params`, which hides secrets).
    """

    name: str
    text: str
    params: dict[str, Any]
    document: str
    timeout: float
    secret_params: frozenset[str] = frozenset()

    def loggable_params(self) -> dict[str, Any]:
        return {k: ('***' if k in self.secret_params else v)
                for k, v in self.params.items()}
