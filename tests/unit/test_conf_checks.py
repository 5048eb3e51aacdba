"""Secrets stay out of nova-compute's option dump; bad values stop the service at start."""

from __future__ import annotations

import logging

import pytest
from nova import exception
from nova.virt import fake
from oslo_config import cfg
from oslo_config import fixture as config_fixture

import psdriver.conf
from psdriver import driver as psdriver_driver

SECRET_URL = 'mysql+pymysql://nova:s3cr3t-db@db.example.org/locks?password=s3cr3t-q'


def _conf_from(tmp_path, text: str) -> cfg.ConfigOpts:
    path = tmp_path / 'nova.conf'
    path.write_text(text)
    conf = cfg.ConfigOpts()
    psdriver.conf.register_opts(conf)
    conf(['--config-file', str(path)], project='nova')
    return conf


def test_log_opt_values_masks_every_secret(caplog):
    """nova-compute's start-up dump (``CONF.log_opt_values``) holds no credential."""
    fixture = config_fixture.Config(psdriver.conf.CONF)
    fixture.setUp()
    try:
        fixture.load_raw_values(group='coordination', backend_url=SECRET_URL)
        fixture.load_raw_values(group='powershell', transport='psrp',
                                psrp_host='hv01.example.org', psrp_password='s3cr3t-winrm')
        logger = logging.getLogger('test.nova.compute')
        with caplog.at_level(logging.DEBUG, logger='test.nova.compute'):
            psdriver.conf.CONF.log_opt_values(logger, logging.DEBUG)
    finally:
        fixture.cleanUp()
    dump = caplog.text
    assert 'coordination.backend_url' in dump and 'powershell.psrp_password' in dump
    assert 's3cr3t' not in dump
    assert 'db.example.org' not in dump


@pytest.mark.parametrize('group,option,value,says', [
    ('hyperv', 'dynamic_memory_ratio', 'nan', 'nan is not a finite number'),
    ('hyperv', 'dynamic_memory_ratio', 'inf', 'inf is not a finite number'),
    ('hyperv', 'dynamic_memory_ratio', '-2', 'greater than or equal to 0'),
    ('hyperv', 'dynamic_memory_ratio', 'abc', 'could not convert'),
    ('hyperv', 'wait_soft_reboot_seconds', '-5', 'greater than or equal to 0'),
    ('hyperv', 'wait_soft_reboot_seconds', '1.5', 'invalid literal'),
    ('hyperv', 'power_state_event_polling_interval', '-1', 'greater than or equal to 0'),
    ('hyperv', 'evacuate_task_state_timeout', '-1', 'greater than or equal to 0'),
    ('powershell', 'psrp_reconnect_backoff', 'inf', 'inf is not a finite number'),
    ('powershell', 'default_timeout', '0', 'greater than or equal to 1'),
])
def test_bad_option_stops_driver_construction(group, option, value, says):
    fixture = config_fixture.Config(psdriver.conf.CONF)
    fixture.setUp()
    try:
        fixture.load_raw_values(group=group, **{option: value})
        with pytest.raises(exception.InvalidConfiguration) as caught:
            psdriver_driver.HyperVDriver(fake.FakeVirtAPI())
    finally:
        fixture.cleanUp()
    message = str(caught.value)
    assert f'[{group}] {option}' in message
    assert says in message


def test_good_options_pass(tmp_path):
    conf = _conf_from(tmp_path, '[hyperv]\ndynamic_memory_ratio = 1.5\n'
                                'wait_soft_reboot_seconds = 0\n')
    psdriver.conf.validate(conf)


def test_invalid_value_names_the_file(tmp_path):
    conf = _conf_from(tmp_path, '[powershell]\ntransport = carrier-pigeon\n')
    with pytest.raises(psdriver.conf.InvalidOptionValue) as caught:
        psdriver.conf.validate(conf)
    assert str(caught.value) == (
        f"invalid configuration: [powershell] transport in {tmp_path / 'nova.conf'}: "
        "Valid values are [local, psrp, sim], but found 'carrier-pigeon'")
