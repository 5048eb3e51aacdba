"""The Nova objects of the demo, built as nova-compute holds them when it calls the driver.

A real request context, an ``Instance`` with its ``Flavor`` (every field
the driver and the config drive's metadata read is set, so nothing is
lazy-loaded from a database), the image's ``ImageMeta`` and a
``NetworkInfo`` with one Neutron port (VIF) on a subnet with DHCP.
"""

from __future__ import annotations

import uuid
from typing import Any

from nova import context as nova_context
from nova import objects
from nova.compute import power_state, task_states, vm_states
from nova.network import model as network_model

from psdriver.demo.stand_ins import DemoImage

#: Fixed ids, so two runs print the same thing (and a state file stays readable).
_NAMESPACE = uuid.UUID('1b4e28ba-2fa1-4d2b-883f-0016d3cca427')
PROJECT_ID = 'demo-project'
USER_ID = 'demo-user'
INSTANCE_ID = 42          # instance-0000002a with nova's default name template


def demo_uuid(what: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, what))


def image() -> DemoImage:
    """A generation 2 Linux image, 1 GiB virtual (the file is about 1 MiB)."""
    return DemoImage(id=demo_uuid('image'), name='demo-linux-gen2', virtual_size=1024 ** 3,
                     properties={'hw_machine_type': 'hyperv-gen2', 'os_type': 'linux'})


def request_context() -> nova_context.RequestContext:
    return nova_context.RequestContext(USER_ID, PROJECT_ID, is_admin=True,
                                       request_id='req-' + demo_uuid('request'))


def flavor() -> objects.Flavor:
    return objects.Flavor(id=1, flavorid='1', name='demo.small', vcpus=2, memory_mb=2048,
                          root_gb=10, ephemeral_gb=0, swap=0, rxtx_factor=1.0,
                          vcpu_weight=0, is_public=True, disabled=False, extra_specs={},
                          description=None)


def bigger_flavor() -> objects.Flavor:
    """What the demo resizes to: more vCPUs, memory and root disk."""
    return objects.Flavor(id=2, flavorid='2', name='demo.medium', vcpus=4, memory_mb=4096,
                          root_gb=20, ephemeral_gb=0, swap=0, rxtx_factor=1.0,
                          vcpu_weight=0, is_public=True, disabled=False, extra_specs={},
                          description=None)


def vif(port: str, mac: str, network_id: str) -> network_model.VIF:
    """A Neutron port bound by the Neutron Hyper-V L2 service (``vif_type = hyperv``)."""
    subnet = network_model.Subnet(
        cidr='10.0.0.0/24', gateway=network_model.IP(address='10.0.0.1', type='gateway'),
        dns=[network_model.IP(address='10.0.0.2', type='dns')],
        ips=[network_model.FixedIP(address=f'10.0.0.{10 + int(mac[-2:], 16)}')],
        routes=[], version=4, meta={'dhcp_server': '10.0.0.2'})
    network = network_model.Network(id=network_id, bridge=None, label='demo-net',
                                    subnets=[subnet], meta={'mtu': 1500, 'tenant_id': PROJECT_ID})
    return network_model.VIF(id=demo_uuid(port), address=mac, network=network,
                             type=network_model.VIF_TYPE_HYPERV, details={},
                             devname=f'tap{demo_uuid(port)[:11]}', vnic_type='normal',
                             active=True)


def network_info() -> network_model.NetworkInfo:
    return network_model.NetworkInfo([vif('port-1', 'fa:16:3e:00:00:01', demo_uuid('net'))])


def second_vif() -> network_model.VIF:
    """The port the attach/detach interface steps use."""
    return vif('port-2', 'fa:16:3e:00:00:02', demo_uuid('net'))


def instance(context: nova_context.RequestContext, host: str, node: str,
             img: DemoImage, nw_info: network_model.NetworkInfo) -> objects.Instance:
    """The instance as the compute manager has it when it calls ``spawn``."""
    flv = flavor()
    instance_uuid = demo_uuid('instance')
    inst = objects.Instance(
        context=context, id=INSTANCE_ID, uuid=instance_uuid, user_id=USER_ID,
        project_id=PROJECT_ID, display_name='demo', display_description='psdriver demo',
        hostname='demo', host=host, node=node, launched_on=host,
        availability_zone='nova', reservation_id='r-' + instance_uuid[:8], launch_index=0,
        image_ref=img.id, kernel_id='', ramdisk_id='', os_type=img.properties.get('os_type'),
        flavor=flv, instance_type_id=flv.id, vcpus=flv.vcpus, memory_mb=flv.memory_mb,
        root_gb=flv.root_gb, ephemeral_gb=flv.ephemeral_gb,
        root_device_name='/dev/sda', default_ephemeral_device=None, default_swap_device=None,
        config_drive='True', user_data=None, key_name=None, key_data=None, metadata={},
        system_metadata=_system_metadata(img),
        vm_state=vm_states.BUILDING, task_state=task_states.SPAWNING,
        power_state=power_state.NOSTATE, launched_at=None, terminated_at=None,
        created_at=None, deleted=False, cell_name=None, locked=False, locked_by=None,
        info_cache=objects.InstanceInfoCache(instance_uuid=instance_uuid,
                                             network_info=nw_info),
        ec2_ids=objects.EC2Ids(instance_id=f'i-{INSTANCE_ID:08x}', ami_id='ami-00000001',
                               kernel_id=None, ramdisk_id=None),
        keypairs=objects.KeyPairList(objects=[]), tags=objects.TagList(objects=[]),
        security_groups=objects.SecurityGroupList(objects=[]),
        pci_devices=objects.PciDeviceList(objects=[]), pci_requests=None,
        services=objects.ServiceList(objects=[]), device_metadata=None, numa_topology=None,
        vcpu_model=None, trusted_certs=None, resources=None, migration_context=None,
        ephemeral_key_uuid=None)
    return inst


def _system_metadata(img: DemoImage) -> dict[str, str]:
    """What nova copies from the image into the instance's system metadata at boot."""
    sysmeta = {'image_disk_format': 'vhdx', 'image_container_format': 'bare',
               'image_min_disk': '10', 'image_min_ram': '0', 'image_base_image_ref': img.id}
    sysmeta.update({f'image_{key}': value for key, value in img.properties.items()})
    return sysmeta


def image_meta(img: DemoImage) -> objects.ImageMeta:
    return objects.ImageMeta.from_dict(img.meta())


def describe(value: Any) -> str:
    """How a driver-call argument is shown: objects by kind, plain values as they are."""
    if isinstance(value, objects.Instance):
        return f'instance[{value.name}]'
    if isinstance(value, objects.ImageMeta):
        return f'image_meta[{value.name}, {value.disk_format}]'
    if isinstance(value, network_model.NetworkInfo):
        return f'network_info[{len(value)} VIF]'
    if isinstance(value, network_model.VIF):
        return f'vif[{value["address"]}]'
    if isinstance(value, nova_context.RequestContext):
        return 'context'
    return type(value).__name__
