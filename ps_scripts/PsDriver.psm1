<#
.SYNOPSIS
    Shared helpers of psdriver: decode the values document, run a ps_scripts
    script and turn its result or error into the one JSON envelope; and what
    several scripts do alike: their errors, finding a VM by its exact name,
    reading the instance UUID from its Notes, network adapter records, drive
    slots (rescue), the image cache and the console logger of a VM.

.DESCRIPTION
    The bridge inlines the functions of this file that a script uses (and
    the statements outside functions) into the wrapped script it sends to a
    Hyper-V host (see Invoke-PsDriverScript.ps1.j2 and
    psdriver/bridge/helpers.py). Administrators can also import it to see
    exactly what the driver sees:

        Import-Module .\PsDriver.psm1
        Invoke-PsDriverScript -Path .\Get-HostInfo.ps1 -Parameters @{ InstancesPath = 'D:\VMs' }

    The envelope is {"ok": true, "result": ..., "log": [...]} or
    {"ok": false, "error": {"type", "message", "category", "error_id",
    "target", "script_stack"}, "log": [...]}.

    Works the same on Windows PowerShell 5.1 and PowerShell 7:
    * input: base64 of UTF-8 JSON, decoded with System.Text.Json (7) or
      JavaScriptSerializer (5.1, no 2 MB limit), never with ConvertFrom-Json,
      which turns date-like strings into DateTime on 7. JSON objects become
      dictionaries, arrays become object[] (also with one or no element);
    * output: the result is first reduced to dictionaries, object[], strings,
      booleans, numbers and null (enums by name, DateTime as ISO 8601, other
      .NET values by ToString()), so ConvertTo-Json has nothing left to
      truncate, unwrap or serialise differently between versions.

    A script that uses a helper of this file imports it itself when it runs
    by hand, naming a helper it calls (the bridge has inlined the helpers
    already, so the command exists and nothing is imported):

        if (-not (Get-Command -Name 'Get-PsDriverVM' -ErrorAction SilentlyContinue)) {
            Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psm1') -Verbose:$false
        }

    Imported, the helpers run in the module's own scope, which does not see
    the calling script's preference variables: the module sets strict mode
    and $ErrorActionPreference = 'Stop' itself, so a failing cmdlet stops a
    helper as it would stop the script. Helpers that change the host are
    called by the scripts inside their ShouldProcess blocks and pass
    -Confirm:$false to the Hyper-V cmdlets.
#>

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Initialize-PsDriverSession {
    <#
    .SYNOPSIS
        Removes the Windows PowerShell 5.1 type data that makes ConvertTo-Json
        write arrays as {"value": [...], "Count": n}.
    #>
    [CmdletBinding()]
    param()
    if ($PSVersionTable.PSVersion.Major -lt 6) {
        Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue
    }
}

function ConvertFrom-PsDriverJsonElement {
    <#
    .SYNOPSIS
        Converts a System.Text.Json element into dictionaries, object[] and scalars.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [System.Text.Json.JsonElement]$Element
    )
    $kind = $Element.ValueKind.ToString()
    if ($kind -eq 'Object') {
        $table = [ordered]@{}
        foreach ($property in $Element.EnumerateObject()) {
            $table[$property.Name] = ConvertFrom-PsDriverJsonElement -Element $property.Value
        }
        return $table
    }
    if ($kind -eq 'Array') {
        $items = [System.Collections.Generic.List[object]]::new()
        foreach ($item in $Element.EnumerateArray()) {
            $items.Add((ConvertFrom-PsDriverJsonElement -Element $item))
        }
        return , $items.ToArray()
    }
    if ($kind -eq 'String') {
        return $Element.GetString()
    }
    if ($kind -eq 'Number') {
        $int = 0
        if ($Element.TryGetInt32([ref]$int)) {
            return $int
        }
        $long = [long]0
        if ($Element.TryGetInt64([ref]$long)) {
            return $long
        }
        return $Element.GetDouble()
    }
    if ($kind -eq 'True') {
        return $true
    }
    if ($kind -eq 'False') {
        return $false
    }
    return $null
}

function ConvertFrom-PsDriverJson {
    <#
    .SYNOPSIS
        Parses JSON text into dictionaries, object[] and scalars on 5.1 and 7 alike.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [AllowEmptyString()]
        [string]$Json
    )
    if ($PSVersionTable.PSVersion.Major -ge 6) {
        $document = [System.Text.Json.JsonDocument]::Parse($Json)
        try {
            return ConvertFrom-PsDriverJsonElement -Element $document.RootElement
        }
        finally {
            $document.Dispose()
        }
    }
    Add-Type -AssemblyName 'System.Web.Extensions'
    $serializer = New-Object -TypeName 'System.Web.Script.Serialization.JavaScriptSerializer'
    $serializer.MaxJsonLength = [int]::MaxValue
    $serializer.RecursionLimit = 256
    return $serializer.DeserializeObject($Json)
}

function ConvertFrom-PsDriverInput {
    <#
    .SYNOPSIS
        Decodes the values document (base64 of UTF-8 JSON) into a hashtable for splatting.
    #>
    [CmdletBinding()]
    [OutputType([hashtable])]
    param(
        [Parameter(Mandatory)]
        [AllowEmptyString()]
        [string]$InputDocument
    )
    $parameters = @{}
    $trimmed = $InputDocument.Trim()
    if ($trimmed.Length -eq 0) {
        return $parameters
    }
    $bytes = [System.Convert]::FromBase64String($trimmed)
    $json = [System.Text.UTF8Encoding]::new($false, $true).GetString($bytes)
    $values = ConvertFrom-PsDriverJson -Json $json
    if ($values -isnot [System.Collections.IDictionary]) {
        throw [System.ArgumentException]::new('The psdriver input document is not a JSON object.')
    }
    foreach ($key in $values.Keys) {
        $parameters[[string]$key] = $values[$key]
    }
    return $parameters
}

function ConvertTo-PsDriverPlainValue {
    <#
    .SYNOPSIS
        Reduces a script result to dictionaries, object[], strings, booleans,
        numbers and null, the same way on Windows PowerShell 5.1 and PowerShell 7.
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [object]$Value,

        [int]$Depth = 0
    )
    if ($Depth -gt 64) {
        throw [System.InvalidOperationException]::new('The script result is nested more than 64 levels deep.')
    }
    if ($null -eq $Value) {
        return $null
    }
    if ($Value -is [string] -or $Value -is [bool]) {
        return $Value
    }
    if ($Value -is [char]) {
        return [string]$Value
    }
    if ($Value -is [enum]) {
        return $Value.ToString()
    }
    if ($Value -is [double] -or $Value -is [single]) {
        if ([double]::IsNaN($Value) -or [double]::IsInfinity($Value)) {
            return $null
        }
        return $Value
    }
    if ($Value -is [System.ValueType] -and $Value.GetType().IsPrimitive) {
        return $Value
    }
    if ($Value -is [decimal]) {
        return $Value
    }
    if ($Value -is [datetime]) {
        return $Value.ToString('o', [System.Globalization.CultureInfo]::InvariantCulture)
    }
    if ($Value -is [System.DateTimeOffset]) {
        return $Value.ToString('o', [System.Globalization.CultureInfo]::InvariantCulture)
    }
    if ($Value -is [System.Collections.IDictionary]) {
        $table = [ordered]@{}
        foreach ($key in $Value.Keys) {
            $table[[string]$key] = ConvertTo-PsDriverPlainValue -Value $Value[$key] -Depth ($Depth + 1)
        }
        return $table
    }
    if ($Value -is [System.Management.Automation.PSCustomObject]) {
        $table = [ordered]@{}
        foreach ($property in $Value.PSObject.Properties) {
            $table[$property.Name] = ConvertTo-PsDriverPlainValue -Value $property.Value -Depth ($Depth + 1)
        }
        return $table
    }
    if ($Value -is [System.Collections.IEnumerable]) {
        $items = [System.Collections.Generic.List[object]]::new()
        foreach ($item in $Value) {
            $items.Add((ConvertTo-PsDriverPlainValue -Value $item -Depth ($Depth + 1)))
        }
        return , $items.ToArray()
    }
    return $Value.ToString()
}

