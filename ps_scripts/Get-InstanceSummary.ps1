<#
.SYNOPSIS
    Lists every virtual machine on this Hyper-V host in one call.

.DESCRIPTION
    Returns a short record for each VM on the host: name, Hyper-V VM id, the
    OpenStack instance UUID read from the VM's Notes, state, vCPU count,
    memory and uptime. It is built for the periodic tasks of a compute
    service (listing instances and their UUIDs, power-state sync, resource
    tracking): one Get-VM call and no per-VM cmdlet call, so the cost stays
    flat with a thousand VMs.

    Instance UUID in the VM Notes: the first line of a VM's Notes holds the
    instance UUID in its canonical form (36 characters, 8-4-4-4-12 hex
    digits, lower case), for example
        4f5c9a1e-2b7d-4c3e-9f10-6a8b2c4d5e6f
    possibly followed by further lines. This is what compute-hyperv wrote,
    so VMs it created are recognised. When reading, surrounding whitespace,
    upper case hex digits, enclosing braces and a leading
    "openstack-instance-uuid:" label are tolerated; writers use the bare
    form. A VM whose first Notes line is not a UUID is not an OpenStack
    instance: its instance_uuid is null.

.PARAMETER NovaOnly
    Return only the VMs whose Notes carry an instance UUID.

.EXAMPLE
    .\Get-InstanceSummary.ps1 -NovaOnly

    Lists the OpenStack instances on this host.

.OUTPUTS
    One object: vms = list of {name, vm_id, instance_uuid (string or null),
    state (Hyper-V VMState name: Off, Running, Paused, Saved, Starting,
    Stopping, Saving, Pausing, Resuming, Reset, Other, ...), vcpus,
    memory_mb (currently assigned, 0 when off), memory_startup_mb,
    uptime_seconds, generation}.
#>
[CmdletBinding()]
param(
    [switch]$NovaOnly
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'ConvertTo-PsDriverInstanceUuid' -ErrorAction SilentlyContinue)) {
    Import-Module -Name (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriver.psd1') -Verbose:$false
}

$vms = [System.Collections.Generic.List[object]]::new()
foreach ($vm in @(Hyper-V\Get-VM)) {
    $uuid = ConvertTo-PsDriverInstanceUuid -Notes $vm.Notes
    if ($NovaOnly -and $null -eq $uuid) {
        continue
    }
    $record = [ordered]@{
        name              = [string]$vm.Name
        vm_id             = $vm.Id.ToString()
        instance_uuid     = $uuid
        state             = $vm.State.ToString()
        vcpus             = [int]$vm.ProcessorCount
        memory_mb         = [long]($vm.MemoryAssigned / 1MB)
        memory_startup_mb = [long]($vm.MemoryStartup / 1MB)
        uptime_seconds    = [long][math]::Floor($vm.Uptime.TotalSeconds)
        generation        = [int]$vm.Generation
    }
    $vms.Add($record)
}

[ordered]@{
    vms = @($vms)
}
