# Open vSwitch on Windows: the integration bridge ports of instance network
# adapters (VIF type ovs), set with ovs-vsctl as os-vif did on Windows.
# ovs-vsctl is a native program, called with & and an argument array: the
# values are arguments, never script text.

function Resolve-PsDriverOvsVsctl {
    <#
    .SYNOPSIS
        The full path of ovs-vsctl on this host.

    .DESCRIPTION
        Path empty or null: ovs-vsctl.exe found on PATH. Not found: an error
        of category ObjectNotFound with error id PsDriver.OvsVsctlNotFound.

    .PARAMETER Path
        ovs-vsctl as configured ([hyperv] ovs_vsctl_path), or null.
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Path
    )
    $wanted = $Path
    if ([string]::IsNullOrEmpty($wanted)) {
        $wanted = 'ovs-vsctl.exe'
    }
    $command = @(Get-Command -Name $wanted -CommandType Application -ErrorAction SilentlyContinue) | Select-Object -First 1
    if ($null -eq $command) {
        throw (New-PsDriverErrorRecord -Message "Open vSwitch's ovs-vsctl was not found on this host (looked for '$wanted'); install Open vSwitch for Windows or set [hyperv] ovs_vsctl_path." -Category ObjectNotFound -ErrorId 'PsDriver.OvsVsctlNotFound' -Target $wanted)
    }
    [string]$command.Path
}

function Invoke-PsDriverOvsVsctl {
    <#
    .SYNOPSIS
        Runs ovs-vsctl with an argument array; a non-zero exit code is an
        error of category InvalidOperation with error id
        PsDriver.OvsVsctlFailed carrying what ovs-vsctl wrote.

    .PARAMETER OvsVsctl
        The full path from Resolve-PsDriverOvsVsctl.

    .PARAMETER ArgumentList
        The arguments, one element each.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$OvsVsctl,

        [Parameter(Mandatory)]
        [string[]]$ArgumentList
    )
    # Windows PowerShell turns each stderr line of a native program into an
    # error record; with Stop the first would end the script before the exit
    # code is read.
    $ErrorActionPreference = 'Continue'
    $output = @(& $OvsVsctl @ArgumentList 2>&1 | ForEach-Object { [string]$_ })
    $exitCode = $LASTEXITCODE
    if ($exitCode -ne 0) {
        $text = ($output -join ' ').Trim()
        throw (New-PsDriverErrorRecord -Message "ovs-vsctl $($ArgumentList -join ' ') failed (exit code $exitCode): $text" -Category InvalidOperation -ErrorId 'PsDriver.OvsVsctlFailed' -Target $OvsVsctl)
    }
}

function Test-PsDriverOvsName {
    <#
    .SYNOPSIS
        Whether a bridge or port name is one ovs-vsctl takes as a plain word.

    .PARAMETER Name
        The name.
    #>
    [CmdletBinding()]
    param(
        [AllowNull()]
        [AllowEmptyString()]
        [string]$Name
    )
    -not [string]::IsNullOrEmpty($Name) -and $Name -match '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'
}

function Add-PsDriverOvsPort {
    <#
    .SYNOPSIS
        Adds a VM network adapter to an Open vSwitch bridge with the
        external ids Neutron's OVS agent reads (idempotent: --may-exist).

    .PARAMETER OvsVsctl
        The full path from Resolve-PsDriverOvsVsctl.

    .PARAMETER Bridge
        The integration bridge (br-int). A missing bridge is refused by
        ovs-vsctl (PsDriver.OvsVsctlFailed).

    .PARAMETER Port
        The port and interface name: the network adapter's name, the Neutron
        port id (also the iface-id).

    .PARAMETER MacAddress
        The adapter's MAC address, 12 hex digits (attached-mac is written
        lower case, colon separated).

    .PARAMETER InstanceUuid
        The instance UUID (vm-uuid).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$OvsVsctl,

        [Parameter(Mandatory)]
        [string]$Bridge,

        [Parameter(Mandatory)]
        [string]$Port,

        [Parameter(Mandatory)]
        [ValidatePattern('^[0-9A-Fa-f]{12}$')]
        [string]$MacAddress,

        [Parameter(Mandatory)]
        [guid]$InstanceUuid
    )
    foreach ($name in @($Bridge, $Port)) {
        if (-not (Test-PsDriverOvsName -Name $name)) {
            throw (New-PsDriverErrorRecord -Message "'$name' is not an Open vSwitch bridge or port name psdriver uses (letters, digits, '_', '.', '-')." -Category InvalidArgument -ErrorId 'PsDriver.InvalidOvsName' -Target $name)
        }
    }
    $mac = (($MacAddress.ToLowerInvariant() -split '(..)' | Where-Object { $_ }) -join ':')
    $arguments = @(
        '--may-exist', 'add-port', $Bridge, $Port,
        '--', 'set', 'Interface', $Port,
        "external-ids:iface-id=$Port",
        "external-ids:attached-mac=$mac",
        'external-ids:iface-status=active',
        "external-ids:vm-uuid=$($InstanceUuid.ToString())"
    )
    Invoke-PsDriverOvsVsctl -OvsVsctl $OvsVsctl -ArgumentList $arguments
}

function Remove-PsDriverOvsPort {
    <#
    .SYNOPSIS
        Deletes a port from whichever Open vSwitch bridge holds it; a port
        that does not exist is fine (--if-exists).

    .PARAMETER OvsVsctl
        The full path from Resolve-PsDriverOvsVsctl.

    .PARAMETER Port
        The port name (the Neutron port id).
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)]
        [string]$OvsVsctl,

        [Parameter(Mandatory)]
        [string]$Port
    )
    if (-not (Test-PsDriverOvsName -Name $Port)) {
        throw (New-PsDriverErrorRecord -Message "'$Port' is not an Open vSwitch port name psdriver uses (letters, digits, '_', '.', '-')." -Category InvalidArgument -ErrorId 'PsDriver.InvalidOvsName' -Target $Port)
    }
    Invoke-PsDriverOvsVsctl -OvsVsctl $OvsVsctl -ArgumentList @('--if-exists', 'del-port', $Port)
}
