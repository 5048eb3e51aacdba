"""Nova compute driver for Hyper-V failover clusters.

``[DEFAULT] compute_driver = psdriver.cluster.driver.HyperVClusterDriver``
(or ``compute_hyperv.cluster.driver.HyperVClusterDriver``).
"""

from psdriver import driver


class HyperVClusterDriver(driver.HyperVDriver):
    """Hyper-V compute driver for clustered hosts."""

    #: Pass-through disks (iSCSI, Fibre Channel) cannot fail over with their VM.
    VOLUME_TYPES = ('smbfs',)
