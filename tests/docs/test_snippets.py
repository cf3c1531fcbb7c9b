"""Every YAML snippet in the README and docs/ is valid, and every feed snippet is a valid feed.

A snippet that shows part of a feed (``detector:``, ``monitoring:``) is validated inside a
minimal feed, so a key renamed in the code breaks this test, not a user's first feed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from pynomaly_core.data.config import parse_feed

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MINIMAL_FEED = {
    "name": "snippet",
    "source": {"kind": "csv", "path": "landing/{date}.csv"},
    "event_time": "ts",
    "record_key": "id",
    "features": [{"name": "x", "type": "float"}],
    "partitioning": {"start_date": "2026-01-01"},
}


def yaml_snippets() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for i, match in enumerate(re.finditer(r"```ya?ml\n(.*?)```", doc.read_text(), re.DOTALL)):
            out.append((f"{doc.relative_to(ROOT)}#{i}", match.group(1)))
    return out


SNIPPETS = yaml_snippets()

#: marks the ```bash block after it as a long-running service (a daemon), started in the background
SERVICE_MARK = "<!-- snippet: service -->"


class ShellSnippet(NamedTuple):
    where: str  # docs/x.md#2: the doc and the block's index among its shell blocks
    text: str
    service: bool


def shell_snippets(doc: Path) -> list[ShellSnippet]:
    """The ```bash / ```sh blocks of ``doc``, in order (tests/docs/test_run_a_feed.py runs them)."""
    block = rf"({re.escape(SERVICE_MARK)}\n)?```(?:bash|sh)\n(.*?)```"
    fences = re.finditer(block, doc.read_text(), re.DOTALL)
    return [
        ShellSnippet(f"{doc.relative_to(ROOT)}#{i}", m.group(2), m.group(1) is not None)
        for i, m in enumerate(fences)
    ]


def test_the_docs_have_yaml_snippets():
    # the README's feed example and docs/feeds.md's full reference at least
    names = [name for name, _ in SNIPPETS]
    assert any(n.startswith("README.md") for n in names) and any(
        n.startswith("docs/feeds.md") for n in names
    )


@pytest.mark.parametrize(("where", "text"), SNIPPETS, ids=[name for name, _ in SNIPPETS])
def test_yaml_snippet_is_valid(where, text):
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict), f"{where}: expected a mapping"
    feed = doc if {"name", "source"} <= set(doc) else {**MINIMAL_FEED, **doc}
    parse_feed(feed, source=where)
