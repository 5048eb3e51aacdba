"""VM identity, settings and memory/CPU capacity."""

from __future__ import annotations

import pytest

from psdriver.sim import SimError, SimHost, dispatch


def test_names_are_unique_case_insensitively(host):
    host.create_vm('instance-0001')
    with pytest.raises(SimError) as exc:
        host.create_vm('INSTANCE-0001')
    assert exc.value.category == 'ResourceExists'
    assert len(host.list_vms()) == 1


def test_rename_keeps_names_unique(host):
    host.create_vm('a')
    host.create_vm('b')
    with pytest.raises(SimError):
        host.rename_vm('a', 'B')
    host.rename_vm('a', 'c')
    assert [vm.name for vm in host.list_vms()] == ['b', 'c']
    assert host.get_vm('C').name == 'c'


def test_lookup(host):
    vm = host.create_vm('Web-01')
    assert host.get_vm('web-01') is vm
    assert host.get_vm_by_id(vm.id.lower()) is vm
    assert host.find_vm('nope') is None
    assert [v.name for v in host.list_vms('web-*')] == ['Web-01']
    with pytest.raises(SimError, match='unable to find a virtual machine with id'):
        host.get_vm_by_id('00000000-0000-0000-0000-000000000000')


@pytest.mark.parametrize('bad', ['', '   ', 'x' * 101, 'a/b', 'tab\there'])
def test_invalid_names(host, bad):
    with pytest.raises(SimError) as exc:
        host.create_vm(bad)
    assert exc.value.category == 'InvalidArgument'


def test_notes_hold_the_instance_uuid(host):
    host.create_vm('vm', notes='0f4e...')
    host.set_notes('vm', '6d0c9a5e-7a1f-4f87-9a43-3f3a7f6d0a11\nextra')
    assert host.get_vm('vm').notes.startswith('6d0c9a5e')


def test_generation_defaults(host):
    g1 = host.create_vm('g1', generation=1)
    g2 = host.create_vm('g2')
    assert (g1.secure_boot, g2.secure_boot) == (False, True)
    assert g2.secure_boot_template == 'MicrosoftWindows'
    with pytest.raises(SimError):
        host.create_vm('g3', generation=3)


def test_secure_boot_rules(host):
    host.create_vm('g1', generation=1)
    host.create_vm('g2')
    with pytest.raises(SimError, match='generation 2'):
        host.set_secure_boot('g1', True)
    host.set_secure_boot('g2', True, 'MicrosoftUEFICertificateAuthority')
    assert host.get_vm('g2').secure_boot_template == 'MicrosoftUEFICertificateAuthority'
    with pytest.raises(SimError):
        host.set_secure_boot('g2', True, 'NoSuchTemplate')
    host.start_vm('g2')
    with pytest.raises(SimError, match='current state'):
        host.set_secure_boot('g2', False)


def test_memory_validation(host):
    host.create_vm('vm', memory_startup_mb=2048)
    with pytest.raises(SimError, match='multiple of 2 MB'):
        host.set_memory('vm', 1025)
    with pytest.raises(SimError):
        host.set_memory('vm', 16)
    with pytest.raises(SimError, match='dynamic memory'):
        host.set_memory('vm', 2048, dynamic=True, minimum_mb=4096, maximum_mb=8192)
    host.set_memory('vm', 2048, dynamic=True, minimum_mb=512, maximum_mb=8192)
    vm = host.get_vm('vm')
    assert (vm.dynamic_memory, vm.memory_minimum_mb, vm.memory_maximum_mb) == (True, 512, 8192)


def test_running_vm_may_only_grow_static_memory_within_free_memory():
    host = SimHost(memory_mb=8192, host_reserved_memory_mb=2048)
    host.create_vm('vm', memory_startup_mb=2048)
    host.start_vm('vm')
    host.set_memory('vm', 4096)
    assert host.memory_free_mb() == 8192 - 2048 - 4096
    with pytest.raises(SimError) as exc:
        host.set_memory('vm', 8192)
    assert exc.value.category == 'ResourceUnavailable'
    with pytest.raises(SimError, match='current state'):
        host.set_memory('vm', dynamic=True)


