<#
.SYNOPSIS
    Destroys one OpenStack instance: turns its VM off, removes the VM and
    its checkpoints and, with -DeleteFiles, its disk files and folder.

.DESCRIPTION
    Safe to repeat: a VM that does not exist is not an error (existed is
    false); with -DeleteFiles the instance folder is still removed, which
    cleans up after a spawn that failed half way. A host that cannot be
    asked (Hyper-V service down, access denied) is an error, never taken
    for a VM that is gone.

    Steps:
      1. Find the VM named exactly Name. Several VMs with that name: error
         InvalidOperation / PsDriver.VMNameNotUnique.
      2. With InstanceUuid: the first line of the VM Notes must be that
         UUID (compared case-insensitively; braces and a leading
         "openstack-instance-uuid:" label are tolerated, as when reading).
         A VM with another UUID, or with none, is not this instance and is
         left alone: error InvalidOperation / PsDriver.InstanceUuidMismatch.
      3. The disk files of the VM and of its checkpoints are collected, with
         their parent chains (Get-VHD ParentPath).
      4. A VM that is not off or saved (Off, Saved, or their *Critical
         variants when its storage is unavailable) is turned off hard
         (Stop-VM -TurnOff); the VM is removed with its checkpoints
         (Remove-VM). Remove-VM merges the checkpoints' differencing disks
         (.avhdx) into the VM's disks after the VM is gone, holding those
         files meanwhile: with -DeleteFiles the script waits until the
         .avhdx files are gone, up to MergeTimeoutSeconds (else
         OperationTimeout / PsDriver.CheckpointMergeTimeout; running it
         again later finishes the job).
      5. With -DeleteFiles: the collected files (and DVD images) that lie
         under InstanceDir are deleted, never a file outside it, so cached
         base images in the image cache stay; then InstanceDir itself is
         deleted with everything left in it (config drive, logs, VM
         configuration folders). A locked file is retried for up to five
         seconds before the error is raised.
      6. The Open vSwitch ports of OvsPortId (the instance's ports of VIF
         type ovs) are deleted from whichever bridge holds them (ovs-vsctl
         --if-exists del-port: a port already gone is fine), before the VM
         is removed, also when the VM no longer exists. ovs-vsctl not
         found: ObjectNotFound / PsDriver.OvsVsctlNotFound, before anything
         is changed; ovs-vsctl failing: InvalidOperation /
         PsDriver.OvsVsctlFailed.

    An InstanceUuid that is not a UUID: InvalidArgument /
    PsDriver.InvalidInstanceUuid. -DeleteFiles needs InstanceDir (else
    InvalidArgument / PsDriver.InstanceDirRequired). An InstanceDir that is
    a drive or share root, or not an absolute path, is refused:
    InvalidArgument / PsDriver.UnsafeInstanceDir. Without -DeleteFiles no
    file is touched.
    -WhatIf reports what exists and changes nothing.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER InstanceUuid
    The Nova instance UUID the VM must carry in its Notes. Optional.

.PARAMETER InstanceDir
    The instance folder (normally <instances_path>\<Name>). Optional; needed
    with -DeleteFiles.

.PARAMETER DeleteFiles
    Delete the disk files under InstanceDir and the folder itself (Nova
    destroy_disks).

.PARAMETER OvsPortId
    The Neutron port ids (the Open vSwitch port names) of the instance's
    ports of VIF type ovs. Optional.

.PARAMETER OvsVsctlPath
    The ovs-vsctl program ([hyperv] ovs_vsctl_path); empty: ovs-vsctl.exe
    found on PATH. Used only with OvsPortId.

.PARAMETER MergeTimeoutSeconds
    With -DeleteFiles and checkpoints: how long to wait for Hyper-V to merge
    them into the disks after Remove-VM (0 to 3600, default 300).

.EXAMPLE
    .\Remove-Instance.ps1 -Name instance-00000001 -InstanceUuid 4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f -InstanceDir C:\OpenStack\Instances\instance-00000001 -DeleteFiles