function ConvertTo-PsDriverJson {
    <#
    .SYNOPSIS
        Serialises an envelope that ConvertTo-PsDriverPlainValue has reduced.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)]
        [System.Collections.IDictionary]$Envelope
    )
    ConvertTo-Json -InputObject $Envelope -Depth 100 -Compress
}

function New-PsDriverFailure {
    <#
    .SYNOPSIS
        The error envelope for an ErrorRecord: type, message, category, id, target, stack.
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
    param(
        [Parameter(Mandatory)]
        [System.Management.Automation.ErrorRecord]$ErrorRecord,

        [Parameter(Mandatory)]
        [AllowEmptyCollection()]
        [string[]]$Log
    )
    $exception = $ErrorRecord.Exception
    $message = $exception.Message
    if ($null -ne $ErrorRecord.ErrorDetails -and $ErrorRecord.ErrorDetails.Message) {
        $message = $ErrorRecord.ErrorDetails.Message
    }
    $target = ''
    if ($null -ne $ErrorRecord.TargetObject) {
        $target = [string]$ErrorRecord.TargetObject
    }
    [ordered]@{
        ok    = $false
        error = [ordered]@{
            type         = $exception.GetType().FullName
            message      = [string]$message
            category     = $ErrorRecord.CategoryInfo.Category.ToString()
            error_id     = [string]$ErrorRecord.FullyQualifiedErrorId
            target       = $target
            script_stack = [string]$ErrorRecord.ScriptStackTrace
        }
        log   = $Log
    }
}

function Invoke-PsDriverScriptBlock {
    <#
    .SYNOPSIS
        Runs a ps_scripts script block with the given values and returns the
        envelope as JSON text, with the exit code a process should end with.

    .PARAMETER ScriptBlock
        The standalone script, as a script block.

    .PARAMETER InputDocument
        The values as base64 of UTF-8 JSON (what the bridge sends).

    .PARAMETER Parameters
        The values as a hashtable (when run by hand).

    .PARAMETER Module
        Modules to import first (from the script's contract).
    #>
    [CmdletBinding(DefaultParameterSetName = 'Document')]
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)]
        [scriptblock]$ScriptBlock,

        [Parameter(Mandatory, ParameterSetName = 'Document')]
        [AllowEmptyString()]
        [string]$InputDocument,

        [Parameter(Mandatory, ParameterSetName = 'Hashtable')]
        [hashtable]$Parameters,

        [Parameter()]
        [AllowEmptyCollection()]
        [string[]]$Module = @()
    )
    $log = [System.Collections.Generic.List[string]]::new()
    try {
        Initialize-PsDriverSession
        foreach ($name in $Module) {
            Import-Module -Name $name -ErrorAction Stop -Verbose:$false
        }
        if ($PSCmdlet.ParameterSetName -eq 'Document') {
            $Parameters = ConvertFrom-PsDriverInput -InputDocument $InputDocument
        }
        $records = @(& $ScriptBlock @Parameters 3>&1 4>&1 6>&1)
        $output = [System.Collections.Generic.List[object]]::new()
        foreach ($record in $records) {
            if ($null -eq $record) {
                continue
            }
            if ($record -is [System.Management.Automation.WarningRecord]) {
                $log.Add('WARNING: ' + $record.Message)
            }
            elseif ($record -is [System.Management.Automation.VerboseRecord]) {
                $log.Add('VERBOSE: ' + $record.Message)
            }
            elseif ($record -is [System.Management.Automation.InformationRecord]) {
                $log.Add('INFO: ' + [string]$record.MessageData)
            }
            else {
                $output.Add($record)
            }
        }
        $result = $null
        if ($output.Count -eq 1) {
            $result = $output[0]
        }
        elseif ($output.Count -gt 1) {
            $result = $output.ToArray()
        }
        $envelope = [ordered]@{
            ok     = $true
            result = ConvertTo-PsDriverPlainValue -Value $result
            log    = $log.ToArray()
        }
        $json = ConvertTo-PsDriverJson -Envelope $envelope
        $exitCode = 0
    }
    catch {
        $json = ConvertTo-PsDriverJson -Envelope (New-PsDriverFailure -ErrorRecord $_ -Log $log.ToArray())
        $exitCode = 1
    }
    [pscustomobject]@{
        Json     = $json
        ExitCode = $exitCode
    }
}

function Invoke-PsDriverScript {
    <#
    .SYNOPSIS
        Runs one ps_scripts script by hand and prints the envelope psdriver would parse.

    .PARAMETER Path
        Path of the .ps1 script.

    .PARAMETER Parameters
        The script's parameters.

    .PARAMETER Module
        Modules to import first (the "modules" of the script's .contract.json).

    .EXAMPLE
        Invoke-PsDriverScript -Path .\Get-HostInfo.ps1 -Parameters @{} -Module Hyper-V
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)]
        [string]$Path,

        [Parameter()]
        [hashtable]$Parameters = @{},

        [Parameter()]
        [string[]]$Module = @()
    )
    $text = [System.IO.File]::ReadAllText((Resolve-Path -LiteralPath $Path).ProviderPath)
    $block = [scriptblock]::Create($text)
    (Invoke-PsDriverScriptBlock -ScriptBlock $block -Parameters $Parameters -Module $Module).Json
}

# ---- errors -----------------------------------------------------------------------
# What the scripts throw themselves: a System.InvalidOperationException in an
# ErrorRecord with a category and a PsDriver.* error id (psdriver.sim raises the
# same type, so the Python side maps both alike).

function New-PsDriverErrorRecord {
    <#
    .SYNOPSIS
        An ErrorRecord with a category and a PsDriver.* error id.

    .PARAMETER Message
        The error message.

    .PARAMETER Category
        The error category (ObjectNotFound, InvalidArgument, ...).

    .PARAMETER ErrorId
        The error id, PsDriver.<Name>.

    .PARAMETER Target
        The object the error is about (a VM name, a path).

    .PARAMETER InnerException
        The exception that caused this one, kept as InnerException. Optional.
    #>
    [CmdletBinding()]
    [OutputType([System.Management.Automation.ErrorRecord])]
    param(
        [Parameter(Mandatory)]
        [string]$Message,

        [Parameter(Mandatory)]
        [System.Management.Automation.ErrorCategory]$Category,

        [Parameter(Mandatory)]
        [string]$ErrorId,

        [object]$Target,

        [System.Exception]$InnerException
    )
    if ($null -ne $InnerException) {
        $exception = [System.InvalidOperationException]::new($Message, $InnerException)
    }
    else {
        $exception = [System.InvalidOperationException]::new($Message)
    }
    [System.Management.Automation.ErrorRecord]::new($exception, $ErrorId, $Category, $Target)
}

# ---- paths --------------------------------------------------------------------------

function Test-PsDriverAbsolutePath {
    <#
    .SYNOPSIS
        True for C:\..., \\server\share\... (and /... where / is the directory separator).

    .PARAMETER Path
        The path to check.
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    if ($Path -match '^\\\\[^\\/]+[\\/][^\\/]+' -or $Path -match '^[A-Za-z]:[\\/]') {
        return $true
    }
    [System.IO.Path]::DirectorySeparatorChar -eq '/' -and $Path.StartsWith('/')
}

