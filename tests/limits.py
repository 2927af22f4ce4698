"""A per-call time limit for tests that feed hostile input (fuzzing)."""

from __future__ import annotations

import faulthandler
import signal
import sys
from contextlib import contextmanager


@contextmanager
def time_limit(seconds: float, what: str = "the call", hard_factor: float = 5.0):
    """Fail the test if the block runs longer than `seconds`.

    SIGALRM interrupts Python code with an AssertionError; the expiry is also remembered, so
    that a library swallowing that exception does not hide the overrun. A hang inside C code
    that never returns to Python cannot be interrupted that way: a faulthandler watchdog then
    dumps every thread's stack and ends the process after `hard_factor * seconds`, so a hang
    fails the run instead of stalling it. Main thread, POSIX only.
    """
    expired = []

    def fail(*_):
        expired.append(True)
        raise AssertionError(f"{what} took more than {seconds} s (a hang?)")

    old = signal.signal(signal.SIGALRM, fail)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds * hard_factor, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not expired, f"{what} took more than {seconds} s (a hang?)"
