"""The bad-input corpus (tests/bad_inputs/): every malformed file makes `spectrum-rl train` exit 2
with one line naming the file and the field, no traceback, and nothing written. Plus a property
test: mutated valid configs never make validation raise anything but a clean ConfigError.

tests/bad_inputs/README.md lists each case with the message it gets; regenerate it with
``python -m tests.test_bad_inputs > tests/bad_inputs/README.md``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spectrum_rl.cli import main
from spectrum_rl.config import load_config, locate_error
from spectrum_rl.domains import build_domains
from spectrum_rl.errors import ConfigError
from tests.conftest import ROOT

CORPUS = ROOT / "tests" / "bad_inputs"
CASES = sorted(CORPUS.glob("*.yaml"))


def header(path: Path) -> dict[str, str]:
    """The case's `# what:` and `# field:` comment lines."""
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()[:2]
    return dict(line[2:].split(": ", 1) for line in lines)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts)


def run_case(path: Path, workdir: Path) -> tuple[int, str]:
    """`spectrum-rl train <case>` from ``workdir`` (where relative output folders would go)."""
    err = io.StringIO()
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with contextlib.redirect_stderr(err):
            code = main(["train", str(path)])
    finally:
        os.chdir(cwd)
    return code, err.getvalue()


def shown(message: str) -> str:
    """The message as README shows it: corpus paths relative to the repository."""
    return message.replace(str(CORPUS), "tests/bad_inputs")


def test_the_corpus_has_at_least_40_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_input_exits_2_with_one_line_naming_file_and_field(path, tmp_path):
    before = listing(CORPUS)
    code, err = run_case(path, tmp_path)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {path}"), lines[0]
    field = header(path)["field"]
    if field != "-":
        assert re.search(rf"(^|[: ]){re.escape(field)}(:| |$)", lines[0].split(f"{path}", 1)[1]), (field, lines[0])
    assert listing(tmp_path) == [] and listing(CORPUS) == before  # nothing written
    assert not Path("/proc/spectrum-rl-run").exists()


def readme() -> str:
    rows = []
    for path in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            _, err = run_case(path, Path(tmp))
        rows.append(f"| `{path.name}` | {header(path)['what']} | `{shown(err.strip())}` |")
    return (
        "# Bad-input corpus\n\n"
        "Each file here is a malformed input to `spectrum-rl train`. Each one makes it exit with code 2 and one\n"
        "line on stderr that names the file and the field, with no traceback and nothing written\n"
        "(`tests/test_bad_inputs.py`). The files in `data/` are the broken data and reward files that the cases\n"
        "point at. Regenerate this table with `python -m tests.test_bad_inputs > tests/bad_inputs/README.md`.\n\n"
        f"{len(CASES)} cases:\n\n| case | what is wrong | message |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def test_readme_lists_every_case_with_its_message():
    text = (CORPUS / "README.md").read_text()
    expected = readme()
    assert text == expected, (
        "tests/bad_inputs/README.md is stale: python -m tests.test_bad_inputs > tests/bad_inputs/README.md"
    )


# ---- property test: mutated valid configs ------------------------------------------------------
VALID = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(-3, 3), max_size=2),
)


def _paths(node, prefix=()):
    """Every (path, value) in a nested dict/list."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


ALL_PATHS = [p for p, _ in _paths(VALID) if p]


@st.composite
def mutated(draw):
    config = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = config
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["replace", "delete", "add_key"]))
            if action == "replace":
                parent[path[-1]] = draw(JUNK)
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=10))] = draw(JUNK)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this path
    return config


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=mutated())
def test_validation_of_mutated_configs_raises_only_config_errors(config, tmp_path):
    path = tmp_path / "mutated.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        loaded = load_config(path)
        build_domains(loaded, ROOT / "configs")
    except ConfigError as err:
        message = str(locate_error(err, path))
        assert "\n" not in message.strip() and message.startswith(str(path)), message


if __name__ == "__main__":
    print(readme(), end="")
