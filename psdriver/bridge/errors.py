"""Exceptions raised by the PowerShell bridge.

Two families, kept apart on purpose:

* ``ScriptError`` and its subclasses: the script ran and reported an error in
  its envelope.  The ops layer translates these into Nova exceptions.
* ``BridgeError`` and its subclasses: we could not get a valid envelope at all
  (transport failure, timeout, unparseable output, non-zero exit without an
  envelope).  They name the script, the target host and the stderr tail.
"""

from __future__ import annotations


class PsDriverBridgeException(Exception):
    """Base class of everything the bridge raises."""


class ScriptError(PsDriverBridgeException):
    """A script ran and returned ``{"ok": false, "error": {...}}``."""

    def __init__(self, script: str, target: str, message: str,
                 error_type: str = '', category: str = '', error_id: str = '',
                 error_target: str = '', script_stack: str = '') -> None:
        self.script = script
        self.target = target
        # A host can send an error message of megabytes: keep head and tail.
        message = cap_text(message)
        script_stack = cap_text(script_stack)
        self.message = message
        self.error_type = error_type
        self.category = category
        self.error_id = error_id
        self.error_target = error_target
        self.script_stack = script_stack
        super().__init__(f'{script} on {target} failed: {message}')


class ScriptObjectNotFound(ScriptError):
    """ErrorCategory ObjectNotFound (e.g. Get-VM on a missing VM)."""


class ScriptInvalidOperation(ScriptError):
    """ErrorCategory InvalidOperation (e.g. pausing a VM that is Off)."""


class ScriptInvalidArgument(ScriptError):
    """ErrorCategory InvalidArgument / InvalidData / InvalidType."""


class ScriptResourceUnavailable(ScriptError):
    """ErrorCategory ResourceUnavailable / ResourceBusy / LimitsExceeded / QuotaExceeded."""


class ScriptResourceExists(ScriptError):
    """ErrorCategory ResourceExists (e.g. duplicate VM name)."""


class ScriptPermissionDenied(ScriptError):
    """ErrorCategory PermissionDenied / SecurityError."""


class ScriptNotInstalled(ScriptError):
    """ErrorCategory NotInstalled / NotImplemented (missing module or feature)."""


class ScriptTimeout(ScriptError):
    """ErrorCategory OperationTimeout, raised by the script itself."""


#: PowerShell ErrorCategory name -> ScriptError subclass.
CATEGORY_ERRORS: dict[str, type[ScriptError]] = {
    'ObjectNotFound': ScriptObjectNotFound,
    'InvalidOperation': ScriptInvalidOperation,
    'InvalidArgument': ScriptInvalidArgument,
    'InvalidData': ScriptInvalidArgument,
    'InvalidType': ScriptInvalidArgument,
    'InvalidResult': ScriptInvalidOperation,
    'ResourceUnavailable': ScriptResourceUnavailable,
    'ResourceBusy': ScriptResourceUnavailable,
    'LimitsExceeded': ScriptResourceUnavailable,
    'QuotaExceeded': ScriptResourceUnavailable,
    'ResourceExists': ScriptResourceExists,
    'PermissionDenied': ScriptPermissionDenied,
    'SecurityError': ScriptPermissionDenied,
    'NotInstalled': ScriptNotInstalled,
    'NotImplemented': ScriptNotInstalled,
    'OperationTimeout': ScriptTimeout,
}


#: Longest host text (an error message, a stderr tail) kept in an exception;
#: the head and the tail of a longer one are kept, the middle is cut.
MAX_HOST_TEXT = 8000


def cap_text(text: str, limit: int = MAX_HOST_TEXT) -> str:
    """``text`` if short enough, else its head and tail around a note of what was cut."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 60) // 2
    cut = len(text) - 2 * keep
    return f'{text[:keep]}\n[... {cut:,} characters cut ...]\n{text[len(text) - keep:]}'


class BridgeError(PsDriverBridgeException):
    """No valid envelope came back.  Says what ran, where, and why."""

    def __init__(self, script: str, target: str, reason: str,
                 stderr_tail: str = '', exit_code: int | None = None) -> None:
        self.script = script
        self.target = target
        reason = cap_text(reason)
        stderr_tail = cap_text(stderr_tail)
        self.reason = reason
        self.stderr_tail = stderr_tail
        self.exit_code = exit_code
        text = f'{script} on {target}: {reason}'
        if exit_code is not None:
            text += f' (exit code {exit_code})'
        if stderr_tail:
            text += f'; stderr: {stderr_tail}'
        super().__init__(text)


class BridgeTimeout(BridgeError):
    """The call exceeded its timeout; the process or pipeline was stopped.

    ``host_may_have_acted`` says whether the script had started on the host
    before the timeout (see :class:`BridgeTimeoutAfterStart`).
    """

    host_may_have_acted = False


class BridgeTimeoutAfterStart(BridgeTimeout):
    """The script started on the host and did not finish in time; it was stopped.

    The host may have done part or all of the work (created the VM, changed
    its power state) before the pipeline or process was stopped: the caller
    must not assume nothing happened.  It should look at the host (or undo
    what the operation may have created) before reporting the failure.  A
    plain :class:`BridgeTimeout` is raised only when the script is known not
    to have started.
    """

    host_may_have_acted = True


class BridgeTransportError(BridgeError):
    """Connection, authentication or process start failure."""


class BridgeAuthenticationError(BridgeTransportError):
    """The remote host refused our credentials."""


class BridgeBadOutput(BridgeError):
    """Output was not one JSON envelope, or the result broke its declared shape."""


class BridgeUnavailable(BridgeError):
    """No usable transport is configured (raised at init_host)."""


class BridgeParameterError(PsDriverBridgeException, ValueError):
    """A caller passed parameters the script does not declare, or missed a mandatory one.

    Raised before anything runs: it is a bug in the calling code, not a host fault.
    """


class BridgeSpecError(BridgeParameterError):
    """A structured parameter breaks the script's ``x-spec-schema``.

    ``path`` is where inside the parameter (``('memory_mb',)``), ``rule`` the
    schema keyword that failed and ``expected`` its value in the schema;
    ``problem`` says it in words (``memory_mb must be at least 32``) and never
    quotes the caller's value, which may be secret.
    """

    def __init__(self, script: str, parameter: str, path: tuple[str | int, ...],
                 rule: str | None, expected: object, problem: str) -> None:
        self.script = script
        self.parameter = parameter
        self.path = path
        self.rule = rule
        self.expected = expected
        self.problem = problem
        super().__init__(f'{script} -{parameter} breaks its declared schema: {problem}')
