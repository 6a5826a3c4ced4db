"""Run a model's Python code under OS isolation and bring back what it computed.

Threat model: the code is hostile. A policy under RL learns whatever raises its reward, so its code
may try to read or write outside files, forge its result, stop training or attack the machine. The
operating system is the boundary (bubblewrap, https://github.com/containers/bubblewrap); the
code runs in ``python -I -S`` with :mod:`spectrum_rl.rewards._sandbox_runner`, and:

- **namespaces**: its own mount, PID, network (no interface but a downed loopback), IPC and UTS
  namespaces, a cgroup namespace where the kernel has them;
- **user**: an unprivileged user (uid 65534 when the trainer is root: bubblewrap builds the sandbox
  as root, then ``setpriv`` drops to that uid with no capabilities and an empty bounding set;
  otherwise the trainer's own unprivileged uid in a user namespace, with nested user namespaces
  disabled), ``no_new_privs``, and a seccomp filter (:mod:`spectrum_rl.rewards.seccomp`);
- **files**: a fresh root where only ``/usr``, ``/bin``, ``/lib*`` (as on the host), the interpreter,
  its stdlib (site-packages hidden) and the runner are visible, read-only; a private tmpfs of
  ``SCRATCH_BYTES`` at ``/tmp`` (its working directory, HOME and TMPDIR) is the only writable
  place. Nothing of the host's ``/etc``, ``/home``, ``/root``, ``/tmp``, ``/proc`` or ``/work`` is
  there; the kernel drops the tmpfs with the namespace, so no clean-up runs in the trainer;
- **descriptors**: stdin (the job), stdout (the reply) and stderr (its last 64 KiB are kept); every
  other descriptor is closed; a new session (no terminal to inject into);
- **limits** (set by the runner before the code runs): CPU seconds, address space, file size,
  open files, no new processes or threads, no core dumps; and a wall clock here, which kills
  bubblewrap, whose PID namespace and ``--die-with-parent`` take everything inside with it.

What comes back is *data*, never a verdict: the parent decides pass/fail
(:mod:`spectrum_rl.rewards.judgement`). Where isolation cannot be had (not Linux, no ``bwrap``, user
namespaces disabled, an architecture without a seccomp table), :func:`check_available` raises
:class:`SandboxUnavailable` with one line naming what is missing, and code rewards do not run.
Stdlib only.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from spectrum_rl.rewards import cgroup, seccomp

SANDBOX_UID = 65534  # "nobody": the uid the code runs as when the trainer is root
SCRATCH_BYTES = 64 * 1024 * 1024  # the private tmpfs: tmpfs pages are not counted by RLIMIT_AS
FILE_BYTES = 16 * 1024 * 1024  # RLIMIT_FSIZE: one file, and the captured stdout of an I/O test
OPEN_FILES = 64
REPLY_CAP = 32 * 1024 * 1024  # bytes of reply read back; more ends the run as "crashed"
STDERR_CAP = 64 * 1024  # the tail of stderr kept for the detail line
_RUNNER = Path(__file__).with_name("_sandbox_runner.py")
_RUNNER_INSIDE = "/sandbox/runner.py"
_CHUNK = 1 << 16
CPU_SLACK_S = 0.1  # CPU accounting is coarse: a kill this close to the CPU limit may be the limit's


class SandboxUnavailable(RuntimeError):
    """Code cannot be run isolated on this machine; the message says what is missing, in one line."""


@dataclass(frozen=True)
class SandboxOutcome:
    """One sandbox run.

    status: "ok" (the runner replied), "timeout" (wall clock, or killed at the CPU limit), "memory"
        (MemoryError under the address-space limit, or killed by the kernel over the cgroup's memory
        limit) or "crashed" (anything else: no reply, a signal or exit status of the code's own
        doing, a reply too large, a closed or hijacked channel, a failure of the sandbox itself).
    reply: the runner's reply when status is "ok" (untrusted data: the caller judges it).
    detail: a short reason (the limit hit, the exit status, stderr's last line).
    """

    status: str
    reply: dict | None
    detail: str = ""


def _python_mounts() -> tuple[str, list[str], list[str]]:
    """(interpreter, read-only paths it needs, site-packages folders to hide), real paths.

    A virtual environment's interpreter is a link to its base install's, so the base is what runs:
    with ``-I -S`` no site-packages is on the path, and hiding them keeps them out of reach too."""
    exe = os.path.realpath(sys.executable or "")
    if not os.path.isfile(exe):
        raise SandboxUnavailable(f"no Python interpreter to run in the sandbox (sys.executable is {exe!r})")
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix, "installed_base": sys.base_prefix}
    paths = sysconfig.get_paths(vars=base)
    needed = [exe, paths["stdlib"], paths["platstdlib"], sysconfig.get_config_var("LIBDIR") or ""]
    hidden = [paths["purelib"], paths["platlib"]]
    real = sorted({os.path.realpath(p) for p in needed if p and os.path.exists(p)})
    # Only outermost paths, and nothing /usr already holds.
    mounts = [p for p in real if not _within(p, "/usr") and not any(_within(p, q) and p != q for q in real)]
    return exe, mounts, sorted({os.path.realpath(p) for p in hidden if p and os.path.isdir(p)})


def _within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


@cache
def _bwrap_argv(root: bool) -> tuple[str, ...]:
    """The bubblewrap command line up to (without) the seccomp descriptor and the command."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "code rewards run in a bubblewrap sandbox, and 'bwrap' is not on PATH "
            "(Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
        )
    argv = [bwrap]
    if root:  # bubblewrap builds the sandbox as root; setpriv then drops to SANDBOX_UID
        argv += ["--cap-drop", "ALL"] + [
            a for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP") for a in ("--cap-add", cap)
        ]
    else:  # an unprivileged trainer: a user namespace of its own, and no nested ones
        argv += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--disable-userns"]
    argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    argv += ["--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv"]
    for name, value in (("PATH", "/usr/bin:/bin"), ("LANG", "C.UTF-8"), ("HOME", "/tmp"), ("TMPDIR", "/tmp")):
        argv += ["--setenv", name, value]
    argv += ["--perms", "1777", "--size", str(SCRATCH_BYTES), "--tmpfs", "/tmp"]
    argv += ["--ro-bind", "/usr", "/usr", "--perms", "0755", "--dir", "/etc"]
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]  # the loader's index, nothing else of /etc
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    _, mounts, hidden = _python_mounts()
    targets = [*mounts, _RUNNER_INSIDE]
    parents = sorted({str(p) for m in targets for p in Path(m).parents if str(p) != "/"}, key=len)
    for path in parents:  # bubblewrap would make them 0700, out of reach of the unprivileged user
        argv += ["--perms", "0755", "--dir", path]
    for path in mounts:
        argv += ["--ro-bind", path, path]
    for path in hidden:  # an empty, read-only tmpfs over each site-packages folder
        argv += ["--perms", "0000", "--tmpfs", path, "--remount-ro", path]
    argv += ["--ro-bind", str(_RUNNER.resolve()), _RUNNER_INSIDE, "--dev", "/dev"]  # no /proc: nothing needs it
    argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp"]
    return tuple(argv)


