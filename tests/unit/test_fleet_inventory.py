"""The fleet inventory: what it accepts, and the file and line of every refusal."""

from __future__ import annotations

import textwrap

import pytest

from psdriver.fleet import inventory
from psdriver.fleet.inventory import InventoryError

GOOD = """\
fleet:
  state_dir: /var/lib/nova/fleet
defaults:
  auth: ntlm
  username: EXAMPLE\\nova-hyperv
  share: OpenStackInstances
hosts:
  - name: hv01
    address: hv01.example.org
    credentials: /etc/nova/fleet/credentials/hv01.conf
  - name: hv02
    address: 192.0.2.12
    port: 5985
    ssl: false
    message_encryption: always
    credentials: /etc/nova/fleet/credentials/hv02.conf
    instances_path: D:\\VMs
    cluster: clu1
  - name: sim03
    transport: sim
    sim_state_file: /var/lib/psdriver/sim03.json
"""


def write(tmp_path, text, name='fleet.yaml'):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding='utf-8')
    return str(path)


def refusal(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as info:
        inventory.load(path)
    assert str(info.value).startswith(f'{path}:')
    return info.value


def test_a_good_inventory_with_defaults_applied(tmp_path):
    fleet = inventory.load(write(tmp_path, GOOD))
    assert [h.name for h in fleet.hosts] == ['hv01', 'hv02', 'sim03']
    hv01, hv02, sim03 = fleet.hosts
    assert (hv01.address, hv01.port, hv01.ssl, hv01.auth) == ('hv01.example.org', 5986, True,
                                                              'ntlm')
    assert hv01.username == 'EXAMPLE\\nova-hyperv'
    assert hv01.instances_path == 'C:\\OpenStack\\Instances'
    assert hv01.share == 'OpenStackInstances' and hv01.cluster is None
    assert (hv02.port, hv02.ssl, hv02.instances_path, hv02.cluster) == (5985, False, 'D:\\VMs',
                                                                        'clu1')
    assert hv02.line == 11
    assert sim03.transport == 'sim' and sim03.credentials is None
    assert fleet.state_path(hv02) == '/var/lib/nova/fleet/hv02'
    assert fleet.common_config == '/etc/nova/nova.conf'


def test_port_follows_ssl_when_not_given(tmp_path):
    fleet = inventory.load(write(tmp_path, """\
        hosts:
          - {name: a, address: a.example.org, ssl: false, auth: kerberos}
          - {name: b, address: b.example.org, auth: kerberos}
        """))
    assert [h.port for h in fleet.hosts] == [5985, 5986]


@pytest.mark.parametrize('key', ['password', 'psrp_password', 'Passwd', 'secret', 'api_token',
                                 'private_key'])
def test_a_secret_in_the_inventory_is_refused_with_its_line(tmp_path, key):
    error = refusal(tmp_path, f"""\
        hosts:
          - name: hv01
            address: hv01.example.org
            {key}: hunter2
        """)
    assert error.line == 4
    assert 'secret' in error.message and 'credentials' in error.message
    assert 'hunter2' not in str(error)


def test_a_secret_in_defaults_is_refused_too(tmp_path):
    error = refusal(tmp_path, """\
        defaults:
          psrp_password: hunter2
        hosts:
          - {name: hv01, address: hv01.example.org, auth: kerberos}
        """)
    assert error.line == 2 and 'hunter2' not in str(error)


@pytest.mark.parametrize('text, line, words', [
    ('hosts:\n  - name: hv01\n    adress: x\n', 3, "unknown key 'adress'"),
    ('hosts:\n  - name: hv01\n    address: x\n    port: 70000\n    auth: kerberos\n', 4,
     'port 70000'),
    ('hosts:\n  - name: hv01\n    address: x\n    port: "5986"\n', 4, 'port must be a number'),
    ('hosts:\n  - name: hv01\n    address: x\n    port: true\n', 4, 'port must be a number'),
    ('hosts:\n  - name: hv01\n    address: x\n    auth: digest\n', 4, "auth 'digest'"),
    ('hosts:\n  - name: hv01\n    address: x\n', 2, 'needs username'),
    ('hosts:\n  - name: hv01\n    address: x\n    username: u\n', 2, 'needs credentials'),
    ('hosts:\n  - name: hv01\n    address: x\n    username: u\n    credentials: rel.conf\n', 5,
     'absolute path'),
    ('hosts:\n  - name: hv_01\n    address: x\n', 2, "name 'hv_01'"),
    ('hosts:\n  - address: x\n', 2, 'name is required'),
    ('hosts:\n  - name: hv01\n    auth: kerberos\n', 2, 'address is required'),
    ('hosts:\n  - name: hv01\n    address: x\n    auth: kerberos\n    instances_path: vms\n',
     5, 'not an absolute Windows path'),
    ('hosts:\n  - name: hv01\n    address: x\n    auth: kerberos\n    share: a\\b\n', 5,
     'SMB share name'),
    ('hosts:\n  - name: hv01\n    address: x\n    auth: basic\n    username: u\n'
     '    credentials: /c\n    ssl: false\n', 7, 'only allowed over HTTPS'),
    ('hosts:\n  - name: hv01\n    address: x\n    auth: certificate\n', 4,
     'certificate_pem'),
    ('hosts:\n  - name: s1\n    transport: sim\n', 3, 'sim_state_file'),
    ('hosts:\n  - name: hv01\n    address: [a, b]\n', 3, 'single value'),
    ('hosts:\n  - name: hv01\n    name: hv02\n', 3, 'given twice (first on line 2)'),
    ('hosts:\n  - name: hv01\n    address: a\n    auth: kerberos\n'
     '  - name: HV01\n    address: b\n    auth: kerberos\n', 5, 'listed twice (first on line 2)'),
    ('hosts:\n  - name: hv01\n    address: A.example\n    auth: kerberos\n'
     '  - name: hv02\n    address: a.example\n    auth: kerberos\n', 5,
     "same address and port as 'hv01' (line 2)"),
    ('hosts: []\n', 1, 'the list is empty'),
    ('hosts:\n  name: hv01\n', 2, 'hosts must be a list'),
    ('fleet:\n  state_dir: relative\nhosts: []\n', 2, 'absolute path'),
    ('fleet:\n  statedir: /x\nhosts: []\n', 2, "unknown key 'statedir'"),
    ('defaults:\n  name: x\nhosts: []\n', 2, "'name' cannot have a default"),
    ('host:\n  - name: hv01\n', 1, "unknown top-level key 'host'"),
    ('hosts:\n  - name: hv01\n    address: "unterminated\n', 4, 'not valid YAML'),
])
def test_bad_input_is_refused_naming_the_line(tmp_path, text, line, words):
    error = refusal(tmp_path, text)
    assert error.line == line, str(error)
    assert words in error.message, str(error)


def test_an_empty_or_missing_inventory(tmp_path):
    error = refusal(tmp_path, '')
    assert 'empty' in error.message and error.line is None
    missing = str(tmp_path / 'nope.yaml')
    with pytest.raises(InventoryError, match=f'^{missing}: cannot read the inventory'):
        inventory.load(missing)
