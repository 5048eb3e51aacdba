# PsDriver helpers: errors the scripts raise themselves.
# Dot-sourced by PsDriver.psm1; the bridge inlines the functions of this file that a
# wrapped script uses (psdriver/bridge/helpers.py). Functions only: no other statements.

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
