<#
.SYNOPSIS
    Reports this Hyper-V host's identity and capacity in one call.

.DESCRIPTION
    Everything the compute service needs for its resource view, gathered in
    one script so that it costs one round trip: host name (the DNS host name,
    which is what compute-hyperv reported as the hypervisor host name), the
    Windows and Hyper-V versions, logical processors and the CPU's vendor,
    model, topology and features, total and free memory, total and free space
    of the volume holding the instances path (a local folder, a mapped drive,
    a UNC share or a Cluster Shared Volume), the host's NUMA nodes, uptime
    and IP addresses.

    security tells what the host offers for guests' trusted computing:
    vtpm (Enable-VMTPM is there: Windows Server 2016 and later) and
    host_guarded (the Host Guardian Service client reports the host as
    guarded by a guarded fabric, Get-HgsClientConfiguration IsHostGuarded;
    false without the HgsClient module), hgs_mode (its Mode:
    HostGuardianService or Local; null when unknown) and shielded_vm_tools
    (the ShieldedVMProvisioning cmdlets, Initialize-ShieldedVM, are
    installed). Shielded VMs need all three: guarded, HostGuardianService,
    tools.

    assignable_devices lists the PCI Express devices prepared for Discrete
    Device Assignment: those dismounted from the host and free
    (Get-VMHostAssignableDevice) and those assigned to a VM
    (Get-VMAssignableDevice; assigned_to names the VM), so that the list
    does not change when a device is handed to a VM. vendor_id and
    product_id come from the device's instance id (VEN_xxxx&DEV_xxxx);
    address (domain:bus:device.function) and numa_node from its Plug and
    Play properties, null when Windows does not say.

    When -InstancesPath does not exist yet, the capacity of the nearest
    existing parent folder is reported and "exists" is false.

