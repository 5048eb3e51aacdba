"""The benchmarks keep running: each module in its quickest mode returns well-formed tables.

Structure only: no test here looks at a timing.
"""

from __future__ import annotations

import importlib
import math

import pytest

from benchmarks import common, run_all


@pytest.fixture(scope='module')
def results():
    """Each benchmark module's tables from one quick run (shared by the tests below)."""
    cache: dict[str, list[common.Table]] = {}

    def get(name: str) -> list[common.Table]:
        if name not in cache:
            cache[name] = importlib.import_module(f'benchmarks.{name}').run(quick=True)
        return cache[name]
    return get


@pytest.mark.parametrize('name', run_all.MODULES)
def test_module_returns_well_formed_tables(results, name):
    tables = results(name)
    assert tables and all(isinstance(t, common.Table) for t in tables)
    assert len({t.key for t in tables}) == len(tables)
    for table in tables:
        assert table.key.startswith(f'{name}.')
        assert table.title and table.columns and table.rows
        for row in table.rows:
            assert len(row) == len(table.columns), (table.key, row)
            assert isinstance(row[0], str) and row[0]
            for cell in row[1:]:
                assert isinstance(cell, (int, float, str)), (table.key, row)
        markdown = table.markdown().splitlines()
        assert markdown[0] == f'**{table.title}**'
        assert sum(line.startswith('|') for line in markdown) == len(table.rows) + 2


def _column(table: common.Table, name: str) -> list[common.Cell]:
    return [row[table.columns.index(name)] for row in table.rows]


def test_bridge_tables_cover_both_calls_and_every_transport(results):
    overhead, transports, concurrency = results('bridge')
    assert overhead.columns[1:] == ['Get-HostInfo median', 'Get-HostInfo p90',
                                    'New-Instance median', 'New-Instance p90']
    for row in overhead.rows:
        assert all(isinstance(c, float) and c > 0 for c in row[1:]), row
    pairs = set(zip(_column(transports, 'transport'), _column(transports, 'script'),
                    strict=True))
    labels = {label for label, _ in pairs}
    for kind in ('sim', 'one process per call', 'kept processes', 'PSRP pool, HTTP ',
                 'PSRP pool, HTTPS'):
        assert any(kind in label for label in labels), kind
    assert pairs == {(label, script) for label in labels
                     for script in ('Get-HostInfo', 'New-Instance')}
    assert all(isinstance(n, int) and n > 0 for n in _column(transports, 'calls'))
    # the ratio column is relative to one process per call
    per_call = [r for r in transports.rows if 'per call' in r[0]]
    assert all(r[-1] == pytest.approx(1.0) for r in per_call)
    assert all(b > 0 for b in _column(transports, 'bytes sent per call')[2:])
    assert len(concurrency.rows) == 3
    for row in concurrency.rows:
        assert all(isinstance(c, float) and c > 0 for c in row[1:]), row


def test_lifecycle_counts_round_trips_of_real_operations(results):
    (table,) = results('lifecycle')
    trips = dict(zip(_column(table, 'operation'), _column(table, 'round trips'), strict=True))
    assert all(isinstance(n, int) and n >= 0 for n in trips.values())
    scripts = dict(zip(_column(table, 'operation'), _column(table, 'scripts run on the host'),
                       strict=True))
    spawn = next(op for op in trips if op.startswith('spawn, first'))
    assert 'New-Instance' in scripts[spawn] and trips[spawn] >= 1
    reused = next(op for op in trips if 'within 5 s' in op)
    assert trips[reused] == 0 and scripts[reused] == '-'
    for op, count in trips.items():
        named = [] if scripts[op] == '-' else scripts[op].split(', ')
        assert len(named) == count, op


def test_scaling_rows_for_every_task_and_size(results):
    periodic, growth, listing = results('scaling')
    sizes = sorted(set(_column(periodic, 'VMs')))
    tasks = list(dict.fromkeys(_column(periodic, 'task')))
    assert sizes == [10, 100]
    assert len(periodic.rows) == len(tasks) * len(sizes)
    assert _column(growth, 'task') == tasks
    for row in growth.rows:
        assert all(isinstance(c, float) for c in row[1:])
    assert _column(listing, 'VMs') == sizes
    by_size = {(r[0], r[1]): r for r in periodic.rows}
    column = periodic.columns.index('JSON from host (bytes)')
    listing = 'list_instance_uuids'
    assert by_size[(listing, 100)][column] > by_size[(listing, 10)][column]


# -- shared functions and the README block ------------------------------------------------

def test_summarize_takes_median_and_nearest_rank_p90():
    stats = common.summarize([5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0])
    assert (stats.n, stats.median, stats.p90, stats.minimum) == (10, 5.5, 9.0, 1.0)
    with pytest.raises(ValueError):
        common.summarize([])


@pytest.mark.parametrize('value, text', [
    (1234567, '1,234,567'), (1234.5, '1,234'), (12.345, '12.3'), (1.234, '1.23'),
    (0.01234, '0.012'), (0.0, '0'), (math.nan, 'nan'), ('a|b', 'a\\|b')])
def test_format_cell(value, text):
    assert common.format_cell(value) == text


def test_document_json_bytes_matches_the_decoded_document():
    from psdriver.bridge.call import ascii_document, document_json, encode_document
    for params in ({}, {'a': 1}, {'Name': 'vm-01'}, {'x': 'ü' * 7}, {'z': '0' * 100_000}):
        size = len(document_json(params).encode('utf-8'))
        document = encode_document(params)
        assert common.document_json_bytes(document) == size
        assert common.document_json_bytes(ascii_document(document)) == size


def test_table_refuses_a_row_of_the_wrong_width():
    table = common.Table('x.y', 'T', ['a', 'b'])
    with pytest.raises(ValueError):
        table.add('only one')


def test_update_readme_rewrites_only_the_marked_block(tmp_path):
    readme = tmp_path / 'README.md'
    before = '# Title\n\nintro\n\n'
    after = '\n\n## Next\n\ntext\n'
    readme.write_text(f'{before}{run_all.START_MARK}\nold figures\n{run_all.END_MARK}{after}',
                      encoding='utf-8')
    run_all.update_readme(readme, 'new figures\n')
    run_all.update_readme(readme, 'newer figures\n')
    assert readme.read_text(encoding='utf-8') == (
        f'{before}{run_all.START_MARK}\nnewer figures\n{run_all.END_MARK}{after}')


def test_update_readme_needs_both_markers(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text(f'# Title\n{run_all.END_MARK}\n{run_all.START_MARK}\n', encoding='utf-8')
    with pytest.raises(SystemExit):
        run_all.update_readme(readme, 'figures\n')


def test_report_states_the_machine_and_holds_every_table():
    table = common.Table('bridge.x', 'A title', ['what', 'n'])
    table.add('row', 3)
    text = run_all.report([('bridge', [table], 1.5)], quick=True)
    assert '--quick' in text and '| CPUs |' in text and '| Python |' in text
    assert '**A title**' in text and '| row | 3 |' in text
