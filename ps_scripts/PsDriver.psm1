<#
.SYNOPSIS
    Shared helpers of psdriver: decode the values document, run a ps_scripts
    script and turn its result or error into the one JSON envelope; and what
    several scripts do alike: their errors, finding a VM by its exact name,
    reading the instance UUID from its Notes, network adapter records, drive
    slots (rescue), the image cache and the console logger of a VM.

.DESCRIPTION
    The functions live in one file per topic under PsDriver\ (envelope,
    errors, paths, virtual machines, network adapters, drives, image cache,
    console logger, ...), which this module dot-sources; PsDriver.psd1 lists
    the functions it exports (those the scripts call). The bridge inlines the
    functions of those files that a script uses into the wrapped script it
    sends to a Hyper-V host (see Invoke-PsDriverScript.ps1.j2 and
    psdriver/bridge/helpers.py). Administrators can also import it to see
    exactly what the driver sees:

        Import-Module .\PsDriver.psd1
        Invoke-PsDriverScript -Path .\Get-HostInfo.ps1 -Parameters @{ InstancesPath = 'D:\VMs' }

    The envelope is {"ok": true, "result": ..., "log": [...]} or
    {"ok": false, "error": {"type", "message", "category", "error_id",
    "target", "script_stack"}, "log": [...]}.

    Works the same on Windows PowerShell 5.1 and PowerShell 7:
    * input: base64 of UTF-8 JSON, decoded with System.Text.Json (7) or
      JavaScriptSerializer (5.1, no 2 MB limit), never with ConvertFrom-Json,
      which turns date-like strings into DateTime on 7. JSON objects become
      dictionaries, arrays become object[] (also with one or no element);
    * output: the result is first reduced to dictionaries, object[], strings,
      booleans, numbers and null (enums by name, DateTime as ISO 8601, other
      .NET values by ToString()), so ConvertTo-Json has nothing left to
      truncate, unwrap or serialise differently between versions.

    A script that uses a helper of this file imports it itself when it runs
    by hand, naming a helper it calls (the bridge has inlined the helpers
    already, so the command exists and nothing is imported):

        if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
            Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
        }

    Imported, the helpers run in the module's own scope, which does not see
    the calling script's preference variables: the module sets strict mode
    and $ErrorActionPreference = 'Stop' itself, so a failing cmdlet stops a
    helper as it would stop the script. Helpers that change the host are
    called by the scripts inside their ShouldProcess blocks and pass
    -Confirm:$false to the Hyper-V cmdlets.
#>

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$psDriverTopicDir = Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver'
foreach ($psDriverTopic in @(Get-ChildItem -LiteralPath $psDriverTopicDir -Filter '*.ps1' | Sort-Object -Property Name)) {
    . $psDriverTopic.FullName
}
Remove-Variable -Name psDriverTopicDir, psDriverTopic
