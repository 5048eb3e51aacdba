"""HostOps against the simulated host: resources, inventory, traits, one round trip each."""

from __future__ import annotations

import json
import re

import pytest
from nova import exception
from oslo_config import cfg
from oslo_config import fixture as config_fixture

import psdriver.conf  # noqa: F401  (registers the options)
from psdriver.bridge.client import Bridge
from psdriver.ops import errors, hostops
from psdriver.sim import SimHost, SimRunner

INSTANCES = 'C:\\OpenStack\\Instances'


@pytest.fixture
def host():
    return SimHost()


@pytest.fixture
def bridge(host):
    return Bridge(SimRunner(host))


@pytest.fixture
def ops(bridge):
    return hostops.HostOps(bridge, lambda: INSTANCES)


@pytest.fixture
def conf():
    fixture = config_fixture.Config(cfg.CONF)
    fixture.setUp()
    yield cfg.CONF
    fixture.cleanUp()


def test_available_resource_reports_the_host(ops, host, bridge):
    res = ops.get_available_resource(ops.nodename())
    cfg_ = host.config
    assert res['hypervisor_hostname'] == cfg_.hostname
    assert res['vcpus'] == cfg_.logical_processors
    assert res['memory_mb'] == cfg_.memory_mb
    assert res['memory_mb_used'] == cfg_.memory_mb - host.memory_free_mb()
    usage = host.disk_usage(INSTANCES)
    assert res['local_gb'] == int(usage['total'] / 2 ** 30)
    assert res['hypervisor_type'] == 'hyperv'
    assert ('x86_64', 'hyperv', 'hvm') in [tuple(s) for s in res['supported_instances']]
    cpu = json.loads(res['cpu_info'])
    assert cpu['topology']['sockets'] == cfg_.sockets
    assert bridge.round_trips == 1, 'node name and resources share one cached Get-HostInfo'


def test_inventory_uses_ratios_and_reserved_values(ops, conf):
    conf.set_override('reserved_host_memory_mb', 1024)
    conf.set_override('reserved_host_cpus', 2)
    ratios = {'VCPU': 4.0, 'MEMORY_MB': 1.5, 'DISK_GB': 1.0}
    inv = ops.provider_inventory(conf, 7, ratios)
    assert inv['VCPU']['allocation_ratio'] == 4.0 and inv['VCPU']['reserved'] == 2
    assert inv['MEMORY_MB']['reserved'] == 1024 and inv['MEMORY_MB']['allocation_ratio'] == 1.5
    assert inv['DISK_GB']['reserved'] == 7
    assert inv['VCPU']['max_unit'] == inv['VCPU']['total'] == 16


def test_cpu_features_become_os_traits(ops):
    traits = ops.host_traits()
    assert {'HW_CPU_X86_SSE42', 'HW_CPU_X86_AVX2', 'HW_CPU_X86_AESNI'} <= traits
    assert {t for t in traits if not t.startswith('HW_CPU_X86_')} == \
        {'COMPUTE_SECURITY_TPM_2_0', 'COMPUTE_SECURITY_TPM_CRB',
         'COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST'}      # the guests' vTPM


def test_host_ip_prefers_ipv4(ops):
    assert ops.get_host_ip_addr('203.0.113.1') == '192.0.2.11'


def test_uptime_has_the_uptime_command_format(ops, host):
    text = ops.get_host_uptime()
    assert re.fullmatch(r' \d\d:\d\d:\d\d up \d+ days, [ \d]\d:\d\d,  0 users', text), text
    days = int(text.split(' up ')[1].split(' days')[0])
    assert days == host.uptime_seconds() // 86400


def test_cache_expires_and_refresh_forces_a_call(bridge, host):
    now = [0.0]
    ops = hostops.HostOps(bridge, lambda: INSTANCES, clock=lambda: now[0])
    ops.host_info()
    ops.host_info()
    assert bridge.round_trips == 1
    now[0] += hostops.HOST_INFO_TTL + 0.1
    ops.host_info()
    assert bridge.round_trips == 2
    ops.host_info(refresh=True)
    assert bridge.round_trips == 3


def test_startup_power_action_is_refused(ops):
    with pytest.raises(NotImplementedError):
        ops.host_power_action('startup')


def test_host_down_becomes_a_host_error_naming_the_host(ops, host):
    host.faults.host_down()
    with pytest.raises(errors.HyperVHostError, match='SIMHV01'):
        ops.host_info()


def test_script_error_keeps_the_script_message(ops, host):
    host.faults.fail('Get-HostInfo', 'Hyper-V Virtual Machine Management service is stopped',
                     category='ResourceUnavailable')
    with pytest.raises(exception.NovaException, match='Management service is stopped'):
        ops.host_info()
