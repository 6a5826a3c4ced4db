"""Run untrusted Python code (a model's completion) against test snippets in a separate process.

One call of :func:`run_tests` starts one ``python -I -S _sandbox_runner.py`` process (isolated mode,
no site-packages: only the stdlib is importable) and isolates it in layers:

- a fresh temporary working directory (removed afterwards) and a scrubbed environment (PATH, LANG,
  HOME and TMPDIR only: no API keys or tokens leak from the trainer);
- before exec (``preexec_fn``): its own network namespace when the kernel allows it (root), so not
  even loopback is reachable; nice 10; every capability dropped from the bounding set plus
  ``no_new_privs``, so a root child keeps uid 0 but cannot mount, mknod, ptrace, renice itself up,
  raise its limits or bypass file permissions; SIGKILL if the trainer thread that started it dies;
  rlimits on CPU seconds, address space, file size (16 MiB), processes (not enforced for root,
  hence the audit hook) and core dumps;
- inside the runner, a PEP 578 audit hook that ends the run on file access outside the working
  directory, process creation, kill, sockets, ctypes, dangerous modules and tracing, and refuses
  frame introspection (details in :mod:`spectrum_rl.rewards._sandbox_runner`);
- a wall-clock timeout that kills the whole process group; the code's stdout is discarded and its
  stderr goes to an append-only file of which at most 64 KiB are read back.

The result comes back as one stdout line carrying a random nonce, so printed output cannot forge it.

This is defence in depth, not a VM: the code runs in one CPython process under the trainer's uid,
contained only as far as audit events, rlimits and capabilities reach. Where the kernel refuses a
network namespace (not root, or a restricted container), the network is closed by the audit hook
alone. Run hostile code inside a container or VM as well; this layer contains a policy model's
mistakes and reward hacks (fake result lines, fork bombs, reading secrets, killing the trainer).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from spectrum_rl.rewards._sandbox_runner import BLOCKED_EXIT

_RUNNER = str(Path(__file__).with_name("_sandbox_runner.py"))
_OUTPUT_CAP = 64 * 1024  # bytes of stdout/stderr read back
_FILE_LIMIT = 16 * 1024 * 1024  # RLIMIT_FSIZE: also caps how much stdout/stderr can grow
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 1, 24, 38
_CAP_LAST = 63  # dropping a capability the kernel does not know just fails (EINVAL)


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one :func:`run_tests` call.

    passed: tests that ran without raising (0 unless status is "ok").
    total: number of tests.
    status: "ok" (the tests ran), "timeout" (wall clock or CPU limit), "memory" (MemoryError under
        the address-space limit), "blocked" (the audit hook ended the run) or "crashed" (anything
        else: no valid result line, a signal, os._exit, too much output).
    detail: a short human-readable reason (the blocked operation, the exit status, stderr's tail).
    """

    passed: int
    total: int
    status: str
    detail: str = ""


