<#
.SYNOPSIS
    Live migrates an instance's VM to another Hyper-V host with Move-VM:
    with its storage (shared-nothing) or, on shared storage, without.

.DESCRIPTION
    Runs on the source host. Steps:
      1. Find the VM named exactly Name (ObjectNotFound / PsDriver.VMNotFound).
      2. Move-VM -DestinationHost, with -IncludeStorage
         -DestinationStoragePath DestinationPath when -IncludeStorage is
         given (the VM's virtual hard disks, configuration and checkpoints
         move there; the parents of differencing disks must already be on
         the destination at the same path, as the destination's image
         cache puts them), as a job.
      3. Waits up to TimeoutSeconds; a migration still running then is
         stopped (Stop-Job cancels it and the VM keeps running on this
         host): OperationTimeout / PsDriver.MigrationTimeout.
    Hyper-V refusing the move (migration not enabled, no migration
    network, authentication, processor or configuration version
    incompatible, a switch missing on the destination, ...):
    InvalidOperation / PsDriver.MigrationFailed with Hyper-V's message.
    -WhatIf reports and moves nothing.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER DestinationHost
    The destination Hyper-V host (its name as Active Directory knows it).

.PARAMETER IncludeStorage
    Move the VM's storage too (instances_path not shared).

.PARAMETER DestinationPath
    With -IncludeStorage: the instance folder on the destination.

.PARAMETER TimeoutSeconds
    How long the migration may take.

.EXAMPLE
    .\Move-Instance.ps1 -Name instance-0000002a -DestinationHost HV02 -IncludeStorage -DestinationPath C:\OpenStack\Instances\instance-0000002a

.OUTPUTS
    One object: name, destination_host, include_storage, storage_bytes
    (size of the virtual hard disk files moved; 0 without storage),
    seconds (time the migration took), moved.
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$DestinationHost,

    [switch]$IncludeStorage,

    [string]$DestinationPath,

    [ValidateRange(1, 86400)]
    [int]$TimeoutSeconds = 1800
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

if ($IncludeStorage -and [string]::IsNullOrEmpty($DestinationPath)) {
    throw (New-PsDriverErrorRecord -Message 'A migration with storage needs DestinationPath.' -Category InvalidArgument -ErrorId 'PsDriver.DestinationPathRequired' -Target $Name)
}

$vm = Get-PsDriverVM -Name $Name
$moved = $false
$seconds = 0.0
$storageBytes = [long]0
if ($IncludeStorage) {
    foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $vm)) {
        $drivePath = [string]$drive.Path
        if (-not [string]::IsNullOrEmpty($drivePath) -and (Test-Path -LiteralPath $drivePath -PathType Leaf)) {
            $storageBytes += [long](Get-Item -LiteralPath $drivePath).Length
        }
    }
}
if ($PSCmdlet.ShouldProcess("virtual machine '$Name'", "Live migrate to '$DestinationHost'")) {
    $moveParams = @{ VM = $vm; DestinationHost = $DestinationHost; AsJob = $true; Confirm = $false }
    if ($IncludeStorage) {
        $moveParams.IncludeStorage = $true
        $moveParams.DestinationStoragePath = $DestinationPath
    }
    $clock = [System.Diagnostics.Stopwatch]::StartNew()
    $job = Hyper-V\Move-VM @moveParams
    try {
        $finished = Wait-Job -Job $job -Timeout $TimeoutSeconds
        if ($null -eq $finished) {
            Stop-Job -Job $job -Confirm:$false
            throw (New-PsDriverErrorRecord -Message "The live migration of '$Name' to '$DestinationHost' did not finish within $TimeoutSeconds seconds and was cancelled; the VM stays on this host." -Category OperationTimeout -ErrorId 'PsDriver.MigrationTimeout' -Target $Name)
        }
        try {
            $null = Receive-Job -Job $job -ErrorAction Stop
        }
        catch {
            throw (New-PsDriverErrorRecord -Message "Hyper-V could not live migrate '$Name' to '$DestinationHost': $($_.Exception.Message)" -Category InvalidOperation -ErrorId 'PsDriver.MigrationFailed' -Target $Name -InnerException $_.Exception)
        }
        if ($job.State -ne 'Completed') {
            throw (New-PsDriverErrorRecord -Message "The live migration of '$Name' to '$DestinationHost' ended $($job.State)." -Category InvalidOperation -ErrorId 'PsDriver.MigrationFailed' -Target $Name)
        }
    }
    finally {
        Remove-Job -Job $job -Force -Confirm:$false
    }
    $seconds = $clock.Elapsed.TotalSeconds
    $moved = $true
}

[ordered]@{
    name             = $Name
    destination_host = $DestinationHost
    include_storage  = [bool]$IncludeStorage
    storage_bytes    = $storageBytes
    seconds          = [double]$seconds
    moved            = $moved
}
