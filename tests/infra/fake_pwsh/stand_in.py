"""A stand-in for PowerShell's ``pwsh`` executable, for the local runner's tests.

It runs the rendered script on the simulated host and holds the caller to the
conventions the real bridge depends on, so that passing tests mean something:

* ``-NoLogo``, ``-NoProfile`` and ``-NonInteractive`` must be given (full
  names, any case; abbreviations are refused), and the script must come as
  ``-File <path>`` with a ``.ps1`` name and nothing after it (the values
  document travels on stdin, never as a script argument);
* ``-Command`` / ``-EncodedCommand`` / ``-CommandWithArgs`` are refused (stdin
  scripts run statement by statement in PowerShell; see local.py);
* the file must start with a UTF-8 BOM (Windows PowerShell 5.1 reads a file
  without one in the ANSI code page) and be valid UTF-8; on POSIX it must not
  be readable by group or others.

With ``-s`` it is PowerShell's out-of-process remoting server instead (the
kept-process runner's ``pwsh -s``): see ``server.py``.

A refused command line exits 64 with a message on stderr, like pwsh.
Otherwise stdin (the base64 document) is read to EOF and the text and document
go to ``psdriver.sim.execute_rendered`` on ``SimHost(state_file=$PSDRIVER_SIM_STATE)``
(a fresh in-memory host when the variable is unset).  The envelope is printed;
the exit code is 0 after a success envelope and 1 after an error envelope, as
the wrapper's ``local_process`` feature does.  The host_down fault makes the
process die like a crashed pwsh (SIGABRT on POSIX) with a message on stderr.

Test knobs (environment variables), applied in this order after the checks
and after stdin has been read:

``FAKE_PWSH_LOG=<file>``
    Append ``{"argv": [...]}`` as one JSON line per start (done first, even
    for a refused command line).
``FAKE_PWSH_GRANDCHILD=<file>``
    Start a sleeping child process (120 s) that inherits stdout/stderr and
    write its pid to <file> (for the kill-the-process-tree test).
``FAKE_PWSH_SLEEP=<seconds>``
    Sleep before answering.
``FAKE_PWSH_STDERR=<text>``
    Write <text> to stderr.
``FAKE_PWSH_STDOUT=<text>``
    Print <text> verbatim (UTF-8, no newline added; may be empty) instead of
    running the script; exit with ``FAKE_PWSH_EXIT`` if set, else 0.
``FAKE_PWSH_EXIT=<code>``
    Exit with <code> without printing anything (unless ``FAKE_PWSH_STDOUT``).
``FAKE_PWSH_STDOUT_BYTES=<n>``
    Print a success envelope whose result is ``{"data": payload(n)}``: n ASCII
    bytes (for large-output tests).
``FAKE_PWSH_ECHO=1``
    Print a success envelope whose result is ``{"params": <decoded document>,
    "script": <script text without the BOM>}`` instead of running the script
    (checks the transport without the renderer or the simulator).
"""

from __future__ import annotations

import json
import os
import sys

EXIT_USAGE = 64
BOM = b'\xef\xbb\xbf'
_PREFIX = 'pwsh (psdriver stand-in): '
_SWITCHES = ('-nologo', '-noprofile', '-noninteractive')
_VALUED = ('-executionpolicy', '-inputformat', '-outputformat')
_EXECUTION_POLICIES = ('unrestricted', 'remotesigned', 'allsigned', 'restricted', 'default',
                       'bypass', 'undefined')
_REFUSED = {
    '-command': ('-Command is refused: psdriver runs scripts with -File <path>. PowerShell runs '
                 "'-Command -' input statement by statement (a multi-line statement without a "
                 'trailing blank line is skipped, $ErrorActionPreference and the exit code '
                 'differ).'),
    '-encodedcommand': ('-EncodedCommand is refused: psdriver runs scripts with -File <path> '
                        '(an encoded command is limited by the command-line length).'),
    '-commandwithargs': '-CommandWithArgs is refused: psdriver runs scripts with -File <path>.',
    '-noexit': '-NoExit is refused: the process must end when the script ends.',
}
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.realpath(__file__)))))


class Usage(Exception):
    """The command line breaks pwsh's rules or ours."""


