"""`code_tests`: run each completion's Python code in the OS sandbox; the trusted judge scores it.

The code runs in :mod:`spectrum_rl.rewards.sandbox` (namespaces, an unprivileged user, seccomp,
read-only stdlib, a private tmpfs, rlimits). What comes back is plain data: the values of the test
expressions, or the program's stdout for I/O tests. The trusted judge decides in this process
whether each test passed (:mod:`spectrum_rl.rewards.splitting` splits a test into sandbox steps and
judgements, :mod:`spectrum_rl.rewards.judgement` evaluates them); the expected values never enter
the sandbox.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from spectrum_rl.errors import ConfigError
from spectrum_rl.rewards import cgroup, judgement, sandbox, splitting
from spectrum_rl.rewards.base import REWARDS, OnError, RewardComponent, RewardSpec, Scores
from spectrum_rl.rewards.text import row_field
from spectrum_rl.rewards.values import JudgeTimeout, Unjudgeable
from spectrum_rl.sources.base import Example

log = logging.getLogger(__name__)

GROUP_MARGIN_S = 5.0  # start-up and scheduling slack on top of a group's limits, in the timeout check
_FENCE = "```"
_TAGS = ("", "py", "python", "python3")  # what may stand after an opening fence on its line, any case


def extract_code(completion: str) -> str:
    """The last fenced ```python (``py``, ``python3`` or untagged ```) block of ``completion``, else
    the whole text. A block opens at a fence whose line holds only such a tag (with spaces, tabs and
    a final ``\\r`` around it) and ends at the next fence.

    One left-to-right scan with ``str.find``, each line's end and last backtick looked up once:
    linear in the completion, which a policy under RL may shape to slow a backtracking regex down
    (the regex this replaces took 11.5 s on a fence followed by 20,000 spaces)."""
    blocks: list[str] = []
    at, line_end, last_tick = 0, -1, -1
    while (start := completion.find(_FENCE, at)) >= 0:
        if start > line_end:  # a new line: where it ends, and its last backtick
            line_end = completion.find("\n", start)
            if line_end < 0:
                break
            last_tick = completion.rfind("`", start, line_end)
        if last_tick >= start + 3:  # a backtick later on this line: only a fence ending there may open
            at = last_tick - 2
            continue
        rest = completion[start + 3 : line_end]
        rest = rest[:-1] if rest.endswith("\r") else rest
        if rest.strip(" \t").lower() not in _TAGS:
            at = start + 1
            continue
        close = completion.find(_FENCE, line_end + 1)
        if close < 0:
            break
        blocks.append(completion[line_end + 1 : close])
        at = close + 3
    return blocks[-1] if blocks else completion


@dataclass(frozen=True)
class IOCase:
    """An I/O test: the program reads ``input`` on stdin and must print ``output``."""

    input: str
    output: str


Test = str | IOCase


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one :func:`run_tests` call.

    passed: tests the judge found passed (0 unless status is "ok").
    total: number of tests.
    status: "ok" (the code ran and the judge scored it; a code that does not load passes nothing),
        "timeout" (wall clock or CPU limit), "memory" (MemoryError under the address-space limit, or
        killed by the kernel over the cgroup's limit) or "crashed" (no valid reply: a signal,
        os._exit, closed or hijacked channels, a reply too large, a failure of the sandbox itself;
        or a reply the judge refused: values shaped to slow it down, judging past ``judge_s``).
    detail: a short reason (the limit hit, the exit status, why the code did not load).
    notes: one line per test ("passed", or why not) when status is "ok".
    """

    passed: int
    total: int
    status: str
    detail: str = ""
    notes: tuple[str, ...] = ()


def parse_tests(value: object, field: str = "tests") -> list[Test]:
    """A row's tests: assert snippets (a list, or one string with one snippet per line) or I/O cases
    (a list of ``{"input", "output"}`` objects, or ``{"inputs": [...], "outputs": [...]}``)."""
    if isinstance(value, str):
        value = value.splitlines()
    if isinstance(value, Mapping) and {"inputs", "outputs"} <= set(value):
        inputs, outputs = value["inputs"], value["outputs"]
        if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
            raise ValueError(f"row field '{field}': 'inputs' and 'outputs' must be lists of the same length")
        value = [{"input": i, "output": o} for i, o in zip(inputs, outputs)]
    if not isinstance(value, (list, tuple)):
        raise ValueError(
            f"row field '{field}' must be a list of test snippets, a string, or I/O cases; found {type(value).__name__}"
        )
    tests: list[Test] = []
    for item in value:
        if isinstance(item, Mapping):
            if not {"input", "output"} <= set(item):
                raise ValueError(f"row field '{field}': an I/O case needs 'input' and 'output'; found {sorted(item)}")
            tests.append(IOCase(_text(item["input"]), _text(item["output"])))
        elif str(item).strip():
            tests.append(str(item))
    if not tests:
        raise ValueError(f"row field '{field}' holds no tests")
    if len({type(t) for t in tests}) > 1:
        raise ValueError(f"row field '{field}' mixes assert snippets and I/O cases")
    return tests


