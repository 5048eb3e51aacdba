"""Flavor and image requests that need something of the host: nested virtualization, disk QoS.

compute-hyperv read these from the flavor's extra specs and the image's
properties.  Image properties nova's ImageMeta does not know
(``hw_cpu_features``) are read from the instance's system metadata, where
nova keeps every image property under ``image_<name>``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

from nova import exception
from nova.objects import fields as obj_fields
from nova.virt import hardware

#: Hyper-V's storage QoS counts normalized I/O operations of 8 KB.
IOPS_BASE_BYTES = 8 * 1024

#: Windows builds from which Hyper-V nests: Intel (Server 2016), AMD (Server 2022).
NESTED_MIN_BUILD = {'GenuineIntel': 14393, 'AuthenticAMD': 20348}


def _image_property(instance: Any, name: str) -> str | None:
    return (instance.system_metadata or {}).get(f'image_{name}')


def requested_cpu_features(instance: Any) -> set[str]:
    """``hw:cpu_features`` (flavor) and ``hw_cpu_features`` (image), lower case."""
    wanted = set()
    for value in ((instance.flavor.extra_specs or {}).get('hw:cpu_features'),
                  _image_property(instance, 'hw_cpu_features')):
        wanted |= {item.lower() for item in re.split(r'[\s,]+', value or '') if item}
    return wanted


def wants_nested_virtualization(instance: Any) -> bool:
    return 'vmx' in requested_cpu_features(instance)


def nested_virtualization_refusal(host_info: dict[str, Any]) -> str | None:
    """Why the host Get-HostInfo describes cannot nest (None: it can).

    Hyper-V exposes VT-x with EPT from Windows Server 2016 and AMD-V with
    RVI from Windows Server 2022; both need second level address
    translation (processor feature ``slat``).
    """
    cpu = host_info['cpu']
    vendor = cpu.get('vendor') or ''
    parts = (host_info.get('os_version') or '').split('.')
    build = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    if 'slat' not in {f.lower() for f in cpu.get('features') or []}:
        return 'its processor has no second level address translation (EPT or RVI)'
    minimum = NESTED_MIN_BUILD.get(vendor)
    if minimum is None:
        return f'{vendor or "its"} processors do not support nested virtualization'
    if build < minimum:
        return (f'it runs Windows build {build}; nested virtualization on {vendor} '
                f'processors needs build {minimum} or later')
    return None


def _spec_int(instance: Any, key: str) -> int:
    value = (instance.flavor.extra_specs or {}).get(key)
    if value in (None, ''):
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise exception.InvalidInput(
            reason=f'flavor extra spec {key} must be a whole number of 0 or more, '
                   f'got {value!r}')
    return number


def disk_max_iops(instance: Any) -> int | None:
    """The IOPS limit of the local disks (None: no limit), as compute-hyperv computed it.

    ``quota:disk_total_iops_sec`` when set, else ``quota:disk_total_bytes_sec``
    in 8 KB normalized operations, rounded up.
    """
    iops = _spec_int(instance, 'quota:disk_total_iops_sec')
    if not iops:
        iops = math.ceil(_spec_int(instance, 'quota:disk_total_bytes_sec') / IOPS_BASE_BYTES)
    return iops or None


# -- virtual TPM and shielded VMs ---------------------------------------------------------

#: What a Hyper-V host with a virtual TPM offers: TPM 2.0 over the command response
#: buffer, its secret kept on the host (the local key protector's guardian), so nova's
#: ``hw:tpm_secret_security = host``.
VTPM_TRAITS = frozenset({'COMPUTE_SECURITY_TPM_2_0', 'COMPUTE_SECURITY_TPM_CRB',
                         'COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST'})
#: A host that can provision shielded VMs (guarded by a Host Guardian Service, with
#: the provisioning cmdlets). os-traits has no trait for it: a custom one.
SHIELDED_VM_TRAIT = 'CUSTOM_HYPERV_SHIELDED_VM'
#: The traits update_provider_tree keeps in step with the host.
SECURITY_TRAITS = VTPM_TRAITS | {SHIELDED_VM_TRAIT}


class VTPMNotSupported(exception.InvalidInput):
    """A TPM request Hyper-V can never meet: the build aborts instead of rescheduling."""

    msg_fmt = 'Instance %(instance_uuid)s cannot be built: %(reason)s'


def host_security_traits(host_info: dict[str, Any]) -> set[str]:
    """Traits for what the host really offers guests: a virtual TPM 2.0, shielded VMs."""
    security = host_info.get('security') or {}
    if not security.get('vtpm'):
        return set()
    traits = set(VTPM_TRAITS)
    if shielded_vm_refusal(host_info) is None:
        traits.add(SHIELDED_VM_TRAIT)
    return traits


def shielded_vm_refusal(host_info: dict[str, Any]) -> str | None:
    """Why the host Get-HostInfo describes cannot run shielded VMs (None: it can)."""
    security = host_info.get('security') or {}
    if not security.get('vtpm'):
        return 'it has no virtual TPM (Enable-VMTPM)'
    if not security.get('host_guarded'):
        return 'it is not guarded by a Host Guardian Service (Get-HgsClientConfiguration)'
    if security.get('hgs_mode') != 'HostGuardianService':
        return (f"its Host Guardian Service client is in mode {security.get('hgs_mode')!r}, "
                'not HostGuardianService')
    if not security.get('shielded_vm_tools'):
        return 'the shielded VM provisioning cmdlets (Initialize-ShieldedVM) are not installed'
    return None


def wants_vtpm(instance: Any, image_meta: Any) -> bool:
    """nova's ``hw:tpm_version`` / ``hw_tpm_version``, or compute-hyperv's ``os_vtpm``.

    Hyper-V's virtual TPM is version 2.0: 1.2 is refused.
    """
    config = hardware.get_vtpm_constraint(instance.flavor, image_meta)
    if config is not None and config.version != obj_fields.TPMVersion.v2_0:
        raise VTPMNotSupported(instance_uuid=instance.uuid,
                               reason=f'Hyper-V offers TPM 2.0 only, not {config.version} '
                                      '(hw:tpm_version / hw_tpm_version)')
    legacy = (_image_property(instance, 'os_vtpm') or '').lower() == 'required'
    return config is not None or legacy


def wants_shielded_vm(instance: Any) -> bool:
    """compute-hyperv's ``os_shielded_vm = required`` image property."""
    return (_image_property(instance, 'os_shielded_vm') or '').lower() == 'required'


