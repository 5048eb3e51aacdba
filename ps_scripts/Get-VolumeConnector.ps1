<#
.SYNOPSIS
    Reports what Cinder needs to export a volume to this host: the iSCSI
    initiator name, the Fibre Channel HBA ports and the state of Multipath I/O.

.DESCRIPTION
    One call gathers the initiator ports (Get-InitiatorPort: the iSCSI
    initiator's node address is its IQN; each Fibre Channel port gives its
    WWPN and WWNN) and Multipath I/O: whether the MPIO feature is installed
    (its module is present) and which bus types it claims automatically
    (Get-MSDSMAutomaticClaimSettings), plus the hardware ids it claims
    (Get-MSDSMSupportedHW, how Fibre Channel arrays are claimed).

    Nothing is changed. A host without the iSCSI initiator service running
    reports iscsi_initiator null.

.EXAMPLE
    .\Get-VolumeConnector.ps1

.OUTPUTS
    One object: hostname; iscsi_initiator (IQN or null); fc_ports
    [{wwpn, wwnn}] (16 lower-case hex digits); iscsi_initiators (instance
    names of the iSCSI initiator ports, for iscsi_initiator_list); mpio
    {installed, claimed_bus_types (iSCSI, SAS), supported_hardware (number
    of hardware ids MSDSM claims)}.
#>
[CmdletBinding()]
param()

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$iqn = $null
$fcPorts = [System.Collections.Generic.List[object]]::new()
$iscsiInitiators = [System.Collections.Generic.List[string]]::new()
foreach ($port in @(Storage\Get-InitiatorPort)) {
    $kind = [string]$port.ConnectionType
    if ($kind -eq 'iSCSI') {
        if ($null -eq $iqn -and -not [string]::IsNullOrEmpty($port.NodeAddress)) {
            $iqn = [string]$port.NodeAddress
        }
        $iscsiInitiators.Add([string]$port.InstanceName)
    }
    elseif ($kind -eq 'Fibre Channel') {
        $fcPorts.Add([ordered]@{
                wwpn = ([string]$port.PortAddress).Replace(':', '').ToLowerInvariant()
                wwnn = ([string]$port.NodeAddress).Replace(':', '').ToLowerInvariant()
            })
    }
}

$mpioInstalled = $null -ne (Get-Module -ListAvailable -Name 'MPIO')
$claimed = [System.Collections.Generic.List[string]]::new()
$hardware = 0
if ($mpioInstalled) {
    $settings = MPIO\Get-MSDSMAutomaticClaimSettings
    foreach ($busType in @($settings.Keys)) {
        if ($settings[$busType]) {
            $claimed.Add([string]$busType)
        }
    }
    $hardware = @(MPIO\Get-MSDSMSupportedHW).Count
}

[ordered]@{
    hostname         = [System.Net.Dns]::GetHostName()
    iscsi_initiator  = $iqn
    fc_ports         = @($fcPorts)
    iscsi_initiators = @($iscsiInitiators)
    mpio             = [ordered]@{
        installed          = $mpioInstalled
        claimed_bus_types  = @($claimed)
        supported_hardware = $hardware
    }
}