@cache
def _command(root: bool) -> tuple[str, ...]:
    """What bubblewrap runs: the runner, behind setpriv's drop to SANDBOX_UID for a root trainer."""
    exe, _, _ = _python_mounts()
    command = (exe, "-I", "-S", "-B", _RUNNER_INSIDE)
    if not root:
        return command
    if not os.path.exists("/usr/bin/setpriv"):
        raise SandboxUnavailable(
            "the trainer runs as root, and dropping the sandbox to an unprivileged user needs "
            "/usr/bin/setpriv (util-linux), which is missing"
        )
    uid = str(SANDBOX_UID)
    drop = ("/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups")
    return drop + ("--inh-caps=-all", "--bounding-set=-all", "--") + command


def _spawn(root: bool, cage: cgroup.Cage | None) -> tuple[subprocess.Popen, int]:
    """Start bubblewrap in ``cage`` with the seccomp program on a pipe; returns (process, that pipe's
    read end). Without a cage, the filter also refuses memfds, System V shared memory and sockets,
    whose memory the address-space limit does not count."""
    program = seccomp.filter_program(counted_memory=cage is not None)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, program)  # a few hundred bytes: fits the pipe's buffer
    finally:
        os.close(write_end)
    try:
        argv = cgroup.join_command(cage, [*_bwrap_argv(root), "--seccomp", str(read_end), "--", *_command(root)])
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            pass_fds=(read_end,),
            start_new_session=True,  # its own process group, killed as one
            env={"PATH": "/usr/bin:/bin"},
        )
    except BaseException:
        os.close(read_end)
        raise
    return proc, read_end


