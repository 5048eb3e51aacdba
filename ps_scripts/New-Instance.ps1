<#
.SYNOPSIS
    Creates (spawns) one OpenStack instance as a Hyper-V virtual machine in
    a single call: folder, disks, config drive, VM, NICs, serial ports,
    boot order, power on.

.DESCRIPTION
    Everything the instance needs is in one structured parameter, Spec
    (the JSON Schema is the x-spec-schema key of
    New-Instance.contract.json). Spec is checked completely before
    anything is changed; a bad spec is an error of category InvalidArgument
    with error id PsDriver.InvalidSpec naming the field (for example
    spec.root_disk.format).

    Spec fields (optional ones show their default):

      name                  VM name (1-100 characters), e.g. instance-0000002a.
      instance_uuid         Nova instance UUID. Written, lower case, as the
                            first line of the VM Notes; notes_extra follows
                            on the next lines. This is how instances are
                            recognised (see Get-InstanceSummary).
      instance_dir          Absolute path of the instance folder, normally
                            <instances_path>\<name>. Created when missing.
                            The VM configuration, checkpoints and smart
                            paging file live in it.
      generation            1 or 2.
      secure_boot = null    {enabled, template}. Generation 2 only.
                            template: MicrosoftWindows (also when null),
                            MicrosoftUEFICertificateAuthority (Linux) or
                            OpenSourceShieldedVM (Windows Server 1709 and
                            later; a template the host does not offer is
                            InvalidArgument /
                            PsDriver.SecureBootTemplateUnavailable before
                            anything is created). null or enabled false turns
                            secure boot off (generation 2 VMs otherwise
                            start with it on).
      vcpus                 1-240.
      memory_mb             Even, at least 32: the maximum memory.
      dynamic_memory_ratio = 1
                            Greater than 1 enables dynamic memory as
                            compute-hyperv did: maximum = memory_mb,
                            minimum = startup = memory_mb / ratio rounded
                            down to an even number of MB. Must be 1 when
                            vnuma.enabled is true (dynamic memory and vNUMA
                            exclude each other).
      vnuma = null          {enabled, max_processors_per_node,
                            max_memory_per_node_mb}: when enabled, the per
                            NUMA node limits are set (null limits are left
                            to Hyper-V). The guest only sees the topology
                            when the host has NUMA spanning disabled
                            (Initialize-ComputeHost reports it).
      limit_cpu_features = false
                            Processor compatibility for migration.
      root_disk = null      {source, cow = false, format, size_gb = null,
                            controller = null}:
                              source  cached image (a file in the image
                                      cache) or null for no image.
                              format  vhd, vhdx or iso; must match the
                                      extension of source.
                              cow     true: differencing disk on source;
                                      false: copy of source.
                              size_gb virtual size wanted (the flavor root
                                      disk). Grown when bigger than the
                                      image; never shrunk: smaller is an
                                      error InvalidArgument /
                                      PsDriver.RootDiskTooSmall. A vhd
                                      differencing disk cannot grow: pass a
                                      base image already of that size, else
                                      InvalidArgument /
                                      PsDriver.DifferencingVhdResize.
                                      Ignored for iso.
                              controller
                                      ide (generation 1) or scsi
                                      (generation 2); null picks that.
                            File: <instance_dir>\root.<format>; an iso is
                            copied and attached as a DVD. source null with
                            size_gb > 0 creates an empty dynamic disk;
                            source null without size_gb (or root_disk null)
                            means no root disk (boot from volume): its slot
                            (IDE 0:0 or SCSI 0:0) stays free.
                            Generation 2 cannot boot from vhd.
      ephemerals = []       [{size_gb, format, controller = null}]: dynamic
                            disks <instance_dir>\eph<i>.<format>.
      swap = null           {size_mb, format, controller = null}: dynamic
                            disk <instance_dir>\swap.<format>.
      nics = []             [{id, mac, switch = null, vlan = null}]: one
                            adapter per Neutron port, named after the port
                            id, with the port MAC as static MAC; connected
                            to switch when given (else left for the L2
                            agent); vlan 1-4094 sets access mode;
                            ovs_bridge (VIF type ovs) also makes the adapter
                            a port of that Open vSwitch bridge with the
                            external ids Neutron's OVS agent reads
                            (ovs-vsctl --may-exist add-port; a missing
                            bridge fails the spawn: PsDriver.OvsVsctlFailed).
      ovs_vsctl_path = null ovs-vsctl of Open vSwitch for Windows; null:
                            ovs-vsctl.exe on PATH. Not found while a nic has
                            ovs_bridge: PsDriver.OvsVsctlNotFound, before
                            anything is created.
      serial_ports = []     [{port, pipe}]: COM port 1 or 2 connected to
                            named pipe \\.\pipe\<pipe> (a full
                            \\.\pipe\... path is accepted too).
      config_drive = null   {content_base64, format, as_dvd}: the config
                            drive image built by the caller (ISO, or a VHD
                            holding a vfat file system), written to
                            <instance_dir>\configdrive.<format> (an existing
                            file is overwritten). iso requires as_dvd true
                            (DVD drive), vhd requires as_dvd false (hard
                            disk).
      volumes = []          [{disk_number = null, path = null, boot = false,
                              max_iops = null}]:
                            Cinder volumes already connected to the host
                            (Connect-InstanceVolume without -Name), each a
                            pass-through disk (disk_number, offline) or a
                            VHD/VHDX file (path). The boot volume (boot true,
                            root_disk null, at most one) takes the root slot
                            (IDE 0:0 or SCSI 0:0) and is the boot device; the
                            others go to SCSI controller 0 after the config
                            drive. A file volume with max_iops gets
                            Set-VMHardDiskDrive -MaximumIOPS (8 KB
                            normalised IOPS, as Connect-InstanceVolume
                            sets it). Detaching them on failure is the VM's
                            removal; disconnecting them is the caller's.
      enable_metrics = false
                            Enable-VMResourceMetering.
      power_on = true       Start the VM at the end.
      notes_extra = null    Extra text after the UUID line in the Notes.
      automatic_stop_action = null
                            Save, TurnOff or ShutDown on host shutdown; null
                            keeps the Hyper-V default.
      nested_virtualization = false
                            Expose the processor's virtualization
                            extensions to the guest (Set-VMProcessor
                            -ExposeVirtualizationExtensions) so that it can
                            run Hyper-V or another hypervisor. Needs
                            dynamic_memory_ratio 1; a host that cannot (no
                            VT-x/AMD-V, too old a Windows) makes Hyper-V
                            refuse it.
      disk_max_iops = null  Storage QoS: the most normalized IOPS (8 KB
                            units) each local disk (root, ephemerals, swap)
                            may use (Set-VMHardDiskDrive -MaximumIOPS).
                            null: no limit.
      tpm = null            {key_protector = local}: a virtual TPM 2.0
                            (Enable-VMTPM) sealed with a new local key
                            protector (Set-VMKeyProtector
                            -NewLocalKeyProtector: the host's untrusted
                            guardian, no guarded fabric needed). Needs
                            generation 2 and secure boot on.
      shielding = null      {data_file, specialization = {},
                            provisioning_timeout_s = 900,
                            poll_interval_s = 5}: a shielded VM, on a host
                            guarded by a Host Guardian Service (else
                            ResourceUnavailable / PsDriver.HostNotGuarded,
                            before anything is created).
                              data_file
                                      the shielding data file (.pdk) the
                                      caller wrote directly in
                                      instance_dir. The VM gets its key
                                      protector (Get-KeyProtectorFromShieldingDataFile,
                                      Set-VMKeyProtector -KeyProtector),
                                      Set-VMSecurityPolicy -Shielded $true
                                      and Enable-VMTPM. Not readable:
                                      InvalidData / PsDriver.InvalidShieldingData.
                              specialization
                                      {"@Name@": "value"}: the
                                      substitutions of the shielding data's
                                      answer file, written with
                                      New-ShieldedVMSpecializationDataFile
                                      to <instance_dir>\specialization.fsk.
                              provisioning_timeout_s (60-1700),
                              poll_interval_s (1-60)
                                      how long to wait for the
                                      provisioning, polled with
                                      Get-ShieldedVMProvisioningStatus.
                            The root disk's image must be a signed template
                            disk (Save-VolumeSignatureCatalog) that the
                            shielding data trusts
                            (Test-ShieldingDataApplicability), else
                            InvalidArgument / PsDriver.NotATemplateDisk or
                            PsDriver.ShieldingDataNotApplicable, before the
                            VM is created. Instead of Start-VM,
                            Initialize-ShieldedVM starts the VM and its
                            provisioning, and this call waits for it:
                            failed: InvalidResult /
                            PsDriver.ShieldedProvisioningFailed; still
                            running after provisioning_timeout_s:
                            OperationTimeout /
                            PsDriver.ShieldedProvisioningTimeout (both undo
                            the spawn). Needs generation 2, secure boot, a
                            root_disk with a vhdx source, power_on true and
                            tpm null. The data file and the specialization
                            file are deleted when the call ends, whatever
                            happened; the instance folder too when the call
                            fails and the folder held nothing but the data
                            file at the start.
      assignable_devices = []
                            [{location_path}]: PCI Express devices for
                            Discrete Device Assignment, each dismounted
                            from the host beforehand
                            (Dismount-VMHostAssignableDevice), added with
                            Add-VMAssignableDevice. Needs
                            automatic_stop_action TurnOff and
                            dynamic_memory_ratio 1. A device that is not
                            free (assigned to another VM, not dismounted)
                            is an error ResourceUnavailable /
                            PsDriver.DeviceUnavailable.
      mmio_space = null     {low_mb, high_mb}: the memory-mapped I/O space
                            the devices need (Set-VM
                            -GuestControlledCacheTypes
                            -LowMemoryMappedIoSpace
                            -HighMemoryMappedIoSpace); set only with
                            assignable_devices.
      console_log = null    {path, max_bytes = 524288}: start the console
                            logger of the VM (Invoke-PsDriverConsoleLogger in
                            PsDriver.psm1, as Set-InstancePowerState.ps1
                            does) before the VM starts, so the log holds the
                            guest's output from its first boot. It reads the
                            serial port pipe ending in _ro, else COM 1's,
                            else the first one; the folder of path must be
                            instance_dir or exist. A logger that cannot be
                            started is a warning, not a failed spawn: the
                            reason is in console_logger.error.

    Drive placement (reported in drives):
      generation 1: root IDE 0:0, config drive IDE 1:0; disks with
        controller ide take the free IDE slots in the order 0:1, 1:0,
        1:1. A SCSI controller is added for the other disks and volumes.
      generation 2: root SCSI 0:0.
      Disks without a controller go to SCSI controller 0 (as
      compute-hyperv did), in the order ephemerals, swap, config drive, at
      the next free locations (from 1 on generation 2, from 0 on
      generation 1). No free IDE slot: InvalidArgument /
      PsDriver.InvalidSpec.
    Boot: generation 1 boots from IDE (CD first for an iso root);
    generation 2 boots from the root drive.

    Existing files: a root, ephemeral or swap file that already exists in
    instance_dir is reused as it is (not resized; listed in reused), so a
    spawn on shared storage (evacuate) keeps the disks. A VM that already
    has this exact name is an error ResourceExists / PsDriver.VMExists (a
    host that cannot list its VMs fails the spawn with its own error). A
    missing source image: ObjectNotFound / PsDriver.ImageNotFound.

    On any failure after the checks, everything this call created is
    removed in reverse order (VM turned off unless off or saved, and
    removed; the console logger it started stopped; created files
    deleted, the instance folder deleted if this call created it); reused
    files and files outside instance_dir are never touched. Then the
    original error is raised again unchanged (same category and error
    id). -WhatIf checks the spec and reports the plan without changing
    anything (state NotCreated).

