<#
.SYNOPSIS
    Describes one virtual machine in detail (state, CPU, memory, disks, DVD
    drives, network adapters, serial ports and optionally usage metrics).

.DESCRIPTION
    Used for a compute driver's get_info and diagnostics. The VM is looked up
    by its exact name (no wildcards). A missing VM is an error of category
    ObjectNotFound with error id PsDriver.VMNotFound.

    Instance UUID in the VM Notes: the first line of a VM's Notes holds the
    instance UUID in its canonical form (36 characters, 8-4-4-4-12 hex
    digits, lower case), possibly followed by further lines; this is what
    compute-hyperv wrote. When reading, surrounding whitespace, upper case
    hex digits, enclosing braces and a leading "openstack-instance-uuid:"
    label are tolerated; writers use the bare form. instance_uuid is null
    when the first line is not a UUID.

    MAC addresses are returned as six lower case hex pairs separated by
    colons (fa:16:3e:01:02:03), or null while Hyper-V has not assigned a
    dynamic address yet. vlan is the access VLAN id, or null when the
    adapter is untagged or in another VLAN mode.

    With -IncludeMetrics and resource metering enabled on the VM
    (Enable-VMResourceMetering), metrics holds the Measure-VM report, read
    from its documented properties (AverageProcessorUsage,
    AverageMemoryUsage, MinimumMemoryUsage, MaximumMemoryUsage,
    TotalDiskAllocation, AggregatedDiskDataRead, AggregatedDiskDataWritten,
    AggregatedAverageNormalizedIOPS, NetworkMeteredTrafficReport,
    MeteringDuration; a property without a value counts 0). A report that
    lacks one of them is an error InvalidResult /
    PsDriver.MeteringPropertyMissing, never a silent 0; Measure-VM itself
    failing leaves metrics null. Network traffic counts Inbound entries as
    inbound and Outbound entries as outbound; an entry metered in Both
    directions cannot be split and is counted in neither. Otherwise metrics
    is null.

    device_metrics (with metrics, else null) breaks the counters down by
    device: one entry per virtual hard disk from Measure-VM's
    HardDiskMetrics (read_mb, written_mb: DataRead and DataWritten in MB;
    normalized_io_count: NormalizedIOCount, 8 KB units), and one per network
    adapter from the metering ACLs Enable-VMResourceMetering adds to it
    (Get-VMNetworkAdapterAcl, Action Meter: MeteredMegabytes, Inbound is
    traffic to the VM, Outbound from it). Figures a host cannot give are
    0; a failure to read them gives device_metrics null.

.PARAMETER Name
    The exact name of the virtual machine.

.PARAMETER IncludeMetrics
    Also return resource metering figures (Measure-VM).

.EXAMPLE
    .\Get-InstanceInfo.ps1 -Name instance-00000001 -IncludeMetrics

.OUTPUTS
    One object: name, vm_id, instance_uuid, state, vcpus, memory_mb (startup
    memory), memory_assigned_mb, dynamic_memory_enabled, uptime_seconds,
    generation, notes, disks, dvd_drives, nics, serial_ports, metrics,
    device_metrics ({disks: [{path, read_mb, written_mb,
    normalized_io_count}], nics: [{name, inbound_mb, outbound_mb}]} or
    null).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$Name,

    [switch]$IncludeMetrics
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Get-DiskRecord {
    param(
        [Parameter(Mandatory)]
        [object]$Drive
    )
    $diskNumber = $null
    if ($null -ne $Drive.DiskNumber) {
        $diskNumber = [int]$Drive.DiskNumber
    }
    $record = [ordered]@{
        path                = $Drive.Path
        controller_type     = $Drive.ControllerType.ToString()
        controller_number   = [int]$Drive.ControllerNumber
        controller_location = [int]$Drive.ControllerLocation
        disk_number         = $diskNumber
        format              = $null
        vhd_type            = $null
        parent_path         = $null
        size_bytes          = $null
        file_size_bytes     = $null
    }
    if ($null -eq $diskNumber -and -not [string]::IsNullOrEmpty($Drive.Path)) {
        try {
            $vhd = Hyper-V\Get-VHD -Path $Drive.Path
            $record.format = $vhd.VhdFormat.ToString()
            $record.vhd_type = $vhd.VhdType.ToString()
            if (-not [string]::IsNullOrEmpty($vhd.ParentPath)) {
                $record.parent_path = [string]$vhd.ParentPath
            }
            $record.size_bytes = [long]$vhd.Size
            $record.file_size_bytes = [long]$vhd.FileSize
        }
        catch {
            Write-Verbose "Cannot read virtual disk '$($Drive.Path)': $($_.Exception.Message)"
        }
    }
    $record
}

