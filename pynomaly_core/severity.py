"""Severity of an anomaly: how far its score lies above the threshold.

``r = (score - threshold) / (max training score - threshold)``; normal rows are
``"none"``; anomalies are ``"low"`` (r < 0.25), ``"medium"`` (< 0.5), ``"high"`` (< 1)
and ``"critical"`` (r >= 1: beyond anything seen in training).
"""

from __future__ import annotations

import numpy as np

LEVELS = ("none", "low", "medium", "high", "critical")
_EDGES = (0.25, 0.5, 1.0)


def severity(scores: np.ndarray, threshold: float, max_training_score: float) -> np.ndarray:
    """Severity label per score, shape ``(n,)`` of str."""
    scores = np.asarray(scores, dtype=float)
    span = max(max_training_score - threshold, 1e-12)
    ratio = (scores - threshold) / span
    level = 1 + np.searchsorted(_EDGES, ratio, side="right")
    level = np.where(scores > threshold, level, 0)
    return np.asarray(LEVELS, dtype=object)[level]
