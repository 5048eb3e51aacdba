"""The image cache against the simulated host; only Glance is replaced.

Image files are real bytes: small VHD, VHDX and ISO files built here (and,
where qemu-img is installed, made by qemu-img) go through the same format
checks a Glance download does.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from unittest import mock

import pytest
from nova import exception, objects
from oslo_config import cfg
from oslo_config import fixture as config_fixture
from oslo_utils.imageutils import format_inspector

import psdriver.conf  # noqa: F401  (registers the options)
from psdriver import coordination
from psdriver.bridge.client import Bridge
from psdriver.ops import hostfiles, imagecache
from psdriver.ops.imagecache import CachedImage, ImageFormatError, inspect_image_file
from psdriver.sim import SimHost, SimRunner
from psdriver.sim.image_files import (
    Sparse, dynamic_vhd, fixed_vhd, iso, materialise, vhd_footer, vhdx)

from tests.prerequisites import require_tool

objects.register_all()

GIB = 1024 ** 3
MIB = 1024 ** 2
INSTANCES = 'C:\\OpenStack\\Instances'
BASE = INSTANCES + '\\_base'
IMAGE = '0c7e2a55-6f0e-4d7c-9e4c-2b8f1a3d5e70'
OTHER = '7d1e5b20-3c4a-4f6e-8b9d-0a1b2c3d4e5f'
THIRD = '1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b'
DAY = 86400


# -- image files ----------------------------------------------------------------------

def write(tmp_path: Path, name: str, data: bytes | Sparse) -> str:
    path = str(tmp_path / name)
    materialise(data, path)
    return path


# -- format inspection ----------------------------------------------------------------

@pytest.mark.parametrize('data, fmt, vsize, vhd_type', [
    (fixed_vhd(3 * MIB), 'vhd', 3 * MIB, 'Fixed'),
    (dynamic_vhd(40 * GIB), 'vhd', 40 * GIB, 'Dynamic'),
    (vhdx(20 * GIB), 'vhdx', 20 * GIB, 'Dynamic'),
    (vhdx(8 * MIB, fixed=True), 'vhdx', 8 * MIB, 'Fixed'),
    (vhdx(4 * GIB, sector=4096), 'vhdx', 4 * GIB, 'Dynamic'),
], ids=['fixed-vhd', 'dynamic-vhd', 'vhdx', 'fixed-vhdx', 'vhdx-4k'])
def test_inspection_reads_format_and_virtual_size(tmp_path, data, fmt, vsize, vhd_type):
    info = inspect_image_file(write(tmp_path, 'image', data))
    assert (info.format, info.virtual_size_bytes, info.vhd_type) == (fmt, vsize, vhd_type)
    assert info.file_size_bytes == len(data)


def test_iso_is_recognised_with_its_file_size(tmp_path):
    data = iso()
    info = inspect_image_file(write(tmp_path, 'image', data))
    assert (info.format, info.virtual_size_bytes, info.vhd_type) == ('iso', len(data), None)


def test_a_fixed_vhd_looks_raw_to_the_generic_inspector(tmp_path):
    """Why the footer is checked here: format sniffers read only the start of the file."""
    path = write(tmp_path, 'image', fixed_vhd(2 * MIB))
    assert str(format_inspector.detect_file_format(path)) != 'vhd'
    assert inspect_image_file(path).format == 'vhd'


@pytest.mark.parametrize('size', [8 * MIB, 3 * GIB, 64 * 1024 * GIB])
def test_vhdx_size_agrees_with_oslo_inspector(tmp_path, size):
    """The VHDX test files are read the same way by an independent parser."""
    path = write(tmp_path, 'image', vhdx(size))
    inspector = format_inspector.detect_file_format(path)
    assert str(inspector) == 'vhdx'
    assert inspector.virtual_size == size == inspect_image_file(path).virtual_size_bytes


def _qemu_img() -> str:
    return require_tool('qemu-img', 'qemu-utils')


@pytest.mark.parametrize('fmt, options, size, expect', [
    ('vhdx', 'subformat=dynamic', '1G', ('vhdx', 'Dynamic')),
    ('vhdx', 'subformat=fixed', '8M', ('vhdx', 'Fixed')),
    ('vpc', 'subformat=fixed,force_size=on', '10M', ('vhd', 'Fixed')),
    ('vpc', 'subformat=dynamic,force_size=on', '64M', ('vhd', 'Dynamic')),
    ('vpc', 'subformat=dynamic', '100M', ('vhd', 'Dynamic')),
])
def test_images_made_by_qemu_img(tmp_path, fmt, options, size, expect):
    qemu_img = _qemu_img()
    path = str(tmp_path / 'image')
    subprocess.run([qemu_img, 'create', '-q', '-f', fmt, '-o', options, path, size], check=True)
    info = subprocess.run([qemu_img, 'info', '-f', fmt, '--output=json', path], check=True,
                          capture_output=True, text=True).stdout
    found = inspect_image_file(path)
    assert (found.format, found.vhd_type) == expect
    assert found.virtual_size_bytes == json.loads(info)['virtual-size']


def test_qemu_img_reads_the_test_vhd_files(tmp_path):
    """The hand-made VHD files are valid for a real reader too."""
    qemu_img = _qemu_img()
    for name, data, size in (('f.vhd', fixed_vhd(3 * MIB), 3 * MIB),
                             ('d.vhd', dynamic_vhd(16 * MIB), 16 * MIB)):
        path = write(tmp_path, name, data)
        out = subprocess.run([qemu_img, 'info', '-f', 'vpc', '--output=json', path],
                             check=True, capture_output=True, text=True).stdout
        assert json.loads(out)['virtual-size'] == size


def _broken_vhd_checksum() -> Sparse:
    footer = bytearray(vhd_footer(MIB))
    footer[48] ^= 1
    return Sparse(MIB, bytes(footer))


@pytest.mark.parametrize('data, reason', [
    (b'\0' * 100, 'only 100 bytes'),
    (b'\0' * MIB, 'neither VHD, VHDX nor ISO'),
    (b'QFI\xfb' + bytes(MIB), 'qcow2'),
    (b'KDMV' + bytes(MIB), 'vmdk'),
    (Sparse(MIB, vhd_footer(MIB)[:-1]), 'neither VHD'),
    (_broken_vhd_checksum(), 'checksum'),
    (Sparse(MIB, vhd_footer(MIB, 4)), 'differencing'),
    (Sparse(MIB, vhd_footer(MIB, 7)), 'unknown disk type'),
    (Sparse(MIB, vhd_footer(2 * MIB, 2)), 'must be'),
    (dynamic_vhd(MIB)[:-512], 'footer at its end is missing'),
    (bytes(512) + dynamic_vhd(MIB)[512:], 'must start with a copy'),
    (vhdx(GIB, has_parent=True), 'differencing'),
    (vhdx(GIB, unknown_required=True), 'unknown metadata item'),
    (vhdx(GIB + 1), 'not a positive multiple'),
    (vhdx(0), 'not a positive multiple'),
    (vhdx(GIB, sector=1024), 'neither 512 nor 4096'),
    (vhdx(GIB)[:150 * 1024], 'truncated or damaged'),
    (vhdx(GIB)[:MIB + 100], 'truncated or damaged'),
])
def test_inspection_refuses(tmp_path, data, reason):
    with pytest.raises(ImageFormatError, match=reason):
        inspect_image_file(write(tmp_path, 'image', data))


def test_a_vhdx_with_a_damaged_primary_region_table_is_refused(tmp_path):
    """As nova's own check (the format inspector) reads it: the primary table only."""
    data = bytearray(vhdx(5 * GIB))
    data[192 * 1024:192 * 1024 + 4] = b'xxxx'
    with pytest.raises(ImageFormatError):
        inspect_image_file(write(tmp_path, 'image', bytes(data)))