function Test-PsDriverSamePath {
    <#
    .SYNOPSIS
        True when two paths name the same file: case, / or \ and a trailing separator aside.

    .PARAMETER Left
        One path; empty or null is never the same as anything.

    .PARAMETER Right
        The other path.
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Left,

        [AllowNull()]
        [AllowEmptyString()]
        [string]$Right
    )
    if ([string]::IsNullOrWhiteSpace($Left) -or [string]::IsNullOrWhiteSpace($Right)) {
        return $false
    }
    $a = $Left.Trim().Replace('/', '\').TrimEnd('\')
    $b = $Right.Trim().Replace('/', '\').TrimEnd('\')
    [string]::Equals($a, $b, [System.StringComparison]::OrdinalIgnoreCase)
}

function Get-PsDriverPathKey {
    <#
    .SYNOPSIS
        Comparable form of a path: full, one separator, no trailing separator, lower case.

    .PARAMETER Path
        The path.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)]
        [string]$Path
    )
    $separator = [System.IO.Path]::DirectorySeparatorChar
    $full = [System.IO.Path]::GetFullPath(($Path -replace '[\\/]', $separator))
    $full.TrimEnd($separator).ToLowerInvariant()
}

# ---- virtual machines ---------------------------------------------------------------

function Find-PsDriverVM {
    <#
    .SYNOPSIS
        Every VM named exactly Name: none, one or (against the rules) several.

    .DESCRIPTION
        Get-VM -Name takes a wildcard pattern. The escaped name followed by '*'
        matches the name literally (brackets too) and, being a pattern, never
        reports "not found": an error here is a real failure (service down,
        access denied) and stops the caller instead of passing for a missing
        VM. The names found are then compared with Name exactly (ignoring
        case, as Hyper-V does).

    .PARAMETER Name
        The exact name of the virtual machine.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Name
    )
    $pattern = [System.Management.Automation.WildcardPattern]::Escape($Name) + '*'
    @(Get-VM -Name $pattern -ErrorAction Stop | Where-Object { $_.Name -eq $Name })
}

function Get-PsDriverVM {
    <#
    .SYNOPSIS
        The one VM named exactly Name.

    .DESCRIPTION
        Looks the VM up with Find-PsDriverVM. No such VM: ObjectNotFound /
        PsDriver.VMNotFound, or $null with -AllowMissing. Several VMs of that
        name: InvalidOperation / PsDriver.VMNameNotUnique.

    .PARAMETER Name
        The exact name of the virtual machine.

    .PARAMETER AllowMissing
        Return $null instead of failing when there is no such VM.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Name,

        [switch]$AllowMissing
    )
    $found = @(Find-PsDriverVM -Name $Name)
    if ($found.Count -gt 1) {
        throw (New-PsDriverErrorRecord -Message "$($found.Count) virtual machines are named '$Name'; the name must be unique." -Category InvalidOperation -ErrorId 'PsDriver.VMNameNotUnique' -Target $Name)
    }
    if ($found.Count -eq 1) {
        return $found[0]
    }
    if (-not $AllowMissing) {
        throw (New-PsDriverErrorRecord -Message "Virtual machine '$Name' was not found on this host." -Category ObjectNotFound -ErrorId 'PsDriver.VMNotFound' -Target $Name)
    }
    $null
}

function Get-PsDriverVMState {
    <#
    .SYNOPSIS
        The VM's state now (asked again with Get-VM -Id), by name: Running, Off, Saved, ...

    .PARAMETER VM
        The VM, as Get-VM returned it.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    (Get-VM -Id $VM.Id -ErrorAction Stop).State.ToString()
}

function ConvertTo-PsDriverInstanceUuid {
    <#
    .SYNOPSIS
        The instance UUID recorded on the first line of VM Notes, or $null.

    .DESCRIPTION
        Writers put the UUID in its canonical form (lower case, 8-4-4-4-12)
        on the first line, as compute-hyperv did. When reading, surrounding
        whitespace, upper case hex digits, enclosing braces and a leading
        "openstack-instance-uuid:" label are tolerated. The UUID comes back in
        lower case.

    .PARAMETER Notes
        The VM Notes.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Notes
    )
    if ([string]::IsNullOrWhiteSpace($Notes)) {
        return $null
    }
    $firstLine = ($Notes -split "\r?\n", 2)[0].Trim()
    $pattern = '^(?:openstack-instance-uuid:\s*)?\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$'
    $match = [regex]::Match($firstLine, $pattern)
    if (-not $match.Success) {
        return $null
    }
    return $match.Groups[1].Value.ToLowerInvariant()
}

function Remove-PsDriverVM {
    <#
    .SYNOPSIS
        Turns a VM off hard unless it is off or saved, then removes it with its checkpoints.

    .DESCRIPTION
        A VM that is Off or Saved (or OffCritical / SavedCritical, when its
        storage is unavailable) is removed as it is: Stop-VM refuses those
        states and Remove-VM drops a saved state. A VM in any other state is
        turned off first (Stop-VM -TurnOff). Checkpoints are removed, not
        merged. The VM's files stay.

    .PARAMETER VM
        The VM, as Get-VM returned it (its State is the one acted on).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    if ($VM.State.ToString() -notin @('Off', 'Saved', 'OffCritical', 'SavedCritical')) {
        Stop-VM -VM $VM -TurnOff -Force -Confirm:$false
    }
    Remove-VM -VM $VM -Force -Confirm:$false
}

function Stop-PsDriverVM {
    <#
    .SYNOPSIS
        Turns a VM off hard: nothing when Off, the saved state discarded when Saved, else Stop-VM -TurnOff.

    .PARAMETER VM
        The VM, as Get-VM returned it (its state is asked again).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $state = Get-PsDriverVMState -VM $VM
    if ($state -eq 'Off') {
        return
    }
    if ($state -eq 'Saved') {
        Remove-VMSavedState -VM $VM -Confirm:$false
        return
    }
    Stop-VM -VM $VM -TurnOff -Force -Confirm:$false
}

function Start-PsDriverVM {
    <#
    .SYNOPSIS
        Runs a VM: Resume-VM when Paused, Start-VM when Off or Saved, nothing otherwise.

    .PARAMETER VM
        The VM, as Get-VM returned it (its state is asked again).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $state = Get-PsDriverVMState -VM $VM
    if ($state -eq 'Paused') {
        Resume-VM -VM $VM -Confirm:$false
    }
    elseif ($state -in @('Off', 'Saved')) {
        Start-VM -VM $VM -Confirm:$false
    }
}

# ---- network adapters ---------------------------------------------------------------
# An adapter is named after its Neutron port id. MAC addresses reach Hyper-V as
# 'FA163E010203' and leave the scripts as 'fa:16:3e:01:02:03'.

function ConvertTo-PsDriverHyperVMac {
    <#
    .SYNOPSIS
        'fa:16:3e:01:02:03' (or with dashes, or bare) -> 'FA163E010203'; $null if not a MAC.

    .PARAMETER Mac
        The MAC address as a caller wrote it.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Mac
    )
    if ([string]::IsNullOrWhiteSpace($Mac)) {
        return $null
    }
    $text = $Mac.Trim()
    if ($text -notmatch '^(?:[0-9a-fA-F]{2}([:-]?)){5}[0-9a-fA-F]{2}$') {
        return $null
    }
    ($text -replace '[:-]', '').ToUpperInvariant()
}

function ConvertTo-PsDriverMacString {
    <#
    .SYNOPSIS
        'FA163E010203' -> 'fa:16:3e:01:02:03'; $null for an empty or all-zero address.

    .PARAMETER Mac
        The MAC address as Hyper-V reports it.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Mac
    )
    $hex = ([string]$Mac) -replace '[^0-9a-fA-F]', ''
    if ($hex.Length -ne 12 -or $hex -eq '000000000000') {
        return $null
    }
    $hex = $hex.ToLowerInvariant()
    (0..5 | ForEach-Object { $hex.Substring($_ * 2, 2) }) -join ':'
}

