"""A fleet of Hyper-V hosts from one management node: one nova-compute service per host.

``inventory`` reads and validates the inventory, ``render`` writes each
host's nova.conf fragment and the systemd units, ``check`` tests every host's
connection in parallel, ``status`` shows each service in systemd and in nova;
``command`` is the ``psdriver fleet`` command group.
"""