.PARAMETER Spec
    The instance spec: a hashtable, an object, or a JSON string (read with
    the parser the wrapper uses, which keeps date-like strings as strings;
    ConvertFrom-Json of PowerShell 6+ would turn them into DateTime, so pass
    the text rather than its output). It can carry secrets in the config
    drive (admin password, user data): never log it.

.EXAMPLE
    $spec = Get-Content .\spec.json -Raw
    .\New-Instance.ps1 -Spec $spec

.EXAMPLE
    .\New-Instance.ps1 -Spec @{
        name = 'instance-00000001'; instance_uuid = '4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f'
        instance_dir = 'C:\OpenStack\Instances\instance-00000001'; generation = 2
        vcpus = 2; memory_mb = 2048
        root_disk = @{ source = 'C:\OpenStack\Instances\_base\0c7e2a55.vhdx'; cow = $true; format = 'vhdx'; size_gb = 20 }
    } -WhatIf

.OUTPUTS
    One object: name, instance_uuid, vm_id (null with -WhatIf), state (VM
    state after the call, NotCreated with -WhatIf), generation,
    root_disk_path (null without a root disk file), drives [{role (root,
    ephemeral, swap, config_drive, volume), index, path (null for a
    pass-through volume), drive_type (disk, dvd),
    controller_type (IDE, SCSI), controller_number, controller_location}],
    created (paths this call created: the instance folder, disk files,
    config drive, in order), reused (existing disk files kept),
    console_logger (null without console_log; else pipe_path, log_path,
    started, running, pid, error), shielding (null without spec.shielding;
    else provisioned, provisioning_seconds: how long the provisioning took,
    null with -WhatIf).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)]
    [ValidateNotNull()]
    [psobject]$Spec
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function New-SpecError {
    param(
        [Parameter(Mandatory)]
        [string]$Field,

        [Parameter(Mandatory)]
        [string]$Message
    )
    New-PsDriverErrorRecord -Message "Invalid instance spec: $Field $Message" -Category InvalidArgument -ErrorId 'PsDriver.InvalidSpec' -Target $Field
}

function Test-SpecObject {
    param(
        [AllowNull()]
        [object]$Value
    )
    $Value -is [System.Collections.IDictionary] -or $Value -is [System.Management.Automation.PSCustomObject]
}

function Test-SpecNumber {
    param(
        [AllowNull()]
        [object]$Value
    )
    $numericTypes = @([int], [long], [double], [decimal], [single], [int16], [uint32], [uint64])
    $null -ne $Value -and $numericTypes -contains $Value.GetType()
}

function Get-SpecFieldName {
    param(
        [Parameter(Mandatory)]
        [object]$Object
    )
    if ($Object -is [System.Collections.IDictionary]) {
        return @($Object.Keys | ForEach-Object { [string]$_ })
    }
    @($Object.PSObject.Properties | ForEach-Object { $_.Name })
}

function Assert-KnownSpecField {
    <#
    .SYNOPSIS
        Rejects fields the spec schema does not know (typos must not pass silently).
    #>
    param(
        [Parameter(Mandatory)]
        [object]$Object,

        [Parameter(Mandatory)]
        [string]$Path,

        [Parameter(Mandatory)]
        [string[]]$Allowed
    )
    foreach ($field in @(Get-SpecFieldName -Object $Object)) {
        if ($Allowed -cnotcontains $field) {
            throw (New-SpecError -Field "$Path.$field" -Message ('is not a known field (known: {0}).' -f ($Allowed -join ', ')))
        }
    }
}

function Read-SpecField {
    <#
    .SYNOPSIS
        One field of a spec object, type-checked; arrays come back enumerated (wrap the call in @()).
    #>
    param(
        [Parameter(Mandatory)]
        [object]$Object,

        [Parameter(Mandatory)]
        [string]$Path,

        [Parameter(Mandatory)]
        [string]$Name,

        [Parameter(Mandatory)]
        [ValidateSet('string', 'integer', 'number', 'boolean', 'object', 'array')]
        [string]$Type,

        [switch]$Required,

        [switch]$Nullable,

        [AllowNull()]
        [object]$Default
    )
    $field = "$Path.$Name"
    $found = $false
    $value = $null
    if ($Object -is [System.Collections.IDictionary]) {
        if ($Object.Contains($Name)) {
            $found = $true
            $value = $Object[$Name]
        }
    }
    else {
        $property = $Object.PSObject.Properties[$Name]
        if ($null -ne $property) {
            $found = $true
            $value = $property.Value
        }
    }
    if (-not $found) {
        if ($Required) {
            throw (New-SpecError -Field $field -Message 'is required.')
        }
        return $Default
    }
    if ($null -eq $value) {
        if ($Nullable) {
            return $null
        }
        throw (New-SpecError -Field $field -Message 'must not be null.')
    }
    switch ($Type) {
        'string' {
            if ($value -isnot [string]) {
                throw (New-SpecError -Field $field -Message 'must be a string.')
            }
            return [string]$value
        }
        'integer' {
            if (-not (Test-SpecNumber -Value $value) -or [double]$value -ne [math]::Floor([double]$value)) {
                throw (New-SpecError -Field $field -Message 'must be an integer.')
            }
            return [long]$value
        }
        'number' {
            if (-not (Test-SpecNumber -Value $value)) {
                throw (New-SpecError -Field $field -Message 'must be a number.')
            }
            return [double]$value
        }
        'boolean' {
            if ($value -isnot [bool]) {
                throw (New-SpecError -Field $field -Message 'must be true or false.')
            }
            return [bool]$value
        }
        'object' {
            if (-not (Test-SpecObject -Value $value)) {
                throw (New-SpecError -Field $field -Message 'must be an object.')
            }
            return $value
        }
        'array' {
            if ($value -is [string] -or $value -isnot [System.Collections.IList]) {
                throw (New-SpecError -Field $field -Message 'must be a list.')
            }
            return $value
        }
    }
}

function Assert-SpecRange {
    param(
        [Parameter(Mandatory)]
        [string]$Field,

        [Parameter(Mandatory)]
        [double]$Value,

        [double]$Minimum = [double]::MinValue,

        [double]$Maximum = [double]::MaxValue
    )
    if ($Value -lt $Minimum -or $Value -gt $Maximum) {
        throw (New-SpecError -Field $Field -Message "must be between $Minimum and $Maximum (got $Value).")
    }
}

function Assert-SpecChoice {
    param(
        [Parameter(Mandatory)]
        [string]$Field,

        [AllowNull()]
        [object]$Value,

        [Parameter(Mandatory)]
        [object[]]$Allowed
    )
    if ($Allowed -cnotcontains $Value) {
        throw (New-SpecError -Field $Field -Message ("must be one of {0} (got '{1}')." -f ($Allowed -join ', '), $Value))
    }
}

function Read-DiskSpec {
    <#
    .SYNOPSIS
        An ephemeral or swap disk entry: size, format, controller.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$Object,

        [Parameter(Mandatory)]
        [string]$Path,

        [Parameter(Mandatory)]
        [string]$SizeField,

        [Parameter(Mandatory)]
        [int]$Generation
    )
    Assert-KnownSpecField -Object $Object -Path $Path -Allowed @($SizeField, 'format', 'controller')
    $size = Read-SpecField -Object $Object -Path $Path -Name $SizeField -Type integer -Required
    Assert-SpecRange -Field "$Path.$SizeField" -Value $size -Minimum 1
    $format = Read-SpecField -Object $Object -Path $Path -Name 'format' -Type string -Required
    Assert-SpecChoice -Field "$Path.format" -Value $format -Allowed @('vhd', 'vhdx')
    $controller = Read-SpecField -Object $Object -Path $Path -Name 'controller' -Type string -Nullable
    if ($null -ne $controller) {
        Assert-SpecChoice -Field "$Path.controller" -Value $controller -Allowed @('ide', 'scsi')
        if ($controller -eq 'ide' -and $Generation -eq 2) {
            throw (New-SpecError -Field "$Path.controller" -Message 'cannot be ide on a generation 2 VM.')
        }
    }
    else {
        $controller = 'scsi'
    }
    @{ Size = $size; Format = $format; Controller = $controller }
}

