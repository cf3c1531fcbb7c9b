"""Binning and the population stability index: the full-data half of drift.

Numerical columns are bucketed on quantile edges learned from the reference
(:func:`quantile_edges`, :func:`bucket_counts`), categorical ones on the reference's
categories (:func:`category_counts`); :func:`psi` compares the bucket shares. Both the
reference (:mod:`pynomaly_core.drift.reference`) and the report
(:mod:`pynomaly_core.drift.report`) bucket through these functions, so a partition is
always binned exactly as its reference was.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd

#: floor of a bucket share in PSI, so buckets empty on one side stay finite
PSI_EPSILON = 1e-4


class DriftError(ValueError):
    """Drift cannot be computed as asked; the message names the column, file or argument."""


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Bucket edges learned on finite ``values``: distinct quantiles plus one just above the max.

    Buckets (see :func:`bucket_counts`) are ``< edges[0]``, ``[edges[i], edges[i+1])``,
    ``>= edges[-1]`` and missing. The extra edge ``nextafter(max)`` gives the reference
    maximum its own bucket and values above it another, so a constant column still has
    "below", "at" and "above" buckets.
    """
    levels = np.linspace(0.0, 1.0, bins + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        edges = np.quantile(values, levels)
        if not np.isfinite(edges).all():  # interpolating across +-1e308 overflows: no interpolation
            edges = np.quantile(values, levels, method="lower")
        distinct = np.unique(edges)
        # above float64's max the next edge is inf: only inf would land beyond it
        return np.append(distinct, np.nextafter(distinct[-1], np.inf))


def bucket_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of float ``values`` in the ``len(edges) + 2`` buckets of ``edges`` (last: missing)."""
    index = np.searchsorted(edges, values, side="right")
    index[np.isnan(values)] = len(edges) + 1  # NaN sorts last: give it its own bucket
    return np.bincount(index, minlength=len(edges) + 2)


def category_counts(values: pd.Series, categories: list[Any]) -> np.ndarray:
    """Counts of ``values`` per reference category, then unseen categories, then missing."""
    codes = pd.Categorical(values, categories=categories).codes.astype(np.int64)
    missing = values.isna().to_numpy()
    codes[codes < 0] = len(categories)  # not a reference category ...
    codes[missing] = len(categories) + 1  # ... unless it is missing altogether
    return np.bincount(codes, minlength=len(categories) + 2)


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of bucket shares ``actual`` against ``expected``."""
    e = np.maximum(np.asarray(expected, dtype=float), epsilon)
    a = np.maximum(np.asarray(actual, dtype=float), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def shares(counts: np.ndarray) -> np.ndarray:
    """Bucket ``counts`` as shares of their total (all zeros stay zeros)."""
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def numeric_values(frame: pd.DataFrame, column: str, where: str) -> np.ndarray:
    """``frame[column]`` as float64 with NaN for missing; a non-numeric column is a :class:`DriftError`."""
    try:
        return cast("np.ndarray", frame[column].to_numpy(dtype=np.float64, na_value=np.nan))
    except (TypeError, ValueError) as exc:
        raise DriftError(
            f"numeric feature column {column!r} of the {where} is not numeric "
            f"(dtype {frame[column].dtype}): {exc}"
        ) from exc


def require_columns(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    """Raise a :class:`DriftError` naming the feature columns ``frame`` (the ``where``) lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DriftError(
            f"the {where} lacks feature column(s) {missing}; it has {list(map(str, frame.columns))}"
        )


def json_scalar(value: Any) -> Any:
    """A NumPy scalar as the Python value JSON can write; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value
