"""Child side of the code sandbox: runs a model's Python code and reports what it computed as plain data.

:mod:`spectrum_rl.rewards.sandbox` starts ``python -I -S /sandbox/runner.py`` inside bubblewrap (own
mount, PID, network, IPC and UTS namespaces, an unprivileged user, a seccomp filter, the stdlib
read-only, a private tmpfs as the only writable place). Stdlib only. The OS is the boundary, so this
file defends nothing: once the model's code runs it can rewrite any of it. That is why nothing it
reports is trusted: it only *computes values*, and the parent (:mod:`spectrum_rl.rewards.judgement`)
decides pass/fail. It never receives an expected value.

Job (stdin, JSON)::

    {"limits": {"cpu_s": int, "memory_bytes": int, "file_bytes": int, "open_files": int},
     "code": str, "mode": "expr" | "io", "tests": [...]}

- ``expr``: each test is a list of steps ``["exec", source]`` (statements, e.g. ``x = f(2)``) or
  ``["eval", source]`` (an expression, e.g. ``f(2)``), run in order in the code's namespace (a module
  named ``solution``: code under ``if __name__ == "__main__":`` does not run).
- ``io``: each test is one stdin text; the code runs afresh as ``__main__`` with that input.

Reply (JSON, on the stdout the runner kept for itself; the code's own stdout goes to /dev/null)::

    {"loaded": bool, "error": str, "memory": bool,
     "tests": expr: [[null | {"v": value} | {"e": error}, ...] per test]   (stops at a step's error)
              io:   [{"out": str} | {"e": error}, ...]}

Values are encoded by exact type: ``None``, ``bool``, ``int``, ``float`` and ``str`` as themselves
(an int of more than ``JSON_INT_BITS`` bits as ``{"int": hex}``);
``{"list": [...]}``, ``{"tuple": [...]}``, ``{"set": [...]}``, ``{"frozenset": [...]}``,
``{"dict": [[key, value], ...]}``, ``{"bytes": hex}``, ``{"complex": [real, imag]}``; a generator or
other builtin iterator as ``{"iter": [...]}``, consumed. Any other type,
a subclass of a plain type included, is an error: no object the code defined reaches the judge.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import types

MAX_INT_BITS = 32_000  # ~9,600 digits
JSON_INT_BITS = 10_000  # ~3,000 digits: larger ints travel as hex, past CPython's 4,300-digit str limit
MAX_NODES = 200_000  # containers plus elements in one value
_PLAIN_CONTAINERS = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}
# Iterators a function may return instead of a list: sent consumed, as {"iter": [...]}.
_ITERATORS = frozenset(
    {types.GeneratorType, map, filter, zip, enumerate, reversed}
    | {type(iter(x)) for x in ([], (), range(0), "", {}, set())}
)


def encode(value: object, budget: list[int]) -> object:
    """``value`` as plain JSON data (see the module docstring); raises TypeError for other types and
    ValueError past the size limits. ``budget[0]`` counts down the nodes still allowed."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError("value too large")
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is float:
        return value
    if kind is int:
        bits = value.bit_length()
        if bits > MAX_INT_BITS:
            raise ValueError("integer too large")
        return value if bits <= JSON_INT_BITS else {"int": format(value, "x")}
    if kind in _PLAIN_CONTAINERS:
        return {_PLAIN_CONTAINERS[kind]: [encode(item, budget) for item in value]}
    if kind in _ITERATORS:
        return {"iter": [encode(item, budget) for item in value]}
    if kind is dict:
        return {"dict": [[encode(k, budget), encode(v, budget)] for k, v in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    raise TypeError(f"{_name(kind)} is not plain data (None, bool, int, float, str, bytes, list, tuple, dict, ...)")


def _name(kind: type) -> str:
    try:
        return str(type.__getattribute__(kind, "__qualname__"))[:80]
    except BaseException:  # noqa: BLE001 - a hostile metaclass
        return "object"


def _describe(exc: BaseException) -> str:
    """``Type: message``, short; the message comes from the code's own objects, so guard it."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:  # noqa: BLE001
        text = type(exc).__name__
    return text[:300]


def _confine(limits: dict) -> None:
    """Resource limits (soft = hard: the code cannot raise them again) and no inherited descriptors."""
    for res, value in (
        (resource.RLIMIT_CPU, int(limits["cpu_s"])),  # then SIGXCPU/SIGKILL: the parent reads "timeout"
        (resource.RLIMIT_AS, int(limits["memory_bytes"])),  # MemoryError instead of exhausting the host
        (resource.RLIMIT_FSIZE, int(limits["file_bytes"])),  # one file in the tmpfs
        (resource.RLIMIT_NOFILE, int(limits["open_files"])),
        (resource.RLIMIT_NPROC, 0),  # no new processes or threads for this (unprivileged) user
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_MSGQUEUE, 0),  # POSIX message queues are kernel memory outside the address space
    ):
        resource.setrlimit(res, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past file_bytes raises OSError instead
    os.closerange(3, 1 << 20)


class _Run:
    """The state of one job: the reply under construction and the descriptors the runner kept."""

    def __init__(self, reply_fd: int) -> None:
        self.reply_fd = reply_fd
        self.memory = False

    def guard(self, exc: BaseException) -> str:
        self.memory = self.memory or isinstance(exc, MemoryError)
        return _describe(exc)

    def expr_tests(self, namespace: dict, tests: list) -> list:
        out = []
        for steps in tests:
            results: list = []
            for kind, source in steps:
                try:
                    if kind == "exec":
                        exec(compile(source, "<test>", "exec"), namespace)  # noqa: S102 - the sandbox's job
                        results.append(None)
                    else:
                        value = eval(compile(source, "<test>", "eval"), namespace)  # noqa: S307
                        results.append({"v": encode(value, [MAX_NODES])})
                except BaseException as exc:  # noqa: BLE001 - SystemExit included: the test fails
                    results.append({"e": self.guard(exc)})
                    if kind == "exec":
                        break  # later steps depend on this one
            out.append(results)
        return out

    def io_tests(self, program: types.CodeType, inputs: list[str], file_bytes: int) -> list:
        out = []
        for i, text in enumerate(inputs):
            try:
                out.append(self._io_case(program, text, f"/tmp/.case{i}", file_bytes))
            except BaseException as exc:  # noqa: BLE001 - e.g. an input past file_bytes
                out.append({"e": self.guard(exc)})
        return out

    def _io_case(self, program: types.CodeType, text: str, path: str, file_bytes: int) -> dict:
        with open(path + ".in", "w", encoding="utf-8") as f:
            f.write(text)
        stdin_fd = os.open(path + ".in", os.O_RDONLY)
        stdout_fd = os.open(path + ".out", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.unlink(path + ".in")
        os.unlink(path + ".out")
        os.dup2(stdin_fd, 0)
        os.dup2(stdout_fd, 1)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - lives for this case
        stdout = sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        module = types.ModuleType("__main__")
        sys.modules["__main__"] = module
        error = None
        try:
            exec(program, module.__dict__)  # noqa: S102
        except SystemExit as exc:
            if exc.code not in (None, 0):
                error = f"exit status {exc.code!r}"[:300]
        except BaseException as exc:  # noqa: BLE001
            error = self.guard(exc)
        try:
            stdout.flush()
        except BaseException as exc:  # noqa: BLE001 - e.g. past file_bytes
            error = error or self.guard(exc)
        output = os.pread(stdout_fd, file_bytes, 0)
        os.close(stdin_fd)
        os.close(stdout_fd)
        if error is not None:
            return {"e": error}
        return {"out": output.decode("utf-8", "replace")}

    def send(self, reply: dict) -> None:
        reply["memory"] = self.memory
        data = json.dumps(reply).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self.reply_fd, view) :]


def main() -> None:
    job = json.loads(sys.stdin.buffer.read())
    _confine(job["limits"])
    # The reply gets a private copy of stdout; the code's stdin and stdout become /dev/null, so its
    # prints cannot mix with the reply (it can still write to the copy: that only spoils its own reply).
    run = _Run(os.dup(1))
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.dont_write_bytecode = True
    reply: dict = {"loaded": False, "error": "", "tests": []}
    try:
        program = compile(job["code"], "<solution>", "exec")
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, ValueError (null bytes), MemoryError
        reply["error"] = run.guard(exc)
        program = None
    if program is not None and job["mode"] == "io":
        reply["loaded"] = True
        reply["tests"] = run.io_tests(program, job["tests"], int(job["limits"]["file_bytes"]))
    elif program is not None:
        module = sys.modules["solution"] = types.ModuleType("solution")
        try:
            exec(program, module.__dict__)  # noqa: S102
            reply["loaded"] = True
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
            reply["error"] = run.guard(exc)
        if reply["loaded"]:
            reply["tests"] = run.expr_tests(module.__dict__, job["tests"])
    run.send(reply)
    os._exit(0)


if __name__ == "__main__":
    main()
