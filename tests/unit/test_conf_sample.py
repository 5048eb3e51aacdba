"""etc/psdriver.conf.sample must be what oslo-config-generator makes today.

The generator is run through its Python API with the generator config file
of the repo. The ``psdriver`` namespace is pointed at this checkout's
``psdriver.conf.list_opts`` (an installed copy may be older); any other
namespace listed there is loaded from its installed entry point as usual.

To refresh the sample after changing an option (psdriver installed
non-editable, from the repo root):
    oslo-config-generator --config-file etc/psdriver-config-generator.conf
"""

import configparser
import io
from pathlib import Path

import pytest
from oslo_config import cfg
from oslo_config import generator

import psdriver.conf

REPO = Path(__file__).resolve().parents[2]
GENERATOR_CONF = REPO / 'etc' / 'psdriver-config-generator.conf'
SAMPLE = REPO / 'etc' / 'psdriver.conf.sample'


def _generator_conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    generator.register_cli_opts(conf)
    conf(args=['--config-file', str(GENERATOR_CONF)], default_config_dirs=[])
    return conf


def _generate(monkeypatch: pytest.MonkeyPatch) -> str:
    installed_loaders = generator._get_raw_opts_loaders

    def loaders(namespaces):
        others = dict(installed_loaders([n for n in namespaces if n != 'psdriver']))
        others['psdriver'] = psdriver.conf.list_opts
        return [(n, others[n]) for n in namespaces if n in others]

    monkeypatch.setattr(generator, '_get_raw_opts_loaders', loaders)
    out = io.StringIO()
    generator.generate(_generator_conf(), output_file=out)
    return out.getvalue()


def test_generator_conf_lists_psdriver_namespace_and_sample_path():
    conf = _generator_conf()
    assert 'psdriver' in conf.namespace
    assert conf.output_file == 'etc/psdriver.conf.sample'


def test_entry_point_declared_for_the_generator():
    setup = configparser.ConfigParser()
    setup.read(REPO / 'setup.cfg')
    lines = setup['options.entry_points']['oslo.config.opts'].split('\n')
    assert 'psdriver = psdriver.conf:list_opts' in [x.strip() for x in lines]


def test_sample_is_up_to_date(monkeypatch):
    generated = _generate(monkeypatch)
    assert generated == SAMPLE.read_text(encoding='utf-8'), (
        'etc/psdriver.conf.sample is stale; regenerate it with '
        'oslo-config-generator --config-file etc/psdriver-config-generator.conf')


def _sections(text: str) -> dict[str, str]:
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith('[') and line.endswith(']'):
            current = line[1:-1]
            sections[current] = ''
        elif current is not None:
            sections[current] += line + '\n'
    return sections


def test_sample_documents_every_option_in_its_group(monkeypatch):
    sections = _sections(_generate(monkeypatch))
    for group, opts in psdriver.conf.list_opts():
        body = sections[group.name]
        for opt in opts:
            assert f'\n#{opt.dest} =' in '\n' + body, (group.name, opt.dest)


def test_sample_has_no_checkout_path():
    assert str(REPO) not in SAMPLE.read_text(encoding='utf-8')
