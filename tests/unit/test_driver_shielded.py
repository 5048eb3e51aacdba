"""Shielded VMs through HyperVDriver.spawn: shielding data from Barbican, a guarded simulated host.

Barbican is a local HTTP server speaking its REST API (tests/infra/barbican.py)
that python-barbicanclient talks to for real, with the request context's
token and service catalog, as nova-compute's requests have them.
"""

from __future__ import annotations

import base64
import json
import logging

import pytest
from nova import context as nova_context
from nova import exception
from nova.compute import provider_tree
from nova.network import model as network_model
from oslo_utils import uuidutils

from psdriver.ops import instancefeatures
from psdriver.sim.shielding import shielding_data_file
from tests.infra.barbican import FakeBarbican
from tests.unit.driver_env import HOSTNAME, INSTANCES, DriverEnv

TOKEN = 'user-token'
KEY_PROTECTOR = b'\x00\x00\x24\x34 key protector of the guardians'
TEMPLATE = {'name': 'WindowsServer2022', 'version': '1.0.0.0'}
TRUSTS_TEMPLATE = [{'name': 'WindowsServer2022', 'version': '1.0.0.0',
                    'version_rule': 'GreaterThanOrEquals'}]


@pytest.fixture
def barbican():
    with FakeBarbican(TOKEN) as server:
        yield server


def guarded_env(tmp_path, **host) -> DriverEnv:
    env = DriverEnv(tmp_path)
    env.__enter__()
    env.build()
    with env.host.transaction() as state:
        state.config.host_guarded = True
        for name, value in host.items():
            setattr(state.config, name, value)
    env.start()
    env.driver.get_available_resource(HOSTNAME)           # the periodic: host facts
    return env


@pytest.fixture
def env(tmp_path):
    env = guarded_env(tmp_path)
    yield env
    env.__exit__(None, None, None)


def request_context(barbican: FakeBarbican, token: str = TOKEN) -> nova_context.RequestContext:
    return nova_context.RequestContext(
        'user', 'project', auth_token=token, is_admin=False,
        service_catalog=[{'type': 'key-manager', 'name': 'barbican',
                          'endpoints': [{'region': 'RegionOne', 'publicURL': barbican.url}]}])


def pdk_container(barbican: FakeBarbican, qualifiers=None) -> str:
    """The shielding data split over two secrets, "1" and "2", as compute-hyperv read them."""
    data = shielding_data_file(KEY_PROTECTOR, TRUSTS_TEMPLATE if qualifiers is None
                               else qualifiers)
    return barbican.add_container({'2': data[20:], '1': data[:20]})


def template_image(env, template=True, **properties):
    image = env.image(hw_machine_type='hyperv-gen2', os_secure_boot='required', **properties)
    if template:
        with env.host.transaction() as state:
            state.config.template_disk_images[image.id] = dict(TEMPLATE)
    return image


def shielded_instance(env, image, reference, **fields):
    system_metadata = {'image_os_shielded_vm': 'required'}
    if reference is not None:
        system_metadata['image_img_pdk_reference'] = reference
    return env.instance(image, system_metadata=system_metadata, **fields)


def spawn(env, context, instance, image) -> None:
    env.driver.spawn(context, instance, image, [], None, {}, network_model.NetworkInfo([]),
                     None, True)


def instance_files(env, instance) -> list[str]:
    folder = f'{INSTANCES}\\{instance.name}'
    if not env.host.exists(folder):
        return []
    return sorted(entry.path.rsplit('\\', 1)[-1] for entry in env.host.list_dir(folder))


def assert_nothing_left(env, instance) -> None:
    assert env.host.find_vm(instance.name) is None
    assert not env.host.exists(f'{INSTANCES}\\{instance.name}')


# -- the way that works -------------------------------------------------------------------

