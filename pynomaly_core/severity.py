"""Severity of an anomaly from a calibrated score: an empirical (conformal) p-value.

A fitted model keeps a sorted *calibration set* of scores: the scores it gave the rows
of its training window (candidates trained by the lifecycle add their out-of-sample
scores on the held-out slice). For a new score ``s``

    p = (1 + #{calibration scores >= s}) / (n + 1)

is the share of calibration rows at least as anomalous, i.e. how surprising the row is
under the data the model was calibrated on; with exchangeable rows it is a valid
conformal p-value. Rows the detector does not flag get ``"none"``; a flagged row gets

* ``"critical"`` if ``p <= critical`` (default 0.0001), or if it scores above every
  calibration score (the smallest p-value ``1/(n+1)`` the calibration set can give);
* ``"high"`` if ``p <= high`` (default 0.001);
* ``"medium"`` if ``p <= medium`` (default 0.003);
* ``"low"`` otherwise (flagged by the detector's threshold, but less surprising).

A feed overrides the cut-offs under ``severity:`` (``docs/feeds.md``). With the default
1 % contamination, about one flagged row in three is ``low`` on undrifted data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVELS = ("none", "low", "medium", "high", "critical")
#: calibration sets above this size are reduced to evenly spaced order statistics
MAX_CALIBRATION = 100_000


@dataclass(frozen=True)
class SeverityCutoffs:
    """p-value cut-offs: a flagged row is at least ``medium`` when ``p <= medium``, and so on."""

    medium: float = 0.003
    high: float = 0.001
    critical: float = 0.0001

    def __post_init__(self) -> None:
        if not 0.0 < self.critical <= self.high <= self.medium < 1.0:
            raise ValueError(
                "severity cut-offs must satisfy 0 < critical <= high <= medium < 1, got "
                f"medium={self.medium}, high={self.high}, critical={self.critical}"
            )


def calibration_set(scores: np.ndarray) -> np.ndarray:
    """Sorted finite calibration scores, reduced to ``MAX_CALIBRATION`` order statistics."""
    scores = np.asarray(scores, dtype=float)
    finite = np.sort(scores[np.isfinite(scores)])
    if finite.size == 0:
        raise ValueError("calibration needs at least one finite score")
    if finite.size > MAX_CALIBRATION:
        # keep the extremes exactly; p-values move by at most 1/MAX_CALIBRATION
        idx = np.unique(np.linspace(0, finite.size - 1, MAX_CALIBRATION).round().astype(int))
        finite = finite[idx]
    return finite


def p_values(scores: np.ndarray, calibration: np.ndarray, n_calibration: int | None = None) -> np.ndarray:
    """Conformal p-value of each score against the sorted ``calibration`` scores.

    ``n_calibration`` is the size of the original calibration set when ``calibration`` is a
    reduced set of its order statistics (the share above is scaled up accordingly).
    NaN scores get NaN.
    """
    scores = np.asarray(scores, dtype=float)
    m = calibration.size
    n = n_calibration or m
    at_least = m - np.searchsorted(calibration, scores, side="left")  # calibration >= s
    share = at_least / m
    p = (1.0 + share * n) / (n + 1.0)
    return np.where(np.isnan(scores), np.nan, p)


def severity(
    p: np.ndarray, flagged: np.ndarray, n_calibration: int, cutoffs: SeverityCutoffs | None = None
) -> np.ndarray:
    """Severity label per row (see the module docstring), shape ``(n,)`` of str."""
    cutoffs = cutoffs or SeverityCutoffs()
    p = np.asarray(p, dtype=float)
    floor = 1.0 / (n_calibration + 1.0)
    level = np.select(
        [p <= max(cutoffs.critical, floor * (1 + 1e-9)), p <= cutoffs.high, p <= cutoffs.medium],
        [4, 3, 2],
        default=1,
    )
    level = np.where(np.asarray(flagged, dtype=bool), level, 0)
    return np.asarray(LEVELS, dtype=object)[level]
