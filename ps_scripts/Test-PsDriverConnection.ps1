<#
.SYNOPSIS
    Checks that a host can run psdriver's scripts and echoes a value back.

.DESCRIPTION
    The first call psdriver makes to a host, and what an operator runs to
    check a remote set-up (`psdriver fleet check` runs it on every host): it
    reports the host name, the PowerShell version and edition, the Windows
    version, which of the modules psdriver uses are installed (Hyper-V,
    FailoverClusters, MPIO, iSCSI, Storage), whether the session is elevated,
    the host's clock (UTC), and returns -Echo unchanged, which proves that
    values travel intact.

    With -InstancesPath it also reports whether that folder exists; with
    -Share, whether that SMB share exists on the host, the folder it exposes
    and whether that folder is -InstancesPath (nova copies instance files to
    other hosts through it).

.PARAMETER Echo
    Any text; returned unchanged as "echo" (empty when not given: a
    [string] parameter turns $null into an empty string).

.PARAMETER InstancesPath
    Folder that holds the instances (nova's instances_path). When empty,
    "instances_path" is null.

.PARAMETER Share
    Name of the SMB share that exposes InstancesPath ([hyperv]
    instances_path_share). When empty, "share" is null.

.EXAMPLE
    .\Test-PsDriverConnection.ps1 -Echo 'hello'

.EXAMPLE
    .\Test-PsDriverConnection.ps1 -InstancesPath 'C:\OpenStack\Instances' -Share 'OpenStackInstances'

.OUTPUTS
    One object: hostname, ps_version, ps_edition, os_version, modules
    {Hyper-V, FailoverClusters, MPIO, iSCSI, Storage: bool}, is_admin, echo,
    utc_now (the host's clock, ISO 8601 round-trip format, UTC),
    instances_path (null, or {path, exists}), share (null, or {name, exists,
    path, matches_instances_path}; path is null when the share does not
    exist).
#>
[CmdletBinding()]
param(
    [Parameter()]
    [AllowEmptyString()]
    [string]$Echo = '',

    [Parameter()]
    [AllowEmptyString()]
    [string]$InstancesPath = '',

    [Parameter()]
    [AllowEmptyString()]
    [ValidatePattern('^[^\\/:*?"<>|]{0,80}$')]
    [string]$Share = ''
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

$instances = $null
if ($InstancesPath) {
    $instances = [ordered]@{
        path   = $InstancesPath
        exists = Test-Path -LiteralPath $InstancesPath -PathType Container
    }
}

$shareReport = $null
if ($Share) {
    # A missing share is a non-terminating ObjectNotFound error: an answer, not a failure.
    $found = SmbShare\Get-SmbShare -Name $Share -ErrorAction SilentlyContinue |
        Select-Object -First 1
    $sharePath = $null
    $exposesInstances = $false
    if ($null -ne $found) {
        $sharePath = [string]$found.Path
        if ($InstancesPath) {
            $exposesInstances = $sharePath.TrimEnd('\') -eq $InstancesPath.TrimEnd('\')
        }
    }
    $shareReport = [ordered]@{
        name                   = $Share
        exists                 = $null -ne $found
        path                   = $sharePath
        matches_instances_path = $exposesInstances
    }
}

[ordered]@{
    hostname       = [System.Net.Dns]::GetHostName()
    ps_version     = $PSVersionTable.PSVersion.ToString()
    ps_edition     = $edition
    os_version     = [System.Environment]::OSVersion.Version.ToString()
    modules        = $modules
    is_admin       = $principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)
    echo           = $Echo
    utc_now        = [System.DateTime]::UtcNow.ToString('o', [System.Globalization.CultureInfo]::InvariantCulture)
    instances_path = $instances
    share          = $shareReport
}