function Get-PsDriverVlanMap {
    <#
    .SYNOPSIS
        VLAN settings of all the VM's adapters (one call), keyed by adapter id.

    .PARAMETER VM
        The VM.
    #>
    [CmdletBinding()]
    [OutputType([hashtable])]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $map = @{}
    foreach ($vlan in @(Get-VMNetworkAdapterVlan -VM $VM)) {
        if ($null -ne $vlan -and $null -ne $vlan.ParentAdapter) {
            $map[[string]$vlan.ParentAdapter.Id] = $vlan
        }
    }
    $map
}

function Get-PsDriverAccessVlanId {
    <#
    .SYNOPSIS
        The adapter's access VLAN id, or $null when untagged or in another mode.

    .PARAMETER VlanMap
        What Get-PsDriverVlanMap returned for the adapter's VM.

    .PARAMETER Adapter
        The network adapter.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [hashtable]$VlanMap,

        [Parameter(Mandatory)]
        [object]$Adapter
    )
    $vlan = $VlanMap[[string]$Adapter.Id]
    if ($null -ne $vlan -and $vlan.OperationMode.ToString() -eq 'Access') {
        return [int]$vlan.AccessVlanId
    }
    $null
}

function Get-PsDriverNicRecord {
    <#
    .SYNOPSIS
        The result record of one adapter: name, mac, switch, vlan, connected.

    .PARAMETER Adapter
        The network adapter.

    .PARAMETER VlanMap
        What Get-PsDriverVlanMap returned for the adapter's VM.
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
    param(
        [Parameter(Mandatory)]
        [object]$Adapter,

        [Parameter(Mandatory)]
        [hashtable]$VlanMap
    )
    $switchName = $null
    if (-not [string]::IsNullOrEmpty($Adapter.SwitchName)) {
        $switchName = [string]$Adapter.SwitchName
    }
    [ordered]@{
        name      = [string]$Adapter.Name
        mac       = ConvertTo-PsDriverMacString -Mac $Adapter.MacAddress
        'switch'  = $switchName
        vlan      = Get-PsDriverAccessVlanId -VlanMap $VlanMap -Adapter $Adapter
        connected = ($null -ne $switchName)
    }
}

function Assert-PsDriverNicHotplug {
    <#
    .SYNOPSIS
        Throws PsDriver.NicHotplugUnsupported when adapters cannot be added or removed now.

    .DESCRIPTION
        Generation 2 VMs take and give up adapters while running (Windows
        Server 2016 and later); generation 1 VMs only while Off. Otherwise:
        InvalidOperation / PsDriver.NicHotplugUnsupported.

    .PARAMETER VM
        The VM.

    .PARAMETER Operation
        What is being done, for the message: add or remove.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [string]$Operation
    )
    $state = $VM.State.ToString()
    if ($state -ne 'Off' -and [int]$VM.Generation -eq 1) {
        throw (New-PsDriverErrorRecord -Message "Cannot $Operation a network adapter on virtual machine '$($VM.Name)' while it is ${state}: generation 1 virtual machines do not support network adapter hot plug; turn the virtual machine off first." -Category InvalidOperation -ErrorId 'PsDriver.NicHotplugUnsupported' -Target $VM.Name)
    }
}

function Invoke-PsDriverNicChange {
    <#
    .SYNOPSIS
        Runs one adapter change; a Hyper-V refusal becomes PsDriver.NicOperationFailed.

    .DESCRIPTION
        The change's output is passed on. Any failure becomes
        InvalidOperation / PsDriver.NicOperationFailed, with the description,
        the VM's name and state and Hyper-V's own message.

    .PARAMETER Description
        What the change does, for the message ("add network adapter 'x'").

    .PARAMETER VM
        The VM.

    .PARAMETER Change
        The Hyper-V cmdlet call.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Description,

        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [scriptblock]$Change
    )
    try {
        & $Change
    }
    catch {
        $message = "Cannot {0} on virtual machine '{1}' (state {2}): {3}" -f $Description, $VM.Name, $VM.State.ToString(), $_.Exception.Message
        throw (New-PsDriverErrorRecord -Message $message -Category InvalidOperation -ErrorId 'PsDriver.NicOperationFailed' -Target $VM.Name)
    }
}

# ---- drives -------------------------------------------------------------------------
# A drive record: Kind (HardDisk or DvdDrive), Drive (the Hyper-V object), Path,
# DiskNumber (pass-through disks), ControllerType (IDE or SCSI), ControllerNumber,
# ControllerLocation. A slot: ControllerType, ControllerNumber, ControllerLocation.

function Get-PsDriverAttachedDrive {
    <#
    .SYNOPSIS
        Every hard disk and DVD drive of the VM, as drive records.

    .PARAMETER VM
        The VM.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    foreach ($drive in @(Get-VMHardDiskDrive -VM $VM)) {
        $diskNumber = $null
        if ($null -ne $drive.DiskNumber) {
            $diskNumber = [int]$drive.DiskNumber
        }
        [pscustomobject]@{
            Kind               = 'HardDisk'
            Drive              = $drive
            Path               = [string]$drive.Path
            DiskNumber         = $diskNumber
            ControllerType     = $drive.ControllerType.ToString()
            ControllerNumber   = [int]$drive.ControllerNumber
            ControllerLocation = [int]$drive.ControllerLocation
        }
    }
    foreach ($drive in @(Get-VMDvdDrive -VM $VM)) {
        [pscustomobject]@{
            Kind               = 'DvdDrive'
            Drive              = $drive
            Path               = [string]$drive.Path
            DiskNumber         = $null
            ControllerType     = $drive.ControllerType.ToString()
            ControllerNumber   = [int]$drive.ControllerNumber
            ControllerLocation = [int]$drive.ControllerLocation
        }
    }
}

function Find-PsDriverAttachedDrive {
    <#
    .SYNOPSIS
        The drive record in Slot, or else the one whose file is Path; $null when none.

    .PARAMETER Drives
        What Get-PsDriverAttachedDrive returned.

    .PARAMETER Path
        The file to look for (compared with Test-PsDriverSamePath).

    .PARAMETER Slot
        The slot to look in; when given, Path is not used.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [AllowEmptyCollection()]
        [object[]]$Drives,

        [string]$Path,

        [object]$Slot
    )
    foreach ($drive in $Drives) {
        if ($null -ne $Slot) {
            if ($drive.ControllerType -eq $Slot.ControllerType -and
                $drive.ControllerNumber -eq $Slot.ControllerNumber -and
                $drive.ControllerLocation -eq $Slot.ControllerLocation) {
                return $drive
            }
        }
        elseif (Test-PsDriverSamePath -Left $drive.Path -Right $Path) {
            return $drive
        }
    }
    $null
}

function New-PsDriverDriveSlot {
    <#
    .SYNOPSIS
        A controller slot: ControllerType, ControllerNumber, ControllerLocation.

    .PARAMETER ControllerType
        IDE or SCSI.

    .PARAMETER ControllerNumber
        The controller.

    .PARAMETER ControllerLocation
        The location on the controller.
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param(
        [string]$ControllerType,
        [int]$ControllerNumber,
        [int]$ControllerLocation
    )
    [pscustomobject]@{
        ControllerType     = $ControllerType
        ControllerNumber   = $ControllerNumber
        ControllerLocation = $ControllerLocation
    }
}

function Get-PsDriverBootSlot {
    <#
    .SYNOPSIS
        The slot a VM boots from: IDE 0:0 for generation 1, SCSI 0:0 for generation 2.

    .PARAMETER VM
        The VM.
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    $type = 'SCSI'
    if ([int]$VM.Generation -eq 1) {
        $type = 'IDE'
    }
    New-PsDriverDriveSlot -ControllerType $type -ControllerNumber 0 -ControllerLocation 0
}

