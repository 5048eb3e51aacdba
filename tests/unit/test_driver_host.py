"""HyperVDriver's host side on the simulated host: init_host, resources, events, capabilities."""

from __future__ import annotations

import json
import re
import threading
import time

from unittest import mock

import os_resource_classes as orc
import pytest
from nova import exception
from nova.compute import provider_tree
from nova.virt import event as virtevent
from oslo_utils import uuidutils

from psdriver import driver as psdriver_driver
from psdriver.ops import imagecache, vmops
from psdriver.sim.image_files import iso

from tests.unit.driver_env import BASE, GIB, HOSTNAME, INSTANCES, DriverEnv, vif


@pytest.fixture
def env(tmp_path):
    with DriverEnv(tmp_path) as env:
        yield env


def set_host(env, **values) -> None:
    """Change what the simulated host is (before init_host)."""
    with env.host.transaction() as state:
        for name, value in values.items():
            setattr(state.config, name, value)


def lifecycle_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == 'psdriver-lifecycle']


# -- init_host ----------------------------------------------------------------------------

def test_init_host_creates_the_instance_and_image_cache_folders(env):
    env.flags(instances_path='D:\\VMs\\Instances')
    env.build()
    env.host.add_volume('D:', 200)

    env.driver.init_host(HOSTNAME)

    assert env.host.get_item('D:\\VMs\\Instances').is_dir
    assert env.host.get_item('D:\\VMs\\Instances\\_base').is_dir
    assert env.driver.host_report['instances_path']['kind'] == 'local'
    assert not env.driver.instance_on_disk(None)


def test_init_host_uses_the_image_cache_folder_name(env):
    env.flags('image_cache', subdirectory_name='images')
    env.start()
    assert env.host.get_item(f'{INSTANCES}\\images').is_dir
    assert env.driver.imagecache.base_dir == f'{INSTANCES}\\images'


def test_init_host_on_a_unc_share(env):
    share = '\\\\fileserver\\openstack'
    env.flags(instances_path=f'{share}\\Instances')
    env.build()
    env.host.add_volume(share, 1000)

    env.driver.init_host(HOSTNAME)

    assert env.driver.host_report['instances_path']['kind'] == 'unc'
    assert env.host.get_item(f'{share}\\Instances\\_base').is_dir
    assert env.driver.instance_on_disk(None)
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)
    assert env.vm(instance).path == f'{share}\\Instances\\{instance.name}'


def test_init_host_on_a_cluster_shared_volume(env):
    csv = 'C:\\ClusterStorage\\Volume1'
    env.flags(instances_path=f'{csv}\\Instances')
    env.build()
    env.host.make_dir(csv)

    env.driver.init_host(HOSTNAME)

    assert env.driver.host_report['instances_path']['kind'] == 'csv'
    assert env.host.get_item(f'{csv}\\Instances\\_base').is_dir
    assert env.driver.instance_on_disk(None)


def test_init_host_refuses_a_mapped_drive(env):
    env.flags(instances_path='Z:\\Instances')
    env.build()
    env.host.add_volume('Z:', 100)
    set_host(env, mapped_drives=['Z:'])

    with pytest.raises(exception.NovaException, match='mapped to a network share.*UNC'):
        env.driver.init_host(HOSTNAME)
    assert env.driver.host_report is None


def test_init_host_accepts_a_drive_of_an_smb_global_mapping(env):
    """The guide's "persistently mounted SMB share": global, so Hyper-V sees it."""
    env.flags(instances_path='X:\\OpenStack\\Instances')
    env.build()
    env.host.add_volume('X:', 100)
    env.host.add_volume('\\\\fs01\\instances', 100)
    env.host.new_smb_mapping('\\\\fs01\\instances', local_path='X:')
    set_host(env, mapped_drives=['X:'])

    env.driver.init_host(HOSTNAME)

    assert env.driver.host_report['instances_path']['kind'] == 'smb_global'


