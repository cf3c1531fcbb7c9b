"""The NAB scoring rule: rewards early detections in windows, charges false alarms and misses,
and reproduces the published null detector's raw scores on the shared NAB files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.evaluation import nab

NAB = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "timeseries" / "nab"


def detect(n: int, rows: list[int]) -> np.ndarray:
    d = np.zeros(n, dtype=bool)
    d[rows] = True
    return d


def test_detecting_a_window_at_its_start_earns_the_tp_weight_and_later_less():
    windows = [(500, 599)]
    first = nab.score_file(detect(1000, [500]), windows)
    late = nab.score_file(detect(1000, [590]), windows)
    both = nab.score_file(detect(1000, [590, 500]), windows)
    assert first.score == pytest.approx(1.0) and first.detected_windows == 1
    assert 0 < late.score < first.score
    assert both.score == pytest.approx(
        first.score
    )  # only the earliest detection in a window counts


def test_misses_and_false_alarms_cost_their_weights():
    windows = [(500, 599)]
    assert nab.score_file(detect(1000, []), windows).score == pytest.approx(-1.0)
    # before any window: the full fp weight; just after a window: almost nothing; far after: the full weight
    early = nab.score_file(detect(1000, [300, 500]), windows)
    assert early.score == pytest.approx(1.0 - 0.11) and early.false_positives == 1
    just_after = nab.score_file(detect(1000, [500, 601]), windows).score
    far_after = nab.score_file(detect(1000, [500, 999]), windows).score
    assert 1.0 - 0.11 < far_after + 1e-12 <= just_after < 1.0 + 1e-12


def test_the_probationary_period_is_not_scored():
    assert nab.probation_rows(1000) == 150 and nab.probation_rows(100_000) == 750
    windows = [
        (10, 20),
        (500, 599),
    ]  # the first window lies inside the probation: it does not count
    result = nab.score_file(detect(1000, [15, 100]), windows)
    assert (
        result.windows == 1 and result.false_positives == 0 and result.score == pytest.approx(-1.0)
    )


def test_normalized_is_zero_for_null_and_100_for_perfect():
    windows = [(300, 350), (700, 760)]
    null = nab.score_file(detect(1000, []), windows)
    perfect = nab.score_file(detect(1000, [300, 700]), windows)
    assert nab.normalized([null]) == pytest.approx(0.0)
    assert nab.normalized([perfect]) == pytest.approx(100.0)


def test_window_rows_snap_to_the_series_timestamps():
    ts = pd.date_range("2026-01-01", periods=10, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
    assert nab.window_rows(ts, [["2026-01-01 00:10:00.000000", "2026-01-01 00:20:00.000000"]]) == [
        (2, 4)
    ]


@pytest.mark.skipif(not NAB.is_dir(), reason=f"shared NAB data not found at {NAB}")
def test_the_published_null_scores_are_reproduced_on_every_shared_file():
    windows = json.loads((NAB / "combined_windows.json").read_text())
    published = pd.read_csv(NAB / "published_scores" / "null_standard_scores.csv").dropna(
        subset=["File"]
    )
    checked = 0
    for row in published.itertuples():
        series = pd.read_csv(NAB / row.File)
        result = nab.score_file(
            np.zeros(len(series), dtype=bool),
            nab.window_rows(series["timestamp"], windows[row.File]),
        )
        assert result.score == pytest.approx(row.Score), row.File
        checked += 1
    assert checked == len(windows) == 51
