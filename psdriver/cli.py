"""The ``psdriver`` command.

``psdriver demo``
    the real driver through an instance's life on the simulated Hyper-V host.
``psdriver scripts list``
    every host script with its synopsis.
``psdriver scripts render NAME``
    the wrapped text the bridge sends for a script.
``psdriver scripts run NAME [--Param value ...]``
    run one script on the host nova.conf configures and print its validated
    JSON result; ``psdriver scripts run NAME --help`` lists its parameters.

Logging (oslo.log, on stderr) shows warnings; ``--verbose`` shows debug.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from psdriver import script_options

TRANSPORTS = ('sim', 'local', 'psrp')


def _script_names() -> list[str]:
    from psdriver.bridge import contracts
    return contracts.script_names()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='psdriver', description='psdriver: the Nova compute driver for Hyper-V, '
        'driven through PowerShell.')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    demo = commands.add_parser(
        'demo', help="an instance's life on the simulated Hyper-V host",
        description='Drive the real HyperVDriver through an instance\'s life on the simulated '
        'Hyper-V host ([powershell] transport = sim), printing each Nova call, the scripts '
        'it runs on the host, round trips and timings. Exit status 0 only when every step '
        'succeeds and the host ends clean.')
    demo.add_argument('--state-file', metavar='PATH',
                      help='keep the simulated host in this JSON file ([powershell] '
                      'sim_state_file) instead of in memory')
    demo.add_argument('-q', '--quiet', '--no-progress', dest='quiet', action='store_true',
                      help='print no per-step progress, only a failure and the summary')
    demo.add_argument('--fail-script', metavar='NAME', choices=_script_names(),
                      help='make the next call of this host script fail (fault injection on '
                      'the simulated host), to see a failing step and the clean-up')
    demo.add_argument('-v', '--verbose', action='store_true', help='debug logging on stderr')

    scripts = commands.add_parser('scripts', help='the host scripts (ps_scripts/)',
                                  description='The PowerShell scripts psdriver runs on the host.')
    actions = scripts.add_subparsers(dest='action', required=True, metavar='ACTION')
    actions.add_parser('list', help='every script with its synopsis')
    render = actions.add_parser('render', help='print the wrapped text the bridge sends')
    render.add_argument('name', metavar='NAME')
    from psdriver.bridge.render import FEATURES
    render.add_argument('--feature', action='append', default=[], choices=sorted(FEATURES),
                        help='a transport feature to render for (repeatable)')

    run = actions.add_parser(
        'run', add_help=False, allow_abbrev=False,
        help='run a script through the configured bridge; print its JSON result',
        usage='psdriver scripts run NAME [--Param VALUE ...] [--param KEY=VALUE ...] '
              '[--params-json JSON] [--config-file PATH ...] [--transport {sim,local,psrp}] '
              '[-v]',
        description='Run one script on the host that nova.conf configures ([powershell]) '
        'and print its result, validated against the script\'s contract, as JSON. Script '
        'parameters are given as --Name VALUE (case-insensitive; `psdriver scripts run NAME '
        '--help` lists them), as --param Name=VALUE, or all at once with --params-json.')
    run.add_argument('name', metavar='NAME', nargs='?')
    run.add_argument('-h', '--help', action='store_true', help='show this help and the '
                     "script's parameters")
    run.add_argument('--param', action='append', default=[], metavar='KEY=VALUE',
                     help='one script parameter (repeatable); typed as the script declares it')
    run.add_argument('--params-json', metavar='JSON',
                     help='script parameters as one JSON object')
    run.add_argument('--config-file', action='append', metavar='PATH',
                     help='nova.conf to read (repeatable); default: nova\'s usual places')
    run.add_argument('--transport', choices=TRANSPORTS,
                     help='override [powershell] transport')
    run.add_argument('-v', '--verbose', action='store_true', help='debug logging on stderr')
    parser.set_defaults(run_parser=run)
    return parser


def configure(config_files: list[str] | None, verbose: bool,
              transport: str | None = None) -> Any:
    """Parse nova.conf (``config_files``; None: nova's usual places) and set up oslo.log.

    First, like nova-compute 34 (``nova.cmd.compute``), choose native threads:
    eventlet is never imported (``OS_NOVA_DISABLE_EVENTLET_PATCHING`` still decides).
    A missing or unparsable file and a bad option value are a :class:`UsageError`
    naming the file and the option.
    """
    from oslo_config import cfg
    from oslo_log import log

    try:
        # nova's monkey_patch reads the --config-file arguments of sys.argv itself.
        if 'eventlet' not in sys.modules:
            from nova import monkey_patch
            monkey_patch.patch(backend='threading')
        import psdriver.conf
        conf = psdriver.conf.CONF
        try:
            log.register_options(conf)
        except cfg.ArgsAlreadyParsedError:
            pass
        conf([], project='nova', prog='psdriver', default_config_files=config_files)
    except cfg.ConfigFilesNotFoundError as exc:
        raise UsageError(f'config file(s) not found or not readable: '
                         f'{", ".join(exc.config_files)}') from None
    except cfg.ConfigFileParseError as exc:
        raise UsageError(f'cannot parse config file {exc.config_file}: {exc.msg}') from None
    except cfg.Error as exc:
        raise UsageError(f'invalid configuration: {exc}') from None
    if transport:
        conf.set_override('transport', transport, group='powershell')
    try:
        psdriver.conf.validate(conf)
    except psdriver.conf.InvalidOptionValue as exc:
        raise UsageError(str(exc)) from None
    conf.set_override('debug', verbose)
    conf.set_override('use_stderr', True)
    log.setup(conf, 'psdriver')
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.WARNING)
    return conf


# -- commands -------------------------------------------------------------------------

def _demo(args: argparse.Namespace) -> int:
    import os

    state_file = os.path.abspath(args.state_file) if args.state_file else None
    if state_file and not os.path.isdir(os.path.dirname(state_file)):
        raise UsageError(f'--state-file: the folder {os.path.dirname(state_file)} does not '
                         'exist')
    conf = configure([], args.verbose)
    from psdriver.demo import runner
    return runner.run(conf, state_file=state_file, quiet=args.quiet,
                      fail_script=args.fail_script)


def _list() -> int:
    from psdriver.bridge.scripts_dir import scripts_dir
    names = _script_names()
    width = max(map(len, names))
    for name in names:
        text = (scripts_dir() / f'{name}.ps1').read_text(encoding='utf-8-sig')
        print(f'{name:<{width}}  {script_options.synopsis(text)}')
    return 0


def _render(args: argparse.Namespace) -> int:
    from psdriver.bridge.render import Renderer
    _known_script(args.name)
    sys.stdout.write(Renderer().render(args.name, args.feature))
    return 0


def _known_script(name: str | None) -> None:
    if name not in _script_names():
        raise UsageError(f'no script {name!r} in ps_scripts/; `psdriver scripts list` '
                         'shows them' if name else 'a script NAME is needed')


class UsageError(Exception):
    """A command-line mistake: exit status 2, message on stderr."""


def _script_params(args: argparse.Namespace, extra: list[str]) -> dict[str, Any] | None:
    """The script's parameters from --params-json, --param and --Name options.

    Later sources win: --params-json, then --param, then --Name options.
    Returns None after printing the help (``--help``).
    """
    from psdriver.bridge import contracts
    from psdriver.bridge.render import Renderer
    if args.help and not args.name:
        args.run_parser.print_help()
        return None
    _known_script(args.name)
    declared = Renderer().declared_parameters(args.name)
    secret = contracts.load_contract(args.name).secret_parameters
    options = script_options.option_parser(args.name, declared.values(), secret)
    if args.help:
        args.run_parser.print_help()
        print()
        print(options.format_help().strip())
        return None
    given, rest = options.parse_known_args(
        script_options.normalise_options(extra, declared.values()))
    if rest:
        unknown = [t.split('=', 1)[0] for t in rest if t.startswith('-')]
        raise UsageError(f'{args.name} has no option(s) {", ".join(unknown) or "(values)"}; '
                         f'it declares {", ".join("--" + p.name for p in declared.values())}'
                         if unknown else f'unexpected value(s) after {args.name} (not shown)')
    params: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        param = declared.get(key.lower())
        params[param.name if param else key] = value

    if args.params_json:
        try:
            document = json.loads(args.params_json)
        except json.JSONDecodeError as exc:
            raise UsageError(f'--params-json is not JSON ({exc.msg} at character {exc.pos})'
                             ) from None
        if not isinstance(document, dict):
            raise UsageError('--params-json must be a JSON object')
        for key, value in document.items():
            put(key, value)
    for item in args.param:
        key, sep, text = item.partition('=')
        if not sep or not key:
            raise UsageError('--param needs KEY=VALUE')
        param = declared.get(key.lower())
        try:
            put(key, script_options.convert(param, text) if param else text)
        except script_options.BadValue as exc:
            raise UsageError(f'--param {param.name}: {exc}') from None
    for key, value in vars(given).items():
        put(key, value)
    return params


def _set_up_fresh_simulated_host(bridge: Any, name: str, params: dict[str, Any]) -> None:
    """A simulated host kept in memory starts empty: set it up for this call.

    The same set-up the contract shape tests use (the script's ``prepare``
    hook): ``Get-InstanceInfo --Name instance-0000002a`` finds that instance
    running.  A host kept in ``[powershell] sim_state_file`` is used as it is.
    """
    from psdriver.sim import dispatch
    bridge.renderer.check_parameters(name, params)      # refuse bad values first
    dispatch.prepare_host(bridge.runner.host, name, params)


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    params = _script_params(args, extra)
    if params is None:
        return 0
    conf = configure(args.config_file, args.verbose, args.transport)
    from psdriver.bridge import errors, factory
    try:
        bridge = factory.build_bridge(conf)
        try:
            if conf.powershell.transport == 'sim' and not conf.powershell.sim_state_file:
                _set_up_fresh_simulated_host(bridge, args.name, params)
            result = bridge.call(args.name, params)
        finally:
            bridge.close()
    except errors.BridgeParameterError as exc:
        print(f'psdriver: error: {exc}', file=sys.stderr)
        return 2
    except errors.PsDriverBridgeException as exc:
        print(f'psdriver: error: {exc}', file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    is_run = args.command == 'scripts' and args.action == 'run'
    if extra and not is_run:
        parser.error(f'unrecognized arguments: {" ".join(extra)}')
    try:
        if args.command == 'demo':
            return _demo(args)
        if args.action == 'list':
            return _list()
        if args.action == 'render':
            return _render(args)
        return _run(args, extra)
    except UsageError as exc:
        print(f'psdriver: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