def test_a_shielded_vm_is_provisioned_from_the_barbican_shielding_data(env, barbican, caplog):
    caplog.set_level(logging.DEBUG)
    image = template_image(env)
    instance = shielded_instance(env, image, pdk_container(barbican),
                                 metadata={'fsk:TimeZone': 'GMT Standard Time'})
    context = request_context(barbican)
    assert env.round_trips(spawn, env, context, instance, image) == 2   # image + New-Instance

    vm = env.vm(instance)
    assert vm.state == 'Running' and vm.secure_boot
    assert (vm.extra['shielded'], vm.extra['tpm'], vm.extra['provisioned']) == (True, True, True)
    assert vm.extra['key_protector'] == 'shielding_data'
    assert base64.b64decode(vm.extra['key_protector_base64']) == KEY_PROTECTOR
    assert vm.extra['specialization'] == {'@ComputerName@': instance.hostname,
                                          '@TimeZone@': 'GMT Standard Time'}
    # The shielding data went as a file, was deleted afterwards and never logged.
    assert instance_files(env, instance) == ['console.log', 'root.vhdx']
    spec = env.calls_of('New-Instance')[-1].params['Spec']
    assert spec['shielding']['data_file'] == f'{INSTANCES}\\{instance.name}\\shielding.pdk'
    assert spec['tpm'] is None
    assert KEY_PROTECTOR.decode('latin-1') not in json.dumps(spec)
    assert 'key protector of the guardians' not in caplog.text
    # The two secrets were read in the order of their names, with the user's token.
    assert sum(1 for _m, path in barbican.requests if path.endswith('/payload')) == 2


def test_payloads_are_not_logged_even_as_text(env, barbican, caplog):
    """keystoneauth logs text/plain and JSON bodies at DEBUG: not those of Barbican."""
    caplog.set_level(logging.DEBUG)
    image = template_image(env)
    data = shielding_data_file(KEY_PROTECTOR, TRUSTS_TEMPLATE)
    reference = barbican.add_container({'1': data})
    secret_id = barbican.containers[reference.rsplit('/', 1)[1]]['secret_refs'][0][
        'secret_ref'].rsplit('/', 1)[1]
    barbican.secrets[secret_id]['content_type'] = 'text/plain'
    instance = shielded_instance(env, image, reference)
    spawn(env, request_context(barbican), instance, image)
    assert env.vm(instance).extra['provisioned']
    assert 'volume_id_qualifiers' not in caplog.text        # a word of the payload


def test_the_instance_metadata_reference_wins_over_the_image_property(env, barbican):
    image = template_image(env)
    good = pdk_container(barbican)
    instance = shielded_instance(env, image, f'{barbican.url}/v1/containers/missing',
                                 metadata={'img_pdk_reference': good})
    spawn(env, request_context(barbican), instance, image)
    assert env.vm(instance).extra['provisioned']


def test_a_guarded_host_reports_the_shielded_vm_trait_and_others_do_not(tmp_path):
    def traits(**host) -> set[str]:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        env = guarded_env(folder, **host)
        try:
            tree = provider_tree.ProviderTree()
            tree.new_root(HOSTNAME, uuidutils.generate_uuid())
            env.driver.update_provider_tree(tree, HOSTNAME)
            return set(tree.data(HOSTNAME).traits)
        finally:
            env.__exit__(None, None, None)

    shielded = instancefeatures.SHIELDED_VM_TRAIT
    assert shielded == 'CUSTOM_HYPERV_SHIELDED_VM'
    assert {shielded, 'COMPUTE_SECURITY_TPM_2_0'} <= traits()
    unguarded = traits(host_guarded=False)
    assert shielded not in unguarded and 'COMPUTE_SECURITY_TPM_2_0' in unguarded
    assert shielded not in traits(hgs_mode='Local')
    assert shielded not in traits(shielded_vm_tools=False)


# -- refusals, each leaving nothing behind --------------------------------------------------

def test_a_host_that_is_not_guarded_refuses_before_anything_happens(tmp_path, barbican):
    env = guarded_env(tmp_path, host_guarded=False)
    try:
        image = template_image(env)
        instance = shielded_instance(env, image, pdk_container(barbican))
        with pytest.raises(exception.ComputeResourcesUnavailable, match='not guarded'):
            spawn(env, request_context(barbican), instance, image)
        assert env.calls_of('New-Instance') == []
        assert barbican.requests == []           # the shielding data was not even read
        assert_nothing_left(env, instance)
    finally:
        env.__exit__(None, None, None)


def test_a_host_no_longer_guarded_refuses_in_new_instance(env, barbican):
    """The last host report said guarded; attestation has failed since: the host says no."""
    image = template_image(env)
    instance = shielded_instance(env, image, pdk_container(barbican))
    with env.host.transaction() as state:
        state.config.host_guarded = False
    with pytest.raises(exception.ComputeResourcesUnavailable, match='not guarded'):
        spawn(env, request_context(barbican), instance, image)
    assert len(env.calls_of('New-Instance')) == 1
    assert_nothing_left(env, instance)


