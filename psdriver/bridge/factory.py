"""Build the configured :class:`Bridge` from ``[powershell]`` options.

A real deployment never falls back to the simulator: ``transport = sim`` must
be chosen explicitly, and a transport that cannot work (no ``psrp_host``, no
PowerShell executable on PATH) is reported at ``init_host`` with a clear
:class:`~psdriver.bridge.errors.BridgeUnavailable`.
"""

from __future__ import annotations

import os
import shutil

from oslo_config import cfg

from psdriver.bridge import errors
from psdriver.bridge.client import Bridge
from psdriver.bridge.render import Renderer

TRANSPORTS = ('local', 'psrp', 'sim')


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


def build_runner(conf: cfg.ConfigOpts):
    opts = conf.powershell
    transport = opts.transport
    if transport == 'local':
        from psdriver.bridge.runners.local import LocalRunner
        if shutil.which(opts.executable) is None:
            raise errors.BridgeUnavailable(
                'init_host', f'local {opts.executable}',
                f'[powershell] transport = local but {opts.executable!r} is not on PATH; '
                'install PowerShell on this host, or set transport = psrp with psrp_host')
        if opts.local_pool_size > 0:
            from psdriver.bridge.runners.kept import KeptProcessRunner
            return KeptProcessRunner(executable=opts.executable, pool_size=opts.local_pool_size)
        return LocalRunner(executable=opts.executable)
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
        from psdriver.sim import SimHost, SimRunner
        # The simulated host is named after this compute service, as a real
        # Hyper-V host running nova-compute locally would be.
        return SimRunner(SimHost(state_file=opts.sim_state_file, hostname=conf.host))
    raise errors.BridgeUnavailable('init_host', transport,
                                   f'unknown [powershell] transport {transport!r}')


def build_bridge(conf: cfg.ConfigOpts) -> Bridge:
    opts = conf.powershell
    renderer = Renderer(root=opts.scripts_dir) if opts.scripts_dir else Renderer()
    return Bridge(build_runner(conf), renderer, default_timeout=opts.default_timeout)