def _exchange(proc: subprocess.Popen, payload: bytes, deadline: float) -> tuple[bytes, bytes, str]:
    """Send ``payload`` on stdin and read stdout (at most REPLY_CAP bytes) and stderr (its tail)
    until both close; returns (stdout, stderr tail, problem) with problem "" when they closed,
    "timeout" at the deadline, "reply too large" past the cap."""
    out, err, view = bytearray(), bytearray(), memoryview(payload)
    with selectors.DefaultSelector() as selector:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
        selector.register(proc.stdin, selectors.EVENT_WRITE)
        selector.register(proc.stdout, selectors.EVENT_READ)
        selector.register(proc.stderr, selectors.EVENT_READ)
        while len(selector.get_map()):
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(out), bytes(err), "timeout"
            for key, _ in selector.select(left):
                stream = key.fileobj
                if stream is proc.stdin:
                    try:
                        written = os.write(stream.fileno(), view[:_CHUNK])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the runner stopped reading: only its own reply suffers
                        written = len(view)
                    view = view[written:]
                    if not view:
                        selector.unregister(stream)
                        stream.close()
                    continue
                chunk = os.read(stream.fileno(), _CHUNK)
                if not chunk:
                    selector.unregister(stream)
                elif stream is proc.stdout:
                    out += chunk
                    if len(out) > REPLY_CAP:
                        return bytes(out), bytes(err), "reply too large"
                else:
                    err += chunk
                    del err[:-STDERR_CAP]
    return bytes(out), bytes(err), ""


