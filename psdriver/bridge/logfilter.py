"""Keep values, host output and auth tokens out of the logs of the libraries the bridge uses.

pypsrp logs whole SOAP and PSRP messages at DEBUG (they hold the values
document), and at WARNING a whole host output it could not parse; psrpcore
logs PSRP messages; pyspnego logs NTLM/Kerberos/CredSSP tokens (no password,
but an NTLM exchange can be attacked offline); pypsrp and urllib3 log
tracebacks of connection failures.  A logging filter on each of their loggers
(a filter applies to the records of the logger it is added to, not of its
children, hence the list) rewrites such records:

* a message known to carry a payload keeps its first words and the size;
* any other message longer than :data:`MAX_CHARS` keeps its first
  :data:`MAX_CHARS` characters and the size of the rest;
* tracebacks (``exc_info``) are dropped: the bridge reports the failure itself.

The password itself is never logged: basic auth travels in an HTTP header
that neither pypsrp nor urllib3 logs.
"""

from __future__ import annotations

import logging

MAX_CHARS = 200

#: Messages whose text after the first colon is a payload.
PAYLOAD_PREFIXES = ('Sending message', 'Received message',
                    'Packing PSRP message', 'Unpacking PSRP message',
                    'SPNEGO step', 'GSSAPI step', 'CredSSP step', 'CredSSP TSRequest',
                    'Failed to parse data', 'Cannot run host call')

#: Every logger of the libraries under the bridge that may see a value.
LOGGERS = (
    'pypsrp', 'pypsrp.client', 'pypsrp.encryption', 'pypsrp.host', 'pypsrp.messages',
    'pypsrp.negotiate', 'pypsrp.powershell', 'pypsrp.serializer', 'pypsrp.shell',
    'pypsrp.wsman', 'pypsrp.complex_objects', 'pypsrp._utils',
    'psrpcore', 'psrpcore._base', 'psrpcore._client', 'psrpcore._server', 'psrpcore._host',
    'psrpcore._pipeline', 'psrpcore._crypto', 'psrpcore.types',
    'spnego', 'spnego._negotiate', 'spnego._gss', 'spnego._credssp', 'spnego._ntlm',
    'spnego._sspi', 'requests_credssp', 'requests_credssp.credssp',
    'requests', 'urllib3', 'urllib3.connectionpool', 'urllib3.connection', 'urllib3.util.retry',
)


class RedactLibraryRecords(logging.Filter):
    """Rewrite a library's log record so that it carries no payload (see the module)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        msg = record.msg if isinstance(record.msg, str) else str(record.msg)
        if msg.startswith(PAYLOAD_PREFIXES):
            head = msg.split(':', 1)[0].split("'", 1)[0].strip()
            record.msg = f'{head}: <{len(_text(record))} characters redacted>'
            record.args = ()
            return True
        text = _text(record)
        if len(text) > MAX_CHARS:
            record.msg = f'{text[:MAX_CHARS]}... <{len(text) - MAX_CHARS} characters redacted>'
            record.args = ()
        return True


def _text(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:   # noqa: BLE001 (a bad format string must not break logging)
        return str(record.msg)


FILTER = RedactLibraryRecords()


def install() -> None:
    """Add the filter to every logger in :data:`LOGGERS` (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactLibraryRecords) for f in logger.filters):
            logger.addFilter(FILTER)
