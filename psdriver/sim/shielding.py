"""Shielded VMs: the Host Guardian Service client, shielding data, template disks, provisioning.

What the simulated host models (the cmdlets' documented behaviour and the
refusals a real host gives):

* ``Get-HgsClientConfiguration``: ``IsHostGuarded`` and ``Mode`` from the
  host's configuration.
* A shielding data file (``.pdk``) is, on this host, a JSON document made by
  :func:`shielding_data_file` (a real one is a signed, encrypted file made by
  ``New-ShieldingDataFile``): the key protector (the guardians that may run
  the VM) and the volume ID qualifiers (the template disks it may be used with).
  ``Get-KeyProtectorFromShieldingDataFile`` refuses anything else.
* A template disk (``Protect-TemplateDisk``) carries a volume signature
  catalog (name and version); ``Save-VolumeSignatureCatalog`` refuses a disk
  that is not one, ``Test-ShieldingDataApplicability`` compares a catalog
  with the qualifiers of a shielding data file.
* ``Initialize-ShieldedVM`` needs a guarded host, a VM that is off, shielded
  (``Set-VMSecurityPolicy -Shielded``), with the shielding data's key
  protector and a TPM; it starts the VM and a provisioning job that
  ``Get-ShieldedVMProvisioningStatus`` reports running for
  ``shielded_provisioning_polls`` calls, then completed, or failed when the
  VM's boot disk does not match the shielding data's qualifiers.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from psdriver.sim import paths
from psdriver.sim.errors import SimError, invalid_state
from psdriver.sim.state import Vm
from psdriver.sim.txn import reads, writes
from psdriver.sim.vms import VmRules

SIM_PDK_FORMAT = 'psdriver-sim-shielding-data/1'

#: CIM_ConcreteJob JobState values the provisioning job takes.
JOB_RUNNING = 4
JOB_COMPLETED = 7
JOB_EXCEPTION = 10


def shielding_data_file(key_protector: bytes, qualifiers: list[dict[str, str]]) -> bytes:
    """The bytes of a shielding data file for the simulated host.

    ``qualifiers``: ``[{'name', 'version', 'version_rule'}]`` as
    ``New-VolumeIDQualifier`` makes them (``version_rule`` Equals or
    GreaterThanOrEquals).
    """
    return json.dumps({'format': SIM_PDK_FORMAT,
                       'key_protector': base64.b64encode(key_protector).decode('ascii'),
                       'volume_id_qualifiers': qualifiers}).encode('utf-8')


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split('.') if p.isdigit())


def qualifier_matches(catalog: dict[str, str], qualifier: dict[str, str]) -> bool:
    if catalog['name'].lower() != qualifier['name'].lower():
        return False
    if qualifier.get('version_rule', 'Equals') == 'GreaterThanOrEquals':
        return _version(catalog['version']) >= _version(qualifier['version'])
    return _version(catalog['version']) == _version(qualifier['version'])


class ShieldingRules(VmRules):
    """The shielded VM cmdlets of the host."""

    def _require_guarded_tools(self, command: str) -> None:
        if not self._state.config.shielded_vm_tools:
            raise SimError(f"The term '{command}' is not recognized as a name of a cmdlet.",
                           'ObjectNotFound', 'CommandNotFoundException', target=command)

    @reads
    def hgs_client_configuration(self) -> dict[str, Any]:
        """``Get-HgsClientConfiguration``: IsHostGuarded and Mode."""
        cfg = self._state.config
        return {'IsHostGuarded': cfg.host_guarded, 'Mode': cfg.hgs_mode}

    @reads
    def read_shielding_data(self, path: str) -> dict[str, Any]:
        """The shielding data file at ``path``; a file that is not one is refused."""
        self._require_guarded_tools('Get-KeyProtectorFromShieldingDataFile')
        entry = self._require(paths.normalize(path))
        try:
            data = json.loads((entry.content or '').encode('latin-1'))
            if data.get('format') != SIM_PDK_FORMAT:
                raise ValueError('unknown format')
            data['key_protector_bytes'] = base64.b64decode(data['key_protector'], validate=True)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SimError(f"The file '{entry.path}' is not a valid shielding data file.",
                           'InvalidData', 'InvalidShieldingDataFile', target=entry.path) from None
        return data

    def key_protector_from_shielding_data(self, path: str) -> bytes:
        """``Get-KeyProtectorFromShieldingDataFile``: the raw key protector bytes."""
        return self.read_shielding_data(path)['key_protector_bytes']

    @reads
    def template_disk_signature(self, path: str) -> dict[str, str]:
        """The volume signature catalog of a template disk (through a differencing chain)."""
        for entry in self.vhd_chain(path):
            if entry.vhd is not None and entry.vhd.template_signature:
                return dict(entry.vhd.template_signature)
        raise SimError(f"The disk '{paths.normalize(path)}' is not a shielded VM template disk "
                       '(it has no volume signature catalog; prepare it with '
                       'Protect-TemplateDisk).', 'InvalidData', 'NotATemplateDisk',
                       target=paths.normalize(path))

    @writes
    def protect_template_disk(self, path: str, name: str, version: str) -> None:
        """``Protect-TemplateDisk``: sign a VHDX as a template disk of ``name`` ``version``."""
        entry = self.get_vhd(path)
        if entry.vhd.format != 'VHDX':
            raise SimError('Template disks must be VHDX files.', 'InvalidArgument',
                           'NotVhdx', target=entry.path)
        entry.vhd.template_signature = {'name': name, 'version': version}

    @writes
    def save_volume_signature_catalog(self, template_path: str, catalog_path: str) -> None:
        """``Save-VolumeSignatureCatalog``: write the disk's catalog to ``catalog_path``."""
        catalog = self.template_disk_signature(template_path)
        self.write_file(catalog_path, json.dumps(catalog).encode('utf-8'), keep_content=True)

    @reads
    def test_shielding_data_applicability(self, pdk_path: str, catalog_path: str) -> bool:
        """``Test-ShieldingDataApplicability``: the catalog matches a qualifier of the data."""
        data = self.read_shielding_data(pdk_path)
        entry = self._require(paths.normalize(catalog_path))
        try:
            catalog = json.loads((entry.content or '').encode('latin-1'))
            catalog = {'name': catalog['name'], 'version': catalog['version']}
        except (ValueError, KeyError, TypeError):
            raise SimError(f"The file '{entry.path}' is not a volume signature catalog.",
                           'InvalidData', 'InvalidVolumeSignatureCatalog',
                           target=entry.path) from None
        return any(qualifier_matches(catalog, q) for q in data['volume_id_qualifiers'])

    @writes
    def set_key_protector(self, name: str, key_protector: bytes) -> Vm:
        """``Set-VMKeyProtector -KeyProtector``: a key protector from shielding data."""
        vm = self._vm(name)
        self._check_tpm_target(vm, 'key protector')
        if not key_protector:
            raise SimError('The key protector is empty.', 'InvalidArgument',
                           'InvalidKeyProtector', target=vm.name)
        vm.extra['key_protector'] = 'shielding_data'
        vm.extra['key_protector_base64'] = base64.b64encode(key_protector).decode('ascii')
        return vm

    @writes
    def set_security_policy(self, name: str, shielded: bool) -> Vm:
        """``Set-VMSecurityPolicy -Shielded``: generation 2, off, with a key protector."""
        vm = self._vm(name)
        self._check_tpm_target(vm, 'security policy')
        if shielded and not vm.extra.get('key_protector'):
            raise SimError(f"Cannot shield '{vm.name}': the virtual machine has no key "
                           'protector (Set-VMKeyProtector).', 'InvalidOperation',
                           'NoKeyProtector', target=vm.name)
        vm.extra['shielded'] = bool(shielded)
        return vm

    @writes
    def new_specialization_data_file(self, path: str, pairs: dict[str, str]) -> None:
        """``New-ShieldedVMSpecializationDataFile``: the values must be strings."""
        self._require_guarded_tools('New-ShieldedVMSpecializationDataFile')
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()):
            raise SimError('The specialization data values must be strings.', 'InvalidArgument',
                           'InvalidSpecializationData', target=path)
        self.write_file(path, json.dumps(pairs).encode('utf-8'), keep_content=True)

    @writes
    def initialize_shielded_vm(self, name: str, pdk_path: str, fsk_path: str | None) -> Vm:
        """``Initialize-ShieldedVM``: starts the VM and its provisioning job."""
        self._require_guarded_tools('Initialize-ShieldedVM')
        vm = self._vm(name)
        cfg = self._state.config
        if not cfg.host_guarded or cfg.hgs_mode != 'HostGuardianService':
            raise SimError(f"Cannot provision '{vm.name}': this host is not guarded "
                           '(Host Guardian Service attestation has not passed), so the '
                           'shielding data cannot be unwrapped here.', 'SecurityError',
                           'HostNotGuarded', target=vm.name)
        data = self.read_shielding_data(pdk_path)
        if vm.state != 'Off':
            raise invalid_state(vm.name, vm.state, 'start provisioning')
        if not vm.extra.get('shielded') or not vm.extra.get('tpm'):
            raise SimError(f"Cannot provision '{vm.name}': it must be shielded "
                           '(Set-VMSecurityPolicy -Shielded $true) with a TPM (Enable-VMTPM).',
                           'InvalidOperation', 'NotShielded', target=vm.name)
        if vm.extra.get('key_protector_base64') != base64.b64encode(
                data['key_protector_bytes']).decode('ascii'):
            raise SimError(f"Cannot provision '{vm.name}': its key protector is not the one of "
                           'the shielding data file.', 'InvalidOperation',
                           'KeyProtectorMismatch', target=vm.name)
        pairs = {}
        if fsk_path:
            entry = self._require(paths.normalize(fsk_path))
            pairs = json.loads((entry.content or '{}').encode('latin-1'))
        boot_disk = next((d.path for d in vm.drives if d.kind == 'HardDisk' and d.path), None)
        error = None
        try:
            if boot_disk is None:
                raise SimError('the virtual machine has no disk to provision')
            catalog = self.template_disk_signature(boot_disk)
            if not any(qualifier_matches(catalog, q) for q in data['volume_id_qualifiers']):
                error = (f"The template disk {catalog['name']} {catalog['version']} is not "
                         'one the shielding data file trusts (its volume ID qualifiers).')
        except SimError as exc:
            error = exc.message
        self.start_vm(vm.name)
        vm.extra['specialization'] = pairs
        vm.extra['provisioning'] = {'polls_left': cfg.shielded_provisioning_polls,
                                    'error': error}
        return vm

    @writes
    def shielded_vm_provisioning_status(self, name: str) -> dict[str, Any]:
        """``Get-ShieldedVMProvisioningStatus``: the job, one poll further on."""
        self._require_guarded_tools('Get-ShieldedVMProvisioningStatus')
        vm = self._vm(name)
        job = vm.extra.get('provisioning')
        if job is None:
            raise SimError(f"'{vm.name}' has no shielded VM provisioning job.", 'ObjectNotFound',
                           'NoProvisioningJob', target=vm.name)
        if job['polls_left'] != 0:
            if job['polls_left'] > 0:
                job['polls_left'] -= 1
            return {'JobState': JOB_RUNNING, 'PercentComplete': 50, 'ErrorDescription': None}
        if job['error']:
            if vm.state != 'Off':
                self.stop_vm(vm.name, turn_off=True)
            return {'JobState': JOB_EXCEPTION, 'PercentComplete': 100,
                    'ErrorDescription': job['error']}
        vm.extra['provisioned'] = True
        return {'JobState': JOB_COMPLETED, 'PercentComplete': 100, 'ErrorDescription': None}
