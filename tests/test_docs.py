"""The documentation stays true to the tree: README is a front page, links resolve, and every file
the architecture page names exists."""

from __future__ import annotations

import json
import re

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_bytes()) <= 15_000


def test_relative_links_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_every_file_the_architecture_page_names_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:[\w.]+/)*[\w.]+\.(?:py|md|toml))`", text))
    assert len(named) > 20
    for path in named:
        exists = (ROOT / path).exists() or (ROOT / "spectrum_rl" / path).exists()
        assert exists, f"docs/architecture.md names {path}, which does not exist"


RESULT_PAGES = [ROOT / "README.md", ROOT / "docs" / "study.md"]


def test_study_numbers_in_the_docs_come_from_the_committed_summaries():
    """Every generated block (README.md, docs/study.md) equals what the committed summary.json
    renders (`python -m spectrum_rl.study.docs_data README.md docs/study.md` rewrites them)."""
    from spectrum_rl.study.docs_data import BLOCK, refresh

    for page in RESULT_PAGES:
        assert BLOCK.search(page.read_text()), f"{page.name} has no generated study block"
        assert refresh(page, ROOT, check=True) == [], "stale: run python -m spectrum_rl.study.docs_data"


def test_no_study_number_is_written_by_hand():
    """Outside the generated blocks, the results sections hold no score-like number (0.xx, +0.xx),
    so a number that could disagree with the data cannot be typed in."""
    from spectrum_rl.study.docs_data import BLOCK

    for page in RESULT_PAGES:
        text = BLOCK.sub("", page.read_text())
        if page.name == "README.md":  # its results section only
            text = text.split("## Latest results", 1)[1].split("\n## ", 1)[0]
        else:
            text = text.split("## Latest measured results", 1)[1]
        stray = re.findall(r"[+\-−]?\b0\.\d{2,}\b", text)
        assert not stray, f"{page.name}: numbers typed outside the generated blocks: {stray[:5]}"


def test_a_changed_number_makes_a_block_stale(tmp_path):
    from spectrum_rl.study.docs_data import refresh

    summary = (ROOT / "docs" / "study" / "summary.json").read_text()
    (tmp_path / "summary.json").write_text(summary)
    page = tmp_path / "page.md"
    page.write_text("<!-- data: summary.json arms -->\n<!-- /data -->\n")
    assert refresh(page, tmp_path) == [f"{page}: summary.json arms"]  # filled in
    assert refresh(page, tmp_path, check=True) == []
    first_arm = next(iter(json.loads(summary)["arms"]))
    page.write_text(page.read_text().replace(f"| `{first_arm}` | ", f"| `{first_arm}` | 9", 1))
    assert refresh(page, tmp_path, check=True) == [f"{page}: summary.json arms"]


def test_scheduler_costs_in_the_docs_come_from_the_benchmarks():
    """docs/scheduler.md quotes the scheduler's cost only in a block generated from the latest run
    that benchmarks/README.md records; no timing is typed by hand beside it."""
    from spectrum_rl.study.docs_data import BLOCK, refresh

    page = ROOT / "docs" / "scheduler.md"
    assert "benchmarks/README.md#bench_scheduler.py latest" in page.read_text()
    assert refresh(page, ROOT, check=True) == [], "stale: run python -m spectrum_rl.study.docs_data"
    stray = re.findall(r"\b\d+(?:\.\d+)?\s?ms\b|\d% of a", BLOCK.sub("", page.read_text()))
    assert not stray, f"docs/scheduler.md: timings typed outside the generated block: {stray}"


def test_the_primary_comparison_is_marked_and_kept_out_of_the_holm_family():
    from spectrum_rl.study.docs_data import render

    summary = json.loads((ROOT / "docs" / "study_blend" / "summary.json").read_text())
    primary = summary["comparisons"]["primary"]["comparison"]
    table = render(summary, "comparisons")
    row = next(line for line in table.splitlines() if line.startswith(f"| `{primary}`"))
    assert "(primary)" in row and "tested alone" in row and f"`{primary}`, is tested alone" in table
    others = [line for line in table.splitlines() if line.startswith("| `") and "(primary)" not in line]
    assert len(others) == summary["comparisons"]["family_size"]
    assert render(summary, "primary").startswith(f"`{primary}` = ") and "pre-registered" in render(summary, "primary")


def test_readme_command_1s_numbers_are_its_committed_run():
    """The scores README quotes for command 1 are those of docs/runs/readme_command_1_eval.jsonl
    (that run's eval.jsonl): its held-out mean and each domain it names, start -> end."""
    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("## Set up and run") : readme.index("```bash")]
    evals = [json.loads(line) for line in (ROOT / "docs/runs/readme_command_1_eval.jsonl").read_text().splitlines()]
    start, end = evals[0], evals[-1]
    quoted = re.findall(r"(held-out mean|`(\w+)`[^;]*?) (\d\.\d+) -> (\d\.\d+)", " ".join(paragraph.split()))
    assert len(quoted) >= 4
    for said, domain, a, b in quoted:
        key = f"eval/{domain}" if domain else "eval/mean"
        digits = len(a.split(".")[1])
        assert (a, b) == (f"{start[key]:.{digits}f}", f"{end[key]:.{digits}f}"), said