def test_a_file_failing_the_inspector_safety_checks_is_refused(tmp_path):
    """nova's safety checks apply: a fixed VHD whose disk starts with a bad MBR is refused."""
    mbr = bytearray(512)
    mbr[446] = 0x33                                  # partition 0: not a valid boot flag
    mbr[446 + 4] = 0x07
    mbr[510:512] = b'\x55\xaa'
    size = 4 * MIB
    with open(tmp_path / 'image', 'wb') as f:
        f.write(bytes(mbr))
        f.truncate(size)
        f.seek(size)
        f.write(vhd_footer(size))
    with pytest.raises(ImageFormatError, match='safety checks .*mbr'):
        inspect_image_file(str(tmp_path / 'image'))
    mbr[446] = 0x80                                  # the same disk, bootable: accepted
    with open(tmp_path / 'image', 'r+b') as f:
        f.write(bytes(mbr))
    assert inspect_image_file(str(tmp_path / 'image')).vhd_type == 'Fixed'


# -- the cache on the simulated host --------------------------------------------------

class Glance:
    """Images by id; ``fetch``/``get_info`` replace nova.virt.images' Glance calls."""

    def __init__(self) -> None:
        self.images: dict[str, tuple[bytes | Sparse, str | None]] = {}
        self.fetched: list[str] = []
        self.info_calls: list[str] = []
        self.delay = 0.0
        #: image id -> Event its download waits for.
        self.gates: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.started = threading.Event()

    def add(self, image_id: str, data: bytes | Sparse, disk_format: str | None) -> None:
        self.images[image_id] = (data, disk_format)

    def fetch(self, context, image_href, path, trusted_certs=None):
        if image_href not in self.images:
            raise exception.ImageNotFound(image_id=image_href)
        with self.lock:
            self.fetched.append(image_href)
        self.started.set()
        if image_href in self.gates:
            self.gates[image_href].wait(10)
        time.sleep(self.delay)
        materialise(self.images[image_href][0], path)

    def get_info(self, context, image_href):
        self.info_calls.append(image_href)
        return {'id': image_href, 'disk_format': self.images[image_href][1]}


