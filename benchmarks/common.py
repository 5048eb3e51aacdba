"""What the benchmark modules share.

* :class:`Table`: one result table (typed cells; markdown when printed);
* :func:`sample` / :func:`summarize`: per-call wall times and their median and p90;
* :class:`BridgeMeter`: wraps a bridge's runner to count round trips (the
  bridge's own ``round_trips`` counter), the scripts that ran and the JSON
  bytes that went each way;
* :func:`sim_compute`: the real :class:`~psdriver.driver.HyperVDriver` with
  ``[powershell] transport = sim``, Glance replaced by in-memory images and
  the two lookups nova's config drive metadata makes (block device mappings
  from the database, security groups from Neutron) answered locally;
* :func:`machine_facts`: what the figures were measured on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parent.parent

INSTANCES_PATH = 'C:\\OpenStack\\Instances'
IMAGE_ID = '0c7e2a55-6f0e-4d7c-9e4c-2b8f1a3d5e70'
HOSTNAME = 'SIMHV01'
GIB = 1024 ** 3

Cell = str | int | float


# -- tables -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Table:
    """A titled table; ``key`` is a stable name (``module.what``) for tests and tools."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Cell]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f'{self.key}: {len(cells)} cells for {len(self.columns)} columns')
        self.rows.append(list(cells))

    def markdown(self) -> str:
        # Text columns align left, number columns right (judged by the first row).
        first = self.rows[0] if self.rows else [''] * len(self.columns)
        rule = [' --- ' if isinstance(c, str) else ' ---: ' for c in first]
        lines = [f'**{self.title}**', '',
                 '| ' + ' | '.join(self.columns) + ' |',
                 '|' + '|'.join(rule) + '|']
        lines += ['| ' + ' | '.join(format_cell(c) for c in row) + ' |' for row in self.rows]
        if self.notes:
            lines.append('')
            lines += [f'{note}' if note.startswith('- ') else f'- {note}' for note in self.notes]
        return '\n'.join(lines)


def format_cell(value: Cell) -> str:
    """Integers with thousands separators, floats to about three significant figures."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f'{value:,}'
    if isinstance(value, float):
        if value == 0:
            return '0'
        if not math.isfinite(value):
            return f'{value:g}'
        if abs(value) >= 100:
            return f'{value:,.0f}'
        if abs(value) >= 10:
            return f'{value:.1f}'
        if abs(value) >= 0.1:
            return f'{value:.2f}'
        return f'{value:.2g}'
    return str(value).replace('|', '\\|')


# -- timing -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Stats:
    n: int
    median: float
    p90: float
    minimum: float


def summarize(samples: Sequence[float]) -> Stats:
    """Median, 90th percentile (nearest rank) and minimum of ``samples``."""
    if not samples:
        raise ValueError('no samples')
    ordered = sorted(samples)
    rank = max(1, math.ceil(0.9 * len(ordered)))
    return Stats(len(ordered), statistics.median(ordered), ordered[rank - 1], ordered[0])


def sample(fn: Callable[[], Any], repeat: int, warmup: int = 1,
           before: Callable[[], Any] | None = None,
           after: Callable[[], Any] | None = None) -> list[float]:
    """Wall time of ``repeat`` calls of ``fn`` (seconds), after ``warmup`` untimed calls.

    ``before`` and ``after`` run around every call, outside the timed part.
    """
    for _ in range(warmup):
        if before:
            before()
        fn()
        if after:
            after()
    times = []
    for _ in range(repeat):
        if before:
            before()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
        if after:
            after()
    return times


# -- the bridge, metered ----------------------------------------------------------------------

def document_json_bytes(document: str) -> int:
    """Size of the JSON inside a values document (plain, DEFLATE or base64)."""
    import zlib

    from psdriver.bridge.call import DEFLATE_PREFIX
    if document.startswith('{'):
        return len(document.encode('utf-8'))
    if document.startswith(DEFLATE_PREFIX):
        import base64
        return len(zlib.decompress(base64.b64decode(document[len(DEFLATE_PREFIX):]), -15))
    return len(document) // 4 * 3 - document[-2:].count('=')


class MeteredRunner:
    """Wraps a runner: records each script name and the bytes that went each way."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.target = inner.target
        self.features = inner.features
        self.scripts: list[str] = []
        #: Set to a list to keep every ScriptCall in it (off by default: they can be big).
        self.kept: list[Any] | None = None
        self.bytes_to_host = 0
        self.bytes_from_host = 0

    def __getattr__(self, name: str) -> Any:
        # Anything else (a SimRunner's ``host``...) is the wrapped runner's.
        return getattr(self.inner, name)

    def run(self, call: Any) -> str:
        self.scripts.append(call.name)
        if self.kept is not None:
            self.kept.append(call)
        self.bytes_to_host += document_json_bytes(call.document)
        out = self.inner.run(call)
        self.bytes_from_host += len(out.encode('utf-8'))
        return out

    def close(self) -> None:
        self.inner.close()


