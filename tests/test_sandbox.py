"""The code sandbox (rewards/sandbox.py), the trusted judge (rewards/splitting.py, judgement.py) and `code_tests`.

Each attack the first security audit tried, and each class that held before, is a regression
test here: markers outside stay untouched, the score is 0, the trainer process lives. There is no
in-process audit hook any more: the OS (bubblewrap namespaces, an unprivileged user, seccomp, a
read-only view, a private tmpfs, rlimits) is the boundary, and the trusted judge decides pass/fail.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from spectrum_rl.rewards import RewardComponentSpec, build_hybrid, cgroup, sandbox
from spectrum_rl.rewards.base import RewardSpec
from spectrum_rl.rewards.code import CodeTestsSpec, IOCase, extract_code, parse_tests, run_tests
from spectrum_rl.sources.base import Example
from tests.conftest import needs_sandbox

LIMITS = {"wall_s": 3.0, "cpu_s": 2.0, "memory_mb": 256}
MARGIN_S = 1.5  # start-up and scheduling slack on a loaded machine
ADD_TESTS = ["assert add(12000, 345) == 12345", "assert add(-7, 20) == 13"]  # no expected value is 0/1/True
WRONG_ADD = "def add(a, b):\n    return a - b\n"
RIGHT_ADD = "def add(a, b):\n    return a + b\n"
FORGERY_TRIES = 30


def run(code: str, tests=("assert True",), **limits):
    """``run_tests`` with the default small limits; returns (result, seconds)."""
    start = time.monotonic()
    result = run_tests(code, list(tests), **{**LIMITS, **limits})
    return result, time.monotonic() - start


def sandboxed_processes() -> list[int]:
    """bubblewrap or sandboxed runners still alive (children of this process, or orphans)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if not entry.name.isdigit() or not (b"/sandbox/runner.py" in cmdline or cmdline.startswith(b"bwrap")):
                continue
        except OSError:
            continue
        pids.append(int(entry.name))
    return pids


def assert_parent_fine() -> None:
    """Nothing of a sandbox outlived its call, and the sandbox still scores a correct solution 1."""
    assert sandboxed_processes() == []
    result, _ = run(RIGHT_ADD, ADD_TESTS)
    assert (result.passed, result.status) == (2, "ok"), result


def assert_zero(code: str, status: str = "ok", *, tests=ADD_TESTS, limit_s: float = LIMITS["wall_s"], **limits):
    result, seconds = run(code, tests, **limits)
    assert (result.passed, result.total, result.status) == (0, len(tests), status), result
    assert seconds < limit_s + MARGIN_S
    return result


@pytest.fixture
def markers(tmp_path: Path):
    """Files an attacker would delete, rewrite or rename: one in a host folder the sandbox cannot
    see (tmp_path), one it can see read-only (under /usr, when this process may write there)."""
    paths = [tmp_path / "victim.txt"]
    visible = Path("/usr/local/share") / f"spectrum-sandbox-test-{secrets.token_hex(4)}"
    try:
        visible.mkdir(parents=True)
        paths.append(visible / "victim.txt")
    except OSError:
        visible = None
    for path in paths:
        path.write_text("original")
    yield paths
    for path in paths:
        assert path.read_text() == "original", f"{path} was changed"
        assert sorted(p.name for p in path.parent.iterdir()) == ["victim.txt"], f"{path.parent} gained files"
    if visible is not None:
        shutil.rmtree(visible)


# --- the sandbox: correct code still works ------------------------------------------------------


