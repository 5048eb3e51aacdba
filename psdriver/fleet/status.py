"""``psdriver fleet status``: per host, its systemd service and nova's service list.

Nothing here is needed for the services to run; it only looks:

* systemd: one ``systemctl is-active`` call for every host's unit; where
  there is no systemd (no ``systemctl``, or not booted with systemd) the
  column says so instead of guessing;
* nova: the ``nova-compute`` services of the compute API, through
  openstacksdk (``--os-cloud`` or the usual ``OS_*`` variables), or from the
  JSON of ``openstack compute service list -f json`` given as a file.  The
  API's own field names, the SDK's and the CLI's column names are all read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from typing import Any, Iterable

from psdriver.fleet.inventory import Fleet
from psdriver.fleet.render import unit_name

NO_SYSTEMD = 'unknown (no systemd)'


@dataclasses.dataclass(frozen=True)
class NovaService:
    """One row of nova's service list."""

    host: str
    binary: str
    status: str            # enabled | disabled
    state: str             # up | down
    updated_at: str | None = None
    forced_down: bool = False
    disabled_reason: str | None = None


def _key(name: str) -> str:
    return name.strip().lower().replace(' ', '_').replace('-', '_')


def parse_services(rows: Iterable[dict[str, Any]]) -> list[NovaService]:
    """nova-compute services from API dicts, SDK ``Service.to_dict()`` or CLI JSON rows."""
    services = []
    for row in rows:
        data = {_key(k): v for k, v in row.items()}
        if data.get('binary') != 'nova-compute':
            continue
        services.append(NovaService(
            host=str(data['host']), binary=data['binary'],
            status=str(data.get('status') or '').lower(),
            state=str(data.get('state') or '').lower(),
            updated_at=data.get('updated_at'),
            forced_down=bool(data.get('forced_down', data.get('is_forced_down', False))),
            disabled_reason=data.get('disabled_reason')))
    return services


def services_from_file(path: str) -> list[NovaService]:
    """``openstack compute service list -f json`` output (or the API's ``services`` body)."""
    with open(path, encoding='utf-8') as stream:
        document = json.load(stream)
    if isinstance(document, dict):
        document = document.get('services', [])
    if not isinstance(document, list):
        raise ValueError(f'{path}: expected a JSON list of services')
    return parse_services(document)


def services_from_cloud(cloud: str | None) -> list[NovaService]:
    """Ask the compute API through openstacksdk (clouds.yaml entry, or OS_* variables)."""
    import openstack

    conn = openstack.connect(cloud=cloud) if cloud else openstack.connect()
    try:
        return parse_services(s.to_dict() for s in conn.compute.services(
            binary='nova-compute'))
    finally:
        conn.close()


def systemd_available() -> bool:
    """systemctl exists and the machine runs systemd (what ``sd_booted()`` checks)."""
    return shutil.which('systemctl') is not None and os.path.isdir('/run/systemd/system')


def unit_states(units: list[str]) -> dict[str, str]:
    """``systemctl is-active`` for every unit at once; :data:`NO_SYSTEMD` without systemd."""
    if not units:
        return {}
    if not systemd_available():
        return dict.fromkeys(units, NO_SYSTEMD)
    # is-active exits non-zero when a unit is not active; each unit still gets its line.
    done = subprocess.run(['systemctl', 'is-active', '--', *units], capture_output=True,
                          text=True, timeout=30, check=False)
    answers = done.stdout.split()
    if len(answers) != len(units):
        message = (done.stderr.strip() or done.stdout.strip()).splitlines()
        return dict.fromkeys(units, f'unknown ({message[0] if message else "no answer"})')
    return dict(zip(units, answers, strict=True))


@dataclasses.dataclass
class HostStatus:
    host: str
    unit: str
    systemd: str
    nova: NovaService | None
    nova_asked: bool

    @property
    def problems(self) -> list[str]:
        found = []
        if self.systemd != 'active' and self.systemd != NO_SYSTEMD:
            found.append(f'{self.unit} is {self.systemd}')
        if self.nova_asked:
            if self.nova is None:
                found.append('nova has no nova-compute service for this host')
            elif self.nova.state != 'up':
                found.append(f'nova says the service is {self.nova.state or "in no state"}'
                             + (' (forced down)' if self.nova.forced_down else ''))
        return found


def fleet_status(fleet: Fleet, services: list[NovaService] | None,
                 states: dict[str, str] | None = None) -> tuple[list[HostStatus],
                                                                list[NovaService]]:
    """Each host's status, and nova-compute services nova has for hosts not in the inventory.

    ``services`` None: nova was not asked.  ``states``: unit -> systemd state
    (default: ask systemd).
    """
    units = [unit_name(h) for h in fleet.hosts]
    states = unit_states(units) if states is None else states
    by_host = {s.host: s for s in services or []}
    statuses = [HostStatus(h.name, unit_name(h), states.get(unit_name(h), NO_SYSTEMD),
                           by_host.get(h.name), services is not None) for h in fleet.hosts]
    names = {h.name for h in fleet.hosts}
    strangers = [s for s in services or [] if s.host not in names]
    return statuses, strangers


def table(statuses: list[HostStatus], strangers: list[NovaService]) -> str:
    rows = [('HOST', 'UNIT', 'SYSTEMD', 'NOVA STATE', 'NOVA STATUS', 'UPDATED AT')]
    for s in statuses:
        nova = s.nova
        rows.append((s.host, s.unit, s.systemd,
                     '-' if not s.nova_asked else (nova.state if nova else 'absent'),
                     '-' if not s.nova_asked or not nova else nova.status,
                     '-' if not nova or not nova.updated_at else str(nova.updated_at)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    for s in statuses:
        lines += [f'{s.host}: {problem}' for problem in s.problems]
    if statuses and not statuses[0].nova_asked:
        lines.append('nova was not asked: give --os-cloud (or OS_CLOUD / OS_AUTH_URL), or '
                     '--services-json with `openstack compute service list -f json`')
    for s in strangers:
        lines.append(f'nova also has nova-compute on {s.host} ({s.state}, {s.status}), which '
                     'is not in the inventory: a removed or renamed host? '
                     '`openstack compute service delete` removes it')
    return '\n'.join(lines) + '\n'