def tpm_spec(instance: Any, image_meta: Any, secure_boot: dict[str, Any] | None,
             host_facts: Callable[[], dict[str, Any]] | None) -> dict[str, Any] | None:
    """New-Instance's ``tpm`` field, or None; refusals before anything is created.

    A virtual TPM needs secure boot (requested with ``os:secure_boot`` /
    ``os_secure_boot = required``) and is sealed with a local key protector.
    A shielded VM needs a host guarded by a Host Guardian Service (else
    ``ComputeResourcesUnavailable``: another host may be) and secure boot;
    its TPM comes with the shielding data (New-Instance's ``shielding``
    field, see :mod:`psdriver.ops.shieldingops`), so ``tpm`` stays None.
    ``host_facts`` (the last host report) is only asked when the instance
    wants one of these.
    """
    shielded = wants_shielded_vm(instance)
    if not shielded and not wants_vtpm(instance, image_meta):
        return None
    host_info = host_facts() if host_facts else None
    security = (host_info or {}).get('security') or {}
    if shielded:
        refusal = shielded_vm_refusal(host_info) if host_info is not None else None
        if refusal:
            raise exception.ComputeResourcesUnavailable(
                reason=f'the image asks for a shielded VM (os_shielded_vm) but this host '
                       f'cannot run one: {refusal}')
        if not (secure_boot or {}).get('enabled'):
            raise VTPMNotSupported(
                instance_uuid=instance.uuid,
                reason='a shielded VM needs secure boot: ask for it with '
                       'os:secure_boot=required (flavor) or os_secure_boot=required (image), '
                       'on a generation 2 image (hw_machine_type=hyperv-gen2)')
        return None
    if host_info is not None and not security.get('vtpm'):
        raise exception.ComputeResourcesUnavailable(
            reason='the instance asks for a virtual TPM but this host has none (Enable-VMTPM)')
    if not (secure_boot or {}).get('enabled'):
        raise VTPMNotSupported(
            instance_uuid=instance.uuid,
            reason='a virtual TPM needs secure boot: ask for it with os:secure_boot=required '
                   '(flavor) or os_secure_boot=required (image), on a generation 2 image '
                   '(hw_machine_type=hyperv-gen2)')
    return {'key_protector': 'local'}
