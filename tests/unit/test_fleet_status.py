"""``psdriver fleet status``: nova's service list in its three spellings, and systemd or none.

The functional test (tests/functional/test_fleet.py) feeds the status the
service list of nova's real API; here the parsing of the API, openstacksdk
and CLI shapes, and the systemd side.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from psdriver import cli
from psdriver.fleet import inventory, status

API_ROWS = [
    {'id': 1, 'binary': 'nova-compute', 'host': 'hv01', 'zone': 'nova', 'status': 'enabled',
     'state': 'up', 'updated_at': '2026-12-04T16:00:00.000000', 'forced_down': False,
     'disabled_reason': None},
    {'id': 2, 'binary': 'nova-compute', 'host': 'hv02', 'zone': 'nova', 'status': 'disabled',
     'state': 'down', 'updated_at': '2026-12-04T15:00:00.000000', 'forced_down': True,
     'disabled_reason': 'maintenance'},
    {'id': 3, 'binary': 'nova-compute', 'host': 'old-hv', 'zone': 'nova', 'status': 'enabled',
     'state': 'down', 'updated_at': None, 'forced_down': False, 'disabled_reason': None},
    {'id': 4, 'binary': 'nova-scheduler', 'host': 'ctl1', 'zone': 'internal',
     'status': 'enabled', 'state': 'up', 'updated_at': None, 'forced_down': False,
     'disabled_reason': None},
]
EXPECTED = [
    status.NovaService('hv01', 'nova-compute', 'enabled', 'up', '2026-12-04T16:00:00.000000',
                       False, None),
    status.NovaService('hv02', 'nova-compute', 'disabled', 'down',
                       '2026-12-04T15:00:00.000000', True, 'maintenance'),
    status.NovaService('old-hv', 'nova-compute', 'enabled', 'down', None, False, None),
]


@pytest.fixture
def fleet(tmp_path):
    path = tmp_path / 'fleet.yaml'
    path.write_text('hosts:\n' + ''.join(
        f'  - {{name: {n}, transport: sim, sim_state_file: /tmp/{n}.json}}\n'
        for n in ('hv01', 'hv02', 'hv03')))
    return inventory.load(str(path))


def test_api_sdk_and_cli_shapes_parse_alike():
    from openstack.compute.v2 import service as sdk_service

    assert status.parse_services(API_ROWS) == EXPECTED
    sdk = [sdk_service.Service.existing(**row).to_dict() for row in API_ROWS]
    assert 'is_forced_down' in sdk[1] and 'forced_down' not in sdk[1]
    assert status.parse_services(sdk) == EXPECTED
    # `openstack compute service list -f json` (its columns; no forced-down column)
    cli_rows = [{'ID': r['id'], 'Binary': r['binary'], 'Host': r['host'], 'Zone': r['zone'],
                 'Status': r['status'], 'State': r['state'], 'Updated At': r['updated_at']}
                for r in API_ROWS]
    parsed = status.parse_services(cli_rows)
    assert [(s.host, s.status, s.state, s.updated_at) for s in parsed] == [
        (s.host, s.status, s.state, s.updated_at) for s in EXPECTED]


def test_no_systemd_here_is_said_not_guessed(fleet):
    if status.systemd_available():
        pytest.skip('this machine runs systemd')
    statuses, strangers = status.fleet_status(fleet, None)
    assert [s.systemd for s in statuses] == [status.NO_SYSTEMD] * 3
    assert all(s.problems == [] for s in statuses)     # nothing known, nothing claimed
    text = status.table(statuses, strangers)
    assert 'nova was not asked' in text


def test_status_combines_systemd_and_nova(fleet):
    states = {'nova-compute@hv01.service': 'active', 'nova-compute@hv02.service': 'failed',
              'nova-compute@hv03.service': 'active'}
    statuses, strangers = status.fleet_status(fleet, status.parse_services(API_ROWS), states)
    by_host = {s.host: s for s in statuses}
    assert by_host['hv01'].problems == []
    assert by_host['hv02'].problems == ['nova-compute@hv02.service is failed',
                                        'nova says the service is down (forced down)']
    assert by_host['hv03'].problems == ['nova has no nova-compute service for this host']
    assert [s.host for s in strangers] == ['old-hv']
    text = status.table(statuses, strangers)
    row = next(line for line in text.splitlines() if line.startswith('hv02 '))
    assert row.split()[2:5] == ['failed', 'down', 'disabled']
    assert 'nova also has nova-compute on old-hv (down, enabled)' in text


def test_systemctl_is_active_output_is_read_per_unit(fleet, tmp_path, monkeypatch):
    """systemd does not run here: a stand-in systemctl answers as `systemctl is-active` does."""
    fake = tmp_path / 'bin' / 'systemctl'
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n[ "$1" = is-active ] && [ "$2" = -- ] || exit 64\n'
                    'echo active; echo inactive; echo failed; exit 3\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv('PATH', f'{fake.parent}{os.pathsep}{os.environ["PATH"]}')
    monkeypatch.setattr(status, 'systemd_available', lambda: True)
    statuses, _ = status.fleet_status(fleet, None)
    assert [s.systemd for s in statuses] == ['active', 'inactive', 'failed']
    fake.write_text('#!/bin/sh\necho "Failed to connect to bus" >&2; exit 1\n')
    statuses, _ = status.fleet_status(fleet, None)
    assert {s.systemd for s in statuses} == {'unknown (Failed to connect to bus)'}


def test_cli_status_from_a_services_file(fleet, tmp_path, capsys):
    services = tmp_path / 'services.json'
    services.write_text(json.dumps({'services': API_ROWS}))
    code = cli.main(['fleet', 'status', '-i', fleet.path, '--services-json', str(services)])
    out = capsys.readouterr().out
    assert code == 1
    assert 'hv03: nova has no nova-compute service for this host' in out
    assert cli.main(['fleet', 'status', '-i', fleet.path, '--services-json', str(services),
                     '--json']) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [r['nova']['state'] if r['nova'] else None for r in rows] == ['up', 'down', None]
    services.write_text('{"services": 3}')
    assert cli.main(['fleet', 'status', '-i', fleet.path, '--services-json',
                     str(services)]) == 1
    assert 'cannot read nova' in capsys.readouterr().err
