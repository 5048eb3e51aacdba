"""Nova can load every documented compute_driver value.

Nova prefixes ``compute_driver`` with ``nova.virt.``, so each value needs a
shim package under ``nova/virt/``. Checked three ways:

* in this process, with the shims of this checkout;
* from the installed (non-editable) package, in an isolated interpreter
  that cannot see the checkout: ``pip install --no-deps .`` first. Skipped
  when psdriver is not installed, except under CI (``CI=true``), where it
  fails;
* in a wheel built from a clean copy of the checkout: the shims, all the
  modules and the PowerShell scripts are in it, nova's own ``__init__.py``
  files are not.
"""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import nova.virt
from nova.virt import driver as nova_driver
from nova.virt import fake

from tests.prerequisites import missing

REPO = Path(__file__).resolve().parents[2]

DRIVER_PATHS = {
    'psdriver.driver.HyperVDriver': 'psdriver.driver.HyperVDriver',
    'psdriver.cluster.driver.HyperVClusterDriver':
        'psdriver.cluster.driver.HyperVClusterDriver',
    'compute_hyperv.driver.HyperVDriver': 'psdriver.driver.HyperVDriver',
    'compute_hyperv.cluster.driver.HyperVClusterDriver':
        'psdriver.cluster.driver.HyperVClusterDriver',
}

SHIM_FILES = [
    f'nova/virt/{name}/{module}'
    for name in ('psdriver', 'compute_hyperv')
    for module in ('__init__.py', 'driver.py', 'cluster/__init__.py', 'cluster/driver.py')
]

NOVA_OWN_FILES = ('nova/__init__.py', 'nova/virt/__init__.py')

# ps_scripts/ files that setup.cfg ships as package data.
SCRIPT_SUFFIXES = ('.ps1', '.psm1', '.j2', '.json')

SHIM_PACKAGES = ('nova.virt.psdriver', 'nova.virt.compute_hyperv')


def _class_name(obj) -> str:
    return f'{type(obj).__module__}.{type(obj).__qualname__}'


@pytest.fixture
def checkout_shims(monkeypatch):
    """Resolve nova.virt.psdriver / compute_hyperv from this checkout.

    An installed copy of the shims would otherwise come first on
    ``nova.virt.__path__``.
    """
    shim_dir = str(REPO / 'nova' / 'virt')
    others = [p for p in nova.virt.__path__ if p != shim_dir]
    monkeypatch.setattr(nova.virt, '__path__', [shim_dir, *others])
    saved = {k: v for k, v in sys.modules.items() if k.startswith(SHIM_PACKAGES)}
    for key in saved:
        del sys.modules[key]
    yield
    for key in [k for k in sys.modules if k.startswith(SHIM_PACKAGES)]:
        del sys.modules[key]
    sys.modules.update(saved)


@pytest.mark.parametrize('path', DRIVER_PATHS)
def test_load_compute_driver_in_process(checkout_shims, path):
    drv = nova_driver.load_compute_driver(fake.FakeVirtAPI(), path)

    assert isinstance(drv, nova_driver.ComputeDriver)
    assert _class_name(drv) == DRIVER_PATHS[path]
    shim = sys.modules['nova.virt.' + path.rsplit('.', 1)[0]]
    assert Path(shim.__file__).resolve().is_relative_to(REPO / 'nova' / 'virt')


def test_unknown_driver_path_exits():
    # Nova's own behaviour, which the shims rely on: no fallback to a bare
    # import path.
    with pytest.raises(SystemExit):
        nova_driver.load_compute_driver(fake.FakeVirtAPI(), 'psdriver.nodriver.Nothing')


_INSTALLED_PROBE = textwrap.dedent('''
    import json, sys
    import importlib.metadata as md
    try:
        dist = md.distribution('psdriver')
    except md.PackageNotFoundError:
        print(json.dumps({'installed': False}))
        raise SystemExit(0)
    from nova.virt import driver, fake
    loaded = {}
    for path in sys.argv[1:]:
        drv = driver.load_compute_driver(fake.FakeVirtAPI(), path)
        cls = type(drv)
        loaded[path] = {
            'class': cls.__module__ + '.' + cls.__qualname__,
            'class_file': sys.modules[cls.__module__].__file__,
            'shim_file': sys.modules['nova.virt.' + path.rsplit('.', 1)[0]].__file__,
            'is_compute_driver': isinstance(drv, driver.ComputeDriver),
        }
    print(json.dumps({
        'installed': True,
        'location': str(dist.locate_file('')),
        'files': [str(f) for f in dist.files or []],
        'loaded': loaded,
    }))
''')


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    env = dict(os.environ, OS_NOVA_DISABLE_EVENTLET_PATCHING='1')
    proc = subprocess.run(
        [sys.executable, '-I', '-c', _INSTALLED_PROBE, *DRIVER_PATHS],
        cwd=tmp_path_factory.mktemp('isolated'), env=env,
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        f'loading the installed drivers failed (stale install? run '
        f'"pip install --no-deps ." from the repo root):\n{proc.stderr[-3000:]}')
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if not report['installed']:
        missing('psdriver is not installed: run "pip install --no-deps ." in the repo')
    return report


