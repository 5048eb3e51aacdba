"""The simulated New-Instance checks a spec with the contract's schema, not a copy of its own."""

from __future__ import annotations

import copy

import pytest

from psdriver.bridge import contracts
from psdriver.sim import SimHost, dispatch
from psdriver.sim.errors import SimError

CONTRACT = contracts.load_contract('New-Instance')
EXAMPLE = next(e['Spec'] for e in CONTRACT.examples)


def new_instance(host: SimHost, spec) -> None:
    """The simulated script, without the bridge's own check of the spec in front of it."""
    entry = dispatch.get_handler('New-Instance')
    with host.transaction(write=True):
        entry.func(host, dispatch.bind_parameters('New-Instance', {'Spec': spec}))


def broken(**changes):
    spec = copy.deepcopy(EXAMPLE)
    for key, value in changes.items():
        spec[key] = value
    return spec


@pytest.mark.parametrize('spec', [
    broken(vcpus=0), broken(vcpus=241), broken(memory_mb=33), broken(memory_mb=16),
    broken(name='x' * 101), broken(name='   '), broken(generation=3),
    broken(dynamic_memory_ratio=0.5), broken(surprise=True),
    broken(instance_uuid='not-a-uuid'), broken(instance_dir='relative\\dir'),
    broken(serial_ports=[{'port': 3, 'pipe': 'x'}]),
    broken(config_drive={'content_base64': 'QUJDRA==', 'format': 'vhd', 'as_dvd': True}),
], ids=lambda spec: next((k for k in spec if spec.get(k) != EXAMPLE.get(k)), 'spec'))
def test_a_spec_the_schema_refuses_is_refused_with_the_schema_reason(spec):
    with pytest.raises(contracts.ShapeError) as expected:
        CONTRACT.validate_spec(spec)
    host = SimHost()
    with pytest.raises(SimError) as refused:
        new_instance(host, spec)
    error = refused.value
    assert (error.category, error.error_id) == ('InvalidArgument', 'PsDriver.InvalidSpec')
    assert error.message.startswith('Invalid instance spec: spec')
    words = expected.value.message.split(' ', 1)[1] if expected.value.path else \
        expected.value.message.removeprefix('the value ')
    assert error.message.endswith(words + '.'), (error.message, expected.value.message)
    assert host.list_vms() == []


def test_what_the_schema_cannot_say_is_still_checked():
    spec = broken(nics=[{'id': 'port-1', 'mac': 'fa:16:3e:00:00:01'},
                        {'id': 'PORT-1', 'mac': 'fa:16:3e:00:00:02'}])
    CONTRACT.validate_spec(spec)
    with pytest.raises(SimError, match=r"spec.nics\[1\].id repeats the port id 'PORT-1'"):
        new_instance(SimHost(), spec)