function Get-ReportNumber {
    <#
    .SYNOPSIS
        A documented property of the Measure-VM report as a whole number (0 without a value); its absence is an error.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$Report,

        [Parameter(Mandatory)]
        [string]$Name
    )
    $property = $Report.PSObject.Properties[$Name]
    if ($null -eq $property) {
        throw (New-PsDriverErrorRecord -Message "The Measure-VM report has no property '$Name'." -Category InvalidResult -ErrorId 'PsDriver.MeteringPropertyMissing' -Target $Name)
    }
    if ($null -eq $property.Value) {
        return 0L
    }
    [long]$property.Value
}

function Get-MeteringRecord {
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    if (-not $VM.ResourceMeteringEnabled) {
        return $null
    }
    $report = Hyper-V\Measure-VM -VM $VM
    $inbound = 0L
    $outbound = 0L
    foreach ($name in @('NetworkMeteredTrafficReport', 'MeteringDuration')) {
        if ($null -eq $report.PSObject.Properties[$name]) {
            throw (New-PsDriverErrorRecord -Message "The Measure-VM report has no property '$name'." -Category InvalidResult -ErrorId 'PsDriver.MeteringPropertyMissing' -Target $name)
        }
    }
    foreach ($traffic in @($report.NetworkMeteredTrafficReport)) {
        if ($null -eq $traffic) {
            continue
        }
        # Both: one figure for the two directions, which cannot be split.
        $direction = $traffic.Direction.ToString()
        if ($direction -eq 'Inbound') {
            $inbound += [long]$traffic.TotalTraffic
        }
        elseif ($direction -eq 'Outbound') {
            $outbound += [long]$traffic.TotalTraffic
        }
    }
    $duration = $null
    if ($null -ne $report.MeteringDuration) {
        $duration = [long][math]::Floor(([timespan]$report.MeteringDuration).TotalSeconds)
    }
    # The documented property names; AvgCPU, AvgRAM, ... are only the default table's headings.
    [ordered]@{
        cpu_average_mhz           = Get-ReportNumber -Report $report -Name 'AverageProcessorUsage'
        memory_average_mb         = Get-ReportNumber -Report $report -Name 'AverageMemoryUsage'
        memory_minimum_mb         = Get-ReportNumber -Report $report -Name 'MinimumMemoryUsage'
        memory_maximum_mb         = Get-ReportNumber -Report $report -Name 'MaximumMemoryUsage'
        disk_allocated_mb         = Get-ReportNumber -Report $report -Name 'TotalDiskAllocation'
        disk_read_mb              = Get-ReportNumber -Report $report -Name 'AggregatedDiskDataRead'
        disk_written_mb           = Get-ReportNumber -Report $report -Name 'AggregatedDiskDataWritten'
        disk_normalized_iops      = Get-ReportNumber -Report $report -Name 'AggregatedAverageNormalizedIOPS'
        network_inbound_mb        = $inbound
        network_outbound_mb       = $outbound
        metering_duration_seconds = $duration
    }
}

