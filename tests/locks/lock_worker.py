"""Child process for the cross-process lock tests.

``contend``: enter a critical section ``--iterations`` times under the lock
and count overlaps with other processes (an O_EXCL marker file that already
exists means someone else is inside). Prints one JSON line.

``hold``: take the lock, print ``HELD``, keep it until stdin is closed.
"""

import argparse
import contextlib
import json
import os
import sys
import time

from psdriver.coordination import Coordinator, LockLost


def _coordinator(args: argparse.Namespace) -> Coordinator:
    return Coordinator(backend_url=args.url or '', lock_path=args.lock_path or '')


def contend(args: argparse.Namespace) -> int:
    coordinator = _coordinator(args)
    coordinator.start()
    # Start together: announce readiness, then wait for the parent's "go".
    open(os.path.join(args.barrier, f'ready-{os.getpid()}'), 'w').close()
    go = os.path.join(args.barrier, 'go')
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    violations = entries = 0
    max_wait = 0.0
    for _ in range(args.iterations):
        guard = (contextlib.nullcontext() if args.no_lock
                 else coordinator.lock(args.name, timeout=args.timeout))
        asked = time.monotonic()
        with guard:
            max_wait = max(max_wait, time.monotonic() - asked)
            entries += 1
            try:
                fd = os.open(args.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                violations += 1
                time.sleep(args.hold)
                continue
            time.sleep(args.hold)
            os.close(fd)
            os.unlink(args.marker)
    coordinator.stop()
    print(json.dumps({'entries': entries, 'violations': violations,
                      'max_wait': max_wait}), flush=True)
    return 0


def hold(args: argparse.Namespace) -> int:
    coordinator = _coordinator(args)
    try:
        with coordinator.lock(args.name, timeout=30):
            print('HELD', flush=True)
            sys.stdin.read()
    except LockLost:
        return 3
    finally:
        coordinator.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('mode', choices=('contend', 'hold'))
    parser.add_argument('--url', default='')
    parser.add_argument('--lock-path', default='')
    parser.add_argument('--name', required=True)
    parser.add_argument('--iterations', type=int, default=3)
    parser.add_argument('--hold', type=float, default=0.2)
    parser.add_argument('--marker', default='')
    parser.add_argument('--barrier', default='')
    parser.add_argument('--no-lock', action='store_true')
    parser.add_argument('--timeout', type=float, default=30.0)
    args = parser.parse_args()
    return contend(args) if args.mode == 'contend' else hold(args)


if __name__ == '__main__':
    sys.exit(main())
