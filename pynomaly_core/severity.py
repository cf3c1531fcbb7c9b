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
