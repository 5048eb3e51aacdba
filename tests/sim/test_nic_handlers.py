"""Connect-InstanceNetworkAdapter on the simulated host: reading the Nics entries."""

from __future__ import annotations

import pytest

from psdriver.sim import SimError, dispatch
from psdriver.sim.scenario import add_instance, ensure_switch

PORT = '3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b'


def _connect(host, nics):
    with host.transaction():
        return dispatch.get_handler('Connect-InstanceNetworkAdapter').func(
            host, {'Name': 'instance-00000001', 'Nics': nics})


@pytest.fixture
def instance(host):
    ensure_switch(host, 'br-int')
    add_instance(host, 'instance-00000001')
    return host


def test_entry_keys_are_read_case_insensitively(instance):
    # The script compares the keys one by one, case-insensitively (Get-SpecValue), so the
    # entry reads the same whether 5.1 (case-sensitive Dictionary) or 7 decoded it.
    out = _connect(instance, [{'Id': PORT, 'MAC': 'fa:16:3e:01:02:03', 'Switch': 'br-int',
                               'VLAN': 101}])
    assert out['created'] == [PORT]
    assert out['nics'] == [{'name': PORT, 'mac': 'fa:16:3e:01:02:03', 'switch': 'br-int',
                            'vlan': 101, 'connected': True}]


def test_the_first_spelling_of_a_key_wins(instance):
    out = _connect(instance, [{'id': PORT, 'mac': 'fa:16:3e:01:02:03', 'vlan': 7, 'Vlan': 9}])
    assert out['nics'][0]['vlan'] == 7


def test_an_entry_without_an_id_is_refused(instance):
    with pytest.raises(SimError) as exc:
        _connect(instance, [{'mac': 'fa:16:3e:01:02:03'}])
    assert exc.value.category == 'InvalidArgument'
    assert exc.value.error_id == 'PsDriver.InvalidNicSpec'
