"""Every relative link and image in the README and docs/ points to a file of the repository.

The figures in docs/results.md come from run folders that are not kept; a figure referenced but never
committed cannot be regenerated later, so a missing one must fail here, not in a reader's browser.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_targets(markdown: str) -> list[str]:
    """Link targets that name a file of the repository (no URL, no in-page anchor)."""
    targets = []
    for target in LINK.findall(markdown):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_the_link_pattern_finds_images_and_links_but_not_urls() -> None:
    text = "![a](results/x.png) see [b](../README.md#top), [c](https://x.org/y) and [d](#anchor)"
    assert relative_targets(text) == ["results/x.png", "../README.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    missing = [t for t in relative_targets(doc.read_text(encoding="utf-8")) if not (doc.parent / t).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} links to files that do not exist: {missing}"