@pytest.fixture
def glance():
    fake = Glance()
    with mock.patch('nova.virt.images.fetch', side_effect=fake.fetch, autospec=True), \
            mock.patch('nova.virt.images.get_info', side_effect=fake.get_info,
                       autospec=True):
        yield fake


@pytest.fixture
def conf():
    fixture = config_fixture.Config(cfg.CONF)
    fixture.setUp()
    fixture.config(instances_path=INSTANCES, use_cow_images=True)
    fixture.config(transport='sim', group='powershell')
    yield cfg.CONF
    fixture.cleanUp()


@pytest.fixture
def host():
    return SimHost()


@pytest.fixture
def bridge(host):
    return Bridge(SimRunner(host))


@pytest.fixture
def staging(tmp_path):
    path = tmp_path / 'staging'
    path.mkdir()
    return path


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def cache(bridge, conf, host, staging, tmp_path, clock):
    coordinator = coordination.Coordinator(backend_url='', lock_path=str(tmp_path / 'locks'))
    files = hostfiles.RunnerFiles(SimRunner(host).put_file, staging_dir=str(staging))
    return imagecache.ImageCache(bridge, conf, files, coordinator, clock=clock)


def instance(image_ref=IMAGE, disk_format='vhdx', root_gb=10, **kw):
    sysmeta = {'image_disk_format': disk_format} if disk_format else {}
    flavor = objects.Flavor(vcpus=1, memory_mb=512, root_gb=root_gb, ephemeral_gb=0, swap=0,
                            extra_specs={}, name='m1', flavorid='1')
    return objects.Instance(uuid=str(uuid.uuid4()), id=1, image_ref=image_ref,
                            system_metadata=sysmeta, flavor=flavor, host='compute1', **kw)


def test_first_spawn_downloads_and_publishes_the_image(cache, glance, host, bridge, staging):
    glance.add(IMAGE, vhdx(20 * GIB), 'vhdx')

    image = cache.get_cached_image(None, instance(), 30)

    assert image == CachedImage(f'{BASE}\\{IMAGE}.vhdx', 'vhdx', 20 * GIB, IMAGE)
    assert glance.fetched == [IMAGE]
    disk = host.get_vhd(image.path)
    assert (disk.vhd.format, disk.vhd.vhd_type, disk.vhd.size) == ('VHDX', 'Dynamic', 20 * GIB)
    assert list(staging.iterdir()) == []
    assert bridge.round_trips == 1            # the Get-CachedImage that found nothing


def test_cached_image_costs_one_round_trip_and_no_download(cache, glance, bridge):
    glance.add(IMAGE, vhdx(20 * GIB), 'vhdx')
    first = cache.get_cached_image(None, instance(), 20)
    before = bridge.round_trips

    again = cache.get_cached_image(None, instance(), 20)

    assert again == first
    assert glance.fetched == [IMAGE]
    assert bridge.round_trips - before == 1