function ConvertTo-InstancePlan {
    <#
    .SYNOPSIS
        Checks the whole spec and turns it into a plan (no change to the host).
    #>
    param(
        [Parameter(Mandatory)]
        [object]$Spec
    )
    $s = 'spec'
    if (-not (Test-SpecObject -Value $Spec)) {
        throw (New-SpecError -Field $s -Message 'must be an object.')
    }
    Assert-KnownSpecField -Object $Spec -Path $s -Allowed @(
        'name', 'instance_uuid', 'instance_dir', 'generation', 'secure_boot', 'vcpus', 'memory_mb',
        'dynamic_memory_ratio', 'vnuma', 'limit_cpu_features', 'root_disk', 'ephemerals', 'swap', 'nics',
        'serial_ports', 'config_drive', 'enable_metrics', 'power_on', 'notes_extra', 'automatic_stop_action',
        'console_log',
        'nested_virtualization', 'disk_max_iops', 'tpm', 'shielding',
        'assignable_devices', 'mmio_space', 'volumes', 'ovs_vsctl_path')
    $plan = @{}

    $plan.Name = Read-SpecField -Object $Spec -Path $s -Name 'name' -Type string -Required
    if ([string]::IsNullOrWhiteSpace($plan.Name) -or $plan.Name.Length -gt 100) {
        throw (New-SpecError -Field "$s.name" -Message 'must be 1 to 100 characters, not only blanks.')
    }
    $uuid = Read-SpecField -Object $Spec -Path $s -Name 'instance_uuid' -Type string -Required
    if ($uuid -notmatch '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$') {
        throw (New-SpecError -Field "$s.instance_uuid" -Message "must be a UUID (8-4-4-4-12 hex digits), got '$uuid'.")
    }
    $plan.Uuid = $uuid.ToLowerInvariant()
    $dir = Read-SpecField -Object $Spec -Path $s -Name 'instance_dir' -Type string -Required
    if (-not (Test-PsDriverAbsolutePath -Path $dir)) {
        throw (New-SpecError -Field "$s.instance_dir" -Message "must be an absolute path, got '$dir'.")
    }
    $plan.InstanceDir = $dir.TrimEnd('\', '/')
    $generation = Read-SpecField -Object $Spec -Path $s -Name 'generation' -Type integer -Required
    Assert-SpecChoice -Field "$s.generation" -Value $generation -Allowed @([long]1, [long]2)
    $plan.Generation = [int]$generation

    # Firmware.
    $plan.SecureBoot = $false
    $plan.SecureBootTemplate = $null
    $secureBoot = Read-SpecField -Object $Spec -Path $s -Name 'secure_boot' -Type object -Nullable
    if ($null -ne $secureBoot) {
        $p = "$s.secure_boot"
        Assert-KnownSpecField -Object $secureBoot -Path $p -Allowed @('enabled', 'template')
        $plan.SecureBoot = Read-SpecField -Object $secureBoot -Path $p -Name 'enabled' -Type boolean -Required
        $template = Read-SpecField -Object $secureBoot -Path $p -Name 'template' -Type string -Nullable
        if ($null -ne $template) {
            Assert-SpecChoice -Field "$p.template" -Value $template -Allowed @('MicrosoftWindows', 'MicrosoftUEFICertificateAuthority', 'OpenSourceShieldedVM')
        }
        if ($plan.SecureBoot) {
            if ($plan.Generation -ne 2) {
                throw (New-SpecError -Field "$p.enabled" -Message 'secure boot needs a generation 2 VM.')
            }
            if ($null -eq $template) {
                $template = 'MicrosoftWindows'
            }
            $plan.SecureBootTemplate = $template
        }
    }

    # Processors and memory.
    $plan.Vcpus = Read-SpecField -Object $Spec -Path $s -Name 'vcpus' -Type integer -Required
    Assert-SpecRange -Field "$s.vcpus" -Value $plan.Vcpus -Minimum 1 -Maximum 240
    $plan.MemoryMb = Read-SpecField -Object $Spec -Path $s -Name 'memory_mb' -Type integer -Required
    Assert-SpecRange -Field "$s.memory_mb" -Value $plan.MemoryMb -Minimum 32
    if ($plan.MemoryMb % 2 -ne 0) {
        throw (New-SpecError -Field "$s.memory_mb" -Message "must be even (Hyper-V assigns memory in 2 MB units), got $($plan.MemoryMb).")
    }
    $ratio = Read-SpecField -Object $Spec -Path $s -Name 'dynamic_memory_ratio' -Type number -Default ([double]1)
    Assert-SpecRange -Field "$s.dynamic_memory_ratio" -Value $ratio -Minimum 1
    $plan.DynamicMemory = $ratio -gt 1
    $plan.StartupMb = $plan.MemoryMb
    if ($plan.DynamicMemory) {
        $startup = [long][math]::Floor($plan.MemoryMb / $ratio)
        $startup -= $startup % 2
        $plan.StartupMb = [math]::Max([long]2, [math]::Min($startup, $plan.MemoryMb))
    }
    $plan.Vnuma = $false
    $plan.VnumaProcessors = $null
    $plan.VnumaMemoryMb = $null
    $vnuma = Read-SpecField -Object $Spec -Path $s -Name 'vnuma' -Type object -Nullable
    if ($null -ne $vnuma) {
        $p = "$s.vnuma"
        Assert-KnownSpecField -Object $vnuma -Path $p -Allowed @('enabled', 'max_processors_per_node', 'max_memory_per_node_mb')
        $plan.Vnuma = Read-SpecField -Object $vnuma -Path $p -Name 'enabled' -Type boolean -Required
        $plan.VnumaProcessors = Read-SpecField -Object $vnuma -Path $p -Name 'max_processors_per_node' -Type integer -Nullable
        if ($null -ne $plan.VnumaProcessors) {
            Assert-SpecRange -Field "$p.max_processors_per_node" -Value $plan.VnumaProcessors -Minimum 1 -Maximum 240
        }
        $plan.VnumaMemoryMb = Read-SpecField -Object $vnuma -Path $p -Name 'max_memory_per_node_mb' -Type integer -Nullable
        if ($null -ne $plan.VnumaMemoryMb) {
            Assert-SpecRange -Field "$p.max_memory_per_node_mb" -Value $plan.VnumaMemoryMb -Minimum 2
        }
        if ($plan.Vnuma -and $plan.DynamicMemory) {
            throw (New-SpecError -Field "$p.enabled" -Message "cannot be combined with dynamic memory (dynamic_memory_ratio $ratio); pass dynamic_memory_ratio 1 for vNUMA instances.")
        }
    }
    $plan.LimitCpuFeatures = Read-SpecField -Object $Spec -Path $s -Name 'limit_cpu_features' -Type boolean -Default $false

    # Disks and slots.
    $ideFree = [System.Collections.Generic.List[object]]::new()
    $scsiNext = 0
    if ($plan.Generation -eq 2) {
        $scsiNext = 1
    }
    $drives = [System.Collections.Generic.List[object]]::new()
    $plan.Root = $null

    $configDrive = Read-SpecField -Object $Spec -Path $s -Name 'config_drive' -Type object -Nullable
    if ($plan.Generation -eq 1) {
        $ideFree.Add(@(0, 1))
        if ($null -eq $configDrive) {
            $ideFree.Add(@(1, 0))
        }
        $ideFree.Add(@(1, 1))
    }

    $root = Read-SpecField -Object $Spec -Path $s -Name 'root_disk' -Type object -Nullable
    if ($null -ne $root) {
        $p = "$s.root_disk"
        Assert-KnownSpecField -Object $root -Path $p -Allowed @('source', 'cow', 'format', 'size_gb', 'controller')
        $source = Read-SpecField -Object $root -Path $p -Name 'source' -Type string -Nullable
        $cow = Read-SpecField -Object $root -Path $p -Name 'cow' -Type boolean -Default $false
        $format = Read-SpecField -Object $root -Path $p -Name 'format' -Type string -Required
        Assert-SpecChoice -Field "$p.format" -Value $format -Allowed @('vhd', 'vhdx', 'iso')
        $sizeGb = Read-SpecField -Object $root -Path $p -Name 'size_gb' -Type integer -Nullable
        if ($null -ne $sizeGb) {
            Assert-SpecRange -Field "$p.size_gb" -Value $sizeGb -Minimum 0
        }
        $controller = Read-SpecField -Object $root -Path $p -Name 'controller' -Type string -Nullable
        $expected = 'scsi'
        if ($plan.Generation -eq 1) {
            $expected = 'ide'
        }
        if ($null -ne $controller -and $controller -cne $expected) {
            throw (New-SpecError -Field "$p.controller" -Message "must be $expected for a generation $($plan.Generation) VM (got '$controller').")
        }
        if ($format -eq 'vhd' -and $plan.Generation -eq 2) {
            throw (New-SpecError -Field "$p.format" -Message 'generation 2 VMs cannot boot from a vhd image; vhdx is required.')
        }
        if ($format -eq 'iso') {
            if ($null -eq $source) {
                throw (New-SpecError -Field "$p.source" -Message 'is required for an iso root disk.')
            }
            if ($cow) {
                throw (New-SpecError -Field "$p.cow" -Message 'must be false for an iso root disk (the iso is copied).')
            }
        }
        if ($null -ne $source) {
            if (-not (Test-PsDriverAbsolutePath -Path $source)) {
                throw (New-SpecError -Field "$p.source" -Message "must be an absolute path, got '$source'.")
            }
            $extension = [System.IO.Path]::GetExtension($source).TrimStart('.').ToLowerInvariant()
            if ($extension -cne $format) {
                throw (New-SpecError -Field "$p.format" -Message "is '$format' but the image '$source' is a .$extension file.")
            }
        }
        $wantsFile = $null -ne $source -or ($null -ne $sizeGb -and $sizeGb -gt 0)
        if ($wantsFile) {
            $driveType = 'disk'
            if ($format -eq 'iso') {
                $driveType = 'dvd'
            }
            $plan.Root = @{
                Source   = $source
                Cow      = $cow
                Format   = $format
                SizeGb   = $sizeGb
                Path     = Join-Path -Path $plan.InstanceDir -ChildPath "root.$format"
                Reused   = $false
            }
            $rootDrive = @{
                Role = 'root'; Index = $null; Path = $plan.Root.Path; DriveType = $driveType
                ControllerType = $expected.ToUpperInvariant(); ControllerNumber = 0; ControllerLocation = 0
            }
            $drives.Add($rootDrive)
        }
    }

    $ephemerals = @(Read-SpecField -Object $Spec -Path $s -Name 'ephemerals' -Type array -Default @())
    $swap = Read-SpecField -Object $Spec -Path $s -Name 'swap' -Type object -Nullable
    $extraDisks = [System.Collections.Generic.List[object]]::new()
    for ($i = 0; $i -lt $ephemerals.Count; $i++) {
        $p = "$s.ephemerals[$i]"
        if (-not (Test-SpecObject -Value $ephemerals[$i])) {
            throw (New-SpecError -Field $p -Message 'must be an object.')
        }
        $disk = Read-DiskSpec -Object $ephemerals[$i] -Path $p -SizeField 'size_gb' -Generation $plan.Generation
        $extraDisk = @{
            Role = 'ephemeral'; Index = $i; Field = $p; SizeBytes = [long]$disk.Size * 1GB; Format = $disk.Format
            Controller = $disk.Controller; FileName = "eph$i.$($disk.Format)"
        }
        $extraDisks.Add($extraDisk)
    }
    if ($null -ne $swap) {
        $p = "$s.swap"
        $disk = Read-DiskSpec -Object $swap -Path $p -SizeField 'size_mb' -Generation $plan.Generation
        $extraDisk = @{
            Role = 'swap'; Index = $null; Field = $p; SizeBytes = [long]$disk.Size * 1MB; Format = $disk.Format
            Controller = $disk.Controller; FileName = "swap.$($disk.Format)"
        }
        $extraDisks.Add($extraDisk)
    }
    $plan.Disks = [System.Collections.Generic.List[object]]::new()
    foreach ($disk in $extraDisks) {
        $path = Join-Path -Path $plan.InstanceDir -ChildPath $disk.FileName
        if ($disk.Controller -eq 'ide') {
            if ($ideFree.Count -eq 0) {
                throw (New-SpecError -Field "$($disk.Field).controller" -Message 'is ide but no IDE slot is free (a generation 1 VM has 4, the root disk and the config drive take one each); use scsi.')
            }
            $slot = $ideFree[0]
            $ideFree.RemoveAt(0)
            $drive = @{
                Role = $disk.Role; Index = $disk.Index; Path = $path; DriveType = 'disk'
                ControllerType = 'IDE'; ControllerNumber = $slot[0]; ControllerLocation = $slot[1]
            }
        }
        else {
            $drive = @{
                Role = $disk.Role; Index = $disk.Index; Path = $path; DriveType = 'disk'
                ControllerType = 'SCSI'; ControllerNumber = 0; ControllerLocation = $scsiNext
            }
            $scsiNext++
        }
        $drives.Add($drive)
        $plan.Disks.Add(@{ Path = $path; SizeBytes = $disk.SizeBytes; Drive = $drive })
    }

    $plan.ConfigDrive = $null
    if ($null -ne $configDrive) {
        $p = "$s.config_drive"
        Assert-KnownSpecField -Object $configDrive -Path $p -Allowed @('content_base64', 'format', 'as_dvd')
        $content = Read-SpecField -Object $configDrive -Path $p -Name 'content_base64' -Type string -Required
        $format = Read-SpecField -Object $configDrive -Path $p -Name 'format' -Type string -Required
        Assert-SpecChoice -Field "$p.format" -Value $format -Allowed @('iso', 'vhd')
        $asDvd = Read-SpecField -Object $configDrive -Path $p -Name 'as_dvd' -Type boolean -Required
        if ($asDvd -ne ($format -eq 'iso')) {
            throw (New-SpecError -Field "$p.as_dvd" -Message "must be true for an iso config drive and false for a vhd one (format '$format', as_dvd $asDvd).")
        }
        try {
            $bytes = [System.Convert]::FromBase64String($content)
        }
        catch {
            throw (New-SpecError -Field "$p.content_base64" -Message 'is not valid base64.')
        }
        if ($bytes.Length -eq 0) {
            throw (New-SpecError -Field "$p.content_base64" -Message 'is empty.')
        }
        $path = Join-Path -Path $plan.InstanceDir -ChildPath "configdrive.$format"
        $driveType = 'disk'
        if ($asDvd) {
            $driveType = 'dvd'
        }
        if ($plan.Generation -eq 1) {
            $drive = @{
                Role = 'config_drive'; Index = $null; Path = $path; DriveType = $driveType
                ControllerType = 'IDE'; ControllerNumber = 1; ControllerLocation = 0
            }
        }
        else {
            $drive = @{
                Role = 'config_drive'; Index = $null; Path = $path; DriveType = $driveType
                ControllerType = 'SCSI'; ControllerNumber = 0; ControllerLocation = $scsiNext
            }
            $scsiNext++
        }
        $drives.Add($drive)
        $plan.ConfigDrive = @{ Path = $path; Bytes = $bytes; Drive = $drive }
    }
    $volumes = @(Read-SpecField -Object $Spec -Path $s -Name 'volumes' -Type array -Default @())
    $bootVolumes = 0
    for ($i = 0; $i -lt $volumes.Count; $i++) {
        $p = "$s.volumes[$i]"
        if (-not (Test-SpecObject -Value $volumes[$i])) {
            throw (New-SpecError -Field $p -Message 'must be an object.')
        }
        Assert-KnownSpecField -Object $volumes[$i] -Path $p -Allowed @('disk_number', 'path', 'boot', 'max_iops')
        $diskNumber = Read-SpecField -Object $volumes[$i] -Path $p -Name 'disk_number' -Type integer -Nullable
        $volumePath = Read-SpecField -Object $volumes[$i] -Path $p -Name 'path' -Type string -Nullable
        $boot = Read-SpecField -Object $volumes[$i] -Path $p -Name 'boot' -Type boolean -Default $false
        $volumeMaxIops = Read-SpecField -Object $volumes[$i] -Path $p -Name 'max_iops' -Type integer -Nullable
        if (($null -eq $diskNumber) -eq ($null -eq $volumePath)) {
            throw (New-SpecError -Field $p -Message 'needs exactly one of disk_number and path.')
        }
        if ($null -ne $volumeMaxIops) {
            Assert-SpecRange -Field "$p.max_iops" -Value $volumeMaxIops -Minimum 1 -Maximum 1000000000
            if ($null -eq $volumePath) {
                throw (New-SpecError -Field "$p.max_iops" -Message 'applies to a volume file (path) only.')
            }
        }
        if ($null -ne $volumePath -and -not (Test-PsDriverAbsolutePath -Path $volumePath)) {
            throw (New-SpecError -Field "$p.path" -Message "must be an absolute path, got '$volumePath'.")
        }
        $drive = @{ Role = 'volume'; Index = $i; Path = $volumePath; DiskNumber = $diskNumber; DriveType = 'disk'; Boot = $boot; MaxIops = $volumeMaxIops }
        if ($boot) {
            $bootVolumes++
            if ($null -ne $plan.Root -or $bootVolumes -gt 1) {
                throw (New-SpecError -Field "$p.boot" -Message 'is true but the VM already has a root disk or a boot volume.')
            }
            $drive.ControllerType = 'SCSI'
            if ($plan.Generation -eq 1) {
                $drive.ControllerType = 'IDE'
            }
            $drive.ControllerNumber = 0
            $drive.ControllerLocation = 0
        }
        else {
            $drive.ControllerType = 'SCSI'
            $drive.ControllerNumber = 0
            $drive.ControllerLocation = $scsiNext
            $scsiNext++
        }
        $drives.Add($drive)
    }
    if ($scsiNext -gt 64) {
        throw (New-SpecError -Field "$s.ephemerals" -Message "needs $scsiNext SCSI locations; a SCSI controller has 64.")
    }
    $plan.Drives = $drives

    # Network adapters.
    $plan.Nics = [System.Collections.Generic.List[object]]::new()
    $nics = @(Read-SpecField -Object $Spec -Path $s -Name 'nics' -Type array -Default @())
    for ($i = 0; $i -lt $nics.Count; $i++) {
        $p = "$s.nics[$i]"
        if (-not (Test-SpecObject -Value $nics[$i])) {
            throw (New-SpecError -Field $p -Message 'must be an object.')
        }
        Assert-KnownSpecField -Object $nics[$i] -Path $p -Allowed @('id', 'mac', 'switch', 'vlan', 'ovs_bridge')
        $id = Read-SpecField -Object $nics[$i] -Path $p -Name 'id' -Type string -Required
        if ([string]::IsNullOrWhiteSpace($id)) {
            throw (New-SpecError -Field "$p.id" -Message 'must not be empty.')
        }
        if (@($plan.Nics | Where-Object { $_.Id -eq $id }).Count -gt 0) {
            throw (New-SpecError -Field "$p.id" -Message "repeats the port id '$id'.")
        }
        $macText = Read-SpecField -Object $nics[$i] -Path $p -Name 'mac' -Type string -Required
        $mac = ConvertTo-PsDriverHyperVMac -Mac $macText
        if ($null -eq $mac) {
            throw (New-SpecError -Field "$p.mac" -Message "is not a MAC address: '$macText'.")
        }
        $switchName = Read-SpecField -Object $nics[$i] -Path $p -Name 'switch' -Type string -Nullable
        $vlan = Read-SpecField -Object $nics[$i] -Path $p -Name 'vlan' -Type integer -Nullable
        if ($null -ne $vlan) {
            Assert-SpecRange -Field "$p.vlan" -Value $vlan -Minimum 1 -Maximum 4094
        }
        $ovsBridge = Read-SpecField -Object $nics[$i] -Path $p -Name 'ovs_bridge' -Type string -Nullable
        if ([string]::IsNullOrEmpty($ovsBridge)) {
            $ovsBridge = $null
        }
        $plan.Nics.Add(@{ Id = $id; Mac = $mac; Switch = $switchName; Vlan = $vlan; OvsBridge = $ovsBridge })
    }
    $ovsVsctlPath = Read-SpecField -Object $Spec -Path $s -Name 'ovs_vsctl_path' -Type string -Nullable
    $plan.OvsVsctl = $null
    if (@($plan.Nics | Where-Object { $null -ne $_.OvsBridge }).Count -gt 0) {
        $plan.OvsVsctl = Resolve-PsDriverOvsVsctl -Path $ovsVsctlPath
    }

    # Serial ports.
    $plan.SerialPorts = [System.Collections.Generic.List[object]]::new()
    $ports = @(Read-SpecField -Object $Spec -Path $s -Name 'serial_ports' -Type array -Default @())
    for ($i = 0; $i -lt $ports.Count; $i++) {
        $p = "$s.serial_ports[$i]"
        if (-not (Test-SpecObject -Value $ports[$i])) {
            throw (New-SpecError -Field $p -Message 'must be an object.')
        }
        Assert-KnownSpecField -Object $ports[$i] -Path $p -Allowed @('port', 'pipe')
        $number = Read-SpecField -Object $ports[$i] -Path $p -Name 'port' -Type integer -Required
        Assert-SpecChoice -Field "$p.port" -Value $number -Allowed @([long]1, [long]2)
        if (@($plan.SerialPorts | Where-Object { $_.Number -eq $number }).Count -gt 0) {
            throw (New-SpecError -Field "$p.port" -Message "repeats COM port $number.")
        }
        $pipe = Read-SpecField -Object $ports[$i] -Path $p -Name 'pipe' -Type string -Required
        $pipeMatch = [regex]::Match($pipe, '^(?:\\\\\.\\pipe\\)?([^\\/]+)$', [System.Text.RegularExpressions.RegexOptions]::IgnoreCase)
        if (-not $pipeMatch.Success) {
            throw (New-SpecError -Field "$p.pipe" -Message "must be a pipe name or \\.\pipe\<name>, got '$pipe'.")
        }
        $plan.SerialPorts.Add(@{ Number = [int]$number; Path = '\\.\pipe\' + $pipeMatch.Groups[1].Value })
    }

    $plan.EnableMetrics = Read-SpecField -Object $Spec -Path $s -Name 'enable_metrics' -Type boolean -Default $false
    $plan.PowerOn = Read-SpecField -Object $Spec -Path $s -Name 'power_on' -Type boolean -Default $true
    $notesExtra = Read-SpecField -Object $Spec -Path $s -Name 'notes_extra' -Type string -Nullable
    $plan.Notes = $plan.Uuid
    if (-not [string]::IsNullOrEmpty($notesExtra)) {
        $plan.Notes = $plan.Uuid + "`n" + $notesExtra
    }
    $plan.StopAction = Read-SpecField -Object $Spec -Path $s -Name 'automatic_stop_action' -Type string -Nullable
    if ($null -ne $plan.StopAction) {
        Assert-SpecChoice -Field "$s.automatic_stop_action" -Value $plan.StopAction -Allowed @('Save', 'TurnOff', 'ShutDown')
    }
    $plan.ConsoleLog = $null
    $consoleLog = Read-SpecField -Object $Spec -Path $s -Name 'console_log' -Type object -Nullable
    if ($null -ne $consoleLog) {
        $p = "$s.console_log"
        Assert-KnownSpecField -Object $consoleLog -Path $p -Allowed @('path', 'max_bytes')
        $logPath = Read-SpecField -Object $consoleLog -Path $p -Name 'path' -Type string -Required
        if (-not (Test-PsDriverAbsolutePath -Path $logPath)) {
            throw (New-SpecError -Field "$p.path" -Message "must be an absolute path, got '$logPath'.")
        }
        $maxBytes = Read-SpecField -Object $consoleLog -Path $p -Name 'max_bytes' -Type integer -Nullable
        if ($null -eq $maxBytes) {
            $maxBytes = 524288
        }
        Assert-SpecRange -Field "$p.max_bytes" -Value $maxBytes -Minimum 4096 -Maximum 1073741824
        $plan.ConsoleLog = @{ Path = $logPath; MaxBytes = [int]$maxBytes }
    }

    # Nested virtualization and disk QoS.
    $plan.NestedVirtualization = Read-SpecField -Object $Spec -Path $s -Name 'nested_virtualization' -Type boolean -Default $false
    if ($plan.NestedVirtualization -and $plan.DynamicMemory) {
        throw (New-SpecError -Field "$s.nested_virtualization" -Message "cannot be combined with dynamic memory (dynamic_memory_ratio $ratio); pass dynamic_memory_ratio 1.")
    }
    $plan.DiskMaxIops = Read-SpecField -Object $Spec -Path $s -Name 'disk_max_iops' -Type integer -Nullable
    if ($null -ne $plan.DiskMaxIops) {
        Assert-SpecRange -Field "$s.disk_max_iops" -Value $plan.DiskMaxIops -Minimum 1 -Maximum 1000000000
    }

    # Virtual TPM.
    $plan.Tpm = $false
    $tpm = Read-SpecField -Object $Spec -Path $s -Name 'tpm' -Type object -Nullable
    if ($null -ne $tpm) {
        $p = "$s.tpm"
        Assert-KnownSpecField -Object $tpm -Path $p -Allowed @('key_protector')
        $protector = Read-SpecField -Object $tpm -Path $p -Name 'key_protector' -Type string -Default 'local'
        Assert-SpecChoice -Field "$p.key_protector" -Value $protector -Allowed @('local')
        if ($plan.Generation -ne 2 -or -not $plan.SecureBoot) {
            throw (New-SpecError -Field $p -Message 'needs a generation 2 VM with secure boot on (secure_boot.enabled true).')
        }
        $plan.Tpm = $true
    }

    # Discrete Device Assignment.
    $plan.AssignableDevices = [System.Collections.Generic.List[string]]::new()
    $devices = @(Read-SpecField -Object $Spec -Path $s -Name 'assignable_devices' -Type array -Default @())
    for ($i = 0; $i -lt $devices.Count; $i++) {
        $p = "$s.assignable_devices[$i]"
        if (-not (Test-SpecObject -Value $devices[$i])) {
            throw (New-SpecError -Field $p -Message 'must be an object.')
        }
        Assert-KnownSpecField -Object $devices[$i] -Path $p -Allowed @('location_path')
        $locationPath = Read-SpecField -Object $devices[$i] -Path $p -Name 'location_path' -Type string -Required
        if ([string]::IsNullOrWhiteSpace($locationPath)) {
            throw (New-SpecError -Field "$p.location_path" -Message 'must not be empty.')
        }
        $plan.AssignableDevices.Add($locationPath)
    }
    $plan.MmioSpace = $null
    $mmio = Read-SpecField -Object $Spec -Path $s -Name 'mmio_space' -Type object -Nullable
    if ($null -ne $mmio) {
        $p = "$s.mmio_space"
        Assert-KnownSpecField -Object $mmio -Path $p -Allowed @('low_mb', 'high_mb')
        $low = Read-SpecField -Object $mmio -Path $p -Name 'low_mb' -Type integer -Required
        $high = Read-SpecField -Object $mmio -Path $p -Name 'high_mb' -Type integer -Required
        Assert-SpecRange -Field "$p.low_mb" -Value $low -Minimum 128 -Maximum 3584
        Assert-SpecRange -Field "$p.high_mb" -Value $high -Minimum 128 -Maximum 1048576
        $plan.MmioSpace = @{ LowMb = [long]$low; HighMb = [long]$high }
    }
    if ($plan.AssignableDevices.Count -gt 0) {
        if ($plan.StopAction -ne 'TurnOff') {
            throw (New-SpecError -Field "$s.automatic_stop_action" -Message 'must be TurnOff for a VM with assignable_devices (Discrete Device Assignment).')
        }
        if ($plan.DynamicMemory) {
            throw (New-SpecError -Field "$s.assignable_devices" -Message "cannot be combined with dynamic memory (dynamic_memory_ratio $ratio).")
        }
    }
    $plan.Shielding = ConvertTo-ShieldingPlan -Spec $Spec -Plan $plan
    $plan
}

function ConvertTo-ShieldingPlan {
    <#
    .SYNOPSIS
        Checks spec.shielding against the rest of the plan; $null when there is none.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$Spec,

        [Parameter(Mandatory)]
        [hashtable]$Plan
    )
    $p = 'spec.shielding'
    $shielding = Read-SpecField -Object $Spec -Path 'spec' -Name 'shielding' -Type object -Nullable
    if ($null -eq $shielding) {
        return $null
    }
    Assert-KnownSpecField -Object $shielding -Path $p -Allowed @('data_file', 'specialization', 'provisioning_timeout_s', 'poll_interval_s')
    $dataFile = Read-SpecField -Object $shielding -Path $p -Name 'data_file' -Type string -Required
    if (-not (Test-PsDriverAbsolutePath -Path $dataFile) -or -not (Test-PsDriverSamePath -Left (Split-Path -Path $dataFile -Parent) -Right $Plan.InstanceDir)) {
        throw (New-SpecError -Field "$p.data_file" -Message "must be a file directly in instance_dir, got '$dataFile'.")
    }
    $pairs = Read-SpecField -Object $shielding -Path $p -Name 'specialization' -Type object -Default @{}
    $specialization = @{}
    foreach ($key in @(Get-SpecFieldName -Object $pairs)) {
        $value = Read-SpecField -Object $pairs -Path "$p.specialization" -Name $key -Type string -Required
        if ([string]::IsNullOrWhiteSpace($key)) {
            throw (New-SpecError -Field "$p.specialization" -Message 'has an empty key.')
        }
        $specialization[$key] = $value
    }
    $timeout = Read-SpecField -Object $shielding -Path $p -Name 'provisioning_timeout_s' -Type integer -Default ([long]900)
    Assert-SpecRange -Field "$p.provisioning_timeout_s" -Value $timeout -Minimum 60 -Maximum 1700
    $poll = Read-SpecField -Object $shielding -Path $p -Name 'poll_interval_s' -Type integer -Default ([long]5)
    Assert-SpecRange -Field "$p.poll_interval_s" -Value $poll -Minimum 1 -Maximum 60
    if ($Plan.Generation -ne 2 -or -not $Plan.SecureBoot) {
        throw (New-SpecError -Field $p -Message 'needs a generation 2 VM with secure boot on (secure_boot.enabled true).')
    }
    if ($Plan.Tpm) {
        throw (New-SpecError -Field $p -Message 'cannot be combined with tpm: a shielded VM gets its TPM with the key protector of the shielding data.')
    }
    if (-not $Plan.PowerOn) {
        throw (New-SpecError -Field $p -Message 'needs power_on true: Initialize-ShieldedVM starts the VM.')
    }
    if ($null -eq $Plan.Root -or $null -eq $Plan.Root.Source -or $Plan.Root.Format -ne 'vhdx') {
        throw (New-SpecError -Field $p -Message 'needs a root_disk whose source is a vhdx image (a signed template disk).')
    }
    @{
        DataFile           = $dataFile
        SpecializationFile = Join-Path -Path $Plan.InstanceDir -ChildPath 'specialization.fsk'
        CatalogFile        = Join-Path -Path $Plan.InstanceDir -ChildPath 'template.vsc'
        Specialization     = $specialization
        TimeoutSeconds     = [int]$timeout
        PollSeconds        = [int]$poll
        KeyProtector       = $null
        OnlyDataInFolder   = $false
    }
}

function Remove-ShieldingFile {
    <#
    .SYNOPSIS
        Deletes the shielding data and specialization files; after a failure also the folder that held only the data file at the start.
    #>
    param(
        [Parameter(Mandatory)]
        [hashtable]$Plan,

        [Parameter(Mandatory)]
        [bool]$Failed
    )
    $shielding = $Plan.Shielding
    foreach ($path in @($shielding.DataFile, $shielding.SpecializationFile, $shielding.CatalogFile)) {
        try {
            if (Test-Path -LiteralPath $path -PathType Leaf) {
                Remove-Item -LiteralPath $path -Force -Confirm:$false
            }
        }
        catch {
            Write-Warning "Cannot remove the shielding file '$path': $($_.Exception.Message)"
        }
    }
    if ($Failed -and $shielding.OnlyDataInFolder -and (Test-Path -LiteralPath $Plan.InstanceDir -PathType Container)) {
        # It held nothing but the data file at the start: all in it is this call's.
        try {
            Remove-Item -LiteralPath $Plan.InstanceDir -Recurse -Force -Confirm:$false
        }
        catch {
            Write-Warning "Cannot remove the instance folder '$($Plan.InstanceDir)': $($_.Exception.Message)"
        }
    }
}

function Assert-RootSource {
    <#
    .SYNOPSIS
        Checks the cached image of the root disk exists and is not bigger than the size asked for.
    #>
    param(
        [Parameter(Mandatory)]
        [hashtable]$Root
    )
    $source = $Root.Source
    if (-not (Test-Path -LiteralPath $source -PathType Leaf)) {
        throw (New-PsDriverErrorRecord -Message "The image '$source' for the root disk was not found." -Category ObjectNotFound -ErrorId 'PsDriver.ImageNotFound' -Target $source)
    }
    if ($Root.Format -eq 'iso' -or $null -eq $Root.SizeGb) {
        return
    }
    $imageSize = [long](Hyper-V\Get-VHD -Path $source).Size
    $wanted = [long]$Root.SizeGb * 1GB
    if ($wanted -lt $imageSize) {
        $message = 'The root disk of {0} GB ({1} bytes) is smaller than the virtual size of the image ''{2}'' ({3} bytes, {4:0.##} GB); a disk is never shrunk.' -f $Root.SizeGb, $wanted, $source, $imageSize, ($imageSize / 1GB)
        throw (New-PsDriverErrorRecord -Message $message -Category InvalidArgument -ErrorId 'PsDriver.RootDiskTooSmall' -Target $source)
    }
    if ($Root.Cow -and $Root.Format -eq 'vhd' -and $wanted -gt $imageSize) {
        $message = 'A vhd differencing disk cannot be grown: the image ''{0}'' is {1} bytes but {2} GB were asked for. Pass a base image already resized to that size.' -f $source, $imageSize, $Root.SizeGb
        throw (New-PsDriverErrorRecord -Message $message -Category InvalidArgument -ErrorId 'PsDriver.DifferencingVhdResize' -Target $source)
    }
    $Root.ImageSize = $imageSize
}

function Undo-Creation {
    <#
    .SYNOPSIS
        Removes what this call created, newest first; a step that fails is reported and skipped.
    #>
    param(
        [Parameter(Mandatory)]
        [AllowEmptyCollection()]
        [System.Collections.Generic.List[object]]$Undo
    )
    for ($i = $Undo.Count - 1; $i -ge 0; $i--) {
        $step = $Undo[$i]
        try {
            switch ($step.Kind) {
                'ConsoleLogger' {
                    Stop-PsDriverConsoleLogger -VMId $step.VMId -VMName $step.Name
                }
                'OvsPort' {
                    Remove-PsDriverOvsPort -OvsVsctl $step.OvsVsctl -Port $step.Name
                }
                'VM' {
                    # No VM of this name existed before New-VM: every one found now is ours.
                    foreach ($vm in @(Find-PsDriverVM -Name $step.Name)) {
                        Remove-PsDriverVM -VM $vm
                    }
                }
                'File' {
                    if (Test-Path -LiteralPath $step.Path -PathType Leaf) {
                        Remove-Item -LiteralPath $step.Path -Force -Confirm:$false
                    }
                }
                'Directory' {
                    if (Test-Path -LiteralPath $step.Path -PathType Container) {
                        Remove-Item -LiteralPath $step.Path -Recurse -Force -Confirm:$false
                    }
                }
            }
        }
        catch {
            $what = $step.Path
            if ($null -eq $what) {
                $what = $step.Name
            }
            Write-Warning ("Cleanup after the failed spawn could not remove {0} '{1}': {2}" -f $step.Kind, $what, $_.Exception.Message)
        }
    }
}

function Add-InstanceDrive {
    <#
    .SYNOPSIS
        Attaches one planned drive; returns the drive object.
    #>
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [hashtable]$Drive
    )
    if ($Drive.DriveType -eq 'dvd') {
        return Hyper-V\Add-VMDvdDrive -VM $VM -ControllerNumber $Drive.ControllerNumber -ControllerLocation $Drive.ControllerLocation -Path $Drive.Path -Passthru -Confirm:$false
    }
    if ($null -ne $Drive['DiskNumber']) {
        return Hyper-V\Add-VMHardDiskDrive -VM $VM -ControllerType $Drive.ControllerType -ControllerNumber $Drive.ControllerNumber -ControllerLocation $Drive.ControllerLocation -DiskNumber $Drive.DiskNumber -Passthru -Confirm:$false
    }
    Hyper-V\Add-VMHardDiskDrive -VM $VM -ControllerType $Drive.ControllerType -ControllerNumber $Drive.ControllerNumber -ControllerLocation $Drive.ControllerLocation -Path $Drive.Path -Passthru -Confirm:$false
}

function Get-LoggingPipePath {
    <#
    .SYNOPSIS
        The pipe the console logger reads: one ending in _ro, else COM 1's, else the first; $null if none.
    #>
    param(
        [Parameter(Mandatory)]
        [AllowEmptyCollection()]
        [System.Collections.Generic.List[object]]$SerialPorts
    )
    $readOnly = @($SerialPorts | Where-Object { $_.Path -like '*_ro' })
    if ($readOnly.Count -gt 0) {
        return [string]$readOnly[0].Path
    }
    $first = @($SerialPorts | Where-Object { $_.Number -eq 1 })
    if ($first.Count -gt 0) {
        return [string]$first[0].Path
    }
    if ($SerialPorts.Count -gt 0) {
        return [string]$SerialPorts[0].Path
    }
    $null
}

function Start-InstanceConsoleLog {
    <#
    .SYNOPSIS
        Starts the VM's console logger (a failure is a warning and the console_logger.error text); one it launched is undone with the spawn.
    #>
    param(
        [Parameter(Mandatory)]
        [hashtable]$Plan,

        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [AllowEmptyCollection()]
        [System.Collections.Generic.List[object]]$Undo
    )
    $pipePath = Get-LoggingPipePath -SerialPorts $Plan.SerialPorts
    $record = Invoke-PsDriverConsoleLogger -VM $VM -PipePath $pipePath -LogPath $Plan.ConsoleLog.Path -MaxLogBytes $Plan.ConsoleLog.MaxBytes
    if ($record.started) {
        $Undo.Add(@{ Kind = 'ConsoleLogger'; Name = $Plan.Name; VMId = $VM.Id.ToString() })
    }
    $record
}

function Set-LocalDiskQosLimit {
    <#
    .SYNOPSIS
        Limits the IOPS of the instance's local disks (root, ephemerals, swap).
    #>
    param(
        [Parameter(Mandatory)]
        [hashtable]$Plan,

        [Parameter(Mandatory)]
        [object]$VM
    )
    $local = @($Plan.Drives | Where-Object { $_.DriveType -eq 'disk' -and $_.Role -in @('root', 'ephemeral', 'swap') } | ForEach-Object { $_.Path })
    foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $VM)) {
        if ([string]::IsNullOrEmpty($drive.Path) -or $drive.Path -notin $local) {
            continue
        }
        Hyper-V\Set-VMHardDiskDrive -VMHardDiskDrive $drive -MaximumIOPS ([uint64]$Plan.DiskMaxIops) -Confirm:$false
    }
}