function Get-PsDriverFreeDriveSlot {
    <#
    .SYNOPSIS
        The first free slot on the VM's IDE or SCSI controllers.

    .DESCRIPTION
        IDE: 0:0, 0:1, 1:0, 1:1. SCSI: every location of every controller, in
        controller order; a VM without a SCSI controller gets one. No free
        slot: LimitsExceeded / PsDriver.NoFreeControllerSlot.

    .PARAMETER VM
        The VM.

    .PARAMETER ControllerType
        IDE or SCSI.
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [ValidateSet('IDE', 'SCSI')]
        [string]$ControllerType
    )
    $used = @{}
    foreach ($drive in @(Get-PsDriverAttachedDrive -VM $VM)) {
        $used['{0}:{1}:{2}' -f $drive.ControllerType, $drive.ControllerNumber, $drive.ControllerLocation] = $true
    }
    if ($ControllerType -eq 'IDE') {
        foreach ($number in 0..1) {
            foreach ($location in 0..1) {
                if (-not $used[('IDE:{0}:{1}' -f $number, $location)]) {
                    return (New-PsDriverDriveSlot -ControllerType 'IDE' -ControllerNumber $number -ControllerLocation $location)
                }
            }
        }
    }
    else {
        $controllers = @(Get-VMScsiController -VM $VM)
        if ($controllers.Count -eq 0) {
            Add-VMScsiController -VM $VM
            $controllers = @(Get-VMScsiController -VM $VM)
        }
        foreach ($controller in @($controllers | Sort-Object -Property ControllerNumber)) {
            foreach ($location in 0..63) {
                if (-not $used[('SCSI:{0}:{1}' -f $controller.ControllerNumber, $location)]) {
                    return (New-PsDriverDriveSlot -ControllerType 'SCSI' -ControllerNumber ([int]$controller.ControllerNumber) -ControllerLocation $location)
                }
            }
        }
    }
    throw (New-PsDriverErrorRecord -Message "Virtual machine '$($VM.Name)' has no free $ControllerType controller slot." -Category LimitsExceeded -ErrorId 'PsDriver.NoFreeControllerSlot' -Target $VM.Name)
}

function Dismount-PsDriverAttachedDrive {
    <#
    .SYNOPSIS
        Removes a DVD drive or hard disk drive from its VM (the file stays).

    .PARAMETER Record
        A drive record (Get-PsDriverAttachedDrive).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$Record
    )
    if ($Record.Kind -eq 'DvdDrive') {
        Remove-VMDvdDrive -VMDvdDrive $Record.Drive -Confirm:$false
    }
    else {
        Remove-VMHardDiskDrive -VMHardDiskDrive $Record.Drive -Confirm:$false
    }
}

function Mount-PsDriverConfigDrive {
    <#
    .SYNOPSIS
        Attaches a config drive (.iso as DVD, else hard disk) in PreferredSlot if usable, else a default slot.

    .DESCRIPTION
        Generation 1: an IDE slot, IDE 1:0 unless PreferredSlot says
        otherwise (an .iso only in an IDE slot); an empty DVD drive in the
        slot is given the .iso. Generation 2: PreferredSlot or the next free
        SCSI location. PreferredSlot taken: the next free slot of the kind.

    .PARAMETER VM
        The VM.

    .PARAMETER Path
        The config drive file (.iso, .vhd or .vhdx).

    .PARAMETER PreferredSlot
        The slot to use when it is free (for example the one of the drive it replaces). Optional.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [string]$Path,

        [object]$PreferredSlot
    )
    $generation = [int]$VM.Generation
    $isIso = [System.IO.Path]::GetExtension($Path) -eq '.iso'
    $slotType = 'SCSI'
    if ($generation -eq 1) {
        $slotType = 'IDE'
        if ($null -eq $PreferredSlot -or ($isIso -and $PreferredSlot.ControllerType -ne 'IDE')) {
            $PreferredSlot = New-PsDriverDriveSlot -ControllerType 'IDE' -ControllerNumber 1 -ControllerLocation 0
        }
    }
    $slot = $null
    if ($null -ne $PreferredSlot) {
        $occupant = Find-PsDriverAttachedDrive -Drives @(Get-PsDriverAttachedDrive -VM $VM) -Slot $PreferredSlot
        if ($null -eq $occupant) {
            $slot = $PreferredSlot
        }
        elseif ($isIso -and $occupant.Kind -eq 'DvdDrive' -and [string]::IsNullOrEmpty($occupant.Path)) {
            Set-VMDvdDrive -VMDvdDrive $occupant.Drive -Path $Path -Confirm:$false
            return
        }
    }
    if ($null -eq $slot) {
        $slot = Get-PsDriverFreeDriveSlot -VM $VM -ControllerType $slotType
    }
    if ($isIso) {
        $null = Add-VMDvdDrive -VM $VM -ControllerNumber $slot.ControllerNumber `
            -ControllerLocation $slot.ControllerLocation -Path $Path -Confirm:$false
    }
    else {
        $null = Add-VMHardDiskDrive -VM $VM -ControllerType $slot.ControllerType -ControllerNumber $slot.ControllerNumber `
            -ControllerLocation $slot.ControllerLocation -Path $Path -Confirm:$false
    }
}

function Get-PsDriverDriveLayout {
    <#
    .SYNOPSIS
        The result records of every hard disk and DVD drive of the VM.

    .OUTPUTS
        One {kind, path (null when empty), controller_type, controller_number,
        controller_location} per drive.

    .PARAMETER VM
        The VM.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [object]$VM
    )
    foreach ($drive in @(Get-PsDriverAttachedDrive -VM $VM)) {
        $path = $null
        if (-not [string]::IsNullOrEmpty($drive.Path)) {
            $path = $drive.Path
        }
        [ordered]@{
            kind                = $drive.Kind
            path                = $path
            controller_type     = $drive.ControllerType
            controller_number   = $drive.ControllerNumber
            controller_location = $drive.ControllerLocation
        }
    }
}

function Get-PsDriverRescueRecord {
    <#
    .SYNOPSIS
        The result of Set-InstanceRescue and Remove-InstanceRescue: the VM's rescue state and drive layout.

    .PARAMETER VM
        The VM.

    .PARAMETER RescueDiskPath
        The rescue disk: the VM is rescued while it is attached.

    .PARAMETER RootDiskPath
        The instance's root disk; null or empty when unknown.

    .PARAMETER ConfigDrivePath
        The config drive that should be attached; null or empty for none.

    .OUTPUTS
        name, state, generation, rescued, boot_disk_path (the rescue disk
        while rescued, else the root disk), root_disk_path, rescue_disk_path
        (null unless rescued), config_drive_path (null unless attached),
        devices (Get-PsDriverDriveLayout).
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [string]$RescueDiskPath,

        [AllowNull()]
        [AllowEmptyString()]
        [string]$RootDiskPath,

        [AllowNull()]
        [AllowEmptyString()]
        [string]$ConfigDrivePath
    )
    $drives = @(Get-PsDriverAttachedDrive -VM $VM)
    $rescued = $null -ne (Find-PsDriverAttachedDrive -Drives $drives -Path $RescueDiskPath)
    $rootPath = $null
    if (-not [string]::IsNullOrEmpty($RootDiskPath)) {
        $rootPath = $RootDiskPath
    }
    $configDrive = $null
    if (-not [string]::IsNullOrEmpty($ConfigDrivePath) -and $null -ne (Find-PsDriverAttachedDrive -Drives $drives -Path $ConfigDrivePath)) {
        $configDrive = $ConfigDrivePath
    }
    $rescuePath = $null
    $bootPath = $rootPath
    if ($rescued) {
        $rescuePath = $RescueDiskPath
        $bootPath = $RescueDiskPath
    }
    [ordered]@{
        name              = [string]$VM.Name
        state             = Get-PsDriverVMState -VM $VM
        generation        = [int]$VM.Generation
        rescued           = $rescued
        boot_disk_path    = $bootPath
        root_disk_path    = $rootPath
        rescue_disk_path  = $rescuePath
        config_drive_path = $configDrive
        devices           = @(Get-PsDriverDriveLayout -VM $VM)
    }
}

