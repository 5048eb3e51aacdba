"""tools/cmdlet_catalog.py reads a cmdlet reference page as PlatyPS writes them (no network)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'cmdlet_catalog.py'


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('cmdlet_catalog', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _param(name, type_name, sets, required='False', position='Named', pipeline='False',
           aliases='', values=None):
    accepted = f'Accepted values: {values}\n' if values else ''
    return (f'### -{name}\nSome text.\n\n```yaml\nType: {type_name}\nParameter Sets: {sets}\n'
            f'Aliases: {aliases}\n{accepted}\nRequired: {required}\nPosition: {position}\n'
            f'Default value: None\nAccept pipeline input: {pipeline}\n'
            f'Accept wildcard characters: False\n```\n\n')


PAGE = (
    '---\nexternal help file: x.dll-Help.xml\nModule Name: Hyper-V\ntitle: Get-Thing\n---\n\n'
    '# Get-Thing\n\n## SYNOPSIS\nGets things.\n\n## SYNTAX\n\n'
    '### Name (Default)\n```\nGet-Thing [-Name] <String[]> [-Mode <String>] [-Force] '
    '[-WhatIf] [-Confirm] [<CommonParameters>]\n```\n\n'
    '### All\n```\nGet-Thing [-All] [<CommonParameters>]\n```\n\n'
    '### Path (Default) - FileSystem provider\n```\nGet-Thing -Path <String> [-Stream <String>]'
    ' [<CommonParameters>]\n```\n\n'
    '### Path (Default) - WSMan provider\n```\nGet-Thing -Path <String> -Uri <Uri>'
    ' [<CommonParameters>]\n```\n\n'
    '## DESCRIPTION\nText with -NotAParameter in it.\n\n## PARAMETERS\n\n'
    + _param('Name', 'System.String[]', 'Name', 'True', '0', 'True (ByValue, ByPropertyName)',
             aliases='ThingName')
    + _param('Mode', 'String', '(All)', values='Fast, Slow')
    + _param('Force', 'System.Management.Automation.SwitchParameter', '(All)')
    # the yaml says every set and Required; the syntax shows -All optional in its set only
    + _param('All', 'SwitchParameter', '(All)', 'True')
    + _param('Path', 'String', 'Path', 'True')
    + _param('Stream', 'String', 'Path')
    + _param('Uri', 'Uri', 'Path', 'True')
    + _param('Verbose', 'SwitchParameter', '(All)')
    + _param('WhatIf', 'SwitchParameter', '(All)', aliases='wi')
    + '### CommonParameters\nThis cmdlet supports the common parameters.\n\n## INPUTS\n')


def test_a_page_becomes_sets_and_parameters(tool):
    name, sig = tool.parse_page(PAGE)
    assert name == 'Get-Thing'
    assert sig['sets'] == ['Name', 'All', 'Path'] and sig['default'] == 'Name'
    assert sig['sp'] is True
    params = sig['params']
    assert set(params) == {'Name', 'Mode', 'Force', 'All', 'Path', 'Stream', 'Uri'}
    assert params['Name'] == {'type': 'String[]', 'aliases': ['ThingName'],
                              'sets': {'Name': {'m': True, 'pos': 0, 'pipe': 'VP'}}}
    assert params['Mode']['values'] == ['Fast', 'Slow']
    assert params['Force']['switch'] is True
    # mandatory comes from the syntax; membership from syntax and yaml together
    assert params['All']['sets'] == {'*': {}}          # not mandatory anywhere
    # provider variants of one set: mandatory only where every variant says so
    assert params['Path']['sets'] == {'Path': {'m': True}}
    assert params['Uri']['sets'] == {'Path': {}}


def test_pages_that_are_no_cmdlet_are_skipped(tool):
    assert tool.parse_page('---\ntitle: Hyper-V\n---\n# Hyper-V Module\n## Description\n') is None


def test_the_tool_writes_one_line_per_cmdlet_from_a_checkout(tmp_path):
    windows = tmp_path / 'windows-powershell-docs'
    core = tmp_path / 'PowerShell-Docs'
    for docset in ('winserver2016-ps', 'winserver2019-ps', 'winserver2022-ps', 'winserver2025-ps'):
        # The shielded VM provisioning cmdlets moved to a folder named after their module.
        provisioning = 'ShieldedVMProvisioning' if docset == 'winserver2025-ps' else \
            'ShieldedVmCmdlets'
        for module in ('Hyper-V', 'Storage', 'iSCSI', 'MPIO', 'SmbShare', 'NetAdapter',
                       'NetTCPIP', 'FailoverClusters', 'HgsClient', 'PnpDevice',
                       'ShieldedVMDataFile', provisioning):
            folder = windows / 'docset' / docset / module
            folder.mkdir(parents=True)
            page = PAGE.replace('Module Name: Hyper-V', f'Module Name: {module}')
            if docset == 'winserver2016-ps' or module != 'Hyper-V':
                page = page.replace('Get-Thing', f'Get-{module.replace("-", "")}Thing')
            (folder / 'page.md').write_text(page)
    for version in ('5.1', '7.4'):
        for module in ('Microsoft.PowerShell.Management', 'Microsoft.PowerShell.Utility',
                       'Microsoft.PowerShell.Core', 'Microsoft.PowerShell.Security',
                       'CimCmdlets'):
            folder = core / 'reference' / version / module
            folder.mkdir(parents=True)
            (folder / 'page.md').write_text(PAGE.replace('Get-Thing', f'Get-{module[-4:]}Item')
                                            .replace('Module Name: Hyper-V',
                                                     f'Module Name: {module}'))
    out = tmp_path / 'catalog.json'
    subprocess.run([sys.executable, str(TOOL), '--windows-docs', str(windows),
                    '--powershell-docs', str(core), '--output', str(out)], check=True,
                   capture_output=True)
    lines = out.read_text().splitlines()
    catalog = json.loads(out.read_text())
    assert len(lines) == len(catalog['cmdlets']) + 4
    assert list(catalog['cmdlets']['Get-ShieldedVmCmdletsThing']['docs']) == [
        'ws2016', 'ws2019', 'ws2022']
    assert list(catalog['cmdlets']['Get-ShieldedVMProvisioningThing']['docs']) == ['ws2025']
    thing = catalog['cmdlets']['Get-Thing']          # Hyper-V from 2019 on
    assert list(thing['docs']) == ['ws2019', 'ws2022', 'ws2025']
    assert thing['docs']['ws2022'] == 'ws2019'       # the same signature is not repeated
    assert list(catalog['cmdlets']['Get-HyperVThing']['docs']) == ['ws2016']
