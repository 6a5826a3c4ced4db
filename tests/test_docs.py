"""The documentation stays true to the tree: README is a front page, links resolve, and every file
the architecture page names exists."""

from __future__ import annotations

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
