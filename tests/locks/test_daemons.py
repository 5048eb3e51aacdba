"""The prerequisite helpers: a missing tool skips, except under CI where it fails."""

import pytest

from tests.daemons import free_port
from tests.prerequisites import in_ci, missing, require_tool


@pytest.mark.parametrize('ci, outcome', [
    ('true', pytest.fail.Exception),
    ('TRUE', pytest.fail.Exception),
    ('1', pytest.fail.Exception),
    ('', pytest.skip.Exception),
    ('false', pytest.skip.Exception),
])
def test_missing_tool(ci, outcome, monkeypatch):
    monkeypatch.setenv('CI', ci)

    with pytest.raises(outcome, match='psdriver-no-such-tool not found; install it with: '
                                      'apt-get install -y --no-install-recommends no-such-pkg'):
        require_tool('psdriver-no-such-tool', 'no-such-pkg')


def test_missing_prerequisite_reads_ci_the_same_way(monkeypatch):
    monkeypatch.setenv('CI', 'yes')
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match='CI=true and smbd needs root'):
        missing('smbd needs root')


def test_present_tool_is_found(monkeypatch):
    monkeypatch.setenv('CI', 'true')

    assert require_tool('sh', 'dash').endswith('/sh')


def test_free_port_is_a_user_port():
    assert 1024 < free_port() < 65536


def test_every_test_uses_the_one_helper():
    """No test reads CI or looks for a program on its own."""
    from pathlib import Path
    tests = Path(__file__).resolve().parents[1]
    own = {tests / 'prerequisites.py', Path(__file__).resolve()}
    offenders = [str(p.relative_to(tests)) for p in tests.rglob('*.py') if p not in own
                 and any(s in p.read_text(encoding='utf-8')
                         for s in ("environ.get('CI'", 'environ["CI"]', "shutil.which('qemu",
                                   "shutil.which('etcd", "shutil.which('smbd"))]
    assert offenders == []
