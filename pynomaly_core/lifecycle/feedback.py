"""Reviewer verdicts as training labels: the feedback-aware candidate of a training batch.

When reviewers have recorded verdicts (``anomaly_feedback``) on rows of the training window, the
batch adds :data:`FEEDBACK_DETECTOR` (:class:`~pynomaly_core.detectors.feedback.FeedbackDetector`)
to its candidates and fits it with the verdicts joined to the training rows by record key:
``1`` confirmed, ``0`` rejected, ``-1`` no verdict (unlabelled, *not* normal). The holdout's
verdicts stay out of training: they are the evaluation set the promotion gate decides on
(:func:`~pynomaly_core.lifecycle.evaluation.evaluation_set`), so the candidate is judged on
verdicts it has not seen.

:func:`review_order` is the queue order a review tool uses: mostly the top-ranked rows, plus a
share of the rows the model is least sure about, so verdicts do not only come from the top of
the ranking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pandas as pd

from pynomaly_core.data.config import FeedConfig
from pynomaly_core.lifecycle.evaluation import labels_with_feedback

#: registry name of the feedback-aware candidate
FEEDBACK_DETECTOR = "FeedbackBoost"
#: verdict code of a row nobody reviewed
NO_VERDICT = -1

FeedbackReader = Callable[[str, str], "pd.DataFrame | None"]


def training_verdicts(
    feed: FeedConfig, train: pd.DataFrame, feedback: FeedbackReader | None
) -> np.ndarray | None:
    """Per training row: 1 confirmed, 0 rejected, -1 no verdict; None when no row has a verdict.

    Verdicts are read for the training rows' UTC days and joined by ``feed.record_key`` (the
    latest verdict per record wins); a feed with a label column keeps its labels (missing = 0)
    where no reviewer spoke.
    """
    if feedback is None or len(train) == 0:
        return None
    days = pd.to_datetime(train[feed.event_time], utc=True).dt.strftime("%Y-%m-%d")
    verdicts = feedback(days.min(), days.max())
    if verdicts is None or len(verdicts) == 0:
        return None
    labels = train[feed.label] if feed.label is not None else None
    y = labels_with_feedback(labels, train[feed.record_key], verdicts)
    reviewed = train[feed.record_key].astype(str).isin(set(verdicts["record_key"].astype(str)))
    if not reviewed.any():
        return None
    return cast("np.ndarray | None", y.fillna(NO_VERDICT).astype(int).to_numpy())


def with_feedback_candidate(names: list[str], verdicts: np.ndarray | None) -> list[str]:
    """``names`` plus :data:`FEEDBACK_DETECTOR` when the training rows have verdicts (beyond
    ``lifecycle.max_candidates``: the verdicts are why this batch exists)."""
    if verdicts is None or FEEDBACK_DETECTOR in names:
        return names
    return [*names, FEEDBACK_DETECTOR]


def labels_for(
    name: str, labels: np.ndarray | None, verdicts: np.ndarray | None
) -> np.ndarray | None:
    """The ``y`` candidate ``name`` is fitted with: the verdicts for the feedback-aware detector
    when there are any, else the feed's labels."""
    if name != FEEDBACK_DETECTOR:
        return labels
    return verdicts if verdicts is not None else labels


def review_order(
    scores: np.ndarray,
    uncertainty: np.ndarray | None,
    *,
    n: int,
    exploration: float = 0.25,
    pool: float = 0.2,
) -> pd.DataFrame:
    """The ``n`` rows to show a reviewer next, as positions into ``scores`` with a ``reason``.

    ``n - round(exploration * n)`` rows are the highest-scored (``reason = "top"``); the rest are
    the rows with the highest ``uncertainty`` among the top ``pool`` share of the scores that are
    not already shown (``reason = "explore"``), e.g.
    :meth:`~pynomaly_core.detectors.feedback.FeedbackDetector.uncertainty`. Without an
    uncertainty every row is ``top``.
    """
    scores = np.asarray(scores, dtype=float)
    if not 0.0 <= exploration < 1.0:
        raise ValueError(f"review_order: exploration must be in [0, 1), got {exploration!r}")
    n = min(int(n), scores.size)
    n_explore = round(exploration * n) if uncertainty is not None else 0
    order = np.argsort(-scores, kind="stable")
    top = order[: n - n_explore]
    picks: list[tuple[int, str]] = [(int(i), "top") for i in top]
    if n_explore:
        unsure = np.asarray(uncertainty, dtype=float)
        in_pool = np.zeros(scores.size, dtype=bool)
        in_pool[order[: max(int(np.ceil(pool * scores.size)), n)]] = True
        in_pool[top] = False
        ranked = [int(i) for i in np.argsort(-unsure, kind="stable") if in_pool[i]]
        picks += [(i, "explore") for i in ranked[:n_explore]]
    frame: dict[str, Any] = {
        "position": [p for p, _ in picks],
        "reason": [r for _, r in picks],
    }
    return pd.DataFrame(frame)