.PARAMETER InstancesPath
    Folder that holds the instances (nova's instances_path). Defaults to the
    host's default virtual hard disk path.

.EXAMPLE
    .\Get-HostInfo.ps1 -InstancesPath 'C:\OpenStack\Instances'

.EXAMPLE
    .\Get-HostInfo.ps1 -InstancesPath '\\fileserver\hyperv\instances' | ConvertTo-Json -Depth 4

.OUTPUTS
    One object: hostname, os_name, os_version, hyperv_version, ps_version,
    logical_processors, cpu {vendor, model, arch, sockets, cores, threads,
    features}, memory_mb_total, memory_mb_free, instances_path {path,
    exists, total_gb, free_gb}, numa_nodes [{id, logical_processors,
    memory_mb_total, memory_mb_free}], uptime_seconds, ip_addresses
    (preferred addresses, without loopback and link-local ones), security
    {vtpm, host_guarded, hgs_mode, shielded_vm_tools}, assignable_devices [{location_path, instance_id,
    vendor_id, product_id, address, numa_node, assigned_to}].
#>
[CmdletBinding()]
param(
    [Parameter()]
    [AllowEmptyString()]
    [string]$InstancesPath = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Initialize-NativeHostApi {
    <#
    .SYNOPSIS
        Loads the two kernel32 calls PowerShell has no cmdlet for (once per session).
    #>
    [CmdletBinding()]
    param()
    if ($null -eq ('PsDriver.NativeHostApi' -as [type])) {
        Add-Type -Namespace 'PsDriver' -Name 'NativeHostApi' -MemberDefinition @'
[DllImport("kernel32.dll")]
public static extern bool IsProcessorFeaturePresent(uint feature);

[DllImport("kernel32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
public static extern bool GetDiskFreeSpaceEx(string directory, out ulong freeToCaller,
    out ulong total, out ulong totalFree);
'@
    }
}

function Get-PathCapacity {
    <#
    .SYNOPSIS
        Total and free bytes of the volume holding a folder (local, mapped, UNC or CSV).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    $probe = $Path
    while ($probe -and -not (Test-Path -LiteralPath $probe -PathType Container)) {
        $parent = Split-Path -Path $probe -Parent
        if ($parent -eq $probe) {
            break
        }
        $probe = $parent
    }
    if (-not $probe) {
        throw [System.IO.DirectoryNotFoundException]::new("No part of the instances path '$Path' exists.")
    }
    $free = [uint64]0
    $total = [uint64]0
    $totalFree = [uint64]0
    if (-not [PsDriver.NativeHostApi]::GetDiskFreeSpaceEx($probe, [ref]$free, [ref]$total, [ref]$totalFree)) {
        $code = [System.Runtime.InteropServices.Marshal]::GetLastWin32Error()
        throw [System.ComponentModel.Win32Exception]::new($code)
    }
    [ordered]@{
        total = $total
        free  = $free
    }
}

function Get-CpuFeature {
    <#
    .SYNOPSIS
        Names of the processor features Windows reports as present.
    #>
    [CmdletBinding()]
    [OutputType([string[]])]
    param()
    $featureIds = [ordered]@{
        mmx     = 3
        sse     = 6
        rdtsc   = 8
        pae     = 9
        sse2    = 10
        nx      = 12
        sse3    = 13
        xsave   = 17
        slat    = 20
        vmx     = 21
        ssse3   = 36
        sse4_1  = 37
        sse4_2  = 38
        avx     = 39
        avx2    = 40
        avx512f = 41
    }
    $present = [System.Collections.Generic.List[string]]::new()
    foreach ($name in $featureIds.Keys) {
        if ([PsDriver.NativeHostApi]::IsProcessorFeaturePresent([uint32]$featureIds[$name])) {
            $present.Add($name)
        }
    }
    , $present.ToArray()
}

function Get-GuestSecuritySupport {
    <#
    .SYNOPSIS
        Whether guests can have a virtual TPM, and whether this host is guarded (shielded VMs).
    #>
    [CmdletBinding()]
    param()
    $vtpm = $null -ne (Get-Command -Name 'Hyper-V\Enable-VMTPM' -ErrorAction SilentlyContinue)
    $guardian = Get-PsDriverHostGuardianState
    if ($null -ne $guardian.error) {
        Write-Verbose "Not guarded: $($guardian.error)"
    }
    [ordered]@{
        vtpm              = $vtpm
        host_guarded      = $guardian.host_guarded
        hgs_mode          = $guardian.mode
        shielded_vm_tools = $guardian.shielded_vm_tools
    }
}

function Get-PnpPropertyData {
    <#
    .SYNOPSIS
        One Plug and Play property of a device, or $null.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$InstanceId,

        [Parameter(Mandatory)]
        [string]$KeyName
    )
    try {
        $property = Get-PnpDeviceProperty -InstanceId $InstanceId -KeyName $KeyName -Confirm:$false -ErrorAction Stop
        return $property.Data
    }
    catch {
        Write-Verbose "No $KeyName for '$InstanceId': $($_.Exception.Message)"
        return $null
    }
}

function Get-AssignableDeviceRecord {
    <#
    .SYNOPSIS
        One Discrete Device Assignment device: ids, PCI address, NUMA node and the VM holding it.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$Device,

        [AllowNull()]
        [string]$AssignedTo
    )
    $instanceId = [string]$Device.InstanceID
    $ids = [regex]::Match($instanceId, 'VEN_([0-9A-Fa-f]{4})&DEV_([0-9A-Fa-f]{4})')
    # A dismounted device is PCIP\...; Plug and Play knows it as PCI\...
    $pnpId = $instanceId -replace '^PCIP\\', 'PCI\'
    $address = $null
    $location = [string](Get-PnpPropertyData -InstanceId $pnpId -KeyName 'DEVPKEY_Device_LocationInfo')
    $bdf = [regex]::Match($location, 'PCI bus (\d+), device (\d+), function (\d+)')
    if ($bdf.Success) {
        $address = '0000:{0:x2}:{1:x2}.{2:x}' -f [int]$bdf.Groups[1].Value, [int]$bdf.Groups[2].Value, [int]$bdf.Groups[3].Value
    }
    $numaNode = $null
    $numa = Get-PnpPropertyData -InstanceId $pnpId -KeyName 'DEVPKEY_Device_Numa_Node'
    if ($null -ne $numa) {
        $numaNode = [int]$numa
    }
    $vendor = $null
    $product = $null
    if ($ids.Success) {
        $vendor = $ids.Groups[1].Value.ToLowerInvariant()
        $product = $ids.Groups[2].Value.ToLowerInvariant()
    }
    $owner = $null
    if (-not [string]::IsNullOrEmpty($AssignedTo)) {
        $owner = $AssignedTo
    }
    [ordered]@{
        location_path = [string]$Device.LocationPath
        instance_id   = $instanceId
        vendor_id     = $vendor
        product_id    = $product
        address       = $address
        numa_node     = $numaNode
        assigned_to   = $owner
    }
}

function Get-AssignableDevice {
    <#
    .SYNOPSIS
        Every device prepared for Discrete Device Assignment, free or assigned to a VM.
    #>
    [CmdletBinding()]
    param()
    $devices = [System.Collections.Generic.List[object]]::new()
    foreach ($device in @(Hyper-V\Get-VMHostAssignableDevice)) {
        $devices.Add((Get-AssignableDeviceRecord -Device $device -AssignedTo $null))
    }
    foreach ($vm in @(Hyper-V\Get-VM)) {
        foreach ($device in @(Hyper-V\Get-VMAssignableDevice -VM $vm)) {
            $devices.Add((Get-AssignableDeviceRecord -Device $device -AssignedTo ([string]$vm.Name)))
        }
    }
    , $devices.ToArray()
}

if (-not (Get-Command -Name 'Get-PsDriverHostGuardianState' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

Initialize-NativeHostApi
$os = Get-CimInstance -ClassName Win32_OperatingSystem
$computer = Get-CimInstance -ClassName Win32_ComputerSystem
$processors = @(Get-CimInstance -ClassName Win32_Processor)
$vmHost = Hyper-V\Get-VMHost

if (-not $InstancesPath) {
    $InstancesPath = $vmHost.VirtualHardDiskPath
}
$capacity = Get-PathCapacity -Path $InstancesPath

$hypervVersion = $os.Version
$vmms = Join-Path -Path $env:SystemRoot -ChildPath 'System32\vmms.exe'
if (Test-Path -LiteralPath $vmms) {
    $hypervVersion = (Get-Item -LiteralPath $vmms).VersionInfo.ProductVersion
}

$cores = 0
$logical = 0
foreach ($processor in $processors) {
    $cores += [int]$processor.NumberOfCores
    $logical += [int]$processor.NumberOfLogicalProcessors
}
$sockets = [math]::Max($processors.Count, 1)
$coresPerSocket = [math]::Max([int]($cores / $sockets), 1)
$threadsPerCore = [math]::Max([int]($logical / [math]::Max($cores, 1)), 1)
$architectures = @{
    0  = 'i686'
    5  = 'armv7l'
    9  = 'x86_64'
    12 = 'aarch64'
}
$arch = 'x86_64'
if ($processors.Count -gt 0 -and $architectures.ContainsKey([int]$processors[0].Architecture)) {
    $arch = $architectures[[int]$processors[0].Architecture]
}

$numaNodes = [System.Collections.Generic.List[object]]::new()
foreach ($node in @(Hyper-V\Get-VMHostNumaNode)) {
    $numaNodes.Add([ordered]@{
            id                 = [int]$node.NodeId
            logical_processors = @($node.ProcessorsAvailability).Count
            memory_mb_total    = [long]$node.MemoryTotal
            memory_mb_free     = [long]$node.MemoryAvailable
        })
}

# Loopback and link-local addresses (169.254.x.x, fe80::) cannot reach the host from elsewhere.
$addresses = [System.Collections.Generic.List[string]]::new()
foreach ($address in @(Get-NetIPAddress -AddressState Preferred)) {
    $text = [string]$address.IPAddress
    if ($text -notlike '127.*' -and $text -ne '::1' -and $text -notlike '169.254.*' -and $text -notlike 'fe80:*') {
        $addresses.Add($text)
    }
}

[ordered]@{
    hostname           = [System.Net.Dns]::GetHostName()
    os_name            = [string]$os.Caption
    os_version         = [string]$os.Version
    hyperv_version     = [string]$hypervVersion
    ps_version         = $PSVersionTable.PSVersion.ToString()
    logical_processors = [int]$vmHost.LogicalProcessorCount
    cpu                = [ordered]@{
        vendor   = [string]$processors[0].Manufacturer
        model    = [string]$processors[0].Name
        arch     = $arch
        sockets  = $sockets
        cores    = $coresPerSocket
        threads  = $threadsPerCore
        features = Get-CpuFeature
    }
    memory_mb_total    = [long]([uint64]$computer.TotalPhysicalMemory / 1MB)
    memory_mb_free     = [long]([uint64]$os.FreePhysicalMemory / 1KB)
    instances_path     = [ordered]@{
        path     = $InstancesPath
        exists   = [bool](Test-Path -LiteralPath $InstancesPath -PathType Container)
        total_gb = [math]::Round($capacity.total / 1GB, 2)
        free_gb  = [math]::Round($capacity.free / 1GB, 2)
    }
    numa_nodes         = $numaNodes.ToArray()
    uptime_seconds     = [long]((Get-Date) - $os.LastBootUpTime).TotalSeconds
    ip_addresses       = $addresses.ToArray()
    security           = Get-GuestSecuritySupport
    assignable_devices = Get-AssignableDevice
}
