"""Label-free evidence for choosing among candidate detectors, and the selection rule.

Without labels, two measurable signals say something about how well a detector will
rank real anomalies:

* **synthetic detection** — how well the candidate separates synthetic anomalies
  (:func:`~pynomaly_core.evaluation.synthetic.inject_anomalies`) from held-out real
  rows treated as normal: ``synthetic_auc`` (ROC-AUC) and ``synthetic_ap`` (average
  precision), plus ``auc_<kind>`` per anomaly type when the kinds are given;
* **consensus** — the Spearman correlation of the candidate's held-out scores with
  the mean rank of the *other* candidates' scores of the same rows (leave-one-out,
  so a candidate does not vote for itself).

How the scores must be produced (what :class:`~pynomaly_core.detectors.auto.AutoDetector`
does, and what an integration computing the scores itself should do): split the
training rows into a fit part and a holdout; draw synthetic anomalies relative to
the fit part; fit every candidate on the fit part **plus a small share (5 %) of those
synthetic rows**, so the candidates train on contaminated data as they do in real
use; score the holdout rows and the *other* synthetic rows with each candidate.

The rule (``selection_score``) is the sum of the two signals, each standardized
across the candidates (z-score)::

    selection_score = z(synthetic_auc) + z(consensus)

and :func:`select` picks the candidate with the highest score (the earliest listed
one on ties).

Why this rule. It was decided on the "dev" half of the ADBench datasets (even file
numbers: 17 datasets x seeds 1-3) and only then run on the other 12:

* per dataset, the Spearman correlation between a candidate's evidence and its test
  ROC-AUC averaged 0.38 for ``consensus``; for ``synthetic_auc`` it was 0.02 when the
  candidates were fitted on clean data and 0.24 when 5 % synthetic anomalies were
  mixed into their training data (a 15-detector pool; hence that step);
* the two signals fail on different datasets (consensus misses the local anomalies
  of letter and vowels, synthetic detection misses http and pendigits), so their sum
  selects better than either. ``benchmarks/selection.py`` (default portfolio, ADBench
  protocol) measured mean test ROC-AUC on the dev half: sum 0.872, consensus alone
  0.851, synthetic ROC-AUC alone 0.829, always IForest 0.851; on the held-out half:
  0.792, 0.784, 0.790 and 0.788;
* averaging the two best candidates (:func:`select_top` with ``k=2``, ``AutoDetector``
  ``combine=2``) measured the same as picking one on the dev half (0.870 vs 0.871 in
  the exploratory study), so the default picks one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np
import pandas as pd

#: evidence columns that enter ``selection_score``, with their weights
DEFAULT_WEIGHTS: dict[str, float] = {"synthetic_auc": 1.0, "consensus": 1.0}


def _as_scores(scores: Mapping[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError(f"{what} must be a non-empty dict {{candidate name: scores}}.")
    out = {}
    for name, s in scores.items():
        arr = np.asarray(s, dtype=np.float64).ravel()
        if arr.size == 0:
            raise ValueError(f"{what}[{name!r}] is empty.")
        bad = int((~np.isfinite(arr)).sum())
        if bad:
            raise ValueError(f"{what}[{name!r}] holds {bad} NaN or infinite value(s).")
        out[str(name)] = arr
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return cast("np.ndarray", rankdata(x))


def _auc(neg: np.ndarray, pos: np.ndarray) -> float:
    """ROC-AUC of ``pos`` (label 1) against ``neg`` (label 0), half credit for ties."""
    r = _ranks(np.r_[neg, pos])
    n0, n1 = neg.size, pos.size
    return float((r[n0:].sum() - n1 * (n1 + 1) / 2.0) / (n0 * n1))


def _ap(neg: np.ndarray, pos: np.ndarray) -> float:
    from pynomaly_core.evaluation.compare import _metric

    y = np.r_[np.zeros(neg.size, dtype=np.int64), np.ones(pos.size, dtype=np.int64)]
    return _metric(y, np.r_[neg, pos], "average_precision")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two rank vectors; 0 when either is constant."""
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0:
        return 0.0
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def _zscore(x: pd.Series) -> pd.Series:
    x = x.astype(float)
    sd = x.std(ddof=0)
    if not np.isfinite(sd) or sd == 0:
        return x * 0.0
    return (x - x.mean()) / sd