@dataclasses.dataclass
class Traffic:
    """What one measured block cost at the bridge (filled in when the block ends)."""

    round_trips: int = 0
    scripts: list[str] = dataclasses.field(default_factory=list)
    bytes_to_host: int = 0
    bytes_from_host: int = 0

    @property
    def json_bytes(self) -> int:
        return self.bytes_to_host + self.bytes_from_host

    def script_list(self) -> str:
        """``Get-CachedImage, New-Instance`` (``-`` when nothing ran)."""
        return ', '.join(self.scripts) or '-'


class BridgeMeter:
    """Puts a :class:`MeteredRunner` under ``bridge`` and measures blocks of work."""

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self.runner = MeteredRunner(bridge.runner)
        bridge.runner = self.runner

    @contextlib.contextmanager
    def measure(self) -> Iterator[Traffic]:
        traffic = Traffic()
        trips, calls = self.bridge.round_trips, len(self.runner.scripts)
        sent, received = self.runner.bytes_to_host, self.runner.bytes_from_host
        try:
            yield traffic
        finally:
            traffic.round_trips = self.bridge.round_trips - trips
            traffic.scripts = self.runner.scripts[calls:]
            traffic.bytes_to_host = self.runner.bytes_to_host - sent
            traffic.bytes_from_host = self.runner.bytes_from_host - received


# -- nova's surroundings, stood in for --------------------------------------------------------

class Glance:
    """Images by id: what ``nova.virt.images.fetch`` / ``get_info`` would get from Glance."""

    def __init__(self) -> None:
        self.images: dict[str, tuple[Any, str]] = {}
        self.downloads: list[str] = []

    def add(self, image_id: str, data: Any, disk_format: str) -> None:
        self.images[image_id] = (data, disk_format)

    def fetch(self, context: Any, image_href: str, path: str,
              trusted_certs: Any = None) -> None:
        from nova import exception
        from psdriver.sim.image_files import materialise
        if image_href not in self.images:
            raise exception.ImageNotFound(image_id=image_href)
        self.downloads.append(image_href)
        materialise(self.images[image_href][0], path)

    def get_info(self, context: Any, image_href: str) -> dict[str, Any]:
        return {'id': image_href, 'disk_format': self.images[image_href][1]}


@contextlib.contextmanager
def _nova_stand_ins(glance: Glance) -> Iterator[None]:
    """Glance, and the two lookups InstanceMetadata makes outside the compute host."""
    from nova import objects
    from nova.network import security_group_api

    def no_bdms(cls: Any, context: Any, instance_uuid: str, use_slave: bool = False) -> Any:
        return objects.BlockDeviceMappingList(objects=[])

    def default_group(context: Any, instance: Any, detailed: bool = False) -> list[Any]:
        return [{'name': 'default'}]

    with mock.patch('nova.virt.images.fetch', side_effect=glance.fetch, autospec=True), \
            mock.patch('nova.virt.images.get_info', side_effect=glance.get_info,
                       autospec=True), \
            mock.patch.object(objects.BlockDeviceMappingList, 'get_by_instance_uuid',
                              classmethod(no_bdms)), \
            mock.patch.object(security_group_api, 'get_instance_security_groups',
                              side_effect=default_group, autospec=True):
        yield


