"""Child side of :mod:`spectrum_rl.rewards.sandbox`: runs untrusted Python code against test snippets.

The parent starts ``python -I -S <this file>`` (isolated mode, no site-packages) in a fresh temporary
working directory, with resource limits, capabilities and the network already dropped. Stdlib only.

Protocol: stdin carries one JSON object ``{"nonce", "code", "tests"}``. After the tests the runner
writes ``<nonce> <passed> <total> <status>`` as the last line of stdout (status ``ok``, or ``memory``
when user code raised MemoryError) and exits; the parent ignores any line without the right nonce.
The nonce lives only in a local of :func:`main`, and frame introspection is refused (see below), so
printed output cannot forge a score.

Before any untrusted code runs, :func:`_install_guard` adds a PEP 578 audit hook (hooks cannot be
removed). On a forbidden event it writes ``sandbox: blocked <event>`` to stderr and ends the process
at once with exit code ``BLOCKED_EXIT``: nothing can catch it and carry on. Forbidden:

- files: opening for writing, creating, removing, renaming or changing anything outside the working
  directory (at most ``MAX_WRITE_OPENS`` files opened for writing); opening or listing anything
  outside it except the stdlib directories (without site-/dist-packages) and /dev/null, /dev/urandom;
  symlinks, hard links, chdir, extended attributes; paths must be ``str``/``bytes`` without ``..``
  (``pathlib.Path`` objects are refused: their ``__fspath__`` could answer differently twice);
- processes: fork, exec, spawn, system, subprocess, pty, kill;
- network and native code: every ``socket.*`` and ``ctypes.*`` event, and importing the modules in
  ``BLOCKED_MODULES`` (sockets, ctypes, subprocess, multiprocessing, resource, mmap, fcntl,
  sub-interpreters, test and C modules that reach files by themselves); extension modules load
  only from the stdlib directories;
- escaping the interpreter's rules: tracing and profiling hooks, new audit hooks, ``gc`` object
  walks, other threads' frames, creating code objects (hand-made bytecode is memory-unsafe), and
  ``marshal`` (stdlib modules are compiled from source instead of cached bytecode).

Frame introspection is refused without ending the run: ``sys._getframe`` raises ValueError (as if
the stack were empty, which namedtuple, Enum, TypeVar and logging tolerate) and the ``tb_frame``,
``gi_frame``, ``cr_frame`` and ``ag_frame`` attributes raise AttributeError. ``signal`` imports (so
``unittest`` works) but refuses Python handlers, which would receive a frame.

Some operations raise no audit event; :func:`_isolate_modules` handles them before the hook goes
in: it removes posix functions that reach other processes or create files anywhere, and gates
``_imp.create_builtin`` (a way to build compiled-in modules such as ``_signal`` afresh).

Limits, honestly: this is defence in depth inside one CPython process, not a VM. The hook sees only
audited operations: ``os.stat`` and friends still reveal whether paths exist, ``pwd``/``grp`` read
the user database, threads work (as root) and C bugs in the interpreter are not defended against.
Tests run in the solution's namespace, so a solution can still game them (e.g. return objects whose
``__eq__`` is always true); that is a property of assert-style tests, not a sandbox escape.
"""

from __future__ import annotations

import _imp
import _signal
import json
import os
import sys
import types
from collections.abc import Callable
from typing import Any

BLOCKED_EXIT = 86
MAX_WRITE_OPENS = 32

