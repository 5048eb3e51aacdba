<#
.SYNOPSIS
    What the Pester tests of ps_scripts share: contracts, command stubs, test
    paths and the fake Hyper-V hosts several tests mock.

.DESCRIPTION
    Dot-source this file in BeforeDiscovery (for the contract examples) and
    in BeforeAll of a *.Tests.ps1 file:

        . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')

    The functions are then defined in the test file's scopes, as if written
    there: the tests call them, and so do the mock bodies. Mock bodies run
    inside the scopes of the script under test (its $script: scope and its
    StrictMode), also when a PsDriver.psm1 helper is the caller, so the state
    they share with the tests is one table, $PsdTest, set in the test file's
    script scope and always read unqualified. Nothing here reads or writes a
    $script: variable from a function a mock calls.

    Mocks of commands that a PsDriver.psm1 helper calls (Get-VM from
    Get-PsDriverVM, Get-VMHardDiskDrive from Get-PsDriverAttachedDrive, ...)
    take -ModuleName PsDriver, in Mock and in Should -Invoke; a command both
    the script and a helper call is mocked twice (Register-TestMock -Scope
    Both). Import-PsDriverModule loads the module first: a script does not
    import it again once its commands exist, so the mocks stay in place.
#>

# ---- scripts and contracts ------------------------------------------------------------

function Get-TestScriptsDir {
    <#
    .SYNOPSIS
        The ps_scripts folder next to tests_pester.
    #>
    Join-Path -Path (Split-Path -Parent $PSScriptRoot) -ChildPath 'ps_scripts'
}

function Get-TestScriptPath {
    <#
    .SYNOPSIS
        The path of ps_scripts/<ScriptName>.ps1.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$ScriptName
    )
    Join-Path -Path (Get-TestScriptsDir) -ChildPath "$ScriptName.ps1"
}

function Get-TestContract {
    <#
    .SYNOPSIS
        ps_scripts/<ScriptName>.contract.json as a hashtable.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$ScriptName
    )
    $path = Join-Path -Path (Get-TestScriptsDir) -ChildPath "$ScriptName.contract.json"
    Get-Content -LiteralPath $path -Raw | ConvertFrom-Json -AsHashtable
}

function Get-TestResultSchema {
    <#
    .SYNOPSIS
        The JSON Schema of the script's result (Test-Json -Schema takes it as text).
    #>
    param(
        [Parameter(Mandatory)]
        [string]$ScriptName
    )
    (Get-TestContract -ScriptName $ScriptName)['result'] | ConvertTo-Json -Depth 100
}

function Get-TestContractExample {
    <#
    .SYNOPSIS
        The contract's examples as -ForEach cases: @{ Index = 1..n; Example = <parameters> }.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$ScriptName
    )
    $index = 0
    foreach ($example in @((Get-TestContract -ScriptName $ScriptName)['examples'])) {
        $index++
        @{ Index = $index; Example = $example }
    }
}

function Import-PsDriverModule {
    <#
    .SYNOPSIS
        Imports ps_scripts/PsDriver.psm1 (again), before any Mock -ModuleName PsDriver.

    .DESCRIPTION
        The .psm1 itself, not the manifest: without the manifest's FunctionsToExport every
        helper is exported, so the tests reach the internal ones too.
    #>
    Import-Module -Name (Join-Path -Path (Get-TestScriptsDir) -ChildPath 'PsDriver.psm1') -Force
}

# Exactly one result object, valid against the contract's JSON Schema ($script:ResultSchema of
# the test file unless -Schema is given).
function Assert-MatchesContract {
    param(
        [AllowNull()]
        [object]$Result,

        [string]$Schema = $script:ResultSchema
    )
    @($Result).Count | Should -Be 1
    $json = ConvertTo-Json -InputObject $Result -Depth 20
    $problems = $null
    $valid = Test-Json -Json $json -Schema $Schema -ErrorVariable problems -ErrorAction SilentlyContinue
    $valid | Should -BeTrue -Because ('the result must match the contract: ' + ($problems -join '; ') + "`n" + $json)
}

# ---- command stubs ----------------------------------------------------------------------
# Stand-ins for cmdlets missing on this machine (no Hyper-V module), so that Mock can replace
# them. A stub is a global function whose definition starts with the comment
# '# psdriver-pester-stub'; Remove-CommandStub removes those (run it in AfterAll).

