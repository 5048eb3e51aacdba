"""Nova's in-process functional harness wired to psdriver on simulated Hyper-V hosts.

Real nova API, conductor, scheduler and placement (sqlite, wsgi-intercept);
each compute service loads ``psdriver.driver.HyperVDriver`` through the
``nova/virt/psdriver`` shim and drives its own simulated host
(``[powershell] transport = sim``; :func:`psdriver.bridge.factory.build_runner`
names the host after ``CONF.host``, which nova's ``start_service`` sets to
the service's host, so ``host1`` manages the node ``host1``).

Work-arounds for running nova's harness from another project under pytest
(see the nova harness notes kept with the design documents):

* the api-paste.ini of a wheel install is under ``<sys.prefix>/etc/nova``;
* ``nova.test.TestCase._clear_attrs`` deletes the test method pytest put on
  the instance, so it is turned off here.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from typing import Any, Iterator
from unittest import mock

import fixtures

from nova import context as nova_context
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import integrated_helpers
from oslo_config import cfg
from oslo_utils.fixture import uuidsentinel as uuids

import psdriver.conf  # noqa: F401  (registers [powershell] and [hyperv])
from psdriver import coordination
from psdriver.sim import SimHost, image_files
from psdriver.sim.fabric import Fabric

CONF = cfg.CONF

INSTANCES_PATH = 'C:\\OpenStack\\Instances'
#: Where the simulated hosts have Open vSwitch for Windows's ovs-vsctl (also on PATH).
OVS_VSCTL = 'C:\\Program Files\\Cloudbase Solutions\\Open vSwitch\\bin\\ovs-vsctl.exe'
GIB = 1024 ** 3
#: Thread name of psdriver's lifecycle event poller (psdriver.ops.eventhandler).
EVENT_THREAD = 'psdriver-lifecycle'
#: Virtual size of the VHDX image served by the Glance stand-in.
IMAGE_VIRTUAL_SIZE = 1 * GIB


class PsDriverTestBase(integrated_helpers._IntegratedTestBase):
    """One nova deployment; compute service ``host1`` runs psdriver on a simulated host."""

    ADMIN_API = True
    microversion = 'latest'
    #: Compute services started by setUp.
    COMPUTE_HOSTS = ('host1',)
    #: Simulated hosts that differ from the default one: host -> SimHost capacity.
    SIM_HOSTS: dict[str, dict[str, Any]] = {}
    #: Put every compute's simulated host in one fabric (hosts that see each
    #: other, psdriver.sim.fabric) with these shared volumes (root -> GiB);
    #: None: independent hosts.
    FABRIC: dict[str, float] | None = None
    #: ``instances_path`` of every compute (a UNC path on a FABRIC share makes it shared).
    INSTANCES = INSTANCES_PATH
    #: ``[workarounds] handle_virt_lifecycle_events`` (the driver's event poller).
    LIFECYCLE_EVENTS = True
    #: ``[DEFAULT] compute_driver`` of every compute service.
    COMPUTE_DRIVER = 'psdriver.driver.HyperVDriver'

    def setUp(self) -> None:
        self.flags(api_paste_config=os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini'),
                   group='wsgi')
        self.flags(compute_driver=self.COMPUTE_DRIVER)
        self.flags(transport='sim', group='powershell')
        self.flags(instances_path=self.INSTANCES, use_cow_images=True)
        self.flags(handle_virt_lifecycle_events=self.LIFECYCLE_EVENTS, group='workarounds')
        # The driver's lifecycle poller wakes up often enough for a test.
        self.flags(power_state_event_polling_interval=1, group='hyperv')
        super().setUp()
        self._keep_uploaded_image_data()
        self.vhdx_image_id = self._register_vhdx_image()

    def _clear_attrs(self) -> None:
        """Keep pytest's attributes: nova's clean-up would delete the test method."""

    # -- services ---------------------------------------------------------------------

    def _setup_services(self):
        # Image locks go to a tooz file backend in a fresh folder, not to the
        # compute-hyperv default (a Windows path); stopped after the services.
        locks = self.useFixture(fixtures.TempDir()).path
        self.flags(backend_url=self.lock_backend_url(locks), group='coordination')
        self.addCleanup(coordination.COORDINATOR.stop)
        super()._setup_services()

    def fabric_ready(self, fabric: Fabric) -> None:
        """Called once the fabric exists, before any compute service starts."""

    def lock_backend_url(self, folder: str) -> str:
        """``[coordination] backend_url`` of the services: a tooz file backend in ``folder``."""
        return f'file://{folder}'

    def _setup_compute_service(self):
        self.fabric = None
        if self.FABRIC is not None:
            folder = self.useFixture(fixtures.TempDir()).path
            self.fabric = Fabric.create(
                folder, {h: self.SIM_HOSTS.get(h, {}) for h in self.COMPUTE_HOSTS},
                shared_volumes=self.FABRIC)
            self.fabric_ready(self.fabric)
        first = None
        for host in self.COMPUTE_HOSTS:
            compute = self._start_compute(host)
            first = first or compute
        return first

    def _start_compute(self, host, cell_name=None):
        """Start a compute whose driver (and simulated host) is named ``host``.

        A host listed in SIM_HOSTS is created first with that capacity, in a
        state file the driver's factory then opens (``[powershell]
        sim_state_file``); the others are in-memory hosts with the default
        capacity.  With FABRIC every host is a member of one fabric.
        """
        state_file = None
        if getattr(self, 'fabric', None) is not None:
            state_file = self.fabric.state_file(host)
        elif host in self.SIM_HOSTS:
            folder = self.useFixture(fixtures.TempDir()).path
            state_file = os.path.join(folder, f'{host}.json')
            SimHost(state_file=state_file, hostname=host, **self.SIM_HOSTS[host])
        # Each nova-compute has its own compute_id file; the driver reads it
        # once, while its service starts.
        with mock.patch('nova.virt.node.get_local_node_uuid', autospec=True,
                        return_value=getattr(uuids, f'node_{host}')), \
                nova_fixtures.ConfPatcher(sim_state_file=state_file, group='powershell'):
            service = super()._start_compute(host, cell_name=cell_name)
        # Nova's Neutron fixture binds ports with VIF type ovs: the simulated hosts have
        # Open vSwitch for Windows (ovs-vsctl on PATH, br-int), as such a host would.
        service.manager.driver.bridge.runner.host.install_ovs(OVS_VSCTL)
        return service

    def driver(self, host: str = 'host1'):
        return self.computes[host].manager.driver

    def sim_host(self, host: str = 'host1') -> SimHost:
        """The simulated Hyper-V host behind the compute service ``host``."""
        return self.driver(host).bridge.runner.host

    # -- images -----------------------------------------------------------------------

    def _keep_uploaded_image_data(self) -> None:
        """nova's GlanceFixture.update drops the data of an upload: keep it, as Glance does."""
        fixture = self.glance
        real_update = fixture.update

        def update(context, image_id, metadata, data=None, purge_props=False):
            if data is not None:
                chunks = iter(lambda: data.read(1024 * 1024), b'') if hasattr(data, 'read') \
                    else iter(data)
                content = b''.join(chunks)
                fixture._imagedata[image_id] = content
                metadata = dict(metadata, size=len(content), status='active')
            return real_update(context, image_id, metadata, purge_props=purge_props)

        fixture.update = update

    def _register_vhdx_image(self) -> str:
        """A VHDX image whose Glance download yields real VHDX bytes."""
        data = image_files.vhdx(IMAGE_VIRTUAL_SIZE)
        self.glance.create(None, {
            'id': uuids.vhdx_image,
            'name': 'psdriver-vhdx',
            'status': 'active',
            'visibility': 'public',
            'disk_format': 'vhdx',
            'container_format': 'bare',
            'size': len(data),
            'min_ram': 0,
            'min_disk': 0,
            'properties': {},
        }, data=io.BytesIO(data))
        return uuids.vhdx_image

    # -- servers ----------------------------------------------------------------------

    def _flavor(self, vcpu: int = 2, memory_mb: int = 1024, disk: int = 4, ephemeral: int = 0,
                **kwargs: Any) -> str:
        return self._create_flavor(vcpu=vcpu, memory_mb=memory_mb, disk=disk,
                                   ephemeral=ephemeral, **kwargs)

    def boot(self, flavor_id: str | None = None, networks: Any = 'none',
             config_drive: bool = False, image_uuid: str | None = None,
             host: str | None = None, expected_state: str = 'ACTIVE') -> dict[str, Any]:
        """Boot from the VHDX image (or ``image_uuid``) and wait for ``expected_state``."""
        body = self._build_server(image_uuid=image_uuid or self.vhdx_image_id,
                                  flavor_id=flavor_id or self._flavor(), networks=networks,
                                  host=host)
        if config_drive:
            body['config_drive'] = True
        server = self.api.post_server({'server': body})
        return self._wait_for_state_change(server, expected_state)

    def instance(self, server: dict[str, Any]) -> objects.Instance:
        ctx = nova_context.get_admin_context()
        return objects.Instance.get_by_uuid(ctx, server['id'])

    def host_vm(self, server: dict[str, Any], host: str = 'host1'):
        """The VM of ``server`` on its simulated host, or None."""
        return self.sim_host(host).find_vm(self.instance(server).name)

    @contextlib.contextmanager
    def scripts_run(self, host: str = 'host1', events: bool = False
                    ) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """Record ``(script name, parameters)`` of the calls the driver makes on ``host``.

        The calls still run on the simulated host; this only watches the
        PowerShell boundary.  The lifecycle event poller's own polls are
        left out unless ``events``.
        """
        runner = self.driver(host).bridge.runner
        seen: list[tuple[str, dict[str, Any]]] = []
        real_run = runner.run

        def run(call):
            if events or threading.current_thread().name != EVENT_THREAD:
                seen.append((call.name, call.params))
            return real_run(call)

        with mock.patch.object(runner, 'run', autospec=True, side_effect=run):
            yield seen

    def assertNoTraceback(self) -> None:
        """The captured nova log holds no traceback (shown from its first line if it does)."""
        output = self.stdlog.logger.output
        at = output.find('Traceback')
        if at >= 0:
            start = output.rfind('\n', 0, max(at - 200, 0)) + 1   # a line or two before
            self.fail(f'traceback in the log:\n{output[start:at + 3000]}')
