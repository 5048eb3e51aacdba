<#
.SYNOPSIS
    Reboots or shuts down this Hyper-V host.

.DESCRIPTION
    Reboot runs Restart-Computer, Shutdown runs Stop-Computer, on the local
    computer. Both return as soon as the operation has started, so the
    result still reaches the caller before the host goes down (a remote
    session then breaks). What happens to running VMs is decided by each
    VM's automatic stop action (save, shut down or turn off).

    Without -Force the operation fails if other users are logged on to the
    host (Windows' own rule); with -Force it goes ahead and their sessions
    are closed. -WhatIf reports what would happen and does nothing.

    Startup cannot be done from the host itself (it needs out-of-band
    management such as IPMI): Action Startup is an error of category
    NotImplemented with error id PsDriver.HostStartupNotSupported. A
    refused reboot or shutdown is an error of category InvalidOperation
    with error id PsDriver.HostPowerActionFailed.

.PARAMETER Action
    Reboot, Shutdown or Startup (always refused, see above).

.PARAMETER Force
    Go ahead even if users are logged on.

.EXAMPLE
    .\Invoke-HostPowerAction.ps1 -Action Reboot -Force -WhatIf

.OUTPUTS
    One object: action, computer_name, initiated (false with -WhatIf),
    forced.
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateSet('Reboot', 'Shutdown', 'Startup')]
    [string]$Action,

    [switch]$Force
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'New-PsDriverErrorRecord' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$computerName = [System.Environment]::MachineName

if ($Action -eq 'Startup') {
    throw (New-PsDriverErrorRecord -Message "Host '$computerName' cannot start itself up; use out-of-band management (IPMI, iDRAC, iLO) to power it on." -Category NotImplemented -ErrorId 'PsDriver.HostStartupNotSupported' -Target $computerName)
}

$initiated = $false
if ($PSCmdlet.ShouldProcess("host '$computerName'", $Action)) {
    try {
        if ($Action -eq 'Reboot') {
            Restart-Computer -Force:$Force -Confirm:$false
        }
        else {
            Stop-Computer -Force:$Force -Confirm:$false
        }
    }
    catch {
        throw (New-PsDriverErrorRecord -Message "Cannot $($Action.ToLowerInvariant()) host '$computerName': $($_.Exception.Message)" -Category InvalidOperation -ErrorId 'PsDriver.HostPowerActionFailed' -Target $computerName)
    }
    $initiated = $true
}

[ordered]@{
    action        = $Action
    computer_name = $computerName
    initiated     = $initiated
    forced        = [bool]$Force
}
