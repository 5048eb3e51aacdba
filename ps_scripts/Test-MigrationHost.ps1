<#
.SYNOPSIS
    Reports whether this host can take part in a live migration: its live
    migration settings, the VM configuration versions it runs, its
    processor vendor and, optionally, a virtual machine's own constraints;
    also creates, checks or removes the probe file that tells whether two
    hosts share instances_path.

.DESCRIPTION
    Read-only except for the probe file:
      Probe Create  writes an empty file ProbeFile in InstancesPath;
      Probe Check   reports whether InstancesPath\ProbeFile exists here
                    (a file another host created: the storage is shared);
      Probe Remove  deletes it (a missing file is fine).
    ProbeFile must be a plain file name (no folder): InvalidArgument /
    PsDriver.InvalidProbeFile. With VMName, the VM must exist
    (ObjectNotFound / PsDriver.VMNotFound) and its configuration version,
    generation, state, processor compatibility mode, pass-through disks,
    DVD images and switches are reported.

.PARAMETER InstancesPath
    The instances folder (nova's instances_path on this host).

.PARAMETER Probe
    None (default), Create, Check or Remove.

.PARAMETER ProbeFile
    File name of the probe, for example psdriver-lm-<instance uuid>.tmp.

.PARAMETER VMName
    A VM whose constraints to report. Optional.

.EXAMPLE
    .\Test-MigrationHost.ps1 -InstancesPath C:\OpenStack\Instances -Probe Create -ProbeFile psdriver-lm-4f5c9a1e.tmp

.OUTPUTS
    One object: hostname, migration_enabled, authentication (CredSSP or
    Kerberos), use_any_network, migration_networks (subnets),
    max_migrations, supported_versions, processor_vendor, probe_exists
    (null without a probe), vm (null without VMName; else name, version,
    generation, state, limit_cpu_features, passthrough_disks, dvd_paths,
    switches).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$InstancesPath,

    [ValidateSet('None', 'Create', 'Check', 'Remove')]
    [string]$Probe = 'None',

    [string]$ProbeFile,

    [string]$VMName
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$probeExists = $null
if ($Probe -ne 'None') {
    if ([string]::IsNullOrEmpty($ProbeFile) -or $ProbeFile -match '[\\/:*?"<>|]' -or $ProbeFile -in @('.', '..')) {
        throw (New-PsDriverErrorRecord -Message "ProbeFile '$ProbeFile' must be a plain file name." -Category InvalidArgument -ErrorId 'PsDriver.InvalidProbeFile' -Target $ProbeFile)
    }
    $probePath = Join-Path -Path $InstancesPath -ChildPath $ProbeFile
    switch ($Probe) {
        'Create' {
            if ($PSCmdlet.ShouldProcess($probePath, 'Create the shared storage probe')) {
                $null = New-Item -ItemType File -Path $probePath -Force -Confirm:$false
            }
            $probeExists = $true
        }
        'Check' {
            $probeExists = Test-Path -LiteralPath $probePath -PathType Leaf
        }
        'Remove' {
            if ((Test-Path -LiteralPath $probePath -PathType Leaf) -and $PSCmdlet.ShouldProcess($probePath, 'Remove the shared storage probe')) {
                Remove-Item -LiteralPath $probePath -Force -Confirm:$false
            }
            $probeExists = $false
        }
    }
}

$vmHost = Hyper-V\Get-VMHost
$networks = @(Hyper-V\Get-VMMigrationNetwork | ForEach-Object { [string]$_.Subnet })
$versions = @(Hyper-V\Get-VMHostSupportedVersion | ForEach-Object { $_.Version.ToString(2) })
$vendor = [string]@(Get-CimInstance -ClassName Win32_Processor)[0].Manufacturer

$vmInfo = $null
if (-not [string]::IsNullOrEmpty($VMName)) {
    $vm = Get-PsDriverVM -Name $VMName
    $passthrough = 0
    foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $vm)) {
        if ($null -ne $drive.DiskNumber) {
            $passthrough++
        }
    }
    $vmInfo = [ordered]@{
        name               = $vm.Name
        version            = [string]$vm.Version
        generation         = [int]$vm.Generation
        state              = $vm.State.ToString()
        limit_cpu_features = [bool](Hyper-V\Get-VMProcessor -VM $vm).CompatibilityForMigrationEnabled
        passthrough_disks  = $passthrough
        dvd_paths          = @(Hyper-V\Get-VMDvdDrive -VM $vm | Where-Object { -not [string]::IsNullOrEmpty($_.Path) } | ForEach-Object { [string]$_.Path })
        switches           = @(Hyper-V\Get-VMNetworkAdapter -VM $vm | Where-Object { -not [string]::IsNullOrEmpty($_.SwitchName) } | ForEach-Object { [string]$_.SwitchName } | Sort-Object -Unique)
    }
}

[ordered]@{
    hostname           = $env:COMPUTERNAME
    migration_enabled  = [bool]$vmHost.VirtualMachineMigrationEnabled
    authentication     = $vmHost.VirtualMachineMigrationAuthenticationType.ToString()
    use_any_network    = [bool]$vmHost.UseAnyNetworkForMigration
    migration_networks = @($networks)
    max_migrations     = [int]$vmHost.MaximumVirtualMachineMigrations
    supported_versions = @($versions)
    processor_vendor   = $vendor
    probe_exists       = $probeExists
    vm                 = $vmInfo
}
