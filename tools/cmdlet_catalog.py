"""Build the cmdlet signature catalog from the official cmdlet reference.

Reads local checkouts of the MicrosoftDocs ``windows-powershell-docs``
(Windows Server 2016/2019/2022/2025 module docsets) and ``PowerShell-Docs``
(core cmdlets of Windows PowerShell 5.1 and PowerShell 7.4) and writes
``tests/scripts/data/cmdlet_catalog.json``: for every cmdlet of the modules
psdriver's scripts use or will use, its parameter sets and, per parameter,
name, aliases, type, switch, mandatory/position/pipeline input per set and
accepted values (ValidateSet), for each docset that documents it.  Facts
only: no description text is kept.

    python tools/cmdlet_catalog.py --windows-docs PATH --powershell-docs PATH \
        [--output tests/scripts/data/cmdlet_catalog.json]

Each path is a checkout (a work tree) or a bare git directory (read with
``git show`` at HEAD).  The binding test (tests/scripts/test_cmdlet_binding.py)
reads only the generated file; it needs neither the network nor the docs.

Format (one line per cmdlet, so that a diff shows which cmdlets changed)::

    {"docsets": [...], "sources": {...}, "cmdlets": {
      "Get-VM": {"module": "Hyper-V", "docs": {
          "ws2016": {"default": "Name", "sets": ["Name", "Id", ...], "sp": false,
                     "params": {"Name": {"type": "String[]", "aliases": ["VMName"],
                                          "sets": {"Name": {"m": true, "pos": 0, "pipe": "V"}}}}},
          "ws2019": "ws2016", ...}}}}

A docset whose signature equals an older one's holds that docset's name.
``sp`` says whether the docs show -WhatIf/-Confirm (SupportsShouldProcess);
``m`` mandatory, ``pos`` position (null: named only), ``pipe`` pipeline input
(``V`` by value, ``P`` by property name).  The set ``*`` stands for all sets.
Keys at their default are left out: ``aliases``/``values`` (none), ``switch``
and ``m`` (false), ``pos`` (named only), ``pipe`` (no pipeline input).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

#: Windows Server docsets, oldest first, and the module folders read from each.
WINDOWS_DOCSETS = {
    'ws2016': 'docset/winserver2016-ps',
    'ws2019': 'docset/winserver2019-ps',
    'ws2022': 'docset/winserver2022-ps',
    'ws2025': 'docset/winserver2025-ps',
}
#: A tuple names the folders one module has in different docsets (the first found is read):
#: the shielded VM provisioning cmdlets are under ShieldedVmCmdlets up to Windows Server
#: 2022 and ShieldedVMProvisioning (the module's name) from 2025 on.
WINDOWS_MODULES = ('Hyper-V', 'Storage', 'iSCSI', 'MPIO', 'SmbShare', 'NetAdapter', 'NetTCPIP',
                   'FailoverClusters', 'HgsClient', 'PnpDevice', 'ShieldedVMDataFile',
                   ('ShieldedVmCmdlets', 'ShieldedVMProvisioning'))
#: PowerShell docsets, oldest first.
POWERSHELL_DOCSETS = {
    'ps5.1': 'reference/5.1',
    'ps7.4': 'reference/7.4',
}
POWERSHELL_MODULES = ('Microsoft.PowerShell.Management', 'Microsoft.PowerShell.Utility',
                      'Microsoft.PowerShell.Core', 'Microsoft.PowerShell.Security', 'CimCmdlets')
#: Parameters every cmdlet has; the catalog leaves them out.
COMMON_PARAMETERS = frozenset({
    'debug', 'erroraction', 'errorvariable', 'informationaction', 'informationvariable',
    'outvariable', 'outbuffer', 'pipelinevariable', 'verbose', 'warningaction',
    'warningvariable', 'progressaction'})
ALL_SETS = '*'
_NAMESPACE = re.compile(r'\b(?:[A-Za-z_][\w`]*\.)+(?=[A-Za-z_])')


class Source:
    """A docs repository: a work tree or a bare git directory (read at HEAD)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.bare = not (self.path / '.git').exists() and (self.path / 'HEAD').is_file()

    def commit(self) -> str:
        git_dir = ['--git-dir', str(self.path)] if self.bare else ['-C', str(self.path)]
        try:
            return subprocess.run(['git', *git_dir, 'rev-parse', 'HEAD'], check=True,
                                  capture_output=True, text=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return 'unknown'

    def markdown_files(self, folder: str) -> Iterator[tuple[str, str]]:
        """(file name, text) of every ``*.md`` directly in ``folder``."""
        if not self.bare:
            base = self.path / folder
            if base.is_dir():
                for path in sorted(base.glob('*.md')):
                    yield path.name, path.read_text(encoding='utf-8-sig')
            return
        listing = subprocess.run(
            ['git', '--git-dir', str(self.path), 'ls-tree', f'HEAD:{folder}'],
            capture_output=True, text=True)
        if listing.returncode != 0:
            return
        entries = []
        for line in listing.stdout.splitlines():
            meta, _tab, name = line.partition('\t')
            if name.endswith('.md') and meta.split()[1] == 'blob':
                entries.append((name, meta.split()[2]))
        entries.sort()
        batch = subprocess.run(['git', '--git-dir', str(self.path), 'cat-file', '--batch'],
                               input=''.join(f'{sha}\n' for _n, sha in entries).encode(),
                               check=True, capture_output=True).stdout
        offset = 0
        for name, _sha in entries:
            header_end = batch.index(b'\n', offset)
            size = int(batch[offset:header_end].split()[2])
            body = batch[header_end + 1:header_end + 1 + size]
            offset = header_end + 1 + size + 1
            yield name, body.decode('utf-8-sig')


# -- one cmdlet page ------------------------------------------------------------------------

def _front_matter(text: str) -> dict[str, str]:
    if not text.startswith('---'):
        return {}
    end = text.find('\n---', 3)
    fields = {}
    for line in text[3:end].splitlines():
        key, sep, value = line.partition(':')
        if sep and not line.startswith(' '):
            fields[key.strip().lower()] = value.strip()
    return fields


def _section(text: str, heading: str) -> str:
    match = re.search(rf'^## {heading}\s*$', text, re.MULTILINE)
    if not match:
        return ''
    rest = text[match.end():]
    end = re.search(r'^## ', rest, re.MULTILINE)
    return rest[:end.start()] if end else rest


def _set_name(heading: str) -> tuple[str, bool]:
    """'Path (Default) - FileSystem provider' -> ('Path', True)."""
    name = re.sub(r'\s*-\s*[^-]*providers?\s*$', '', heading.strip(), flags=re.IGNORECASE)
    default = bool(re.search(r'\(Default\)', name, re.IGNORECASE))
    name = re.sub(r'\s*\(Default\)\s*', '', name, flags=re.IGNORECASE).strip()
    return name, default


def _syntax_blocks(syntax: str) -> list[tuple[str, str]]:
    """(set heading or '', code) of each syntax block."""
    blocks = []
    for match in re.finditer(r'(?:^### (.+?)\s*\n(?:\s*\n)*)?```[^\n]*\n(.*?)```', syntax,
                             re.MULTILINE | re.DOTALL):
        blocks.append((match.group(1) or '', match.group(2)))
    return blocks


_SYNTAX_PARAMETER = re.compile(r'(?:(?<=\s)|^)(\[\[|\[)?-([A-Za-z]\w*)(\])?(\s*<)?', re.MULTILINE)


def _syntax_parameters(block: str) -> dict[str, bool]:
    """Parameter -> mandatory, as one syntax line shows them.

    ``-X <T>`` and ``[-X] <T>`` are mandatory, ``[-X <T>]``, ``[[-X] <T>]`` and
    ``[-X]`` (a switch) optional; a bare ``-X`` is a mandatory switch.
    """
    found = {}
    for match in _SYNTAX_PARAMETER.finditer(block):
        opening, name, closing, typed = match.groups()
        if opening == '[[':
            mandatory = False
        elif opening == '[':
            mandatory = bool(closing and typed)
        else:
            mandatory = True
        found[name] = mandatory
    return found


def _apply_syntax(params: dict[str, Any], sets: list[str],
                  syntax_sets: dict[str, dict[str, bool]]) -> None:
    """Mandatory from the SYNTAX blocks, membership from SYNTAX and yaml together.

    The PARAMETERS yaml has errors (``Parameter Sets: (All)``, ``Required:
    True`` on a switch of one set) and the SYNTAX blocks omit provider
    parameters (``Get-ChildItem -LiteralPath`` without ``-File``): a parameter
    is mandatory in a set where the syntax shows it so, optional in a set only
    its yaml names; position and pipeline input come from the yaml.  A
    parameter no syntax block shows keeps what its yaml says.
    """
    for name, entry in params.items():
        shown = {s: members[name] for s, members in syntax_sets.items() if name in members}
        if not shown:
            continue
        usage = entry['sets']
        fallback = usage.get(ALL_SETS) or next(iter(usage.values()))
        in_yaml = sets if ALL_SETS in usage else [s for s in usage if s in sets]
        new = {}
        for set_name in sets:
            if set_name not in shown and set_name not in in_yaml:
                continue
            base = usage.get(set_name) or fallback
            new[set_name] = {'m': shown.get(set_name, False), 'pos': base['pos'],
                             'pipe': base['pipe']}
        values = list(new.values())
        if set(new) == set(sets) and all(v == values[0] for v in values):
            new = {ALL_SETS: values[0]}
        entry['sets'] = new


def _yaml_blocks(body: str) -> list[dict[str, str]]:
    blocks = []
    for block in re.findall(r'```yaml\s*\n(.*?)```', body, re.DOTALL):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(':')
            if sep:
                fields[key.strip().lower()] = value.strip()
        blocks.append(fields)
    return blocks


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(',') if v.strip()]


