"""Build the configured :class:`Bridge` from ``[powershell]`` options.

A real deployment never falls back to the simulator: ``transport = sim`` must
be chosen explicitly, and a transport that cannot work (no ``psrp_host``, no
PowerShell executable on PATH) is reported at ``init_host`` with a clear
:class:`~psdriver.bridge.errors.BridgeUnavailable`.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from typing import Any, Callable

from oslo_config import cfg

from psdriver.bridge import errors
from psdriver.bridge.client import Bridge
from psdriver.bridge.render import Renderer

TRANSPORTS = ('local', 'psrp', 'sim')
#: Entry point group of transports that are not part of the driver itself:
#: ``sim`` (the simulated host, for tests and the demo) registers there, so the
#: driver never imports the simulator.
TRANSPORT_ENTRY_POINTS = 'psdriver.transports'
#: Name of the simulated host unless ``[DEFAULT] host`` is set explicitly.
SIM_HOSTNAME = 'SIMHV01'


def _cert_validation(value: str | None) -> bool | str:
    """``psrp_cert_validation``: true/false, or the path of an existing CA bundle."""
    if value is None:
        return True
    lowered = str(value).strip().lower()
    if lowered in ('true', 'yes', '1', 'on', ''):
        return True
    if lowered in ('false', 'no', '0', 'off'):
        return False
    if not os.path.isfile(str(value)):
        raise errors.BridgeUnavailable(
            'init_host', 'psrp',
            f'[powershell] psrp_cert_validation = {value!r} is neither true nor false nor an '
            'existing CA bundle file')
    return str(value)


#: The first Windows build whose Hyper-V module PowerShell 7 loads natively (1809, Server 2019).
NATIVE_PS7_BUILD = 17763


def _windows_build() -> int | None:
    getwindowsversion = getattr(sys, 'getwindowsversion', None)
    return getwindowsversion().build if getwindowsversion else None


def local_executable(configured: str, windows_build: int | None = None,
                     which: Callable[[str], str | None] = shutil.which) -> str:
    """The PowerShell executable for ``[powershell] executable`` (``auto`` resolved).

    ``auto``: Windows PowerShell 5.1 on Windows before build 17763, where
    PowerShell 7 would load the Hyper-V module through the compatibility
    layer (serialized objects); else pwsh when installed, else powershell.exe.
    """
    if configured.strip().lower() != 'auto':
        return configured
    if windows_build is not None and windows_build < NATIVE_PS7_BUILD:
        return 'powershell.exe'
    if which('pwsh') is not None or windows_build is None:
        return 'pwsh'
    return 'powershell.exe'


def build_runner(conf: cfg.ConfigOpts):
    opts = conf.powershell
    transport = opts.transport
    if transport == 'local':
        from psdriver.bridge.runners.local import LocalRunner
        executable = local_executable(opts.executable, _windows_build())
        if shutil.which(executable) is None:
            raise errors.BridgeUnavailable(
                'init_host', f'local {executable}',
                f'[powershell] transport = local but {executable!r} is not on PATH; '
                'install PowerShell on this host, or set transport = psrp with psrp_host')
        if opts.local_pool_size > 0:
            from psdriver.bridge.runners.kept import KeptProcessRunner
            return KeptProcessRunner(executable=executable, pool_size=opts.local_pool_size)
        return LocalRunner(executable=executable)
    if transport == 'psrp':
        from psdriver.bridge.runners.psrp import PSRPRunner, PSRPSetupError, check_auth_options
        if not opts.psrp_host:
            raise errors.BridgeUnavailable(
                'init_host', 'psrp://<unset>',
                '[powershell] transport = psrp needs psrp_host (the Hyper-V host to manage)')
        cert_validation = _cert_validation(opts.psrp_cert_validation)
        try:
            check_auth_options(opts.psrp_auth, opts.psrp_ssl,
                               opts.psrp_insecure_cleartext_basic_auth_lab_only)
        except PSRPSetupError as exc:
            raise errors.BridgeUnavailable('init_host', 'psrp', f'[powershell] {exc}') from None
        return PSRPRunner(
            opts.psrp_host, port=opts.psrp_port, username=opts.psrp_username,
            password=opts.psrp_password, ssl=opts.psrp_ssl,
            cert_validation=cert_validation,
            insecure_cleartext_basic_auth=opts.psrp_insecure_cleartext_basic_auth_lab_only,
            auth=opts.psrp_auth, message_encryption=opts.psrp_message_encryption,
            operation_timeout=opts.psrp_operation_timeout,
            connection_timeout=opts.psrp_connection_timeout,
            pool_size=opts.psrp_pool_size,
            reconnect_attempts=opts.psrp_reconnect_attempts,
            reconnect_backoff=opts.psrp_reconnect_backoff,
            certificate_pem=opts.psrp_certificate_pem,
            certificate_key_pem=opts.psrp_certificate_key_pem)
    if transport == 'sim':
        make = _plugin('sim')
        return make(state_file=opts.sim_state_file, hostname=sim_hostname(conf))
    raise errors.BridgeUnavailable('init_host', transport,
                                   f'unknown [powershell] transport {transport!r}')


def sim_hostname(conf: cfg.ConfigOpts) -> str:
    """``[DEFAULT] host`` when set explicitly (several simulated compute hosts), else SIMHV01.

    oslo's default for ``host`` is this machine's name, which a simulated
    Hyper-V host has no reason to carry.
    """
    location = conf.get_location('host')
    if location is None or location.location is cfg.Locations.opt_default:
        return SIM_HOSTNAME
    return conf.host


def _plugin(name: str) -> Any:
    found = [ep for ep in importlib.metadata.entry_points(group=TRANSPORT_ENTRY_POINTS)
             if ep.name == name]
    if not found:
        raise errors.BridgeUnavailable(
            'init_host', name, f'[powershell] transport = {name} is not installed (no '
            f'{TRANSPORT_ENTRY_POINTS} entry point {name!r}); reinstall psdriver')
    return found[0].load()


def build_bridge(conf: cfg.ConfigOpts) -> Bridge:
    opts = conf.powershell
    renderer = Renderer(root=opts.scripts_dir) if opts.scripts_dir else Renderer()
    return Bridge(build_runner(conf), renderer, default_timeout=opts.default_timeout)