@pytest.mark.parametrize('path, message', [
    ('Q:\\Instances', "root 'Q:\\\\' of instances_path 'Q:\\\\Instances' \\(local\\) cannot be "
                      'reached'),
    ('C:\\Blocked\\Instances', "Cannot create folder 'C:\\\\Blocked\\\\Instances'"),
])
def test_init_host_fails_clearly_when_instances_path_cannot_be_made(env, path, message):
    env.flags(instances_path=path)
    env.build()
    env.host.add_file('C:\\Blocked', 10)
    with pytest.raises(exception.NovaException, match=message):
        env.driver.init_host(HOSTNAME)


def test_init_host_without_the_hyperv_module(env):
    env.build()
    set_host(env, modules={'Hyper-V': False})
    with pytest.raises(exception.NovaException,
                       match='Hyper-V PowerShell module is not installed'):
        env.driver.init_host(HOSTNAME)


def test_init_host_on_a_too_old_windows(env):
    env.build()
    set_host(env, os_version='6.3.9600', os_name='Microsoft Windows Server 2012 R2')
    with pytest.raises(exception.NovaException, match='6.3.9600.*at least 10.0.14393'):
        env.driver.init_host(HOSTNAME)


@pytest.mark.parametrize('os_version, edition, ps_version, usable', [
    ('10.0.14393', 'Core', '7.4.6', False),       # Windows Server 2016, PowerShell 7
    ('10.0.14393', 'Desktop', '5.1.14393.7600', True),
    ('10.0.17763', 'Core', '7.4.6', True),        # Windows Server 2019: native
    ('10.0.20348', 'Core', '7.4.6', True),
])
def test_init_host_refuses_powershell_7_on_windows_server_2016(env, os_version, edition,
                                                                ps_version, usable):
    env.flags(instances_path=INSTANCES)
    env.build()
    set_host(env, os_version=os_version, ps_edition=edition, ps_version=ps_version,
             os_name='Microsoft Windows Server Datacenter')
    if usable:
        env.driver.init_host(HOSTNAME)
        report = env.driver.host_report
        assert (report['powershell_edition'], report['powershell_version'],
                report['hyperv_module_native']) == (edition, ps_version, True)
        env.driver.cleanup_host(HOSTNAME)
        return
    with pytest.raises(exception.NovaException,
                       match=r'Windows 10\.0\.14393 .*PowerShell 7\.4\.6.*compatibility layer.*'
                             r'executable = powershell\.exe'):
        env.driver.init_host(HOSTNAME)
    assert env.driver.host_report is None


def test_init_host_without_a_usable_transport(env):
    env.flags('powershell', transport='psrp', psrp_host=None)
    with pytest.raises(exception.NovaException, match='psrp_host'):
        psdriver_driver.HyperVDriver(None).init_host(HOSTNAME)


def test_init_host_warns_of_a_missing_switch(env, caplog):
    env.flags('hyperv', vswitch_name='br-missing')
    env.start()
    assert env.driver.host_report['missing_switches'] == ['br-missing']
    assert 'br-missing' in caplog.text


def test_init_host_gives_running_vms_their_console_logger_back(env, tmp_path):
    env.flags('powershell', sim_state_file=str(tmp_path / 'host.json'))
    image = env.image()
    running, stopped = env.instance(image), env.instance(image)
    env.start()
    env.spawn(running, image)
    env.spawn(stopped, image, power_on=False)
    env.host.create_vm('not-nova', notes='a VM of someone else')
    env.host.start_vm('not-nova')
    for instance in (running, stopped):           # the host rebooted: no logger survived
        env.host.stop_console_logger(instance.name)

    env.restart()

    assert [c.name for c in env.calls] == ['Initialize-ComputeHost']     # one round trip
    init = env.calls_of('Initialize-ComputeHost')[-1]
    assert (init.params['ConsoleLogFileName'], init.params['ConsoleLogMaxBytes']) == \
        ('console.log', vmops.CONSOLE_LOG_BYTES)
    assert init.result['console_loggers'] == [
        {'name': running.name, 'started': True, 'running': True, 'error': None}]
    logger = env.host.console_logger(running.name)
    assert logger is not None and logger.log_path == f'{INSTANCES}\\{running.name}\\console.log'
    assert env.host.console_logger(stopped.name) is None
    assert env.host.console_logger('not-nova') is None
    assert env.calls_of('Start-InstanceConsoleLogger') == []

    # ... and power_on brings the stopped one's back, in its one round trip.
    assert env.round_trips(env.driver.power_on, None, stopped, []) == 1
    assert env.host.console_logger(stopped.name) is not None
    assert env.calls_of('Set-InstancePowerState')[-1].result['console_logger']['started'] is True


