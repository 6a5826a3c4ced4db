"""A control group per sandbox run: a memory cap that counts everything the code makes the kernel
hold.

The address-space limit (RLIMIT_AS) bounds what the code maps, not what the kernel holds on its
behalf outside its address space: tmpfs files, memfds, shared memory, pipe and socket buffers (48
memfds of 16 MiB held 768 MiB under a 256 MiB limit). A memory cgroup charges all of it to the
code. Each run gets a cgroup of its own, ``spectrum-rl-<trainer pid>-<n>``, under the trainer's
own (:func:`cage`: made once, lent again when its run has left it empty), with the run's memory
limit and no swap; the sandbox joins it before
bubblewrap starts (:func:`join_command`: ``/bin/sh`` writes itself into ``cgroup.procs`` and then
executes bubblewrap), so nothing of the sandbox ever runs outside it. cgroup v2 (``memory.max``,
``memory.swap.max``; ``memory.events`` counts OOM kills) and v1 (the ``memory`` hierarchy:
``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes``; ``memory.oom_control``) are both used.
Processes need no cgroup cap: the code cannot make any (RLIMIT_NPROC 0), and bubblewrap's own
exited processes may wait to be reaped by the machine's init, still counted by a ``pids`` cgroup.

It is opt-in (``memory_cgroup`` of `code_tests`): on cgroup v1 a sandbox run in a memory cgroup
costs about 12 ms more (benchmarks/README.md), half a sample again. Without it the sandbox refuses
memfds, shared memory and sockets, and a bound holds (docs/reliability.md). Where the trainer may
not create cgroups (a non-root trainer without a delegated subtree, a v2 cgroup whose controllers
cannot be enabled below it, no memory controller), :func:`layout` is None. Stdlib only.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_PREFIX = "spectrum-rl-"
_JOIN = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift; exec "$@"'
JOIN_FAILED = 125  # the exit status of join_command when it cannot enter the cgroup
_counter = itertools.count()


@dataclass(frozen=True)
class Layout:
    """Where this trainer creates its sandboxes' cgroups: the parent folder per hierarchy."""

    version: int  # 1 or 2
    memory: Path  # the parent folder in the (v2: unified; v1: memory) hierarchy


