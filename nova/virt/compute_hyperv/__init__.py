"""Import shim for ``compute_driver = compute_hyperv.[cluster.]driver.<Class>``.

Nova resolves compute_driver under ``nova.virt``; the code lives in the
top-level ``psdriver`` package. This package only re-exports it.
"""
