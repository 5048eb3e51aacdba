"""Nested virtualization and local disk QoS through HyperVDriver.spawn on the simulated host."""

from __future__ import annotations

import pytest
from nova import exception

from tests.unit.driver_env import INSTANCES, DriverEnv


@pytest.fixture
def env(tmp_path):
    with DriverEnv(tmp_path) as env:
        env.start()
        env.driver.get_available_resource(env.driver.get_available_nodes()[0])   # the periodic
        yield env


def nested(env, instance) -> bool:
    return bool(env.vm(instance).extra.get('expose_virtualization_extensions'))


def iops(env, instance) -> dict[str, int]:
    limits = env.vm(instance).extra.get('disk_max_iops', {})
    return {path.rsplit('\\', 1)[-1]: value for path, value in limits.items()}


def test_vmx_in_the_flavor_exposes_virtualization_and_turns_dynamic_memory_off(env):
    env.flags('hyperv', dynamic_memory_ratio=2.0)
    image = env.image()
    instance = env.instance(image, flavor_values={'extra_specs': {'hw:cpu_features': 'vmx'}})
    assert env.round_trips(env.spawn, instance, image) == 2     # image lookup + New-Instance
    assert nested(env, instance)
    assert env.vm(instance).dynamic_memory is False
    assert env.vm(instance).state == 'Running'


def test_vmx_in_the_image_properties(env):
    image = env.image()
    instance = env.instance(image, system_metadata={'image_hw_cpu_features': 'sse4_2, vmx'})
    env.spawn(instance, image)
    assert nested(env, instance)


def test_no_vmx_no_nesting(env):
    image = env.image()
    instance = env.instance(image, flavor_values={'extra_specs': {'hw:cpu_features': 'avx2'}})
    env.spawn(instance, image)
    assert not nested(env, instance)


@pytest.mark.parametrize('host, reason', [
    ({'cpu_vendor': 'AuthenticAMD', 'os_version': '10.0.17763',
      'hyperv_version': '10.0.17763.1'}, 'needs build 20348'),
    ({'cpu_features': ['sse2', 'vmx']}, 'no second level address translation'),
])
def test_a_host_that_cannot_nest_refuses_before_anything_is_created(tmp_path, host, reason):
    with DriverEnv(tmp_path) as env:
        driver = env.build()
        for key, value in host.items():
            setattr(env.host.state.config, key, value)
        driver.init_host('SIMHV01')
        image = env.image()
        instance = env.instance(image, flavor_values={'extra_specs': {'hw:cpu_features': 'vmx'}})
        with pytest.raises(exception.ComputeResourcesUnavailable, match=reason):
            env.spawn(instance, image)
        assert env.calls_of('New-Instance') == []


def test_the_host_refuses_nesting_itself_when_the_driver_could_not_tell(env):
    """A host report older than a CPU change: Hyper-V's refusal rolls the spawn back."""
    image = env.image()
    instance = env.instance(image, flavor_values={'extra_specs': {'hw:cpu_features': 'vmx'}})
    env.host.state.config.cpu_features = ['sse2']                 # no SLAT
    with pytest.raises(exception.NovaException, match='second level address translation'):
        env.spawn(instance, image)
    assert env.host.find_vm(instance.name) is None
    assert not env.host.exists(f'{INSTANCES}\\{instance.name}')


def test_disk_iops_quota_limits_root_ephemeral_and_swap(env):
    image = env.image()
    instance = env.instance(image, config_drive=True, flavor_values={
        'ephemeral_gb': 1, 'swap': 512,
        'extra_specs': {'quota:disk_total_iops_sec': '500'}})
    env.spawn(instance, image)
    assert iops(env, instance) == {'root.vhdx': 500, 'eph0.vhdx': 500, 'swap.vhdx': 500}


def test_disk_bytes_quota_becomes_8k_normalized_iops(env):
    image = env.image()
    instance = env.instance(image, flavor_values={
        'extra_specs': {'quota:disk_total_bytes_sec': str(10 * 1024 * 1024 + 1)}})
    env.spawn(instance, image)
    assert iops(env, instance) == {'root.vhdx': 1281}


def test_no_quota_no_limit(env):
    image = env.image()
    instance = env.instance(image)
    env.spawn(instance, image)
    assert iops(env, instance) == {}