@needs_sandbox
def test_correct_partial_and_failing_code():
    code = "def double(x):\n    return 2 * x if x < 3 else 0"
    tests = ["assert double(1) == 2", "assert double(2) == 4", "assert double(3) == 6", "assert double(4) == 8"]
    result, seconds = run(code, tests)
    assert (result.passed, result.total, result.status) == (2, 4, "ok") and seconds < LIMITS["wall_s"] + MARGIN_S
    assert result.notes[2] == "assert 1 of 1: does not hold"
    assert run("def double(x):\n    return 2 * x", tests)[0].passed == 4
    failed = run("def double(:", tests)[0]  # a syntax error: nothing passes
    assert failed.passed == 0 and "does not load" in failed.detail
    assert run("raise SystemExit(0)", tests)[0].passed == 0  # the code must load
    assert run(code, ["import sys; sys.exit(0)", "assert double(1) == 2"])[0].passed == 1


@needs_sandbox
def test_stdlib_works_inside():
    code = (
        "import collections, dataclasses, enum, logging, typing, heapq, fractions, unittest, re, json, itertools\n"
        "P = collections.namedtuple('P', 'x y')\nC = enum.Enum('C', 'A B')\nT = typing.TypeVar('T')\n"
        "logging.getLogger('x').warning('hi')\n"
        "@dataclasses.dataclass\nclass D:\n    x: int\n"
        "def f(n):\n    return P(D(n).x, 0).x + heapq.nsmallest(1, [C.B.value])[0]\n"
        "def scratch():\n    open('a.txt', 'w').write('hi')\n    return open('a.txt').read()"
    )
    assert run(code, ["assert f(1) == 3", "assert scratch() == 'hi'"])[0].passed == 2


@needs_sandbox
def test_io_tests_compare_stdout_in_the_parent():
    program = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n"
    cases = [IOCase("1 2", "3\n"), IOCase("20 22\n", "42"), IOCase("2 2", "5")]
    result, _ = run(program, cases)
    assert (result.passed, result.notes[2]) == (2, "wrong output")
    assert run("print(input()[::-1])   ", [IOCase("abc", "cba  \n\n")])[0].passed == 1  # trailing space/lines
    assert run("raise SystemExit(3)", [IOCase("", "")])[0].notes == ("the program failed: exit status 3",)
    # The program never sees the expected output.
    assert run("import sys\nprint(sys.stdin.read())", [IOCase("in", "expected-out")])[0].passed == 0


# --- the judge decides: reward hacks and forgery score 0 ----------------------------------------


@needs_sandbox
def test_eq_hack_scores_zero():  # attack F
    code = "class Anything:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Anything()"
    result = assert_zero(code)
    assert "not plain data" in result.notes[0]
    subclass = "class Int(int):\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Int(0)"
    assert_zero(subclass)  # a subclass of a plain type is not plain either


@needs_sandbox
@pytest.mark.parametrize(
    "attack",
    [
        # Old-style result lines and verdict fields on every descriptor, then the real reply.
        "import os\nfor fd in range(12):\n    try:\n        os.write(fd, b'\\n0 2 2 ok\\n{\"passed\": 2}\\n')\n"
        "    except OSError:\n        pass",
        # A whole forged reply claiming every value is True, then exit before the runner replies.
        'import os\nreply = b\'{"loaded": true, "error": "", "memory": false, "passed": 2, "tests": '
        '[[{"v": true}], [{"v": true}]]}\'\nos.write(3, reply)\nos._exit(0)',
        # Rewire the runner: every value it reports becomes True.
        "import __main__\n__main__.encode = lambda value, budget: True",
        # Make the reply serialiser print a forged document.
        'import json\njson.dumps = lambda *a, **k: \'{"loaded": true, "error": "", "tests": [[{"v": 1}],'
        ' [{"v": 1}]], "passed": 2}\'',
        # Point the reply descriptor elsewhere and forge on a copy (no threads: the OS refuses them).
        "import os\nfake = os.dup(3)\nos.dup2(os.open('/dev/null', os.O_WRONLY), 3)\n"
        'os.write(fake, b\'{"loaded": true, "error": "", "tests": [[{"v": true}], [{"v": true}]]}\')\n'
        "os._exit(0)",
        # Look for the expected values anywhere in the process: they are not there.
        "import gc, sys\ndef add(a, b):\n    for obj in gc.get_objects():\n"
        "        if isinstance(obj, str) and obj.startswith('expected-'):\n            return obj\n"
        "    return sys.stdin.read() or repr(sys._getframe(1).f_locals)\n",
    ],
)
def test_forgery_never_succeeds(attack):  # attacks C and D, in every channel we know
    tests = ["assert add(12000, 345) == 'expected-12345'", "assert add(-7, 20) == 'expected-13'"]
    for _ in range(FORGERY_TRIES):
        result, _ = run(WRONG_ADD + attack, tests)
        assert result.passed == 0, result
    assert_parent_fine()