def payload(n: int) -> str:
    """n ASCII characters of a fixed pattern (``FAKE_PWSH_STDOUT_BYTES``)."""
    unit = '0123456789abcdefghijklmnopqrstuvwxyz'
    return (unit * (n // len(unit) + 1))[:n]


def parse_args(argv: list[str]) -> str:
    """Check the command line; return the script path."""
    seen: set[str] = set()
    path = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        low = arg.lower()
        if low in _REFUSED:
            raise Usage(_REFUSED[low])
        if low in _SWITCHES:
            seen.add(low)
        elif low in _VALUED:
            if i + 1 >= len(argv):
                raise Usage(f"Cannot process the command because of a missing parameter. "
                            f"A value must follow {arg}.")
            value = argv[i + 1]
            if low == '-executionpolicy' and value.lower() not in _EXECUTION_POLICIES:
                raise Usage(f"Invalid ExecutionPolicy value '{value}'.")
            i += 1
        elif low == '-file':
            if i + 1 >= len(argv):
                raise Usage("Cannot process the command because of a missing parameter. "
                            "A file path must follow -File.")
            path = argv[i + 1]
            rest = argv[i + 2:]
            if rest:
                raise Usage(f'script arguments are refused ({len(rest)} given after the file '
                            'path): the values document must come on stdin, never on the '
                            'command line.')
            break
        else:
            raise Usage(f"The argument '{arg}' is not recognized as the name of a script file. "
                        "Check the spelling of the name, or if a path was included, verify "
                        "that the path is correct and try again.")
        i += 1
    if path is None:
        raise Usage('no -File <path> given: psdriver runs every script from a file.')
    missing = [s for s in ('-NoLogo', '-NoProfile', '-NonInteractive') if s.lower() not in seen]
    if missing:
        raise Usage(f"{', '.join(missing)} missing: the bridge must start PowerShell without "
                    'banner, profile or prompts.')
    return path


def read_script(path: str) -> str:
    """Read the script file, enforcing name, BOM, encoding and permissions."""
    if not path.lower().endswith('.ps1'):
        raise Usage(f"Processing -File '{path}' failed because the file does not have a "
                    "'.ps1' extension. Specify a valid PowerShell script file name, and then "
                    "try again.")
    try:
        with open(path, 'rb') as fh:
            data = fh.read()
            mode = os.fstat(fh.fileno()).st_mode
    except OSError:
        raise Usage(f"The argument '{path}' is not recognized as the name of a script file. "
                    "Check the spelling of the name, or if a path was included, verify that "
                    "the path is correct and try again.") from None
    if os.name != 'nt' and mode & 0o077:
        raise Usage(f"'{path}' has mode {oct(mode & 0o777)}: the script file must be private "
                    '(0600).')
    if not data.startswith(BOM):
        raise Usage(f"'{path}' does not start with a UTF-8 BOM: Windows PowerShell 5.1 would "
                    'read it in the ANSI code page.')
    try:
        return data[len(BOM):].decode('utf-8')
    except UnicodeDecodeError as exc:
        raise Usage(f"'{path}' is not valid UTF-8 ({exc.reason} at byte {exc.start}).") from None


def read_document() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        return ''
    return sys.stdin.buffer.read().decode('utf-8', errors='replace').strip()


def start_grandchild(pid_file: str) -> None:
    import subprocess
    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
    tmp = f'{pid_file}.tmp'
    with open(tmp, 'w') as fh:
        fh.write(str(child.pid))
    os.replace(tmp, pid_file)


def write_out(text: str) -> None:
    sys.stdout.buffer.write(text.encode('utf-8'))
    sys.stdout.buffer.flush()


def envelope_ok(result: object) -> str:
    return json.dumps({'ok': True, 'result': result}, ensure_ascii=False,
                      separators=(',', ':')) + '\n'


def crash(message: str) -> None:
    """Die like a pwsh process that hit an unhandled exception."""
    sys.stderr.write(f'Unhandled exception. System.InvalidOperationException: {message}\n')
    sys.stderr.flush()
    sys.stdout.flush()
    if os.name != 'nt':
        import resource
        import signal
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ValueError, OSError):
            pass
        signal.signal(signal.SIGABRT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGABRT)
    os._exit(0xE0434352 if os.name == 'nt' else 134)


def run_sim(text: str, document: str) -> int:
    if _REPO_ROOT not in sys.path:
        sys.path.insert(0, _REPO_ROOT)
    from psdriver.sim import SimHost, execute_rendered
    from psdriver.sim.errors import SimHostDown

    state_file = os.environ.get('PSDRIVER_SIM_STATE')
    host = SimHost(state_file=state_file) if state_file else SimHost()
    try:
        out = execute_rendered(text, document, host)
    except SimHostDown as exc:
        crash(f'the simulated host is down ({exc or "host_down fault"})')
        return 134
    out = out if isinstance(out, str) else '\n'.join(out)
    write_out(out.rstrip('\n') + '\n')
    try:
        doc = json.loads(out)
    except ValueError:
        return 0            # not an envelope (garbage fault): the wrapper printed it and ended
    return 1 if isinstance(doc, dict) and doc.get('ok') is False else 0


def main(argv: list[str]) -> int:
    env = os.environ
    if env.get('FAKE_PWSH_LOG'):
        with open(env['FAKE_PWSH_LOG'], 'a', encoding='utf-8') as fh:
            fh.write(json.dumps({'argv': [sys.argv[0], *argv]}) + '\n')
    if any(a.lower() == '-s' for a in argv):
        if _REPO_ROOT not in sys.path:
            sys.path.insert(0, _REPO_ROOT)
        from tests.infra.fake_pwsh.server import serve
        return serve(argv)
    try:
        text = read_script(parse_args(argv))
    except Usage as exc:
        sys.stderr.write(f'{_PREFIX}{exc}\n')
        return EXIT_USAGE
    document = read_document()

    if env.get('FAKE_PWSH_GRANDCHILD'):
        start_grandchild(env['FAKE_PWSH_GRANDCHILD'])
    if env.get('FAKE_PWSH_SLEEP'):
        import time
        time.sleep(float(env['FAKE_PWSH_SLEEP']))
    if env.get('FAKE_PWSH_STDERR'):
        sys.stderr.write(env['FAKE_PWSH_STDERR'])
        sys.stderr.flush()
    exit_code = int(env['FAKE_PWSH_EXIT']) if env.get('FAKE_PWSH_EXIT') else None
    if 'FAKE_PWSH_STDOUT' in env:
        write_out(env['FAKE_PWSH_STDOUT'])
        return exit_code or 0
    if exit_code is not None:
        return exit_code
    if env.get('FAKE_PWSH_STDOUT_BYTES'):
        write_out(envelope_ok({'data': payload(int(env['FAKE_PWSH_STDOUT_BYTES']))}))
        return 0
    if env.get('FAKE_PWSH_ECHO'):
        import base64
        params = json.loads(base64.b64decode(document.encode('ascii')).decode('utf-8'))
        write_out(envelope_ok({'params': params, 'script': text}))
        return 0
    return run_sim(text, document)