.OUTPUTS
    One object: name, existed (a VM of that name was found), vm_id (null
    when none), previous_state (null when none), snapshots_removed,
    removed_files (files deleted one by one before the folder),
    instance_dir_removed, ovs_ports_removed (the OvsPortId entries, none of
    which is an Open vSwitch port any more).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [string]$InstanceUuid,

    [string]$InstanceDir,

    [switch]$DeleteFiles,

    [ValidateRange(0, 3600)]
    [int]$MergeTimeoutSeconds = 300,

    [AllowNull()]
    [AllowEmptyCollection()]
    [string[]]$OvsPortId = @(),

    [AllowNull()]
    [AllowEmptyString()]
    [string]$OvsVsctlPath
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Get-NormalizedPath {
    <#
    .SYNOPSIS
        Full path with one kind of separator and no trailing separator, for comparisons.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    $separator = [System.IO.Path]::DirectorySeparatorChar
    $full = [System.IO.Path]::GetFullPath(($Path -replace '[\\/]', $separator))
    $full.TrimEnd($separator)
}

function Test-PathUnder {
    param(
        [Parameter(Mandatory)]
        [string]$Path,

        [Parameter(Mandatory)]
        [string]$Folder
    )
    $prefix = (Get-NormalizedPath -Path $Folder) + [System.IO.Path]::DirectorySeparatorChar
    (Get-NormalizedPath -Path $Path).StartsWith($prefix, [System.StringComparison]::OrdinalIgnoreCase)
}

function Get-DiskChain {
    <#
    .SYNOPSIS
        The disk file and its parents (differencing chain); stops at a file Get-VHD cannot read.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    $chain = [System.Collections.Generic.List[string]]::new()
    $current = $Path
    while (-not [string]::IsNullOrEmpty($current) -and $chain -notcontains $current) {
        $chain.Add($current)
        if ($current -notmatch '\.a?vhdx?$') {
            break
        }
        try {
            $vhd = Hyper-V\Get-VHD -Path $current
        }
        catch {
            Write-Verbose "Cannot read '$current': $($_.Exception.Message)"
            break
        }
        $current = [string]$vhd.ParentPath
    }
    @($chain)
}

function Remove-FileWithRetry {
    <#
    .SYNOPSIS
        Deletes a file or folder, retrying while Hyper-V still holds it (up to five attempts, a second apart).
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path,

        [switch]$Recurse
    )
    for ($attempt = 1; $attempt -le 5; $attempt++) {
        try {
            Remove-Item -LiteralPath $Path -Recurse:$Recurse -Force -Confirm:$false
            return
        }
        catch {
            if ($attempt -eq 5) {
                throw
            }
            Start-Sleep -Seconds 1
        }
    }
}

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$uuidPattern = '^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$'
if (-not [string]::IsNullOrEmpty($InstanceUuid) -and $InstanceUuid -notmatch $uuidPattern) {
    throw (New-PsDriverErrorRecord -Message "InstanceUuid '$InstanceUuid' is not a UUID." -Category InvalidArgument -ErrorId 'PsDriver.InvalidInstanceUuid' -Target $InstanceUuid)
}
if ($DeleteFiles -and [string]::IsNullOrEmpty($InstanceDir)) {
    throw (New-PsDriverErrorRecord -Message "Deleting the files of '$Name' needs InstanceDir." -Category InvalidArgument -ErrorId 'PsDriver.InstanceDirRequired' -Target $Name)
}
if (-not [string]::IsNullOrEmpty($InstanceDir)) {
    $isRoot = $InstanceDir -match '^[A-Za-z]:[\\/]*$' -or $InstanceDir -match '^\\\\[^\\/]+[\\/][^\\/]+[\\/]*$' -or $InstanceDir -match '^[\\/]+$'
    if (-not (Test-PsDriverAbsolutePath -Path $InstanceDir) -or $isRoot) {
        throw (New-PsDriverErrorRecord -Message "InstanceDir '$InstanceDir' must be an absolute path below a drive or share root." -Category InvalidArgument -ErrorId 'PsDriver.UnsafeInstanceDir' -Target $InstanceDir)
    }
}

# A Get-VM failure stops the script: a host that cannot be asked is never taken
# for one where the VM is gone.
$vm = Get-PsDriverVM -Name $Name -AllowMissing

if ($null -ne $vm -and -not [string]::IsNullOrEmpty($InstanceUuid)) {
    $expected = $InstanceUuid.Trim('{', '}').ToLowerInvariant()
    $actual = ConvertTo-PsDriverInstanceUuid -Notes ([string]$vm.Notes)
    if ($actual -ne $expected) {
        $carried = 'no instance UUID'
        if ($null -ne $actual) {
            $carried = "instance UUID $actual"
        }
        throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' carries $carried in its Notes, not $expected; it is left alone." -Category InvalidOperation -ErrorId 'PsDriver.InstanceUuidMismatch' -Target $Name)
    }
}

