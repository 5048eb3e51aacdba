"""Set-InstancePowerState: the script's plan of steps per action and state.

``PLANS`` is the ``x-transitions`` table of the contract; each step is the
Hyper-V cmdlet the script runs, applied to the host's state machine, which
refuses what Hyper-V refuses.  A refusal becomes InvalidOperation /
PsDriver.InvalidPowerTransition carrying Hyper-V's message.  The guest
shutdown is simulated time: nothing sleeps.  With ConsoleLogPath, a VM left
running gets its console logger (:func:`~psdriver.sim.console_logger.ensure_logger`).
"""

from __future__ import annotations

from typing import Any, Callable

from psdriver.sim.dispatch import handler, prepare
from psdriver.sim.errors import SimError
from psdriver.sim.console_logger import RUNNING_STATES, ensure_logger
from psdriver.sim.host import SimHost
from psdriver.sim.scriptlib import in_set, int_param, not_empty, script_error, switch, target_vm

NAME = 'Set-InstancePowerState'
ACTIONS = ('Start', 'Stop', 'Shutdown', 'Restart', 'SoftReboot', 'Pause', 'Resume', 'Save',
           'Restore')
#: Action -> {state at the start ('*': any other): steps}.
PLANS: dict[str, dict[str, list[str]]] = {
    'Start': {'Running': [], 'Starting': [], 'Paused': ['Resume'], '*': ['Start']},
    'Stop': {'Off': [], 'Saved': ['DiscardSavedState'], '*': ['TurnOff']},
    'Shutdown': {'Off': [], 'Running': ['GuestShutdown'], 'Saved': ['DiscardSavedState'],
                 '*': ['TurnOff']},
    'Restart': {'Off': ['Start'], 'Saved': ['DiscardSavedState', 'Start'],
                'Paused': ['TurnOff', 'Start'], '*': ['Reset']},
    'SoftReboot': {'Running': ['GuestShutdown'], 'Off': ['Start'],
                   'Saved': ['DiscardSavedState', 'Start'], 'Paused': ['TurnOff', 'Start'],
                   '*': ['Reset']},
    'Pause': {'Paused': [], '*': ['Pause']},
    'Resume': {'Running': [], '*': ['Resume']},
    'Save': {'Saved': [], '*': ['Save']},
    'Restore': {'Running': [], 'Paused': ['Resume'], '*': ['Start']},
}
HARD_STEPS = ('TurnOff', 'Reset', 'DiscardSavedState')

_STEPS: dict[str, Callable[[SimHost, str], Any]] = {
    'Start': lambda h, n: h.start_vm(n),
    'TurnOff': lambda h, n: h.stop_vm(n, turn_off=True),
    'DiscardSavedState': lambda h, n: h.remove_saved_state(n),
    'Reset': lambda h, n: h.restart_vm(n),
    'Pause': lambda h, n: h.suspend_vm(n),
    'Resume': lambda h, n: h.resume_vm(n),
    'Save': lambda h, n: h.save_vm(n),
}


def plan_for(action: str, state: str) -> list[str]:
    table = PLANS[action]
    return list(table.get(state, table['*']))


def _run_step(host: SimHost, step: str, name: str, action: str) -> None:
    """``Invoke-PowerStep``."""
    try:
        _STEPS[step](host, name)
    except SimError as exc:
        now = host.get_vm(name).state
        raise script_error(f"Cannot {action} virtual machine '{name}' (state {now}, step "
                           f'{step}): {exc.message}', 'InvalidOperation',
                           'PsDriver.InvalidPowerTransition', name) from None


@handler(NAME)
def set_power_state(host: SimHost, params: dict[str, Any]) -> dict[str, Any]:
    name = not_empty(NAME, params, 'Name')
    action = in_set(NAME, params, 'Action', ACTIONS)
    timeout = int_param(NAME, params, 'TimeoutSeconds', 60, 0, 86400)
    int_param(NAME, params, 'RetryIntervalSeconds', 5, 1, 3600)
    no_force = switch(params, 'NoForce')
    log_path = params.get('ConsoleLogPath') or ''
    log_bytes = int_param(NAME, params, 'ConsoleLogMaxBytes', 524288, 4096, 1073741824)
    vm = target_vm(host, name)
    name = vm.name
    previous = vm.state
    plan = plan_for(action, previous)
    if no_force and action in ('Shutdown', 'SoftReboot') and \
            any(step in HARD_STEPS for step in plan):
        raise script_error(f"Cannot {action} virtual machine '{name}' cleanly: it is "
                           f'{previous}, and -NoForce forbids a hard power operation.',
                           'InvalidOperation', 'PsDriver.InvalidPowerTransition', name)
    forced = False
    waited = 0
    for step in plan:
        if step != 'GuestShutdown':
            _run_step(host, step, name, action)
            forced = forced or step in HARD_STEPS
            continue
        is_off, seconds = host.shutdown_guest(name, timeout)
        waited += seconds
        if not is_off and no_force:
            raise script_error(f"Virtual machine '{name}' did not shut down within {timeout} "
                               'seconds.', 'OperationTimeout', 'PsDriver.GuestShutdownTimeout',
                               name)
        if action == 'Shutdown':
            if not is_off:
                _run_step(host, 'TurnOff', name, action)
                forced = True
        elif is_off:
            _run_step(host, 'Start', name, action)
        else:
            _run_step(host, 'Reset', name, action)
            forced = True
    vm = host.get_vm(name)
    logger = None
    if log_path and vm.state in RUNNING_STATES:
        logger = ensure_logger(host, vm, str(log_path), log_bytes)
    metering = None
    if switch(params, 'EnableMetrics') and vm.state in RUNNING_STATES:
        host.enable_metering(name)
        metering = True
    return {'name': name, 'action': action, 'previous_state': previous,
            'state': vm.state, 'changed': bool(plan), 'forced': forced,
            'waited_seconds': waited, 'console_logger': logger, 'metering_enabled': metering}


@prepare(NAME)
def _prepare(host: SimHost, params: dict[str, Any]) -> None:
    """The example's instance, running."""
    from psdriver.sim.scenario import add_instance
    add_instance(host, params['Name'])
