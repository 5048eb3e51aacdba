"""VIFs through HyperVDriver on the simulated host: plug, unplug, attach and detach."""

from __future__ import annotations

import pytest
from nova import exception

from psdriver.ops import vifops

from tests.unit.driver_env import SWITCH, DriverEnv, vif


@pytest.fixture
def env(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.start()
        yield env


def spawned(env, generation: int = 2, ports=(), **spawn_kw):
    image = env.image(hw_machine_type=f'hyperv-gen{generation}')
    instance = env.instance(image)
    env.spawn(instance, image, list(ports), **spawn_kw)
    return instance, image


def adapters(env, instance) -> dict[str, tuple[str, str | None, int | None]]:
    """Port id -> (MAC, switch, VLAN) of the VM's adapters."""
    return {n.name: (n.mac_address, n.switch_name, n.vlan_id) for n in env.vm(instance).nics}


def test_plug_vifs_brings_the_adapters_in_line_in_one_round_trip(env):
    first, second = vif('fa:16:3e:00:00:01', vlan=10), vif('fa:16:3e:00:00:02')
    instance, _ = spawned(env, ports=[first, second], power_on=False)
    vm = env.vm(instance)
    env.host.set_nic_mac(instance.name, vm.nics[0].id, '00155D000099')   # drifted on the host
    env.flags('hyperv', vswitch_name=SWITCH)

    assert env.round_trips(env.driver.plug_vifs, instance, [first, second]) == 1
    assert adapters(env, instance) == {first['id']: ('FA163E000001', SWITCH, 10),
                                       second['id']: ('FA163E000002', SWITCH, None)}


def test_plug_vifs_adds_a_missing_adapter_to_a_stopped_vm(env):
    first, later = vif('fa:16:3e:00:00:01'), vif('fa:16:3e:00:00:03', vlan=300)
    instance, _ = spawned(env, generation=1, ports=[first], power_on=False)
    env.driver.plug_vifs(instance, [first, later])
    assert adapters(env, instance)[later['id']] == ('FA163E000003', None, 300)


def test_plug_vifs_without_ports_costs_nothing(env):
    instance, _ = spawned(env)
    assert env.round_trips(env.driver.plug_vifs, instance, []) == 0


def test_unplug_vifs_without_vswitch_name_leaves_the_agent_s_connection(env):
    """plug connected nothing (the L2 agent owns the connection): unplug touches nothing."""
    port = vif()
    instance, _ = spawned(env, ports=[port])
    env.host.connect_nic(instance.name, env.vm(instance).nics[0].id, SWITCH)   # the agent
    assert env.round_trips(env.driver.unplug_vifs, instance, [port]) == 0
    assert adapters(env, instance) == {port['id']: ('FA163E010203', SWITCH, None)}


def test_unplug_vifs_disconnects_what_plug_connected_in_one_round_trip(env):
    env.flags('hyperv', vswitch_name=SWITCH)
    first, second = vif('fa:16:3e:00:00:01', vlan=10), vif('fa:16:3e:00:00:02')
    instance, _ = spawned(env, ports=[first, second])
    env.driver.plug_vifs(instance, [first, second])

    assert env.round_trips(env.driver.unplug_vifs, instance, [first, second]) == 1
    # The adapters stay with their MAC and VLAN, off the switch; the VM keeps running.
    assert adapters(env, instance) == {first['id']: ('FA163E000001', None, 10),
                                       second['id']: ('FA163E000002', None, None)}
    assert env.vm(instance).state == 'Running'
    result = env.calls[-1].result
    assert sorted(result['disconnected']) == sorted([first['id'], second['id']])

    # Again, and plug afterwards: idempotent both ways.
    env.driver.unplug_vifs(instance, [first, second])
    assert env.calls[-1].result['not_connected'] == [first['id'], second['id']]
    env.driver.plug_vifs(instance, [first, second])
    assert {a[1] for a in adapters(env, instance).values()} == {SWITCH}


def test_unplug_vifs_leaves_an_adapter_moved_to_another_switch(env):
    env.flags('hyperv', vswitch_name=SWITCH)
    port = vif()
    instance, _ = spawned(env, ports=[port])
    env.host.add_switch('other', 'Private')
    env.host.connect_nic(instance.name, env.vm(instance).nics[0].id, 'other')
    env.driver.unplug_vifs(instance, [port])
    assert env.calls[-1].result['not_connected'] == [port['id']]
    assert adapters(env, instance)[port['id']][1] == 'other'


def test_unplug_vifs_of_a_missing_vm_or_adapter_is_fine(env):
    env.flags('hyperv', vswitch_name=SWITCH)
    port, gone = vif(), vif('fa:16:3e:00:00:09')
    instance, _ = spawned(env, ports=[port])
    env.driver.unplug_vifs(instance, [port, gone])
    assert env.calls[-1].result['missing'] == [gone['id']]
    env.driver.destroy(None, instance, [])
    env.driver.unplug_vifs(instance, [port])
    assert env.calls[-1].result['vm_found'] is False


def test_attach_interface_with_the_port_mac_vlan_and_switch(env):
    env.flags('hyperv', vswitch_name=SWITCH)
    instance, image = spawned(env)
    port = vif('fa:16:3e:aa:bb:cc', vlan=42)

    assert env.round_trips(env.driver.attach_interface, None, instance, image, port) == 1
    assert adapters(env, instance) == {port['id']: ('FA163EAABBCC', SWITCH, 42)}
    assert env.vm(instance).state == 'Running'


def test_attach_interface_without_a_vlan_is_untagged(env):
    instance, image = spawned(env)
    port = vif('fa:16:3e:aa:bb:cd')
    env.driver.attach_interface(None, instance, image, port)
    assert adapters(env, instance) == {port['id']: ('FA163EAABBCD', None, None)}


def test_attach_interface_to_a_running_generation_1_vm_fails_with_the_host_reason(env):
    instance, image = spawned(env, generation=1)
    with pytest.raises(exception.InterfaceAttachFailed, match='hot plug') as caught:
        env.driver.attach_interface(None, instance, image, vif())
    assert isinstance(caught.value, vifops.InterfaceAttachFailed)
    assert adapters(env, instance) == {}


def test_detach_interface_removes_only_that_adapter(env):
    keep, drop = vif('fa:16:3e:00:00:01'), vif('fa:16:3e:00:00:02')
    instance, _ = spawned(env, ports=[keep, drop])
    assert env.round_trips(env.driver.detach_interface, None, instance, drop) == 1
    assert list(adapters(env, instance)) == [keep['id']]
    env.driver.detach_interface(None, instance, drop)           # already gone: fine
    assert list(adapters(env, instance)) == [keep['id']]


def test_detach_interface_from_a_running_generation_1_vm_fails_with_the_host_reason(env):
    port = vif()
    instance, _ = spawned(env, generation=1, ports=[port])
    with pytest.raises(exception.InterfaceDetachFailed, match='hot plug'):
        env.driver.detach_interface(None, instance, port)
    assert list(adapters(env, instance)) == [port['id']]


def test_interfaces_of_a_missing_vm_are_instance_not_found(env):
    image = env.image()
    missing = env.instance(image)
    with pytest.raises(exception.InstanceNotFound):
        env.driver.attach_interface(None, missing, image, vif())
    with pytest.raises(exception.InstanceNotFound):
        env.driver.plug_vifs(missing, [vif()])


# -- Open vSwitch for Windows (VIF type ovs) ---------------------------------------------

OVS_VSCTL = 'C:\\Program Files\\Cloudbase Solutions\\Open vSwitch\\bin\\ovs-vsctl.exe'


def ovs_vif(mac: str = 'fa:16:3e:01:02:03', bridge: str = 'br-int'):
    port = vif(mac, vif_type='ovs')
    port['network']['bridge'] = bridge
    return port


@pytest.fixture
def ovs_env(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.start()
        env.host.install_ovs(OVS_VSCTL, ['br-int'])
        env.flags('hyperv', vswitch_name=SWITCH)
        yield env


def test_plug_vifs_adds_ovs_ports_to_the_integration_bridge_in_the_same_round_trip(ovs_env):
    env = ovs_env
    ovs, agent = ovs_vif('fa:16:3e:00:00:01'), vif('fa:16:3e:00:00:02')
    instance, _ = spawned(env, ports=[agent], power_on=False)

    assert env.round_trips(env.driver.plug_vifs, instance, [ovs, agent]) == 1
    # Only the ovs VIF, named after the port id, as the OVS agent expects it.
    assert env.host.ovs_ports() == {ovs['id']: {
        'name': ovs['id'], 'bridge': 'br-int',
        'external_ids': {'iface-id': ovs['id'], 'attached-mac': 'fa:16:3e:00:00:01',
                         'iface-status': 'active', 'vm-uuid': instance.uuid}}}
    assert adapters(env, instance)[ovs['id']][1] == SWITCH
    # --may-exist: plugging again changes nothing.
    env.driver.plug_vifs(instance, [ovs, agent])
    assert list(env.host.ovs_ports()) == [ovs['id']]
    assert 'OvsVsctlPath' not in env.calls[-1].params          # found on PATH


def test_plug_vifs_to_a_missing_bridge_is_refused_as_ovs_vsctl_refuses_it(ovs_env):
    env = ovs_env
    port = ovs_vif(bridge='br-missing')
    instance, _ = spawned(env, power_on=False)
    with pytest.raises(exception.NovaException, match='no bridge named br-missing'):
        env.driver.plug_vifs(instance, [port])
    assert env.host.ovs_ports() == {}


def test_plug_vifs_without_ovs_vsctl_on_the_host_fails_before_changing_anything(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.start()
        port = ovs_vif()
        instance, _ = spawned(env, generation=1, ports=[], power_on=False)
        with pytest.raises(exception.NovaException, match='ovs-vsctl was not found'):
            env.driver.plug_vifs(instance, [port])
        assert adapters(env, instance) == {}


def test_ovs_vsctl_path_option_is_where_the_host_looks(ovs_env):
    env = ovs_env
    port = ovs_vif()
    instance, _ = spawned(env, power_on=False)
    env.flags('hyperv', ovs_vsctl_path='D:\\ovs\\ovs-vsctl.exe')
    with pytest.raises(exception.NovaException, match='ovs-vsctl was not found'):
        env.driver.plug_vifs(instance, [port])
    env.flags('hyperv', ovs_vsctl_path=OVS_VSCTL)
    env.driver.plug_vifs(instance, [port])
    assert list(env.host.ovs_ports()) == [port['id']]


def test_unplug_vifs_deletes_the_ovs_ports_idempotently(ovs_env):
    env = ovs_env
    ovs, agent = ovs_vif('fa:16:3e:00:00:01'), vif('fa:16:3e:00:00:02')
    instance, _ = spawned(env, ports=[ovs, agent])
    env.driver.plug_vifs(instance, [ovs, agent])

    assert env.round_trips(env.driver.unplug_vifs, instance, [ovs, agent]) == 1
    assert env.host.ovs_ports() == {}
    assert adapters(env, instance)[ovs['id']][1] is None
    env.driver.unplug_vifs(instance, [ovs, agent])                # nothing left: fine
    env.driver.destroy(None, instance, [])
    env.driver.unplug_vifs(instance, [ovs])                       # no VM either: fine
    assert env.calls[-1].result['vm_found'] is False


def test_unplug_vifs_deletes_ovs_ports_without_vswitch_name(ovs_env):
    env = ovs_env
    port = ovs_vif()
    instance, _ = spawned(env, ports=[port])
    env.driver.plug_vifs(instance, [port])
    env.flags('hyperv', vswitch_name=None)
    assert env.round_trips(env.driver.unplug_vifs, instance, [port]) == 1
    assert env.host.ovs_ports() == {}
    assert adapters(env, instance)[port['id']][1] == SWITCH     # the connection is left


def test_attach_and_detach_interface_of_an_ovs_port(ovs_env):
    env = ovs_env
    instance, image = spawned(env)
    port = ovs_vif('fa:16:3e:aa:bb:cc')

    assert env.round_trips(env.driver.attach_interface, None, instance, image, port) == 1
    assert adapters(env, instance) == {port['id']: ('FA163EAABBCC', SWITCH, None)}
    assert env.host.ovs_ports()[port['id']]['external_ids']['vm-uuid'] == instance.uuid

    assert env.round_trips(env.driver.detach_interface, None, instance, port) == 1
    assert adapters(env, instance) == {}
    assert env.host.ovs_ports() == {}
    env.driver.detach_interface(None, instance, port)           # already gone: fine


def test_attach_interface_to_a_missing_bridge_removes_the_adapter_it_added(ovs_env):
    env = ovs_env
    instance, image = spawned(env)
    with pytest.raises(exception.InterfaceAttachFailed, match='no bridge named br-x'):
        env.driver.attach_interface(None, instance, image, ovs_vif(bridge='br-x'))
    assert adapters(env, instance) == {}


def test_spawn_adds_the_ovs_ports_in_its_one_round_trip(ovs_env):
    env = ovs_env
    ovs, agent = ovs_vif('fa:16:3e:00:00:01'), vif('fa:16:3e:00:00:02')
    image = env.image()
    instance = env.instance(image)
    assert env.round_trips(env.spawn, instance, image, [ovs, agent]) == 2  # image + New-Instance
    assert [c.name for c in env.calls[-2:]][-1] == 'New-Instance'
    assert env.host.ovs_ports()[ovs['id']]['external_ids'] == {
        'iface-id': ovs['id'], 'attached-mac': 'fa:16:3e:00:00:01',
        'iface-status': 'active', 'vm-uuid': instance.uuid}
    assert list(env.host.ovs_ports()) == [ovs['id']]
    assert env.vm(instance).state == 'Running'


def test_spawn_to_a_missing_bridge_fails_and_undoes_every_ovs_port(ovs_env):
    env = ovs_env
    good, bad = ovs_vif('fa:16:3e:00:00:01'), ovs_vif('fa:16:3e:00:00:02', bridge='br-missing')
    image = env.image()
    instance = env.instance(image)
    with pytest.raises(exception.NovaException, match='no bridge named br-missing'):
        env.spawn(instance, image, [good, bad])
    assert env.host.ovs_ports() == {}
    assert env.host.find_vm(instance.name) is None


def test_destroy_deletes_the_ovs_ports_in_its_one_round_trip_and_is_idempotent(ovs_env):
    env = ovs_env
    ovs, agent = ovs_vif('fa:16:3e:00:00:01'), vif('fa:16:3e:00:00:02')
    instance, _ = spawned(env, ports=[ovs, agent])
    assert list(env.host.ovs_ports()) == [ovs['id']]

    assert env.round_trips(env.driver.destroy, None, instance, [ovs, agent]) == 1
    assert env.host.ovs_ports() == {}
    assert env.host.find_vm(instance.name) is None
    assert env.calls[-1].result['ovs_ports_removed'] == [ovs['id']]
    env.driver.destroy(None, instance, [ovs, agent])              # nothing left: fine
    assert env.calls[-1].result['existed'] is False


def test_cleanup_keeps_the_ovs_ports_when_nova_keeps_the_vifs(ovs_env):
    env = ovs_env
    port = ovs_vif()
    instance, _ = spawned(env, ports=[port])
    env.driver.cleanup(None, instance, [port], destroy_vifs=False)
    assert list(env.host.ovs_ports()) == [port['id']]
    env.driver.cleanup(None, instance, [port])
    assert env.host.ovs_ports() == {}
