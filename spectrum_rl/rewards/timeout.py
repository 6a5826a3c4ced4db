"""A wall-clock limit on one reward call, so a hanging component cannot stall training.

In the main thread (the CLI's case) a SIGALRM timer raises ``TimeoutError`` inside the call, which
interrupts Python loops and blocking waits alike and leaves nothing running. Elsewhere (signals
reach only the main thread) the call runs in a daemon thread that is abandoned when it overruns:
training goes on, but a busy-looping call keeps using its share of the CPU until it returns.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def call_with_timeout(fn: Callable[[], T], seconds: float | None) -> T:
    """``fn()``, or ``TimeoutError`` after ``seconds`` (None: no limit)."""
    if seconds is None:
        return fn()
    message = f"timed out after {seconds:g} s"
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):

        def on_alarm(signum, frame):
            raise TimeoutError(message)

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    result: list = []

    def target() -> None:
        try:
            result.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result.append((False, exc))

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if not result:
        raise TimeoutError(message)
    ok, value = result[0]
    if not ok:
        raise value
    return value
