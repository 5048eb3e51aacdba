"""The plain request a runner executes: one rendered script plus its values."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import zlib
from typing import Any

from psdriver.bridge import errors

#: Name of the single parameter of every rendered (wrapped) script.  It carries
#: all caller values as one document; see :func:`encode_document`.
INPUT_PARAMETER = 'PsDriverInput'
#: A document whose JSON is longer than this (in UTF-8 bytes) is compressed.
COMPRESS_OVER = 16 * 1024
DEFLATE_PREFIX = 'deflate:'


class UnencodableValue(errors.BridgeParameterError):
    """A caller value cannot travel to the host (a lone surrogate is no Unicode text)."""


def document_json(params: dict[str, Any]) -> str:
    """The parameters as JSON text that is also valid XML 1.0 character data.

    U+FFFE and U+FFFF are valid in JSON but not in XML (PSRP carries the
    document in XML), so they are written as JSON escapes; json.dumps already
    escapes the C0 controls.  A lone surrogate is refused: it is not text, and
    neither UTF-8 nor a PowerShell string can carry it faithfully.
    """
    text = json.dumps(params, ensure_ascii=False, separators=(',', ':'), allow_nan=False)
    try:
        text.encode('utf-8')
    except UnicodeEncodeError as exc:
        where = next((key for key, value in params.items() if not _encodable(value)), '?')
        raise UnencodableValue(
            f'parameter {where!r} holds a lone surrogate (U+{ord(exc.object[exc.start]):04X}): '
            'it is not valid Unicode text and cannot be sent to the host') from None
    return text.replace('\ufffe', '\\ufffe').replace('\uffff', '\\uffff')


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode('utf-8')
    except (UnicodeEncodeError, ValueError, TypeError):
        return False
    return True


def encode_document(params: dict[str, Any], compress_over: int = COMPRESS_OVER) -> str:
    """Encode the parameters as the one document the wrapper decodes.

    * JSON text, as it is (it starts with ``{``): PSRP sends it as a string
      parameter, which the WS-Man layer base64-encodes once;
    * ``deflate:`` and base64 of raw DEFLATE (RFC 1951) compressed UTF-8 JSON
      when the JSON is longer than ``compress_over`` bytes (a config drive is
      mostly zeros).  Raw DEFLATE because ``System.IO.Compression.DeflateStream``
      exists in .NET Framework 4.x (Windows PowerShell 5.1) and .NET 6+
      (PowerShell 7), while ``ZLibStream`` is .NET 6+ only.

    A local process gets the JSON form as base64 on stdin instead
    (:func:`ascii_document`), keeping every byte inert whatever the console
    encoding.
    """
    text = document_json(params)
    raw = text.encode('utf-8')
    if len(raw) <= compress_over:
        return text
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)   # fast; a config drive is mostly zeros
    packed = packer.compress(raw) + packer.flush()
    return DEFLATE_PREFIX + base64.b64encode(packed).decode('ascii')


def ascii_document(document: str) -> str:
    """The document in ASCII only (for stdin): JSON text becomes base64 of its UTF-8."""
    if document.startswith('{'):
        return base64.b64encode(document.encode('utf-8')).decode('ascii')
    return document


def decode_document(document: str) -> dict[str, Any]:
    """Inverse of :func:`encode_document` and :func:`ascii_document` (simulator, tests)."""
    text = document.strip()
    if text.startswith('{'):
        return json.loads(text)
    if text.startswith(DEFLATE_PREFIX):
        raw = zlib.decompress(base64.b64decode(text[len(DEFLATE_PREFIX):].encode('ascii')), -15)
        return json.loads(raw.decode('utf-8'))
    return json.loads(base64.b64decode(text.encode('ascii')).decode('utf-8'))


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


# -- scripts defined once per runspace ------------------------------------------------------
#
# Scripts defined once per runspace, for the transports that keep runspaces.
#
# The first call of a script in a runspace sends the whole rendered wrapper
# (helpers and script) with its SHA-256; the loader checks the hash, keeps the
# parsed script block in the runspace and runs it.  Later calls send only the
# loader (a few hundred bytes) and the hash: a runspace that knows the hash runs
# the script block it parsed from exactly that text; one that does not answers
# :data:`UNKNOWN` without running anything, and the runner sends the full text
# again.  A changed script has another hash, so a runspace never runs a stale or
# wrong script.
#
# The runner cannot know which runspace of a pool takes a pipeline, so it
# remembers which hashes it has defined *somewhere* in the pool: each runspace
# costs at most one extra round trip per script, once.

TEXT_PARAMETER = 'PsDriverScriptText'
HASH_PARAMETER = 'PsDriverScriptHash'
#: What the loader prints when its runspace does not hold the script (not an envelope).
UNKNOWN = '{"psdriver_script_unknown":true}'

_LOADER = '''# psdriver-script: __NAME__
# psdriver-loader: runs a wrapped script this runspace parsed before, by SHA-256
param(
    [string]$PsDriverInput = '',
    [string]$PsDriverScriptText = '',
    [string]$PsDriverScriptHash = ''
)
if ($PsDriverScriptText.Length -gt 0) {
    $psDriverSha = [System.Security.Cryptography.SHA256]::Create()
    try {
        $psDriverUtf8 = [System.Text.UTF8Encoding]::new($false)
        $psDriverBytes = $psDriverSha.ComputeHash($psDriverUtf8.GetBytes($PsDriverScriptText))
    }
    finally {
        $psDriverSha.Dispose()
    }
    $psDriverDigest = -join ($psDriverBytes | ForEach-Object { $_.ToString('x2') })
    if ($psDriverDigest -ne $PsDriverScriptHash) {
        throw [System.ArgumentException]::new('psdriver: the script does not match its SHA-256')
    }
    $psDriverKnown = Get-Variable -Name PsDriverScriptCache -Scope Global -ErrorAction Ignore
    if ($null -eq $psDriverKnown) {
        $global:PsDriverScriptCache = @{}
    }
    $global:PsDriverScriptCache[$psDriverDigest] = [scriptblock]::Create($PsDriverScriptText)
}
$psDriverCache = Get-Variable PsDriverScriptCache -Scope Global -ValueOnly -ErrorAction Ignore
if ($null -eq $psDriverCache -or -not $psDriverCache.ContainsKey($PsDriverScriptHash)) {
    '__UNKNOWN__'
    return
}
& $psDriverCache[$PsDriverScriptHash] -PsDriverInput $PsDriverInput
'''


def script_digest(text: str) -> str:
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def loader_text(name: str) -> str:
    """The loader text for script ``name`` (the name is only a header for readers and logs)."""
    return _LOADER.replace('__NAME__', name).replace('__UNKNOWN__', UNKNOWN)


def loader_invocation(call: ScriptCall, define: bool) -> tuple[str, dict[str, Any]]:
    """(script text, parameters) of one pipeline: the loader, with the full text if ``define``."""
    params: dict[str, Any] = {INPUT_PARAMETER: call.document,
                              HASH_PARAMETER: script_digest(call.text)}
    if define:
        params[TEXT_PARAMETER] = call.text
    return loader_text(call.name), params


def is_unknown_script(output: str) -> bool:
    return output.strip() == UNKNOWN
