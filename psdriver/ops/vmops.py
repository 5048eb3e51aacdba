"""Instance lifecycle: spawn, destroy, power, rescue, console, info.

Each Nova operation is one script on the host (spawn is New-Instance with the
whole instance in one spec, config drive included); the periodic power-state
sync reads one snapshot of every VM (Get-InstanceSummary) instead of asking
per instance.
"""

from __future__ import annotations

import base64
import ntpath
import re
import threading
import time
from typing import Any, Callable

from nova import exception
from nova.api.metadata import base as instance_metadata
from nova.compute import power_state
from nova.objects import diagnostics
from nova.virt import configdrive as nova_configdrive
from nova.virt import driver as virt_driver
from nova.virt import hardware
from oslo_log import log as logging
from oslo_utils import excutils

from psdriver.bridge import errors as bridge_errors
from psdriver.bridge.client import Bridge
from psdriver.ops import (
    configdrive, errors, hostfiles, instancefeatures, pciops, serialconsoleops, shieldingops,
    vifops)
from psdriver.ops.vifevents import VifPlugWait
from psdriver.ops.imagecache import CachedImage
from psdriver.ops.vifops import VifOps
from psdriver.ops.volumeops import VolumeOps

LOG = logging.getLogger(__name__)

#: Hyper-V VM state -> Nova power state, as compute-hyperv mapped them
#: (Off and Stopping are SHUTDOWN, Saved is SUSPENDED); the transitional
#: states a VM passes through on its way are reported as where it is going.
POWER_STATE = {
    'Off': power_state.SHUTDOWN,
    'Stopping': power_state.SHUTDOWN,
    'Running': power_state.RUNNING,
    'Starting': power_state.RUNNING,
    'Resuming': power_state.RUNNING,
    'Reset': power_state.RUNNING,
    'Paused': power_state.PAUSED,
    'Pausing': power_state.PAUSED,
    'Saved': power_state.SUSPENDED,
    'Saving': power_state.SUSPENDED,
}

#: How long one Get-InstanceSummary snapshot answers get_info.  Nova's
#: power-state sync asks for every instance in turn; they all share one
#: host round trip.  Operations of this driver drop the snapshot at once.
SUMMARY_TTL = 5.0

#: Size at which the host rotates the console log to ``console.log.1`` (as
#: compute-hyperv's serial console log did).
CONSOLE_LOG_BYTES = 512 * 1024
#: Most bytes of serial console log returned by get_console_output: the
#: current log and the rotated one.
CONSOLE_MAX_BYTES = 2 * CONSOLE_LOG_BYTES
CONSOLE_LOG = 'console.log'
SERIAL_LOG_PORT = 1
#: Power actions that leave the VM running: Set-InstancePowerState makes sure its
#: console logger runs in the same round trip (power_on, reboot, unpause, resume).
LOGGING_ACTIONS = frozenset({'Start', 'Restart', 'SoftReboot', 'Resume', 'Restore'})

#: Power action -> the VM states that show it happened (reboots show nothing).
POWER_ACTION_REACHES = {
    'Start': ('Running',), 'Stop': ('Off',), 'Shutdown': ('Off',), 'Pause': ('Paused',),
    'Resume': ('Running',), 'Save': ('Saved',), 'Restore': ('Running',),
}

#: system_metadata key remembering the rescue disk's format (vhd or vhdx).
RESCUE_FORMAT_KEY = 'psdriver_rescue_disk_format'

_LONE_SURROGATE = re.compile('[\ud800-\udfff]')

GEN1, GEN2 = 1, 2
MIB = 1024 * 1024
_MACHINE_TYPES = {'hyperv-gen1': GEN1, 'hyperv-gen2': GEN2}


class CachedImageGone(Exception):
    """New-Instance found no file where the image cache said the image was."""


def vm_generation(image_meta: Any) -> int:
    """``hw_machine_type`` image property: ``hyperv-gen1`` (default) or ``hyperv-gen2``."""
    wanted = image_meta.properties.get('hw_machine_type', 'hyperv-gen1') or 'hyperv-gen1'
    try:
        return _MACHINE_TYPES[wanted.lower()]
    except KeyError:
        raise exception.ImageUnacceptable(
            image_id=image_meta.id if 'id' in image_meta else '',
            reason=f'hw_machine_type {wanted!r} is not one of {", ".join(_MACHINE_TYPES)}'
        ) from None


def secure_boot(instance: Any, image_meta: Any, generation: int) -> dict[str, Any] | None:
    """``os:secure_boot`` extra spec / ``os_secure_boot`` image property.

    ``required`` turns secure boot on (generation 2 only); Linux guests
    (``os_type = linux``) get the Microsoft UEFI CA template.
    """
    wanted = hardware.get_secure_boot_constraint(instance.flavor, image_meta)
    if wanted != 'required':
        return None
    if generation != GEN2:
        raise exception.InstanceUnacceptable(
            instance_id=instance.uuid, reason='secure boot needs a generation 2 VM '
            '(image property hw_machine_type = hyperv-gen2)')
    os_type = (image_meta.properties.get('os_type') or instance.os_type or '').lower()
    template = 'MicrosoftUEFICertificateAuthority' if os_type == 'linux' else 'MicrosoftWindows'
    return {'enabled': True, 'template': template}


#: Seconds between two polls of a shielded VM's provisioning (New-Instance waits for it).
SHIELDED_POLL_SECONDS = 5

