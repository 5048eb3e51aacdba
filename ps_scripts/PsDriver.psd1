@{
    # Module manifest of the shared psdriver helpers (PsDriver.psm1 and the topic
    # files under PsDriver\). FunctionsToExport lists the helpers the scripts in
    # this folder call; a test keeps the list in step with the scripts.
    RootModule           = 'PsDriver.psm1'
    ModuleVersion        = '0.1.0'
    GUID                 = 'dc6410b9-f895-4864-b187-655f04e723b6'
    Description          = 'Shared helpers of the psdriver Hyper-V scripts: values document, JSON envelope, VM lookup, NICs, drives, image cache, console logger.'
    PowerShellVersion    = '5.1'
    CompatiblePSEditions = @('Desktop', 'Core')
    FunctionsToExport    = @(
        'Assert-PsDriverConsoleLogTarget'
        'Assert-PsDriverNicHotplug'
        'ConvertFrom-PsDriverJson'
        'ConvertTo-PsDriverHyperVMac'
        'ConvertTo-PsDriverInstanceUuid'
        'Dismount-PsDriverAttachedDrive'
        'Find-PsDriverAttachedDrive'
        'Find-PsDriverVM'
        'Get-PsDriverAccessVlanId'
        'Get-PsDriverAttachedDrive'
        'Get-PsDriverBootSlot'
        'Get-PsDriverCachedVhd'
        'Get-PsDriverConsolePipePath'
        'Get-PsDriverFreeDriveSlot'
        'Get-PsDriverImageFile'
        'Get-PsDriverImageUsage'
        'Get-PsDriverNicRecord'
        'Get-PsDriverPathKey'
        'Get-PsDriverRescueRecord'
        'Get-PsDriverSecureBootTemplate'
        'Get-PsDriverVM'
        'Get-PsDriverVMState'
        'Get-PsDriverVlanMap'
        'Invoke-PsDriverConsoleLogger'
        'Invoke-PsDriverNicChange'
        'Invoke-PsDriverScript'
        'Invoke-PsDriverScriptBlock'
        'Mount-PsDriverConfigDrive'
        'New-PsDriverDriveSlot'
        'New-PsDriverErrorRecord'
        'Remove-PsDriverVM'
        'Start-PsDriverConsoleLogger'
        'Start-PsDriverVM'
        'Stop-PsDriverConsoleLogger'
        'Stop-PsDriverVM'
        'Test-PsDriverAbsolutePath'
        'Test-PsDriverConsoleLogger'
        'Test-PsDriverSamePath'
    )
    CmdletsToExport      = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
}
