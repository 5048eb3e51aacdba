"""Simulator handlers, one module per area; each module registers its scripts.

Every module in this package is imported when the first call is dispatched,
so a new ``handlers/<area>.py`` needs no registration list.  See
:mod:`psdriver.sim.dispatch` for ``@handler`` and ``@prepare``.
"""
