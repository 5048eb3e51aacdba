"""The simulator follows the documented cmdlet behaviour the scripts were fixed for.

Secure boot templates by Windows build, Remove-VM merging checkpoints after the
VM is gone, Measure-VM and Resize-VHD as documented (issue 9).
"""

from __future__ import annotations

import time

import pytest

from psdriver.sim import SimError, SimHost, dispatch
from psdriver.sim.scenario import add_instance

from tests.sim.conftest import INSTANCES


def _run(host, name, params=None):
    with host.transaction():
        return dispatch.get_handler(name).func(host, params or {})


def _set(host, **values):
    with host.transaction() as state:
        for name, value in values.items():
            setattr(state.config, name, value)


# -- secure boot templates ----------------------------------------------------------------

@pytest.mark.parametrize('os_version, offered', [
    ('10.0.14393', False),     # Windows Server 2016
    ('10.0.16299', True),      # 1709
    ('10.0.17763', True),
])
def test_open_source_shielded_vm_template_exists_from_1709(os_version, offered):
    host = SimHost()
    _set(host, os_version=os_version)
    if offered:
        add_instance(host, 'instance-00000001', power_on=False,
                     secure_boot={'enabled': True, 'template': 'OpenSourceShieldedVM'})
        assert host.get_vm('instance-00000001').secure_boot_template == 'OpenSourceShieldedVM'
        return
    with pytest.raises(SimError) as caught:
        add_instance(host, 'instance-00000001', power_on=False,
                     secure_boot={'enabled': True, 'template': 'OpenSourceShieldedVM'})
    assert caught.value.error_id == 'PsDriver.SecureBootTemplateUnavailable'
    assert caught.value.category == 'InvalidArgument'
    assert "'OpenSourceShieldedVM' is not available on this host (Windows 10.0.14393)" in \
        caught.value.message
    assert host.find_vm('instance-00000001') is None
    assert not host.exists(f'{INSTANCES}\\instance-00000001')


def test_set_vmfirmware_refuses_a_template_the_host_lacks():
    host = SimHost()
    _set(host, os_version='10.0.14393')
    add_instance(host, 'instance-00000001', power_on=False)
    with pytest.raises(SimError, match='Unknown secure boot template'):
        host.set_secure_boot('instance-00000001', True, 'OpenSourceShieldedVM')
    host.set_secure_boot('instance-00000001', True, 'MicrosoftUEFICertificateAuthority')


# -- Remove-VM merges checkpoints after the VM is gone ------------------------------------

def _checkpointed(host, name='instance-00000001'):
    add_instance(host, name)
    host.checkpoint_vm(name, 'one')
    host.checkpoint_vm(name, 'two')
    vm = host.get_vm(name)
    avhdx = [d.path for d in vm.drives if d.path and d.path.lower().endswith('.avhdx')]
    assert len(avhdx) == 1
    return avhdx[0]


def test_remove_vm_merges_the_checkpoints_afterwards_and_holds_the_files_meanwhile():
    host = SimHost()
    _set(host, checkpoint_merge_seconds=0.4)
    top = _checkpointed(host)
    root = f'{INSTANCES}\\instance-00000001\\root.vhdx'
    host.stop_vm('instance-00000001', turn_off=True)
    host.remove_vm('instance-00000001')
    # Right after Remove-VM the merge runs: the checkpoint disks and the root disk are busy.
    for path in (top, root):
        with pytest.raises(SimError) as caught:
            host.remove_item(path)
        assert caught.value.error_id == 'FileInUse'
    time.sleep(0.45)
    assert host.settle_checkpoint_merges() is False
    assert not host.exists(top)
    assert host.get_vhd(root).vhd.parent_path.endswith('.vhdx')   # the cached image
    host.remove_item(root)


def test_remove_instance_waits_for_the_merge_then_deletes_the_files():
    host = SimHost()
    _set(host, checkpoint_merge_seconds=0.2)
    _checkpointed(host)
    folder = f'{INSTANCES}\\instance-00000001'
    started = time.monotonic()
    out = _run(host, 'Remove-Instance', {'Name': 'instance-00000001', 'InstanceDir': folder,
                                         'DeleteFiles': True})
    assert time.monotonic() - started >= 0.15
    assert out['existed'] and out['snapshots_removed'] == 2 and out['instance_dir_removed']
    assert f'{folder}\\root.vhdx' in out['removed_files']
    assert not any(p.lower().endswith('.avhdx') for p in out['removed_files'])  # merged away
    assert not host.exists(folder)


def test_remove_instance_gives_up_after_the_merge_timeout_and_a_retry_finishes():
    host = SimHost()
    _set(host, checkpoint_merge_seconds=0.3)
    _checkpointed(host)
    folder = f'{INSTANCES}\\instance-00000001'
    params = {'Name': 'instance-00000001', 'InstanceDir': folder, 'DeleteFiles': True,
              'MergeTimeoutSeconds': 0}
    with pytest.raises(SimError) as caught:
        _run(host, 'Remove-Instance', params)
    assert (caught.value.category, caught.value.error_id) == (
        'OperationTimeout', 'PsDriver.CheckpointMergeTimeout')
    assert host.find_vm('instance-00000001') is None
    time.sleep(0.35)
    out = _run(host, 'Remove-Instance', params)
    assert not out['existed'] and out['instance_dir_removed']
    assert not host.exists(folder)


