"""The Numenta Anomaly Benchmark's scoring rule, for measuring alerts on real labelled series.

Written from the published description (Lavin & Ahmad, "Evaluating Real-time Anomaly Detection
Algorithms — the Numenta Anomaly Benchmark", 2015) and the profile weights shipped with the data:

* the first 15 % of a series (at most 750 rows) is probationary: not scored, and a window that
  lies wholly inside it does not count;
* inside a labelled window, only the *earliest* detection counts: it earns
  ``tp_weight * σ(p) / σ(-1)`` with ``σ(p) = 2 / (1 + e^{5p}) - 1`` and ``p`` the position in the
  window from -1 (its first row) to 0 (past its last), so detecting at the start earns exactly
  ``tp_weight``;
* a detection outside every window costs ``fp_weight * σ(d)``: ``d`` is the distance past the
  previous window's end in units of that window's width (a late detection of the same event costs
  little, one far away costs ``fp_weight``; one before any window costs the full ``fp_weight``);
* a window without a detection costs ``fn_weight``.

Normalized over a set of files: ``100 * (S - S_null) / (S_perfect - S_null)``, where the null
detector detects nothing and the perfect one detects each window at its first row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

PROBATION_SHARE = 0.15
PROBATION_MAX_ROWS = 750  # NAB's cap: 15 % of 5000 rows


@dataclass(frozen=True)
class Profile:
    tp_weight: float = 1.0
    fn_weight: float = 1.0
    fp_weight: float = 0.11


STANDARD = Profile()


@dataclass(frozen=True)
class FileScore:
    """The raw score of one series and the null/perfect scores it is normalized with."""

    score: float
    null: float
    perfect: float
    windows: int
    detected_windows: int
    false_positives: int


def sigma(position: float) -> float:
    """NAB's scaled sigmoid: +0.987 at -1 (a window's start), 0 at 0, -1 from 3 on."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_rows(n_rows: int) -> int:
    return int(min(math.floor(PROBATION_SHARE * n_rows), PROBATION_SHARE * 5000))


def window_rows(
    timestamps: Sequence[Any] | pd.Series, windows: Sequence[Sequence[str]]
) -> list[tuple[int, int]]:
    """``[(first_row, last_row)]`` of each labelled window (inclusive), in row positions."""
    times = pd.to_datetime(pd.Series(timestamps)).to_numpy()
    out = []
    for start, end in windows:
        first = int(np.searchsorted(times, np.datetime64(pd.Timestamp(start)), side="left"))
        last = int(np.searchsorted(times, np.datetime64(pd.Timestamp(end)), side="right")) - 1
        if last >= first:
            out.append((first, last))
    return out


def score_file(
    detections: np.ndarray, windows: list[tuple[int, int]], profile: Profile = STANDARD
) -> FileScore:
    """NAB score of boolean ``detections`` (one per row, in time order) against row ``windows``."""
    detections = np.asarray(detections, dtype=bool)
    n = len(detections)
    probation = probation_rows(n)
    counted = [(a, b) for a, b in windows if b >= probation]
    max_tp = sigma(-1.0)
    window_of = np.full(n, -1)
    for k, (a, b) in enumerate(counted):
        window_of[a : b + 1] = k
    best = np.full(len(counted), -profile.fn_weight)
    detected = np.zeros(len(counted), dtype=bool)
    fp_total, fp_count = 0.0, 0
    previous: tuple[int, int] | None = None  # end and width of the last window passed
    ends = {
        b: (b - a + 1) for a, b in windows
    }  # any window, probationary ones too, precedes a false alarm
    for i in range(n):
        k = window_of[i]
        if detections[i] and i >= probation:
            if k >= 0:
                a, b = counted[k]
                reward = sigma(-(b - i + 1) / (b - a + 1)) * profile.tp_weight / max_tp
                if not detected[k] or reward > best[k]:
                    best[k] = reward
                detected[k] = True
            else:
                if previous is None:
                    cost = -1.0
                else:
                    previous_end, previous_width = previous
                    cost = sigma(abs(previous_end - i) / float(max(previous_width - 1, 1)))
                fp_total += cost * profile.fp_weight
                fp_count += 1
        if i in ends:
            previous = (i, ends[i])
    score = float(best.sum() + fp_total)
    return FileScore(
        score=score,
        null=-profile.fn_weight * len(counted),
        perfect=profile.tp_weight * len(counted),
        windows=len(counted),
        detected_windows=int(detected.sum()),
        false_positives=fp_count,
    )


def normalized(scores: Sequence[FileScore]) -> float:
    """The NAB score of a set of files, 0 = the null detector, 100 = perfect."""
    s = sum(f.score for f in scores)
    null = sum(f.null for f in scores)
    perfect = sum(f.perfect for f in scores)
    return 100.0 * (s - null) / (perfect - null) if perfect > null else float("nan")


def normalized_raw(
    raw_scores: Sequence[float], nulls: Sequence[float], perfects: Sequence[float]
) -> float:
    """Normalize published per-file raw scores with this subset's own null and perfect scores."""
    s, null, perfect = float(np.sum(raw_scores)), float(np.sum(nulls)), float(np.sum(perfects))
    return 100.0 * (s - null) / (perfect - null) if perfect > null else float("nan")