$ovsPorts = @($OvsPortId | Where-Object { -not [string]::IsNullOrEmpty($_) })
$ovsVsctl = $null
if ($ovsPorts.Count -gt 0) {
    $ovsVsctl = Resolve-PsDriverOvsVsctl -Path $OvsVsctlPath
}
$ovsRemoved = [System.Collections.Generic.List[string]]::new()

$existed = $null -ne $vm
$vmId = $null
$previousState = $null
$snapshotCount = 0
$removedFiles = [System.Collections.Generic.List[string]]::new()
$instanceDirRemoved = $false

$target = "instance '$Name'"
if ($DeleteFiles) {
    $target += " and the files in '$InstanceDir'"
}
if ($PSCmdlet.ShouldProcess($target, 'Remove')) {
    foreach ($port in $ovsPorts) {
        Remove-PsDriverOvsPort -OvsVsctl $ovsVsctl -Port $port
        $ovsRemoved.Add($port)
    }
    $files = [System.Collections.Generic.List[string]]::new()
    if ($existed) {
        $vmId = $vm.Id.ToString()
        $previousState = $vm.State.ToString()
        $snapshots = @(Hyper-V\Get-VMSnapshot -VM $vm)
        $snapshotCount = $snapshots.Count
        if ($DeleteFiles) {
            $paths = [System.Collections.Generic.List[string]]::new()
            foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $vm)) {
                $paths.Add([string]$drive.Path)
            }
            foreach ($drive in @(Hyper-V\Get-VMDvdDrive -VM $vm)) {
                $paths.Add([string]$drive.Path)
            }
            foreach ($snapshot in $snapshots) {
                foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VMSnapshot $snapshot)) {
                    $paths.Add([string]$drive.Path)
                }
            }
            foreach ($path in $paths) {
                if ([string]::IsNullOrEmpty($path) -or -not (Test-PsDriverAbsolutePath -Path $path)) {
                    # Pass-through disks have no file path.
                    continue
                }
                foreach ($link in @(Get-DiskChain -Path $path)) {
                    if ((Test-PathUnder -Path $link -Folder $InstanceDir) -and $files -notcontains $link) {
                        $files.Add($link)
                    }
                }
            }
        }
        Remove-PsDriverVM -VM $vm
        # Remove-VM merges the checkpoint disks after the VM is gone; they (and the disks they
        # merge into) are busy until the merge has removed them.
        $merging = @($files | Where-Object { $_ -match '\.avhdx?$' })
        if ($merging.Count -gt 0) {
            $deadline = [datetime]::UtcNow.AddSeconds($MergeTimeoutSeconds)
            while (@($merging | Where-Object { Test-Path -LiteralPath $_ -PathType Leaf }).Count -gt 0) {
                if ([datetime]::UtcNow -ge $deadline) {
                    throw (New-PsDriverErrorRecord -Message "The checkpoints of '$Name' are still merging into its disks after $MergeTimeoutSeconds seconds; the virtual machine is removed, run Remove-Instance again to delete its files." -Category OperationTimeout -ErrorId 'PsDriver.CheckpointMergeTimeout' -Target $Name)
                }
                Start-Sleep -Seconds 1
            }
        }
    }
    if ($DeleteFiles) {
        foreach ($file in $files) {
            if (Test-Path -LiteralPath $file -PathType Leaf) {
                Remove-FileWithRetry -Path $file
                $removedFiles.Add($file)
            }
        }
        if (Test-Path -LiteralPath $InstanceDir -PathType Container) {
            Remove-FileWithRetry -Path $InstanceDir -Recurse
            $instanceDirRemoved = $true
        }
    }
}
elseif ($existed) {
    $vmId = $vm.Id.ToString()
    $previousState = $vm.State.ToString()
}

[ordered]@{
    name                 = $Name
    existed              = $existed
    vm_id                = $vmId
    previous_state       = $previousState
    snapshots_removed    = [int]$snapshotCount
    removed_files        = @($removedFiles)
    instance_dir_removed = $instanceDirRemoved
    ovs_ports_removed    = @($ovsRemoved)
}