function Set-VolumeQosLimit {
    <#
    .SYNOPSIS
        Limits the IOPS of the volume files that have a max_iops (SMB volumes' QoS specs).
    #>
    param(
        [Parameter(Mandatory)]
        [hashtable]$Plan,

        [Parameter(Mandatory)]
        [object]$VM
    )
    $limited = @($Plan.Drives | Where-Object { $_.Role -eq 'volume' -and $null -ne $_.MaxIops })
    if ($limited.Count -eq 0) {
        return
    }
    foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $VM)) {
        if ([string]::IsNullOrEmpty($drive.Path)) {
            continue
        }
        foreach ($planned in $limited) {
            if (Test-PsDriverSamePath -Left $drive.Path -Right $planned.Path) {
                Hyper-V\Set-VMHardDiskDrive -VMHardDiskDrive $drive -MaximumIOPS ([uint64]$planned.MaxIops) -Confirm:$false
            }
        }
    }
}

function Add-InstanceAssignableDevice {
    <#
    .SYNOPSIS
        Sets the memory-mapped I/O space and adds the planned devices; a device that is not free is PsDriver.DeviceUnavailable.
    #>
    param(
        [Parameter(Mandatory)]
        [hashtable]$Plan,

        [Parameter(Mandatory)]
        [object]$VM
    )
    if ($null -ne $Plan.MmioSpace) {
        Hyper-V\Set-VM -VM $VM -GuestControlledCacheTypes $true -LowMemoryMappedIoSpace ($Plan.MmioSpace.LowMb * 1MB) -HighMemoryMappedIoSpace ($Plan.MmioSpace.HighMb * 1MB) -Confirm:$false
    }
    foreach ($locationPath in $Plan.AssignableDevices) {
        try {
            Hyper-V\Add-VMAssignableDevice -VM $VM -LocationPath $locationPath -Confirm:$false
        }
        catch {
            $message = "Cannot assign the device at '{0}' to '{1}': {2}" -f $locationPath, $Plan.Name, $_.Exception.Message
            throw (New-PsDriverErrorRecord -Message $message -Category ResourceUnavailable -ErrorId 'PsDriver.DeviceUnavailable' -Target $locationPath)
        }
    }
}