# ---- image cache --------------------------------------------------------------------
# The image cache folder (_base) holds *.vhd, *.vhdx and *.iso files named after
# the Glance image (with a size suffix for resized copies).

function Get-PsDriverImageFile {
    <#
    .SYNOPSIS
        The image files directly in BasePath, all of them or those Name selects.

    .DESCRIPTION
        A Name entry selects the files whose name equals it with or without
        the extension (case-insensitive). An entry with a path separator or a
        wildcard character: InvalidArgument / PsDriver.InvalidImageName. A
        missing BasePath has no files.

    .PARAMETER BasePath
        The image cache folder.

    .PARAMETER Name
        Image names (file names, with or without extension). Optional; all images by default.

    .OUTPUTS
        Files (FileInfo: sorted by name without Name, else in the order of the
        Name entries, each once) and NotFound (the Name entries that match nothing).
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)]
        [string]$BasePath,

        [AllowEmptyCollection()]
        [string[]]$Name = @()
    )
    foreach ($entry in $Name) {
        if ([string]::IsNullOrWhiteSpace($entry) -or $entry -match '[\\/:*?\[\]]') {
            throw (New-PsDriverErrorRecord -Message "'$entry' is not an image name (no path separators or wildcards)." -Category InvalidArgument -ErrorId 'PsDriver.InvalidImageName' -Target $entry)
        }
    }
    $files = @()
    if (Test-Path -LiteralPath $BasePath -PathType Container) {
        $files = @(Get-ChildItem -LiteralPath $BasePath -File | Where-Object { $_.Extension -match '^\.(vhdx?|iso)$' } | Sort-Object -Property Name)
    }
    $notFound = [System.Collections.Generic.List[string]]::new()
    if ($Name.Count -gt 0) {
        $selected = [System.Collections.Generic.List[object]]::new()
        foreach ($entry in $Name) {
            $matched = @($files | Where-Object { $_.Name -eq $entry -or $_.BaseName -eq $entry })
            if ($matched.Count -eq 0) {
                $notFound.Add($entry)
            }
            foreach ($file in $matched) {
                if (@($selected | Where-Object { $_.FullName -eq $file.FullName }).Count -eq 0) {
                    $selected.Add($file)
                }
            }
        }
        $files = $selected.ToArray()
    }
    [pscustomobject]@{
        Files    = @($files)
        NotFound = $notFound.ToArray()
    }
}

function Get-PsDriverCachedVhd {
    <#
    .SYNOPSIS
        Get-VHD once per path; $null when the file cannot be read.

    .PARAMETER Path
        The virtual disk file.

    .PARAMETER Cache
        Path key -> Get-VHD result of the calls so far (filled in).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$Path,

        [Parameter(Mandatory)]
        [hashtable]$Cache
    )
    $key = Get-PsDriverPathKey -Path $Path
    if (-not $Cache.ContainsKey($key)) {
        $vhd = $null
        try {
            $vhd = Get-VHD -Path $Path
        }
        catch {
            Write-Verbose "Cannot read '$Path': $($_.Exception.Message)"
        }
        $Cache[$key] = $vhd
    }
    $Cache[$key]
}

function Get-PsDriverImageUsage {
    <#
    .SYNOPSIS
        Path key -> VM names, for every file in a disk chain or DVD drive of every VM.

    .DESCRIPTION
        One Get-VM call; a hard disk's chain (the disk and its differencing
        parents) is followed with Get-PsDriverCachedVhd, so each file is read
        once. DVD drives count with their .iso file.

    .PARAMETER VhdCache
        The Get-PsDriverCachedVhd cache to use (and fill in).
    #>
    [CmdletBinding()]
    [OutputType([hashtable])]
    param(
        [Parameter(Mandatory)]
        [hashtable]$VhdCache
    )
    $usage = @{}
    $vms = @(Get-VM)
    if ($vms.Count -eq 0) {
        return $usage
    }
    $links = [System.Collections.Generic.List[object]]::new()
    foreach ($drive in @(Get-VMHardDiskDrive -VM $vms)) {
        $current = [string]$drive.Path
        $seen = @{}
        while (-not [string]::IsNullOrEmpty($current) -and $current -match '\.a?vhdx?$') {
            $key = Get-PsDriverPathKey -Path $current
            if ($seen.ContainsKey($key)) {
                break
            }
            $seen[$key] = $true
            $links.Add(@($key, [string]$drive.VMName))
            $vhd = Get-PsDriverCachedVhd -Path $current -Cache $VhdCache
            if ($null -eq $vhd) {
                break
            }
            $current = [string]$vhd.ParentPath
        }
    }
    foreach ($dvd in @(Get-VMDvdDrive -VM $vms)) {
        if (-not [string]::IsNullOrEmpty([string]$dvd.Path) -and [string]$dvd.Path -match '\.iso$') {
            $links.Add(@((Get-PsDriverPathKey -Path ([string]$dvd.Path)), [string]$dvd.VMName))
        }
    }
    foreach ($link in $links) {
        if (-not $usage.ContainsKey($link[0])) {
            $usage[$link[0]] = [System.Collections.Generic.List[string]]::new()
        }
        if (-not $usage[$link[0]].Contains($link[1])) {
            $usage[$link[0]].Add($link[1])
        }
    }
    $usage
}

# ---- console logger -------------------------------------------------------------
# New-Instance starts it with the VM; Set-InstancePowerState (when the VM is left
# running) and Initialize-ComputeHost (every running instance, after a host reboot)
# make sure it runs (Invoke-PsDriverConsoleLogger); Start-InstanceConsoleLogger
# starts or restarts it on demand. Start-InstanceConsoleLogger.ps1 describes the
# logger process, its named mutex and stop event.
function Get-PsDriverConsoleLoggerName {
    <#
    .SYNOPSIS
        The named mutex a VM's logger holds and the named event that stops it.

    .PARAMETER VMId
        The Hyper-V VM id.
    #>
    [CmdletBinding()]
    [OutputType([hashtable])]
    param(
        [Parameter(Mandatory)]
        [string]$VMId
    )
    $id = $VMId.ToLowerInvariant()
    @{
        Mutex = 'Global\psdriver-console-' + $id
        Stop  = 'Global\psdriver-console-stop-' + $id
    }
}

function Test-PsDriverConsoleLogger {
    <#
    .SYNOPSIS
        True while a console logger holds the VM's mutex.

    .PARAMETER VMId
        The Hyper-V VM id.
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param(
        [Parameter(Mandatory)]
        [string]$VMId
    )
    $names = Get-PsDriverConsoleLoggerName -VMId $VMId
    $mutex = $null
    if ([System.Threading.Mutex]::TryOpenExisting($names.Mutex, [ref]$mutex)) {
        $mutex.Dispose()
        return $true
    }
    $false
}

function Stop-PsDriverConsoleLogger {
    <#
    .SYNOPSIS
        Signals the VM's console logger to stop and waits up to 10 seconds for it to exit.

    .DESCRIPTION
        A logger that still holds its mutex after 10 seconds is an error of
        category ResourceBusy with error id PsDriver.ConsoleLoggerBusy. No
        logger running: nothing to do.

    .PARAMETER VMId
        The Hyper-V VM id.

    .PARAMETER VMName
        The VM name, for the error message.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$VMId,

        [Parameter(Mandatory)]
        [string]$VMName
    )
    $names = Get-PsDriverConsoleLoggerName -VMId $VMId
    $stopEvent = $null
    if ([System.Threading.EventWaitHandle]::TryOpenExisting($names.Stop, [ref]$stopEvent)) {
        try {
            $null = $stopEvent.Set()
        }
        finally {
            $stopEvent.Dispose()
        }
    }
    for ($wait = 0; $wait -lt 50; $wait++) {
        if (-not (Test-PsDriverConsoleLogger -VMId $VMId)) {
            return
        }
        Start-Sleep -Milliseconds 200
    }
    throw (New-PsDriverErrorRecord -Message "The console logger of virtual machine '$VMName' did not stop within 10 seconds." -Category ResourceBusy -ErrorId 'PsDriver.ConsoleLoggerBusy' -Target $VMName)
}