@pytest.mark.parametrize('path', DRIVER_PATHS)
def test_installed_package_loads(installed, path):
    site = Path(installed['location']).resolve()
    entry = installed['loaded'][path]

    assert entry['is_compute_driver']
    assert entry['class'] == DRIVER_PATHS[path]
    for key in ('shim_file', 'class_file'):
        loaded_from = Path(entry[key]).resolve()
        assert loaded_from.is_relative_to(site), (key, loaded_from)
        assert 'site-packages' in loaded_from.parts
        # not the checkout's sources (a venv may live inside the checkout)
        assert not loaded_from.is_relative_to(REPO / 'psdriver')
        assert not loaded_from.is_relative_to(REPO / 'nova')


def test_installed_dist_ships_shims_but_not_nova_itself(installed):
    files = set(installed['files'])
    assert set(SHIM_FILES) <= files
    assert not files & set(NOVA_OWN_FILES)


def _packaged_sources() -> list[str]:
    """Files of the checkout that must end up in the wheel, as wheel paths."""
    wanted = []
    for top in ('psdriver', 'nova/virt/psdriver', 'nova/virt/compute_hyperv'):
        for path in (REPO / top).rglob('*.py'):
            if '__pycache__' not in path.parts:
                wanted.append(path.relative_to(REPO).as_posix())
    scripts = REPO / 'ps_scripts'
    if scripts.is_dir():
        for path in scripts.iterdir():
            if path.suffix in SCRIPT_SUFFIXES or path.name == 'README.md':
                wanted.append(f'psdriver/ps_scripts/{path.name}')
    return sorted(wanted)


def _setuptools_is_recent() -> bool:
    try:
        major = int(importlib.metadata.version('setuptools').split('.')[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return major >= 69


@pytest.fixture(scope='module')
def wheel_names(tmp_path_factory):
    """Names in a wheel built from a clean copy (no stale build/ dir)."""
    src = tmp_path_factory.mktemp('src') / 'psdriver'
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        '.git', 'build', 'dist', '*.egg-info', '__pycache__', '.venv', '.tox',
        '.ruff_cache', '.pytest_cache', '.hypothesis'))
    out = tmp_path_factory.mktemp('wheel')
    command = [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q', '-w', str(out)]
    if _setuptools_is_recent():
        command.append('--no-build-isolation')
    proc = subprocess.run([*command, str(src)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob('psdriver-*.whl')
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist()), zf.read(_dist_info(zf.namelist()) + 'entry_points.txt')


def _dist_info(names) -> str:
    (info,) = {n.split('/')[0] + '/' for n in names if n.split('/')[0].endswith('.dist-info')}
    return info


def test_wheel_has_shims_and_no_nova_package_files(wheel_names):
    names, _ = wheel_names
    assert set(SHIM_FILES) <= names
    assert not names & set(NOVA_OWN_FILES)
    assert {n.split('/')[0] for n in names if '.dist-info/' not in n} == {'psdriver', 'nova'}


def test_wheel_has_every_module_and_script(wheel_names):
    names, _ = wheel_names
    missing = [n for n in _packaged_sources() if n not in names]
    assert not missing, ('missing from the wheel (add the package to setup.cfg '
                         f'[options] packages): {missing}')
    assert not [n for n in names if n.startswith(('ps_scripts/', 'tests'))]


def test_wheel_has_script_module(wheel_names):
    names, _ = wheel_names
    assert 'psdriver/ps_scripts/PsDriver.psm1' in names
    assert 'psdriver/ps_scripts/PsDriver.psd1' in names
    topics = sorted((REPO / 'ps_scripts' / 'PsDriver').glob('*.ps1'))
    assert topics
    assert [t.name for t in topics
            if f'psdriver/ps_scripts/PsDriver/{t.name}' not in names] == []


def test_wheel_declares_config_generator_entry_point(wheel_names):
    _, entry_points = wheel_names
    text = entry_points.decode()
    section = text.split('[oslo.config.opts]', 1)[1].split('\n[', 1)[0]
    assert 'psdriver = psdriver.conf:list_opts' in section
