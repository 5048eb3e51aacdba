"""Pure parts of the instance spec: generation, secure boot, vNUMA, lifecycle transitions."""

from __future__ import annotations

import pytest
from nova import exception, objects
from nova.virt import event as virtevent

from psdriver.ops import eventhandler, vmops

objects.register_all()


def flavor(**kw):
    values = {'vcpus': 4, 'memory_mb': 4096, 'root_gb': 10, 'ephemeral_gb': 0, 'swap': 0,
              'extra_specs': {}, 'name': 'm1', 'flavorid': '1'}
    values.update(kw)
    return objects.Flavor(**values)


def instance(**flavor_kw):
    return objects.Instance(uuid='4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f', os_type=None,
                            flavor=flavor(**flavor_kw))


def image(**props):
    return objects.ImageMeta.from_dict({'id': '0c7e2a55-6f0e-4d7c-9e4c-2b8f1a3d5e70',
                                        'disk_format': 'vhd', 'properties': props})


@pytest.mark.parametrize('props, generation', [
    ({}, 1), ({'hw_machine_type': 'hyperv-gen1'}, 1), ({'hw_machine_type': 'hyperv-gen2'}, 2),
    ({'hw_machine_type': 'HyperV-Gen2'}, 2)])
def test_generation_from_hw_machine_type(props, generation):
    assert vmops.vm_generation(image(**props)) == generation


def test_unknown_machine_type_is_refused():
    with pytest.raises(exception.ImageUnacceptable, match='hw_machine_type'):
        vmops.vm_generation(image(hw_machine_type='pc-q35'))


def test_secure_boot_off_unless_required():
    assert vmops.secure_boot(instance(), image(), 2) is None
    assert vmops.secure_boot(instance(extra_specs={'os:secure_boot': 'disabled'}),
                             image(), 2) is None


def test_secure_boot_from_flavor_picks_the_template_by_os_type():
    inst = instance(extra_specs={'os:secure_boot': 'required'})
    assert vmops.secure_boot(inst, image(), 2) == {'enabled': True,
                                                   'template': 'MicrosoftWindows'}
    assert vmops.secure_boot(inst, image(os_type='linux'), 2) == {
        'enabled': True, 'template': 'MicrosoftUEFICertificateAuthority'}


def test_secure_boot_from_image_property():
    assert vmops.secure_boot(instance(), image(os_secure_boot='required'), 2)['enabled']


def test_secure_boot_needs_generation_2():
    with pytest.raises(exception.InstanceUnacceptable, match='generation 2'):
        vmops.secure_boot(instance(), image(os_secure_boot='required'), 1)


def test_vnuma_limits_per_node():
    inst = instance(extra_specs={'hw:numa_nodes': '2'})
    assert vmops.vnuma(inst, image()) == {'enabled': True, 'max_processors_per_node': 2,
                                          'max_memory_per_node_mb': 2048}
    assert vmops.vnuma(instance(), image()) is None


def test_vnuma_refuses_unequal_cells():
    inst = instance(extra_specs={'hw:numa_nodes': '2', 'hw:numa_cpus.0': '0',
                                 'hw:numa_cpus.1': '1,2,3', 'hw:numa_mem.0': '1024',
                                 'hw:numa_mem.1': '3072'})
    with pytest.raises(exception.InstanceUnacceptable, match='equal'):
        vmops.vnuma(inst, image())


@pytest.mark.parametrize('before, after, expected', [
    ('Running', 'Off', virtevent.EVENT_LIFECYCLE_STOPPED),
    ('Off', 'Running', virtevent.EVENT_LIFECYCLE_STARTED),
    ('Paused', 'Running', virtevent.EVENT_LIFECYCLE_RESUMED),
    ('Running', 'Paused', virtevent.EVENT_LIFECYCLE_PAUSED),
    ('Running', 'Saved', virtevent.EVENT_LIFECYCLE_SUSPENDED),
])
def test_transitions(before, after, expected):
    assert eventhandler.transitions({'u': before}, {'u': after}) == [('u', expected)]


def test_no_event_for_unchanged_new_or_transitional_vms():
    assert eventhandler.transitions({'a': 'Running', 'b': 'Running'},
                                    {'a': 'Running', 'b': 'Stopping', 'c': 'Off'}) == []


def test_poller_emits_events_between_polls():
    states = [{'u': {'state': 'Running'}}, {'u': {'state': 'Running'}},
              {'u': {'state': 'Off'}}]
    emitted = []
    poller = eventhandler.LifecycleEventPoller(lambda: states.pop(0), emitted.append, 1)
    assert [poller.poll_once() for _ in range(3)] == [0, 0, 1]
    assert emitted[0].uuid == 'u'
    assert emitted[0].transition == virtevent.EVENT_LIFECYCLE_STOPPED


def test_power_state_map_matches_compute_hyperv():
    from nova.compute import power_state
    assert vmops.POWER_STATE['Off'] == power_state.SHUTDOWN
    assert vmops.POWER_STATE['Running'] == power_state.RUNNING
    assert vmops.POWER_STATE['Paused'] == power_state.PAUSED
    assert vmops.POWER_STATE['Saved'] == power_state.SUSPENDED