@needs_sandbox
def test_no_threads_and_no_processes():  # the races of C and D needed a thread; fork bombs need fork
    assert "can't start new thread" in assert_zero("import threading\nthreading.Thread(target=print).start()").detail
    result = assert_zero("import os\nwhile True:\n    os.fork()")
    assert "Resource temporarily unavailable" in result.detail
    assert_zero("import subprocess\nsubprocess.run(['true'])")
    assert_zero("import os\nos.system('true')\ndef add(a, b):\n    return 0")
    assert_parent_fine()


# --- the OS boundary ----------------------------------------------------------------------------


@needs_sandbox
def test_audit_attack_a_cannot_touch_outside_files(markers):  # attack A, with and without the old hook's table
    outside, *visible = markers
    for target in [outside, *visible]:
        attack = (
            "import __main__, os\n"
            "getattr(__main__, '_MUTATING_EVENTS', {}).clear()\n"
            f"os.remove({str(target)!r})\nos.mkdir({str(target.parent / 'made_by_model_code')!r})\n"
        )
        assert_zero(attack + RIGHT_ADD)
        for trick in (
            f"open({str(target)!r}, 'w').write('pwned')",
            f"os.rename({str(target)!r}, 'stolen.txt')",
            f"os.chmod({str(target)!r}, 0o777)",
            f"os.truncate({str(target)!r}, 0)",
            f"os.rmdir({str(target.parent)!r})",
        ):
            # The trick fails (the file is not there, or read-only), and only that attempt is lost.
            result, _ = run(f"import os\ntry:\n    {trick}\nexcept OSError:\n    pass\n" + RIGHT_ADD, ADD_TESTS)
            assert result.passed == 2
    assert_parent_fine()