BLOCKED_MODULES = frozenset(
    {
        "ctypes",
        "_ctypes",
        "_ctypes_test",
        "socket",
        "_socket",
        "ssl",
        "_ssl",
        "subprocess",
        "_posixsubprocess",
        "multiprocessing",
        "_multiprocessing",
        "_posixshmem",
        "resource",
        "mmap",
        "fcntl",
        "termios",
        "pty",
        "_xxsubinterpreters",
        "_xxinterpchannels",
        "_interpreters",
        "_interpchannels",
        "_interpqueues",
        "_testcapi",
        "_testinternalcapi",
        "_testbuffer",
        "_testmultiphase",
        "_testclinic",
        "_testimportmultiple",
        "_testsinglephase",
        "_xxtestfuzz",
        "xxlimited",
        "xxlimited_35",
        "sqlite3",
        "_sqlite3",
        "readline",
        "_curses",
        "_curses_panel",
        "_tkinter",
        "syslog",
        "spwd",
        "nis",
        "_dbm",
        "_gdbm",
        "ossaudiodev",
    }
)
# Builtin (compiled-in) modules can also be created through _imp.create_builtin, which raises no
# audit event: the gate refuses these names, so the pruned and gated modules cannot be made afresh.
_BLOCKED_BUILTINS = BLOCKED_MODULES | {"posix", "_imp", "_signal"}
# posix functions that raise no audit event yet act on other processes of the same user (renice,
# pin, signal), create files anywhere (mknod, mkfifo) or make memory-backed files outside
# RLIMIT_AS: removed before user code runs.
_PRUNED_POSIX = (
    "pidfd_open",
    "memfd_create",
    "setpriority",
    "sched_setaffinity",
    "sched_setscheduler",
    "sched_setparam",
    "mknod",
    "mkfifo",
)

_DENIED_EVENTS = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.exec",
        "os.spawn",
        "os.system",
        "os.startfile",
        "os.kill",
        "os.killpg",
        "subprocess.Popen",
        "pty.spawn",
        "os.symlink",
        "os.link",
        "os.chdir",
        "os.setxattr",
        "os.removexattr",
        "os.getxattr",
        "os.listxattr",
        "sys.settrace",
        "sys.setprofile",
        "sys.addaudithook",
        "sys._current_frames",
        "sys._current_exceptions",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "code.__new__",
        "marshal.load",
        "marshal.loads",
        "builtins.breakpoint",
        "webbrowser.open",
        "cpython.remote_debugger_script",
    }
)
_DENIED_PREFIXES = frozenset({"socket", "ctypes", "fcntl", "mmap", "resource", "signal", "syslog", "sqlite3"})
_FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
_LISTING_EVENTS = frozenset({"os.listdir", "os.scandir"})
# Events that change the file system -> positions of their path arguments (all must be inside the
# working directory; None means the working directory or an already open directory).
_MUTATING_EVENTS = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.truncate": (0,),
    "os.rename": (0, 1),
    "shutil.copyfile": (0, 1),
    "shutil.copymode": (0, 1),
    "shutil.copystat": (0, 1),
    "shutil.copytree": (0, 1),
    "shutil.move": (0, 1),
    "shutil.rmtree": (0,),
    "shutil.chown": (0,),
    "shutil.make_archive": (0, 2),
    "shutil.unpack_archive": (0, 1),
    "tempfile.mkstemp": (0,),
    "tempfile.mkdtemp": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_DEVICES = ("/dev/null", "/dev/urandom")


