# PsDriver helpers: the values document, JSON in and out, and the envelope a wrapped script prints.
# Dot-sourced by PsDriver.psm1; the bridge inlines the functions of this file that a
# wrapped script uses (psdriver/bridge/helpers.py). Functions only: no other statements.

function Initialize-PsDriverSession {
    <#
    .SYNOPSIS
        Removes the Windows PowerShell 5.1 type data that makes ConvertTo-Json
        write arrays as {"value": [...], "Count": n}.
    #>
    [CmdletBinding()]
    param()
    if ($PSVersionTable.PSVersion.Major -lt 6) {
        Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue -Confirm:$false
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
        Decodes the values document into a hashtable for splatting.

    .DESCRIPTION
        The document is one of: UTF-8 JSON text (it starts with '{'; sent as a
        PSRP string, so it is not base64-encoded a second time); 'deflate:'
        and base64 of raw DEFLATE (RFC 1951) compressed UTF-8 JSON (large
        documents); or base64 of UTF-8 JSON (a local process's stdin).
        System.IO.Compression.DeflateStream exists in .NET Framework 4.5+
        (Windows PowerShell 5.1) and .NET 6+ (PowerShell 7); ZLibStream only
        in .NET 6+, so the bridge sends raw DEFLATE, not zlib.
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
    $strict = [System.Text.UTF8Encoding]::new($false, $true)
    if ($trimmed.StartsWith('{')) {
        $json = $trimmed
    }
    elseif ($trimmed.StartsWith('deflate:')) {
        $packed = [System.IO.MemoryStream]::new([System.Convert]::FromBase64String($trimmed.Substring(8)))
        $inflater = [System.IO.Compression.DeflateStream]::new($packed, [System.IO.Compression.CompressionMode]::Decompress)
        $unpacked = [System.IO.MemoryStream]::new()
        try {
            $inflater.CopyTo($unpacked)
        }
        finally {
            $inflater.Dispose()
        }
        $json = $strict.GetString($unpacked.ToArray())
    }
    else {
        $json = $strict.GetString([System.Convert]::FromBase64String($trimmed))
    }
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
    $json = ConvertTo-Json -InputObject $Envelope -Depth 100 -Compress
    # U+FFFE and U+FFFF are valid in JSON but not in XML 1.0, which carries the
    # result over PSRP: write them as JSON escapes (they only occur in strings).
    return $json.Replace([string][char]0xFFFE, '\ufffe').Replace([string][char]0xFFFF, '\uffff')
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
