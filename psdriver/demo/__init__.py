"""``psdriver demo``: the real driver through an instance's life on the simulated host.

:mod:`~psdriver.demo.steps` lists the steps (one nova-compute operation each),
:mod:`~psdriver.demo.nova_objects` builds the Nova objects they pass,
:mod:`~psdriver.demo.stand_ins` answers the few lookups that would leave the
process (Glance, Nova's database, Neutron), :mod:`~psdriver.demo.calls` and
:mod:`~psdriver.demo.report` show what happens, and
:func:`psdriver.demo.runner.run` puts them together.
"""
