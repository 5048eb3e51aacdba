"""Move-Instance on two simulated hosts: what Move-VM does and what it refuses."""

from __future__ import annotations

import pytest

from psdriver.bridge import errors
from psdriver.bridge.client import Bridge
from psdriver.sim import SimHost, SimRunner
from psdriver.sim.fabric import Fabric
from psdriver.sim.scenario import add_image, add_instance

DIR = 'C:\\OpenStack\\Instances\\vm1'


def hosts(src_kw=None, dst_kw=None):
    src = SimHost(hostname='hv01', **(src_kw or {}))
    dst = SimHost(hostname='hv02', **(dst_kw or {}))
    for host in (src, dst):
        host.set_migration(enabled=True, use_any_network=True)
    add_instance(src, 'vm1', instance_dir=DIR)
    base = src.vhd_chain(src.get_vm('vm1').drives[0].path)[1]
    add_image(dst, base.path, base.vhd.size)
    Fabric.in_memory(src, dst)
    return src, dst


def move(src, **params):
    return Bridge(SimRunner(src)).call('Move-Instance', {
        'Name': 'vm1', 'DestinationHost': 'hv02', 'IncludeStorage': True,
        'DestinationPath': DIR, **params})


def refused(src, match):
    with pytest.raises(errors.ScriptInvalidOperation) as err:
        move(src)
    assert err.value.error_id == 'PsDriver.MigrationFailed'
    assert match in err.value.message
    assert src.get_vm('vm1').state == 'Running'


def test_moves_a_running_vm_with_its_disks():
    src, dst = hosts()
    before = src.get_vm('vm1')
    out = move(src)
    vm = dst.get_vm('vm1')
    assert (vm.id, vm.state, vm.started_at) == (before.id, 'Running', before.started_at)
    assert out['storage_bytes'] > 0
    assert dst.exists(DIR + '\\root.vhdx') and not src.exists(DIR + '\\root.vhdx')
    assert src.find_vm('vm1') is None
    src.check_consistency()
    dst.check_consistency()


def test_migration_not_enabled():
    src, dst = hosts()
    dst.set_migration(enabled=False)
    refused(src, 'has not been configured for virtual machine migration')


def test_no_migration_network():
    src, dst = hosts()
    dst.set_migration(use_any_network=False)
    refused(src, 'no network available for live migration')


def test_kerberos_without_constrained_delegation():
    src, dst = hosts({'domain': 'example.org'}, {'domain': 'example.org'})
    for host in (src, dst):
        host.set_migration(authentication='Kerberos')
    refused(src, 'no suitable credentials available')
    with src.transaction():
        src._state.config.kerberos_delegation = ['hv02.example.org']
    move(src)


def test_different_authentication():
    src, dst = hosts({'domain': 'example.org'}, {'domain': 'example.org'})
    dst.set_migration(authentication='Kerberos')
    refused(src, 'could not be authenticated')


def test_processor_vendor_even_with_compatibility_mode():
    src, _ = hosts(dst_kw={'cpu_vendor': 'AuthenticAMD'})
    refused(src, 'different manufacturers')


def test_processor_features_without_compatibility_mode():
    src, dst = hosts(dst_kw={'cpu_features': ['sse', 'sse2']})
    refused(src, 'processor-specific features')
    with src.transaction():
        src._state.vms['vm1'].limit_cpu_features = True
    move(src)


def test_configuration_version_the_destination_lacks():
    src, _ = hosts(dst_kw={'supported_vm_versions': ['8.0', '9.0']})
    refused(src, 'configuration version 10.0')


def test_switch_missing_on_the_destination():
    src, _ = hosts(dst_kw={'switches': {'other': 'External'}})
    src.add_nic('vm1', 'port', switch_name='external')
    refused(src, "Could not find Ethernet switch 'external'")


def test_pass_through_disk_without_shared_storage():
    src, _ = hosts()
    with src.transaction():
        src._state.vms['vm1'].drives[0].disk_number = 3
    refused(src, 'pass-through disk')


def test_parent_of_the_differencing_disk_must_be_on_the_destination():
    src, dst = hosts()
    base = src.vhd_chain(src.get_vm('vm1').drives[0].path)[1]
    dst.remove_item(base.path)
    with pytest.raises(errors.ScriptInvalidOperation, match='is not on'):
        move(src)
    assert src.exists(DIR + '\\root.vhdx') and not dst.exists(DIR + '\\root.vhdx')
