<#
.SYNOPSIS
    Checks that a host can run psdriver's scripts and echoes a value back.

.DESCRIPTION
    The first call psdriver makes to a host, and what an operator runs to
    check a remote set-up: it reports the host name, the PowerShell version
    and edition, the Windows version, which of the modules psdriver uses are
    installed (Hyper-V, FailoverClusters, MPIO, iSCSI, Storage), whether the
    session is elevated, and returns -Echo unchanged, which proves that values
    travel intact.

.PARAMETER Echo
    Any text; returned unchanged as "echo" (empty when not given: a
    [string] parameter turns $null into an empty string).

.EXAMPLE
    .\Test-PsDriverConnection.ps1 -Echo 'hello'

.OUTPUTS
    One object: hostname, ps_version, ps_edition, os_version, modules
    {Hyper-V, FailoverClusters, MPIO, iSCSI, Storage: bool}, is_admin, echo.
#>
[CmdletBinding()]
param(
    [Parameter()]
    [AllowEmptyString()]
    [string]$Echo = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$modules = [ordered]@{}
foreach ($name in @('Hyper-V', 'FailoverClusters', 'MPIO', 'iSCSI', 'Storage')) {
    $modules[$name] = $null -ne (Get-Module -ListAvailable -Name $name | Select-Object -First 1)
}

$identity = [System.Security.Principal.WindowsIdentity]::GetCurrent()
$principal = [System.Security.Principal.WindowsPrincipal]::new($identity)
$edition = 'Desktop'
if ($PSVersionTable.ContainsKey('PSEdition')) {
    $edition = [string]$PSVersionTable.PSEdition
}

[ordered]@{
    hostname   = [System.Net.Dns]::GetHostName()
    ps_version = $PSVersionTable.PSVersion.ToString()
    ps_edition = $edition
    os_version = [System.Environment]::OSVersion.Version.ToString()
    modules    = $modules
    is_admin   = $principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)
    echo       = $Echo
}