@needs_sandbox
def test_reads_of_host_files_find_nothing(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    for path in (secret, "/etc/passwd", "/etc/shadow", "/root/.bashrc", str(Path.cwd() / "pyproject.toml")):
        code = f"def add(a, b):\n    return open({str(path)!r}).read()"
        assert "FileNotFoundError" in assert_zero(code).notes[0]
    listing = "import os\ndef add(a, b):\n    return sorted(os.listdir('/'))"
    (note,) = run(listing, ["assert add(1, 2) == []"])[0].notes
    shown = {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root", "sandbox", "sbin", "tmp", "usr"}
    result = run(listing, [f"assert set(add(1, 2)) <= {shown!r}"])[0]
    assert result.passed == 1, note  # /work, /home, /opt, /var, /mnt ... are not there
    # The stdlib is readable, the installed packages are not.
    assert run("import json\ndef f():\n    return 1", ["assert f() == 1"])[0].passed == 1
    assert_zero("import numpy\n" + RIGHT_ADD)


@needs_sandbox
def test_runner_and_stdlib_are_read_only():  # attack B: rewriting the runner for every later call
    for target in ("__import__('__main__').__file__", "'/sandbox/runner.py'", "__import__('os').__file__"):
        code = f"try:\n    open({target}, 'w').write('print(1)')\nexcept OSError as e:\n    written = str(e)\n"
        result = run(code + "def add(a, b):\n    return written", ["assert 'Read-only' in add(1, 2)"])[0]
        assert result.passed == 1, result
    assert_zero(WRONG_ADD)  # later calls are judged as before
    assert_parent_fine()


@needs_sandbox
def test_only_a_small_private_tmpfs_is_writable():
    code = (
        "import os\ndef probe():\n    out = []\n"
        "    for d in ['/', '/usr', '/dev', '/dev/shm', '/proc', '/sandbox', '/etc']:\n"
        "        try:\n            open(d.rstrip('/') + '/x', 'w').close()\n            out.append(d)\n"
        "        except OSError:\n            pass\n    return out\n"
        "def fill():\n    try:\n        for i in range(100):\n            open(f'big{i}', 'wb').write(b'x' * 2**22)\n"
        "    except OSError as e:\n        return e.errno\n"
    )
    result = run(code, ["assert probe() == []", "assert fill() == 28"])[0]  # ENOSPC at SCRATCH_BYTES
    assert result.passed == 2, result.notes


@needs_sandbox
def test_deep_tree_is_harmless():  # attack E: the tree lives in the sandbox's tmpfs, gone with it
    code = "import os\npath = 'a'\nfor _ in range(1100):\n    os.mkdir(path)\n    path += '/a'\n" + RIGHT_ADD
    result, _ = run(code, ADD_TESTS)
    assert (result.passed, result.status) == (2, "ok"), result
    assert_zero("import os\npath = 'a'\nfor _ in range(1100):\n    os.mkdir(path)\n    path += '/a'\n" + WRONG_ADD)
    assert_parent_fine()


@needs_sandbox
def test_unprivileged_no_capabilities_and_seccomp():
    # There is no /proc inside (it would show host paths, and it is kernel surface nothing needs): the
    # code asks the kernel itself, through prctl and capget.
    code = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "def who():\n"
        "    header = (ctypes.c_uint32 * 2)(0x20080522, 0)\n"  # _LINUX_CAPABILITY_VERSION_3, this process
        "    caps = (ctypes.c_uint32 * 6)()\n"
        "    assert libc.capget(header, caps) == 0\n"
        "    bounding = [libc.prctl(23, cap, 0, 0, 0) for cap in range(41)]\n"  # PR_CAPBSET_READ
        "    open_fds = [fd for fd in range(64) if _open(fd)]\n"
        "    return [os.getuid(), os.getgid(), os.getgroups(), list(caps), sorted(set(bounding)),\n"
        "            libc.prctl(39, 0, 0, 0, 0), libc.prctl(21, 0, 0, 0, 0), open_fds, os.path.exists('/proc/self')]\n"
        "def _open(fd):\n"
        "    try:\n        os.fstat(fd)\n        return True\n    except OSError:\n        return False\n"
    )
    # uid/gid nobody, no groups, no capability (effective, permitted, inheritable), an empty bounding
    # set, no_new_privs (PR_GET_NO_NEW_PRIVS 1), a seccomp filter (PR_GET_SECCOMP 2), no /proc.
    expected = "[65534, 65534, [], [0] * 6, [0], 1, 2]"
    result = run(code, [f"assert who()[:7] == {expected}", "assert who()[8] is False"])
    assert result[0].passed == 2, result[0].notes
    # Only its own channels: stdin, stdout, stderr and the reply.
    assert run(code, ["assert who()[7] == [0, 1, 2, 3]"])[0].passed == 1
    # Namespaces, mounts and ptrace are refused by the kernel (EPERM), whatever the arguments.
    calls = {
        "unshare": "0x10000000",
        "setns": "0, 0",
        "mount": "b'none', b'/tmp', b'tmpfs', 0, None",
        "ptrace": "16, 1",
    }
    for name, args in calls.items():
        code = (
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            f"def add(a, b):\n    return [libc.{name}({args}), ctypes.get_errno()]"
        )
        assert run(code, ["assert add(1, 2) == [-1, 1]"])[0].passed == 1, name


@needs_sandbox
def test_network_is_unreachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.1)
        port = server.getsockname()[1]
        code = (
            "import socket\ndef add(a, b):\n    try:\n"
            f"        socket.create_connection(('127.0.0.1', {port}), timeout=1)\n        return 'connected'\n"
            "    except OSError as e:\n        return type(e).__name__\n"
        )
        # No socket at all where no memory cgroup counts its buffers; else only its own loopback.
        assert run(code, ["assert add(1, 2) == 'PermissionError'"])[0].passed == 1
        if cgroup.layout() is not None:
            assert run(code, ["assert add(1, 2) == 'ConnectionRefusedError'"], memory_cgroup=True)[0].passed == 1
        with pytest.raises(TimeoutError):
            server.accept()
    assert_zero("import urllib.request\nurllib.request.urlopen('http://example.com', timeout=1)\n" + RIGHT_ADD)