def _own_paths() -> dict[str, str]:
    """Controller -> this process's cgroup path ("" -> the v2 path), from /proc/self/cgroup."""
    out: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def _mounts() -> list[tuple[Path, str, set[str]]]:
    """(mount point, file system type, super options) of every cgroup file system."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) > 4 and len(tail) > 2 and tail[0] in ("cgroup", "cgroup2"):
            out.append((Path(fields[4]), tail[0], set(tail[2].split(","))))
    return out


def _writable_child(parent: Path, needed: str) -> bool:
    """Whether this process can create a cgroup under ``parent`` that has the file ``needed`` and
    write to it, and move itself in (tried with a throw-away cgroup and a throw-away shell)."""
    probe = parent / f"{_PREFIX}{os.getpid()}-probe"
    try:
        probe.mkdir(exist_ok=True)
        try:
            (probe / needed).write_text((probe / needed).read_text().split()[0] + "\n")
            status = subprocess.run(["/bin/sh", "-c", _JOIN, "sh", str(probe / "cgroup.procs"), "--", "true"])
            return status.returncode == 0
        finally:
            _remove(probe)
    except (OSError, IndexError):
        return False


def _remove(folder: Path) -> None:
    """rmdir a cgroup; its last processes may take a moment to leave it after they exit."""
    for _ in range(50):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.002)


def _sweep(parent: Path) -> None:
    """Remove cgroups left by trainers that died (their pid no longer runs)."""
    for child in parent.glob(f"{_PREFIX}*"):
        pid = child.name[len(_PREFIX) :].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove(child)


@cache
def layout() -> Layout | None:
    """Where sandbox cgroups go on this machine, or None when the trainer cannot make them."""
    try:
        own, mounts = _own_paths(), _mounts()
    except (OSError, ValueError):
        return None
    for point, kind, _ in mounts:
        if kind == "cgroup2" and "" in own:
            parent = point / own[""].lstrip("/")
            if _enable_v2(parent) and _writable_child(parent, "memory.max"):
                _sweep(parent)
                return Layout(2, parent)
    for point, kind, options in mounts:
        if kind == "cgroup" and "memory" in options and "memory" in own:
            parent = point / own["memory"].lstrip("/")
            if _writable_child(parent, "memory.limit_in_bytes"):
                _sweep(parent)
                return Layout(1, parent)
    return None


def _enable_v2(parent: Path) -> bool:
    """Whether the memory controller is (or could be made) available to cgroups under ``parent``."""
    try:
        if "memory" not in (parent / "cgroup.controllers").read_text().split():
            return False
        if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
            # EBUSY when the trainer's own cgroup holds processes: v2 allows none beside children
            (parent / "cgroup.subtree_control").write_text("+memory")
        return True
    except OSError:
        return False


class Cage:
    """One memory cgroup for one sandbox run at a time: armed with a run's limit, joined by
    :func:`join_command`, asked whether the kernel killed something for memory. :func:`cage` lends
    them out and takes them back."""

    def __init__(self, where: Layout) -> None:
        self.where = where
        self.memory = where.memory / f"{_PREFIX}{os.getpid()}-{next(_counter)}"
        self._ooms = 0
        self.memory.mkdir()
        if where.version == 2:
            try:
                self._write(self.memory / "memory.swap.max", 0, optional=True)
            except OSError:
                self.close()
                raise

    def arm(self, memory_bytes: int) -> None:
        """Set the memory limit for the next run (no swap) and note the OOM kills so far."""
        if self.where.version == 2:
            self._write(self.memory / "memory.max", memory_bytes)
        else:  # memory + swap may never be set below memory alone: lift it, set memory, then cap it
            self._write(self.memory / "memory.memsw.limit_in_bytes", -1, optional=True)
            self._write(self.memory / "memory.limit_in_bytes", memory_bytes)
            self._write(self.memory / "memory.memsw.limit_in_bytes", memory_bytes, optional=True)
        self._ooms = self._oom_count()

    @staticmethod
    def _write(path: Path, value: int, optional: bool = False) -> None:
        try:
            path.write_text(f"{value}\n")
        except OSError:
            if not optional:  # e.g. swap accounting off: there is no swap to cap
                raise

    def procs(self) -> str:
        return str(self.memory / "cgroup.procs")

    def empty(self) -> bool:
        """No process left in it (it may be lent again)."""
        try:
            return not Path(self.procs()).read_text().strip()
        except OSError:
            return False

    def _oom_count(self) -> int:
        name = "memory.events" if self.where.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.memory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this run for going over its memory limit."""
        return self._oom_count() > self._ooms

    def close(self) -> None:
        _remove(self.memory)


# A fresh memory cgroup slows its first process down by ~12 ms (v1): cages are kept and lent again
# once empty, and removed at exit.
_idle: list[Cage] = []
_idle_lock = threading.Lock()


@contextlib.contextmanager
def cage(memory_bytes: int) -> Iterator[Cage]:
    """A cage armed with ``memory_bytes`` for one run; OSError when none can be made (``layout()``
    is None, or the kernel refuses)."""
    where = layout()
    if where is None:
        raise OSError("this machine lets the trainer create no memory cgroup")
    with _idle_lock:
        lent = _idle.pop() if _idle else None
    try:
        if lent is None:
            raise OSError("none idle")
        lent.arm(memory_bytes)
    except OSError:  # none idle, or its limit cannot be set (usage left above it): a fresh one
        if lent is not None:
            lent.close()
        lent = Cage(where)
        try:
            lent.arm(memory_bytes)
        except OSError:
            lent.close()
            raise
    try:
        yield lent
    finally:
        if lent.empty():
            with _idle_lock:
                _idle.append(lent)
        else:  # something outlived the run: never lend it again (removed by a later sweep if not now)
            lent.close()


@atexit.register
def _close_idle() -> None:
    with _idle_lock:
        while _idle:
            _idle.pop().close()


def join_command(cage: Cage | None, argv: list[str]) -> list[str]:
    """``argv`` run inside ``cage`` (unchanged when None): a shell enters the cgroup, then executes it."""
    if cage is None:
        return argv
    return ["/bin/sh", "-c", _JOIN, "sh", cage.procs(), "--", *argv]
