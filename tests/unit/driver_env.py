"""A real HyperVDriver on the simulated host, driven with real nova objects.

What the driver-level tests share.  ``[powershell] transport = sim`` makes the
driver build its own simulated Hyper-V host; the tests assert on that host's
state.  Only two other boundaries are replaced:

* Glance: ``nova.virt.images.fetch`` / ``get_info`` serve disk bytes built by
  :mod:`psdriver.sim.image_files` (as in tests/unit/test_imagecache.py);
* the two lookups nova's ``InstanceMetadata`` makes for a config drive: the
  instance's block device mappings (a database query) and its security
  groups (a Neutron query).  Both are replaced with autospec and answer
  "none" and ``default``.

Every call that crosses the PowerShell boundary is recorded
(:attr:`DriverEnv.calls`): the parameters the host received and the result it
returned, for the few checks the host's state cannot answer (what a config
drive holds, whether a power-off was forced).

    with DriverEnv(tmp_path) as env:
        driver = env.start()
        image = env.image()
        instance = env.instance()
        env.spawn(instance, image)
        assert env.host.get_vm(instance.name).state == 'Running'
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import threading
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import pycdlib
from nova import exception, objects
from nova.network import model as network_model
from nova.virt import fake as fake_virt
from oslo_config import cfg
from oslo_config import fixture as config_fixture

import psdriver.conf  # noqa: F401  (registers the options)
from psdriver import driver as psdriver_driver
from psdriver.bridge.call import ScriptCall
from psdriver.sim import SimHost
from psdriver.sim.image_files import Sparse, materialise, vhdx

objects.register_all()

GIB = 1024 ** 3
MIB = 1024 ** 2
INSTANCES = 'C:\\OpenStack\\Instances'
BASE = INSTANCES + '\\_base'
HOSTNAME = 'SIMHV01'
SWITCH = 'external'          # the simulated host's switch


@dataclasses.dataclass
class RecordedCall:
    """One script run on the host: its name, parameters and envelope."""

    name: str
    params: dict[str, Any]
    raw: str

    @property
    def envelope(self) -> dict[str, Any]:
        return json.loads(self.raw)

    @property
    def result(self) -> Any:
        return self.envelope.get('result')


class RecordingRunner:
    """The simulated host's runner, keeping every call that went through it."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self.features = getattr(runner, 'features', frozenset())
        self.target = runner.target
        self.host = runner.host
        self.calls: list[RecordedCall] = []
        self._lock = threading.Lock()

    def run(self, call: ScriptCall) -> str:
        raw = self._runner.run(call)
        with self._lock:
            self.calls.append(RecordedCall(call.name, dict(call.params), raw))
        return raw

    def close(self) -> None:
        self._runner.close()


class Glance:
    """Images by id; ``fetch``/``get_info`` stand in for nova.virt.images' Glance calls."""

    def __init__(self) -> None:
        self.images: dict[str, tuple[bytes | Sparse, str]] = {}
        self.fetched: list[str] = []

    def add(self, image_id: str, data: bytes | Sparse, disk_format: str) -> None:
        self.images[image_id] = (data, disk_format)

    def fetch(self, context, image_href, path, trusted_certs=None):
        if image_href not in self.images:
            raise exception.ImageNotFound(image_id=image_href)
        self.fetched.append(image_href)
        materialise(self.images[image_href][0], path)

    def get_info(self, context, image_href):
        if image_href not in self.images:
            raise exception.ImageNotFound(image_id=image_href)
        return {'id': image_href, 'disk_format': self.images[image_href][1]}


def flavor(**kw: Any) -> objects.Flavor:
    values = {'id': 1, 'flavorid': 'm1.test', 'name': 'm1.test', 'vcpus': 2, 'memory_mb': 2048,
              'root_gb': 10, 'ephemeral_gb': 0, 'swap': 0, 'extra_specs': {},
              'rxtx_factor': 1.0, 'vcpu_weight': 0, 'is_public': True, 'disabled': False,
              'description': None}
    values.update(kw)
    return objects.Flavor(**values)