def network_info(index: int) -> Any:
    """One Neutron port on a private network, as nova passes it to spawn."""
    from nova.network import model
    subnet = model.Subnet(cidr='10.0.0.0/16', gateway=model.IP('10.0.0.1'),
                          dns=[model.IP('10.0.0.2')], routes=[],
                          ips=[model.FixedIP(address=f'10.0.{index // 250}.{index % 250 + 2}')])
    network = model.Network(id='6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d', bridge='br-int',
                            label='private', subnets=[subnet])
    vif = model.VIF(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f'port-{index}')),
                    address=f'fa:16:3e:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:'
                            f'{index & 255:02x}',
                    network=network, type='hyperv', details={}, active=True)
    return model.NetworkInfo([vif])


@dataclasses.dataclass
class SimCompute:
    """A HyperVDriver on a simulated host, with its meter and Glance stand-in."""

    driver: Any
    host: Any
    meter: BridgeMeter
    glance: Glance
    context: Any

    def instance(self, index: int, *, image_id: str = IMAGE_ID, config_drive: bool = True,
                 vcpus: int = 1, memory_mb: int = 1024, root_gb: int = 10) -> Any:
        """A nova Instance as the compute manager hands it to spawn."""
        from nova import objects
        flavor = objects.Flavor(id=1, flavorid='1', name='m1.small', vcpus=vcpus,
                                memory_mb=memory_mb, root_gb=root_gb, ephemeral_gb=0, swap=0,
                                extra_specs={}, rxtx_factor=1.0, is_public=True)
        instance_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f'psdriver-bench-{index}'))
        return objects.Instance(
            context=self.context, id=index, uuid=instance_uuid, image_ref=image_id,
            flavor=flavor, system_metadata={'image_disk_format': 'vhdx'}, metadata={},
            os_type=None, config_drive='True' if config_drive else '', user_data=None,
            hostname=f'bench-{index}', display_name=f'bench-{index}',
            display_description=None, launch_index=0, availability_zone='nova',
            project_id='8f2c0c3a5b1d4e6f9a7b2c4d6e8f0a1b',
            user_id='1a2b3c4d5e6f4a7b8c9d0e1f2a3b4c5d', key_name=None, key_data=None,
            reservation_id=f'r-{index:08x}', host=self.driver.hostops.nodename(),
            node=self.driver.hostops.nodename(), root_device_name=None,
            vm_state='building', task_state='spawning', power_state=0,
            launched_at=None, created_at=None, trusted_certs=None,
            ec2_ids=objects.EC2Ids(instance_id=f'i-{index:08x}', ami_id='ami-00000001',
                                   kernel_id=None, ramdisk_id=None),
            keypairs=objects.KeyPairList(objects=[]), device_metadata=None,
            numa_topology=None, tags=objects.TagList(objects=[]))

    def image_meta(self, image_id: str = IMAGE_ID) -> Any:
        from nova import objects
        return objects.ImageMeta.from_dict({
            'id': image_id, 'disk_format': 'vhdx', 'container_format': 'bare',
            'properties': {'hw_machine_type': 'hyperv-gen2'}})

    def spawn(self, instance: Any, image_id: str = IMAGE_ID) -> None:
        self.driver.spawn(self.context, instance, self.image_meta(image_id), [], None, {},
                          network_info(instance.id), None)

    def expire_caches(self) -> None:
        """What a periodic interval does: the 5 s host-info and VM snapshot caches lapse."""
        self.driver.hostops.invalidate()
        self.driver.vmops.invalidate()