@needs_sandbox
def test_parent_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    code = "import os\ndef env():\n    return dict(os.environ)"
    expected = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp", "PWD": "/tmp"}
    assert run(code, [f"assert env() == {expected!r}"])[0].passed == 1


@needs_sandbox
def test_signals_cannot_reach_the_trainer():
    me = os.getpid()
    attacks = (f"os.kill({me}, 9)", "os.kill(os.getppid(), 9)", "os.kill(1, 9)", "os.kill(-1, 9)", "os.killpg(0, 9)")
    for attack in attacks:
        run(f"import os\ntry:\n    {attack}\nexcept OSError:\n    pass\n" + WRONG_ADD, ADD_TESTS)
    assert_parent_fine()


@needs_sandbox
def test_limits_cpu_wall_memory_output():
    assert "CPU" in assert_zero("while True: pass", "timeout", limit_s=1, cpu_s=1).detail
    assert_zero("import time; time.sleep(100)", "timeout", limit_s=1.5, wall_s=1.5)
    for hog in ("x = bytearray(10**10)", "x = [0] * 10**10"):
        assert_zero(hog, "memory")
    flood = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2**20)\n    sys.stderr.write('y' * 2**20)\n"
    result, seconds = run(flood + RIGHT_ADD, ADD_TESTS)
    assert (result.passed, result.status) == (2, "ok") and seconds < LIMITS["wall_s"] + MARGIN_S
    assert_parent_fine()


@needs_sandbox
def test_broken_channels_are_crashes_not_exceptions():  # deliverable 3: nothing stops training
    for code in (
        "import os\nos.close(3)\nos.close(1)",  # closes the reply channel
        "import os\nos.write(3, b'{not json')\nos._exit(0)",  # garbage
        "import os\nos.write(3, b'[' * 10**6)\nos._exit(0)",  # too deep to parse
        "import os\nos.write(3, b'x' * (40 * 2**20))\nos._exit(0)",  # a reply past REPLY_CAP
        "import os\nos.dup2(os.open('/dev/null', os.O_RDONLY), 3)",  # hijacked: the reply goes nowhere
        "import os\nos._exit(0)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)",
    ):
        assert_zero(code, "crashed", limit_s=6, wall_s=6)
    assert_parent_fine()


@needs_sandbox
def test_crashes_count_as_reward_errors_and_never_stop_training(tmp_path):
    spec = SPEC.validate_python({"type": "code_tests", "on_error": "fail", **LIMITS})
    reward = build_hybrid("code", [spec], tmp_path)
    example = Example(prompt="", answer=None, expert=None, fields={"tests": ADD_TESTS})
    result = reward.score([RIGHT_ADD, "import os\nos._exit(1)", WRONG_ADD], example)
    assert result.total.tolist() == [1.0, 0.0, 0.0]
    assert result.errors == {"code_tests": 1} and result.valid.all()


