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
* ``"high"`` if ``p <= high`` (default 0.001), or at most one calibration score is as high;
* ``"medium"`` if ``p <= medium`` (default 0.003), or at most two are;
* ``"low"`` otherwise (flagged by the detector's threshold, but less surprising).

A feed overrides the cut-offs under ``severity:`` (``docs/feeds.md``). With the default
1 % contamination, about one flagged row in three is ``low`` on undrifted data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

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


def p_values(
    scores: np.ndarray, calibration: np.ndarray, n_calibration: int | None = None
) -> np.ndarray:
    """Conformal p-value of each score against the sorted ``calibration`` scores.

    ``n_calibration`` is the size of the original calibration set when ``calibration`` is a
    reduced set of its order statistics (the share above is scaled up accordingly).
    NaN scores get NaN.
    """
    scores = np.asarray(scores, dtype=float)
    m = calibration.size
    n = n_calibration or m
    at_least = m - np.searchsorted(calibration, scores, side="left")  # calibration >= s
    return np.where(np.isnan(scores), np.nan, _conformal_p(at_least, m, n))


def _conformal_p(at_least: np.ndarray, m: int, n: int) -> np.ndarray:
    """p-value of ``at_least`` of ``m`` calibration scores at or above a score, scaled to ``n``.

    One home for the arithmetic: :class:`ScoreLookup` must give :func:`p_values`' floats exactly.
    """
    share = at_least / m
    return (1.0 + share * n) / (n + 1.0)


class ScoreLookup:
    """Normalized score and conformal p-value of raw scores, from one binary search per row.

    Scoring used to search twice per row: ``np.interp`` over the model's normalization
    quantiles and :func:`p_values` over its calibration scores. Both are positions in sorted
    scores of the same detector, so one ``np.searchsorted`` in the sorted union of the two
    (the *knots*) finds both; everything that depends only on the knot is computed here,
    once per calibration, instead of on every call. The results equal
    ``np.interp(scores, quantiles, levels)`` and ``p_values(scores, calibration,
    n_calibration)`` exactly (``tests/core/test_model.py`` checks it on ties, extremes,
    infinities and NaN).

    Parameters
    ----------
    quantiles : array
        Non-decreasing raw-score quantiles, the ``xp`` of ``np.interp``.
    levels : array
        Finite normalized score at each quantile, the ``fp`` of ``np.interp``.
    calibration : array
        Sorted finite calibration scores (:func:`calibration_set`).
    n_calibration : int or None
        Size of the original calibration set, as in :func:`p_values`.
    """

    def __init__(
        self,
        quantiles: np.ndarray,
        levels: np.ndarray,
        calibration: np.ndarray,
        n_calibration: int | None = None,
    ) -> None:
        quantiles = np.asarray(quantiles, dtype=float)
        levels = np.asarray(levels, dtype=float)
        calibration = np.asarray(calibration, dtype=float)
        if quantiles.size < 2 or quantiles.shape != levels.shape:
            raise ValueError(
                "normalization needs at least two quantiles and a level for each, got "
                f"{quantiles.size} quantile(s) and {levels.size} level(s)"
            )
        if not (
            np.isfinite(quantiles).all()
            and np.isfinite(levels).all()
            and np.isfinite(calibration).all()
        ):
            raise ValueError(
                "normalization quantiles, levels and calibration scores must be finite"
            )
        if calibration.size == 0:
            raise ValueError("calibration needs at least one finite score")
        knots = np.unique(np.concatenate([calibration, quantiles]))
        self.knots = knots
        # p-value of every interval (knots[i-1], knots[i]]: the calibration scores >= s are
        # those >= knots[i]; the last interval lies above every knot
        m = calibration.size
        at_least = m - np.append(np.searchsorted(calibration, knots, side="left"), m)
        self._p = _conformal_p(at_least, m, n_calibration or m)
        # a score equal to a knot: np.interp of the knot itself
        self._at_knot = np.interp(knots, quantiles, levels)
        # a score strictly inside (knots[i-1], knots[i]) lies on one quantile segment j
        # (quantiles[j] < s < quantiles[j + 1]): np.interp's slope * (s - xp[j]) + fp[j]
        segment = np.searchsorted(quantiles, knots, side="left") - 1
        segment = np.append(segment, quantiles.size - 1)
        inner = (segment >= 0) & (segment < quantiles.size - 1)
        j = np.where(inner, segment, 0)
        with np.errstate(
            divide="ignore", invalid="ignore"
        ):  # tied quantiles: never an inner segment
            slopes = (levels[1:] - levels[:-1]) / (quantiles[1:] - quantiles[:-1])
        self._slope = np.where(inner, slopes[np.minimum(j, quantiles.size - 2)], 0.0)
        self._anchor = np.where(inner, quantiles[j], 0.0)
        # below the first quantile np.interp gives levels[0], above the last levels[-1]
        self._offset = np.where(inner, levels[j], np.where(segment < 0, levels[0], levels[-1]))

    def lookup(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(normalized, p)`` of raw ``scores``; NaN scores get NaN in both."""
        scores = np.asarray(scores, dtype=float)
        at = np.searchsorted(self.knots, scores, side="left")  # knots[at-1] < s <= knots[at]
        nearest = np.minimum(at, self.knots.size - 1)
        with np.errstate(invalid="ignore"):  # 0 * inf for infinite scores, replaced below
            between = self._slope[at] * (scores - self._anchor[at]) + self._offset[at]
        normalized = np.where(self.knots[nearest] == scores, self._at_knot[nearest], between)
        p = self._p[at]
        finite = np.isfinite(scores)
        if not finite.all():  # +-inf lie outside every segment (0 * inf is NaN); NaN stays NaN
            bad = ~finite
            normalized[bad] = np.where(np.isnan(scores[bad]), np.nan, self._offset[at[bad]])
            p[bad] = np.where(np.isnan(scores[bad]), np.nan, p[bad])
        return normalized, p


def reachable_cutoffs(
    n_calibration: int, cutoffs: SeverityCutoffs | None = None
) -> tuple[float, float, float]:
    """The ``(medium, high, critical)`` cut-offs severity applies with ``n_calibration`` scores.

    With ``n`` calibration scores the p-values are ``1/(n+1), 2/(n+1), ...``: a cut-off below
    ``1/(n+1)`` is never reached (the default critical 0.0001 needs ``n >= 9999``). So each tier
    is at least as wide as the rank it can resolve: ``critical`` = at most 0 calibration scores
    at or above the row (``p <= max(critical, 1/(n+1))``), ``high`` = at most 1 (``2/(n+1)``),
    ``medium`` = at most 2 (``3/(n+1)``). Large calibration sets keep the configured cut-offs.
    """
    cutoffs = cutoffs or SeverityCutoffs()
    rank = 1.0 / (n_calibration + 1.0)
    slack = 1 + 1e-9  # p is computed as (1 + k) / (n + 1): compare with a hair of tolerance
    critical = max(cutoffs.critical, rank * slack)
    high = max(cutoffs.high, 2 * rank * slack, critical)
    medium = max(cutoffs.medium, 3 * rank * slack, high)
    return medium, high, critical


def severity(
    p: np.ndarray, flagged: np.ndarray, n_calibration: int, cutoffs: SeverityCutoffs | None = None
) -> np.ndarray:
    """Severity label per row (see the module docstring), shape ``(n,)`` of str."""
    medium, high, critical = reachable_cutoffs(n_calibration, cutoffs)
    p = np.asarray(p, dtype=float)
    level = np.select([p <= critical, p <= high, p <= medium], [4, 3, 2], default=1)
    level = np.where(np.asarray(flagged, dtype=bool), level, 0)
    return cast("np.ndarray", np.asarray(LEVELS, dtype=object)[level])


# ------------------------------------------------------------------ alert budget
@dataclass(frozen=True)
class AlertBudget:
    """How many flagged rows of a day may become alerts (a feed's ``scoring`` budget keys).

    A detector's threshold flags every row above it, however many there are; on a day that
    drifts, that can be hundreds of pages for one incident. The budget caps the *alerts*, not the
    scores: the flagged rows are ranked by score and only the top ``budget`` stay alerts, the rest
    stay flagged (``is_anomaly``) and scored but are marked over budget (``is_alert`` false), so
    nothing is deleted and a reviewer can still find them.

    ``max_per_day``: at most this many alerts per day; ``max_rate``: at most this share of the
    day's rows (rounded up, so a day with rows gets at least one). Both set: the smaller wins.
    Neither: no budget, every flagged row is an alert. A partition shorter than a day (hourly)
    gets the per-day number prorated to its length, rounded up.
    """

    max_per_day: int | None = None
    max_rate: float | None = None

    def __post_init__(self) -> None:
        if self.max_per_day is not None and self.max_per_day < 0:
            raise ValueError(f"max_alerts_per_day must be >= 0, got {self.max_per_day}")
        if self.max_rate is not None and not 0.0 < self.max_rate <= 1.0:
            raise ValueError(f"max_alert_rate must be in (0, 1], got {self.max_rate}")

    @property
    def active(self) -> bool:
        return self.max_per_day is not None or self.max_rate is not None

    def limit(self, rows: int, days: float = 1.0) -> int | None:
        """Alerts allowed for a partition of ``rows`` rows spanning ``days`` days (None: unlimited)."""
        limits = []
        if self.max_per_day is not None:
            limits.append(int(np.ceil(self.max_per_day * days - 1e-9)))
        if self.max_rate is not None:
            limits.append(int(np.ceil(self.max_rate * rows - 1e-9)))
        return min(limits) if limits else None


def within_budget(scores: np.ndarray, flagged: np.ndarray, limit: int | None) -> np.ndarray:
    """Which flagged rows stay alerts under a budget of ``limit`` alerts (None: all of them).

    The ``limit`` highest-scoring flagged rows; ties at the cut are broken by row order (the
    earlier row wins), so a partition never gets more than ``limit`` alerts.
    """
    flagged = np.asarray(flagged, dtype=bool)
    if limit is None or int(flagged.sum()) <= limit:
        return flagged.copy()
    scores = np.asarray(scores, dtype=float)
    idx = np.flatnonzero(flagged)
    # stable sort of -score: equal scores keep row order
    order = np.argsort(-scores[idx], kind="stable")
    alerts = np.zeros(len(flagged), dtype=bool)
    alerts[idx[order[:limit]]] = True
    return alerts


def budget_metadata(flagged: np.ndarray, alerts: np.ndarray, limit: int | None) -> dict[str, float]:
    """What a scored partition records about its budget (numbers, charted per day).

    ``alerts``: rows that are alerts; ``alerts_over_budget``: flagged rows the budget turned
    away; ``alert_budget``: the partition's limit (-1: no budget); ``alert_budget_used``: alerts /
    budget (0 without a budget; 1.0 = the budget was spent, and then some rows may be over it).
    """
    n_flagged, n_alerts = int(np.sum(flagged)), int(np.sum(alerts))
    used = 0.0 if limit is None else (n_alerts / limit if limit > 0 else float(n_flagged > 0))
    return {
        "alerts": n_alerts,
        "alerts_over_budget": n_flagged - n_alerts,
        "alert_budget": -1 if limit is None else int(limit),
        "alert_budget_used": float(used),
    }