def test_init_host_starts_only_missing_loggers_and_reports_those_that_cannot_start(
        env, tmp_path, caplog):
    env.flags('powershell', sim_state_file=str(tmp_path / 'host.json'))
    image = env.image()
    kept, broken = env.instance(image), env.instance(image)
    env.start()
    env.spawn(kept, image)
    env.spawn(broken, image)
    env.host.stop_console_logger(broken.name)
    # A running Nova VM whose instance folder is not where the log goes.
    stray = env.host.create_vm('instance-0000beef', notes=uuidutils.generate_uuid(),
                               path='C:\\elsewhere')
    env.host.set_com_port(stray.name, 'COM1', '\\\\.\\pipe\\stray_ro')
    env.host.start_vm(stray.name)

    env.restart()

    loggers = {lg['name']: lg for lg in env.calls_of('Initialize-ComputeHost')[-1].result[
        'console_loggers']}
    assert loggers[kept.name] == {'name': kept.name, 'started': False, 'running': True,
                                  'error': None}
    assert loggers[broken.name] == {'name': broken.name, 'started': True, 'running': True,
                                    'error': None}
    assert loggers[stray.name]['running'] is False
    assert 'does not exist' in loggers[stray.name]['error']
    assert f'Console log of {stray.name} not started' in caplog.text
    assert env.driver.host_report['hostname'] == HOSTNAME     # the service started all the same


# -- lifecycle events -----------------------------------------------------------------------

def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_no_event_poller_when_lifecycle_events_are_off(env):
    env.start()
    assert env.driver._events is None
    assert lifecycle_threads() == []


def test_the_event_poller_takes_its_baseline_at_once(env):
    """A change in the first interval after start is an event too."""
    env.flags('workarounds', handle_virt_lifecycle_events=True)
    env.flags('hyperv', power_state_event_polling_interval=60)
    env.start()
    # The poller's first look follows init_host at once, not a polling interval later.
    assert wait_for(lambda: len(env.calls_of('Get-InstanceSummary')) == 1, 3)


def test_the_event_poller_reports_what_happens_behind_the_driver(env):
    env.flags('workarounds', handle_virt_lifecycle_events=True)
    env.flags('hyperv', power_state_event_polling_interval=0)
    image = env.image()
    instance = env.instance(image)
    env.start()
    assert len(lifecycle_threads()) == 1
    env.spawn(instance, image)
    seen = len(env.calls)
    assert wait_for(lambda: any(c.name == 'Get-InstanceSummary' for c in env.calls[seen:]))

    env.host.stop_vm(instance.name, turn_off=True)         # not through the driver
    assert wait_for(lambda: env.events)
    env.host.start_vm(instance.name)
    assert wait_for(lambda: len(env.events) >= 2)

    assert all(isinstance(e, virtevent.LifecycleEvent) for e in env.events)
    assert [(e.uuid, e.transition) for e in env.events[:2]] == [
        (instance.uuid, virtevent.EVENT_LIFECYCLE_STOPPED),
        (instance.uuid, virtevent.EVENT_LIFECYCLE_STARTED)]
    env.driver.cleanup_host(HOSTNAME)
    assert lifecycle_threads() == []


# -- resources ------------------------------------------------------------------------------

def test_available_resource_is_one_round_trip_with_the_host_numbers(env):
    env.start()
    config = env.host.config
    resources = None

    def call():
        nonlocal resources
        resources = env.driver.get_available_resource(HOSTNAME)

    assert env.round_trips(call) == 1
    assert resources['hypervisor_hostname'] == HOSTNAME == config.hostname
    assert (resources['vcpus'], resources['memory_mb']) == (config.logical_processors,
                                                            config.memory_mb)
    assert resources['memory_mb_used'] == config.memory_mb - env.host.memory_free_mb()
    assert resources['local_gb'] == int(env.host.disk_usage(INSTANCES)['total'] / GIB)
    assert isinstance(resources['hypervisor_version'], int) and resources['hypervisor_version']
    assert json.loads(resources['cpu_info'])['vendor'] == config.cpu_vendor


