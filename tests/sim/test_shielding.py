"""The simulated host's shielded VM cmdlets and New-Instance's ``shielding`` field."""

from __future__ import annotations

import base64

import pytest

from psdriver.bridge import contracts
from psdriver.sim import SimHost
from psdriver.sim.errors import SimError
from psdriver.sim.handlers.spawn import spawn
from psdriver.sim.shielding import JOB_COMPLETED, JOB_EXCEPTION, JOB_RUNNING, shielding_data_file
from tests.sim.conftest import GIB, INSTANCES

NAME = 'instance-00000001'
FOLDER = f'{INSTANCES}\\{NAME}'
IMAGE = f'{INSTANCES}\\_base\\template.vhdx'
PDK = f'{FOLDER}\\shielding.pdk'
KEY_PROTECTOR = b'guardians'
QUALIFIERS = [{'name': 'WS2022', 'version': '1.0.0.0', 'version_rule': 'GreaterThanOrEquals'}]


@pytest.fixture
def guarded() -> SimHost:
    host = SimHost(host_guarded=True)
    host.make_dir(f'{INSTANCES}\\_base')
    host.new_vhd(IMAGE, 10 * GIB)
    host.protect_template_disk(IMAGE, 'WS2022', '1.0.0.2')
    host.make_dir(FOLDER)
    host.write_file(PDK, shielding_data_file(KEY_PROTECTOR, QUALIFIERS), keep_content=True)
    return host


def shielded_vm(host: SimHost, disk: str = IMAGE) -> None:
    host.create_vm(NAME, generation=2, memory_startup_mb=1024, path=FOLDER)
    host.set_secure_boot(NAME, True, 'MicrosoftWindows')
    host.set_key_protector(NAME, host.key_protector_from_shielding_data(PDK))
    host.set_security_policy(NAME, True)
    host.enable_vtpm(NAME)
    child = f'{FOLDER}\\root.vhdx'
    host.new_vhd(child, parent_path=disk)
    host.attach_disk(NAME, child, controller_type='SCSI', controller_number=0, location=0)


def test_provisioning_runs_on_after_initialize_then_completes(guarded):
    shielded_vm(guarded)
    guarded.initialize_shielded_vm(NAME, PDK, None)
    assert guarded.get_vm(NAME).state == 'Running'
    states = [guarded.shielded_vm_provisioning_status(NAME)['JobState'] for _ in range(3)]
    assert states == [JOB_RUNNING, JOB_RUNNING, JOB_COMPLETED]
    assert guarded.get_vm(NAME).extra['provisioned']


def test_initialize_refuses_an_unguarded_host_and_a_foreign_key_protector(guarded):
    shielded_vm(guarded)
    guarded.config.host_guarded = False
    with pytest.raises(SimError, match='not guarded'):
        guarded.initialize_shielded_vm(NAME, PDK, None)
    guarded.config.host_guarded = True
    guarded.set_key_protector(NAME, b'someone else')
    with pytest.raises(SimError, match='key protector is not the one'):
        guarded.initialize_shielded_vm(NAME, PDK, None)
    assert guarded.get_vm(NAME).state == 'Off'


def test_initialize_needs_a_shielded_vm_with_a_tpm(guarded):
    guarded.create_vm(NAME, generation=2, memory_startup_mb=1024, path=FOLDER)
    with pytest.raises(SimError, match='must be shielded'):
        guarded.initialize_shielded_vm(NAME, PDK, None)
    with pytest.raises(SimError, match='no key protector'):
        guarded.set_security_policy(NAME, True)


def test_a_disk_the_shielding_data_does_not_trust_fails_the_provisioning(guarded):
    other = f'{INSTANCES}\\_base\\other.vhdx'
    guarded.new_vhd(other, 10 * GIB)
    guarded.protect_template_disk(other, 'WS2019', '1.0.0.0')
    shielded_vm(guarded, other)
    guarded.initialize_shielded_vm(NAME, PDK, None)
    while (job := guarded.shielded_vm_provisioning_status(NAME))['JobState'] == JOB_RUNNING:
        pass
    assert job['JobState'] == JOB_EXCEPTION
    assert 'WS2019 1.0.0.0 is not one the shielding data file trusts' in job['ErrorDescription']
    assert guarded.get_vm(NAME).state == 'Off'


