"""The code sandbox (spectrum_rl.rewards.sandbox) and the `code_tests` reward component."""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from spectrum_rl.rewards import RewardComponentSpec
from spectrum_rl.rewards.base import RewardSpec
from spectrum_rl.rewards.code import CodeTestsSpec, extract_code
from spectrum_rl.rewards.sandbox import run_tests
from spectrum_rl.tasks.base import Example

LIMITS = {"wall_s": 3.0, "cpu_s": 2.0, "memory_mb": 256}
MARGIN_S = 1.5  # start-up and scheduling slack on a loaded machine
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox relies on Linux rlimits and /proc")


def runner_processes() -> list[int]:
    """Sandbox runners (or processes forked from one) that are children of this process or orphans."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or b"_sandbox_runner.py" not in (entry / "cmdline").read_bytes():
                continue
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        if parent in (os.getpid(), 1):
            pids.append(int(entry.name))
    return pids


def run(code: str, tests=("assert True",), **limits):
    """``run_tests`` with the default small limits; returns (result, seconds)."""
    start = time.monotonic()
    result = run_tests(code, list(tests), **{**LIMITS, **limits})
    return result, time.monotonic() - start


def assert_parent_fine() -> None:
    """No runner outlived its call, and the sandbox still works."""
    assert runner_processes() == []
    result, _ = run("def f(x):\n    return x + 1", ["assert f(1) == 2"])
    assert (result.passed, result.status) == (1, "ok")


def assert_zero(code: str, status: str, *, limit_s: float = LIMITS["wall_s"], **limits):
    result, seconds = run(code, **limits)
    assert (result.passed, result.total, result.status) == (0, 1, status), result
    assert seconds < limit_s + MARGIN_S
    assert_parent_fine()
    return result


# --- the sandbox ------------------------------------------------------------------------------


@linux_only
def test_correct_partial_and_failing_code():
    code = "def double(x):\n    return 2 * x if x < 3 else 0"
    tests = ["assert double(1) == 2", "assert double(2) == 4", "assert double(3) == 6", "assert double(4) == 8"]
    result, seconds = run(code, tests)
    assert (result.passed, result.total, result.status) == (2, 4, "ok") and seconds < LIMITS["wall_s"] + MARGIN_S
    assert run("def double(x):\n    return 2 * x", tests)[0].passed == 4
    assert run("def double(:", tests)[0].passed == 0  # syntax error: nothing passes
    assert run("raise SystemExit(0)", tests)[0].passed == 0  # the code must load
    assert run(code, ["import sys; sys.exit(0)", "assert double(1) == 2"])[0].passed == 1


@linux_only
def test_stdlib_that_asks_for_frames_still_works():
    # namedtuple, Enum, TypeVar and logging call sys._getframe, which the sandbox refuses gracefully.
    code = (
        "import collections, dataclasses, enum, logging, typing, heapq, fractions, unittest\n"
        "P = collections.namedtuple('P', 'x y')\nC = enum.Enum('C', 'A B')\nT = typing.TypeVar('T')\n"
        "logging.getLogger('x').warning('hi')\n"
        "@dataclasses.dataclass\nclass D:\n    x: int\n"
        "def f(n):\n    return P(D(n).x, 0).x + heapq.nsmallest(1, [C.B.value])[0]"
    )
    assert run(code, ["assert f(1) == 3"])[0].passed == 1


@linux_only
def test_infinite_loop_hits_the_cpu_limit():
    result = assert_zero("while True: pass", "timeout", limit_s=1, cpu_s=1)
    assert "CPU" in result.detail


@linux_only
def test_sleep_hits_the_wall_clock_limit():
    assert_zero("import time; time.sleep(100)", "timeout", limit_s=1.5, wall_s=1.5)


@linux_only
def test_fork_bomb_is_blocked_and_leaves_no_process():
    result = assert_zero("import os\nwhile True: os.fork()", "blocked")
    assert "os.fork" in result.detail
    assert_zero("import subprocess", "blocked")
    assert_zero("import os; os.system('true')", "blocked")


@linux_only
@pytest.mark.parametrize("code", ["x = bytearray(10**10)", "x = [0] * 10**10"])
def test_huge_allocation_hits_the_memory_limit(code):
    assert_zero(code, "memory")


@linux_only
def test_no_writes_outside_the_working_directory():
    target = Path(f"/tmp/pwned_{secrets.token_hex(8)}")
    assert_zero(f"open('{target}', 'w').write('x')", "blocked")
    assert not target.exists()
    assert_zero(f"import os; os.mkdir('{target}')", "blocked")
    assert not target.exists()
    # Inside its own temporary directory the code may write (and that directory is removed).
    code = "import tempfile\nopen('a.txt', 'w').write('hi')\nwith tempfile.TemporaryFile() as f: f.write(b'x')"
    assert run(code, ["assert open('a.txt').read() == 'hi'"])[0].passed == 1


@linux_only
def test_no_reads_of_user_files(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    assert_zero(f"open('{secret}').read()", "blocked")
    assert_zero(f"import os; os.listdir('{tmp_path}')", "blocked")
    assert_zero("open('/etc/passwd').read()", "blocked")
    # HOME is the empty working directory, so ~/.bashrc is simply not there.
    assert_zero("import os\nopen(os.path.expanduser('~/.bashrc')).read()", "ok")


@linux_only
def test_parent_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    assert_zero("import os\ntoken = os.environ['SECRET_TOKEN']", "ok")
    assert (
        run("import os", ["assert 'SECRET_TOKEN' not in os.environ", "assert os.environ['HOME'] == os.getcwd()"])[
            0
        ].passed
        == 2
    )


@linux_only
def test_network_is_blocked():
    assert_zero("import socket; socket.create_connection(('127.0.0.1', 9))", "blocked")
    assert_zero("import urllib.request; urllib.request.urlopen('http://127.0.0.1:9')", "blocked")


@linux_only
def test_forged_result_lines_are_not_accepted():
    result, _ = run("import sys\nprint('0 99 99')\nprint('0 1 1 ok')\nprint(sys.stdin.read())", ["assert False"])
    assert (result.passed, result.status) == (0, "ok")
    # A thread that waits for the genuine line to copy its nonce: the line goes to an append-only
    # descriptor, so it cannot be read back from any descriptor.
    steal = (
        "import os, threading\n"
        "def steal(fd):\n"
        "    while True:\n"
        "        try:\n"
        "            data = os.pread(fd, 200, 0)\n"
        "        except OSError:\n"
        "            return\n"
        "        if data.strip():\n"
        "            os.write(fd, b'\\n' + data.split()[0] + b' 1 1 ok\\n')\n"
        "            return\n"
        "for fd in range(8):\n"
        "    threading.Thread(target=steal, args=(fd,), daemon=True).start()"
    )
    for _ in range(3):  # a race: with a readable descriptor it wins about one time in five
        result, _ = run(steal, ["assert False"])
        assert (result.passed, result.status) == (0, "ok")
    # Ending the process right after a fake line leaves no genuine line at all.
    assert_zero("import os\nos.write(1, b'\\n0 1 1 ok\\n')\nos._exit(0)", "crashed")
    # The nonce sits in a local of the runner's main(); frames are out of reach.
    assert_zero("import sys\nnonce = sys._getframe(1).f_locals['nonce']", "ok")
    assert_zero("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    frame = e.__traceback__.tb_frame", "ok")
    assert_zero("import gc\ngc.get_referrers(print)", "blocked")
    assert_parent_fine()


@linux_only
def test_introspection_and_native_code_are_blocked():
    assert_zero("import ctypes", "blocked")
    assert_zero("import sys; sys.settrace(lambda *a: None)", "blocked")
    assert_zero("c = (lambda: 0).__code__.replace(co_code=b'')", "blocked")  # hand-made bytecode
    # _imp.create_builtin would sidestep the import audit event; the gate refuses blocked names.
    assert_zero("import _imp, importlib.machinery as m\n_imp.create_builtin(m.ModuleSpec('_signal', None))", "ok")
    # A Python signal handler would receive the interrupted frame: refused, while SIG_IGN is fine.
    assert_zero("import signal\nsignal.signal(signal.SIGALRM, lambda *a: None)", "ok")
    assert run("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)")[0].passed == 1


@linux_only
def test_output_floods_stay_capped():
    code = "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * 2**20)\n    sys.stderr.write('y' * 2**20)"
    result, seconds = run(code)
    assert result.status == "ok" and seconds < LIMITS["wall_s"] + MARGIN_S and len(result.detail) < 1000
    assert_parent_fine()


# --- the component ----------------------------------------------------------------------------


SPEC = TypeAdapter(RewardComponentSpec)


def test_extract_code():
    assert extract_code("plan\n```python\nx = 1\n```\nthen\n```py\nx = 2\n```\n") == "x = 2\n"
    assert extract_code("```\ny = 3\n```") == "y = 3\n"
    assert extract_code("```bash\nls\n```\nx = 4") == "```bash\nls\n```\nx = 4"  # other languages: whole text
    assert extract_code("x = 5") == "x = 5"


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


@linux_only
def test_component_scores_a_group(tmp_path):
    spec = SPEC.validate_python({"type": "code_tests", "wall_s": 3, "cpu_s": 2, "memory_mb": 256})
    comp = spec.build(tmp_path)
    tests = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4", "assert add(0, 0) == 0"]
    ex = Example(prompt="write add", answer=None, expert=None, fields={"tests": tests})
    completions = [
        "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```",
        "```python\ndef add(a, b):\n    return a * b\n```",  # passes 2 of 4
        "def add(a, b):\n    return a + b",  # no fence: the whole text
        "```python\nimport os\nos.fork()\n```",
    ]
    assert list(comp.score(completions, ex)) == [1.0, 0.5, 1.0, 0.0]
    strict = SPEC.validate_python({**spec.model_dump(), "partial": False}).build(tmp_path)
    one_per_line = Example(prompt="", answer=None, expert=None, fields={"tests": "\n".join(tests) + "\n\n"})
    assert list(strict.score(completions[:2], one_per_line)) == [1.0, 0.0]
    assert_parent_fine()


def test_component_needs_tests(tmp_path):
    comp = SPEC.validate_python({"type": "code_tests"}).build(tmp_path)
    for fields in ({}, {"tests": []}, {"tests": "  \n"}):
        with pytest.raises(ValueError, match="tests"):
            comp.score(["x = 1"], Example(prompt="", answer=None, expert=None, fields=fields))


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