@needs_sandbox
def test_runs_the_same_for_an_unprivileged_trainer():
    """The trainer as a normal user (here uid 65534 with the system Python): bubblewrap makes a user
    namespace of its own, and the code still cannot write outside or keep capabilities."""
    python = shutil.which("python3", path="/usr/bin")
    if os.geteuid() != 0 or python is None:
        pytest.skip("needs root (to become another user) and /usr/bin/python3")
    tmp_path = Path(tempfile.mkdtemp(prefix="spectrum-nonroot-"))  # pytest's is private to root
    package = tmp_path / "pkg" / "spectrum_rl" / "rewards"
    package.mkdir(parents=True)
    for name in ("__init__.py", "../__init__.py"):
        (package / name).write_text("")
    source = Path(sandbox.__file__).parent
    for name in ("sandbox.py", "seccomp.py", "cgroup.py", "_sandbox_runner.py"):
        shutil.copy(source / name, package / name)
    subprocess.run(["chmod", "-R", "a+rX", str(tmp_path)], check=True)
    tmp_path.chmod(0o755)
    script = (
        "import json, os\nfrom spectrum_rl.rewards import sandbox\nsandbox.check_available()\n"
        "job = {'code': 'import os', 'mode': 'expr', 'tests': [[['eval', 'os.getuid()']],"
        " [['exec', 'open(\"/x\", \"w\")']], [['exec', 'os.fork()']],"
        " [['exec', 'import ctypes'], ['eval', '[ctypes.CDLL(None, use_errno=True).unshare(0x10000000),"
        " ctypes.get_errno()]']]]}\n"
        "print(json.dumps([os.getuid(), sandbox.run(job, wall_s=10, cpu_s=2, memory_mb=256).reply['tests']]))\n"
    )
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", script],
        cwd=tmp_path / "pkg",
        capture_output=True,
        text=True,
        timeout=60,
    )
    shutil.rmtree(tmp_path)
    assert out.returncode == 0, out.stderr
    uid, replies = json.loads(out.stdout)
    assert uid == 65534 and replies[0] == [{"v": 65534}]
    assert [r[0]["e"].split(":")[0] for r in replies[1:3]] == ["OSError", "BlockingIOError"]
    assert replies[3] == [None, {"v": {"list": [-1, 1]}}]  # EPERM: no nested user namespace


def test_unavailable_sandbox_is_a_one_line_config_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "_probe", lambda: "code rewards run in a bubblewrap sandbox, and 'bwrap' is missing")
    with pytest.raises(Exception, match="bwrap") as info:
        SPEC.validate_python({"type": "code_tests"}).build(tmp_path)
    assert type(info.value).__name__ == "ConfigError" and "\n" not in str(info.value)


# --- the component ------------------------------------------------------------------------------


SPEC = TypeAdapter(RewardComponentSpec)


def test_extract_code():
    assert extract_code("plan\n```python\nx = 1\n```\nthen\n```py\nx = 2\n```\n") == "x = 2\n"
    assert extract_code("```\ny = 3\n```") == "y = 3\n"
    assert extract_code("```bash\nls\n```\nx = 4") == "```bash\nls\n```\nx = 4"  # other languages: whole text
    assert extract_code("x = 5") == "x = 5"


def test_parse_tests():
    assert parse_tests("assert f(1)\n\n  \nassert f(2)") == ["assert f(1)", "assert f(2)"]
    cases = [IOCase("1", "2"), IOCase("a\nb", "c")]
    assert parse_tests([{"input": "1", "output": "2"}, {"input": ["a", "b"], "output": "c"}]) == cases
    assert parse_tests({"inputs": ["1", "a\nb"], "outputs": ["2", "c"]}) == cases
    for bad in (3, [], {"inputs": [1], "outputs": []}, ["assert x", {"input": "", "output": ""}], [{"input": ""}]):
        with pytest.raises(ValueError, match="tests"):
            parse_tests(bad)


