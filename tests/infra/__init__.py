"""Test and benchmark infrastructure, not part of the installed product.

* :mod:`tests.infra.wsman_endpoint`: a local WS-Man/PSRP server (pypsrp talks
  to it as to a Windows host);
* :mod:`tests.infra.fake_pwsh`: a stand-in ``pwsh`` executable, one process
  per call (``-File``) or a kept out-of-process PSRP server (``-s``);
* :mod:`tests.infra.runspace`: what a host runspace does with the bridge's
  loader (scripts defined once per runspace), on the simulated host.
"""