function Get-DeviceMeteringRecord {
    <#
    .SYNOPSIS
        Per-disk (Measure-VM HardDiskMetrics) and per-adapter (metering ACL) counters.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $report = Hyper-V\Measure-VM -VM $VM
    $disks = [System.Collections.Generic.List[object]]::new()
    $diskProperty = $report.PSObject.Properties['HardDiskMetrics']
    if ($null -ne $diskProperty -and $null -ne $diskProperty.Value) {
        foreach ($disk in @($diskProperty.Value)) {
            if ($null -eq $disk) {
                continue
            }
            $diskPath = $null
            $drive = $disk.PSObject.Properties['VirtualHardDisk']
            if ($null -ne $drive -and $null -ne $drive.Value -and -not [string]::IsNullOrEmpty($drive.Value.Path)) {
                $diskPath = [string]$drive.Value.Path
            }
            $disks.Add([ordered]@{
                    path                = $diskPath
                    read_mb             = Get-ReportNumber -Report $disk -Name 'DataRead'
                    written_mb          = Get-ReportNumber -Report $disk -Name 'DataWritten'
                    normalized_io_count = Get-ReportNumber -Report $disk -Name 'NormalizedIOCount'
                })
        }
    }
    $adapters = [System.Collections.Generic.List[object]]::new()
    foreach ($adapter in @(Hyper-V\Get-VMNetworkAdapter -VM $VM)) {
        $inbound = 0L
        $outbound = 0L
        foreach ($acl in @(Hyper-V\Get-VMNetworkAdapterAcl -VMNetworkAdapter $adapter)) {
            if ($null -eq $acl -or [string]$acl.Action -ne 'Meter') {
                continue
            }
            $megabytes = Get-ReportNumber -Report $acl -Name 'MeteredMegabytes'
            switch ([string]$acl.Direction) {
                'Inbound' {
                    $inbound += $megabytes
                }
                'Outbound' {
                    $outbound += $megabytes
                }
            }
        }
        $adapters.Add([ordered]@{
                name        = [string]$adapter.Name
                inbound_mb  = $inbound
                outbound_mb = $outbound
            })
    }
    [ordered]@{
        disks = @($disks)
        nics  = @($adapters)
    }
}

if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$vm = Get-PsDriverVM -Name $Name

$disks = @(Hyper-V\Get-VMHardDiskDrive -VM $vm | ForEach-Object { Get-DiskRecord -Drive $_ })

$dvdDrives = @(Hyper-V\Get-VMDvdDrive -VM $vm | ForEach-Object {
        $dvdPath = $null
        if (-not [string]::IsNullOrEmpty($_.Path)) {
            $dvdPath = [string]$_.Path
        }
        [ordered]@{
            path                = $dvdPath
            controller_type     = $_.ControllerType.ToString()
            controller_number   = [int]$_.ControllerNumber
            controller_location = [int]$_.ControllerLocation
        }
    })

$vlanMap = Get-PsDriverVlanMap -VM $vm
$nics = @(Hyper-V\Get-VMNetworkAdapter -VM $vm | ForEach-Object { Get-PsDriverNicRecord -Adapter $_ -VlanMap $vlanMap })

$serialPorts = @(Hyper-V\Get-VMComPort -VM $vm | ForEach-Object {
        $port = 0
        $digits = [regex]::Match([string]$_.Name, '\d+')
        if ($digits.Success) {
            $port = [int]$digits.Value
        }
        $pipe = $null
        if (-not [string]::IsNullOrEmpty($_.Path)) {
            $pipe = [string]$_.Path
        }
        [ordered]@{
            port = $port
            path = $pipe
        }
    })

$metrics = $null
if ($IncludeMetrics) {
    try {
        $metrics = Get-MeteringRecord -VM $vm
    }
    catch {
        if ($_.FullyQualifiedErrorId -like 'PsDriver.MeteringPropertyMissing*') {
            throw
        }
        Write-Verbose "Resource metering report unavailable for '$Name': $($_.Exception.Message)"
        $metrics = $null
    }
}

# Per-device counters for diagnostics, whenever the VM-wide ones are there.
$deviceMetrics = $null
if ($null -ne $metrics) {
    try {
        $deviceMetrics = Get-DeviceMeteringRecord -VM $vm
    }
    catch {
        Write-Verbose "Per-device metering unavailable for '$Name': $($_.Exception.Message)"
        $deviceMetrics = $null
    }
}

$notes = ''
if ($null -ne $vm.Notes) {
    $notes = [string]$vm.Notes
}

[ordered]@{
    name                   = [string]$vm.Name
    vm_id                  = $vm.Id.ToString()
    instance_uuid          = ConvertTo-PsDriverInstanceUuid -Notes $notes
    state                  = $vm.State.ToString()
    vcpus                  = [int]$vm.ProcessorCount
    memory_mb              = [long]($vm.MemoryStartup / 1MB)
    memory_assigned_mb     = [long]($vm.MemoryAssigned / 1MB)
    dynamic_memory_enabled = [bool]$vm.DynamicMemoryEnabled
    uptime_seconds         = [long][math]::Floor($vm.Uptime.TotalSeconds)
    generation             = [int]$vm.Generation
    notes                  = $notes
    disks                  = $disks
    dvd_drives             = $dvdDrives
    nics                   = $nics
    serial_ports           = $serialPorts
    metrics                = $metrics
    device_metrics         = $deviceMetrics
}