#: Host refusals of a shielded VM's image or shielding data: no other host does better.
SHIELDING_IMAGE_REFUSALS = frozenset({
    'PsDriver.NotATemplateDisk', 'PsDriver.ShieldingDataNotApplicable',
    'PsDriver.InvalidShieldingData'})


class RemoteFXNotSupported(exception.InvalidInput):
    """A flavor asks for RemoteFX: the build is aborted, not rescheduled (no host has it)."""

    msg_fmt = 'Instance %(instance_uuid)s cannot be built: %(reason)s'


#: Flavor extra specs with which compute-hyperv gave an instance a RemoteFX 3D adapter.
REMOTEFX_SPECS = ('os:resolution', 'os:monitors', 'os:vram')


def refuse_remotefx(instance: Any) -> None:
    """A flavor asking for RemoteFX is refused: Windows Server no longer has it.

    Booting without the adapter the flavor asks for would be a silent
    downgrade; the instance is refused before anything is created.
    """
    asked = sorted(key for key in REMOTEFX_SPECS if key in (instance.flavor.extra_specs or {}))
    if asked:
        raise RemoteFXNotSupported(
            instance_uuid=instance.uuid,
            reason=f'the flavor asks for a RemoteFX 3D video adapter ({", ".join(asked)}); '
                   'Microsoft removed RemoteFX vGPU from Windows Server and psdriver does '
                   'not support it. Use a flavor without these extra specs (GPU-P or '
                   'Discrete Device Assignment give a guest a GPU instead).')


def vnuma(instance: Any, image_meta: Any) -> dict[str, Any] | None:
    """Per-node limits for a flavor or image asking for a NUMA topology.

    Hyper-V applies one limit to every node, so the cells must be the same
    size, as compute-hyperv required.
    """
    topology = hardware.numa_get_constraints(instance.flavor, image_meta)
    if topology is None:
        return None
    cpus = {len(cell.cpuset | cell.pcpuset) for cell in topology.cells}
    memory = {cell.memory for cell in topology.cells}
    if len(cpus) != 1 or len(memory) != 1:
        raise exception.InstanceUnacceptable(
            instance_id=instance.uuid,
            reason='Hyper-V vNUMA needs NUMA cells of equal vCPUs and memory')
    return {'enabled': True, 'max_processors_per_node': cpus.pop(),
            'max_memory_per_node_mb': memory.pop()}


