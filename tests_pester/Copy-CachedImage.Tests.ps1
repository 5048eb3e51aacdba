BeforeDiscovery {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $Examples = @(Get-TestContractExample -ScriptName 'Copy-CachedImage')
}

BeforeAll {
    . (Join-Path -Path $PSScriptRoot -ChildPath 'PsDriverTestHelpers.ps1')
    $script:ScriptPath = Get-TestScriptPath -ScriptName 'Copy-CachedImage'
    $script:ResultSchema = Get-TestResultSchema -ScriptName 'Copy-CachedImage'
    Import-PsDriverModule

    # A disk file whose content is the metadata the fake Get-VHD reports, so that the real
    # Copy-Item and Move-Item carry it along with the file.
    function New-FakeDisk {
        param(
            [Parameter(Mandatory)]
            [string]$Path,

            [long]$Size = 10GB,

            [string]$Type = 'Dynamic'
        )
        $format = 'VHD'
        if ($Path -match 'x$') {
            $format = 'VHDX'
        }
        $null = New-Item -ItemType File -Path $Path -Force
        @{ Size = $Size; VhdFormat = $format; VhdType = $Type } | ConvertTo-Json -Compress |
            Set-Content -LiteralPath $Path -NoNewline
        $Path
    }

    function Get-FakeDisk {
        param(
            [Parameter(Mandatory)]
            [string]$Path
        )
        Get-Content -LiteralPath $Path -Raw | ConvertFrom-Json
    }

    Add-CommandStub -Name 'Get-VHD' -Parameter 'Path'
    Add-CommandStub -Name 'Resize-VHD' -Parameter 'Path', 'SizeBytes'
}

AfterAll {
    Remove-CommandStub
}