def test_concurrent_spawns_download_once(cache, glance):
    glance.add(IMAGE, vhdx(20 * GIB), 'vhdx')
    glance.delay = 0.3
    results, failures = [], []

    def spawn():
        try:
            results.append(cache.get_cached_image(None, instance(), 20))
        except Exception as exc:  # noqa: BLE001 (reported below)
            failures.append(exc)

    threads = [threading.Thread(target=spawn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert failures == []
    assert glance.fetched == [IMAGE]
    assert len(results) == 4 and len(set(results)) == 1


def test_different_images_download_at_the_same_time(cache, glance):
    """The lock is per image: a slow download does not hold up another image."""
    glance.add(IMAGE, vhdx(GIB), 'vhdx')
    glance.add(OTHER, vhdx(GIB), 'vhdx')
    glance.gates[IMAGE] = threading.Event()       # IMAGE's download hangs until set
    slow = threading.Thread(target=cache.get_cached_image, args=(None, instance(IMAGE)))
    slow.start()
    try:
        assert glance.started.wait(5)
        started = time.monotonic()
        other = cache.get_cached_image(None, instance(OTHER))
        elapsed = time.monotonic() - started
    finally:
        glance.gates[IMAGE].set()
        slow.join(10)
    assert other.image_id == OTHER
    assert elapsed < 5, f'waited {elapsed:.2f}s for the other image'
    assert glance.fetched == [IMAGE, OTHER]


def test_cache_image_reports_whether_it_downloaded(cache, glance):
    glance.add(IMAGE, iso(), 'iso')
    assert cache.cache_image(None, IMAGE) is True
    assert cache.cache_image(None, IMAGE) is False
    assert glance.fetched == [IMAGE]
    assert glance.info_calls == [IMAGE]


def test_disk_format_comes_from_glance_when_the_instance_lacks_it(cache, glance):
    glance.add(IMAGE, vhdx(GIB), 'vhd')
    with pytest.raises(exception.ImageUnacceptable, match='disk_format is vhd but the file is '
                                                          'a vhdx'):
        cache.get_cached_image(None, instance(disk_format=None))
    assert glance.info_calls == [IMAGE]


@pytest.mark.parametrize('data, disk_format, reason', [
    (vhdx(GIB), 'vhd', 'disk_format is vhd but the file is a vhdx'),
    (fixed_vhd(MIB), 'iso', 'disk_format is iso but the file is a vhd'),
    (bytes(2 * MIB), 'vhd', 'neither VHD, VHDX nor ISO'),
    (b'QFI\xfb' + bytes(MIB), 'vhdx', 'qcow2'),
    (vhdx(GIB, has_parent=True), 'vhdx', 'differencing'),
])
def test_a_file_that_is_not_what_it_should_be_is_refused(cache, glance, host, staging, data,
                                                         disk_format, reason):
    glance.add(IMAGE, data, disk_format)

    with pytest.raises(exception.ImageUnacceptable, match=reason) as err:
        cache.get_cached_image(None, instance(disk_format=disk_format))

    assert IMAGE in str(err.value)
    assert not host.exists(BASE) or host.list_dir(BASE) == []
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize('disk_format', ['qcow2', 'raw', 'vmdk', 'ami'])
def test_unsupported_disk_format_is_refused_before_downloading(cache, glance, disk_format):
    glance.add(IMAGE, vhdx(GIB), disk_format)
    with pytest.raises(exception.ImageUnacceptable, match=f'disk_format is {disk_format}'):
        cache.get_cached_image(None, instance(disk_format=disk_format))
    assert glance.fetched == []


def test_failed_download_leaves_nothing(cache, glance, host, staging):
    with pytest.raises(exception.ImageNotFound):
        cache.get_cached_image(None, instance(image_ref=OTHER))
    assert list(staging.iterdir()) == []
    assert not host.exists(f'{BASE}\\{OTHER}.vhdx')


def test_instance_without_image_is_refused(cache, glance):
    with pytest.raises(exception.ImageUnacceptable, match='no image'):
        cache.get_cached_image(None, instance(image_ref=''))


def test_vhd_root_is_served_as_a_grown_copy_with_cow(cache, glance, host, bridge):
    glance.add(IMAGE, fixed_vhd(GIB), 'vhd')

    image = cache.get_cached_image(None, instance(disk_format='vhd'), 3)

    assert image == CachedImage(f'{BASE}\\{IMAGE}_3.vhd', 'vhd', 3 * GIB, IMAGE)
    assert host.get_vhd(image.path).vhd.size == 3 * GIB
    assert host.get_vhd(f'{BASE}\\{IMAGE}.vhd').vhd.size == GIB
    assert sorted(e.path for e in host.list_dir(BASE)) == [f'{BASE}\\{IMAGE}.vhd',
                                                           f'{BASE}\\{IMAGE}_3.vhd']
    assert bridge.round_trips == 2            # list, Copy-CachedImage

    before = bridge.round_trips
    assert cache.get_cached_image(None, instance(disk_format='vhd'), 3) == image
    assert bridge.round_trips - before == 1   # the listing finds both files
    other_size = cache.get_cached_image(None, instance(disk_format='vhd'), 5)
    assert other_size.path == f'{BASE}\\{IMAGE}_5.vhd'
    assert other_size.virtual_size_bytes == 5 * GIB
    assert glance.fetched == [IMAGE]


@pytest.mark.parametrize('cow, data, disk_format, root_gb', [
    (False, fixed_vhd(GIB), 'vhd', 3),        # full copies are grown by New-Instance
    (True, vhdx(GIB), 'vhdx', 3),             # VHDX differencing disks grow themselves
    (True, fixed_vhd(GIB), 'vhd', 1),         # the image already has the flavor's size
    (True, fixed_vhd(GIB), 'vhd', None),      # root_gb 0: the image's own size
])
def test_the_image_itself_is_served(cache, glance, conf, host, cow, data, disk_format,
                                    root_gb):
    conf.set_override('use_cow_images', cow)
    glance.add(IMAGE, data, disk_format)

    image = cache.get_cached_image(None, instance(disk_format=disk_format), root_gb)

    assert image.path == f'{BASE}\\{IMAGE}.{disk_format}'
    assert image.virtual_size_bytes == GIB
    assert len(host.list_dir(BASE)) == 1


def test_flavor_smaller_than_the_image_is_refused(cache, glance):
    glance.add(IMAGE, vhdx(20 * GIB), 'vhdx')
    with pytest.raises(exception.FlavorDiskSmallerThanImage) as err:
        cache.get_cached_image(None, instance(), 10)
    assert err.value.kwargs['flavor_size'] == 10 * GIB
    assert err.value.kwargs['image_size'] == 20 * GIB
    # Cached by now: refused again without a download.
    with pytest.raises(exception.FlavorDiskSmallerThanImage):
        cache.get_cached_image(None, instance(), 19)
    assert glance.fetched == [IMAGE]


def test_iso_ignores_the_root_size(cache, glance, host):
    data = iso()
    glance.add(IMAGE, data, 'iso')
    image = cache.get_cached_image(None, instance(disk_format='iso'), 1)
    assert image == CachedImage(f'{BASE}\\{IMAGE}.iso', 'iso', len(data), IMAGE)
    assert host.get_item(image.path).size == len(data)


def test_rescue_image_comes_from_image_meta(cache, glance):
    glance.add(OTHER, fixed_vhd(GIB), 'vhd')
    meta = objects.ImageMeta.from_dict({'id': OTHER, 'disk_format': 'vhd'})

    image = cache.get_cached_image(None, instance(), None, image_meta=meta)

    assert image == CachedImage(f'{BASE}\\{OTHER}.vhd', 'vhd', GIB, OTHER)
    assert glance.fetched == [OTHER]


def test_unreadable_cached_file_is_reported(cache, glance, host):
    host.make_dir(BASE)
    host.add_file(f'{BASE}\\{IMAGE}.vhdx', 4096)          # no VHD metadata: Get-VHD fails
    glance.add(IMAGE, vhdx(GIB), 'vhdx')
    with pytest.raises(exception.ImageUnacceptable, match='cannot be read'):
        cache.get_cached_image(None, instance())
    assert glance.fetched == []


# -- the periodic task ----------------------------------------------------------------

def _seed(cache, glance, *specs):
    """Cache images: (image_id, data, disk_format, root_gb)."""
    for image_id, data, disk_format, root_gb in specs:
        glance.add(image_id, data, disk_format)
        cache.get_cached_image(None, instance(image_id, disk_format), root_gb)


def _names(host):
    return sorted(e.path.rsplit('\\', 1)[1] for e in host.list_dir(BASE))


def _age_all(host, seconds):
    """Make every file of the cache ``seconds`` older."""
    with host.transaction():
        for entry in host.list_dir(BASE):
            item = host.get_item(entry.path)
            item.created -= seconds
            if getattr(item, 'modified', 0):
                item.modified -= seconds


def test_update_removes_what_no_instance_uses_in_two_round_trips(cache, glance, host, bridge,
                                                                 clock):
    _seed(cache, glance, (IMAGE, fixed_vhd(GIB), 'vhd', 4), (OTHER, vhdx(GIB), 'vhdx', None),
          (THIRD, fixed_vhd(GIB), 'vhd', 2))
    assert _names(host) == sorted([f'{IMAGE}.vhd', f'{IMAGE}_4.vhd', f'{OTHER}.vhdx',
                                   f'{THIRD}.vhd', f'{THIRD}_2.vhd'])
    _age_all(host, 2 * DAY)
    clock.now += 2 * DAY
    before = bridge.round_trips

    result = cache.update(None, [instance(IMAGE, 'vhd')])

    assert bridge.round_trips - before == 2
    assert sorted(result['removed']) == sorted([f'{OTHER}.vhdx', f'{THIRD}.vhd',
                                                f'{THIRD}_2.vhd'])
    assert _names(host) == sorted([f'{IMAGE}.vhd', f'{IMAGE}_4.vhd'])


def test_update_keeps_young_images_by_their_own_minimum_age(cache, glance, host, clock, conf):
    _seed(cache, glance, (IMAGE, fixed_vhd(GIB), 'vhd', 4))
    conf.set_override('remove_unused_original_minimum_age_seconds', 3 * DAY, 'image_cache')
    conf.set_override('remove_unused_resized_minimum_age_seconds', DAY, 'image_cache')
    _age_all(host, 2 * DAY)
    clock.now += 2 * DAY

    result = cache.update(None, [])

    assert result['removed'] == [f'{IMAGE}_4.vhd']    # 2 days > 1 day for grown copies
    assert _names(host) == [f'{IMAGE}.vhd']            # 2 days < 3 days for originals


def test_update_keeps_an_image_the_host_uses(cache, glance, host, bridge, clock):
    """A VM the instance list does not know (another service's) still protects its image."""
    _seed(cache, glance, (IMAGE, vhdx(GIB), 'vhdx', None))
    host.make_dir(INSTANCES + '\\vm1')
    host.new_vhd(INSTANCES + '\\vm1\\root.vhdx', parent_path=f'{BASE}\\{IMAGE}.vhdx')
    host.create_vm('vm1', generation=2, path=INSTANCES + '\\vm1')
    host.attach_disk('vm1', INSTANCES + '\\vm1\\root.vhdx')
    _age_all(host, 2 * DAY)
    clock.now += 2 * DAY
    before = bridge.round_trips

    result = cache.update(None, [])

    assert result == {'removed': [], 'kept': [f'{IMAGE}.vhdx']}
    assert bridge.round_trips - before == 1
    assert _names(host) == [f'{IMAGE}.vhdx']


def test_update_keeps_an_image_just_handed_to_a_spawn(cache, glance, host, clock, conf):
    conf.set_override('remove_unused_original_minimum_age_seconds', 0, 'image_cache')
    glance.add(IMAGE, vhdx(GIB), 'vhdx')
    cache.get_cached_image(None, instance())
    _age_all(host, 2 * DAY)
    clock.now += 600

    assert cache.update(None, [])['removed'] == []

    clock.now += imagecache.HANDED_OUT_GRACE
    assert cache.update(None, [])['removed'] == [f'{IMAGE}.vhdx']


def test_update_counts_the_age_from_the_last_use(cache, glance, host, clock):
    """Like nova's other drivers: unused for the minimum age, not just old."""
    _seed(cache, glance, (IMAGE, vhdx(GIB), 'vhdx', None))
    _age_all(host, 30 * DAY)
    clock.now += 30 * DAY
    assert cache.update(None, [instance()])['removed'] == []    # still in use

    clock.now += 2 * 3600
    assert cache.update(None, [])['removed'] == []              # unused for 2 h only

    clock.now += DAY
    assert cache.update(None, [])['removed'] == [f'{IMAGE}.vhdx']


def test_update_skips_an_image_whose_lock_is_held(cache, glance, host, clock):
    _seed(cache, glance, (IMAGE, vhdx(GIB), 'vhdx', None), (OTHER, vhdx(GIB), 'vhdx', None))
    _age_all(host, 2 * DAY)
    clock.now += 2 * DAY
    done = threading.Event()
    release = threading.Event()

    def hold():
        with cache._coordinator.lock(f'image-{IMAGE}'):
            done.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert done.wait(5)
    try:
        result = cache.update(None, [])
    finally:
        release.set()
        holder.join(5)

    assert result['removed'] == [f'{OTHER}.vhdx']
    assert _names(host) == [f'{IMAGE}.vhdx']
    assert cache.update(None, [])['removed'] == [f'{IMAGE}.vhdx']


def test_update_removes_left_over_partial_copies(cache, glance, host, clock):
    _seed(cache, glance, (IMAGE, fixed_vhd(GIB), 'vhd', None))
    host.copy_file(f'{BASE}\\{IMAGE}.vhd', f'{BASE}\\{IMAGE}_4.partial-0a1b2c3d4e5f.vhd')
    _age_all(host, 2 * 3600)
    clock.now += 2 * 3600

    result = cache.update(None, [instance(IMAGE, 'vhd')])

    assert result['removed'] == [f'{IMAGE}_4.partial-0a1b2c3d4e5f.vhd']
    assert _names(host) == [f'{IMAGE}.vhd']


def test_update_does_nothing_when_removal_is_off(cache, glance, host, bridge, clock, conf):
    _seed(cache, glance, (IMAGE, vhdx(GIB), 'vhdx', None))
    conf.set_override('remove_unused_base_images', False, 'image_cache')
    _age_all(host, 30 * DAY)
    clock.now += 30 * DAY
    before = bridge.round_trips

    assert cache.update(None, []) == {'removed': [], 'kept': []}
    assert bridge.round_trips == before
    assert _names(host) == [f'{IMAGE}.vhdx']


def test_update_without_a_cache_folder(cache, bridge):
    assert cache.update(None, [instance()]) == {'removed': [], 'kept': []}
    assert bridge.round_trips == 1


def test_removal_setting_from_the_default_group_is_honoured(tmp_path, bridge, host):
    """Operators may still have the option in [DEFAULT] (nova's deprecated group)."""
    from nova.conf import imagecache as nova_imagecache

    conf = cfg.ConfigOpts()
    nova_imagecache.register_opts(conf)
    conf.register_opts([cfg.StrOpt('instances_path'), cfg.BoolOpt('use_cow_images')])
    path = tmp_path / 'nova.conf'
    path.write_text(f'[DEFAULT]\ninstances_path = {INSTANCES}\n'
                    'remove_unused_base_images = False\n')
    conf(args=[], default_config_files=[str(path)])
    cache = imagecache.ImageCache(bridge, conf, hostfiles.RunnerFiles(SimRunner(host).put_file),
                                  coordination.Coordinator(backend_url='', lock_path=None))
    host.make_dir(BASE)
    host.new_vhd(f'{BASE}\\{IMAGE}.vhdx', GIB)

    assert conf.image_cache.remove_unused_base_images is False
    assert cache.update(None, []) == {'removed': [], 'kept': []}
    assert host.exists(f'{BASE}\\{IMAGE}.vhdx')


@pytest.mark.parametrize('name, expected', [
    (f'{IMAGE}.vhdx', (IMAGE, None, False)),
    (f'{IMAGE}_40.vhd', (IMAGE, 40, False)),
    (f'{IMAGE}_40.partial-0a1b2c3d4e5f.vhd', (IMAGE, 40, True)),
    ('plain.iso', ('plain', None, False)),
])
def test_cache_names(name, expected):
    assert imagecache.split_cache_name(name) == expected


def test_default_files_follow_the_transport(bridge, conf):
    cache = imagecache.ImageCache(bridge, conf)
    assert isinstance(cache._files, hostfiles.RunnerFiles)
    assert cache.base_dir == BASE