@cache
def _libc() -> tuple[Callable[..., int], Callable[..., int]] | None:
    """``(unshare, prctl)`` from libc, prepared once in the parent: the forked child must not load
    libraries or import modules before exec."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        unshare, prctl = libc.unshare, libc.prctl
    except (OSError, AttributeError):
        return None
    unshare.argtypes, unshare.restype = [ctypes.c_int], ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return unshare, prctl


def _limits(cpu_s: float, memory_mb: int) -> list[tuple[int, int]]:
    """(resource, value) pairs for the child, clamped to the parent's hard limits (which an
    unprivileged process cannot raise)."""
    wanted = [
        (resource.RLIMIT_CPU, max(1, math.ceil(cpu_s))),  # soft = hard: SIGKILL, not a catchable SIGXCPU
        (resource.RLIMIT_FSIZE, _FILE_LIMIT),
        (resource.RLIMIT_NPROC, 0),  # counts every process of the uid; ignored for root
        (resource.RLIMIT_CORE, 0),
        # Last: the forked child still maps the trainer's (possibly huge) address space, so after
        # this even a small allocation could fail.
        (resource.RLIMIT_AS, memory_mb * 1024 * 1024),
    ]
    clamped = []
    for res, value in wanted:
        hard = resource.getrlimit(res)[1]
        clamped.append((res, value if hard == resource.RLIM_INFINITY else min(value, hard)))
    return clamped


def _confine(limits: list[tuple[int, int]], libc: tuple[Callable[..., int], Callable[..., int]] | None) -> None:
    """``preexec_fn``: runs in the forked child before exec, so only plain system calls here (no
    imports, no locks). Failures of the privileged steps are ignored: the audit hook still holds."""
    if libc is not None:
        unshare, prctl = libc
        unshare(_CLONE_NEWNET)  # needs CAP_SYS_ADMIN: before the capabilities go
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for cap in range(_CAP_LAST + 1):
            prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
        prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.nice(10)
    for res, value in limits:
        resource.setrlimit(res, (value, value))


def _tail(path: str) -> bytes:
    """At most the last ``_OUTPUT_CAP`` bytes of the file at ``path``."""
    with open(path, "rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - _OUTPUT_CAP))
        return file.read(_OUTPUT_CAP)


def _result_line(stdout: bytes, nonce: str, total: int) -> tuple[int, str] | None:
    """(passed, status) from the last line that starts with the nonce, if it is well formed."""
    for line in reversed(stdout.splitlines()):
        fields = line.decode("ascii", "replace").split()
        if len(fields) == 4 and fields[0] == nonce:
            _, passed, reported_total, status = fields
            if (
                passed.isdigit()
                and reported_total == str(total)
                and int(passed) <= total
                and status in ("ok", "memory")
            ):
                return int(passed), status
            return None
    return None


def _stop(proc: subprocess.Popen) -> None:
    """Kill the runner's process group, then reap the runner. The runner leads its own session, so
    it cannot leave the group, and until it is reaped the group id cannot be reused."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_tests(code: str, tests: Sequence[str], *, wall_s: float, cpu_s: float, memory_mb: int) -> SandboxResult:
    """Execute ``code``, then each test snippet (e.g. ``assert f(2) == 4``) in the same namespace,
    in a sandboxed subprocess; a test passes when it runs without raising. A failure to load the
    code fails every test. Limits: ``wall_s`` wall-clock seconds, ``cpu_s`` CPU seconds (rounded up
    to whole seconds), ``memory_mb`` MiB of address space."""
    tests = [str(t) for t in tests]
    total = len(tests)
    nonce = secrets.token_hex(16)
    payload = json.dumps({"nonce": nonce, "code": code, "tests": tests}).encode()
    limits, libc = _limits(cpu_s, memory_mb), _libc()
    with tempfile.TemporaryDirectory(prefix="spectrum-sandbox-") as base:
        work, out_path, err_path = (os.path.join(base, name) for name in ("work", "stdout", "stderr"))
        os.mkdir(work)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": work, "TMPDIR": work}
        proc = None
        timed_out = False
        # Output files sit beside the working directory (out of the code's reach by path) and are
        # handed over append-only: the code can neither read the result line back nor rewrite it.
        with open(out_path, "ab", buffering=0) as out, open(err_path, "ab", buffering=0) as err:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", _RUNNER],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    cwd=work,
                    env=env,
                    close_fds=True,
                    start_new_session=True,
                    preexec_fn=lambda: _confine(limits, libc),
                )
                try:
                    proc.communicate(payload, timeout=wall_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
            finally:
                # Also on errors, e.g. the reward timeout's exception (SIGALRM) in the middle of the wait.
                if proc is not None and proc.returncode is None:
                    _stop(proc)
        stdout, stderr = _tail(out_path), _tail(err_path)
    returncode = proc.returncode
    note = stderr.decode("utf-8", "replace").strip().splitlines()
    last_note = note[-1][:200] if note else ""
    if timed_out:
        return SandboxResult(0, total, "timeout", f"wall clock limit of {wall_s:g} s")
    if returncode in (-signal.SIGKILL, -signal.SIGXCPU):
        return SandboxResult(0, total, "timeout", f"killed by signal {-returncode} (CPU limit of {cpu_s:g} s)")
    if returncode == BLOCKED_EXIT:
        return SandboxResult(0, total, "blocked", last_note)
    parsed = _result_line(stdout, nonce, total) if returncode == 0 else None
    if parsed is None:
        return SandboxResult(0, total, "crashed", f"exit status {returncode}; {last_note}".rstrip("; "))
    passed, status = parsed
    if status == "memory":
        return SandboxResult(0, total, "memory", f"MemoryError under the {memory_mb} MiB limit")
    return SandboxResult(passed, total, "ok")
