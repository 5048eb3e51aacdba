<#
    A differencing-disk chain on the fake SMB share, for the assisted volume
    snapshot scripts: $PsdTest.Vhds maps each file to its parent ('' for a
    base disk) and $PsdTest.Files (what Test-Path sees) follows it. Merge-VHD
    refuses while the VM is not Off, as Hyper-V refuses merging open files.
    Call Register-FakeVhdChain after Register-FakeStorageHost.
#>

function Register-FakeVhdChain {
    param(
        # file names, base first; the last one is attached to the VM
        [Parameter(Mandatory)]
        [string[]]$Link,

        [string]$State = 'Off'
    )
    $share = '\\fs01.example.org\cinder'
    $PsdTest.State = $State
    $PsdTest.Vhds = [ordered]@{}
    $parent = ''
    foreach ($name in $Link) {
        $path = "$share\$name"
        $PsdTest.Vhds[$path] = $parent
        $parent = $path
    }
    $PsdTest.Files = @($PsdTest.Vhds.Keys)
    $PsdTest.Drives = @([pscustomobject]@{
            Key = 1; Path = $parent; DiskNumber = $null; ControllerType = 'SCSI'
            ControllerNumber = 0; ControllerLocation = 1; MaximumIOPS = 0
        })

    Register-TestMock -CommandName 'Get-VHD' -MockWith {
        if (-not $PsdTest.Vhds.Contains($Path)) {
            throw "The system cannot find the file '$Path'."
        }
        [pscustomobject]@{ Path = $Path; ParentPath = $PsdTest.Vhds[$Path]; Size = [long]2147483648 }
    }
    Register-TestMock -CommandName 'New-VHD' -MockWith {
        $PsdTest.Vhds[$Path] = $ParentPath
        $PsdTest.Files = @($PsdTest.Vhds.Keys)
        [pscustomobject]@{ Path = $Path; ParentPath = $ParentPath }
    }
    Register-TestMock -CommandName 'Merge-VHD' -MockWith {
        if ($PsdTest.State -ne 'Off') {
            throw (New-PsDriverErrorRecord -Message "The process cannot access the file '$Path' because it is being used by another process." -Category ResourceBusy -ErrorId 'FileInUse' -Target $Path)
        }
        $into = $PsdTest.Vhds[$Path]
        foreach ($child in @($PsdTest.Vhds.Keys | Where-Object { $PsdTest.Vhds[$_] -eq $Path })) {
            $PsdTest.Vhds[$child] = $into
        }
        $PsdTest.Vhds.Remove($Path)
        $PsdTest.Files = @($PsdTest.Vhds.Keys)
    }
    Register-TestMock -CommandName 'Move-Item' -Scope Script -MockWith {
        $PsdTest.Vhds[$Destination] = $PsdTest.Vhds[$LiteralPath]
        $PsdTest.Vhds.Remove($LiteralPath)
        $PsdTest.Files = @($PsdTest.Vhds.Keys)
    }
    Register-TestMock -CommandName 'Remove-Item' -Scope Script -ParameterFilter { $null -ne $LiteralPath } -MockWith {
        $PsdTest.Vhds.Remove($LiteralPath)
        $PsdTest.Files = @($PsdTest.Vhds.Keys)
    }
}