def test_available_nodes_is_the_host_name(env):
    env.start()
    nodes = []
    assert env.round_trips(lambda: nodes.extend(env.driver.get_available_nodes())) == 1
    assert nodes == [HOSTNAME]


def test_local_gb_used_follows_what_spawns_put_on_the_volume(env):
    env.flags(use_cow_images=False)
    env.start()
    before = env.driver.get_available_resource(HOSTNAME)['local_gb_used']
    image = env.image()
    env.spawn(env.instance(image), image)
    env.host.add_file(f'{INSTANCES}\\big.bin', 20 * GIB)   # disk use the driver must see
    env.driver.hostops.invalidate()
    assert env.driver.get_available_resource(HOSTNAME)['local_gb_used'] >= before + 20


def new_tree(nodename: str = HOSTNAME) -> provider_tree.ProviderTree:
    tree = provider_tree.ProviderTree()
    tree.new_root(nodename, uuidutils.generate_uuid())
    return tree


def test_provider_tree_gets_ratios_and_reserved_values_from_nova_conf(env):
    env.flags(cpu_allocation_ratio=4.0, ram_allocation_ratio=1.5, disk_allocation_ratio=1.2,
              reserved_host_cpus=2, reserved_host_memory_mb=1024, reserved_host_disk_mb=2049)
    env.start()
    tree = new_tree()

    assert env.round_trips(env.driver.update_provider_tree, tree, HOSTNAME) == 1

    inventory = tree.data(HOSTNAME).inventory
    config = env.host.config
    assert inventory[orc.VCPU]['total'] == config.logical_processors
    assert (inventory[orc.VCPU]['allocation_ratio'], inventory[orc.VCPU]['reserved']) == (4.0, 2)
    assert (inventory[orc.MEMORY_MB]['allocation_ratio'],
            inventory[orc.MEMORY_MB]['reserved']) == (1.5, 1024)
    assert (inventory[orc.DISK_GB]['allocation_ratio'],
            inventory[orc.DISK_GB]['reserved']) == (1.2, 3)
    assert inventory[orc.MEMORY_MB]['total'] == config.memory_mb


def test_provider_tree_keeps_ratios_placement_already_has(env):
    env.start()
    tree = new_tree()
    tree.update_inventory(HOSTNAME, {orc.VCPU: {'total': 16, 'allocation_ratio': 8.0}})
    env.driver.update_provider_tree(tree, HOSTNAME)
    assert tree.data(HOSTNAME).inventory[orc.VCPU]['allocation_ratio'] == 8.0


def test_traits_only_for_what_the_host_has(env):
    env.start()
    tree = new_tree()
    tree.add_traits(HOSTNAME, 'HW_CPU_X86_AVX512F', 'CUSTOM_RACK_7', 'COMPUTE_NODE')

    env.driver.update_provider_tree(tree, HOSTNAME)
    traits = tree.data(HOSTNAME).traits
    assert {'HW_CPU_X86_AVX2', 'HW_CPU_X86_SSE42', 'HW_CPU_X86_AESNI'} <= traits
    assert 'HW_CPU_X86_AVX512F' not in traits, 'the host has no avx512f'
    assert {'CUSTOM_RACK_7', 'COMPUTE_NODE'} <= traits, 'traits of others are kept'

    set_host(env, cpu_features=['sse2', 'sse4_2'])
    env.driver.hostops.invalidate()
    env.driver.update_provider_tree(tree, HOSTNAME)
    cpu = {t for t in tree.data(HOSTNAME).traits if t.startswith('HW_CPU_X86_')}
    assert cpu == {'HW_CPU_X86_SSE2', 'HW_CPU_X86_SSE42'}


def test_the_resource_periodic_is_one_round_trip(env):
    """update_available_resource: nodes, resources and provider tree share one Get-HostInfo."""
    env.start()
    tree = new_tree()

    def periodic():
        for node in env.driver.get_available_nodes():
            env.driver.get_available_resource(node)
            env.driver.update_provider_tree(tree, node)

    assert env.round_trips(periodic) == 1