def _stop(proc: subprocess.Popen) -> None:
    """Kill bubblewrap's process group and reap it; the PID namespace dies with it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _parse(stdout: bytes) -> dict | None:
    try:
        reply = json.loads(stdout)
    except (ValueError, RecursionError, MemoryError):
        return None
    if type(reply) is not dict or type(reply.get("tests")) is not list or type(reply.get("loaded")) is not bool:
        return None
    return reply


def run(job: dict, *, wall_s: float, cpu_s: float, memory_mb: int, memory_cgroup: bool = False) -> SandboxOutcome:
    """Run one job (see :mod:`spectrum_rl.rewards._sandbox_runner` for its form) in a fresh sandbox.

    Limits: ``wall_s`` wall-clock seconds for the whole run (start-up included), ``cpu_s`` CPU
    seconds (rounded up to whole seconds), ``memory_mb`` MiB of address space and, with
    ``memory_cgroup`` (:mod:`spectrum_rl.rewards.cgroup`), of all the memory the code makes the
    kernel hold (without it, memfds, shared memory and sockets are refused). Raises
    :class:`SandboxUnavailable` only when the sandbox cannot be built at all; every other failure
    is an SandboxOutcome with status "crashed"."""
    limits = {
        "cpu_s": max(1, math.ceil(cpu_s)),
        "memory_bytes": memory_mb * 1024 * 1024,
        "file_bytes": FILE_BYTES,
        "open_files": OPEN_FILES,
    }
    payload = json.dumps({**job, "limits": limits}).encode()
    deadline = time.monotonic() + wall_s
    if not memory_cgroup:
        return _run(payload, limits, deadline, None, wall_s, memory_mb)
    try:
        with cgroup.cage(limits["memory_bytes"]) as cage:
            return _run(payload, limits, deadline, cage, wall_s, memory_mb)
    except TimeoutError:  # the reward's own time limit (an OSError too): not the sandbox's failure
        raise
    except OSError as exc:  # the cgroup could not be made (an OSError from the run is an SandboxOutcome)
        return SandboxOutcome("crashed", None, f"the sandbox's cgroup could not be made: {exc}")


def _run(
    payload: bytes, limits: dict, deadline: float, cage: cgroup.Cage | None, wall_s: float, memory_mb: int
) -> SandboxOutcome:
    try:
        proc, seccomp_fd = _spawn(os.geteuid() == 0, cage)
    except TimeoutError:  # the reward's own time limit (an OSError too): not the sandbox's failure
        raise
    except OSError as exc:  # e.g. no process slot left: the sample crashed, training goes on
        return SandboxOutcome("crashed", None, f"the sandbox did not start: {exc}")
    started = time.monotonic()
    try:
        os.close(seccomp_fd)
        stdout, stderr, problem = _exchange(proc, payload, deadline)
        if not problem:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                problem = "timeout"
    except TimeoutError:
        raise
    except OSError as exc:
        stdout, stderr, problem = b"", b"", f"sandbox error: {exc}"
    finally:
        if proc.returncode is None:
            _stop(proc)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    last = lines[-1][:200] if lines else ""
    if problem == "timeout":
        return SandboxOutcome("timeout", None, f"wall clock limit of {wall_s:g} s")
    if problem:
        return SandboxOutcome("crashed", None, problem)
    code = proc.returncode
    reply = _parse(stdout) if code == 0 else None
    if reply is None:
        if cage is not None and cage.oom_killed():
            return SandboxOutcome("memory", None, f"over the {memory_mb} MiB memory limit (stopped by the kernel)")
        if cage is not None and code == cgroup.JOIN_FAILED:
            return SandboxOutcome("crashed", None, "the sandbox could not enter its cgroup")
        # A kill at the CPU limit comes after at least that long: one thread cannot use CPU seconds
        # faster than wall seconds, so a quicker SIGKILL or exit status 137 is the code's own doing.
        ran_s = time.monotonic() - started
        if code in (128 + signal.SIGKILL, 128 + signal.SIGXCPU) and ran_s >= limits["cpu_s"] - CPU_SLACK_S:
            return SandboxOutcome("timeout", None, f"killed at the CPU limit of {limits['cpu_s']} s")
        return SandboxOutcome("crashed", None, f"exit status {code}, no valid reply; {last}".rstrip("; "))
    if reply.get("memory") is True:
        return SandboxOutcome("memory", None, f"MemoryError under the {memory_mb} MiB limit")
    return SandboxOutcome("ok", reply)


@cache
def _probe() -> str:
    """Run an empty job once; "" when the sandbox works, else why not (one line)."""
    if not sys.platform.startswith("linux"):
        return f"code rewards need Linux namespaces (bubblewrap); this is {sys.platform}"
    if seccomp.supported_arch() is None:
        return f"the code sandbox's seccomp filter has no system call table for this CPU ({os.uname().machine})"
    try:
        outcome = run({"code": "", "mode": "expr", "tests": [[["eval", "1 + 1"]]]}, wall_s=30, cpu_s=5, memory_mb=256)
    except SandboxUnavailable as exc:
        return str(exc)
    if outcome.status == "ok" and outcome.reply and outcome.reply["tests"] == [[{"v": 2}]]:
        return ""
    why = outcome.detail or outcome.status
    return f"the code sandbox (bubblewrap) does not start here: {why} (are user namespaces disabled?)"


def check_available() -> None:
    """Raise :class:`SandboxUnavailable` (one line) unless code can run isolated here (tried once)."""
    problem = _probe()
    if problem:
        raise SandboxUnavailable(problem)
