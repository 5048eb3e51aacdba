"""Host power actions: a reboot or shutdown of the simulated host, without a real one.

``Restart-Computer`` and ``Stop-Computer`` are modelled on the host's state:
every active VM gets its automatic stop action (save, guest shutdown or turn
off), console logger processes end, and then

* a reboot starts the host again at once: its uptime restarts and VMs come
  back according to their automatic start action (``StartIfRunning``: those
  that were running, ``Start``: all, ``Nothing``: none);
* a shutdown leaves the host down (it stops answering, as with
  ``faults.host_down()``) until :meth:`HostPowerRules.power_on_host`, the
  out-of-band power on.
"""

from __future__ import annotations

import time

from psdriver.sim.cluster import ClusterRules
from psdriver.sim.errors import SimError, invalid_argument
from psdriver.sim.state import HostPower
from psdriver.sim.storage import ACTIVE_STATES
from psdriver.sim.txn import reads, writes

POWER_ACTIONS = ('Reboot', 'Shutdown')
#: Seconds a guest gets to shut down when the host goes down (ShutDown stop action).
HOST_STOP_GUEST_TIMEOUT = 300


class HostPowerRules(ClusterRules):

    @writes
    def host_power_action(self, action: str, *, force: bool = False) -> HostPower:
        """``Restart-Computer`` (Reboot) or ``Stop-Computer`` (Shutdown).

        Without ``force`` Windows refuses while other users are logged on
        (``interactive_sessions`` in the host configuration).
        """
        if action not in POWER_ACTIONS:
            raise invalid_argument(f"'{action}' is not a host power action; use Reboot or "
                                   'Shutdown.', action)
        cfg = self._state.config
        if cfg.interactive_sessions and not force:
            verb = 'restart' if action == 'Reboot' else 'stop'
            raise SimError(f'Failed to {verb} the computer {cfg.hostname} with the following '
                           'error message: The system shutdown cannot be initiated because '
                           'there are other users logged on to the computer.',
                           'OperationStopped', f'{verb.capitalize()}ComputerFailed',
                           'System.InvalidOperationException', cfg.hostname)
        power = self._state.power
        power.running_at_stop = self._stop_all_vms()
        self._state.console_loggers.clear()
        power.last_action = action
        power.last_action_time = time.time()
        if action == 'Reboot':
            power.reboots += 1
            self._boot()
        else:
            power.shutdowns += 1
            self._state.faults.host_down = True
        return power

    @writes
    def power_on_host(self) -> HostPower:
        """Power the host on from outside (IPMI): it answers again and starts its VMs."""
        self._state.faults.host_down = False
        self._boot()
        return self._state.power

    @reads
    def power_history(self) -> HostPower:
        return self._state.power

    def _stop_all_vms(self) -> list[str]:
        """Apply each active VM's automatic stop action; the names of those that ran."""
        stopped = []
        for vm in sorted(self._state.vms.values(), key=lambda v: v.name.lower()):
            if vm.state not in ACTIVE_STATES:
                continue
            stopped.append(vm.name)
            try:
                if vm.automatic_stop_action == 'Save':
                    self.save_vm(vm.name)
                elif vm.automatic_stop_action == 'ShutDown':
                    self.shutdown_guest(vm.name, HOST_STOP_GUEST_TIMEOUT)
            except SimError:
                pass            # Hyper-V turns off what it cannot save or shut down
            if vm.state != 'Off' and vm.state != 'Saved':
                self.stop_vm(vm.name, turn_off=True)
        return stopped

    def _boot(self) -> None:
        self._state.boot_time = time.time()
        self.renumber_disks()
        power = self._state.power
        was_running = {name.lower() for name in power.running_at_stop}
        for vm in sorted(self._state.vms.values(), key=lambda v: v.name.lower()):
            wanted = vm.automatic_start_action == 'Start' or (
                vm.automatic_start_action == 'StartIfRunning' and vm.name.lower() in was_running)
            if wanted and vm.state in ('Off', 'Saved'):
                try:
                    self.start_vm(vm.name)
                except SimError:
                    pass        # the host's event log would say why; the VM stays off
        power.running_at_stop = []
