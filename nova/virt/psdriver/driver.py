from psdriver.driver import HyperVDriver

__all__ = ['HyperVDriver']