def _pipe(value: str) -> str:
    value = value.lower()
    if not value.startswith('true'):
        return ''
    return ('V' if 'byvalue' in value else '') + ('P' if 'bypropertyname' in value else '')


def _position(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


def parse_page(text: str) -> tuple[str, dict[str, Any]] | None:
    """(cmdlet name, signature) of one reference page; None for a page that is no cmdlet."""
    front = _front_matter(text)
    title = front.get('title') or ''
    heading = re.search(r'^# (\S+)\s*$', text, re.MULTILINE)
    name = title or (heading.group(1) if heading else '')
    if not re.match(r'^[A-Za-z]+-[A-Za-z0-9]+$', name):
        return None
    syntax = _section(text, 'SYNTAX')
    parameters = _section(text, 'PARAMETERS')
    if not syntax and not parameters:
        return None
    sets, default = [], None
    syntax_sets: dict[str, dict[str, bool]] = {}
    for set_heading, block in _syntax_blocks(syntax):
        set_name, is_default = _set_name(set_heading) if set_heading else ('', False)
        set_name = set_name or '__AllParameterSets'
        if set_name not in sets:
            sets.append(set_name)
        if is_default and default is None:
            default = set_name
        # Provider variants of one set (`pathSet - WSMan provider`): a parameter is in the
        # set if one variant shows it, mandatory only if every variant shows it mandatory.
        shown = _syntax_parameters(block)
        if set_name in syntax_sets:
            members = syntax_sets[set_name]
            for param_name in set(members) | set(shown):
                members[param_name] = members.get(param_name, False) and \
                    shown.get(param_name, False)
        else:
            syntax_sets[set_name] = shown
    params: dict[str, Any] = {}
    should_process = bool(re.search(r'\[-WhatIf\]|\[-Confirm\]', syntax))
    chunks = re.split(r'^### -', parameters, flags=re.MULTILINE)[1:]
    for chunk in chunks:
        param_name = chunk.split('\n', 1)[0].strip()
        if not re.match(r'^[A-Za-z_][A-Za-z0-9_]*$', param_name):
            continue
        if param_name.lower() in COMMON_PARAMETERS:
            continue
        if param_name.lower() in ('whatif', 'confirm'):
            should_process = True
            continue
        blocks = _yaml_blocks(chunk)
        if not blocks:
            continue
        type_name = _NAMESPACE.sub('', blocks[0].get('type', ''))
        entry = params.setdefault(param_name, {
            'type': type_name,
            'aliases': [],
            'switch': type_name.lower() == 'switchparameter',
            'values': [],
            'sets': {},
        })
        for block in blocks:
            for alias in _split_list(block.get('aliases', '')):
                if alias not in entry['aliases']:
                    entry['aliases'].append(alias)
            for value in _split_list(block.get('accepted values', '')):
                if value not in entry['values']:
                    entry['values'].append(value)
            block_sets = _split_list(block.get('parameter sets', '(All)') or '(All)')
            for set_name in block_sets:
                key = ALL_SETS if set_name.lower() in ('(all)', 'all') else set_name
                if key != ALL_SETS and key not in sets:
                    sets.append(key)
                entry['sets'][key] = {
                    'm': block.get('required', '').lower().startswith('true'),
                    'pos': _position(block.get('position', 'Named')),
                    'pipe': _pipe(block.get('accept pipeline input', 'False')),
                }
    if not sets:
        sets = ['__AllParameterSets']
    _apply_syntax(params, sets, syntax_sets)
    for entry in params.values():
        for key in ('aliases', 'values', 'switch'):
            if not entry[key]:
                del entry[key]
        for usage in entry['sets'].values():
            for key in ('m', 'pos', 'pipe'):
                if usage[key] is False or usage[key] is None or usage[key] == '':
                    del usage[key]
    return name, {
        'default': default if default in sets else sets[0],
        'sets': sets,
        'sp': should_process,
        'params': params,
    }


# -- the whole catalog ----------------------------------------------------------------------

def _add(cmdlets: dict[str, Any], docset: str, module: str, name: str,
         signature: dict[str, Any]) -> None:
    entry = cmdlets.setdefault(name, {'module': module, 'docs': {}})
    for older, sig in entry['docs'].items():
        if sig == signature:
            entry['docs'][docset] = older
            return
    entry['docs'][docset] = signature


def build(windows_docs: Source, powershell_docs: Source) -> dict[str, Any]:
    cmdlets: dict[str, Any] = {}
    plan = [(windows_docs, WINDOWS_DOCSETS, WINDOWS_MODULES),
            (powershell_docs, POWERSHELL_DOCSETS, POWERSHELL_MODULES)]
    for source, docsets, modules in plan:
        for docset, folder in docsets.items():
            for module in modules:
                names = module if isinstance(module, tuple) else (module,)
                found = 0
                for module_folder in names:
                    for _file, text in source.markdown_files(f'{folder}/{module_folder}'):
                        page = parse_page(text)
                        if page is None:
                            continue
                        name, signature = page
                        _add(cmdlets, docset,
                             _front_matter(text).get('module name') or module_folder,
                             name, signature)
                        found += 1
                    if found:
                        break
                if not found:
                    raise SystemExit(f'{folder}/{"|".join(names)}: no cmdlet pages found')
    return {
        'docsets': list(WINDOWS_DOCSETS) + list(POWERSHELL_DOCSETS),
        'sources': {
            'MicrosoftDocs/windows-powershell-docs': windows_docs.commit(),
            'MicrosoftDocs/PowerShell-Docs': powershell_docs.commit(),
        },
        'cmdlets': dict(sorted(cmdlets.items(), key=lambda kv: kv[0].lower())),
    }


def dump(catalog: dict[str, Any]) -> str:
    """Compact JSON, one line per cmdlet."""
    def compact(value: Any) -> str:
        return json.dumps(value, separators=(',', ':'), sort_keys=False)

    lines = ['{"docsets":' + compact(catalog['docsets']) + ',',
             '"sources":' + compact(catalog['sources']) + ',',
             '"cmdlets":{']
    items = list(catalog['cmdlets'].items())
    for i, (name, entry) in enumerate(items):
        lines.append(compact(name) + ':' + compact(entry) + (',' if i < len(items) - 1 else ''))
    lines.append('}}')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--windows-docs', required=True,
                        help='checkout of MicrosoftDocs/windows-powershell-docs')
    parser.add_argument('--powershell-docs', required=True,
                        help='checkout of MicrosoftDocs/PowerShell-Docs')
    parser.add_argument('--output', default=str(
        Path(__file__).resolve().parent.parent / 'tests/scripts/data/cmdlet_catalog.json'))
    args = parser.parse_args(argv)
    catalog = build(Source(args.windows_docs), Source(args.powershell_docs))
    text = dump(catalog)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text, encoding='utf-8')
    sys.stderr.write(f'{len(catalog["cmdlets"])} cmdlets, {len(text.encode("utf-8"))} bytes '
                     f'-> {args.output}\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