def test_host_ip_addr_and_uptime(env):
    env.start()
    addresses = []
    assert env.round_trips(lambda: addresses.append(env.driver.get_host_ip_addr())) == 1
    assert addresses == ['192.0.2.11']
    uptime = []
    assert env.round_trips(lambda: uptime.append(env.driver.get_host_uptime())) == 1
    match = re.fullmatch(r' \d\d:\d\d:\d\d up (\d+) days, [ \d]\d:\d\d,  0 users', uptime[0])
    assert match and int(match.group(1)) == env.host.uptime_seconds() // 86400


def test_host_ip_falls_back_to_my_ip(env):
    env.build()
    set_host(env, ip_addresses=[])
    env.driver.init_host(HOSTNAME)
    assert env.driver.get_host_ip_addr() == '203.0.113.9'


@pytest.mark.parametrize('action, counter', [('reboot', 'reboots'), ('shutdown', 'shutdowns')])
def test_host_power_action(env, action, counter):
    env.start()
    result = []
    assert env.round_trips(lambda: result.append(env.driver.host_power_action(action))) == 1
    assert result == [action]
    assert getattr(env.host.power_history(), counter) == 1


def test_host_startup_is_not_possible_from_the_host(env):
    env.start()
    with pytest.raises(NotImplementedError, match='out-of-band'):
        env.driver.host_power_action('startup')
    assert env.host.power_history().last_action == ''


# -- periodic views of every VM ------------------------------------------------------------

def test_power_state_sync_costs_one_call_for_all_vms(env):
    env.start()
    image = env.image()
    instances = [env.instance(image) for _ in range(5)]
    for instance in instances:
        env.spawn(instance, image)

    def sync():
        for instance in instances:
            env.driver.get_info(instance)

    assert env.round_trips(sync) == 1
    assert env.round_trips(env.driver.list_instances) == 1
    assert env.round_trips(env.driver.list_instance_uuids) == 1


def test_vms_are_recognised_by_the_uuid_in_their_notes(env):
    env.start()
    image = env.image()
    kept, renamed = env.instance(image), env.instance(image)
    env.spawn(kept, image)
    env.spawn(renamed, image)
    stranger = env.instance(image)
    env.host.create_vm(stranger.name, notes='build agent, not an instance')
    env.host.rename_vm(renamed.name, 'renamed-by-an-admin')

    assert env.driver.list_instance_uuids() == sorted([kept.uuid, renamed.uuid])
    assert env.driver.list_instances() == sorted([kept.name, 'renamed-by-an-admin'])
    assert env.driver.instance_exists(kept)
    assert env.driver.instance_exists(renamed)
    assert not env.driver.instance_exists(stranger)
    with pytest.raises(exception.InstanceNotFound):
        env.driver.get_info(stranger)


# -- capabilities ------------------------------------------------------------------------

def _image_cache_is_managed(env):
    image, kept = env.image(), env.image()
    instance, other = env.instance(image), env.instance(kept)
    env.spawn(instance, image)
    env.spawn(other, kept)
    env.driver.destroy(None, instance, [])
    env.flags('image_cache', remove_unused_original_minimum_age_seconds=0)
    with mock.patch.object(imagecache, 'HANDED_OUT_GRACE', 0.0):
        env.driver.manage_image_cache(None, [other])
    assert not env.host.exists(f'{BASE}\\{image.id}.vhdx')
    assert env.host.exists(f'{BASE}\\{kept.id}.vhdx')


def _interfaces_attach(env):
    image = env.image(hw_machine_type='hyperv-gen2')
    instance = env.instance(image)
    env.spawn(instance, image)
    port = vif('fa:16:3e:aa:bb:cc')
    env.driver.attach_interface(None, instance, image, port)
    assert [n.mac_address for n in env.vm(instance).nics] == ['FA163EAABBCC']


def _secure_boot(env):
    image = env.image(hw_machine_type='hyperv-gen2', os_secure_boot='required')
    instance = env.instance(image)
    env.spawn(instance, image)
    assert env.vm(instance).secure_boot


def _vtpm(env):
    image = env.image(hw_machine_type='hyperv-gen2', os_secure_boot='required',
                      hw_tpm_version='2.0')
    instance = env.instance(image)
    env.spawn(instance, image)
    assert env.vm(instance).extra.get('tpm') is True


