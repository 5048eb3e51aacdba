<#
.SYNOPSIS
    Checks that this host can run OpenStack instances under Hyper-V and
    prepares the instances folder (init_host).

.DESCRIPTION
    Run once when the compute service starts. In order:

      1. The Hyper-V PowerShell module is present (else NotInstalled /
         PsDriver.HyperVModuleMissing) and the Hyper-V host answers
         Get-VMHost (access denied: PermissionDenied /
         PsDriver.HyperVAccessDenied; service not running or any other
         failure: ResourceUnavailable / PsDriver.HyperVUnavailable).
      2. The Windows version is at least MinimumOSVersion (else
         NotInstalled / PsDriver.UnsupportedHostVersion). The PowerShell
         that runs the script is reported: PowerShell 7 drives the Hyper-V
         module natively only from Windows Server 2019 (build 17763, version
         1809); before that it loads it through the Windows PowerShell
         compatibility layer, which passes serialized objects that -VM
         parameters refuse. hyperv_module_native is false for that
         combination, no console logger is started, and init_host refuses
         the host (run Windows PowerShell 5.1 there).
      3. InstancesPath is an absolute path (else InvalidArgument /
         PsDriver.InvalidInstancesPath) whose root is reachable: the drive
         of a local or mapped path, \\server\share of a UNC path,
         C:\ClusterStorage\VolumeN of a Cluster Shared Volume path (else
         ObjectNotFound / PsDriver.InstancesPathNotFound). InstancesPath and
         its image cache folder (BaseDirectoryName) are created when
         missing, and a probe file is written and deleted to prove the
         folder is writable. Access denied while doing so: PermissionDenied
         / PsDriver.InstancesPathAccessDenied; any other failure:
         ObjectNotFound / PsDriver.InstancesPathNotFound.

    With ConsoleLogFileName, every running VM whose Notes carry an
    OpenStack instance UUID gets its serial console logger back (loggers do
    not survive a host reboot) unless one runs already, writing
    <InstancesPath>\<VM name>\<ConsoleLogFileName> from the VM's logging
    pipe (Start-PsDriverConsoleLogger). A logger that cannot be started is
    reported in console_loggers, never an error; a host that cannot list
    its VMs is a warning.

    It then reports the host: name, versions, the instances folder (kind,
    capacity and free space of the volume that holds it), the virtual
    switches (and which of RequiredSwitches are missing; a missing switch
    is reported, not an error), whether the host is a failover cluster
    node, and whether NUMA spanning is enabled (instances with a vNUMA
    topology only benefit from it when spanning is off).

    kind of the instances folder:
      unc     \\server\share\...
      csv     <drive>:\ClusterStorage\<volume>\... (Cluster Shared Volume)
      mapped  a drive letter mapped to a network share
      local   any other drive letter path

    With -WhatIf nothing is created, no probe file is written and no
    console logger is started.

.PARAMETER InstancesPath
    The instances folder (nova.conf instances_path): C:\OpenStack\Instances,
    Z:\Instances, \\fileserver\share\Instances or
    C:\ClusterStorage\Volume1\Instances.

.PARAMETER BaseDirectoryName
    Name of the image cache folder inside InstancesPath (default _base). A
    plain folder name: no path separators.

.PARAMETER RequiredSwitches
    Virtual switch names the configuration refers to (for example the
    vswitch of [hyperv] vswitch_name). Those that do not exist are listed in
    missing_switches. Optional.

.PARAMETER MinimumOSVersion
    Oldest Windows version accepted (default 10.0.14393, Windows Server
    2016).

.PARAMETER ConsoleLogFileName
    File name of the console log in each instance folder (for example
    console.log): restart the console loggers of the running instances.
    Optional; a plain file name.

.PARAMETER ConsoleLogMaxBytes
    Size at which a console log is rotated (4096 to 1073741824, default
    524288).

.EXAMPLE
    .\Initialize-ComputeHost.ps1 -InstancesPath C:\OpenStack\Instances -RequiredSwitches external

.EXAMPLE
    .\Initialize-ComputeHost.ps1 -InstancesPath \\fileserver\openstack\Instances -WhatIf

.EXAMPLE
    .\Initialize-ComputeHost.ps1 -InstancesPath C:\OpenStack\Instances -ConsoleLogFileName console.log