Describe 'Copy-CachedImage' {
    BeforeEach {
        # Shared with the mocks. Mock bodies run inside the tested script's scopes (its $script: scope
        # and StrictMode), so they reach this state through one unqualified, uniquely named variable.
        $script:PsdTest = @{
            Failure = $null
        }
        $script:Base = Join-Path -Path $TestDrive -ChildPath ([guid]::NewGuid().ToString('N'))
        $null = New-Item -ItemType Directory -Path $script:Base -Force

        Mock Get-VHD {
            if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) {
                throw "'$Path' was not found."
            }
            $disk = Get-Content -LiteralPath $Path -Raw | ConvertFrom-Json
            [pscustomobject]@{ Path = $Path; Size = [long]$disk.Size; VhdFormat = $disk.VhdFormat; VhdType = $disk.VhdType }
        }
        Mock Resize-VHD {
            if ($null -ne $PsdTest.Failure) {
                throw $PsdTest.Failure
            }
            $disk = Get-Content -LiteralPath $Path -Raw | ConvertFrom-Json
            $disk.Size = $SizeBytes
            $disk | ConvertTo-Json -Compress | Set-Content -LiteralPath $Path -NoNewline
        }
    }

    It 'example <Index> matches the contract' -ForEach $Examples {
        $source = ConvertTo-TestPath -Path $Example['SourcePath'] -Root $script:Base
        $destination = ConvertTo-TestPath -Path $Example['DestinationPath'] -Root $script:Base
        $null = New-FakeDisk -Path $source -Size 10GB
        $params = @{ SourcePath = $source; DestinationPath = $destination }
        if ($Example.ContainsKey('SizeBytes')) {
            $params['SizeBytes'] = $Example['SizeBytes']
        }

        $result = & $script:ScriptPath @params

        Assert-MatchesContract -Result $result
        Test-Path -LiteralPath $destination | Should -BeTrue
    }

    It 'copies and grows the image under a temporary name, then renames it' {
        $source = New-FakeDisk -Path (Join-Path -Path $script:Base -ChildPath 'img.vhd') -Size 10GB
        $destination = Join-Path -Path $script:Base -ChildPath 'img_40.vhd'

        $result = & $script:ScriptPath -SourcePath $source -DestinationPath $destination -SizeBytes 40GB

        Assert-MatchesContract -Result $result
        $result.created | Should -BeTrue
        $result.path | Should -Be $destination
        $result.source_path | Should -Be $source
        $result.format | Should -Be 'vhd'
        $result.vhd_type | Should -Be 'Dynamic'
        $result.virtual_size_bytes | Should -Be 40GB
        (Get-FakeDisk -Path $destination).Size | Should -Be 40GB
        (Get-FakeDisk -Path $source).Size | Should -Be 10GB
        Should -Invoke Resize-VHD -Times 1 -Exactly -ParameterFilter { $Path -like '*img_40.partial-*.vhd' -and $SizeBytes -eq 40GB }
        @(Get-ChildItem -LiteralPath $script:Base -Name | Sort-Object) | Should -Be @('img.vhd', 'img_40.vhd')
    }

    It 'copies without resizing when the size is already right or not given' {
        $source = New-FakeDisk -Path (Join-Path -Path $script:Base -ChildPath 'img.vhdx') -Size 20GB -Type 'Fixed'

        $same = & $script:ScriptPath -SourcePath $source -DestinationPath (Join-Path -Path $script:Base -ChildPath 'img_20.vhdx') -SizeBytes 20GB
        $plain = & $script:ScriptPath -SourcePath $source -DestinationPath (Join-Path -Path $script:Base -ChildPath 'copy.vhdx')

        $same.virtual_size_bytes | Should -Be 20GB
        $same.vhd_type | Should -Be 'Fixed'
        $plain.virtual_size_bytes | Should -Be 20GB
        $plain.format | Should -Be 'vhdx'
        Should -Invoke Resize-VHD -Times 0 -Exactly
    }

    It 'reports an existing copy without copying again' {
        $source = New-FakeDisk -Path (Join-Path -Path $script:Base -ChildPath 'img.vhd') -Size 10GB
        $destination = New-FakeDisk -Path (Join-Path -Path $script:Base -ChildPath 'img_40.vhd') -Size 40GB -Type 'Fixed'

        $result = & $script:ScriptPath -SourcePath $source -DestinationPath $destination -SizeBytes 40GB

        Assert-MatchesContract -Result $result
        $result.created | Should -BeFalse
        $result.vhd_type | Should -Be 'Fixed'
        $result.virtual_size_bytes | Should -Be 40GB
        Should -Invoke Resize-VHD -Times 0 -Exactly
        @(Get-ChildItem -LiteralPath $script:Base).Count | Should -Be 2
    }

    It 'never shrinks, and says both sizes' {
        $source = New-FakeDisk -Path (Join-Path -Path $script:Base -ChildPath 'img.vhd') -Size 40GB
        $destination = Join-Path -Path $script:Base -ChildPath 'img_20.vhd'

        $failure = { & $script:ScriptPath -SourcePath $source -DestinationPath $destination -SizeBytes 20GB } |
            Should -Throw -ErrorId 'PsDriver.RootDiskTooSmall' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $failure.Exception.Message | Should -BeLike "*$(20GB) bytes*"
        $failure.Exception.Message | Should -BeLike "*$(40GB) bytes*"
        Test-Path -LiteralPath $destination | Should -BeFalse
    }

    It 'reports a missing source' {
        $failure = { & $script:ScriptPath -SourcePath (Join-Path -Path $script:Base -ChildPath 'none.vhd') -DestinationPath (Join-Path -Path $script:Base -ChildPath 'none_40.vhd') -SizeBytes 40GB } |
            Should -Throw -ErrorId 'PsDriver.ImageNotFound' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'refuses <Source> -> <Destination>' -ForEach @(
        @{ Source = 'img.vhd'; Destination = 'img_40.vhdx' }
        @{ Source = 'img.iso'; Destination = 'img_40.iso' }
        @{ Source = 'img.vhd'; Destination = 'img_40' }
    ) {
        $source = New-FakeDisk -Path (Join-Path -Path $script:Base -ChildPath $Source)

        { & $script:ScriptPath -SourcePath $source -DestinationPath (Join-Path -Path $script:Base -ChildPath $Destination) -SizeBytes 40GB } |
            Should -Throw -ErrorId 'PsDriver.InvalidImagePath'
    }

    It 'refuses a differencing source' {
        $source = New-FakeDisk -Path (Join-Path -Path $script:Base -ChildPath 'img.vhd') -Type 'Differencing'

        { & $script:ScriptPath -SourcePath $source -DestinationPath (Join-Path -Path $script:Base -ChildPath 'img_40.vhd') -SizeBytes 40GB } |
            Should -Throw -ErrorId 'PsDriver.InvalidImagePath'
    }

    It 'refuses a negative size' {
        $source = New-FakeDisk -Path (Join-Path -Path $script:Base -ChildPath 'img.vhd')

        { & $script:ScriptPath -SourcePath $source -DestinationPath (Join-Path -Path $script:Base -ChildPath 'img_40.vhd') -SizeBytes -1 } |
            Should -Throw -ErrorId 'PsDriver.InvalidDiskSize'
    }

    It 'removes the temporary copy when growing it fails' {
        $source = New-FakeDisk -Path (Join-Path -Path $script:Base -ChildPath 'img.vhd') -Size 10GB
        $destination = Join-Path -Path $script:Base -ChildPath 'img_40.vhd'
        $PsdTest.Failure = 'There is not enough space on the disk.'

        $failure = { & $script:ScriptPath -SourcePath $source -DestinationPath $destination -SizeBytes 40GB } |
            Should -Throw -ErrorId 'PsDriver.ImageCopyFailed' -PassThru

        $failure.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $failure.Exception.Message | Should -BeLike '*not enough space*'
        @(Get-ChildItem -LiteralPath $script:Base -Name) | Should -Be @('img.vhd')
    }

    It 'reports the copy another service made meanwhile' {
        $source = New-FakeDisk -Path (Join-Path -Path $script:Base -ChildPath 'img.vhd') -Size 10GB
        $destination = Join-Path -Path $script:Base -ChildPath 'img_40.vhd'
        $PsdTest.Destination = $destination
        Mock Move-Item {
            @{ Size = 40GB; VhdFormat = 'VHD'; VhdType = 'Dynamic' } | ConvertTo-Json -Compress |
                Set-Content -LiteralPath $PsdTest.Destination -NoNewline
            throw [System.IO.IOException]::new('Cannot create a file when that file already exists.')
        }

        $result = & $script:ScriptPath -SourcePath $source -DestinationPath $destination -SizeBytes 40GB

        Assert-MatchesContract -Result $result
        $result.created | Should -BeFalse
        @(Get-ChildItem -LiteralPath $script:Base -Name | Sort-Object) | Should -Be @('img.vhd', 'img_40.vhd')
    }

    It 'changes nothing with -WhatIf' {
        $source = New-FakeDisk -Path (Join-Path -Path $script:Base -ChildPath 'img.vhd') -Size 10GB
        $destination = Join-Path -Path $script:Base -ChildPath 'img_40.vhd'

        $result = & $script:ScriptPath -SourcePath $source -DestinationPath $destination -SizeBytes 40GB -WhatIf

        Assert-MatchesContract -Result $result
        $result.created | Should -BeFalse
        $result.virtual_size_bytes | Should -Be 40GB
        Test-Path -LiteralPath $destination | Should -BeFalse
        Should -Invoke Resize-VHD -Times 0 -Exactly
    }
}
