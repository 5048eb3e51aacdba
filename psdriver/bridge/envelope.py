"""The JSON result envelope every wrapped script prints.

Success: ``{"ok": true, "result": <value>}``
Failure: ``{"ok": false, "error": {"type": "...", "message": "...",
"category": "ObjectNotFound", "error_id": "...", "target": "...",
"script_stack": "..."}}``

``parse`` turns the text into the result value or raises the matching
:class:`~psdriver.bridge.errors.ScriptError`; anything else is a
:class:`~psdriver.bridge.errors.BridgeBadOutput`.
"""

from __future__ import annotations

import json
from typing import Any

from psdriver.bridge import errors

_ERROR_FIELDS = ('type', 'message', 'category', 'error_id', 'target', 'script_stack')


def _strip(text: str) -> str:
    # A UTF-8 BOM may lead Windows PowerShell 5.1 output; whitespace may trail.
    return text.lstrip('\ufeff').strip()


def parse(text: str, script: str, target: str, stderr_tail: str = '') -> Any:
    """Return the ``result`` of a successful envelope, or raise."""
    body = _strip(text)
    if not body:
        raise errors.BridgeBadOutput(script, target, 'no output (expected one JSON envelope)',
                                     stderr_tail)
    try:
        doc = loads(body)
    except RecursionError:
        raise errors.BridgeBadOutput(
            script, target, 'output is nested too deeply to be an envelope', stderr_tail) from None
    except ValueError as exc:
        snippet = body[:200].replace('\n', ' ')
        raise errors.BridgeBadOutput(
            script, target, f'output is not JSON ({exc.msg} at {exc.pos}): {snippet!r}',
            stderr_tail) from None
    if not isinstance(doc, dict) or not isinstance(doc.get('ok'), bool):
        raise errors.BridgeBadOutput(script, target, 'output is JSON but not an envelope',
                                     stderr_tail)
    if doc['ok']:
        if 'result' not in doc:
            raise errors.BridgeBadOutput(script, target, 'envelope has no "result"', stderr_tail)
        return doc['result']
    raise error_from_envelope(doc.get('error'), script, target, stderr_tail)


def loads(body: str) -> Any:
    """``json.loads``; output nested deeper than Python's recursion limit raises RecursionError."""
    return json.loads(body)


def error_from_envelope(err: Any, script: str, target: str,
                        stderr_tail: str = '') -> errors.PsDriverBridgeException:
    if not isinstance(err, dict) or not isinstance(err.get('message'), str):
        return errors.BridgeBadOutput(script, target, 'error envelope without a message',
                                      stderr_tail)
    fields = {k: ('' if err.get(k) is None else str(err.get(k))) for k in _ERROR_FIELDS}
    cls = errors.CATEGORY_ERRORS.get(fields['category'], errors.ScriptError)
    return cls(script, target, fields['message'], error_type=fields['type'],
               category=fields['category'], error_id=fields['error_id'],
               error_target=fields['target'], script_stack=fields['script_stack'])


def xml_safe(json_text: str) -> str:
    """JSON text with U+FFFE and U+FFFF written as escapes, as the wrapper writes them.

    Both are valid in JSON but not in XML 1.0, which carries the envelope over
    PSRP; they can only occur inside JSON strings, so the escape is exact.
    """
    return json_text.replace('\ufffe', '\\ufffe').replace('\uffff', '\\uffff')


def success(result: Any) -> str:
    """Serialise a success envelope (used by the simulator)."""
    return xml_safe(json.dumps({'ok': True, 'result': result}, ensure_ascii=False,
                               separators=(',', ':')))


def failure(message: str, category: str = 'NotSpecified', error_type: str = '',
            error_id: str = '', target: str = '', script_stack: str = '') -> str:
    """Serialise a failure envelope (used by the simulator)."""
    return xml_safe(json.dumps({'ok': False, 'error': {
        'type': error_type, 'message': message, 'category': category,
        'error_id': error_id, 'target': target, 'script_stack': script_stack,
    }}, ensure_ascii=False, separators=(',', ':')))