# -- Measure-VM, as Get-InstanceInfo reads it ---------------------------------------------

def _report(**changes):
    from psdriver.sim.handlers.instances import METERING_PROPERTIES
    report = dict.fromkeys(METERING_PROPERTIES.values(), 7)
    report.update(NetworkMeteredTrafficReport=[], MeteringDuration=3600)
    report.update(changes)
    return report


def test_metering_counts_both_direction_traffic_in_neither_direction():
    from psdriver.sim.handlers.instances import metering_record
    record = metering_record(_report(NetworkMeteredTrafficReport=[
        {'Direction': 'Inbound', 'TotalTraffic': 100},
        {'Direction': 'Outbound', 'TotalTraffic': 40},
        {'Direction': 'Both', 'TotalTraffic': 1000},
        None]))
    assert (record['network_inbound_mb'], record['network_outbound_mb']) == (100, 40)


def test_metering_reads_the_documented_property_names():
    from psdriver.sim.handlers.instances import metering_record
    record = metering_record(_report(AverageProcessorUsage=2100, TotalDiskAllocation=None))
    assert record['cpu_average_mhz'] == 2100
    assert record['disk_allocated_mb'] == 0             # documented, without a value
    assert record['metering_duration_seconds'] == 3600


@pytest.mark.parametrize('missing', ['AverageProcessorUsage', 'TotalDiskAllocation',
                                     'NetworkMeteredTrafficReport', 'MeteringDuration'])
def test_metering_fails_loudly_on_a_missing_property(missing):
    from psdriver.sim.handlers.instances import metering_record
    report = _report()
    del report[missing]
    # The display headings (AvgCPU, TotalDisk, ...) are no substitute for the properties.
    report.update(AvgCPU=5, AvgRAM=5, TotalDisk=5)
    with pytest.raises(SimError) as caught:
        metering_record(report)
    assert (caught.value.category, caught.value.error_id) == (
        'InvalidResult', 'PsDriver.MeteringPropertyMissing')
    assert missing in caught.value.message


def test_instance_info_reports_metering_from_the_report():
    host = SimHost()
    add_instance(host, 'instance-00000001')
    params = {'Name': 'instance-00000001', 'IncludeMetrics': True}
    assert _run(host, 'Get-InstanceInfo', params)['metrics'] is None      # metering off
    host.enable_metering('instance-00000001')
    metrics = _run(host, 'Get-InstanceInfo', params)['metrics']
    assert metrics['cpu_average_mhz'] == 105 and metrics['metering_duration_seconds'] >= 0


# -- New-Instance with a JSON string spec --------------------------------------------------

def test_a_json_string_spec_keeps_date_like_strings():
    import json

    from psdriver.sim.handlers.spawn import spawn
    host = SimHost()
    add_instance(host, 'instance-00000009', power_on=False)   # the cached image and folder
    spec = {'name': '2024-05-01', 'instance_uuid': '0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b',
            'instance_dir': f'{INSTANCES}\\2024-05-01', 'generation': 2, 'vcpus': 1,
            'memory_mb': 512, 'notes_extra': '2024-05-01T10:00:00Z', 'power_on': False}
    out = spawn(host, json.dumps(spec))
    assert out['name'] == '2024-05-01'
    assert host.get_vm('2024-05-01').notes == \
        '0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b\n2024-05-01T10:00:00Z'


# -- Resize-InstanceDisk checks the VM state first -----------------------------------------

@pytest.mark.parametrize('generation, running, error_id', [
    (1, True, 'PsDriver.DiskResizeNeedsVMOff'),   # root on IDE 0:0 of a running VM
    (1, False, None),                             # the same disk, VM off
    (2, True, None),                              # a vhdx on SCSI grows online
])
def test_resize_refuses_an_ide_disk_of_a_running_vm(generation, running, error_id):
    host = SimHost()
    add_instance(host, 'instance-00000001', generation=generation, power_on=running,
                 root_gb=10)
    root = next(d for d in host.get_vm('instance-00000001').drives if d.kind == 'HardDisk')
    params = {'Path': root.path, 'SizeBytes': 20 * 1024 ** 3}
    if error_id is None:
        assert _run(host, 'Resize-InstanceDisk', params)['resized']
        return
    with pytest.raises(SimError) as caught:
        _run(host, 'Resize-InstanceDisk', params)
    assert (caught.value.category, caught.value.error_id) == ('InvalidOperation', error_id)
    assert "virtual machine 'instance-00000001' is Running" in caught.value.message
    assert 'IDE controller 0' in caught.value.message
    assert host.get_vhd(root.path).vhd.size == 10 * 1024 ** 3