function Get-DriveRecord {
    param(
        [Parameter(Mandatory)]
        [hashtable]$Drive
    )
    $index = $null
    if ($null -ne $Drive.Index) {
        $index = [int]$Drive.Index
    }
    [ordered]@{
        role                = $Drive.Role
        index               = $index
        path                = $Drive.Path
        drive_type          = $Drive.DriveType
        controller_type     = $Drive.ControllerType
        controller_number   = [int]$Drive.ControllerNumber
        controller_location = [int]$Drive.ControllerLocation
    }
}

if (-not (Get-Command -Name 'Find-PsDriverVM' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$specObject = $Spec
if ($Spec -is [string]) {
    try {
        # Not ConvertFrom-Json: PowerShell 6+ turns date-like strings (a name, notes) into DateTime.
        $specObject = ConvertFrom-PsDriverJson -Json ([string]$Spec)
    }
    catch {
        throw (New-SpecError -Field 'spec' -Message "is a string but not JSON: $($_.Exception.Message)")
    }
}
$plan = ConvertTo-InstancePlan -Spec $specObject
$failed = $true
try {
    if ($null -ne $plan.Shielding -and (Test-Path -LiteralPath $plan.InstanceDir -PathType Container)) {
        $inFolder = @(Get-ChildItem -LiteralPath $plan.InstanceDir -Force)
        $plan.Shielding.OnlyDataInFolder = $inFolder.Count -eq 1 -and (Test-PsDriverSamePath -Left $inFolder[0].FullName -Right $plan.Shielding.DataFile)
    }
    if ($plan.SecureBoot -and @(Get-PsDriverSecureBootTemplate) -notcontains $plan.SecureBootTemplate) {
        throw (New-PsDriverErrorRecord -Message "Secure boot template '$($plan.SecureBootTemplate)' is not available on this host (Windows $([System.Environment]::OSVersion.Version)); it offers $(@(Get-PsDriverSecureBootTemplate) -join ', ')." -Category InvalidArgument -ErrorId 'PsDriver.SecureBootTemplateUnavailable' -Target $plan.SecureBootTemplate)
    }

    if (@(Find-PsDriverVM -Name $plan.Name).Count -gt 0) {
        throw (New-PsDriverErrorRecord -Message "A virtual machine named '$($plan.Name)' already exists on this host." -Category ResourceExists -ErrorId 'PsDriver.VMExists' -Target $plan.Name)
    }
    if ($null -ne $plan.Root) {
        if (Test-Path -LiteralPath $plan.Root.Path -PathType Leaf) {
            $plan.Root.Reused = $true
        }
        elseif ($null -ne $plan.Root.Source) {
            Assert-RootSource -Root $plan.Root
        }
    }
    if ($null -ne $plan.Shielding) {
        if ($plan.Root.Reused) {
            throw (New-PsDriverErrorRecord -Message "A shielded VM is provisioned from its template disk: '$($plan.Root.Path)' exists already." -Category ResourceExists -ErrorId 'PsDriver.RootDiskExists' -Target $plan.Root.Path)
        }
        Assert-PsDriverGuardedHost
        $plan.Shielding.KeyProtector = Get-PsDriverShieldingKeyProtector -ShieldingDataFilePath $plan.Shielding.DataFile
    }

    $created = [System.Collections.Generic.List[string]]::new()
    $reused = [System.Collections.Generic.List[string]]::new()
    $vmId = $null
    $state = 'NotCreated'
    $consoleLogger = $null

    $shieldingSeconds = $null
    if ($PSCmdlet.ShouldProcess("virtual machine '$($plan.Name)' in '$($plan.InstanceDir)'", 'Create instance')) {
        $undo = [System.Collections.Generic.List[object]]::new()
        try {
            if ($null -ne $plan.Shielding) {
                # Before anything is created: the image must be a template disk the data trusts.
                Assert-PsDriverTemplateDisk -TemplateDiskPath $plan.Root.Source -ShieldingDataFilePath $plan.Shielding.DataFile -CatalogPath $plan.Shielding.CatalogFile
            }
            # Folder and files.
            if (-not (Test-Path -LiteralPath $plan.InstanceDir -PathType Container)) {
                $undo.Add(@{ Kind = 'Directory'; Path = $plan.InstanceDir })
                $null = New-Item -ItemType Directory -Path $plan.InstanceDir -Force -Confirm:$false
                $created.Add($plan.InstanceDir)
            }
            if ($null -ne $plan.Root) {
                $root = $plan.Root
                if ($root.Reused) {
                    $reused.Add($root.Path)
                }
                else {
                    $undo.Add(@{ Kind = 'File'; Path = $root.Path })
                    $wanted = $null
                    if ($null -ne $root.SizeGb -and $root.SizeGb -gt 0) {
                        $wanted = [long]$root.SizeGb * 1GB
                    }
                    if ($null -eq $root.Source) {
                        $null = Hyper-V\New-VHD -Path $root.Path -SizeBytes $wanted -Dynamic -Confirm:$false
                    }
                    elseif ($root.Format -eq 'iso') {
                        Copy-Item -LiteralPath $root.Source -Destination $root.Path -Force -Confirm:$false
                    }
                    else {
                        if ($root.Cow) {
                            $null = Hyper-V\New-VHD -Path $root.Path -ParentPath $root.Source -Differencing -Confirm:$false
                        }
                        else {
                            Copy-Item -LiteralPath $root.Source -Destination $root.Path -Force -Confirm:$false
                        }
                        if ($null -ne $wanted -and $wanted -gt $root.ImageSize) {
                            $null = Hyper-V\Resize-VHD -Path $root.Path -SizeBytes $wanted -Confirm:$false
                        }
                    }
                    $created.Add($root.Path)
                }
            }
            foreach ($disk in $plan.Disks) {
                if (Test-Path -LiteralPath $disk.Path -PathType Leaf) {
                    $reused.Add($disk.Path)
                    continue
                }
                $undo.Add(@{ Kind = 'File'; Path = $disk.Path })
                $null = Hyper-V\New-VHD -Path $disk.Path -SizeBytes $disk.SizeBytes -Dynamic -Confirm:$false
                $created.Add($disk.Path)
            }
            if ($null -ne $plan.ConfigDrive) {
                $configPath = $plan.ConfigDrive.Path
                $isNew = -not (Test-Path -LiteralPath $configPath -PathType Leaf)
                if ($isNew) {
                    $undo.Add(@{ Kind = 'File'; Path = $configPath })
                }
                [System.IO.File]::WriteAllBytes($configPath, $plan.ConfigDrive.Bytes)
                if ($isNew) {
                    $created.Add($configPath)
                }
            }

            # The VM. Recorded before New-VM: no VM of this name existed, so one found later is ours.
            $undo.Add(@{ Kind = 'VM'; Name = $plan.Name })
            $vmFolder = $plan.InstanceDir
            if ((Split-Path -Path $plan.InstanceDir -Leaf) -eq $plan.Name) {
                # New-VM puts the configuration in <Path>\<Name>: keep it inside the instance folder.
                $vmFolder = Split-Path -Path $plan.InstanceDir -Parent
            }
            $vm = Hyper-V\New-VM -Name $plan.Name -Generation $plan.Generation -Path $vmFolder -NoVHD -MemoryStartupBytes ([long]$plan.StartupMb * 1MB) -Confirm:$false
            $vmId = $vm.Id.ToString()

            $setVmArgs = @{
                VM                   = $vm
                Notes                = $plan.Notes
                AutomaticStartAction = 'Nothing'
                SnapshotFileLocation = $plan.InstanceDir
                SmartPagingFilePath  = $plan.InstanceDir
                Confirm              = $false
            }
            if ($null -ne $plan.StopAction) {
                $setVmArgs['AutomaticStopAction'] = $plan.StopAction
            }
            # Automatic checkpoints (Windows Server 2019 and later) would add a differencing disk at each start.
            $hasAutomaticCheckpoints = $false
            try {
                $hasAutomaticCheckpoints = (Get-Command -Name 'Set-VM').Parameters.ContainsKey('AutomaticCheckpointsEnabled')
            }
            catch {
                Write-Verbose "Cannot inspect Set-VM: $($_.Exception.Message)"
            }
            if ($hasAutomaticCheckpoints) {
                $setVmArgs['AutomaticCheckpointsEnabled'] = $false
            }
            Hyper-V\Set-VM @setVmArgs

            # New-VM adds a network adapter (and a DVD drive on generation 1): start from a clean VM.
            foreach ($adapter in @(Hyper-V\Get-VMNetworkAdapter -VM $vm)) {
                Hyper-V\Remove-VMNetworkAdapter -VMNetworkAdapter $adapter -Confirm:$false
            }
            foreach ($dvd in @(Hyper-V\Get-VMDvdDrive -VM $vm)) {
                Hyper-V\Remove-VMDvdDrive -VMDvdDrive $dvd -Confirm:$false
            }

            $processorArgs = @{
                VM                               = $vm
                Count                            = $plan.Vcpus
                CompatibilityForMigrationEnabled = $plan.LimitCpuFeatures
                Confirm                          = $false
            }
            if ($plan.Vnuma -and $null -ne $plan.VnumaProcessors) {
                $processorArgs['MaximumCountPerNumaNode'] = $plan.VnumaProcessors
            }
            Hyper-V\Set-VMProcessor @processorArgs

            $memoryArgs = @{
                VM                   = $vm
                DynamicMemoryEnabled = $plan.DynamicMemory
                StartupBytes         = [long]$plan.StartupMb * 1MB
                Confirm              = $false
            }
            if ($plan.DynamicMemory) {
                $memoryArgs['MinimumBytes'] = [long]$plan.StartupMb * 1MB
                $memoryArgs['MaximumBytes'] = [long]$plan.MemoryMb * 1MB
            }
            if ($plan.Vnuma -and $null -ne $plan.VnumaMemoryMb) {
                $memoryArgs['MaximumAmountPerNumaNodeBytes'] = [long]$plan.VnumaMemoryMb * 1MB
            }
            Hyper-V\Set-VMMemory @memoryArgs
            if ($plan.NestedVirtualization) {
                Hyper-V\Set-VMProcessor -VM $vm -ExposeVirtualizationExtensions $true -Confirm:$false
            }

            if ($plan.Generation -eq 2) {
                if ($plan.SecureBoot) {
                    Hyper-V\Set-VMFirmware -VM $vm -EnableSecureBoot On -SecureBootTemplate $plan.SecureBootTemplate -Confirm:$false
                }
                else {
                    Hyper-V\Set-VMFirmware -VM $vm -EnableSecureBoot Off -Confirm:$false
                }
            }
            else {
                Hyper-V\Add-VMScsiController -VM $vm -Confirm:$false
            }
            if ($plan.AssignableDevices.Count -gt 0) {
                Add-InstanceAssignableDevice -Plan $plan -VM $vm
            }
            if ($plan.Tpm) {
                Hyper-V\Set-VMKeyProtector -VM $vm -NewLocalKeyProtector -Confirm:$false
                Hyper-V\Enable-VMTPM -VM $vm -Confirm:$false
            }
            if ($null -ne $plan.Shielding) {
                Hyper-V\Set-VMKeyProtector -VM $vm -KeyProtector $plan.Shielding.KeyProtector -Confirm:$false
                Hyper-V\Set-VMSecurityPolicy -VM $vm -Shielded $true -Confirm:$false
                Hyper-V\Enable-VMTPM -VM $vm -Confirm:$false
            }

            # Drives, then boot order.
            $rootDrive = $null
            foreach ($drive in $plan.Drives) {
                $attached = Add-InstanceDrive -VM $vm -Drive $drive
                if ($drive.Role -eq 'root' -or ($drive.Role -eq 'volume' -and $drive.Boot)) {
                    $rootDrive = $attached
                }
            }
            if ($plan.Generation -eq 1) {
                $order = @('IDE', 'CD', 'LegacyNetworkAdapter', 'Floppy')
                if ($null -ne $plan.Root -and $plan.Root.Format -eq 'iso') {
                    $order = @('CD', 'IDE', 'LegacyNetworkAdapter', 'Floppy')
                }
                Hyper-V\Set-VMBios -VM $vm -StartupOrder $order -Confirm:$false
            }
            elseif ($null -ne $rootDrive) {
                Hyper-V\Set-VMFirmware -VM $vm -FirstBootDevice $rootDrive -Confirm:$false
            }
            if ($null -ne $plan.DiskMaxIops) {
                Set-LocalDiskQosLimit -Plan $plan -VM $vm
            }
            Set-VolumeQosLimit -Plan $plan -VM $vm

            foreach ($nic in $plan.Nics) {
                $adapterArgs = @{
                    VM               = $vm
                    Name             = $nic.Id
                    StaticMacAddress = $nic.Mac
                    Passthru         = $true
                    Confirm          = $false
                }
                if (-not [string]::IsNullOrEmpty($nic.Switch)) {
                    $adapterArgs['SwitchName'] = $nic.Switch
                }
                $adapter = Hyper-V\Add-VMNetworkAdapter @adapterArgs
                if ($null -ne $nic.Vlan) {
                    Hyper-V\Set-VMNetworkAdapterVlan -VMNetworkAdapter $adapter -Access -VlanId ([int]$nic.Vlan) -Confirm:$false
                }
                if ($null -ne $nic.OvsBridge) {
                    $undo.Add(@{ Kind = 'OvsPort'; Name = $nic.Id; OvsVsctl = $plan.OvsVsctl })
                    Add-PsDriverOvsPort -OvsVsctl $plan.OvsVsctl -Bridge $nic.OvsBridge -Port $nic.Id -MacAddress $nic.Mac -InstanceUuid ([guid]$plan.Uuid)
                }
            }
            foreach ($port in $plan.SerialPorts) {
                Hyper-V\Set-VMComPort -VM $vm -Number $port.Number -Path $port.Path -Confirm:$false
            }
            if ($plan.EnableMetrics) {
                Hyper-V\Enable-VMResourceMetering -VM $vm
            }
            if ($null -ne $plan.ConsoleLog) {
                # Before Start-VM: the logger waits for the pipe and so sees the first boot.
                $consoleLogger = Start-InstanceConsoleLog -Plan $plan -VM $vm -Undo $undo
            }
            if ($null -ne $plan.Shielding) {
                # Initialize-ShieldedVM starts the VM; the provisioning goes on after the call.
                New-ShieldedVMSpecializationDataFile -ShieldedVMSpecializationDataFilePath $plan.Shielding.SpecializationFile -SpecializationDataPairs $plan.Shielding.Specialization
                $null = Initialize-ShieldedVM -VM $vm -ShieldingDataFilePath $plan.Shielding.DataFile -ShieldedVMSpecializationDataFilePath $plan.Shielding.SpecializationFile
                $shieldingSeconds = Wait-PsDriverShieldedProvisioning -VM $vm -TimeoutSeconds $plan.Shielding.TimeoutSeconds -PollSeconds $plan.Shielding.PollSeconds
            }
            elseif ($plan.PowerOn) {
                Hyper-V\Start-VM -VM $vm -Confirm:$false
            }
            $state = Get-PsDriverVMState -VM $vm
        }
        catch {
            $failure = $_
            Undo-Creation -Undo $undo
            throw $failure
        }
    }
    $failed = $false
}
finally {
    if ($null -ne $plan.Shielding -and -not $WhatIfPreference) {
        Remove-ShieldingFile -Plan $plan -Failed $failed
    }
}

$rootPath = $null
if ($null -ne $plan.Root) {
    $rootPath = $plan.Root.Path
}

[ordered]@{
    name           = $plan.Name
    instance_uuid  = $plan.Uuid
    vm_id          = $vmId
    state          = $state
    generation     = $plan.Generation
    root_disk_path = $rootPath
    drives         = @($plan.Drives | ForEach-Object { Get-DriveRecord -Drive $_ })
    created        = @($created)
    reused         = @($reused)
    console_logger = $consoleLogger
    shielding      = $(if ($null -ne $plan.Shielding) { [ordered]@{ provisioned = ($null -ne $shieldingSeconds); provisioning_seconds = $shieldingSeconds } } else { $null })
}
