"""The VM state machine: every operation from every state."""

from __future__ import annotations

import itertools

import pytest

from psdriver.sim import SimError
from psdriver.sim.errors import INVALID_STATE_TEXT
from psdriver.sim.vms import STATES

OPS = {
    'start': lambda h, n: h.start_vm(n),
    'stop': lambda h, n: h.stop_vm(n),
    'turn_off': lambda h, n: h.stop_vm(n, turn_off=True),
    'suspend': lambda h, n: h.suspend_vm(n),
    'resume': lambda h, n: h.resume_vm(n),
    'save': lambda h, n: h.save_vm(n),
    'restart': lambda h, n: h.restart_vm(n),
    'remove_saved_state': lambda h, n: h.remove_saved_state(n),
}

# What Hyper-V's cmdlets do, written out pair by pair.  Anything missing is refused.
LEGAL = {
    ('start', 'Off'): 'Running',
    ('start', 'Saved'): 'Running',
    ('start', 'Running'): 'Running',          # already running: warning only
    ('stop', 'Running'): 'Off',
    ('stop', 'Off'): 'Off',
    ('turn_off', 'Off'): 'Off',
    ('turn_off', 'Running'): 'Off',
    ('turn_off', 'Paused'): 'Off',
    ('turn_off', 'Saved'): 'Off',
    ('turn_off', 'Starting'): 'Off',
    ('turn_off', 'Stopping'): 'Off',
    ('suspend', 'Running'): 'Paused',
    ('suspend', 'Paused'): 'Paused',
    ('resume', 'Paused'): 'Running',
    ('resume', 'Running'): 'Running',
    ('save', 'Running'): 'Saved',
    ('save', 'Paused'): 'Saved',
    ('save', 'Saved'): 'Saved',
    ('restart', 'Running'): 'Running',
    ('remove_saved_state', 'Saved'): 'Off',
}


def _vm_in(host, state, name='vm1', memory=1024):
    """Reach ``state`` through legal moves where there are some (so side effects exist)."""
    host.create_vm(name, memory_startup_mb=memory)
    host.set_com_port(name, 'COM1', '\\\\.\\pipe\\vm1')
    if state in ('Running', 'Paused', 'Saved'):
        host.start_vm(name)
    if state == 'Paused':
        host.suspend_vm(name)
    if state == 'Saved':
        host.save_vm(name)
    if state in ('Starting', 'Stopping'):
        host.force_state(name, state)
    assert host.get_vm(name).state == state


@pytest.mark.parametrize('op,state', list(itertools.product(OPS, STATES)))
def test_every_operation_from_every_state(host, op, state):
    _vm_in(host, state)
    before = host.dump()
    if (op, state) in LEGAL:
        OPS[op](host, 'vm1')
        assert host.get_vm('vm1').state == LEGAL[(op, state)]
    else:
        with pytest.raises(SimError) as exc:
            OPS[op](host, 'vm1')
        err = exc.value
        assert err.category == 'InvalidOperation'
        assert INVALID_STATE_TEXT in err.message
        assert state in err.message
        assert err.target == 'vm1'
        assert host.dump() == before, 'a refused operation must not change the host'
    host.check_consistency()


def test_noop_keeps_uptime_and_restart_resets_it(host):
    _vm_in(host, 'Running')
    host.force_state('vm1', 'Running')
    with host.transaction() as state:
        state.vms['vm1'].started_at -= 100
    assert host.vm_uptime_seconds('vm1') >= 100
    host.start_vm('vm1')
    assert host.vm_uptime_seconds('vm1') >= 100
    host.restart_vm('vm1')
    assert host.vm_uptime_seconds('vm1') < 5


def test_memory_is_held_while_active_and_released_when_off_or_saved(host):
    free = host.memory_free_mb()
    _vm_in(host, 'Running', memory=4096)
    assert host.memory_free_mb() == free - 4096
    host.suspend_vm('vm1')
    assert host.memory_free_mb() == free - 4096
    host.save_vm('vm1')
    assert host.memory_free_mb() == free
    host.start_vm('vm1')
    assert host.memory_free_mb() == free - 4096
    host.stop_vm('vm1')
    assert host.memory_free_mb() == free


def test_saved_state_takes_disk_space_until_discarded(host):
    _vm_in(host, 'Running', memory=2048)
    free = host.volume_free('C:\\')
    host.save_vm('vm1')
    assert host.volume_free('C:\\') == free - 2048 * 1024 * 1024
    host.stop_vm('vm1', turn_off=True)
    assert host.volume_free('C:\\') == free
    host.start_vm('vm1')
    host.save_vm('vm1')
    host.remove_saved_state('vm1')
    assert host.volume_free('C:\\') == free


def test_save_fails_when_the_volume_is_full(host):
    _vm_in(host, 'Running', memory=4096)
    host.add_file('C:\\filler.bin', host.volume_free('C:\\') - 1024)
    with pytest.raises(SimError) as exc:
        host.save_vm('vm1')
    assert exc.value.category == 'ResourceUnavailable'
    assert 'not enough space on the disk' in exc.value.message
    assert host.get_vm('vm1').state == 'Running'


def test_hung_guest_refuses_shutdown_but_turn_off_works(host):
    _vm_in(host, 'Running')
    host.set_guest_shutdown('vm1', False)
    with pytest.raises(SimError) as exc:
        host.stop_vm('vm1')
    assert exc.value.category == 'OperationTimeout'
    assert host.get_vm('vm1').state == 'Running'
    host.stop_vm('vm1', turn_off=True)
    assert host.get_vm('vm1').state == 'Off'


@pytest.mark.parametrize('start,target,expected', [
    ('Off', 'Running', 'Running'),
    ('Saved', 'Running', 'Running'),
    ('Paused', 'Running', 'Running'),      # RequestStateChange(Enabled) resumes
    ('Running', 'Off', 'Off'),
    ('Paused', 'Off', 'Off'),
    ('Running', 'Paused', 'Paused'),
    ('Running', 'Saved', 'Saved'),
])
def test_set_state(host, start, target, expected):
    _vm_in(host, start)
    host.set_state('vm1', target)
    assert host.get_vm('vm1').state == expected


@pytest.mark.parametrize('start,target', [('Off', 'Paused'), ('Off', 'Saved'),
                                          ('Starting', 'Running'), ('Saved', 'Paused')])
def test_set_state_refuses_illegal_moves(host, start, target):
    _vm_in(host, start)
    with pytest.raises(SimError, match='current state'):
        host.set_state('vm1', target)


def test_set_state_rejects_unknown_state(host):
    _vm_in(host, 'Off')
    with pytest.raises(SimError) as exc:
        host.set_state('vm1', 'Starting')
    assert exc.value.category == 'InvalidArgument'


def test_operations_on_missing_vm(host):
    for op in OPS.values():
        with pytest.raises(SimError) as exc:
            op(host, 'ghost')
        assert exc.value.category == 'ObjectNotFound'
        assert exc.value.message == \
            'Hyper-V was unable to find a virtual machine with name "ghost".'


def test_console_log_records_boots_only_with_a_pipe(host):
    host.create_vm('quiet')
    host.start_vm('quiet')
    host.write_console('quiet', 'lost')
    assert host.console_output('quiet') == ''
    _vm_in(host, 'Running')
    host.write_console('vm1', 'login: ')
    host.restart_vm('vm1')
    log = host.console_output('vm1').splitlines()
    assert 'booting' in log[0] and log[-1] == 'vm1 login: '
    reboot = next(i for i, line in enumerate(log) if 'rebooting' in line)
    assert log[reboot - 1] == 'login: ' and log.count('vm1 login: ') == 2