function Assert-PsDriverConsoleLogTarget {
    <#
    .SYNOPSIS
        Checks the pipe and the log folder of a console logger; returns the pipe name.

    .DESCRIPTION
        PipePath not of the form \\.\pipe\<name>: InvalidArgument /
        PsDriver.InvalidPipePath. The folder of LogPath does not exist:
        ObjectNotFound / PsDriver.LogDirectoryNotFound.

    .PARAMETER PipePath
        The serial port pipe, \\.\pipe\<name>.

    .PARAMETER LogPath
        The log file.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)]
        [string]$PipePath,

        [Parameter(Mandatory)]
        [string]$LogPath
    )
    $pipeMatch = [regex]::Match($PipePath, '^\\\\\.\\pipe\\([^\\]+)$', [System.Text.RegularExpressions.RegexOptions]::IgnoreCase)
    if (-not $pipeMatch.Success) {
        throw (New-PsDriverErrorRecord -Message "'$PipePath' is not a local named pipe path (\\.\pipe\<name>)." -Category InvalidArgument -ErrorId 'PsDriver.InvalidPipePath' -Target $PipePath)
    }
    $logDirectory = Split-Path -Path $LogPath -Parent
    if ([string]::IsNullOrEmpty($logDirectory) -or -not (Test-Path -LiteralPath $logDirectory -PathType Container)) {
        throw (New-PsDriverErrorRecord -Message "The directory of console log '$LogPath' does not exist." -Category ObjectNotFound -ErrorId 'PsDriver.LogDirectoryNotFound' -Target $LogPath)
    }
    $pipeMatch.Groups[1].Value
}

function Get-PsDriverConsoleReaderScript {
    <#
    .SYNOPSIS
        The code the logger process runs: static text, its settings arrive as one base64 argument.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param()
    @'
function Write-ConsoleLogChunk {
    param(
        [string]$Path,
        [byte[]]$Buffer,
        [int]$Count,
        [long]$MaxBytes
    )
    $info = [System.IO.FileInfo]::new($Path)
    if ($info.Exists -and $info.Length -gt 0 -and $info.Length + $Count -gt $MaxBytes) {
        for ($attempt = 0; $attempt -lt 5; $attempt++) {
            try {
                $archive = $Path + '.1'
                if ([System.IO.File]::Exists($archive)) {
                    [System.IO.File]::Delete($archive)
                }
                [System.IO.File]::Move($Path, $archive)
                break
            }
            catch {
                Start-Sleep -Milliseconds 200
            }
        }
    }
    $share = [System.IO.FileShare]::ReadWrite -bor [System.IO.FileShare]::Delete
    $file = [System.IO.FileStream]::new($Path, [System.IO.FileMode]::Append, [System.IO.FileAccess]::Write, $share)
    try {
        $file.Write($Buffer, 0, $Count)
    }
    finally {
        $file.Dispose()
    }
}

function Test-ConsoleLogVM {
    param(
        [string]$VMId
    )
    try {
        $filter = "Name='{0}'" -f ([guid]::Parse($VMId).ToString().ToUpperInvariant())
        $found = @(Get-CimInstance -Namespace 'root\virtualization\v2' -ClassName 'Msvm_ComputerSystem' -Filter $filter)
        return ($found.Count -gt 0)
    }
    catch {
        return $true
    }
}

function Invoke-ConsoleLogReader {
    param(
        [Parameter(Mandatory)]
        [string]$ConfigBase64
    )
    Set-StrictMode -Version Latest
    $ErrorActionPreference = 'Stop'
    $json = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($ConfigBase64))
    $config = $json | ConvertFrom-Json
    $createdNew = $false
    $mutex = [System.Threading.Mutex]::new($true, [string]$config.mutex, [ref]$createdNew)
    if (-not $createdNew) {
        $mutex.Dispose()
        return
    }
    $resetMode = [System.Threading.EventResetMode]::ManualReset
    $stop = [System.Threading.EventWaitHandle]::new($false, $resetMode, [string]$config.stop)
    $logPath = [string]$config.log
    $logDir = [System.IO.Path]::GetDirectoryName($logPath)
    $maxBytes = [long]$config.max
    $vmCheck = [System.Diagnostics.Stopwatch]::StartNew()
    $buffer = [byte[]]::new(4096)
    try {
        while (-not $stop.WaitOne(0)) {
            if (-not [System.IO.Directory]::Exists($logDir)) {
                return
            }
            if ($vmCheck.Elapsed.TotalSeconds -ge 300) {
                $vmCheck.Restart()
                if (-not (Test-ConsoleLogVM -VMId ([string]$config.vm))) {
                    return
                }
            }
            $pipeOptions = [System.IO.Pipes.PipeOptions]::Asynchronous
            $pipe = [System.IO.Pipes.NamedPipeClientStream]::new('.', [string]$config.pipe, [System.IO.Pipes.PipeDirection]::In, $pipeOptions)
            try {
                $pipe.Connect(2000)
                while ($true) {
                    $pending = $pipe.BeginRead($buffer, 0, $buffer.Length, $null, $null)
                    $handles = [System.Threading.WaitHandle[]]@($pending.AsyncWaitHandle, $stop)
                    $which = [System.Threading.WaitHandle]::WaitAny($handles, 30000)
                    while ($which -eq [System.Threading.WaitHandle]::WaitTimeout) {
                        if (-not [System.IO.Directory]::Exists($logDir)) {
                            return
                        }
                        $which = [System.Threading.WaitHandle]::WaitAny($handles, 30000)
                    }
                    if ($which -eq 1) {
                        return
                    }
                    $count = $pipe.EndRead($pending)
                    if ($count -le 0) {
                        break
                    }
                    Write-ConsoleLogChunk -Path $logPath -Buffer $buffer -Count $count -MaxBytes $maxBytes
                }
            }
            catch {
                $null = $stop.WaitOne(2000)
            }
            finally {
                $pipe.Dispose()
            }
        }
    }
    finally {
        $stop.Dispose()
        $mutex.ReleaseMutex()
        $mutex.Dispose()
    }
}
'@
}