def _install_guard(root: str, lib_dirs: tuple[str, ...]) -> None:
    """Add the audit hook described in the module docstring. ``root``: the working directory
    (canonical, from getcwd); ``lib_dirs``: the stdlib entries of ``sys.path``.

    Untrusted code can rebind module globals and builtins but not the locals of this function, so
    everything the hook and its helpers use is bound here (C functions, constants, str methods on
    exact ``str`` objects). The hook never calls untrusted code: arguments are used only after an
    exact type check."""
    type_, str_, bytes_, int_, len_ = type, str, bytes, int, len
    value_error, attribute_error, recursion_error, memory_error, error = (
        ValueError,
        AttributeError,
        RecursionError,
        MemoryError,
        Exception,
    )
    write, leave, fs_encoding = os.write, os._exit, sys.getfilesystemencoding()
    denied, denied_prefixes, frame_attrs = _DENIED_EVENTS, _DENIED_PREFIXES, _FRAME_ATTRS
    listing, mutating, blocked_modules = _LISTING_EVENTS, _MUTATING_EVENTS, BLOCKED_MODULES
    write_flags, devices, max_write_opens = _WRITE_FLAGS, _DEVICES, MAX_WRITE_OPENS
    libs = tuple(d.rstrip("/") for d in lib_dirs if d.startswith("/"))
    write_opens = [0]

    def resolve(path: object) -> str | None:
        """The absolute, lexically normalised path, or None when it is not a plain str/bytes path
        or contains ``..`` (symlinks cannot be made, so inside the working directory lexical
        normalisation matches the kernel's)."""
        if type_(path) is bytes_:
            path = path.decode(fs_encoding, "surrogateescape")
        elif type_(path) is not str_:
            return None
        if not path.startswith("/"):
            path = root + "/" + path
        parts = path.split("/")
        if ".." in parts:
            return None
        return "/" + "/".join([p for p in parts if p and p != "."])

    def under(path: str, base: str) -> bool:
        return path == base or path.startswith(base + "/")

    def writable(path: str | None) -> bool:
        return path is not None and (under(path, root) or path == "/dev/null")

    def stdlib(path: str | None) -> bool:
        if path is None or "/site-packages" in path or "/dist-packages" in path:
            return False
        for lib in libs:
            if under(path, lib):
                return True
        return False

    def readable(path: str | None) -> bool:
        return writable(path) or path in devices or stdlib(path)

    def verdict(event: str, args: tuple) -> str | None:
        """None to allow, "frame" for frame introspection, else the reason to end the run."""
        if event == "open":
            path, flags = args[0], args[2]
            if type_(path) is int_:  # wrapping an already open descriptor
                return None
            target = resolve(path)
            if type_(flags) is int_ and not flags & write_flags:
                if args[1] is None:  # os.open: its descriptor could anchor dir_fd paths, so not outside
                    return None if writable(target) or target in devices else "os.open (read)"
                return None if readable(target) else "open (read)"
            if not writable(target):
                return "open (write)"
            write_opens[0] += 1
            return None if write_opens[0] <= max_write_opens else "open (too many files written)"
        if event in listing:
            return None if readable(resolve("." if args[0] is None else args[0])) else event
        if event in mutating:
            for i in mutating[event]:
                if i < len_(args) and args[i] is not None and not writable(resolve(args[i])):
                    return event
            return None
        if event == "import":
            name, filename = args[0], args[1]
            if type_(name) is not str_:
                return event
            for part in name.split("."):
                if part in blocked_modules:
                    return "import " + part
            return None if filename is None or stdlib(resolve(filename)) else "import (extension)"
        if event == "sys._getframe":
            return "frame"
        if event == "object.__getattr__":
            return "frame" if type_(args[1]) is str_ and args[1] in frame_attrs else None
        if event in denied or event.partition(".")[0] in denied_prefixes:
            return event
        return None

    def hook(event: str, args: tuple) -> None:
        if type_(event) is not str_:
            reason = "non-string audit event"
        else:
            try:
                reason = verdict(event, args)
            except (recursion_error, memory_error):
                raise  # fail closed: the audited operation fails with this error
            except error:  # noqa: BLE001 - malformed arguments (e.g. a hand-made sys.audit call)
                reason = event
        if reason is None:
            return
        if reason == "frame":
            if event == "sys._getframe":
                raise value_error("call stack is not deep enough (frame access is disabled in the sandbox)")
            raise attribute_error(f"{args[1]} is not available in the sandbox")
        try:
            write(2, ("\nsandbox: blocked " + reason + "\n").encode("utf-8", "replace"))
        finally:
            leave(BLOCKED_EXIT)

    sys.addaudithook(hook)


def _sealed(real: Callable[..., Any], prepare: Callable[..., tuple]) -> Callable[..., Any]:
    """``lambda *args: real(*prepare(*args))`` in a form untrusted code cannot take apart: a plain
    closure would hand ``real`` out through ``__closure__``; here ``real`` and ``prepare`` live only
    in the frame of a suspended generator, and the guard refuses ``gi_frame``. ``prepare`` may run
    untrusted code (attribute lookups), which cannot see frames either."""
    error = Exception

    def gate():  # noqa: ANN202
        reply = None
        while True:
            args = yield reply
            try:
                reply = (True, real(*prepare(*args)))
            except error as exc:  # noqa: BLE001 - raised again in the caller
                reply = (False, exc)

    send = gate().send
    send(None)

    def sealed(*args):  # noqa: ANN002, ANN202
        ok, value = send(args)
        if not ok:
            raise value
        return value

    return sealed


