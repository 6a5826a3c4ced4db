"""`code_tests`: run each completion's Python code against the row's test snippets in a sandbox.

Each completion runs in its own subprocess (see :mod:`spectrum_rl.rewards.sandbox`): isolated
interpreter without site-packages, scrubbed environment, fresh temporary working directory,
rlimits on CPU, memory and file size, a network namespace where the kernel allows it, dropped
capabilities, and an audit hook that ends the run on file access outside the working directory,
process creation, sockets, ctypes and similar. It is defence in depth against a policy's mistakes
and reward hacks, not a VM: run hostile code inside a container or VM as well.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import Field

from spectrum_rl.rewards.base import RewardComponent, RewardSpec
from spectrum_rl.rewards.sandbox import SandboxResult, run_tests
from spectrum_rl.rewards.text import row_field
from spectrum_rl.tasks.base import Example

# A fenced block tagged python/py/python3 or untagged; the lazy body stops at the next fence.
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(completion: str) -> str:
    """The last fenced ```python (or untagged ```) block of ``completion``, else the whole text."""
    blocks = _FENCE.findall(completion)
    return blocks[-1] if blocks else completion


class CodeTestsSpec(RewardSpec):
    """`code_tests`: fraction of the row's test snippets that the completion's Python code passes, run in a sandbox.

    The code is the last fenced ```python (or untagged ```) block, else the whole completion. Each
    test (e.g. `assert f(2) == 4`) runs after the code in the same namespace and passes when it does
    not raise. Timeouts, memory exhaustion, crashes and blocked operations (files outside the
    sandbox's temporary directory, processes, network, ctypes) score 0.
    """

    type: Literal["code_tests"] = "code_tests"
    tests_field: str = Field(
        "tests",
        description="Row field holding the tests: a list of Python snippets, or one string with one snippet per line.",
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
    memory_mb: int = Field(512, ge=32, description="Address-space limit in MiB for one completion.")
    workers: int = Field(
        2,
        ge=1,
        description="Completions of a group run concurrently in this many "
        "subprocesses. A group takes up to ceil(group size / workers) * wall_s seconds: "
        "keep `timeout_s` above that.",
    )

    def build(self, base_dir: Path) -> RewardComponent:
        return CodeTestsReward(self)


class CodeTestsReward(RewardComponent):
    spec: CodeTestsSpec

    def _tests(self, example: Example) -> list[str]:
        field = self.spec.tests_field
        value = row_field(example, field)
        if isinstance(value, str):
            value = value.splitlines()
        elif not isinstance(value, (list, tuple)):
            raise ValueError(
                f"row field '{field}' must be a list of test snippets or a string; found {type(value).__name__}"
            )
        tests = [str(t) for t in value if str(t).strip()]
        if not tests:
            raise ValueError(f"row field '{field}' holds no tests")
        return tests

    def _score(self, result: SandboxResult) -> float:
        if result.status != "ok":
            return 0.0
        if self.spec.partial:
            return result.passed / result.total
        return float(result.passed == result.total)

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        tests = self._tests(example)
        spec = self.spec

        def run(completion: str) -> SandboxResult:
            return run_tests(
                extract_code(completion), tests, wall_s=spec.wall_s, cpu_s=spec.cpu_s, memory_mb=spec.memory_mb
            )

        # Subprocess waits release the GIL, so threads are enough to run completions side by side.
        pool = ThreadPoolExecutor(max_workers=min(spec.workers, max(1, len(completions))))
        try:
            return [self._score(r) for r in pool.map(run, completions)]
        finally:
            # After an error (e.g. the reward timeout) start no new sandboxes and do not wait: the
            # running ones end within wall_s on their own threads.
            pool.shutdown(wait=False, cancel_futures=True)
