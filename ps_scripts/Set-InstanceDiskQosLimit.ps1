<#
.SYNOPSIS
    Sets the storage QoS limit (maximum normalized IOPS) of an instance's
    local disks, as New-Instance does at spawn (for example again after a
    resize to a flavor with another limit).

.DESCRIPTION
    Every virtual hard disk drive of the VM whose file is inside
    InstanceDir (the root, ephemeral and swap disks; not the config drive
    and not volumes, which live elsewhere) gets MaximumIops
    (Set-VMHardDiskDrive -MaximumIOPS). Hyper-V counts normalized I/O
    operations of 8 KB. 0 removes the limit. Allowed while the VM runs.

    A missing VM is an error of category ObjectNotFound with error id
    PsDriver.VMNotFound.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER InstanceDir
    The instance folder (<instances_path>\<name>).

.PARAMETER MaximumIops
    The limit, 0 (no limit) to 1000000000.

.EXAMPLE
    .\Set-InstanceDiskQosLimit.ps1 -Name instance-00000001 -InstanceDir 'C:\OpenStack\Instances\instance-00000001' -MaximumIops 500

.OUTPUTS
    One object: name, maximum_iops, disks (paths of the disks set).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$InstanceDir,

    [Parameter(Mandatory)]
    [ValidateRange(0, 1000000000)]
    [long]$MaximumIops
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$vm = Get-PsDriverVM -Name $Name
$folder = $InstanceDir.TrimEnd('\', '/') + '\'
$set = [System.Collections.Generic.List[string]]::new()
foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $vm)) {
    $path = [string]$drive.Path
    if ([string]::IsNullOrEmpty($path) -or -not $path.StartsWith($folder, [System.StringComparison]::OrdinalIgnoreCase)) {
        continue
    }
    if ((Split-Path -Path $path -Leaf) -like 'configdrive*') {
        continue
    }
    if ($PSCmdlet.ShouldProcess("disk '$path' of virtual machine '$Name'", "Limit to $MaximumIops IOPS")) {
        Hyper-V\Set-VMHardDiskDrive -VMHardDiskDrive $drive -MaximumIOPS ([uint64]$MaximumIops) -Confirm:$false
        $set.Add($path)
    }
}

[ordered]@{
    name         = [string]$vm.Name
    maximum_iops = $MaximumIops
    disks        = @($set)
}
