from psdriver.cluster.driver import HyperVClusterDriver

__all__ = ['HyperVClusterDriver']
