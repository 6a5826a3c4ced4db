"""A control group per sandbox run: a memory cap that counts everything the code makes the kernel
hold, and a process cap.

The address-space limit (RLIMIT_AS) bounds what the code maps, not what the kernel holds on its
behalf outside its address space: tmpfs files, memfds, shared memory, pipe and socket buffers (48
memfds of 16 MiB held 768 MiB under a 256 MiB limit). A memory cgroup charges all of it to the
code. Each run gets a fresh cgroup, ``spectrum-rl-<trainer pid>-<n>``, under the trainer's own,
with the run's memory limit, no swap and ``PIDS_MAX`` processes; the sandbox joins it before
bubblewrap starts (:func:`join_command`: ``/bin/sh`` writes itself into ``cgroup.procs`` and then
executes bubblewrap), so nothing of the sandbox ever runs outside it. cgroup v2 (``memory.max``,
``memory.swap.max``, ``pids.max``; ``memory.events`` counts OOM kills) and v1 (the ``memory`` and
``pids`` hierarchies: ``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes``, ``pids.max``;
``memory.oom_control``) are both used.

Where the trainer may not create cgroups (a non-root trainer without a delegated subtree, a v2
cgroup whose controllers cannot be enabled below it, no memory controller), :func:`layout` is None
and the sandbox falls back to a stated bound (docs/reliability.md). Stdlib only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PIDS_MAX = 8  # sh, bubblewrap and the runner need 3; the runner cannot create processes anyway
_PREFIX = "spectrum-rl-"
_JOIN = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift; exec "$@"'
JOIN_FAILED = 125  # the exit status of join_command when it cannot enter the cgroup
_counter = itertools.count()


@dataclass(frozen=True)
class Layout:
    """Where this trainer creates its sandboxes' cgroups: the parent folder per hierarchy."""

    version: int  # 1 or 2
    memory: Path  # v2: the one parent; v1: the memory hierarchy's
    pids: Path | None  # v1 only: the pids hierarchy's (None: not mounted or not writable)


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
                return Layout(2, parent, None)
    v1: dict[str, Path] = {}
    for point, kind, options in mounts:
        for name in ("memory", "pids"):
            if kind == "cgroup" and name in options and name in own:
                v1[name] = point / own[name].lstrip("/")
    if "memory" in v1 and _writable_child(v1["memory"], "memory.limit_in_bytes"):
        pids = v1.get("pids")
        pids = pids if pids is not None and _writable_child(pids, "pids.max") else None
        for parent in (v1["memory"], pids):
            if parent is not None:
                _sweep(parent)
        return Layout(1, v1["memory"], pids)
    return None


def _enable_v2(parent: Path) -> bool:
    """Whether the memory controller is (or could be made) available to cgroups under ``parent``;
    pids too where the kernel has it."""
    try:
        available = set((parent / "cgroup.controllers").read_text().split())
        wanted = {"memory", "pids"} & available
        if "memory" not in wanted:
            return False
        missing = wanted - set((parent / "cgroup.subtree_control").read_text().split())
        if missing:  # EBUSY when the trainer's own cgroup holds processes: v2 allows none beside children
            (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(missing)))
        return True
    except OSError:
        return False


class Cage:
    """One sandbox run's cgroup(s): made with the limits, joined by :func:`join_command`, asked
    whether the kernel killed something for memory, removed by :meth:`close`."""

    def __init__(self, where: Layout, memory_bytes: int) -> None:
        self.where = where
        name = f"{_PREFIX}{os.getpid()}-{next(_counter)}"
        self.memory = where.memory / name
        self.pids = where.pids / name if where.pids is not None else None
        self.folders = [f for f in (self.memory, self.pids) if f is not None]
        try:
            for folder in self.folders:
                folder.mkdir()
            if where.version == 2:
                self._write(self.memory / "memory.max", memory_bytes)
                self._write(self.memory / "memory.swap.max", 0, optional=True)
                self._write(self.memory / "pids.max", PIDS_MAX, optional=True)
            else:
                self._write(self.memory / "memory.limit_in_bytes", memory_bytes)
                self._write(self.memory / "memory.memsw.limit_in_bytes", memory_bytes, optional=True)
                if self.pids is not None:
                    self._write(self.pids / "pids.max", PIDS_MAX)
        except OSError:
            self.close()
            raise

    @staticmethod
    def _write(path: Path, value: int, optional: bool = False) -> None:
        try:
            path.write_text(f"{value}\n")
        except OSError:
            if not optional:  # e.g. swap accounting off: there is no swap to cap
                raise

    def procs(self) -> list[str]:
        return [str(folder / "cgroup.procs") for folder in self.folders]

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this cgroup for going over its memory limit."""
        name = "memory.events" if self.where.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.memory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        return False

    def close(self) -> None:
        for folder in self.folders:
            _remove(folder)


def join_command(cage: Cage | None, argv: list[str]) -> list[str]:
    """``argv`` run inside ``cage`` (unchanged when None): a shell enters the cgroup, then executes it."""
    if cage is None:
        return argv
    return ["/bin/sh", "-c", _JOIN, "sh", *cage.procs(), "--", *argv]