def label_free_evidence(
    scores_holdout: dict[str, np.ndarray],
    scores_synthetic: dict[str, np.ndarray],
    *,
    synthetic_kinds: Sequence[str] | np.ndarray | None = None,
    weights: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row of label-free evidence per candidate (index: candidate name, input order).

    Parameters
    ----------
    scores_holdout : dict name -> array (n_holdout,)
        Each candidate's scores of the same held-out real rows (higher = more anomalous).
    scores_synthetic : dict name -> array (n_synthetic,)
        Each candidate's scores of the same synthetic anomalies (not the ones injected
        into its training data); same keys as ``scores_holdout``.
    synthetic_kinds : sequence of str, optional
        The kind of each synthetic row; adds ``auc_<kind>`` columns.
    weights : dict column -> weight, optional
        Evidence columns summed (after a z-score across candidates) into
        ``selection_score``; default :data:`DEFAULT_WEIGHTS`.

    Returns
    -------
    DataFrame with columns ``synthetic_auc``, ``synthetic_ap``, ``auc_<kind>``...,
    ``consensus``, ``selection_score`` and ``rank`` (1 = chosen by :func:`select`).
    """
    hold = _as_scores(scores_holdout, "scores_holdout")
    syn = _as_scores(scores_synthetic, "scores_synthetic")
    if set(hold) != set(syn):
        raise ValueError(
            f"scores_holdout and scores_synthetic name different candidates: "
            f"{sorted(set(hold) ^ set(syn))}."
        )
    names = list(hold)
    n_hold = {v.size for v in hold.values()}
    n_syn = {v.size for v in syn.values()}
    if len(n_hold) != 1 or len(n_syn) != 1:
        raise ValueError(
            "every candidate must score the same rows: holdout lengths "
            f"{sorted(n_hold)}, synthetic lengths {sorted(n_syn)}."
        )
    kinds = None
    if synthetic_kinds is not None:
        kinds = np.asarray(synthetic_kinds).astype(str)
        if kinds.size != next(iter(n_syn)):
            raise ValueError(
                f"synthetic_kinds has {kinds.size} labels but the synthetic scores have "
                f"{next(iter(n_syn))} rows."
            )
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)

    ranks = np.column_stack([_ranks(hold[n]) for n in names])
    rows = []
    for j, name in enumerate(names):
        h, s = hold[name], syn[name]
        row: dict[str, float] = {
            "synthetic_auc": _auc(h, s),
            "synthetic_ap": _ap(h, s),
        }
        if kinds is not None:
            for kind in dict.fromkeys(kinds.tolist()):
                row[f"auc_{kind}"] = _auc(h, s[kinds == kind])
        if len(names) > 1:
            others = np.delete(ranks, j, axis=1).mean(axis=1)
            row["consensus"] = _corr(ranks[:, j], others)
        else:
            row["consensus"] = 0.0
        rows.append(row)
    evidence = pd.DataFrame(rows, index=pd.Index(names, name="candidate"))
    unknown = [c for c in weights if c not in evidence.columns]
    if unknown:
        raise ValueError(
            f"weights name unknown evidence column(s) {unknown}; available: "
            f"{list(evidence.columns)}."
        )
    score = sum(w * _zscore(evidence[c]) for c, w in weights.items() if w)
    evidence["selection_score"] = score if not isinstance(score, int) else 0.0
    order = np.argsort(-evidence["selection_score"].to_numpy(), kind="mergesort")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(1, len(names) + 1)
    evidence["rank"] = rank
    return evidence


def select_top(evidence: pd.DataFrame, k: int) -> list[str]:
    """The ``k`` candidates with the highest ``selection_score`` (earlier rows win ties)."""
    if "selection_score" not in evidence.columns:
        raise ValueError(
            "evidence has no 'selection_score' column; build it with label_free_evidence."
        )
    if len(evidence) == 0:
        raise ValueError("evidence has no candidates.")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    scores = evidence["selection_score"].to_numpy(dtype=float)
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-scores, kind="mergesort")
    return [str(evidence.index[i]) for i in order[:k]]


def select(evidence: pd.DataFrame) -> str:
    """Name of the candidate with the highest ``selection_score`` (earlier rows win ties)."""
    return select_top(evidence, 1)[0]