def test_processor_count_limits(host):
    host.create_vm('vm')
    host.set_processor_count('vm', 16)
    with pytest.raises(SimError, match='out of range'):
        host.set_processor_count('vm', 17)          # host has 16 logical processors
    with pytest.raises(SimError):
        host.set_processor_count('vm', 0)
    host.start_vm('vm')
    with pytest.raises(SimError, match='current state'):
        host.set_processor_count('vm', 2)


def test_starting_needs_free_memory():
    host = SimHost(memory_mb=8192, host_reserved_memory_mb=2048)
    host.create_vm('a', memory_startup_mb=4096)
    host.create_vm('b', memory_startup_mb=4096)
    host.start_vm('a')
    with pytest.raises(SimError) as exc:
        host.start_vm('b')
    err = exc.value
    assert err.category == 'ResourceUnavailable'
    assert 'Not enough memory in the system to start the virtual machine b' in err.message
    assert host.get_vm('b').state == 'Off'
    host.stop_vm('a')
    host.start_vm('b')


def test_numa_nodes_fill_the_freest_node_first():
    host = SimHost(memory_mb=16384, host_reserved_memory_mb=0, numa_nodes=2)
    for name in ('a', 'b', 'c'):
        host.create_vm(name, memory_startup_mb=4096)
        host.start_vm(name)
    nodes = host.numa_nodes()
    assert [n['memory_mb_total'] for n in nodes] == [8192, 8192]
    assert sorted(n['memory_mb_free'] for n in nodes) == [0, 4096]
    assert sum(n['memory_mb_free'] for n in nodes) == host.memory_free_mb()
    assert [n['logical_processors'] for n in nodes] == [8, 8]


def test_remove_vm_rules(host):
    host.create_vm('vm')
    host.start_vm('vm')
    with pytest.raises(SimError, match='current state'):
        host.remove_vm('vm')
    host.save_vm('vm')
    free = host.volume_free('C:\\')
    host.remove_vm('vm')                                 # a saved VM can go; its state too
    assert host.volume_free('C:\\') > free
    assert host.find_vm('vm') is None
    host.create_vm('vm')                                 # the name is free again


@pytest.mark.parametrize('state', ['OffCritical', 'SavedCritical'])
def test_remove_instance_takes_a_vm_with_lost_storage_as_it_is(host, state):
    vm = host.create_vm('instance-00000007')
    vm.state = state
    with host.transaction():
        result = dispatch.get_handler('Remove-Instance').func(host, {'Name': vm.name})
    assert result['existed'] and result['previous_state'] == state
    assert host.find_vm(vm.name) is None


@pytest.mark.parametrize('state', ['Saved', 'OffCritical', 'Running'])
def test_a_failed_spawn_removes_its_vm_whatever_its_state(host, state):
    from psdriver.sim.handlers.spawn import _undo
    vm = host.create_vm('instance-00000008')
    vm.state = state                                    # as the Remove-Instance test above
    with host.transaction():
        _undo(host, [('VM', vm.name)])                  # as New-Instance's Undo-Creation
    assert host.find_vm(vm.name) is None


def test_running_vm_limit():
    host = SimHost(max_running_vms=2)
    for name in 'abc':
        host.create_vm(name, memory_startup_mb=32)
    host.start_vm('a')
    host.start_vm('b')
    with pytest.raises(SimError) as exc:
        host.start_vm('c')
    assert exc.value.category == 'LimitsExceeded'


def test_capacity_keywords_are_checked():
    with pytest.raises(TypeError):
        SimHost(no_such_option=1)
    with pytest.raises(ValueError):
        SimHost(logical_processors=15)


def test_thousand_vms_stay_fast(host):
    import time
    started = time.monotonic()
    for i in range(1000):
        host.create_vm(f'instance-{i:05d}', memory_startup_mb=32)
        host.start_vm(f'instance-{i:05d}')
    assert len(host.list_vms('instance-*')) == 1000
    assert host.memory_free_mb() == 65536 - 2048 - 32000
    assert time.monotonic() - started < 5
