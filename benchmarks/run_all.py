"""Run every benchmark, print the tables as markdown, optionally put them in README.md.

::

    python benchmarks/run_all.py                  # full run (a minute or two on 2 cores)
    python benchmarks/run_all.py --quick          # fewer samples, 10 and 100 VMs only
    python benchmarks/run_all.py --update-readme  # also rewrite the README's figures

``--update-readme`` replaces what lies between ``<!-- benchmarks:start -->``
and ``<!-- benchmarks:end -->`` in README.md and nothing else.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import warnings
from pathlib import Path

# Run as a script: make the checkout importable (this package and psdriver itself).
_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from benchmarks import common  # noqa: E402

START_MARK = '<!-- benchmarks:start -->'
END_MARK = '<!-- benchmarks:end -->'
MODULES = ('bridge', 'lifecycle', 'scaling', 'migrations')

#: (module name, its tables, seconds it took)
Result = tuple[str, list[common.Table], float]


def run_modules(quick: bool, only: list[str] | None = None) -> list[Result]:
    """Run each benchmark module (all of them by default)."""
    import importlib
    results = []
    for name in only or MODULES:
        module = importlib.import_module(f'benchmarks.{name}')
        started = time.perf_counter()
        tables = module.run(quick=quick)
        results.append((name, tables, time.perf_counter() - started))
        print(f'{name}: done in {time.perf_counter() - started:.1f} s', file=sys.stderr)
    return results


def report(results: list[Result], quick: bool, facts: dict[str, str] | None = None) -> str:
    """The markdown block: machine facts (taken now unless given), then every table."""
    facts = facts or common.machine_facts()
    total = sum(seconds for _, _, seconds in results)
    lines = [
        f'Measured on {datetime.date.today().isoformat()} with '
        f'`python benchmarks/run_all.py{" --quick" if quick else ""}` '
        f'({total:.0f} s); the host is the simulated one throughout.',
        '',
        '| machine | |',
        '| --- | --- |',
    ]
    lines += [f'| {key} | {common.format_cell(value)} |' for key, value in facts.items()]
    for _name, tables, _seconds in results:
        for table in tables:
            lines += ['', table.markdown()]
    return '\n'.join(lines) + '\n'


def update_readme(path: Path, block: str) -> None:
    """Replace the text between the two markers (the markers stay)."""
    text = path.read_text(encoding='utf-8')
    start, end = text.find(START_MARK), text.find(END_MARK)
    if start < 0 or end < start:
        raise SystemExit(f'{path.name} has no {START_MARK} ... {END_MARK} block')
    head = text[:start + len(START_MARK)]
    path.write_text(f'{head}\n{block}{text[end:]}', encoding='utf-8')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--quick', action='store_true',
                        help='fewer samples and at most 100 VMs (for a smoke run)')
    parser.add_argument('--update-readme', action='store_true',
                        help='write the tables into README.md between the benchmark markers')
    parser.add_argument('--only', action='append', choices=MODULES,
                        help='run only this module (may be repeated)')
    args = parser.parse_args(argv)
    if args.update_readme and args.only:
        parser.error('--update-readme needs every module (no --only)')
    # futurist warns when eventlet is importable; nova runs with native threads here.
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    facts = common.machine_facts()
    results = run_modules(args.quick, args.only)
    block = report(results, args.quick, facts)
    print(block)
    if args.update_readme:
        update_readme(_REPO_ROOT / 'README.md', block)
        print('README.md updated', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