function Add-CommandStub {
    <#
    .SYNOPSIS
        A global stand-in for a missing command; a leading '-' declares a switch parameter.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$Name,

        [string[]]$Parameter = @()
    )
    if (Get-Command -Name $Name -ErrorAction SilentlyContinue) {
        return
    }
    $declared = @($Parameter | ForEach-Object {
            if ($_.StartsWith('-')) {
                '[switch]$' + $_.Substring(1)
            }
            else {
                '$' + $_
            }
        }) -join ', '
    $definition = "# psdriver-pester-stub`n[CmdletBinding(SupportsShouldProcess)] param(" + $declared + ')'
    Set-Item -Path ('function:global:' + $Name) -Value ([scriptblock]::Create($definition))
    if ($Name -match '^[A-Za-z]+-(VM|VHD)') {
        # The scripts call Hyper-V cmdlets module-qualified (Hyper-V\Get-VM). Without the
        # module that name resolves through this alias to the stub, and so to its mock.
        Set-Alias -Name ('Hyper-V\' + $Name) -Value $Name -Scope Global
    }
    if ($Name -match '^[A-Za-z]+-Cluster') {
        # Likewise FailoverClusters\Get-ClusterGroup and the other cluster cmdlets.
        Set-Alias -Name ('FailoverClusters\' + $Name) -Value $Name -Scope Global
    }
}

function Add-CommandStubSet {
    <#
    .SYNOPSIS
        Add-CommandStub for every entry of a table: command name -> its parameters.
    #>
    param(
        [Parameter(Mandatory)]
        [System.Collections.IDictionary]$Commands
    )
    foreach ($name in $Commands.Keys) {
        Add-CommandStub -Name $name -Parameter @($Commands[$name])
    }
}

function Remove-CommandStub {
    <#
    .SYNOPSIS
        Removes every stub Add-CommandStub made.
    #>
    foreach ($function in @(Get-ChildItem -Path 'function:')) {
        if ($function.ScriptBlock.ToString().StartsWith('# psdriver-pester-stub')) {
            Remove-Item -Path ('function:global:' + $function.Name) -ErrorAction SilentlyContinue
            Remove-Item -LiteralPath ('alias:Hyper-V\' + $function.Name) -ErrorAction SilentlyContinue
            Remove-Item -LiteralPath ('alias:FailoverClusters\' + $function.Name) -ErrorAction SilentlyContinue
        }
    }
}

# ---- mocks --------------------------------------------------------------------------------

function Register-TestMock {
    <#
    .SYNOPSIS
        Mock for calls from the script (-Scope Script), from PsDriver.psm1 (Module) or both.

    .DESCRIPTION
        Call it from BeforeEach or It, as Mock itself. The mock body is
        defined by the caller (a test file or this file), so it runs where
        every mock runs: in the scopes of the script under test.
    #>
    param(
        [Parameter(Mandatory)]
        [string]$CommandName,

        [Parameter(Mandatory)]
        [scriptblock]$MockWith,

        [ValidateSet('Script', 'Module', 'Both')]
        [string]$Scope = 'Both',

        [string[]]$RemoveParameterType,

        [scriptblock]$ParameterFilter
    )
    $options = @{ CommandName = $CommandName; MockWith = $MockWith }
    if ($RemoveParameterType) {
        $options['RemoveParameterType'] = $RemoveParameterType
    }
    if ($ParameterFilter) {
        $options['ParameterFilter'] = $ParameterFilter
    }
    if ($Scope -ne 'Module') {
        Mock @options
    }
    if ($Scope -ne 'Script') {
        Mock @options -ModuleName PsDriver
    }
}

# ---- test paths ---------------------------------------------------------------------------

# Windows paths of the contract examples -> the same layout under a test folder.
function ConvertTo-TestPath {
    param(
        [AllowNull()]
        [string]$Path,

        [Parameter(Mandatory)]
        [string]$Root
    )
    if ([string]::IsNullOrEmpty($Path) -or $Path.StartsWith('\\.\')) {
        return $Path
    }
    $prefix = [regex]::Match($Path, '^(?:[A-Za-z]:\\|\\\\[^\\]+\\[^\\]+\\)')
    if (-not $prefix.Success) {
        return $Path
    }
    $rest = $Path.Substring($prefix.Length) -replace '\\', [string][System.IO.Path]::DirectorySeparatorChar
    Join-Path -Path $Root -ChildPath $rest
}

# ConvertTo-TestPath on every string of a parameter table (nested tables and lists too).
function ConvertTo-TestValue {
    param(
        [AllowNull()]
        [object]$Value,

        [Parameter(Mandatory)]
        [string]$Root
    )
    if ($Value -is [System.Collections.IDictionary]) {
        $copy = [ordered]@{}
        foreach ($key in @($Value.Keys)) {
            $copy[$key] = ConvertTo-TestValue -Value $Value[$key] -Root $Root
        }
        return $copy
    }
    if ($Value -is [System.Collections.IList]) {
        $items = [System.Collections.Generic.List[object]]::new()
        foreach ($item in $Value) {
            $items.Add((ConvertTo-TestValue -Value $item -Root $Root))
        }
        return , $items.ToArray()
    }
    if ($Value -is [string]) {
        return ConvertTo-TestPath -Path $Value -Root $Root
    }
    $Value
}

# A new empty folder under $TestDrive.
function New-TestRoot {
    $root = Join-Path -Path $TestDrive -ChildPath ([guid]::NewGuid().ToString('N'))
    $null = New-Item -ItemType Directory -Path $root -Force
    $root
}

# An empty file (its folders made); returns the path.
function New-TestFile {
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    $null = New-Item -ItemType File -Path $Path -Force
    $Path
}

# The key fakes use for a path: full and lower case.
function Get-FakeKey {
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    [System.IO.Path]::GetFullPath($Path).ToLowerInvariant()
}

# Drops a VM (by its Id) from the fake VMs $PsdTest.Vms, a List[object] (Remove-VM).
function Remove-FakeVM {
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $target = @($VM)[0]
    $keep = @($PsdTest.Vms | Where-Object { $_.Id -ne $target.Id })
    $PsdTest.Vms.Clear()
    foreach ($kept in $keep) {
        $PsdTest.Vms.Add($kept)
    }
}

# The one VM of the fake NIC and drive hosts: instance-00000001 in $PsdTest.State and
# .Generation, for Get-VM -Id or a -Name pattern that matches it; nothing for another name.
function Get-FakeInstanceVM {
    param(
        [AllowNull()]
        [object]$Name
    )
    if ($null -ne $Name -and 'instance-00000001' -notlike @($Name)[0]) {
        return
    }
    [pscustomobject]@{
        Name       = 'instance-00000001'
        Id         = [guid]'0b9a6f3c-1d2e-4f50-8a7b-9c0d1e2f3a4b'
        State      = $PsdTest.State
        Generation = $PsdTest.Generation
    }
}

# ---- fake host: network adapters ------------------------------------------------------------
# One VM, instance-00000001, with $PsdTest.State, .Generation and .Adapters (fake adapters whose
# VLAN is $PsdTest.Vlans[<adapter id>], 0 for untagged); virtual switches $PsdTest.Switches.
# Get-VM is called by Get-PsDriverVM and Get-VMNetworkAdapterVlan by Get-PsDriverVlanMap
# (PsDriver.psm1); the scripts call the other cmdlets, also inside Invoke-PsDriverNicChange,
# whose change script blocks are the script's own.

function Add-FakeNicCommandStub {
    Add-CommandStubSet -Commands ([ordered]@{
            'Get-VM'                   = @('Name', 'Id')
            'Get-VMNetworkAdapter'     = @('VM')
            'Get-VMNetworkAdapterVlan' = @('VM')
            'Add-VMNetworkAdapter'     = @('VM', 'Name', 'StaticMacAddress', 'SwitchName', '-Passthru')
            'Set-VMNetworkAdapter'     = @('VMNetworkAdapter', 'StaticMacAddress')
            'Connect-VMNetworkAdapter' = @('VMNetworkAdapter', 'SwitchName')
            'Set-VMNetworkAdapterVlan' = @('VMNetworkAdapter', '-Access', 'VlanId', '-Untagged')
            'Remove-VMNetworkAdapter'  = @('VMNetworkAdapter')
        })
}

function New-FakeAdapter {
    param(
        [string]$Name,
        [string]$Mac,
        [string]$SwitchName = '',
        [int]$Vlan = 0
    )
    $PsdTest.AdapterKey++
    $adapter = [pscustomobject]@{
        Name                     = $Name
        Id                       = "Microsoft:0B9A6F3C\$($PsdTest.AdapterKey)"
        MacAddress               = $Mac
        SwitchName               = $SwitchName
        DynamicMacAddressEnabled = $false
    }
    $PsdTest.Vlans[$adapter.Id] = $Vlan
    $adapter
}

# The fake NIC host of a new test (BeforeEach): a running generation 2 VM without adapters.
function Register-FakeNicHost {
    $PsdTest.Port1 = '3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b'
    $PsdTest.Port2 = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d'
    $PsdTest.Port3 = '11111111-2222-4333-8444-555555555555'
    $PsdTest.AdapterKey = 0
    $PsdTest.Vlans = @{}
    $PsdTest.State = 'Running'
    $PsdTest.Generation = 2
    $PsdTest.Switches = @('br-int', 'external')
    $PsdTest.Adapters = @()
    Mock Get-VM -ModuleName PsDriver { Get-FakeInstanceVM -Name $Name }
    Mock Get-VMNetworkAdapter { @($PsdTest.Adapters) } -RemoveParameterType 'VM'
    Mock Get-VMNetworkAdapterVlan -ModuleName PsDriver {
        foreach ($adapter in @($PsdTest.Adapters)) {
            $vlan = [int]$PsdTest.Vlans[$adapter.Id]
            $mode = 'Untagged'
            if ($vlan -gt 0) {
                $mode = 'Access'
            }
            [pscustomobject]@{ ParentAdapter = $adapter; OperationMode = $mode; AccessVlanId = $vlan }
        }
    } -RemoveParameterType 'VM'
    Mock Add-VMNetworkAdapter {
        if (-not [string]::IsNullOrEmpty($SwitchName) -and $SwitchName -notin $PsdTest.Switches) {
            throw "Cannot find virtual switch '$SwitchName'."
        }
        $adapter = New-FakeAdapter -Name $Name -Mac $StaticMacAddress -SwitchName $SwitchName
        $PsdTest.Adapters = @($PsdTest.Adapters) + $adapter
        if ($Passthru) {
            $adapter
        }
    } -RemoveParameterType 'VM'
    Mock Set-VMNetworkAdapter {
        if ($PsdTest.State -ne 'Off') {
            throw 'The MAC address of a running virtual machine cannot be changed.'
        }
        @($VMNetworkAdapter)[0].MacAddress = $StaticMacAddress
        @($VMNetworkAdapter)[0].DynamicMacAddressEnabled = $false
    } -RemoveParameterType 'VMNetworkAdapter'
    Mock Connect-VMNetworkAdapter { @($VMNetworkAdapter)[0].SwitchName = $SwitchName } -RemoveParameterType 'VMNetworkAdapter'
    Mock Set-VMNetworkAdapterVlan {
        if ($Untagged) {
            $PsdTest.Vlans[@($VMNetworkAdapter)[0].Id] = 0
        }
        else {
            $PsdTest.Vlans[@($VMNetworkAdapter)[0].Id] = [int]$VlanId
        }
    } -RemoveParameterType 'VMNetworkAdapter'
    Mock Remove-VMNetworkAdapter {
        $ids = @($VMNetworkAdapter | ForEach-Object { $_.Id })
        $PsdTest.Adapters = @($PsdTest.Adapters | Where-Object { $_.Id -notin $ids })
    } -RemoveParameterType 'VMNetworkAdapter'
}

# ---- fake host: drives (rescue) ---------------------------------------------------------------
# One VM, instance-00000001, in $PsdTest.State and .Generation, with the fake drives
# $PsdTest.Drives (Kind HardDisk or DvdDrive) on $PsdTest.ScsiControllers. The drive cmdlets and
# the power cmdlets are called by PsDriver.psm1 (Get-PsDriverAttachedDrive,
# Mount-PsDriverConfigDrive, Stop-PsDriverVM, ...); Add-VMHardDiskDrive by the scripts too. Files
# that exist: $PsdTest.Files (Test-Path); deleted files: $PsdTest.Deleted (Remove-Item).

function Add-FakeDriveCommandStub {
    Add-CommandStubSet -Commands ([ordered]@{
            'Get-VM'                 = @('Name', 'Id')
            'Get-VMHardDiskDrive'    = @('VM')
            'Get-VMDvdDrive'         = @('VM')
            'Add-VMHardDiskDrive'    = @('VM', 'ControllerType', 'ControllerNumber', 'ControllerLocation', 'Path', '-Passthru')
            'Add-VMDvdDrive'         = @('VM', 'ControllerNumber', 'ControllerLocation', 'Path', '-Passthru')
            'Remove-VMHardDiskDrive' = @('VMHardDiskDrive')
            'Remove-VMDvdDrive'      = @('VMDvdDrive')
            'Set-VMDvdDrive'         = @('VMDvdDrive', 'Path')
            'Get-VMScsiController'   = @('VM')
            'Add-VMScsiController'   = @('VM')
            'Set-VMFirmware'         = @('VM', 'FirstBootDevice')
            'Start-VM'               = @('VM')
            'Stop-VM'                = @('VM', '-TurnOff', '-Force')
            'Resume-VM'              = @('VM')
            'Remove-VMSavedState'    = @('VM')
            'New-VHD'                = @('Path', 'ParentPath', '-Differencing')
        })
}

function New-FakeDrive {
    param(
        [string]$Kind,
        [AllowNull()]
        [string]$Path,
        [string]$ControllerType,
        [int]$ControllerNumber,
        [int]$ControllerLocation,
        [object]$DiskNumber = $null
    )
    $PsdTest.DriveKey++
    [pscustomobject]@{
        Key                = $PsdTest.DriveKey
        Kind               = $Kind
        Path               = $Path
        ControllerType     = $ControllerType
        ControllerNumber   = $ControllerNumber
        ControllerLocation = $ControllerLocation
        DiskNumber         = $DiskNumber
    }
}

function Add-FakeDrive {
    param(
        [string]$Kind,
        [string]$Path,
        [string]$ControllerType,
        [int]$ControllerNumber,
        [int]$ControllerLocation
    )
    if ($null -ne (Get-FakeSlot -ControllerType $ControllerType -ControllerNumber $ControllerNumber -ControllerLocation $ControllerLocation)) {
        throw "Slot $ControllerType ${ControllerNumber}:$ControllerLocation is in use."
    }
    if ($ControllerType -eq 'SCSI' -and @($PsdTest.ScsiControllers | Where-Object { $_.ControllerNumber -eq $ControllerNumber }).Count -eq 0) {
        throw "No SCSI controller $ControllerNumber."
    }
    $drive = New-FakeDrive -Kind $Kind -Path $Path -ControllerType $ControllerType -ControllerNumber $ControllerNumber -ControllerLocation $ControllerLocation
    $PsdTest.Drives = @($PsdTest.Drives) + $drive
    $drive
}

function Remove-FakeDrive {
    param(
        [object]$Drive
    )
    $key = @($Drive)[0].Key
    $PsdTest.Drives = @($PsdTest.Drives | Where-Object { $_.Key -ne $key })
}

# The drive in a slot, or $null.
function Get-FakeSlot {
    param(
        [string]$ControllerType,
        [int]$ControllerNumber,
        [int]$ControllerLocation
    )
    @($PsdTest.Drives | Where-Object {
            $_.ControllerType -eq $ControllerType -and $_.ControllerNumber -eq $ControllerNumber -and
            $_.ControllerLocation -eq $ControllerLocation
        }) | Select-Object -First 1
}

# The fake drive host of a new test (BeforeEach): a running generation 2 VM with one SCSI
# controller and no drives yet; the instance files are under $PsdTest.Dir.
function Register-FakeDriveHost {
    $PsdTest.Dir = 'C:\OpenStack\Instances\instance-00000001\'
    $PsdTest.DriveKey = 0
    $PsdTest.State = 'Running'
    $PsdTest.Generation = 2
    $PsdTest.FirstBoot = $null
    $PsdTest.Deleted = @()
    $PsdTest.Files = @()
    $PsdTest.Drives = @()
    $PsdTest.ScsiControllers = @([pscustomobject]@{ ControllerNumber = 0 })
    $PsdTest.Root = $PsdTest.Dir + 'root.vhdx'
    $PsdTest.Rescue = $PsdTest.Dir + 'root-rescue.vhdx'
    $PsdTest.ConfigDrive = $PsdTest.Dir + 'configdrive.iso'
    $PsdTest.RescueConfigDrive = $PsdTest.Dir + 'configdrive-rescue.iso'
    Mock Get-VM -ModuleName PsDriver { Get-FakeInstanceVM -Name $Name }
    Mock Get-VMHardDiskDrive -ModuleName PsDriver { @($PsdTest.Drives | Where-Object { $_.Kind -eq 'HardDisk' }) } -RemoveParameterType 'VM'
    Mock Get-VMDvdDrive -ModuleName PsDriver { @($PsdTest.Drives | Where-Object { $_.Kind -eq 'DvdDrive' }) } -RemoveParameterType 'VM'
    Register-TestMock -CommandName 'Add-VMHardDiskDrive' -Scope Both -RemoveParameterType 'VM' -MockWith {
        $drive = Add-FakeDrive -Kind 'HardDisk' -Path $Path -ControllerType ([string]$ControllerType) `
            -ControllerNumber $ControllerNumber -ControllerLocation $ControllerLocation
        if ($Passthru) {
            $drive
        }
    }
    Mock Add-VMDvdDrive -ModuleName PsDriver {
        $type = 'SCSI'
        if ($PsdTest.Generation -eq 1) {
            $type = 'IDE'
        }
        $drive = Add-FakeDrive -Kind 'DvdDrive' -Path $Path -ControllerType $type `
            -ControllerNumber $ControllerNumber -ControllerLocation $ControllerLocation
        if ($Passthru) {
            $drive
        }
    } -RemoveParameterType 'VM'
    Mock Remove-VMHardDiskDrive -ModuleName PsDriver { Remove-FakeDrive -Drive $VMHardDiskDrive } -RemoveParameterType 'VMHardDiskDrive'
    Mock Remove-VMDvdDrive -ModuleName PsDriver { Remove-FakeDrive -Drive $VMDvdDrive } -RemoveParameterType 'VMDvdDrive'
    Mock Set-VMDvdDrive -ModuleName PsDriver { @($VMDvdDrive)[0].Path = $Path } -RemoveParameterType 'VMDvdDrive'
    Mock Get-VMScsiController -ModuleName PsDriver { @($PsdTest.ScsiControllers) } -RemoveParameterType 'VM'
    Mock Add-VMScsiController -ModuleName PsDriver {
        $PsdTest.ScsiControllers = @($PsdTest.ScsiControllers) + [pscustomobject]@{ ControllerNumber = @($PsdTest.ScsiControllers).Count }
    } -RemoveParameterType 'VM'
    Mock Set-VMFirmware { $PsdTest.FirstBoot = @($FirstBootDevice)[0].Path } -RemoveParameterType 'VM', 'FirstBootDevice'
    Mock Start-VM -ModuleName PsDriver {
        if ($PsdTest.State -notin @('Off', 'Saved')) {
            throw 'The operation cannot be performed while the object is in its current state.'
        }
        $PsdTest.State = 'Running'
    } -RemoveParameterType 'VM'
    Mock Stop-VM -ModuleName PsDriver { $PsdTest.State = 'Off' } -RemoveParameterType 'VM'
    Mock Resume-VM -ModuleName PsDriver { $PsdTest.State = 'Running' } -RemoveParameterType 'VM'
    Mock Remove-VMSavedState -ModuleName PsDriver { $PsdTest.State = 'Off' } -RemoveParameterType 'VM'
    Mock Test-Path { @($PsdTest.Files | Where-Object { $_ -eq $LiteralPath }).Count -gt 0 } -ParameterFilter { $null -ne $LiteralPath }
    Mock Remove-Item { $PsdTest.Deleted += @($LiteralPath) } -ParameterFilter { $null -ne $LiteralPath }
}

# ---- fake host: image cache -----------------------------------------------------------------------
# The VMs $PsdTest.Vms (Name, Disks, Dvds) and the virtual disks $PsdTest.Vhds (by Get-FakeKey) of
# the fake Get-VHD; all four cmdlets are called by Get-PsDriverImageUsage and
# Get-PsDriverCachedVhd (PsDriver.psm1). The image files are real files under $TestDrive.

function Add-FakeImageCacheCommandStub {
    Add-CommandStubSet -Commands ([ordered]@{
            'Get-VM'              = @()
            'Get-VMHardDiskDrive' = @('VM')
            'Get-VMDvdDrive'      = @('VM')
            'Get-VHD'             = @('Path')
        })
}

# A file on disk that the fake Get-VHD knows (unless -Unreadable).
function New-FakeDisk {
    param(
        [Parameter(Mandatory)]
        [string]$Path,

        [long]$Size = 1GB,

        [string]$Type = 'Dynamic',

        [string]$Parent,

        [switch]$Unreadable
    )
    $null = New-Item -ItemType File -Path $Path -Force
    Set-Content -LiteralPath $Path -Value ('x' * 100) -NoNewline
    if (-not $Unreadable) {
        $format = 'VHD'
        if ($Path -match 'x$') {
            $format = 'VHDX'
        }
        $PsdTest.Vhds[(Get-FakeKey -Path $Path)] = [pscustomobject]@{
            Path       = $Path
            Size       = $Size
            VhdFormat  = $format
            VhdType    = $Type
            ParentPath = $Parent
        }
    }
    $Path
}

function Add-FakeCacheVM {
    param(
        [Parameter(Mandatory)]
        [string]$Name,

        [string[]]$Disks = @(),

        [string[]]$Dvds = @()
    )
    $PsdTest.Vms.Add([pscustomobject]@{ Name = $Name; Disks = $Disks; Dvds = $Dvds })
}

# The image cache most tests use:
#   _base/a.vhdx (used by vm1 through root1.vhdx and by vm3 through root3.vhdx <- vm3.avhdx),
#   _base/b_40.vhd (unused), _base/c.iso (DVD of vm2), _base/broken.vhdx (unreadable), _base/notes.txt.
function New-FakeCache {
    $root = Join-Path -Path $TestDrive -ChildPath ([guid]::NewGuid().ToString('N'))
    $base = Join-Path -Path $root -ChildPath '_base'
    $cache = @{ Root = $root; Base = $base }
    $cache.A = New-FakeDisk -Path (Join-Path -Path $base -ChildPath 'a.vhdx') -Size 2GB
    $cache.B = New-FakeDisk -Path (Join-Path -Path $base -ChildPath 'b_40.vhd') -Size 40GB -Type 'Fixed'
    $cache.C = Join-Path -Path $base -ChildPath 'c.iso'
    Set-Content -LiteralPath $cache.C -Value ('i' * 2048) -NoNewline
    $cache.Broken = New-FakeDisk -Path (Join-Path -Path $base -ChildPath 'broken.vhdx') -Unreadable
    Set-Content -LiteralPath (Join-Path -Path $base -ChildPath 'notes.txt') -Value 'not an image'
    $root1 = New-FakeDisk -Path (Join-Path -Path $root -ChildPath 'vm1/root1.vhdx') -Type 'Differencing' -Parent $cache.A
    $root3 = New-FakeDisk -Path (Join-Path -Path $root -ChildPath 'vm3/root3.vhdx') -Type 'Differencing' -Parent $cache.A
    $snap3 = New-FakeDisk -Path (Join-Path -Path $root -ChildPath 'vm3/root3_1C2D.avhdx') -Type 'Differencing' -Parent $root3
    Add-FakeCacheVM -Name 'vm3' -Disks @($snap3)
    Add-FakeCacheVM -Name 'vm1' -Disks @($root1)
    Add-FakeCacheVM -Name 'vm2' -Dvds @($cache.C)
    $cache
}

# The fake image cache host of a new test (BeforeEach): no VMs, no disks yet.
function Register-FakeImageCacheHost {
    $PsdTest.Vms = [System.Collections.Generic.List[object]]::new()
    $PsdTest.Vhds = @{}
    Mock Get-VM -ModuleName PsDriver {
        $PsdTest.Vms.ToArray()
    }
    Mock Get-VMHardDiskDrive -ModuleName PsDriver {
        foreach ($owner in @($VM)) {
            foreach ($disk in $owner.Disks) {
                [pscustomobject]@{ VMName = $owner.Name; Path = $disk }
            }
        }
    } -RemoveParameterType 'VM'
    Mock Get-VMDvdDrive -ModuleName PsDriver {
        foreach ($owner in @($VM)) {
            foreach ($dvd in $owner.Dvds) {
                [pscustomobject]@{ VMName = $owner.Name; Path = $dvd }
            }
        }
    } -RemoveParameterType 'VM'
    Mock Get-VHD -ModuleName PsDriver {
        $vhd = $PsdTest.Vhds[(Get-FakeKey -Path $Path)]
        if ($null -eq $vhd) {
            throw "The file '$Path' is not a virtual hard disk or is in use."
        }
        $vhd
    }
}