def test_catalogs_come_only_from_template_disks(guarded):
    plain = f'{INSTANCES}\\_base\\plain.vhdx'
    guarded.new_vhd(plain, GIB)
    with pytest.raises(SimError, match='not a shielded VM template disk'):
        guarded.save_volume_signature_catalog(plain, f'{FOLDER}\\t.vsc')
    guarded.save_volume_signature_catalog(IMAGE, f'{FOLDER}\\t.vsc')
    assert guarded.test_shielding_data_applicability(PDK, f'{FOLDER}\\t.vsc')


def test_a_file_that_is_no_shielding_data_is_refused(guarded):
    guarded.write_file(f'{FOLDER}\\bad.pdk', b'\x30\x82 not ours', keep_content=True)
    with pytest.raises(SimError, match='not a valid shielding data file'):
        guarded.key_protector_from_shielding_data(f'{FOLDER}\\bad.pdk')


# -- New-Instance --------------------------------------------------------------------------

def spec(**shielding) -> dict:
    return {'name': NAME, 'instance_uuid': '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f',
            'instance_dir': FOLDER, 'generation': 2, 'vcpus': 2, 'memory_mb': 2048,
            'secure_boot': {'enabled': True, 'template': 'MicrosoftWindows'},
            'root_disk': {'source': IMAGE, 'cow': True, 'format': 'vhdx', 'size_gb': 20},
            'shielding': {'data_file': PDK, 'specialization': {'@ComputerName@': 'vm-1'},
                          **shielding}}


def new_instance(host: SimHost, value: dict) -> dict:
    contracts.load_contract('New-Instance').validate_spec(value)
    return spawn(host, value)


def test_new_instance_provisions_and_removes_the_shielding_files(guarded):
    result = new_instance(guarded, spec(poll_interval_s=5))
    contracts.load_contract('New-Instance').validate(result)
    assert result['shielding'] == {'provisioned': True, 'provisioning_seconds': 10.0}
    vm = guarded.get_vm(NAME)
    assert vm.state == 'Running' and vm.extra['shielded'] and vm.extra['tpm']
    assert base64.b64decode(vm.extra['key_protector_base64']) == KEY_PROTECTOR
    assert vm.extra['specialization'] == {'@ComputerName@': 'vm-1'}
    assert sorted(e.path.rsplit('\\', 1)[-1] for e in guarded.list_dir(FOLDER)) == \
        ['root.vhdx']


@pytest.mark.parametrize('change, error_id', [
    ({'tpm': {'key_protector': 'local'}}, 'PsDriver.InvalidSpec'),
    ({'power_on': False}, 'PsDriver.InvalidSpec'),
    ({'secure_boot': None}, 'PsDriver.InvalidSpec'),
    ({'instance_dir': f'{INSTANCES}\\elsewhere'}, 'PsDriver.InvalidSpec'),
])
def test_new_instance_refuses_what_a_shielded_vm_cannot_be(guarded, change, error_id):
    with pytest.raises(SimError) as caught:
        new_instance(guarded, {**spec(), **change})
    assert caught.value.error_id == error_id
    assert guarded.find_vm(NAME) is None


def test_a_failed_spawn_removes_the_folder_that_held_only_the_shielding_data(guarded):
    guarded.config.shielded_provisioning_polls = -1
    with pytest.raises(SimError) as caught:
        new_instance(guarded, spec(provisioning_timeout_s=60, poll_interval_s=30))
    assert caught.value.error_id == 'PsDriver.ShieldedProvisioningTimeout'
    assert guarded.find_vm(NAME) is None and not guarded.exists(FOLDER)


def test_a_failed_spawn_keeps_a_folder_that_held_more(guarded):
    guarded.write_file(f'{FOLDER}\\notes.txt', b'keep me', keep_content=True)
    guarded.config.host_guarded = False
    with pytest.raises(SimError) as caught:
        new_instance(guarded, spec())
    assert caught.value.error_id == 'PsDriver.HostNotGuarded'
    assert [e.path.rsplit('\\', 1)[-1] for e in guarded.list_dir(FOLDER)] == ['notes.txt']