function Start-PsDriverConsoleLogger {
    <#
    .SYNOPSIS
        Launches the console logger of a VM unless one runs already (or replaces it with -Restart).

    .DESCRIPTION
        The logger process is created through WMI (Win32_Process.Create) so
        that it outlives a remoting session, with the reader code passed as
        -EncodedCommand and its settings (pipe, log, size cap, mutex and
        event names) as one base64 string inside it: no value becomes code.
        Waits up to 10 seconds for the new logger to take its mutex.

        Errors: see Assert-PsDriverConsoleLogTarget and
        Stop-PsDriverConsoleLogger; the process cannot be created, or exits
        at once: InvalidOperation / PsDriver.ConsoleLoggerStartFailed.

    .PARAMETER VMId
        The Hyper-V VM id.

    .PARAMETER VMName
        The VM name, for messages.

    .PARAMETER PipePath
        The serial port pipe to read, \\.\pipe\<name>.

    .PARAMETER LogPath
        The log file (its folder must exist).

    .PARAMETER MaxLogBytes
        Size at which the log is rotated to LogPath.1.

    .PARAMETER Restart
        Stop a running logger of the VM first.

    .OUTPUTS
        started (a process was launched), running (a logger holds the VM's
        mutex now), pid (the launched process id, or null).
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
    param(
        [Parameter(Mandatory)]
        [string]$VMId,

        [Parameter(Mandatory)]
        [string]$VMName,

        [Parameter(Mandatory)]
        [string]$PipePath,

        [Parameter(Mandatory)]
        [string]$LogPath,

        [ValidateRange(4096, 1073741824)]
        [int]$MaxLogBytes = 524288,

        [switch]$Restart
    )
    $pipeName = Assert-PsDriverConsoleLogTarget -PipePath $PipePath -LogPath $LogPath
    $names = Get-PsDriverConsoleLoggerName -VMId $VMId
    $running = Test-PsDriverConsoleLogger -VMId $VMId
    if ($running -and -not $Restart) {
        return [ordered]@{
            started = $false
            running = $true
            pid     = $null
        }
    }
    if ($running) {
        Stop-PsDriverConsoleLogger -VMId $VMId -VMName $VMName
    }
    $settings = [ordered]@{
        pipe  = $pipeName
        log   = $LogPath
        max   = $MaxLogBytes
        vm    = $VMId.ToLowerInvariant()
        mutex = $names.Mutex
        stop  = $names.Stop
    }
    $settingsJson = ConvertTo-Json -InputObject $settings -Compress
    $settingsBase64 = [System.Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($settingsJson))
    # Base64 holds no quote: the settings cannot end the literal they are put in.
    $command = (Get-PsDriverConsoleReaderScript) + "`nInvoke-ConsoleLogReader -ConfigBase64 '" + $settingsBase64 + "'`n"
    $encodedCommand = [System.Convert]::ToBase64String([System.Text.Encoding]::Unicode.GetBytes($command))
    $systemRoot = $env:SystemRoot
    if ([string]::IsNullOrEmpty($systemRoot)) {
        $systemRoot = 'C:\Windows'
    }
    $powershellExe = Join-Path -Path $systemRoot -ChildPath 'System32\WindowsPowerShell\v1.0\powershell.exe'
    $commandLine = '"{0}" -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -WindowStyle Hidden -EncodedCommand {1}' -f $powershellExe, $encodedCommand

    $creation = Invoke-CimMethod -ClassName 'Win32_Process' -MethodName 'Create' -Arguments @{
        CommandLine      = $commandLine
        CurrentDirectory = (Split-Path -Path $LogPath -Parent)
    }
    if ([int]$creation.ReturnValue -ne 0) {
        throw (New-PsDriverErrorRecord -Message "Cannot start the console logger of virtual machine '$VMName': Win32_Process.Create returned $($creation.ReturnValue)." -Category InvalidOperation -ErrorId 'PsDriver.ConsoleLoggerStartFailed' -Target $VMName)
    }
    $processId = [int]$creation.ProcessId

    # Wait (up to 10 s) for the logger to take its mutex; a process that exits without it failed.
    $running = $false
    for ($wait = 0; $wait -lt 50; $wait++) {
        if (Test-PsDriverConsoleLogger -VMId $VMId) {
            $running = $true
            break
        }
        if ($null -eq (Get-Process -Id $processId -ErrorAction SilentlyContinue)) {
            if (Test-PsDriverConsoleLogger -VMId $VMId) {
                $running = $true
                break
            }
            throw (New-PsDriverErrorRecord -Message "The console logger of virtual machine '$VMName' (process $processId) exited at once." -Category InvalidOperation -ErrorId 'PsDriver.ConsoleLoggerStartFailed' -Target $VMName)
        }
        Start-Sleep -Milliseconds 200
    }
    [ordered]@{
        started = $true
        running = $running
        pid     = $processId
    }
}

function Get-PsDriverConsolePipePath {
    <#
    .SYNOPSIS
        The VM's logging pipe: a serial port pipe ending in _ro, else COM 1's, else the first; $null if none.

    .DESCRIPTION
        A pipe name ending in _ro is compute-hyperv's read-only logging pipe
        (psdriver connects COM 1 to \\.\pipe\<instance uuid>_ro).

    .PARAMETER VM
        The VM; its serial ports are read with Get-VMComPort.

    .PARAMETER Port
        The VM's serial ports, when the caller has them already (one
        Get-VMComPort call for many VMs); VM is then not asked.
    #>
    [CmdletBinding(DefaultParameterSetName = 'VM')]
    [OutputType([string])]
    param(
        [Parameter(Mandatory, ParameterSetName = 'VM')]
        [object]$VM,

        [Parameter(Mandatory, ParameterSetName = 'Port')]
        [AllowEmptyCollection()]
        [object[]]$Port
    )
    if ($PSCmdlet.ParameterSetName -eq 'VM') {
        $Port = @(Get-VMComPort -VM $VM)
    }
    $ports = @($Port | Where-Object { $null -ne $_ -and -not [string]::IsNullOrEmpty($_.Path) })
    $readOnly = @($ports | Where-Object { $_.Path -like '*_ro' })
    if ($readOnly.Count -gt 0) {
        return [string]$readOnly[0].Path
    }
    $first = @($ports | Where-Object { $_.Name -match '1$' })
    if ($first.Count -gt 0) {
        return [string]$first[0].Path
    }
    if ($ports.Count -gt 0) {
        return [string]$ports[0].Path
    }
    $null
}

function Invoke-PsDriverConsoleLogger {
    <#
    .SYNOPSIS
        Makes sure the VM's console logger runs; a failure is reported, never thrown.

    .DESCRIPTION
        Start-PsDriverConsoleLogger on PipePath or, when PipePath is not
        passed, on the VM's logging pipe (Get-PsDriverConsolePipePath). It is
        idempotent: nothing is launched while a logger holds the VM's mutex.
        Whatever keeps the logger from running (no serial port pipe, a
        missing log folder, a process that cannot start) is written as a
        warning and returned in error: a console log is never worth failing
        the operation that wants it (spawn, power on, host start).

    .PARAMETER VM
        The VM.

    .PARAMETER LogPath
        The log file (its folder must exist).

    .PARAMETER MaxLogBytes
        Size at which the log is rotated to LogPath.1.

    .PARAMETER PipePath
        The serial port pipe to read; null or empty: the VM has none. Not
        passed: the VM's logging pipe.

    .OUTPUTS
        pipe_path (null when none), log_path, started (a process was
        launched), running (a logger holds the VM's mutex now), pid (of the
        launched process, or null), error (why no logger runs, or null).
    #>
    [CmdletBinding()]
    [OutputType([System.Collections.Specialized.OrderedDictionary])]
    param(
        [Parameter(Mandatory)]
        [object]$VM,

        [Parameter(Mandatory)]
        [string]$LogPath,

        [ValidateRange(4096, 1073741824)]
        [int]$MaxLogBytes = 524288,

        [AllowNull()]
        [AllowEmptyString()]
        [string]$PipePath
    )
    $vmName = [string]$VM.Name
    $record = [ordered]@{
        pipe_path = $null
        log_path  = $LogPath
        started   = $false
        running   = $false
        pid       = $null
        error     = $null
    }
    try {
        if (-not $PSBoundParameters.ContainsKey('PipePath')) {
            $PipePath = Get-PsDriverConsolePipePath -VM $VM
        }
        if ([string]::IsNullOrEmpty($PipePath)) {
            $record.error = 'the virtual machine has no serial port connected to a named pipe'
            Write-Warning "No console log for '$vmName': $($record.error)."
            return $record
        }
        $record.pipe_path = $PipePath
        $launch = Start-PsDriverConsoleLogger -VMId $VM.Id.ToString() -VMName $vmName -PipePath $PipePath -LogPath $LogPath -MaxLogBytes $MaxLogBytes
        $record.started = [bool]$launch.started
        $record.running = [bool]$launch.running
        $record.pid = $launch.pid
    }
    catch {
        $record.error = $_.Exception.Message
        Write-Warning "The console logger of '$vmName' was not started: $($record.error)"
    }
    $record
}