.OUTPUTS
    One object: hostname, os_version, os_caption, hyperv_version,
    default_vm_version, powershell_edition (Desktop: Windows PowerShell
    5.1; Core: PowerShell 7), powershell_version, hyperv_module_native,
    instances_path {path, exists, kind, total_bytes,
    free_bytes, total_gb, free_gb}, base_path, base_path_exists, created
    (folders created by this call), switches [{name, type, id}],
    missing_switches, is_cluster_node, cluster_name, numa_spanning_enabled,
    console_loggers [{name, started, running, error}] (one per running
    instance; empty without ConsoleLogFileName).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNullOrEmpty()]
    [string]$InstancesPath,

    [ValidateNotNullOrEmpty()]
    [ValidatePattern('^[^\\/:*?"<>|]+$')]
    [string]$BaseDirectoryName = '_base',

    [string[]]$RequiredSwitches = @(),

    [version]$MinimumOSVersion = '10.0.14393',

    [ValidatePattern('^[^\\/:*?"<>|]+$')]
    [string]$ConsoleLogFileName,

    [ValidateRange(4096, 1073741824)]
    [int]$ConsoleLogMaxBytes = 524288
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Test-AccessDenied {
    <#
    .SYNOPSIS
        True when an error record is about missing permissions.
    #>
    param(
        [Parameter(Mandatory)]
        [System.Management.Automation.ErrorRecord]$ErrorRecord
    )
    if ($ErrorRecord.CategoryInfo.Category -in @('PermissionDenied', 'SecurityError')) {
        return $true
    }
    $exception = $ErrorRecord.Exception
    while ($null -ne $exception) {
        if ($exception -is [System.UnauthorizedAccessException] -or $exception -is [System.Security.SecurityException]) {
            return $true
        }
        $exception = $exception.InnerException
    }
    $false
}

function Get-PathKind {
    <#
    .SYNOPSIS
        unc, csv, mapped or local, and the root that must already exist.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    $unc = [regex]::Match($Path, '^\\\\([^\\]+)\\([^\\]+)')
    if ($unc.Success) {
        return @{ Kind = 'unc'; Root = $unc.Value }
    }
    $csv = [regex]::Match($Path, '^([A-Za-z]:)\\ClusterStorage\\([^\\]+)', [System.Text.RegularExpressions.RegexOptions]::IgnoreCase)
    if ($csv.Success) {
        return @{ Kind = 'csv'; Root = $csv.Value }
    }
    $root = [System.IO.Path]::GetPathRoot($Path)
    $drive = [regex]::Match($Path, '^([A-Za-z]:)')
    if ($drive.Success) {
        $filter = "DeviceID='{0}'" -f $drive.Groups[1].Value.ToUpperInvariant()
        $disk = $null
        try {
            $disk = @(Get-CimInstance -ClassName 'Win32_LogicalDisk' -Filter $filter) | Select-Object -First 1
        }
        catch {
            Write-Verbose "Cannot query drive $($drive.Groups[1].Value): $($_.Exception.Message)"
        }
        # DriveType 4: network drive.
        if ($null -ne $disk -and [int]$disk.DriveType -eq 4) {
            return @{ Kind = 'mapped'; Root = $root }
        }
    }
    @{ Kind = 'local'; Root = $root }
}