def test_spec_schema():
    spec = SPEC.validate_python({"type": "code_tests"})
    assert isinstance(spec, CodeTestsSpec)
    assert (spec.tests_field, spec.partial, spec.wall_s, spec.cpu_s, spec.memory_mb, spec.workers) == (
        "tests",
        True,
        10,
        5,
        512,
        2,
    )
    for bad in ({"wall_s": 0}, {"cpu_s": -1}, {"memory_mb": 16}, {"workers": 0}, {"bogus": 1}):
        with pytest.raises(ValueError):
            SPEC.validate_python({"type": "code_tests", **bad})
    own = set(CodeTestsSpec.model_fields) - set(RewardSpec.model_fields) - {"type"}
    assert own and all(CodeTestsSpec.model_fields[name].description for name in own)


@needs_sandbox
def test_component_scores_a_group(tmp_path):
    comp = SPEC.validate_python({"type": "code_tests", **LIMITS}).build(tmp_path)
    tests = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4", "assert add(0, 0) == 0"]
    ex = Example(prompt="write add", answer=None, expert=None, fields={"tests": tests})
    completions = [
        "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```",
        "```python\ndef add(a, b):\n    return a * b\n```",  # passes 2 of 4
        "def add(a, b):\n    return a + b",  # no fence: the whole text
        "```python\nimport os\nos.fork()\n```",
    ]
    assert list(comp.score(completions, ex).values) == [1.0, 0.5, 1.0, 0.0]
    strict = SPEC.validate_python({**comp.spec.model_dump(), "partial": False}).build(tmp_path)
    one_per_line = Example(prompt="", answer=None, expert=None, fields={"tests": "\n".join(tests) + "\n\n"})
    assert list(strict.score(completions[:2], one_per_line).values) == [1.0, 0.0]
    score, lines = comp.explain(completions[1], ex)
    assert score == 0.5 and lines[0] == "sandbox: ok" and lines[3] == "test 3: passed"
    assert_parent_fine()


@needs_sandbox
def test_component_needs_tests(tmp_path):
    comp = SPEC.validate_python({"type": "code_tests"}).build(tmp_path)
    for fields in ({}, {"tests": []}, {"tests": "  \n"}):
        with pytest.raises(ValueError, match="tests"):
            comp.score(["x = 1"], Example(prompt="", answer=None, expert=None, fields=fields))


@needs_sandbox
def test_coding_example_config_scores_its_expert_solutions_1():
    """configs/coding.yaml end to end: the rows' fenced reference solutions pass their tests."""
    from spectrum_rl.config import load_config
    from spectrum_rl.domains import build_domains
    from tests.conftest import ROOT

    config = load_config(ROOT / "configs" / "coding.yaml")
    (domain,) = build_domains(config, ROOT / "configs")
    examples = domain.eval_examples()
    for example in examples:
        result = domain.reward.score([example.expert, "def nothing(): pass"], example)
        assert result.total.tolist() == [1.0, 0.0], (example.prompt, result)


@needs_sandbox
def test_score_command(tmp_path):
    from spectrum_rl.cli import main
    from spectrum_rl.config import load_config
    from spectrum_rl.domains import build_domains
    from tests.conftest import ROOT

    config = str(ROOT / "configs" / "coding.yaml")
    (domain,) = build_domains(load_config(config), ROOT / "configs")
    example = domain.eval_examples()[0]
    completion = tmp_path / "completion.py"
    completion.write_text(example.expert)
    out = subprocess.run(
        [sys.executable, "-m", "spectrum_rl", "score", config, "--domain", "python_functions", "--index", "0"]
        + ["--completion", str(completion)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1:4] == ["code_tests: 1.0000  (weight 1)", "  sandbox: ok", "  test 1: passed"], out.stdout
    assert lines[-1] == "total: 1.0000  (1*code_tests)"
    args = [config, "--domain", "python_functions", "--completion", str(completion)]
    assert main(["score", *args, "--index", "99"]) == 2
    assert main(["score", *args[:2], "nope", *args[3:], "--index", "0"]) == 2
    assert main(["score", *args[:4], str(tmp_path / "missing.py"), "--index", "0"]) == 2
