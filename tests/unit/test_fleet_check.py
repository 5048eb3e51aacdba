"""``psdriver fleet check``: simulated hosts (one state file each) and one host over real PSRP.

The PSRP host is the local WS-Man endpoint (pypsrp is the real client, over
HTTPS with basic auth and the password from the host's credentials file,
as nova-compute would read it) with a simulated Hyper-V host behind it.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from psdriver import cli
from psdriver.fleet import check, inventory
from psdriver.sim import SimHost
from tests.infra.wsman_endpoint import WSManEndpoint

from tests.bridge.test_psrp_runner import _self_signed

INSTANCES = 'C:\\OpenStack\\Instances'
SHARES = {'OpenStackInstances': INSTANCES}


def sim_entry(name: str, state_file, **extra) -> str:
    lines = [f'  - name: {name}', '    transport: sim', f'    sim_state_file: {state_file}']
    lines += [f'    {k}: {v}' for k, v in extra.items()]
    return '\n'.join(lines) + '\n'


def write_inventory(tmp_path, entries: str) -> str:
    path = tmp_path / 'fleet.yaml'
    path.write_text('defaults:\n  share: OpenStackInstances\nhosts:\n' + entries)
    return str(path)


@pytest.fixture
def sim_fleet(tmp_path):
    """hv-good is healthy, hv-bad has every problem, hv-down does not answer."""
    files = {name: tmp_path / f'{name}.json' for name in ('hv-good', 'hv-bad', 'hv-down')}
    SimHost(state_file=str(files['hv-good']), hostname='hv-good', smb_shares=SHARES)
    SimHost(state_file=str(files['hv-bad']), hostname='hv-bad', is_admin=False,
            ps_version='4.0', clock_offset_seconds=-120,
            modules={'Hyper-V': False, 'MPIO': True},
            smb_shares={'OpenStackInstances': 'D:\\elsewhere'})
    down = SimHost(state_file=str(files['hv-down']), hostname='hv-down', smb_shares=SHARES)
    down.faults.host_down()
    path = write_inventory(tmp_path, sim_entry('hv-good', files['hv-good'])
                           + sim_entry('hv-bad', files['hv-bad'], cluster='clu1')
                           + sim_entry('hv-down', files['hv-down']))
    return inventory.load(path), files


def test_every_problem_is_named_per_host(sim_fleet):
    fleet, _ = sim_fleet
    good, bad, down = check.check_fleet(fleet)
    assert good.ok and good.problems == []
    assert good.report['hostname'] == 'hv-good' and good.report['echo'] == 'hv-good'
    assert good.report['instances_path'] == {'path': INSTANCES, 'exists': True}
    assert abs(good.skew) < 2
    assert bad.problems == [
        'PowerShell 4.0 is older than 5.1',
        'the Hyper-V PowerShell module is not installed',
        'member of cluster clu1 but the FailoverClusters module is not installed',
        'the session of the account is not elevated (not an administrator)',
        f'SMB share OpenStackInstances exposes D:\\elsewhere, not instances_path {INSTANCES}',
        bad.problems[-1]]
    assert re.fullmatch(r"clock is -1[12]\d\.\d s off this node's \(limit 30 s\): fix NTP on "
                        r"the host or here", bad.problems[-1])
    assert -122 < bad.skew < -118
    assert not down.ok and down.report is None
    assert len(down.problems) == 1 and 'Test-PsDriverConnection failed' in down.problems[0]


def test_table_and_exit_status_name_the_failing_hosts(sim_fleet, capsys):
    fleet, _ = sim_fleet
    assert cli.main(['fleet', 'check', '-i', fleet.path]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ['HOST', 'ADDRESS']
    good = next(line for line in lines if line.startswith('hv-good '))
    assert good.split()[-1] == 'ok' and ' yes ' in good
    assert 'Hyper-V,MPIO,Storage,iSCSI' in good
    assert f'{INSTANCES} ok' in good and 'OpenStackInstances ok' in good
    bad = next(line for line in lines if line.startswith('hv-bad '))
    assert bad.split()[-1] == 'FAILED' and ' NO ' in bad and '-120.' in bad
    assert 'OpenStackInstances other folder' in bad
    assert lines[-1] == '1 of 3 hosts ok; failing: hv-bad, hv-down'
    assert cli.main(['fleet', 'check', '-i', fleet.path, '--host', 'hv-good']) == 0
    assert capsys.readouterr().out.splitlines()[-1] == '1 of 1 hosts ok'
    assert cli.main(['fleet', 'check', '-i', fleet.path, '--host', 'nope']) == 2


def test_a_missing_folder_and_share(tmp_path):
    state = tmp_path / 'hv.json'
    SimHost(state_file=str(state), hostname='hv')
    fleet = inventory.load(write_inventory(
        tmp_path, sim_entry('hv', state, instances_path='D:\\VMs')))
    (result,) = check.check_fleet(fleet)
    assert result.problems == ['instances_path D:\\VMs does not exist',
                               'SMB share OpenStackInstances does not exist']


def test_hosts_are_checked_in_parallel_but_bounded(tmp_path):
    entries = ''
    for n in range(5):
        state = tmp_path / f'hv{n}.json'
        SimHost(state_file=str(state), hostname=f'hv{n}', smb_shares=SHARES)
        entries += sim_entry(f'hv{n}', state)
    fleet = inventory.load(write_inventory(tmp_path, entries))
    lock, running, peak = threading.Lock(), [0], [0]

    def slow_check(fleet, host, **kwargs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.2)
            return check.check_host(fleet, host, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    results = check.check_fleet(fleet, parallel=2, check=slow_check)
    assert [r.host.name for r in results] == [f'hv{n}' for n in range(5)]   # inventory order
    assert all(r.ok for r in results)
    assert peak[0] == 2


def test_one_host_through_psrp_with_its_credentials_file(tmp_path, capsys, monkeypatch):
    for var in ('REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'):
        monkeypatch.delenv(var, raising=False)
    cert, key = _self_signed(tmp_path)
    password = "pa$$ 'word\""
    credentials = tmp_path / 'hv-psrp.conf'
    # oslo.config syntax, as nova-compute reads it: $ doubled
    credentials.write_text('[powershell]\npsrp_password = ' + password.replace('$', '$$') + '\n')
    credentials.chmod(0o600)
    host = SimHost(hostname='HV-PSRP', smb_shares=SHARES, clock_offset_seconds=3)
    sim_state = tmp_path / 'hv-sim.json'
    SimHost(state_file=str(sim_state), hostname='hv-sim', smb_shares=SHARES)
    with WSManEndpoint(username='psdriver', password=password, host=host, certfile=cert,
                       keyfile=key) as endpoint:
        path = write_inventory(tmp_path, (
            '  - name: hv-psrp\n    address: 127.0.0.1\n'
            f'    port: {endpoint.port}\n    auth: basic\n    username: psdriver\n'
            f'    cert_validation: {cert}\n    credentials: {credentials}\n')
            + sim_entry('hv-sim', sim_state))
        assert cli.main(['fleet', 'check', '-i', path, '--json']) == 0
        out = capsys.readouterr().out
        assert endpoint.action_count('Command') == 1        # one round trip
        (pipeline,) = endpoint.pipelines
        assert 'hv-psrp' in pipeline.params['PsDriverInput']
        assert not [v for v in pipeline.params.values() if password in str(v)]
        assert password not in out
        # a wrong password: the host fails, named, and nothing leaks
        credentials.write_text('[powershell]\npsrp_password = wrong\n')
        fleet = inventory.load(path)
        (result,) = check.check_fleet(fleet, [fleet.host('hv-psrp')])
        assert not result.ok and 'wrong' not in ' '.join(result.problems)
        assert endpoint.rejected >= 1
    import json
    report = {entry['host']: entry for entry in json.loads(out)}
    psrp = report['hv-psrp']
    assert psrp['ok'] and psrp['report']['hostname'] == 'HV-PSRP'
    assert psrp['report']['share']['matches_instances_path'] is True
    assert 2 < psrp['clock_skew_seconds'] < 4
    assert report['hv-sim']['ok']


def test_each_host_gets_its_own_options(tmp_path):
    """Two hosts' settings never mix, and nova's global configuration is not touched."""
    import nova.conf

    path = write_inventory(tmp_path, (
        '  - {name: a, address: a.example, port: 1111, auth: kerberos}\n'
        '  - {name: b, address: b.example, port: 2222, auth: kerberos}\n'))
    fleet = inventory.load(path)
    global_port = nova.conf.CONF.powershell.psrp_port
    first = check.host_conf(fleet, fleet.host('a'), 5)
    second = check.host_conf(fleet, fleet.host('b'), 5)
    assert (first.host, first.powershell.psrp_host, first.powershell.psrp_port) == (
        'a', 'a.example', 1111)
    assert (second.host, second.powershell.psrp_host, second.powershell.psrp_port) == (
        'b', 'b.example', 2222)
    assert nova.conf.CONF.powershell.psrp_port == global_port


def test_unreadable_credentials_file_fails_that_host_only(tmp_path):
    good = tmp_path / 'good.json'
    SimHost(state_file=str(good), hostname='good', smb_shares=SHARES)
    path = write_inventory(tmp_path, (
        '  - name: locked\n    address: 127.0.0.1\n    port: 1\n    username: u\n'
        f'    credentials: {tmp_path}/missing.conf\n') + sim_entry('good', good))
    locked, ok = check.check_fleet(inventory.load(path), timeout=2)
    assert ok.ok
    assert locked.problems == [f'cannot read credentials file {tmp_path}/missing.conf: '
                               + locked.problems[0].split(': ', 1)[1]]
    assert 'run as root' in locked.problems[0]
    empty = tmp_path / 'empty.conf'
    empty.write_text('[powershell]\n')
    path = write_inventory(tmp_path, (
        '  - name: nopass\n    address: 127.0.0.1\n    port: 1\n    username: u\n'
        f'    credentials: {empty}\n'))
    (nopass,) = check.check_fleet(inventory.load(path), timeout=2)
    assert nopass.problems == [f'credentials file {empty} has no [powershell] psrp_password']