class VMOps:
    def __init__(self, bridge: Bridge, conf: Any, images: Any, vifs: VifOps,
                 clock: Callable[[], float] = time.monotonic, virtapi: Any = None,
                 host_facts: Callable[[], dict[str, Any]] | None = None,
                 host_info: Callable[[bool], dict[str, Any]] | None = None,
                 volumes: VolumeOps | None = None,
                 files: hostfiles.HostFiles | None = None) -> None:
        self._bridge = bridge
        #: How files reach the host (the shielding data); made on first use when None.
        self._files = files
        self._host_facts = host_facts
        self._host_info = host_info
        self._vif_wait = VifPlugWait(virtapi, conf)
        self._conf = conf
        self._images = images
        self._vifs = vifs
        self._volumes = volumes or VolumeOps(bridge, conf)
        self._clock = clock
        self._summary_lock = threading.Lock()
        self._summary: tuple[float, dict[str, dict[str, Any]]] | None = None

    # -- where things are ---------------------------------------------------------

    def instance_dir(self, instance: Any) -> str:
        return ntpath.join(self._conf.instances_path, instance.name)

    def _path(self, instance: Any, filename: str) -> str:
        return ntpath.join(self.instance_dir(instance), filename)

    # -- the all-VMs snapshot -----------------------------------------------------

    def summary(self, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Every Nova VM on the host by instance UUID (one Get-InstanceSummary)."""
        with self._summary_lock:
            now = self._clock()
            if not refresh and self._summary and now - self._summary[0] < SUMMARY_TTL:
                return self._summary[1]
            with errors.translate(operation='list instances'):
                result = self._bridge.call('Get-InstanceSummary', {'NovaOnly': True})
            vms = {vm['instance_uuid']: vm for vm in result['vms'] if vm['instance_uuid']}
            self._summary = (now, vms)
            return vms

    def invalidate(self) -> None:
        with self._summary_lock:
            self._summary = None

    def list_instances(self) -> list[str]:
        return sorted(vm['name'] for vm in self.summary(refresh=True).values())

    def list_instance_uuids(self) -> list[str]:
        return sorted(self.summary(refresh=True))

    def instance_exists(self, instance: Any) -> bool:
        return instance.uuid in self.summary(refresh=True)

    def get_info(self, instance: Any, use_cache: bool = True) -> hardware.InstanceInfo:
        vm = self.summary(refresh=not use_cache).get(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return hardware.InstanceInfo(state=POWER_STATE.get(vm['state'], power_state.NOSTATE))

    # -- spawn ----------------------------------------------------------------------

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: str | None, network_info: Any = None,
              block_device_info: Any = None, power_on: bool = True) -> dict[str, Any]:
        """Create the VM with New-Instance: one round trip once the image is cached.

        The cached image is taken from what this service already knows; if
        the host says it is gone (removed by another service sharing the
        folder), it is looked up or downloaded again and the spawn retried once.

        With volumes (boot from volume: no image disk), Connect-InstanceVolume
        first connects them all to the host in one round trip, then
        New-Instance creates the VM with them attached (the boot volume at
        the root slot): two round trips.  A failed New-Instance disconnects
        them again.
        """
        refuse_remotefx(instance)
        self._check_host_features(instance)
        generation = vm_generation(image_meta)
        volumes = self._volumes.volumes(block_device_info)
        for volume in volumes:      # bad connection_info fails before anything is created
            self._volumes.volume_record(volume['connection_info'])
        from_volume = self._volumes.is_boot_from_volume(block_device_info)
        tpm = instancefeatures.tpm_spec(
            instance, image_meta, secure_boot(instance, image_meta, generation), self._host_facts)
        shielding = self._shielding(context, instance, from_volume, power_on)
        devices = pciops.device_spec(instance, self._pci_host_info)
        drive = self._config_drive(context, instance, injected_files, admin_password,
                                   network_info)
        # Ports Neutron has not bound yet: create the VM off, wait, then start it. A
        # shielded VM starts with its provisioning, inside New-Instance: it does not wait.
        events = self._vif_wait.events(network_info) if power_on and not shielding else []
        attached = self._connected_volumes(instance, block_device_info)

        def create(image: CachedImage | None, last_try: bool) -> dict[str, Any]:
            root = self._root_spec(instance, image) if image is not None else None
            spec = self._spec(instance, image_meta, generation, root, network_info,
                              block_device_info, power_on and not events)
            spec['config_drive'] = drive
            if attached:
                spec['volumes'] = attached
            spec.update(self._feature_spec(instance, spec))
            spec['tpm'] = tpm
            spec.update(devices)
            spec['serial_ports'] = spec['serial_ports'] + \
                serialconsoleops.serial_port_specs(self._conf, instance)
            LOG.info('Creating VM %s (generation %d, %d vCPUs, %d MB%s)', instance.name,
                     generation, spec['vcpus'], spec['memory_mb'],
                     ', boot from volume' if from_volume else
                     ', shielded' if shielding else '', instance=instance)
            data_file = None
            try:
                if shielding:
                    data_file = self._path(instance, shieldingops.DATA_FILE_NAME)
                    self._put_shielding_data(data_file, shielding['data'])
                    spec['shielding'] = {
                        'data_file': data_file, 'specialization': shielding['pairs'],
                        'provisioning_timeout_s':
                            self._conf.hyperv.shielded_vm_provisioning_timeout,
                        'poll_interval_s': SHIELDED_POLL_SECONDS}
                with SpawnErrors(instance):
                    try:
                        return self._call_with_image('New-Instance', {'Spec': spec},
                                                     'PsDriver.ImageNotFound', last_try)
                    except bridge_errors.BridgeTimeout as exc:
                        self._remove_after_timeout(instance, exc)
            finally:
                self.invalidate()
                if data_file is not None:
                    self._remove_shielding_data(instance, data_file)

        def create_from_cache() -> dict[str, Any]:
            if from_volume:
                return create(None, True)
            return self._with_cached_image(
                lambda reuse_known: self._root_image(context, instance, image_meta, generation,
                                                     reuse_known),
                create)

        result = None
        try:
            if not events:
                result = create_from_cache()
                self._warn_no_logger(instance, result.get('console_logger'))
                return result
            with self._vif_wait.waiting(instance, events):
                result = create_from_cache()
            self._warn_no_logger(instance, result.get('console_logger'))
            started = self._start_spawned(instance)
        except Exception:
            with excutils.save_and_reraise_exception():
                if result is not None and events:
                    self._undo_spawn(instance, result)
                if volumes:
                    self._volumes.disconnect_volumes(instance, block_device_info)
        result['state'] = started['state']
        return result

    def _shielding(self, context: Any, instance: Any, from_volume: bool,
                   power_on: bool) -> dict[str, Any] | None:
        """The shielding data and specialization values of a shielded VM, or None.

        Read before anything is created: an instance that cannot be shielded
        fails here (the host's refusals come from New-Instance).
        """
        if not instancefeatures.wants_shielded_vm(instance):
            return None
        refuse = instancefeatures.VTPMNotSupported
        if from_volume:
            raise refuse(instance_uuid=instance.uuid,
                         reason='a shielded VM is provisioned from a template disk image; it '
                                'cannot boot from a volume')
        if not power_on:
            raise refuse(instance_uuid=instance.uuid,
                         reason='a shielded VM starts with its provisioning; it cannot be '
                                'created powered off')
        reference = shieldingops.pdk_reference(instance)
        if reference is None:
            raise shieldingops.ShieldingDataUnavailable(
                image_id=instance.image_ref or instance.uuid,
                reason=f'a shielded VM (os_shielded_vm) needs the Barbican container of its '
                       f'shielding data: set the image property (or instance metadata) '
                       f'{shieldingops.PDK_REFERENCE}')
        pairs = shieldingops.specialization_pairs(instance)
        return {'data': shieldingops.fetch_shielding_data(context, instance, reference,
                                                          self._conf),
                'pairs': pairs}

    def shielded_vm_refusal(self) -> str | None:
        """Why this host (its last report) cannot run shielded VMs; None: it can."""
        if self._host_facts is None:
            return None
        return instancefeatures.shielded_vm_refusal(self._host_facts())

    def _host_files(self) -> hostfiles.HostFiles:
        if self._files is None:
            self._files = hostfiles.for_transport(self._conf, self._bridge)
        return self._files

    def _put_shielding_data(self, host_path: str, data: bytes) -> None:
        try:
            self._host_files().write_bytes(host_path, data)
        except hostfiles.ImageTransferError as exc:
            raise errors.HyperVHostError(reason=f'the shielding data cannot be put on the '
                                                f'host: {exc}') from exc

    def _remove_shielding_data(self, instance: Any, host_path: str) -> None:
        """New-Instance deletes it; this is for a call that never ran or never ended."""
        try:
            self._host_files().remove(host_path)
        except Exception as exc:  # noqa: BLE001 (the spawn's own outcome is what counts)
            LOG.warning('Cannot make sure the shielding data file %s is gone: %s', host_path,
                        exc, instance=instance)

    def _start_spawned(self, instance: Any) -> dict[str, Any]:
        """Start the VM spawn created off (its console logger already waits for the pipe)."""
        params = {'Name': instance.name, 'Action': 'Start',
                  'ConsoleLogPath': self._path(instance, CONSOLE_LOG),
                  'ConsoleLogMaxBytes': CONSOLE_LOG_BYTES, **self._metering_params()}
        try:
            with SpawnErrors(instance):
                result = self._bridge.call('Set-InstancePowerState', params)
        finally:
            self.invalidate()
        self._warn_no_logger(instance, result.get('console_logger'))
        return result

    def _connected_volumes(self, instance: Any, block_device_info: Any) -> list[dict[str, Any]]:
        """Connect the instance's volumes to this host; New-Instance's ``spec.volumes``."""
        volumes = self._volumes.volumes(block_device_info)
        if not volumes:
            return []
        connected = self._volumes.connect_volumes(instance, block_device_info, attach=False)
        attached = []
        for volume, found in zip(volumes, connected, strict=True):
            where = {'path': found['path']} if found['path'] else \
                {'disk_number': found['disk_number']}
            record, _secrets = self._volumes.volume_record(volume['connection_info'])
            if found['path'] and record.get('max_iops'):
                where['max_iops'] = record['max_iops']   # SMB QoS, as attach_volume sets it
            attached.append(dict(where, boot=self._volumes.is_boot(volume, block_device_info)))
        return attached

    def create_from_disks(self, context: Any, instance: Any, image_meta: Any,
                          network_info: Any, block_device_info: Any, power_on: bool,
                          generation: int, root_format: str | None,
                          root_size_gb: int | None) -> dict[str, Any]:
        """New-Instance over the disk files already in the instance folder.

        What a migration, a resize and their revert need: the root,
        ephemeral and swap files there are reused as they are (New-Instance
        keeps existing files); the VM, its NICs and config drive are made
        for the instance's current flavor.
        """
        if instancefeatures.wants_shielded_vm(instance):
            # Its disk is sealed to the key protector of the VM that was provisioned.
            raise errors.HyperVHostError(
                reason=f'{instance.name} is a shielded VM: psdriver cannot make it again over '
                       'its disks (resize, cold migration)')
        root = None
        if root_format:
            root = {'source': None, 'cow': False, 'format': root_format,
                    'size_gb': root_size_gb, 'controller': None}
        spec = self._spec(instance, image_meta, generation, root, network_info,
                          block_device_info, power_on)
        spec['config_drive'] = self._config_drive(context, instance, [], None, network_info)
        # The same VM features as spawn gives (the flavor may have changed them).
        spec.update(self._feature_spec(instance, spec))
        spec['tpm'] = instancefeatures.tpm_spec(
            instance, image_meta, secure_boot(instance, image_meta, generation),
            self._host_facts)
        spec.update(pciops.device_spec(instance, self._pci_host_info))
        spec['serial_ports'] = spec['serial_ports'] + \
            serialconsoleops.serial_port_specs(self._conf, instance)
        # The instance's volumes, connected to this host and attached as spawn attaches them.
        attached = self._connected_volumes(instance, block_device_info)
        if attached:
            spec['volumes'] = attached
        try:
            with SpawnErrors(instance):
                result = self._bridge.call('New-Instance', {'Spec': spec})
        except Exception:
            with excutils.save_and_reraise_exception():
                if attached:
                    self._volumes.disconnect_volumes(instance, block_device_info)
        finally:
            self.invalidate()
        self._warn_no_logger(instance, result.get('console_logger'))
        return result

    def _remove_after_timeout(self, instance: Any, exc: bridge_errors.BridgeTimeout) -> None:
        """New-Instance timed out: the host may have created part of the VM; remove it.

        Nova must not be left believing nothing happened while a VM (or its
        folder) exists.  Remove-Instance only touches a VM carrying this
        instance's UUID.  Always raises.
        """
        LOG.warning('New-Instance timed out; the host may have created part of VM %s: '
                    'removing what exists', instance.name, instance=instance)
        try:
            self.destroy(instance, destroy_disks=True)
        except Exception as cleanup:  # noqa: BLE001 (the timeout is what to report)
            LOG.error('Cannot remove what the timed-out spawn of %s created: %s; '
                      'deleting the instance retries it', instance.name, cleanup,
                      instance=instance)
            raise errors.HyperVHostError(
                reason=f'{exc}; removing what it may have created failed: {cleanup}'
            ) from exc
        raise errors.HyperVHostError(
            reason=f'{exc}; what it may have created on the host was removed') from exc
    def _check_host_features(self, instance: Any) -> None:
        """Refuse, before anything is created, what this host cannot give (another may)."""
        if instancefeatures.wants_nested_virtualization(instance) and self._host_facts:
            refusal = instancefeatures.nested_virtualization_refusal(self._host_facts())
            if refusal:
                raise exception.ComputeResourcesUnavailable(
                    reason=f'the flavor or image asks for nested virtualization (vmx) but '
                           f'this host cannot expose it: {refusal}')

    @staticmethod
    def _feature_spec(instance: Any, spec: dict[str, Any]) -> dict[str, Any]:
        """New-Instance fields for nested virtualization and local disk QoS."""
        extra: dict[str, Any] = {}
        if instancefeatures.wants_nested_virtualization(instance):
            extra['nested_virtualization'] = True
            if spec['dynamic_memory_ratio'] > 1:
                LOG.warning('Nested virtualization requested: dynamic memory is turned off '
                            'for this instance', instance=instance)
                extra['dynamic_memory_ratio'] = 1.0
        iops = instancefeatures.disk_max_iops(instance)
        if iops:
            extra['disk_max_iops'] = iops
        return extra

    def apply_disk_qos(self, instance: Any) -> dict[str, Any]:
        """Set the flavor's IOPS limit on the local disks again (one round trip).

        The hook for a resize: the new flavor's limit, or none.  Spawn sets it
        in New-Instance.
        """
        with errors.translate(instance.uuid, 'apply disk QoS'):
            return self._bridge.call('Set-InstanceDiskQosLimit', {
                'Name': instance.name, 'InstanceDir': self.instance_dir(instance),
                'MaximumIops': instancefeatures.disk_max_iops(instance) or 0})

    def _pci_host_info(self, refresh: bool) -> dict[str, Any]:
        if refresh and self._host_info is not None:
            return self._host_info(True)
        if self._host_facts is not None:
            return self._host_facts()
        return {}

    def _metering_params(self) -> dict[str, Any]:
        """Hyper-V drops resource metering at power off: every start turns it back on."""
        if self._conf.hyperv.enable_instance_metrics_collection:
            return {'EnableMetrics': True}
        return {}

    def _undo_spawn(self, instance: Any, created: dict[str, Any]) -> None:
        """Remove the VM a spawn created (after a fatal VIF wait or a failed start).

        Its files go too, unless the spawn reused disks already there (a
        rebuild on shared storage): those were not spawn's to delete.
        """
        LOG.info('Removing VM %s: the spawn did not complete', instance.name, instance=instance)
        try:
            self.destroy(instance, destroy_disks=not created.get('reused'))
        except Exception:
            LOG.exception('Could not remove VM %s after a failed spawn', instance.name,
                          instance=instance)

    def waits_for_vifs(self, network_info: Any) -> bool:
        """Whether starting this instance waits for Neutron's network-vif-plugged events."""
        return bool(self._vif_wait.events(network_info))

    def power_on_when_vifs_plugged(self, instance: Any, network_info: Any,
                                   plug: Callable[[], Any] | None = None) -> None:
        """Start an existing VM once Neutron has bound its ports (after a resize or migration).

        ``plug`` is what makes Neutron bind them (connecting the adapters on
        this host); it runs inside nova's event wait so no event is missed.
        Without ports to wait for this is ``plug`` and one power_on.  A
        fatal timeout raises ``VirtualInterfaceCreateException`` and leaves
        the VM off (it is not spawn's to remove).
        """
        with self._vif_wait.waiting(instance, self._vif_wait.events(network_info)):
            if plug is not None:
                plug()
        self.power_on(instance)

    def _with_cached_image(self, fetch: Callable[[bool], CachedImage],
                           run: Callable[[CachedImage, bool], dict[str, Any]]
                           ) -> dict[str, Any]:
        """``run(image, last_try)`` on the cached image ``fetch(reuse_known)`` gives.

        First with the file this service already knows (no round trip to
        find it); when the host says that file is gone (another service
        sharing the folder removed it), forget it, look it up (or download
        it) again and run once more.
        """
        for reuse_known in (True, False):
            image = fetch(reuse_known)
            try:
                return run(image, not reuse_known)
            except CachedImageGone:
                LOG.info('Cached image %s is gone from the host; looking it up again',
                         image.path)
                self._images.forget(image.image_id)
        raise AssertionError('unreachable: the second try never raises CachedImageGone')

    def _call_with_image(self, script: str, params: dict[str, Any], gone_error_id: str,
                         last_try: bool) -> dict[str, Any]:
        try:
            return self._bridge.call(script, params)
        except bridge_errors.ScriptObjectNotFound as exc:
            if exc.error_id == gone_error_id and not last_try:
                raise CachedImageGone() from exc
            raise

    def _root_image(self, context: Any, instance: Any, image_meta: Any, generation: int,
                    reuse_known: bool = False) -> CachedImage:
        root_gb = instance.flavor.root_gb or None
        image = self._images.get_cached_image(context, instance, root_gb,
                                              reuse_known=reuse_known)
        if generation == GEN2 and image.format == 'vhd':
            raise exception.InstanceUnacceptable(
                instance_id=instance.uuid,
                reason='generation 2 VMs cannot boot from a VHD image; use VHDX')
        return image

    def _root_spec(self, instance: Any, image: CachedImage) -> dict[str, Any]:
        # An ISO is copied and boots from a DVD drive; only a disk can be differencing.
        return {'source': image.path,
                'cow': bool(self._conf.use_cow_images) and image.format != 'iso',
                'format': image.format, 'size_gb': instance.flavor.root_gb or None,
                'controller': None}

    def _spec(self, instance: Any, image_meta: Any, generation: int,
              root: dict[str, Any] | None, network_info: Any, block_device_info: Any,
              power_on: bool) -> dict[str, Any]:
        flavor = instance.flavor
        numa = vnuma(instance, image_meta)
        ratio = float(self._conf.hyperv.dynamic_memory_ratio)
        if numa and ratio > 1:
            LOG.warning('vNUMA requested: dynamic memory is turned off for this instance',
                        instance=instance)
            ratio = 1.0
        hyperv = self._conf.hyperv
        return {
            'name': instance.name,
            'instance_uuid': instance.uuid,
            'instance_dir': self.instance_dir(instance),
            'generation': generation,
            'secure_boot': secure_boot(instance, image_meta, generation),
            'vcpus': flavor.vcpus,
            # Hyper-V wants an even number of MB.
            'memory_mb': flavor.memory_mb + flavor.memory_mb % 2,
            'dynamic_memory_ratio': max(ratio, 1.0),
            'vnuma': numa,
            'limit_cpu_features': bool(hyperv.limit_cpu_features),
            'root_disk': root,
            'ephemerals': self._ephemerals(instance, block_device_info),
            'swap': {'size_mb': flavor.swap, 'format': 'vhdx'} if flavor.swap else None,
            'nics': self._vifs.nic_specs(network_info),
            'serial_ports': [{'port': SERIAL_LOG_PORT, 'pipe': f'{instance.uuid}_ro'}],
            'config_drive': None,
            'enable_metrics': bool(hyperv.enable_instance_metrics_collection),
            'power_on': power_on,
            'notes_extra': None,
            'automatic_stop_action': 'ShutDown' if hyperv.instance_automatic_shutdown
            else 'Save',
            'console_log': {'path': self._path(instance, CONSOLE_LOG),
                            'max_bytes': CONSOLE_LOG_BYTES},
            'ovs_vsctl_path': hyperv.ovs_vsctl_path or None,
        }

    @staticmethod
    def _ephemerals(instance: Any, block_device_info: Any) -> list[dict[str, Any]]:
        disks = virt_driver.block_device_info_get_ephemerals(block_device_info)
        if disks:
            return [{'size_gb': disk['size'], 'format': 'vhdx'} for disk in disks
                    if disk.get('size')]
        if instance.flavor.ephemeral_gb:
            return [{'size_gb': instance.flavor.ephemeral_gb, 'format': 'vhdx'}]
        return []

    def _config_drive(self, context: Any, instance: Any, injected_files: Any,
                      admin_password: str | None, network_info: Any,
                      rescue: bool = False) -> dict[str, Any] | None:
        if not nova_configdrive.required_by(instance):
            return None
        extra_md = {}
        if admin_password and self._conf.hyperv.config_drive_inject_password:
            extra_md['admin_pass'] = admin_password
        metadata = instance_metadata.InstanceMetadata(
            instance, content=injected_files, extra_md=extra_md, network_info=network_info)
        files = [(path, data if isinstance(data, bytes) else data.encode('utf-8'))
                 for path, data in metadata.metadata_for_config_drive()]
        as_vhd = not self._conf.hyperv.config_drive_cdrom
        image = configdrive.build_config_drive(files, as_vhd=as_vhd)
        LOG.debug('Built a %d byte config drive%s', len(image), ' (rescue)' if rescue else '',
                  instance=instance)
        return {'content_base64': base64.b64encode(image).decode('ascii'),
                'format': 'vhd' if as_vhd else 'iso', 'as_dvd': not as_vhd}

    @staticmethod
    def _warn_no_logger(instance: Any, logger: dict[str, Any] | None) -> None:
        """A console logger that does not run costs the log, never the operation."""
        if logger and not logger.get('running'):
            LOG.warning('Console log of %s not started: %s', instance.name, logger.get('error'),
                        instance=instance)

    # -- destroy ----------------------------------------------------------------------

    def destroy(self, instance: Any, destroy_disks: bool = True,
                block_device_info: Any = None, network_info: Any = None) -> dict[str, Any]:
        """Remove the VM (a missing VM is fine) and, with destroy_disks, its folder.

        A VM of the same name that carries another instance UUID is not this
        instance's: it and its folder are left alone, as for a missing VM.
        The volumes of ``block_device_info`` are disconnected afterwards (one
        more round trip when there are any).  The Open vSwitch ports of
        ``network_info``'s ``ovs`` VIFs are deleted in the same call.
        """
        params: dict[str, Any] = {'Name': instance.name, 'InstanceUuid': instance.uuid,
                                  'InstanceDir': self.instance_dir(instance),
                                  'DeleteFiles': bool(destroy_disks)}
        ovs_ports = vifops.ovs_port_ids(network_info)
        if ovs_ports:
            params.update(self._vifs.ovs_params(), OvsPortId=ovs_ports)
        try:
            with errors.translate(operation='destroy'):
                try:
                    result = self._bridge.call('Remove-Instance', params)
                except bridge_errors.ScriptInvalidOperation as exc:
                    if exc.error_id != 'PsDriver.InstanceUuidMismatch':
                        raise
                    LOG.warning('Not removing VM %s: %s', instance.name, exc.message,
                                instance=instance)
                    return {'name': instance.name, 'existed': False}
        finally:
            self.invalidate()
        if result['existed']:
            LOG.info('Removed VM %s (was %s)', instance.name, result['previous_state'],
                     instance=instance)
        self._volumes.disconnect_volumes(instance, block_device_info)
        return result

    # -- power ------------------------------------------------------------------------

    def _power(self, instance: Any, action: str, operation: str,
               timeout: int | None = None, retry_interval: int | None = None,
               no_force: bool = False) -> dict[str, Any]:
        """Set-InstancePowerState; a VM it leaves running gets its console logger too.

        The logger does not survive a host reboot; asking the host to make
        sure it runs costs a mutex check there and no extra round trip.
        """
        params: dict[str, Any] = {'Name': instance.name, 'Action': action}
        if action in LOGGING_ACTIONS:
            params['ConsoleLogPath'] = self._path(instance, CONSOLE_LOG)
            params['ConsoleLogMaxBytes'] = CONSOLE_LOG_BYTES
            params.update(self._metering_params())
        call_timeout = None
        if timeout is not None:
            params['TimeoutSeconds'] = int(timeout)
            call_timeout = int(timeout) + 120
        if retry_interval:
            params['RetryIntervalSeconds'] = max(int(retry_interval), 1)
        if no_force:
            params['NoForce'] = True
        try:
            with errors.translate(instance.uuid, operation):
                try:
                    result = self._bridge.call('Set-InstancePowerState', params,
                                               timeout=call_timeout)
                except bridge_errors.BridgeTimeout as exc:
                    result = self._power_after_timeout(instance, action, exc)
        finally:
            self.invalidate()
        self._warn_no_logger(instance, result.get('console_logger'))
        return result

    def _power_after_timeout(self, instance: Any, action: str,
                             exc: bridge_errors.BridgeTimeout) -> dict[str, Any]:
        """The power change timed out, perhaps after the host made it: look at the VM.

        If the VM is where the action leads, the operation is done (its console
        logger is checked at the next power change or host start); otherwise a
        host error says where the VM is now.
        """
        self.invalidate()
        vm = self.summary(refresh=True).get(instance.uuid)
        state = vm['state'] if vm else None
        if state is not None and state in POWER_ACTION_REACHES.get(action, ()):
            LOG.warning('%s of %s timed out, but the VM is %s: taking it as done',
                        action, instance.name, state, instance=instance)
            return {'name': instance.name, 'state': state}
        raise errors.HyperVHostError(
            reason=f'{exc}; the VM is now {state or "missing"}') from exc

    def power_on(self, instance: Any) -> None:
        self._power(instance, 'Start', 'power_on')

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        """Clean guest shutdown within ``timeout`` seconds then hard off; 0: hard off."""
        if timeout:
            self._power(instance, 'Shutdown', 'power_off', timeout, retry_interval)
        else:
            self._power(instance, 'Stop', 'power_off')

    def reboot(self, instance: Any, reboot_type: str) -> None:
        if reboot_type == 'SOFT':
            self._power(instance, 'SoftReboot', 'reboot',
                        timeout=self._conf.hyperv.wait_soft_reboot_seconds)
        else:
            self._power(instance, 'Restart', 'reboot')

    def pause(self, instance: Any) -> None:
        self._power(instance, 'Pause', 'pause')

    def unpause(self, instance: Any) -> None:
        self._power(instance, 'Resume', 'unpause')

    def suspend(self, instance: Any) -> None:
        self._power(instance, 'Save', 'suspend')

    def resume(self, instance: Any) -> None:
        self._power(instance, 'Restore', 'resume')

    # -- rescue -----------------------------------------------------------------------

    def rescue(self, context: Any, instance: Any, network_info: Any, image_meta: Any,
               rescue_password: str | None, block_device_info: Any = None) -> dict[str, Any]:
        """Boot the instance from a rescue disk over the rescue image (one round trip).

        The root disk stays attached as a data disk; a config drive carrying
        the rescue password replaces the instance's own while rescued.  An
        instance booted from a volume is refused, as compute-hyperv did.
        """
        if self._volumes.is_boot_from_volume(block_device_info):
            raise exception.InstanceNotRescuable(
                instance_id=instance.uuid, reason='it boots from a volume; Hyper-V rescue '
                'swaps the boot disk for a rescue disk, which a pass-through or volume boot '
                'disk cannot take part in')
        generation = vm_generation(image_meta)
        # No rescue image named: the instance's own image, as compute-hyperv did.
        rescue_image = image_meta if 'id' in image_meta and image_meta.id else None
        drive = self._config_drive(context, instance, None, rescue_password, network_info,
                                   rescue=True)

        def boot_rescue_disk(image: CachedImage, last_try: bool) -> dict[str, Any]:
            if image.format == 'iso':
                raise exception.ImageUnacceptable(image_id=image.image_id,
                                                  reason='a rescue image must be a VHD or VHDX')
            if generation == GEN2 and image.format == 'vhd':
                raise exception.ImageUnacceptable(
                    image_id=image.image_id, reason='generation 2 VMs cannot boot from a VHD')
            params: dict[str, Any] = {
                'Name': instance.name,
                'RescueDiskPath': self._path(instance, f'root-rescue.{image.format}'),
                'RescueImagePath': image.path,
            }
            if drive is not None:
                params['ConfigDrivePath'] = self._path(
                    instance, f'configdrive-rescue.{drive["format"]}')
                params['ConfigDriveBase64'] = drive['content_base64']
                params['OriginalConfigDrivePath'] = self._path(
                    instance, f'configdrive.{drive["format"]}')
            try:
                with errors.translate(instance.uuid, 'rescue'):
                    result = self._call_with_image('Set-InstanceRescue', params,
                                                   'PsDriver.RescueImageNotFound', last_try)
            finally:
                self.invalidate()
            # Unrescue must find the same file; the manager saves the instance after rescue.
            instance.system_metadata[RESCUE_FORMAT_KEY] = image.format
            return result

        return self._with_cached_image(
            lambda reuse_known: self._images.get_cached_image(
                context, instance, None, image_meta=rescue_image, reuse_known=reuse_known),
            boot_rescue_disk)

    def unrescue(self, instance: Any) -> dict[str, Any]:
        disk_format = instance.system_metadata.get(RESCUE_FORMAT_KEY) or 'vhdx'
        fmt = 'vhd' if not self._conf.hyperv.config_drive_cdrom else 'iso'
        params = {'Name': instance.name,
                  'RescueDiskPath': self._path(instance, f'root-rescue.{disk_format}'),
                  'RescueConfigDrivePath': self._path(instance, f'configdrive-rescue.{fmt}'),
                  'ConfigDrivePath': self._path(instance, f'configdrive.{fmt}')}
        try:
            with errors.translate(instance.uuid, 'unrescue'):
                return self._bridge.call('Remove-InstanceRescue', params)
        finally:
            self.invalidate()

    # -- console and diagnostics -------------------------------------------------------

    def get_console_output(self, instance: Any) -> bytes:
        with errors.translate(instance.uuid, 'get_console_output'):
            result = self._bridge.call('Get-InstanceConsoleOutput', {
                'Name': instance.name, 'LogPath': self._path(instance, CONSOLE_LOG),
                'MaxBytes': CONSOLE_MAX_BYTES})
        # JSON may carry a lone surrogate (a "\\ud800" escape) that UTF-8 cannot hold.
        return _LONE_SURROGATE.sub('\ufffd', result['content']).encode('utf-8')

    def get_instance_diagnostics(self, instance: Any) -> diagnostics.Diagnostics:
        with errors.translate(instance.uuid, 'get_instance_diagnostics'):
            info = self._bridge.call('Get-InstanceInfo',
                                     {'Name': instance.name, 'IncludeMetrics': True})
        state = POWER_STATE.get(info['state'], power_state.NOSTATE)
        diags = diagnostics.Diagnostics(
            state=power_state.STATE_MAP[state], driver='hyperv', hypervisor='hyperv',
            hypervisor_os='windows', uptime=info['uptime_seconds'],
            config_drive=any('configdrive' in (d.get('path') or '').lower()
                             for d in info['disks'] + info['dvd_drives']))
        for index in range(info['vcpus']):
            diags.add_cpu(id=index)
        diags.memory_details = diagnostics.MemoryDiagnostics(
            maximum=info['memory_mb'], used=info['memory_assigned_mb'])
        self._add_device_diagnostics(diags, info)
        return diags

    @staticmethod
    def _add_device_diagnostics(diags: diagnostics.Diagnostics, info: dict[str, Any]) -> None:
        """One NIC and one disk entry per device, with the host's metered counters.

        Hyper-V meters bytes per disk (Measure-VM) and per adapter (its
        metering ACLs), in MB; it does not count requests by direction, so
        those stay 0.  Without resource metering every counter is 0.
        """
        devices = info.get('device_metrics') or {}
        by_name = {nic['name']: nic for nic in devices.get('nics') or []}
        by_path = {ntpath.normcase(disk['path']): disk for disk in devices.get('disks') or []
                   if disk.get('path')}
        for nic in info['nics']:
            metered = by_name.get(nic.get('name')) or {}
            diags.add_nic(mac_address=nic.get('mac'),
                          rx_octets=metered.get('inbound_mb', 0) * MIB,
                          tx_octets=metered.get('outbound_mb', 0) * MIB)
        for disk in info['disks']:
            metered = by_path.get(ntpath.normcase(disk.get('path') or '')) or {}
            diags.add_disk(read_bytes=metered.get('read_mb', 0) * MIB,
                           write_bytes=metered.get('written_mb', 0) * MIB)


class SpawnErrors:
    """Spawn-specific translation: capacity problems make Nova reschedule.

    A flavor that does not fit the New-Instance spec (refused before anything
    runs) is the flavor's fault: ``FlavorMemoryTooSmall`` for the memory,
    ``InstanceUnacceptable`` for the rest, with the schema's reason.  An
    InvalidOperation from the host is a host error with Hyper-V's message
    (nova's ``InstanceInvalidState`` would read "in power state <message>").
    """

    def __init__(self, instance: Any) -> None:
        self._instance = instance

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, bridge_errors.PsDriverBridgeException):
            return False
        if isinstance(exc, bridge_errors.BridgeSpecError):
            if exc.path[:1] == ('memory_mb',) and exc.rule in ('minimum', 'type'):
                raise exception.FlavorMemoryTooSmall(
                    message=f'Flavor memory of instance {self._instance.uuid} does not fit '
                            f'Hyper-V: {exc.problem}') from exc
            raise exception.InstanceUnacceptable(instance_id=self._instance.uuid,
                                                 reason=exc.problem) from exc
        error_id = getattr(exc, 'error_id', None)
        if error_id in SHIELDING_IMAGE_REFUSALS:
            raise shieldingops.ShieldingDataUnavailable(
                image_id=self._instance.image_ref or self._instance.uuid,
                reason=exc.message) from exc
        if error_id == 'PsDriver.RootDiskExists':
            raise errors.HyperVHostError(reason=f'{exc.script}: {exc.message}') from exc
        if isinstance(exc, bridge_errors.ScriptResourceExists):
            raise exception.InstanceExists(name=self._instance.name) from exc
        if isinstance(exc, bridge_errors.ScriptResourceUnavailable):
            raise exception.ComputeResourcesUnavailable(reason=exc.message) from exc
        if isinstance(exc, (bridge_errors.ScriptObjectNotFound,
                            bridge_errors.ScriptInvalidOperation)):
            raise errors.HyperVHostError(reason=f'{exc.script}: {exc.message}') from exc
        with errors.translate(self._instance.uuid, 'spawn'):
            raise exc
        return False