def _text(value: object) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def run_tests(
    code: str,
    tests: Sequence[Test],
    *,
    wall_s: float,
    cpu_s: float,
    memory_mb: int,
    judge_s: float = 2.0,
    memory_cgroup: bool = False,
) -> SandboxResult:
    """Run ``code`` in the sandbox against ``tests`` (assert snippets, or I/O cases) and judge them
    here. Limits: ``wall_s`` wall-clock seconds for the whole run, ``cpu_s`` CPU seconds (rounded
    up), ``memory_mb`` MiB of memory (``memory_cgroup``: see :func:`sandbox.run`), ``judge_s``
    seconds for this process to judge what came back (past it the sample is "crashed"). Raises
    only :class:`sandbox.SandboxUnavailable` and a reward timeout (TimeoutError); every other
    failure is a result with status "crashed"."""
    total = len(tests)
    io = bool(tests) and isinstance(tests[0], IOCase)
    splits = [] if io else [splitting.split_test(t) for t in tests]  # type: ignore[arg-type]
    if io:
        job = {"code": code, "mode": "io", "tests": [t.input for t in tests]}  # type: ignore[union-attr]
    else:
        job = {"code": code, "mode": "expr", "tests": [[list(s) for s in t.steps] for t in splits]}
    outcome = sandbox.run(job, wall_s=wall_s, cpu_s=cpu_s, memory_mb=memory_mb, memory_cgroup=memory_cgroup)
    if outcome.status != "ok" or outcome.reply is None:
        return SandboxResult(0, total, outcome.status, outcome.detail)
    reply = outcome.reply
    if not reply["loaded"]:
        return SandboxResult(0, total, "ok", f"the code does not load: {str(reply.get('error', ''))[:200]}")
    replies = reply["tests"] + [None] * max(0, total - len(reply["tests"]))
    deadline = time.monotonic() + judge_s
    try:
        if io:
            notes = [_judge_io(case, r) for case, r in zip(tests, replies)]  # type: ignore[arg-type]
        else:
            notes = [_judge(t, r, deadline) for t, r in zip(splits, replies)]
    except JudgeTimeout:
        return SandboxResult(0, total, "crashed", f"judging its results took longer than {judge_s:g} s")
    except Unjudgeable as exc:
        return SandboxResult(0, total, "crashed", f"the judge refused its results: {exc}")
    return SandboxResult(sum(n == "passed" for n in notes), total, "ok", notes=tuple(notes))


def _judge(split: splitting.SplitTest, replies: object, deadline: float) -> str:
    """ "passed", or why the test did not pass."""
    if split.unverifiable:
        return f"unverifiable: {split.unverifiable}"
    if type(replies) is not list or len(replies) != len(split.steps):
        failed = replies[-1] if type(replies) is list and replies else None
        error = failed.get("e") if type(failed) is dict else None
        return f"set-up failed: {str(error)[:200]}" if error else "the sandbox did not run every step"
    for (kind, source), reply in zip(split.steps, replies):
        if kind == "exec" and reply is not None:
            return f"set-up `{source[:80]}` failed"
    for i, assertion in enumerate(split.asserts):
        ok, why = judgement.holds(assertion, replies, deadline)
        if not ok:
            return f"assert {i + 1} of {len(split.asserts)}: {why}"
    return "passed"


def _judge_io(case: IOCase, reply: object) -> str:
    if type(reply) is not dict:
        return "no result"
    if type(reply.get("out")) is not str:
        return f"the program failed: {str(reply.get('e', ''))[:200]}"
    return "passed" if judgement.same_output(reply["out"], case.output) else "wrong output"


