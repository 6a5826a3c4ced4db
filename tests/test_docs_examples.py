"""Every Python example in the docs runs: the ```python blocks of each page, in order, as
one script, from a folder that holds the repository's configs/; and they use only public names."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import spectrum_rl

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
PUBLIC_MODULES = {"spectrum_rl", "spectrum_rl.integrations.trl"}


def examples(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)


PAGES_WITH_EXAMPLES = [p for p in PAGES if examples(p)]


def test_the_docs_have_examples():
    names = {p.name for p in PAGES_WITH_EXAMPLES}
    assert {"api.md", "scheduler.md"} <= names, names


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda p: p.name)
def test_examples_use_only_public_names(page):
    for block in examples(page):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Import):
                modules = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [(node.module, a.name) for a in node.names]
            else:
                continue
            for module, name in modules:
                if not module.startswith("spectrum_rl"):
                    continue
                assert module in PUBLIC_MODULES, f"{page.name}: imports internal module {module}"
                if module == "spectrum_rl" and name is not None:
                    assert name in spectrum_rl.__all__, f"{page.name}: imports {name}, not in spectrum_rl.__all__"
        for attribute in re.findall(r"\bsrl\.(\w+)", block):
            assert attribute in spectrum_rl.__all__, f"{page.name}: srl.{attribute} is not public"


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda p: p.name)
def test_examples_run(page, tmp_path, builtin_tiny):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    script = tmp_path / "examples.py"
    script.write_text("\n\n".join(examples(page)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{page.name}'s examples failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