def _isolate_modules() -> None:
    """Before the guard: forget blocked modules loaded at startup, so importing them raises an audit
    event; prune the posix functions in ``_PRUNED_POSIX`` and ``signal.pidfd_send_signal``; gate
    ``_imp.create_builtin`` (the import system uses it for compiled-in modules, and it raises no
    audit event) and ``signal.signal`` (a Python handler would receive the interrupted frame, whose
    parents hold the nonce: only SIG_DFL, SIG_IGN and the default SIGINT handler are accepted).
    The checks use only locals bound here, out of reach of untrusted code."""
    for name in [m for m in sys.modules if m.partition(".")[0] in BLOCKED_MODULES]:
        del sys.modules[name]
    for module in (os, sys.modules["posix"]):
        for name in _PRUNED_POSIX:
            if hasattr(module, name):
                delattr(module, name)
    os.__all__ = [name for name in os.__all__ if name not in _PRUNED_POSIX]  # keeps `from os import *` working

    type_, str_, int_, import_error, permission_error = type, str, int, ImportError, PermissionError
    blocked, spec_type = _BLOCKED_BUILTINS, types.SimpleNamespace

    def builtin_args(spec: Any) -> tuple:
        name = spec.name
        if type_(name) is not str_ or name in blocked:
            raise import_error(f"module {name!r} is not available in the sandbox")
        return (spec_type(name=name),)  # a fresh spec: the caller's could answer differently twice

    default_int_handler = _signal.default_int_handler

    def handler_args(signalnum: Any, handler: Any) -> tuple:
        if not (handler is default_int_handler or type_(handler) is int_ and handler in (0, 1)):
            raise permission_error("Python signal handlers are not available in the sandbox")
        return int_(signalnum), handler

    if hasattr(_signal, "pidfd_send_signal"):
        del _signal.pidfd_send_signal
    # Before the signal module exists, so its wrapper (and __wrapped__) sees the gated function.
    _signal.signal = _sealed(_signal.signal, handler_args)
    _imp.create_builtin = _sealed(_imp.create_builtin, builtin_args)


def _compile(source: str, filename: str) -> types.CodeType | None:
    try:
        return compile(source, filename, "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError):  # ValueError: null bytes
        return None


def main() -> None:
    """Read the job, install the guard, run the code and the tests, print the result line."""
    job = json.loads(sys.stdin.buffer.read())
    nonce, code, tests = str(job["nonce"]), str(job["code"]), tuple(str(t) for t in job["tests"])
    del job
    root = os.getcwd()
    sys.dont_write_bytecode = True
    # stdin (drained) and stdout become /dev/null: input() sees EOF, and printing cannot push the
    # result line out of the file-size limit. The line gets a private copy of stdout, which the
    # parent opened append-only, so untrusted code can add to it but not read the nonce back.
    result_fd, devnull = os.dup(1), os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    # Import stdlib modules from source: cached bytecode would need marshal, which the guard refuses.
    sys.pycache_prefix = root + "/.no-pycache"
    _isolate_modules()
    _install_guard(root, tuple(sys.path))

    total, passed, memory = len(tests), 0, False
    units = tuple(_compile(test, f"<test {i}>") for i, test in enumerate(tests))  # None: a syntax error
    program = _compile(code, "<solution>")
    # From here on untrusted code may rebind builtins and module globals: use only locals.
    run, base_error, memory_error, isinstance_ = exec, BaseException, MemoryError, isinstance
    write, leave = os.write, os._exit
    # A real module (dataclasses and pickle look classes up in sys.modules), not "__main__": code
    # under `if __name__ == "__main__":` is not run.
    module = sys.modules["solution"] = types.ModuleType("solution")
    namespace = module.__dict__
    try:
        run(program, namespace)  # a None program (syntax error) raises TypeError here
        loaded = True
    except base_error as exc:  # SystemExit and KeyboardInterrupt included
        loaded, memory = False, isinstance_(exc, memory_error)
    if loaded:
        for unit in units:
            try:
                run(unit, namespace)
            except base_error as exc:
                memory = memory or isinstance_(exc, memory_error)
            else:
                passed += 1
    try:
        write(result_fd, f"\n{nonce} {passed} {total} {'memory' if memory else 'ok'}\n".encode())
    finally:
        leave(0)


if __name__ == "__main__":
    main()