def _boots_image(fmt):
    def check(env):
        from psdriver.sim.image_files import dynamic_vhd, vhdx
        data = {'vhd': dynamic_vhd(GIB), 'vhdx': vhdx(GIB), 'iso': iso()}[fmt]
        image = env.image(data, fmt)
        instance = env.instance(image, flavor_values={'root_gb': 1})
        env.spawn(instance, image)
        vm = env.vm(instance)
        root = next(d for d in vm.drives if d.path.lower().endswith(f'\\root.{fmt}'))
        assert root.kind == ('DvdDrive' if fmt == 'iso' else 'HardDisk')
        assert vm.state == 'Running'
    return check


def _volume_extends(env):
    env.flags('hyperv', mounted_disk_query_retry_interval=0)
    env.host.add_iscsi_target('192.0.2.50:3260', 'iqn.2010-10.org.openstack:v', [1])
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)
    info = {'driver_volume_type': 'iscsi', 'data': {
        'volume_id': 'v', 'target_portal': '192.0.2.50:3260',
        'target_iqn': 'iqn.2010-10.org.openstack:v', 'target_lun': 0}}
    env.driver.attach_volume(None, info, instance, '/dev/sdb')
    env.host.resize_lun('iqn.2010-10.org.openstack:v', 0, 2)
    env.driver.extend_volume(None, info, instance, 2 * GIB)
    [drive] = [d for d in env.vm(instance).drives if d.disk_number is not None]
    assert env.host.get_disk(drive.disk_number).size == 2 * GIB
def _resizes_on_the_same_host(env):
    from tests.unit.driver_env import HOSTNAME, flavor
    image = env.image()
    instance = env.instance(image, flavor_values={'vcpus': 1})
    env.spawn(instance, image)
    disk_info = env.driver.migrate_disk_and_power_off(None, instance, HOSTNAME,
                                                      flavor(vcpus=2), [])
    instance.flavor = flavor(vcpus=2)
    env.driver.finish_migration(None, None, instance, disk_info, [], image, True, {})
    assert (env.vm(instance).processor_count, env.vm(instance).state) == (2, 'Running')


#: Each capability the driver claims, and what shows that it works.
CLAIMED = {
    'supports_migrate_to_same_host': _resizes_on_the_same_host,
    'has_imagecache': _image_cache_is_managed,
    'supports_attach_interface': _interfaces_attach,
    'supports_secure_boot': _secure_boot,
    'supports_vtpm': _vtpm,
    'supports_image_type_vhd': _boots_image('vhd'),
    'supports_image_type_vhdx': _boots_image('vhdx'),
    'supports_image_type_iso': _boots_image('iso'),
    'supports_extend_volume': _volume_extends,
}


def test_the_driver_claims_exactly_the_capabilities_shown_to_work():
    claimed = {name for name, value in psdriver_driver.HyperVDriver.capabilities.items()
               if value}
    assert claimed == set(CLAIMED)


@pytest.mark.parametrize('capability', sorted(CLAIMED))
def test_claimed_capability_works(env, capability):
    env.start()
    CLAIMED[capability](env)


def test_unclaimed_operations_are_not_implemented(env):
    env.start()
    image = env.image()
    instance = env.instance(image)
    with pytest.raises(NotImplementedError):
        env.driver.swap_volume(None, {}, {}, instance, '/dev/sdb', GIB)
    with pytest.raises(NotImplementedError):
        env.driver.rebuild(None, instance, image, [], None, [], [], [], None, {}, None)


def test_virtual_tpm_traits_only_when_the_host_offers_it(env):
    env.start()
    tree = new_tree()
    env.driver.update_provider_tree(tree, HOSTNAME)
    assert {'COMPUTE_SECURITY_TPM_2_0', 'COMPUTE_SECURITY_TPM_CRB',
            'COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST'} <= tree.data(HOSTNAME).traits
    assert 'COMPUTE_SECURITY_TPM_1_2' not in tree.data(HOSTNAME).traits

    set_host(env, vtpm=False)
    env.driver.hostops.invalidate()
    env.driver.update_provider_tree(tree, HOSTNAME)
    assert not {t for t in tree.data(HOSTNAME).traits if t.startswith('COMPUTE_SECURITY_TPM')}