@pytest.mark.parametrize('reference, token, reason', [
    (None, TOKEN, 'needs the Barbican container'),
    ('missing', TOKEN, 'cannot be read from Barbican: HTTPClientError'),
    ('good', 'stolen-token', 'cannot be read from Barbican: HTTPAuthError'),
    ('misnumbered', TOKEN, 'secrets must be named 1 to 2'),
])
def test_shielding_data_that_cannot_be_had_aborts_the_build(env, barbican, reference, token,
                                                           reason):
    image = template_image(env)
    ref = {None: None, 'missing': f'{barbican.url}/v1/containers/{uuidutils.generate_uuid()}',
           'good': pdk_container(barbican),
           'misnumbered': barbican.add_container({'1': b'a', '3': b'b'})}[reference]
    instance = shielded_instance(env, image, ref)
    with pytest.raises(exception.ImageUnacceptable, match=reason):
        spawn(env, request_context(barbican, token), instance, image)
    assert env.calls_of('New-Instance') == []
    assert_nothing_left(env, instance)


def test_an_image_that_is_not_a_template_disk_is_refused_by_the_host(env, barbican):
    image = template_image(env, template=False)
    instance = shielded_instance(env, image, pdk_container(barbican))
    with pytest.raises(exception.ImageUnacceptable, match='not a signed shielded VM template'):
        spawn(env, request_context(barbican), instance, image)
    assert_nothing_left(env, instance)


def test_shielding_data_that_does_not_trust_the_template_is_refused(env, barbican):
    image = template_image(env)
    ref = pdk_container(barbican, [{'name': 'WindowsServer2022', 'version': '2.0.0.0',
                                    'version_rule': 'Equals'}])
    instance = shielded_instance(env, image, ref)
    with pytest.raises(exception.ImageUnacceptable, match='matches no volume ID qualifier'):
        spawn(env, request_context(barbican), instance, image)
    assert_nothing_left(env, instance)


def test_a_provisioning_that_never_ends_fails_the_build_after_the_timeout(env, barbican):
    env.flags('hyperv', shielded_vm_provisioning_timeout=60)
    with env.host.transaction() as state:
        state.config.shielded_provisioning_polls = -1
    image = template_image(env)
    instance = shielded_instance(env, image, pdk_container(barbican))
    with pytest.raises(Exception, match='did not finish within 60 seconds'):
        spawn(env, request_context(barbican), instance, image)
    assert env.calls_of('New-Instance')[-1].params['Spec']['shielding'][
        'provisioning_timeout_s'] == 60
    assert_nothing_left(env, instance)


def test_a_shielded_vm_needs_secure_boot(env, barbican):
    image = env.image(hw_machine_type='hyperv-gen2')
    instance = shielded_instance(env, image, pdk_container(barbican))
    with pytest.raises(exception.InvalidInput, match='needs secure boot'):
        spawn(env, request_context(barbican), instance, image)
    assert env.calls_of('New-Instance') == []


def test_a_computer_name_that_is_not_the_hostname_is_refused(env, barbican):
    image = template_image(env)
    instance = shielded_instance(env, image, pdk_container(barbican),
                                 metadata={'fsk:ComputerName': 'someone-else'})
    with pytest.raises(exception.InvalidInput, match='differs from the instance hostname'):
        spawn(env, request_context(barbican), instance, image)
    assert env.calls_of('New-Instance') == []


def test_a_shielded_vm_is_not_resized(env, barbican):
    image = template_image(env)
    instance = shielded_instance(env, image, pdk_container(barbican))
    spawn(env, request_context(barbican), instance, image)
    with pytest.raises(exception.InstanceFaultRollback):
        env.driver.migrate_disk_and_power_off(None, instance, HOSTNAME, instance.flavor,
                                              network_model.NetworkInfo([]))
    assert env.vm(instance).state == 'Running'


def test_a_shielded_vm_does_not_live_migrate_to_an_unguarded_host(tmp_path, barbican):
    env = guarded_env(tmp_path, host_guarded=False)
    try:
        env.host.set_migration(enabled=True, use_any_network=True)
        image = template_image(env)
        instance = shielded_instance(env, image, pdk_container(barbican))
        with pytest.raises(exception.MigrationPreCheckError,
                           match='shielded VM and the destination host .* cannot run one: it '
                                 'is not guarded'):
            env.driver.check_can_live_migrate_destination(None, instance, {}, {})
        plain = env.instance(image)
        assert env.driver.check_can_live_migrate_destination(None, plain, {}, {}) is not None
    finally:
        env.__exit__(None, None, None)