@contextlib.contextmanager
def sim_compute(capacity: dict[str, Any] | None = None) -> Iterator[SimCompute]:
    """A HyperVDriver after ``init_host`` on a simulated host, torn down afterwards.

    The driver builds its host from ``[powershell] sim_state_file``; with
    ``capacity`` (``SimHost`` keywords: ``memory_mb``, ``logical_processors``...)
    that file is created first, so the driver opens a host of that size.
    Glance serves a 1 GiB VHDX image as :data:`IMAGE_ID`.
    """
    from nova import context as nova_context
    from nova import objects
    from oslo_config import fixture as config_fixture

    import psdriver.conf
    from psdriver.driver import HyperVDriver
    from psdriver.sim import SimHost
    from psdriver.sim.image_files import vhdx

    objects.register_all()
    conf = psdriver.conf.CONF
    if 'config_file' not in conf:
        # As nova-compute does at start-up: parse the (empty) command line, which
        # registers config_file; nova reads it to find the node's compute_id file.
        conf([], project='nova', default_config_files=[])
    workdir = tempfile.mkdtemp(prefix='psdriver-bench-')
    fixture = config_fixture.Config(conf)
    fixture.setUp()
    try:
        state_file = None
        if capacity:
            state_file = os.path.join(workdir, 'host.json')
            SimHost(state_file=state_file, hostname=HOSTNAME, **capacity)
        fixture.config(host=HOSTNAME, instances_path=INSTANCES_PATH, use_cow_images=True,
                       state_path=workdir)
        fixture.config(transport='sim', sim_state_file=state_file, group='powershell')
        fixture.config(handle_virt_lifecycle_events=False, group='workarounds')
        fixture.config(lock_path=os.path.join(workdir, 'locks'), group='oslo_concurrency')
        glance = Glance()
        glance.add(IMAGE_ID, vhdx(1 * GIB), 'vhdx')
        with _nova_stand_ins(glance):
            driver = HyperVDriver(virtapi=None)
            driver.init_host(HOSTNAME)
            try:
                host = driver.bridge.runner.host
                yield SimCompute(driver, host, BridgeMeter(driver.bridge), glance,
                                 nova_context.get_admin_context())
            finally:
                driver.cleanup_host(HOSTNAME)
    finally:
        fixture.cleanUp()
        shutil.rmtree(workdir, ignore_errors=True)


# -- nova's periodic tasks, as the compute manager drives them -------------------------------

def _provider_tree(nodename: str) -> Any:
    from nova.compute import provider_tree
    tree = provider_tree.ProviderTree()
    tree.new_root(nodename, '5d3a2f10-7b6c-4e8d-9f01-2a3b4c5d6e7f')
    return tree


def update_available_resource(driver: Any) -> None:
    """What the resource tracker asks of the driver in one periodic run."""
    for nodename in driver.get_available_nodes(refresh=True):
        driver.get_available_resource(nodename)
        driver.update_provider_tree(_provider_tree(nodename), nodename)


def sync_power_states(driver: Any, instances: list[Any]) -> list[int]:
    """nova's ``_sync_power_states``: count the VMs, then get_info for every instance.

    nova runs the per-instance part on a thread pool; here it runs in this thread.
    """
    driver.get_num_instances()
    return [driver.get_info(instance).state for instance in instances]


# -- where the figures come from --------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return 'not installed'


def machine_facts() -> dict[str, str]:
    """CPU, Python and the library versions that matter to the figures."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') \
        else os.cpu_count()
    return {
        'CPUs': f'{os.cpu_count()} ({usable} usable)',
        'CPU model': _cpu_model(),
        'Python': f'{platform.python_version()} ({platform.python_implementation()})',
        'OS': f'{platform.system()} {platform.release()}',
        # Other work on the machine moves every timing; this says how busy it was.
        'load average (1 min) at start': (f'{os.getloadavg()[0]:.2f}'
                                          if hasattr(os, 'getloadavg') else 'unknown'),
        'nova': _version('nova'),
        'fastjsonschema': _version('fastjsonschema'),
        'pypsrp': _version('pypsrp'),
    }
