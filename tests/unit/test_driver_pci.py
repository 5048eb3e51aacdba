"""PCI passthrough (Discrete Device Assignment) through HyperVDriver on the simulated host."""

from __future__ import annotations

import json

import pytest
from nova import exception, objects

from tests.unit.driver_env import INSTANCES, DriverEnv

GPU = {'location_path': 'PCIROOT(0)#PCI(0300)#PCI(0000)',
       'instance_id': 'PCIP\\VEN_10DE&DEV_1EB8&SUBSYS_12A210DE&REV_A1\\6&2B1C0D3E&0&0000',
       'vendor_id': '10de', 'product_id': '1eb8', 'address': '0000:03:00.0', 'numa_node': 1}
NIC = {'location_path': 'PCIROOT(0)#PCI(0100)#PCI(0000)', 'instance_id': 'PCIP\\VEN_8086',
       'vendor_id': '8086', 'product_id': '0d58', 'address': None, 'numa_node': None}


@pytest.fixture
def env(tmp_path):
    with DriverEnv(tmp_path) as env:
        driver = env.build()
        env.host.state.config.assignable_devices = [dict(GPU), dict(NIC)]
        driver.init_host('SIMHV01')
        yield env


def with_devices(instance, *addresses):
    instance.pci_devices = objects.PciDeviceList(objects=[
        objects.PciDevice(address=address, vendor_id='10de', product_id='1eb8',
                          dev_type='type-PCI', status='allocated') for address in addresses])
    return instance


def host_devices(env):
    return {d['location_path']: d['assigned_to']
            for d in env.driver.hostops.host_info(refresh=True)['assignable_devices']}


def test_assignable_devices_are_nova_s_pci_passthrough_devices(env):
    resources = env.driver.get_available_resource(env.driver.get_available_nodes()[0])
    devices = json.loads(resources['pci_passthrough_devices'])
    # The second device has no PCI address Windows reports: nova could not track it.
    assert devices == [{'dev_id': 'pci_0000_03_00_0', 'address': '0000:03:00.0',
                        'vendor_id': '10de', 'product_id': '1eb8', 'numa_node': 1,
                        'label': 'label_10de_1eb8', 'dev_type': 'type-PCI'}]


def test_spawn_assigns_the_claimed_device_with_what_dda_needs(env):
    env.flags('hyperv', dynamic_memory_ratio=2.0)
    image = env.image(hw_machine_type='hyperv-gen2')
    instance = with_devices(env.instance(image), GPU['address'])
    env.spawn(instance, image)

    vm = env.vm(instance)
    assert vm.extra['assigned_devices'] == [GPU['location_path']]
    assert vm.automatic_stop_action == 'TurnOff'
    assert vm.dynamic_memory is False
    assert vm.extra['mmio'] == {'guest_controlled_cache_types': True, 'low_mb': 3072,
                                'high_mb': 33280}
    assert vm.state == 'Running'
    assert host_devices(env)[GPU['location_path']] == instance.name

    # Destroy gives the device back to the host's pool.
    env.driver.destroy(None, instance, [])
    assert host_devices(env)[GPU['location_path']] is None


def test_a_device_in_use_is_compute_resources_unavailable_and_rolls_back(env):
    image = env.image(hw_machine_type='hyperv-gen2')
    first = with_devices(env.instance(image), GPU['address'])
    env.spawn(first, image)
    second = with_devices(env.instance(image), GPU['address'])

    with pytest.raises(exception.ComputeResourcesUnavailable,
                       match='already assigned to virtual machine'):
        env.spawn(second, image)
    assert env.host.find_vm(second.name) is None
    assert not env.host.exists(f'{INSTANCES}\\{second.name}')
    assert host_devices(env)[GPU['location_path']] == first.name


def test_a_claimed_device_the_host_does_not_offer_is_refused_before_anything(env):
    image = env.image(hw_machine_type='hyperv-gen2')
    instance = with_devices(env.instance(image), '0000:81:00.0')
    with pytest.raises(exception.ComputeResourcesUnavailable, match='0000:81:00.0'):
        env.spawn(instance, image)
    assert env.calls_of('New-Instance') == []


def test_no_devices_no_dda_settings(env):
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)
    assert 'assigned_devices' not in env.vm(instance).extra
    assert env.vm(instance).automatic_stop_action != 'TurnOff'