def test_a_bad_quota_value_is_refused(env):
    image = env.image()
    instance = env.instance(image, flavor_values={
        'extra_specs': {'quota:disk_total_iops_sec': 'fast'}})
    with pytest.raises(exception.InvalidInput, match='quota:disk_total_iops_sec'):
        env.spawn(instance, image)


def test_apply_disk_qos_sets_the_new_flavor_s_limit_on_a_running_vm(env):
    """The hook a resize uses: one round trip, the config drive left alone."""
    image = env.image()
    instance = env.instance(image, config_drive=True, flavor_values={
        'ephemeral_gb': 1, 'extra_specs': {'quota:disk_total_iops_sec': '500'}})
    env.spawn(instance, image)
    instance.flavor.extra_specs = {'quota:disk_total_bytes_sec': str(8192 * 300)}

    assert env.round_trips(env.driver.vmops.apply_disk_qos, instance) == 1
    assert iops(env, instance) == {'root.vhdx': 300, 'eph0.vhdx': 300}
    assert env.vm(instance).state == 'Running'
    instance.flavor.extra_specs = {}
    env.driver.vmops.apply_disk_qos(instance)
    assert iops(env, instance) == {'root.vhdx': 0, 'eph0.vhdx': 0}


# -- virtual TPM and shielded VMs ---------------------------------------------------------

def gen2(env, **properties):
    return env.image(hw_machine_type='hyperv-gen2', **properties)


SECURE = {'os:secure_boot': 'required'}


def tpm(env, instance) -> tuple[bool, str | None]:
    extra = env.vm(instance).extra
    return bool(extra.get('tpm')), extra.get('key_protector')


def test_hw_tpm_version_2_gives_a_vtpm_with_a_local_key_protector(env):
    image = gen2(env)
    instance = env.instance(image, flavor_values={
        'extra_specs': {'hw:tpm_version': '2.0', 'hw:tpm_model': 'tpm-crb', **SECURE}})
    assert env.round_trips(env.spawn, instance, image) == 2       # image lookup + New-Instance
    assert tpm(env, instance) == (True, 'local')
    assert env.vm(instance).secure_boot
    assert env.vm(instance).state == 'Running'


def test_the_image_can_ask_for_it_the_nova_way_or_the_compute_hyperv_way(env):
    image = gen2(env, hw_tpm_version='2.0', os_secure_boot='required')
    nova_way = env.instance(image)
    env.spawn(nova_way, image)
    assert tpm(env, nova_way) == (True, 'local')

    image = gen2(env, os_secure_boot='required')
    legacy = env.instance(image, system_metadata={'image_os_vtpm': 'required'})
    env.spawn(legacy, image)
    assert tpm(env, legacy) == (True, 'local')


def test_no_tpm_unless_asked(env):
    image = gen2(env)
    instance = env.instance(image, flavor_values={'extra_specs': dict(SECURE)})
    env.spawn(instance, image)
    assert tpm(env, instance) == (False, None)


def test_tpm_1_2_is_refused(env):
    image = gen2(env)
    instance = env.instance(image, flavor_values={
        'extra_specs': {'hw:tpm_version': '1.2', **SECURE}})
    with pytest.raises(exception.InvalidInput, match='TPM 2.0 only'):
        env.spawn(instance, image)
    assert env.calls_of('New-Instance') == []


def test_a_vtpm_without_secure_boot_is_refused(env):
    image = gen2(env)
    instance = env.instance(image, flavor_values={'extra_specs': {'hw:tpm_version': '2.0'}})
    with pytest.raises(exception.InvalidInput, match='needs secure boot'):
        env.spawn(instance, image)
    assert env.host.find_vm(instance.name) is None


def test_a_host_without_vtpm_refuses_it_for_another_host_to_try(tmp_path):
    with DriverEnv(tmp_path) as env:
        driver = env.build()
        env.host.state.config.vtpm = False
        driver.init_host('SIMHV01')
        image = gen2(env)
        instance = env.instance(image, flavor_values={
            'extra_specs': {'hw:tpm_version': '2.0', **SECURE}})
        with pytest.raises(exception.ComputeResourcesUnavailable, match='virtual TPM'):
            env.spawn(instance, image)
        assert env.calls_of('New-Instance') == []
