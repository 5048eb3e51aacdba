"""The live migration checks' own refusals (no host needed: the host's answer is given)."""

from __future__ import annotations

import types

import pytest

from psdriver.ops.livemigrationops import LiveMigrationOps, _cpu_vendor


def ops(transport='psrp', auth='negotiate'):
    conf = types.SimpleNamespace(powershell=types.SimpleNamespace(transport=transport,
                                                                  psrp_auth=auth))
    return LiveMigrationOps(None, conf, None, None, None, None)


def info(**kw):
    base = {'hostname': 'hv02', 'migration_enabled': True, 'authentication': 'Kerberos',
            'use_any_network': False, 'migration_networks': ['192.0.2.0/24']}
    base.update(kw)
    return base


def test_settings_that_work():
    assert ops()._setting_refusal(info(), 'destination') is None
    assert ops('local')._setting_refusal(info(authentication='CredSSP'), 'source') is None
    assert ops('psrp', 'credssp')._setting_refusal(info(authentication='CredSSP'),
                                                   'source') is None


@pytest.mark.parametrize('kw, words', [
    ({'migration_enabled': False}, 'not enabled on the destination host hv02'),
    ({'migration_networks': []}, 'no migration network'),
    ({'authentication': 'CredSSP'}, 'use Kerberos with constrained delegation'),
])
def test_refusals_say_what_to_change(kw, words):
    assert words in ops()._setting_refusal(info(**kw), 'destination')


def test_cpu_vendor_of_a_compute_node_record():
    assert _cpu_vendor({'cpu_info': '{"vendor": "GenuineIntel"}'}) == 'GenuineIntel'
    assert _cpu_vendor({'nova_object.data': {'cpu_info': '{"vendor": "AuthenticAMD"}'}}) == \
        'AuthenticAMD'
    assert _cpu_vendor({'cpu_info': ''}) is None and _cpu_vendor(None) is None