@REWARDS.register("code_tests")
class CodeTestsSpec(RewardSpec):
    """`code_tests`: fraction of the row's tests that the completion's Python code passes, run in an OS sandbox.

    The code is the last fenced ```python (or untagged ```) block, else the whole completion. Tests
    are assert snippets (e.g. `assert f(2) == 4`): the sandbox computes `f(2)` and this process
    compares it with `4`, so the code never sees the expected value and cannot fake a pass; or I/O
    cases (`{input, output}`: the program's stdout must match). Tests the judge cannot check soundly
    count as failed (docs/reliability.md lists which). Timeouts, memory exhaustion and crashes score
    0; crashes count in `reward_errors/` and never stop training. Needs Linux and bubblewrap (`bwrap`).
    """

    on_error: OnError = Field(
        "zero",
        description="As for every component; `zero` by default here: a group whose scoring fails (e.g. "
        "overruns `timeout_s`) scores 0, is counted in `reward_errors/`, and training goes on.",
    )

    tests_field: str = Field(
        "tests",
        description="Row field holding the tests: a list of assert snippets, a string with one snippet per line, "
        "a list of {input, output} objects, or {inputs: [...], outputs: [...]}.",
    )
    partial: bool = Field(True, description="Score the fraction of tests passed; false: 1 only when all pass.")
    wall_s: float = Field(
        10.0,
        gt=0,
        description="Wall-clock limit in seconds for one completion (code and "
        "all its tests, including interpreter start-up).",
    )
    cpu_s: float = Field(
        5.0, gt=0, description="CPU-time limit in seconds for one completion (rounded up to whole seconds)."
    )
    memory_mb: int = Field(
        512,
        ge=32,
        description="Memory limit in MiB for one completion's address space (with `memory_cgroup`: for all "
        "the memory it makes the kernel hold).",
    )
    memory_cgroup: bool = Field(
        False,
        description="Run each completion in a memory cgroup of its own (the trainer must be able to create one: "
        "root, or a delegated subtree), so that `memory_mb` also counts tmpfs files, memfds, shared memory, pipe "
        "and socket buffers; about 12 ms more a sample on cgroup v1. false: memfds, shared memory and sockets are "
        "refused, and a completion holds at most memory_mb + 96 MiB.",
    )
    judge_s: float = Field(
        2.0, gt=0, description="Seconds this process may spend judging one completion's results; past it: crashed."
    )
    workers: int = Field(
        2,
        ge=1,
        description="Completions of a group run concurrently in this many sandboxes. A group takes up to "
        "ceil(group size / workers) * (wall_s + judge_s) seconds; a `timeout_s` below that (plus a margin) "
        "is a config error.",
    )

    def slowest_group(self, group_size: int) -> tuple[float, str]:
        rounds = math.ceil(group_size / self.workers)
        how = f"ceil({group_size} / {self.workers} workers) x (wall_s {self.wall_s:g} + judge_s {self.judge_s:g})"
        return rounds * (self.wall_s + self.judge_s) + GROUP_MARGIN_S, f"{how} + {GROUP_MARGIN_S:g} s"

    def build(self, base_dir: Path) -> RewardComponent:
        try:
            sandbox.check_available()
        except sandbox.SandboxUnavailable as exc:
            raise ConfigError(str(exc), field="type") from None
        if self.memory_cgroup and cgroup.layout() is None:
            raise ConfigError(
                "this machine lets the trainer create no memory cgroup (it needs root, or a delegated cgroup "
                "subtree with the memory controller); set memory_cgroup: false",
                field="memory_cgroup",
            )
        return CodeTestsReward(self)


class CodeTestsReward(RewardComponent):
    spec: CodeTestsSpec

    def __init__(self, spec: CodeTestsSpec) -> None:
        super().__init__(spec)
        self._warned: set[str] = set()

    def _tests(self, example: Example) -> list[Test]:
        tests = parse_tests(row_field(example, self.spec.tests_field), self.spec.tests_field)
        for test in tests:
            reason = "" if isinstance(test, IOCase) else splitting.split_test(test).unverifiable
            if reason and reason not in self._warned:
                self._warned.add(reason)
                log.warning("code_tests: a test counts as failed, unverifiable (%s): %s", reason, test[:120])
        return tests

    def _score(self, result: SandboxResult) -> float:
        if result.status != "ok":
            return 0.0
        if self.spec.partial:
            return result.passed / result.total
        return float(result.passed == result.total)

    def _run(self, completions: Sequence[str], example: Example) -> list[SandboxResult]:
        tests, spec = self._tests(example), self.spec

        def run(completion: str) -> SandboxResult:
            return run_tests(
                extract_code(completion),
                tests,
                wall_s=spec.wall_s,
                cpu_s=spec.cpu_s,
                memory_mb=spec.memory_mb,
                judge_s=spec.judge_s,
                memory_cgroup=spec.memory_cgroup,
            )

        # Sandbox waits release the GIL, so threads are enough to run completions side by side.
        pool = ThreadPoolExecutor(max_workers=min(spec.workers, max(1, len(completions))))
        try:
            return list(pool.map(run, completions))
        finally:
            # After an error (e.g. the reward timeout) start no new sandboxes and do not wait: the
            # running ones end within wall_s on their own threads.
            pool.shutdown(wait=False, cancel_futures=True)

    def score(self, completions: Sequence[str], example: Example) -> Scores:
        results = self._run(completions, example)
        return Scores([self._score(r) for r in results], [r.status == "crashed" for r in results])

    def explain(self, completion: str, example: Example) -> tuple[float, list[str]]:
        (result,) = self._run([completion], example)
        lines = [f"sandbox: {result.status}" + (f" ({result.detail})" if result.detail else "")]
        lines += [f"test {i + 1}: {note}" for i, note in enumerate(result.notes)]
        return self._score(result), lines
