"""Security round 2, as regression tests: what a completion could do to the trainer's own process
through the trusted judge, the parsers and the sandbox's limits (the sandbox's isolation itself:
tests/test_sandbox.py; HTTP rewards: tests/test_http_reward.py; run folders:
tests/test_checkpoint_safety.py).

Each attack was measured before the fix (the numbers in the comments) and must now be bounded: the
trainer's process stays fast, the sample scores 0, and where the sample was hostile it is counted
as crashed (``reward_errors/``) instead of stopping training.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from spectrum_rl.rewards import build_hybrid, cgroup, judgement, splitting, values
from spectrum_rl.rewards.code import extract_code, run_tests
from spectrum_rl.rewards.text import extract_answer, last_number, normalize, printable
from spectrum_rl.sources.base import Example
from spectrum_rl.sources.builtin import check_constraint
from tests.conftest import needs_sandbox
from tests.test_sandbox import LIMITS, RIGHT_ADD

FLOOD = 2**61 - 1  # hash(k * FLOOD) == 0 for every int k: CPython does not randomise int hashes
# A solution that rewrites the runner it shares an interpreter with, so that its list goes out tagged
# as a set: the judge then decodes 100,000 colliding ints as a set (69.7 s in the judge before).
TAMPERED = (
    "import sys\nsys.modules['__main__']._PLAIN_CONTAINERS[list] = 'set'\n"
    f"def f(x):\n    return [k * {FLOOD} for k in range(1, 100_001)]\n"
)


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


# --- the judge: hash flooding and decoder bombs --------------------------------------------------


@pytest.mark.parametrize("tag", ["set", "frozenset", "dict", "list"])
def test_colliding_values_are_refused_in_linear_time(tag):
    items = [k * FLOOD for k in range(1, 60_001 if tag == "dict" else 100_001)]  # within the node cap
    body = [[k, None] for k in items] if tag == "dict" else items
    value = {tag: body}
    start = time.perf_counter()
    with pytest.raises(values.Unjudgeable, match="sharing one hash"):
        values.decode(value)  # a list too: the judge may build a set of it (`set(f(x)) == {...}`)
    assert time.perf_counter() - start < 1.0


def test_colliding_tuples_are_refused_and_honest_data_passes():
    with pytest.raises(values.Unjudgeable):
        values.decode({"list": [{"tuple": [k * FLOOD]} for k in range(1, 1000)]})
    # Honest data: many distinct values, or one value repeated, or a few numbers that happen to collide.
    assert values.decode({"set": list(range(100_000))}) == set(range(100_000))
    assert values.decode({"list": [1] * 100_000}) == [1] * 100_000
    assert values.decode({"set": [-1, -2, 0, FLOOD]}) == {-1, -2, 0, FLOOD}  # hash(-1) == hash(-2)


def test_the_judge_refuses_more_nodes_than_the_runner_sends_and_runs_under_a_deadline():
    with pytest.raises(ValueError, match="too large"):
        values.decode({"list": list(range(300_000))})
    deep: object = 0
    for _ in range(300):
        deep = {"list": [deep]}
    with pytest.raises(ValueError, match="nested"):
        values.decode(deep)
    (assertion,) = splitting.split_test("assert sorted(f(1)) == [1]").asserts
    big = {"v": {"list": list(range(199_000))}}
    with pytest.raises(values.JudgeTimeout):
        judgement.holds(assertion, [big], deadline=time.monotonic() - 1)


@needs_sandbox
def test_a_tampered_runner_sending_colliding_values_crashes_its_sample_alone_and_fast():
    start = time.monotonic()
    result = run_tests(TAMPERED, ["assert f(1) == {1, 2}"], **LIMITS)
    assert (result.passed, result.status) == (0, "crashed") and "hash" in result.detail, result
    assert time.monotonic() - start < 3  # sandbox and judge; the judge alone took 69.7 s before
    reward = build_hybrid("code", [_spec()], Path("."))
    example = Example(prompt="", answer=None, expert=None, fields={"tests": ["assert f(1) == [1]"]})
    right = "def f(x):\n    return [x]\n"
    result = reward.score([TAMPERED, right], example)
    assert result.total.tolist() == [0.0, 1.0] and result.errors == {"code_tests": 1}


@needs_sandbox
def test_judging_past_its_budget_crashes_the_sample_alone():
    honest_but_slow = "def f(x):\n    return list(range(150_000))\n"
    result = run_tests(honest_but_slow, ["assert sorted(f(1)) == [1]"], **LIMITS, judge_s=1e-6)
    assert (result.status, result.passed) == ("crashed", 0) and "judging" in result.detail, result


@needs_sandbox
def test_a_correct_answer_beyond_the_int_str_limit_scores_1():
    # 10**4400 has 4,401 digits: past CPython's 4,300-digit int/str limit, so JSON could not carry it
    # (it scored 0 before); it now travels as hex.
    result = run_tests("def f(x):\n    return 10 ** 4400\n", ["assert f(1) == 10 ** 4400"], **LIMITS)
    assert (result.passed, result.status) == (1, "ok"), result


# --- the sandbox's limits and labels ---------------------------------------------------------------

MEMFD = (  # 48 memfds of 16 MiB: 768 MiB that RLIMIT_AS does not count (it scored 1.0 under 256 MiB before)
    "import os\nfds = []\nfor i in range(48):\n    fd = os.memfd_create('x')\n"
    "    os.pwrite(fd, b'x' * (16 << 20), 0)\n    fds.append(fd)\n" + RIGHT_ADD
)
TMPFS = (  # 60 MiB of tmpfs files (the address space does not hold them) and 200 MiB of pages
    "for n in range(4):\n    with open(f'/tmp/fill{n}', 'wb') as f:\n        f.write(b'x' * (15 << 20))\n"
    "x = bytearray(200 << 20)\nfor i in range(0, len(x), 4096):\n    x[i] = 1\n" + RIGHT_ADD
)
SOCKETS = (  # socket buffers: ~240 MiB held by the kernel for 30 socket pairs
    "import socket\nheld = []\nfor i in range(30):\n    a, b = socket.socketpair()\n"
    "    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 20)\n    a.setblocking(False)\n"
    "    try:\n        while True:\n            a.send(b'x' * 65536)\n    except BlockingIOError:\n        pass\n"
    "    held.append((a, b))\nx = bytearray(100 << 20)\nfor i in range(0, len(x), 4096):\n    x[i] = 1\n" + RIGHT_ADD
)
ADD = ["assert add(2, 3) == 5"]


@needs_sandbox
@pytest.mark.skipif(cgroup.layout() is None, reason="this machine lets the trainer create no memory cgroup")
@pytest.mark.parametrize("payload", [MEMFD, TMPFS, SOCKETS], ids=["memfd", "tmpfs", "sockets"])
def test_with_a_memory_cgroup_what_the_address_space_does_not_hold_counts_against_the_limit(payload):
    result = run_tests(payload, ADD, **LIMITS, memory_cgroup=True)
    assert (result.passed, result.status) == (0, "memory"), result
    assert run_tests(RIGHT_ADD, ADD, **LIMITS, memory_cgroup=True).passed == 1  # room left for honest code
    assert cgroup.layout() is not None and not list(cgroup.layout().memory.glob("spectrum-rl-*-probe"))


@needs_sandbox
@pytest.mark.parametrize("payload", [MEMFD, SOCKETS], ids=["memfd", "sockets"])
def test_without_a_memory_cgroup_memfds_and_sockets_are_refused(payload):
    result = run_tests(payload, ADD, **LIMITS)
    assert result.passed == 0 and "Operation not permitted" in result.detail, result
    assert run_tests(RIGHT_ADD, ADD, **LIMITS).passed == 1


def test_asking_for_a_memory_cgroup_where_none_can_be_made_is_a_config_error(monkeypatch, tmp_path):
    from pydantic import TypeAdapter

    from spectrum_rl.errors import ConfigError
    from spectrum_rl.rewards import RewardComponentSpec, sandbox

    monkeypatch.setattr(sandbox, "check_available", lambda: None)
    monkeypatch.setattr(cgroup, "layout", lambda: None)
    spec = TypeAdapter(RewardComponentSpec).validate_python({"type": "code_tests", "memory_cgroup": True})
    with pytest.raises(ConfigError, match="memory_cgroup: false"):
        spec.build(tmp_path)


@needs_sandbox
@pytest.mark.parametrize(
    "code", ["import os\nos._exit(137)", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"]
)
def test_a_code_that_kills_itself_is_crashed_not_a_cpu_timeout(code):
    result = run_tests(code, ADD, **LIMITS)
    assert result.status == "crashed" and "CPU" not in result.detail, result
    assert run_tests("while True:\n    pass", ADD, **{**LIMITS, "cpu_s": 1}).status == "timeout"


# --- parsers of completions in the trainer's process ------------------------------------------------

MB = 1_000_000
ADVERSARIAL = {
    "fence+spaces": "```" + " " * MB,  # 20,000 spaces: 11.5 s in the old fence regex
    "fences": "```" * (MB // 3) + "\n",
    "blocks": "```\n" * (MB // 4),
    "tag+blanks": "```py" + " \t" * (MB // 2),
    "digits": "1" * MB,
    "commas": "1,000" * (MB // 5),
    "dots": "1." * (MB // 2),
    "answer tags": "answer:" * (MB // 7),
    "newlines": "\n" * MB,
    "open boxes": "\\boxed{" + "{" * MB,
    "boxes": "\\boxed{}" * (MB // 8),
    "hashes": "####" * (MB // 4),
    "answer elements": "<answer>" * (MB // 8) + "</answer>",
    "thinking": "</think>" * (MB // 8),
}


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_every_parser_of_completions_is_linear(text):
    parsers = [
        extract_code,
        extract_answer,
        last_number,
        normalize,
        lambda t: check_constraint({"type": "acrostic", "word": "abc"}, t),
        lambda t: check_constraint({"type": "letter_words", "letter": "a", "count": 3}, t),
    ]
    slowest = max(_seconds(parse, text) for parse in parsers)
    assert slowest < 1.0, slowest  # under 0.3 s each on one 2-core machine; quadratic ones take hours


def test_extract_code_is_the_fence_regex_it_replaced():
    import random
    import re

    fence = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)
    pieces = ["`", "```", "````", "\n", "\r", " ", "\t", "py", "python", "Python3", "x", "pyt", "\r\n"]
    rng = random.Random(0)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 16)))
        blocks = fence.findall(text)
        assert extract_code(text) == (blocks[-1] if blocks else text), repr(text)


# --- what reaches the terminal --------------------------------------------------------------------


def test_model_output_is_shown_escaped():
    assert printable("ok: ü, 中") == "ok: ü, 中"
    assert printable("\x1b[2J\rtest 1: passed\ntotal: 1.0000") == "\\x1b[2J\\rtest 1: passed\\ntotal: 1.0000"
    assert printable("\ud800 \u202e") == "\\ud800 \\u202e"  # a lone surrogate, a right-to-left override


def _config(tmp_path: Path, model: Path | str, task: dict, training: dict) -> Path:
    cfg = {
        "run": {"name": "t", "output_dir": str(tmp_path / "run"), "seed": 0},
        "model": {"name_or_path": str(model)},
        "domains": [task],
        "training": {"max_new_tokens": 8, "learning_rate": 1e-3, "save_every": 0, **training},
        "eval": {"every": 1000, "max_new_tokens": 8},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@needs_sandbox
def test_score_escapes_model_output_and_keeps_the_reward_timeout(tmp_path, tiny_random_lm_dir):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"question": "add", "tests": ADD}) + "\n" + json.dumps({"question": "x", "tests": ADD}) + "\n"
    )
    rewards = tmp_path / "rewards.py"
    rewards.write_text("import time\ndef slow(prompts, completions, **columns):\n    time.sleep(60)\n")
    task = {
        "name": "code",
        "kind": "structured",
        "source": {"type": "file", "path": str(rows)},
        "answer_field": None,
        "eval": {"size": 1},
        "reward": [{"type": "code_tests"}, {"type": "python", "function": f"{rewards}:slow", "timeout_s": 1}],
    }
    config = _config(tmp_path, tiny_random_lm_dir, task, {"group_size": 2})
    completion = tmp_path / "completion.py"
    # Its error message clears the screen, forges passing lines, and carries a lone surrogate.
    completion.write_text("raise ValueError('\\x1b[2J\\rtest 1: passed\\ntotal: 1.0000 \\ud800')\n")
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "spectrum_rl", "score", str(config), "--domain", "code", "--index", "0"]
        + ["--completion", str(completion)],
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - start < 30  # the python reward's timeout_s of 1 s held (it slept 60 s)
    text = out.stdout.decode("ascii")  # nothing but escapes: no control character, no surrogate
    assert "\\x1b[2J\\rtest 1: passed\\ntotal: 1.0000 \\ud800" in text
    assert [line for line in text.splitlines() if line.startswith("total:")] == [text.splitlines()[-1]]
    assert "TimeoutError: timed out after 1 s" in text


@needs_sandbox
def test_a_run_whose_expert_rows_attack_the_judge_finishes_and_counts_them(tmp_path, tiny_random_lm_dir):
    """LUFFY puts each row's expert completion into its rollout group, where it is scored like any
    other: expert rows carrying the collision payload stopped `spectrum-rl train` (exit 2) before."""
    rows = tmp_path / "rows.jsonl"
    expert = f"```python\n{TAMPERED}```"
    with rows.open("w") as f:
        for i in range(4):
            f.write(json.dumps({"question": f"f {i}", "expert": expert, "tests": ["assert f(1) == [1]"]}) + "\n")
    task = {
        "name": "code",
        "kind": "structured",
        "source": {"type": "file", "path": str(rows)},
        "answer_field": None,
        "eval": {"size": 1},
        "reward": [{"type": "code_tests", "wall_s": 5, "cpu_s": 3, "memory_mb": 256}],
    }
    training = {"steps": 2, "prompts_per_step": 2, "group_size": 2, "sft": {"luffy": True}}
    config = _config(tmp_path, tiny_random_lm_dir, task, training)
    out = subprocess.run(
        [sys.executable, "-m", "spectrum_rl", "train", str(config)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert sum(m.get("reward_errors/code/code_tests", 0) for m in metrics) == 4  # 2 groups x 2 steps


def _spec():
    from pydantic import TypeAdapter

    from spectrum_rl.rewards import RewardComponentSpec

    return TypeAdapter(RewardComponentSpec).validate_python({"type": "code_tests", **LIMITS})
