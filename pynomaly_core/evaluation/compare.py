"""Compare two detectors' scores on labelled rows: metrics and a paired bootstrap.

:func:`paired_bootstrap` answers "is model B better than model A on these labels, and
by how much?" with a stratified paired bootstrap: each resample draws the positives
and the negatives separately with replacement (so every resample keeps the class
balance) and evaluates *both* models on the same resampled rows, so the difference
is measured on identical data every time.

The bootstrap is vectorized: a resample is a vector of row multiplicities, and
ROC-AUC and average precision are computed for a whole block of resamples at once
from cumulative sums of those multiplicities along each model's score order (sorted
once), evaluated only at the positives' distinct scores. Ties are handled as
scikit-learn does (one threshold per distinct score). About 0.3 s for 20,000 rows and
1,000 resamples on one core.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = np.r_[np.ones(50), np.zeros(950)].astype(int)
>>> weak, strong = rng.normal(size=1000) + y * 0.5, rng.normal(size=1000) + y * 2.0
>>> paired_bootstrap(y, weak, strong, n_boot=500).b_better
True
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np

METRICS = ("average_precision", "roc_auc")

#: resamples evaluated per block (bounds the memory: block x rows x 8 bytes per array)
_BLOCK_CELLS = 2_000_000


@dataclass
class ComparisonResult:
    """Outcome of :func:`paired_bootstrap` (``delta = score_b - score_a``)."""

    metric: str
    score_a: float
    score_b: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    n_positive: int
    confidence: float

    @property
    def b_better(self) -> bool:
        """B is better than A: the confidence interval of the difference lies above 0."""
        return bool(self.ci_low > 0)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["b_better"] = self.b_better
        return out


# --------------------------------------------------------------------------- validation
def _labels(y_true: Any) -> np.ndarray:
    y = np.asarray(y_true).ravel()
    if y.size == 0:
        raise ValueError("y_true is empty.")
    try:
        values = set(np.unique(y).tolist())
    except TypeError as exc:
        raise ValueError(f"y_true must hold 0/1 labels (1 = anomaly): {exc}.") from exc
    if not values <= {0, 1}:  # True/False and 0.0/1.0 compare equal to 0/1
        raise ValueError(
            f"y_true must hold 0/1 labels (1 = anomaly), found {sorted(values, key=str)[:5]}."
        )
    y = y.astype(np.int64)
    if y.min() == y.max():
        raise ValueError(
            f"y_true has only one class ({int(y[0])}: {y.size} rows); ROC-AUC and average "
            "precision need both anomalies (1) and normal rows (0)."
        )
    return y


def _scores(scores: Any, n: int, name: str) -> np.ndarray:
    try:
        s = np.asarray(scores, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric ({exc}).") from exc
    if s.shape[0] != n:
        raise ValueError(f"{name} has {s.shape[0]} values but y_true has {n} labels.")
    bad = int((~np.isfinite(s)).sum())
    if bad:
        raise ValueError(
            f"{name} holds {bad} NaN or infinite value(s); every score must be finite."
        )
    return s


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}.")
    return metric


# --------------------------------------------------------------------------- kernels
class _Layout:
    """One model's score order, precomputed once for any number of resamples.

    Only the positives' thresholds matter for ROC-AUC and average precision: with the
    positives grouped by distinct score (descending), each group ``g`` needs the
    weighted positives at or above it and the weighted negatives at or above /
    strictly above its score. Negatives are handled in a fixed descending order
    (``neg_order``), so a cumulative sum of their weights gives those counts.
    """

    def __init__(self, scores: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> None:
        s_pos, s_neg = scores[pos], scores[neg]
        self.pos_order = np.argsort(-s_pos, kind="mergesort")  # into pos
        sp = s_pos[self.pos_order]
        self.pos_ends = np.flatnonzero(np.r_[sp[1:] != sp[:-1], True])
        values = sp[self.pos_ends]  # distinct positive scores, descending
        self.neg_order = np.argsort(-s_neg, kind="mergesort")  # into neg
        asc = np.sort(s_neg)
        n0 = s_neg.size
        # negatives with score >= v (ge) and > v (gt), as counts from the top
        self.k_ge = n0 - np.searchsorted(asc, values, side="left")
        self.k_gt = n0 - np.searchsorted(asc, values, side="right")


def _group_metric(
    lay: _Layout, w_pos: np.ndarray, w_neg_sorted: np.ndarray, metric: str
) -> np.ndarray:
    """Metric per resample from positive weights (resamples x positives, original positive
    order) and negative weights already in ``lay.neg_order``."""
    # integer cumulative sums are several times faster than float ones
    tp = np.cumsum(w_pos[:, lay.pos_order], axis=1)[:, lay.pos_ends].astype(np.float64)
    wg = np.diff(tp, axis=1, prepend=0.0)  # weighted positives in group g
    cs = np.cumsum(w_neg_sorted, axis=1)

    def above(k: np.ndarray) -> np.ndarray:  # weighted negatives among the top k
        out = cs[:, np.maximum(k - 1, 0)].astype(np.float64)
        out[:, k == 0] = 0.0
        return out

    fp_ge = above(lay.k_ge)
    P, N = tp[:, -1], cs[:, -1].astype(np.float64)
    if metric == "roc_auc":
        fp_gt = above(lay.k_gt)
        below = N[:, None] - fp_ge
        return cast("np.ndarray", (wg * (below + 0.5 * (fp_ge - fp_gt))).sum(axis=1) / (P * N))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(wg > 0, tp / (tp + fp_ge), 0.0)
    return cast("np.ndarray", (wg * precision).sum(axis=1) / P)


def _metric(y: np.ndarray, scores: np.ndarray, metric: str) -> float:
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    lay = _Layout(scores, pos, neg)
    return float(
        _group_metric(
            lay,
            np.ones((1, pos.size), dtype=np.int64),
            np.ones((1, neg.size), dtype=np.int64),
            metric,
        )[0]
    )


def _counts(rng: np.random.Generator, b: int, m: int) -> np.ndarray:
    """Multiplicities (b, m) of ``b`` resamples of ``m`` rows drawn with replacement."""
    idx = rng.integers(0, m, size=(b, m))
    idx += (np.arange(b, dtype=np.int64) * m)[:, None]
    return np.bincount(idx.ravel(), minlength=b * m).reshape(b, m)


# --------------------------------------------------------------------------- public
def metrics(y_true: Any, scores: Any) -> dict[str, float]:
    """ROC-AUC, average precision and ``precision_at_n_true``: the precision of the top k rows with
    k = the number of true anomalies (R-precision), named so it is never mistaken for the
    monitoring's ``precision_at_<top_k>``.

    Higher scores mean "more anomalous"; ``y_true`` is 1 for an anomaly.
    """
    y = _labels(y_true)
    s = _scores(scores, y.size, "scores")
    k = int(y.sum())
    top = np.argsort(-s, kind="mergesort")[:k]
    return {
        "roc_auc": _metric(y, s, "roc_auc"),
        "average_precision": _metric(y, s, "average_precision"),
        "precision_at_n_true": float(y[top].mean()),
    }


def paired_bootstrap(
    y_true: Any,
    scores_a: Any,
    scores_b: Any,
    *,
    metric: str = "average_precision",
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: int | None = 0,
) -> ComparisonResult:
    """Stratified paired bootstrap of ``metric(B) - metric(A)`` on the same labelled rows.

    Parameters
    ----------
    y_true : array of 0/1, shape (n,)
        1 = anomaly. Both classes must be present.
    scores_a, scores_b : arrays of shape (n,)
        The two models' scores of the same rows, higher = more anomalous; finite.
    metric : {"average_precision", "roc_auc"}
    n_boot : int
        Number of resamples; each draws the positives and the negatives separately with
        replacement, the same rows for both models.
    confidence : float in (0, 1)
        Coverage of the two-sided percentile interval ``[ci_low, ci_high]``.
    random_state : int or None

    Returns
    -------
    ComparisonResult
        ``p_value`` is the one-sided bootstrap p-value of H0 "B is not better than A"
        (the share of resamples with ``delta <= 0``, with the usual +1 correction);
        ``b_better`` is true when ``ci_low > 0``.
    """
    metric = _check_metric(metric)
    y = _labels(y_true)
    a = _scores(scores_a, y.size, "scores_a")
    b = _scores(scores_b, y.size, "scores_b")
    if not isinstance(n_boot, numbers.Integral) or isinstance(n_boot, bool) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}.")
    if not isinstance(confidence, numbers.Real) or not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
    rng = np.random.default_rng(random_state)

    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n = y.size
    lay_a, lay_b = _Layout(a, pos, neg), _Layout(b, pos, neg)
    # negative weights are drawn directly in A's order (the draws are exchangeable);
    # B's order is A's order permuted by a_to_b
    where_in_a = np.empty(neg.size, dtype=np.int64)
    where_in_a[lay_a.neg_order] = np.arange(neg.size)
    a_to_b = where_in_a[lay_b.neg_order]

    deltas = np.empty(n_boot)
    block = max(1, min(n_boot, _BLOCK_CELLS // max(n, 1)))
    for start in range(0, n_boot, block):
        bsz = min(block, n_boot - start)
        w_pos = _counts(rng, bsz, pos.size)
        w_neg_a = _counts(rng, bsz, neg.size)
        m_a = _group_metric(lay_a, w_pos, w_neg_a, metric)
        m_b = _group_metric(lay_b, w_pos, w_neg_a[:, a_to_b], metric)
        deltas[start : start + bsz] = m_b - m_a

    score_a, score_b = _metric(y, a, metric), _metric(y, b, metric)
    alpha = 1.0 - float(confidence)
    lo, hi = np.quantile(deltas, [alpha / 2.0, 1.0 - alpha / 2.0])
    p_value = (1.0 + float(np.sum(deltas <= 0.0))) / (n_boot + 1.0)
    return ComparisonResult(
        metric=metric,
        score_a=score_a,
        score_b=score_b,
        delta=score_b - score_a,
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=float(p_value),
        n=int(n),
        n_positive=int(pos.size),
        confidence=float(confidence),
    )
