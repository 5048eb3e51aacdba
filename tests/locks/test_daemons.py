"""The daemon helpers: a missing binary skips, except under CI where it fails."""

import pytest

from tests.daemons import free_port, require_binary


@pytest.mark.parametrize('ci, outcome', [
    ('true', pytest.fail.Exception),
    ('', pytest.skip.Exception),
])
def test_missing_binary(ci, outcome, monkeypatch):
    monkeypatch.setenv('CI', ci)

    with pytest.raises(outcome, match='apt-get install -y --no-install-recommends no-such-pkg'):
        require_binary('psdriver-no-such-daemon', 'no-such-pkg')


def test_present_binary_is_found(monkeypatch):
    monkeypatch.setenv('CI', 'true')

    assert require_binary('sh', 'dash').endswith('/sh')


def test_free_port_is_a_user_port():
    assert 1024 < free_port() < 65536
