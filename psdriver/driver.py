"""Nova compute driver for Hyper-V, driven through PowerShell.

``[DEFAULT] compute_driver = psdriver.driver.HyperVDriver`` (or the
compute-hyperv name ``compute_hyperv.driver.HyperVDriver``) loads this class
through the shims under ``nova/virt/``.
"""

from nova.virt import driver

import psdriver.conf

CONF = psdriver.conf.CONF


class HyperVDriver(driver.ComputeDriver):
    """Hyper-V compute driver."""

    capabilities = dict(driver.ComputeDriver.capabilities)

    def __init__(self, virtapi):
        super().__init__(virtapi)
