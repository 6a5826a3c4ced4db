"""One live run per output directory: an advisory ``flock`` on ``<output_dir>/.lock``.

The kernel drops the lock when its process dies, however it dies (kill -9 included), so a lock
left by a dead run is simply taken over; the pid written in the file names the holder in the
error and the takeover warning.
"""

from __future__ import annotations

import fcntl
import os
import warnings
from pathlib import Path

from spectrum_rl.errors import ConfigError


class RunLock:
    """``with RunLock(output_dir):`` holds the directory for this process or raises ConfigError."""

    def __init__(self, output_dir: Path) -> None:
        self.path = Path(output_dir) / ".lock"
        self._file = None

    def __enter__(self) -> RunLock:
        handle = open(self.path, "a+", encoding="utf-8", errors="replace")  # whatever a copied folder holds
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise ConfigError(
                f"'{self.path.parent}' is in use by a running training (pid {holder}); wait for it "
                "to end, stop it, or choose another run.output_dir",
                field="run.output_dir",
            ) from None
        handle.seek(0)
        stale = handle.read().strip()
        if stale and stale != str(os.getpid()):
            warnings.warn(
                f"taking over the lock of {self.path.parent} left by pid {stale}, which is no longer running",
                stacklevel=2,
            )
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.truncate(0)  # a clean exit leaves no pid behind (nothing to warn about next time)
        self._file.close()  # closing releases the flock