function Get-PathCapacity {
    <#
    .SYNOPSIS
        Total and caller-available bytes of the volume holding Path (mount points, CSVs and
        shares included), or $null values when unknown.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    $capacity = @{ Total = $null; Free = $null }
    try {
        if (-not ('PsDriver.Native.DiskSpace' -as [type])) {
            $signature = @'
[DllImport("kernel32.dll", SetLastError = true, CharSet = CharSet.Unicode)]
[return: MarshalAs(UnmanagedType.Bool)]
public static extern bool GetDiskFreeSpaceEx(string lpDirectoryName, out ulong lpFreeBytesAvailable,
    out ulong lpTotalNumberOfBytes, out ulong lpTotalNumberOfFreeBytes);
'@
            Add-Type -Namespace 'PsDriver.Native' -Name 'DiskSpace' -MemberDefinition $signature
        }
        $free = [uint64]0
        $total = [uint64]0
        $totalFree = [uint64]0
        $directory = $Path
        if (-not $directory.EndsWith('\')) {
            $directory += '\'
        }
        if ([PsDriver.Native.DiskSpace]::GetDiskFreeSpaceEx($directory, [ref]$free, [ref]$total, [ref]$totalFree)) {
            $capacity.Total = [long]$total
            $capacity.Free = [long]$free
        }
    }
    catch {
        Write-Verbose "Cannot read the free space of '$Path': $($_.Exception.Message)"
    }
    $capacity
}

function New-Folder {
    <#
    .SYNOPSIS
        Creates a folder; access denied -> PermissionDenied, any other failure -> ObjectNotFound.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    try {
        $null = New-Item -ItemType Directory -Path $Path -Force -Confirm:$false -WhatIf:$false
    }
    catch {
        $failure = $_
        if (Test-AccessDenied -ErrorRecord $failure) {
            throw (New-PsDriverErrorRecord -Message "Access denied while creating folder '$Path': $($failure.Exception.Message)" -Category PermissionDenied -ErrorId 'PsDriver.InstancesPathAccessDenied' -Target $Path -InnerException $failure.Exception)
        }
        throw (New-PsDriverErrorRecord -Message "Cannot create folder '$Path': $($failure.Exception.Message)" -Category ObjectNotFound -ErrorId 'PsDriver.InstancesPathNotFound' -Target $Path -InnerException $failure.Exception)
    }
}

function Test-FolderWritable {
    <#
    .SYNOPSIS
        Writes and deletes a probe file; throws PermissionDenied when the folder is read-only for us.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    $probe = Join-Path -Path $Path -ChildPath ('.psdriver-probe-{0}.tmp' -f [guid]::NewGuid().ToString('N'))
    try {
        $null = New-Item -ItemType File -Path $probe -Force -Confirm:$false -WhatIf:$false
        Remove-Item -LiteralPath $probe -Force -Confirm:$false -WhatIf:$false
    }
    catch {
        $failure = $_
        if (Test-AccessDenied -ErrorRecord $failure) {
            throw (New-PsDriverErrorRecord -Message "The instances folder '$Path' is not writable: $($failure.Exception.Message)" -Category PermissionDenied -ErrorId 'PsDriver.InstancesPathAccessDenied' -Target $Path -InnerException $failure.Exception)
        }
        throw (New-PsDriverErrorRecord -Message "Cannot write to the instances folder '$Path': $($failure.Exception.Message)" -Category ObjectNotFound -ErrorId 'PsDriver.InstancesPathNotFound' -Target $Path -InnerException $failure.Exception)
    }
}

if (-not (Get-Command -Name 'New-PsDriverErrorRecord' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

# 1. Hyper-V module and host.
if ($null -eq (Get-Command -Name 'Get-VMHost' -ErrorAction SilentlyContinue)) {
    throw (New-PsDriverErrorRecord -Message 'The Hyper-V PowerShell module is not installed on this host (Install-WindowsFeature Hyper-V-PowerShell, or Enable-WindowsOptionalFeature Microsoft-Hyper-V-Management-PowerShell).' -Category NotInstalled -ErrorId 'PsDriver.HyperVModuleMissing' -Target 'Hyper-V')
}
try {
    $vmHost = Hyper-V\Get-VMHost
}
catch {
    $failure = $_
    if (Test-AccessDenied -ErrorRecord $failure) {
        throw (New-PsDriverErrorRecord -Message "Access to Hyper-V was denied; the account must be a member of Administrators or Hyper-V Administrators: $($failure.Exception.Message)" -Category PermissionDenied -ErrorId 'PsDriver.HyperVAccessDenied' -Target 'Hyper-V' -InnerException $failure.Exception)
    }
    throw (New-PsDriverErrorRecord -Message "The Hyper-V host does not answer (is the Virtual Machine Management service running?): $($failure.Exception.Message)" -Category ResourceUnavailable -ErrorId 'PsDriver.HyperVUnavailable' -Target 'Hyper-V' -InnerException $failure.Exception)
}

# 2. Versions.
$os = @(Get-CimInstance -ClassName 'Win32_OperatingSystem') | Select-Object -First 1
$osVersion = [version][string]$os.Version
if ($osVersion -lt $MinimumOSVersion) {
    throw (New-PsDriverErrorRecord -Message "This host runs Windows $osVersion ($($os.Caption)); at least $MinimumOSVersion is required." -Category NotInstalled -ErrorId 'PsDriver.UnsupportedHostVersion' -Target ([string]$osVersion))
}
$psEditionName = 'Desktop'
if ($PSVersionTable.ContainsKey('PSEdition')) {
    $psEditionName = [string]$PSVersionTable.PSEdition
}
# PowerShell 7 loads the Hyper-V module of builds before 17763 (1809) through the compatibility layer.
$hypervModuleNative = ($psEditionName -ne 'Core') -or ($osVersion.Build -ge 17763)
$hypervVersion = $osVersion.ToString()
$systemRoot = [System.Environment]::GetEnvironmentVariable('SystemRoot')
if (-not [string]::IsNullOrEmpty($systemRoot)) {
    $vmms = Get-Item -LiteralPath (Join-Path -Path $systemRoot -ChildPath 'System32\vmms.exe') -ErrorAction SilentlyContinue
    if ($null -ne $vmms -and -not [string]::IsNullOrEmpty($vmms.VersionInfo.ProductVersion)) {
        $hypervVersion = [string]$vmms.VersionInfo.ProductVersion
    }
}
$defaultVmVersion = $null
if ($null -ne (Get-Command -Name 'Get-VMHostSupportedVersion' -ErrorAction SilentlyContinue)) {
    try {
        $supported = @(Hyper-V\Get-VMHostSupportedVersion -Default) | Select-Object -First 1
        if ($null -ne $supported) {
            $defaultVmVersion = $supported.Version.ToString()
        }
    }
    catch {
        Write-Verbose "Cannot read the default VM configuration version: $($_.Exception.Message)"
    }
}

# 3. Instances folder.
if (-not (Test-PsDriverAbsolutePath -Path $InstancesPath)) {
    throw (New-PsDriverErrorRecord -Message "instances_path '$InstancesPath' must be an absolute path (C:\..., \\server\share\... or C:\ClusterStorage\VolumeN\...)." -Category InvalidArgument -ErrorId 'PsDriver.InvalidInstancesPath' -Target $InstancesPath)
}
$instancesFull = $InstancesPath.TrimEnd('\', '/')
if ($instancesFull -match '^[A-Za-z]:$') {
    $instancesFull += '\'
}
$pathKind = Get-PathKind -Path $instancesFull
if (-not (Test-Path -LiteralPath $pathKind.Root -PathType Container)) {
    throw (New-PsDriverErrorRecord -Message "The root '$($pathKind.Root)' of instances_path '$InstancesPath' ($($pathKind.Kind)) cannot be reached." -Category ObjectNotFound -ErrorId 'PsDriver.InstancesPathNotFound' -Target $InstancesPath)
}

$basePath = Join-Path -Path $instancesFull -ChildPath $BaseDirectoryName
$created = [System.Collections.Generic.List[string]]::new()
if ($PSCmdlet.ShouldProcess("instances folder '$instancesFull'", 'Create the folder and its image cache folder, check it is writable')) {
    foreach ($folder in @($instancesFull, $basePath)) {
        if (-not (Test-Path -LiteralPath $folder -PathType Container)) {
            New-Folder -Path $folder
            $created.Add($folder)
        }
    }
    Test-FolderWritable -Path $instancesFull
}
$instancesExists = [bool](Test-Path -LiteralPath $instancesFull -PathType Container)
$baseExists = [bool](Test-Path -LiteralPath $basePath -PathType Container)

$capacity = @{ Total = $null; Free = $null }
if ($instancesExists) {
    $capacity = Get-PathCapacity -Path $instancesFull
}
$totalGb = $null
$freeGb = $null
if ($null -ne $capacity.Total) {
    $totalGb = [math]::Round($capacity.Total / 1GB, 2)
    $freeGb = [math]::Round($capacity.Free / 1GB, 2)
}

# 4. Switches.
$switches = @(Hyper-V\Get-VMSwitch | ForEach-Object {
        [ordered]@{
            name = [string]$_.Name
            type = $_.SwitchType.ToString()
            id   = $_.Id.ToString()
        }
    })
$switchNames = @($switches | ForEach-Object { $_.name })
$missingSwitches = @($RequiredSwitches | Where-Object {
        -not [string]::IsNullOrEmpty($_) -and $switchNames -notcontains $_
    } | Select-Object -Unique)

# 5. Failover cluster membership.
$isClusterNode = $false
$clusterName = $null
$clusterService = Get-Service -Name 'ClusSvc' -ErrorAction SilentlyContinue
if ($null -ne $clusterService -and $clusterService.Status.ToString() -eq 'Running') {
    $isClusterNode = $true
    try {
        $cluster = @(Get-CimInstance -Namespace 'root/MSCluster' -ClassName 'MSCluster_Cluster') | Select-Object -First 1
        if ($null -ne $cluster -and -not [string]::IsNullOrEmpty($cluster.Name)) {
            $clusterName = [string]$cluster.Name
        }
    }
    catch {
        Write-Verbose "Cannot read the cluster name: $($_.Exception.Message)"
    }
}

# 6. Console loggers: they do not survive a host reboot; running instances get theirs back.
$consoleLoggers = [System.Collections.Generic.List[object]]::new()
if (-not $hypervModuleNative) {
    Write-Warning "Console loggers not started: PowerShell $($PSVersionTable.PSVersion) cannot use the Hyper-V module of Windows $osVersion natively."
}
elseif (-not [string]::IsNullOrEmpty($ConsoleLogFileName) -and $instancesExists) {
    $instances = @()
    try {
        $instances = @(Hyper-V\Get-VM | Where-Object {
                $_.State.ToString() -in @('Running', 'Starting', 'Resuming', 'Reset') -and
                $null -ne (ConvertTo-PsDriverInstanceUuid -Notes $_.Notes)
            })
    }
    catch {
        Write-Warning "Console loggers not checked: the virtual machines cannot be listed: $($_.Exception.Message)"
    }
    # The serial ports of all of them in one call; if that fails, each VM is asked on its own.
    $portsByVm = $null
    if ($instances.Count -gt 0) {
        try {
            $portsByVm = @{}
            foreach ($port in @(Hyper-V\Get-VMComPort -VM $instances)) {
                $key = [string]$port.VMId
                if (-not $portsByVm.ContainsKey($key)) {
                    $portsByVm[$key] = [System.Collections.Generic.List[object]]::new()
                }
                $portsByVm[$key].Add($port)
            }
        }
        catch {
            Write-Verbose "Cannot read the serial ports of the running instances at once: $($_.Exception.Message)"
            $portsByVm = $null
        }
    }
    foreach ($vm in $instances) {
        $logPath = Join-Path -Path (Join-Path -Path $instancesFull -ChildPath ([string]$vm.Name)) -ChildPath $ConsoleLogFileName
        if (-not $PSCmdlet.ShouldProcess("virtual machine '$($vm.Name)'", "Make sure a console logger writes '$logPath'")) {
            continue
        }
        $loggerArgs = @{
            VM          = $vm
            LogPath     = $logPath
            MaxLogBytes = $ConsoleLogMaxBytes
        }
        if ($null -ne $portsByVm) {
            $ports = @()
            if ($portsByVm.ContainsKey([string]$vm.Id)) {
                $ports = $portsByVm[[string]$vm.Id].ToArray()
            }
            $loggerArgs['PipePath'] = Get-PsDriverConsolePipePath -Port $ports
        }
        $launch = Invoke-PsDriverConsoleLogger @loggerArgs
        $consoleLoggers.Add([ordered]@{
                name    = [string]$vm.Name
                started = $launch.started
                running = $launch.running
                error   = $launch.error
            })
    }
}

$hostName = [string]$vmHost.ComputerName
if ([string]::IsNullOrEmpty($hostName)) {
    $hostName = [System.Environment]::MachineName
}

[ordered]@{
    hostname              = $hostName
    os_version            = $osVersion.ToString()
    os_caption            = [string]$os.Caption
    hyperv_version        = $hypervVersion
    default_vm_version    = $defaultVmVersion
    powershell_edition    = $psEditionName
    powershell_version    = $PSVersionTable.PSVersion.ToString()
    hyperv_module_native  = $hypervModuleNative
    instances_path        = [ordered]@{
        path        = $instancesFull
        exists      = $instancesExists
        kind        = $pathKind.Kind
        total_bytes = $capacity.Total
        free_bytes  = $capacity.Free
        total_gb    = $totalGb
        free_gb     = $freeGb
    }
    base_path             = $basePath
    base_path_exists      = $baseExists
    created               = @($created)
    switches              = @($switches)
    missing_switches      = @($missingSwitches)
    is_cluster_node       = $isClusterNode
    cluster_name          = $clusterName
    numa_spanning_enabled = [bool]$vmHost.NumaSpanningEnabled
    console_loggers       = @($consoleLoggers)
}