def vif(mac: str = 'fa:16:3e:01:02:03', vlan: int | None = None,
        vif_type: str = 'hyperv', active: bool = True) -> network_model.VIF:
    """A Neutron port as nova hands it to the driver (with a VLAN when given).

    ``active=False`` is a port Neutron has not bound yet: spawn waits for
    its ``network-vif-plugged`` event.
    """
    details = {network_model.VIF_DETAILS_VLAN: vlan} if vlan is not None else {}
    subnet = network_model.Subnet(
        cidr='10.0.0.0/24', gateway=network_model.IP('10.0.0.1'),
        ips=[network_model.FixedIP(address='10.0.0.5')])
    network = network_model.Network(id=str(uuid.uuid4()), bridge=SWITCH, label='private',
                                    subnets=[subnet])
    return network_model.VIF(id=str(uuid.uuid4()), address=mac, network=network,
                             type=vif_type, details=details, active=active)


def read_iso(data: bytes) -> dict[str, bytes]:
    """Every file of an ISO 9660 image by its Rock Ridge path (config drive contents)."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        files = {}
        for root, _dirs, names in iso.walk(rr_path='/'):
            for name in names:
                path = f'{root.rstrip("/")}/{name}'
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, rr_path=path)
                files[path.lstrip('/')] = out.getvalue()
        return files
    finally:
        iso.close()


class DriverEnv:
    """Configuration, stand-ins and a driver on its own simulated host (a context manager)."""

    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        self.tmp_path = tmp_path
        self.glance = Glance()
        self._stack = ExitStack()
        self._overrides = overrides
        self.driver: psdriver_driver.HyperVDriver | None = None
        self.events: list[Any] = []
        #: What the driver gets as nova's VirtAPI (set before start()).
        self.virtapi: Any = fake_virt.FakeVirtAPI()
        self._next_id = 1

    # -- set-up ----------------------------------------------------------------------

    def __enter__(self) -> DriverEnv:
        conf = cfg.CONF
        # A parsed (empty) command line, as nova-compute has: nova reads config_file.
        conf([], project='nova', default_config_files=[], default_config_dirs=[])
        fixture = config_fixture.Config(conf)
        fixture.setUp()
        self._stack.callback(fixture.cleanUp)
        self.fixture = fixture
        state = self.tmp_path / 'state'
        state.mkdir(exist_ok=True)
        fixture.config(instances_path=INSTANCES, host=HOSTNAME, state_path=str(state),
                       use_cow_images=True, my_ip='203.0.113.9')
        fixture.config(lock_path=str(self.tmp_path / 'locks'), group='oslo_concurrency')
        fixture.config(transport='sim', group='powershell')
        fixture.config(handle_virt_lifecycle_events=False, group='workarounds')
        for group_name, values in self._overrides.items():
            self.flags(group_name, **values)
        self._stack.enter_context(mock.patch(
            'nova.virt.images.fetch', side_effect=self.glance.fetch, autospec=True))
        self._stack.enter_context(mock.patch(
            'nova.virt.images.get_info', side_effect=self.glance.get_info, autospec=True))
        # nova's InstanceMetadata asks the database for the instance's block device
        # mappings and Neutron for its security groups: these two lookups, and only
        # these, are replaced (autospec) for the config drive tests.
        self.bdm_lookup = self._stack.enter_context(mock.patch(
            'nova.objects.BlockDeviceMappingList.get_by_instance_uuid', autospec=True,
            return_value=objects.BlockDeviceMappingList(objects=[])))
        self.security_groups = self._stack.enter_context(mock.patch(
            'nova.network.security_group_api.get_instance_security_groups', autospec=True,
            return_value=[{'name': 'default'}]))
        self._stack.callback(self._stop)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.close()

    def flags(self, group: str | None = None, **values: Any) -> None:
        """Set options, e.g. ``env.flags('hyperv', vswitch_name='external')``."""
        self.fixture.config(group=None if group in (None, 'DEFAULT') else group, **values)

    def build(self) -> psdriver_driver.HyperVDriver:
        """The driver, connected to its simulated host, before init_host."""
        driver = psdriver_driver.HyperVDriver(self.virtapi)
        driver._connect()
        driver._bridge.runner = RecordingRunner(driver._bridge.runner)
        driver.register_event_listener(self.events.append)
        self.driver = driver
        return driver

    def start(self) -> psdriver_driver.HyperVDriver:
        """The driver after init_host, as nova-compute has it when it serves requests."""
        driver = self.driver or self.build()
        driver.init_host(HOSTNAME)
        return driver

    def restart(self) -> psdriver_driver.HyperVDriver:
        """A new nova-compute process: the old driver stops, a new one starts.

        Needs ``[powershell] sim_state_file``, so that the new driver finds
        the same host.
        """
        self._stop()
        self.driver = None
        return self.start()

    def _stop(self) -> None:
        if self.driver is not None:
            self.driver.cleanup_host(HOSTNAME)

    # -- what tests look at -------------------------------------------------------

    @property
    def bridge(self) -> Any:
        return self.driver.bridge

    @property
    def host(self) -> SimHost:
        return self.driver.bridge.runner.host

    @property
    def calls(self) -> list[RecordedCall]:
        return self.driver.bridge.runner.calls

    def calls_of(self, name: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.name == name]

    def round_trips(self, operation: Any, *args: Any, **kwargs: Any) -> int:
        """Host round trips ``operation(*args, **kwargs)`` costs."""
        before = self.bridge.round_trips
        operation(*args, **kwargs)
        return self.bridge.round_trips - before

    def vm(self, instance: Any) -> Any:
        return self.host.get_vm(instance.name)

    def config_drive_files(self, instance: Any, call_name: str = 'New-Instance') -> dict:
        """The files of the config drive the last ``call_name`` put on the host."""
        call = self.calls_of(call_name)[-1]
        if call_name == 'New-Instance':
            drive = call.params['Spec']['config_drive']
            data, fmt = base64.b64decode(drive['content_base64']), drive['format']
        else:
            data = base64.b64decode(call.params['ConfigDriveBase64'])
            fmt = call.params['ConfigDrivePath'].rsplit('.', 1)[-1]
        if fmt == 'vhd':
            data = data[:-512]          # a fixed VHD: the ISO, padding, then the footer
        return read_iso(data)

    # -- nova objects ---------------------------------------------------------------

    def image(self, data: bytes | Sparse | None = None, disk_format: str = 'vhdx',
              image_id: str | None = None, **properties: Any) -> objects.ImageMeta:
        """An image in Glance and its ImageMeta (properties as nova reads them)."""
        image_id = image_id or str(uuid.uuid4())
        self.glance.add(image_id, vhdx(GIB) if data is None else data, disk_format)
        return objects.ImageMeta.from_dict({
            'id': image_id, 'name': 'test-image', 'disk_format': disk_format,
            'container_format': 'bare', 'size': GIB, 'min_disk': 0, 'min_ram': 0,
            'status': 'active', 'properties': properties})

    def instance(self, image: objects.ImageMeta | None = None, *, config_drive: bool = False,
                 flavor_values: dict[str, Any] | None = None, **fields: Any) -> objects.Instance:
        """An Instance as the compute manager hands it to spawn."""
        number = self._next_id
        self._next_id += 1
        flv = flavor(**(flavor_values or {}))
        values: dict[str, Any] = {name: None for name, field in objects.Instance.fields.items()
                                  if field.nullable}
        values.update(
            id=number, uuid=str(uuid.uuid4()), project_id=str(uuid.uuid4().hex),
            user_id=str(uuid.uuid4().hex), host=HOSTNAME, node=HOSTNAME,
            image_ref=image.id if image is not None else None,
            system_metadata={'image_disk_format': image.disk_format} if image else {},
            flavor=flv, vcpus=flv.vcpus, memory_mb=flv.memory_mb, root_gb=flv.root_gb,
            ephemeral_gb=flv.ephemeral_gb, instance_type_id=flv.id,
            config_drive='True' if config_drive else '', hostname=f'vm-{number}',
            display_name=f'vm-{number}', reservation_id=f'r-{number:08x}', launch_index=0,
            metadata={}, vm_state='building', task_state='spawning', power_state=0,
            ec2_ids=objects.EC2Ids(instance_id=f'i-{number:08x}', ami_id=f'ami-{number:08x}',
                                   kernel_id=None, ramdisk_id=None),
            keypairs=objects.KeyPairList(objects=[]), tags=objects.TagList(objects=[]),
            security_groups=objects.SecurityGroupList(objects=[]),
            services=objects.ServiceList(objects=[]),
            info_cache=objects.InstanceInfoCache(network_info=network_model.NetworkInfo()))
        values.update(fields)
        return objects.Instance(**values)

    def spawn(self, instance: Any, image: Any, network_info: Any = None,
              admin_password: str | None = None, power_on: bool = True,
              block_device_info: Any = None) -> None:
        self.driver.spawn(None, instance, image, [], admin_password, {},
                          network_model.NetworkInfo(network_info or []),
                          block_device_info, power_on)
