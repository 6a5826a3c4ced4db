"""SIGINT/SIGTERM during training: finish the current step, checkpoint, exit 130/143.

The first signal only sets a flag, which the training loop reads after each step (all processes
agree on it, so none is left waiting in a collective). A second SIGINT raises KeyboardInterrupt
at once: the step is abandoned and the last checkpoint, written atomically, stays the latest.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopOnSignal:
    """Context manager that records the first SIGINT/SIGTERM instead of dying on it.

    Handlers are installed only in the main thread (Python delivers signals there); elsewhere it
    does nothing and ``signum`` stays None.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: abandon now
        self.signum = self.signum or signum

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
