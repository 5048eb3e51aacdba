"""``psdriver fleet render | check | status``: the command group (parsing and printing)."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from typing import Any

DEFAULT_INVENTORY = '/etc/psdriver/fleet.yaml'


def add_parser(commands: Any) -> None:
    """Add ``fleet`` and its actions to the ``psdriver`` sub-command parsers."""
    fleet = commands.add_parser(
        'fleet', help='many Hyper-V hosts from one management node (one nova-compute each)',
        description='A fleet of Hyper-V hosts managed from this node: one ordinary '
        'nova-compute service per host, configured from one inventory file.')
    actions = fleet.add_subparsers(dest='fleet_action', required=True, metavar='ACTION')

    def inventory(parser: argparse.ArgumentParser) -> None:
        parser.add_argument('-i', '--inventory', metavar='PATH', default=DEFAULT_INVENTORY,
                            help=f'the inventory (YAML; default {DEFAULT_INVENTORY})')

    render = actions.add_parser(
        'render', help='write each host\'s nova.conf fragment and the systemd units',
        description='Render every host\'s nova.conf fragment and the systemd units from the '
        'inventory. Only files whose content changes are written (atomically); files of '
        'hosts that left the inventory are removed, their state directories are kept. '
        'With --check nothing is written: the differences are shown and the exit status '
        'is 1 when any file would change.')
    inventory(render)
    render.add_argument('--root', metavar='DIR', default='/',
                        help='write the tree under this directory instead of / (paths inside '
                        'the files stay absolute)')
    render.add_argument('--check', action='store_true',
                        help='change nothing; show the diff; exit 1 when files would change')

    check = actions.add_parser(
        'check', help='one connection test per host, in parallel; a table',
        description='Run Test-PsDriverConnection on every host (one round trip each, '
        'through the configured transport, with the host\'s credentials file) and print '
        'PowerShell version, modules, elevation, instances_path and share, clock skew. '
        'Exit status 1 names the failing hosts.')
    inventory(check)
    check.add_argument('--host', action='append', metavar='NAME',
                       help='check only this host (repeatable)')
    check.add_argument('--parallel', type=int, default=8, metavar='N',
                       help='hosts checked at the same time (default 8)')
    check.add_argument('--timeout', type=float, default=30.0, metavar='SECONDS',
                       help='connection and script timeout per host (default 30)')
    check.add_argument('--max-skew', type=float, default=30.0, metavar='SECONDS',
                       help='largest clock difference accepted (default 30)')
    check.add_argument('--json', action='store_true', help='print JSON instead of a table')

    status = actions.add_parser(
        'status', help='per host: its systemd service and nova\'s service list',
        description='Per host: whether nova-compute@HOST.service is active (where systemd '
        'runs) and what nova\'s service list says about the host (when asked through '
        '--os-cloud / OS_* variables, or given --services-json). Exit status 1 when a '
        'service is not running or nova sees it down.')
    inventory(status)
    status.add_argument('--os-cloud', metavar='NAME', default=os.environ.get('OS_CLOUD'),
                        help='clouds.yaml entry to ask nova with (default $OS_CLOUD)')
    status.add_argument('--services-json', metavar='PATH',
                        help='read nova\'s services from this file (`openstack compute '
                        'service list -f json`) instead of asking')
    status.add_argument('--json', action='store_true', help='print JSON instead of a table')


def run(args: argparse.Namespace) -> int:
    """Run ``psdriver fleet ACTION``; the exit status."""
    from psdriver.fleet import inventory

    try:
        fleet = inventory.load(args.inventory)
    except inventory.InventoryError as exc:
        print(f'psdriver: error: {exc}', file=sys.stderr)
        return 2
    if args.fleet_action == 'render':
        return _render(fleet, args)
    if args.fleet_action == 'check':
        return _check(fleet, args)
    return _status(fleet, args)


def _loose_credentials(fleet: Any) -> list[str]:
    """Credentials files that exist and that others than their owner can read."""
    loose = []
    for host in fleet.hosts:
        try:
            mode = os.stat(host.credentials).st_mode if host.credentials else 0
        except OSError:
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            loose.append(f'{host.name}: credentials file {host.credentials} is mode '
                         f'{stat.S_IMODE(mode):04o}; make it 0600 (root only)')
    return loose


def _render(fleet: Any, args: argparse.Namespace) -> int:
    from psdriver.fleet import render

    try:
        outcome = (render.plan if args.check else render.apply)(fleet, args.root)
    except (ValueError, OSError) as exc:
        print(f'psdriver: error: {exc}', file=sys.stderr)
        return 2
    for warning in _loose_credentials(fleet):
        print(f'warning: {warning}', file=sys.stderr)
    changed = outcome.changed
    verb = {'added': 'would add', 'changed': 'would change', 'removed': 'would remove'}
    for change in changed:
        print(f'{verb[change.action] if args.check else change.action:<12} {change.path}')
        if args.check:
            sys.stdout.write(change.diff)
    unchanged = len(outcome.changes) - len(changed)
    print(f'{len(changed)} file(s) {"would change" if args.check else "changed"}, '
          f'{unchanged} unchanged ({len(fleet.hosts)} hosts)')
    for unit, state in zip(outcome.removed_units, outcome.kept_state_dirs,
                           strict=True):
        print(f'{unit}: the host left the inventory; its files '
              f'{"would be" if args.check else "were"} removed. Stop it (systemctl stop '
              f'{unit}). Its state directory {state} (nova\'s node identity) is kept: '
              'delete it after `openstack compute service delete` of its service, or keep '
              'it to bring the host back under the same name.')
    if changed and not args.check:
        for line in _next_steps(fleet, changed):
            print(line)
    return 1 if args.check and changed else 0


def _next_steps(fleet: Any, changed: list[Any]) -> list[str]:
    """What to run so that the services use the files just written."""
    from psdriver.fleet import render

    paths = {c.path for c in changed if c.action != 'removed'}
    template = f'{fleet.unit_dir}/{render.TEMPLATE_UNIT}' in paths
    touched = [h.name for h in fleet.hosts
               if template or render.host_config_path(fleet, h) in paths
               or render.drop_in_path(fleet, h) in paths]
    steps = ['next: systemctl daemon-reload && systemctl start psdriver-fleet.target '
             '(starts services not running yet)']
    if touched:
        steps.append('then restart the services whose files changed: systemctl restart '
                     + ' '.join(f'nova-compute@{name}.service' for name in touched))
    return steps


def _check(fleet: Any, args: argparse.Namespace) -> int:
    _choose_threads()
    from psdriver.fleet import check

    hosts = list(fleet.hosts)
    if args.host:
        known = {h.name: h for h in fleet.hosts}
        unknown = [n for n in args.host if n not in known]
        if unknown:
            print(f'psdriver: error: not in {fleet.path}: {", ".join(unknown)}',
                  file=sys.stderr)
            return 2
        hosts = [known[n] for n in args.host]
    checks = check.check_fleet(fleet, hosts, parallel=args.parallel, timeout=args.timeout,
                               max_skew=args.max_skew)
    if args.json:
        print(json.dumps(check.as_json(checks), indent=2))
    else:
        sys.stdout.write(check.table(checks))
    return 0 if all(c.ok for c in checks) else 1


def _status(fleet: Any, args: argparse.Namespace) -> int:
    from psdriver.fleet import status

    try:
        if args.services_json:
            services = status.services_from_file(args.services_json)
        elif args.os_cloud or os.environ.get('OS_AUTH_URL'):
            services = status.services_from_cloud(args.os_cloud)
        else:
            services = None
    except Exception as exc:   # openstacksdk and keystoneauth raise many kinds
        print(f'psdriver: error: cannot read nova\'s service list: {exc}', file=sys.stderr)
        return 1
    statuses, strangers = status.fleet_status(fleet, services)
    if args.json:
        print(json.dumps([{'host': s.host, 'unit': s.unit, 'systemd': s.systemd,
                           'nova': None if s.nova is None else vars(s.nova),
                           'problems': s.problems} for s in statuses], indent=2))
    else:
        sys.stdout.write(status.table(statuses, strangers))
    return 1 if any(s.problems for s in statuses) else 0


def _choose_threads() -> None:
    """Like nova-compute 34: native threads, eventlet never imported."""
    if 'eventlet' not in sys.modules:
        from nova import monkey_patch
        monkey_patch.patch(backend='threading')
