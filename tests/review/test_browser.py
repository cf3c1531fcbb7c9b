"""The review page in headless chromium, served by its own process on a real warehouse: load the
queue, confirm the first row with the keyboard, see the verdict in the table and in
``anomaly_feedback``; then reject the next one."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from pynomaly_core.warehouse import FEEDBACK_TABLE, read_partition
from tests.browser import Chromium, chromium_or_skip, until, visible_text
from tests.review.conftest import DAY, FEED, Warehouse, key
from tests.system.services import REPO, free_port

pytestmark = pytest.mark.slow


def serve(warehouse: Warehouse, log: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """``python -m pynomaly_review`` on a free port, once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pynomaly_review", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env={
            **os.environ,
            "PYNOMALY_WAREHOUSE_URL": warehouse.url,
            "PYNOMALY_REVIEW_FRAMES_DIR": str(warehouse.frames),
            **env,
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
                return response.status == 200
        except OSError:
            return process.poll() is not None

    until(answers, timeout=120)
    if process.poll() is not None:
        raise AssertionError(f"the review page did not start: {log.read_text()[-2000:]}")
    return process, url


def verdicts(warehouse: Warehouse) -> dict[str, tuple[str, str]]:
    rows = read_partition(warehouse.engine, FEEDBACK_TABLE, feed=FEED, partition_date=DAY)
    return {r.record_key: (r.verdict, r.reviewer) for r in rows.itertuples(index=False)}


def test_a_reviewer_confirms_and_rejects_rows_with_the_keyboard(
    sqlite_warehouse: Warehouse, tmp_path: Path
) -> None:
    browser = chromium_or_skip()
    process, url = serve(sqlite_warehouse, tmp_path / "review.log", PYNOMALY_REVIEWER="ana")
    page = Chromium(browser, tmp_path / "chromium")
    try:
        page.open(f"{url}/?feed={FEED}&day={DAY}&exploration=0")
        loaded = until(
            lambda: page.evaluate(
                "document.querySelectorAll('tbody.item').length > 0 && "
                "document.querySelector('tbody.item.selected') !== null && "
                "typeof htmx !== 'undefined'"
            ),
            timeout=60,
        )
        assert loaded, f"the queue did not load: {visible_text(page.html())[:2000]}"
        first = page.evaluate("document.querySelector('tbody.item.selected').dataset.record")
        assert first == key(19), "the most severe, highest-scored row comes first and is selected"

        page.press("c")
        confirmed = until(
            lambda: page.evaluate("document.getElementById('item-1').dataset.verdict"), timeout=60
        )
        assert confirmed == "confirmed", page.log_tail()
        row_text = visible_text(page.evaluate("document.getElementById('item-1').outerHTML"))
        assert "confirmed by ana" in row_text
        assert verdicts(sqlite_warehouse) == {key(19): ("confirmed", "ana")}

        # the selection moved on to the next row: reject it
        assert until(
            lambda: page.evaluate("document.querySelector('tbody.item.selected').id") == "item-2"
        )
        page.press("r")
        rejected = until(
            lambda: page.evaluate("document.getElementById('item-2').dataset.verdict"), timeout=60
        )
        assert rejected == "rejected"
        assert verdicts(sqlite_warehouse) == {
            key(19): ("confirmed", "ana"),
            key(77): ("rejected", "ana"),
        }
        # a reload reads the verdicts back from the warehouse
        page.open(f"{url}/?feed={FEED}&day={DAY}&verdict=rejected")
        text = until(
            lambda: "rejected by ana" in visible_text(page.html()) and visible_text(page.html()),
            timeout=60,
        )
        assert text and key(77) in text and key(19) not in text
        png = page.screenshot()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        page.close()
        process.terminate()
        process.wait(timeout=30)
    assert pd.notna(
        read_partition(sqlite_warehouse.engine, FEEDBACK_TABLE, feed=FEED, partition_date=DAY)[
            "reviewed_at"
        ]
    ).all()
