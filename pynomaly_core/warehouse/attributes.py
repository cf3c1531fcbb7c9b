"""The rows of ``anomaly_attributes``: what was scored, beside the scores.

``anomaly_scores`` has one fixed set of columns for every feed; the entity, the passthrough
columns and the feature values differ per feed, so they are exported long (one row per record
and attribute) and joined back on ``(feed, partition_date, record_key)``. That keeps the
analysts' question "which machines had critical anomalies, and why?" one portable SQL query.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pynomaly_core.warehouse.tables import ATTRIBUTE_TABLE

__all__ = ["attribute_rows"]


def attribute_rows(
    scores: pd.DataFrame,
    source: pd.DataFrame,
    *,
    entity: str | None,
    passthrough: Sequence[str],
    features: Sequence[str],
    masked: set[str] | frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """The frame :data:`~pynomaly_core.warehouse.tables.ATTRIBUTE_TABLE` stores for one scored partition.

    ``scores`` is the partition's scored frame (``record_key``, ``event_time``, ``is_anomaly``);
    ``source`` the validated rows it scored, in the same order (scoring keeps the order). The
    entity and passthrough columns are exported for every row, the feature values for the flagged
    rows only (the source keeps the rest; a day's flagged rows are ~1 %, every row times every
    feature would multiply the table). Columns in ``masked`` (the feed's personal data) are left
    out. ``ValueError`` names a column ``source`` lacks or a length mismatch.
    """
    if len(scores) != len(source):
        raise ValueError(
            f"table {ATTRIBUTE_TABLE.name!r}: {len(scores)} scored rows but {len(source)} "
            "validated rows; the attributes must come from the rows that were scored"
        )
    flagged = scores["is_anomaly"].to_numpy(dtype=bool)
    wanted: list[tuple[str, str, np.ndarray]] = []
    context = ([entity] if entity else []) + [c for c in passthrough if c != entity]
    for name in context:
        role = "entity" if name == entity else "passthrough"
        wanted.append((name, role, np.ones(len(scores), dtype=bool)))
    wanted += [(name, "feature", flagged) for name in features if name not in context]
    parts = [
        _long(scores, source, name, role, rows) for name, role, rows in wanted if name not in masked
    ]
    if not parts:
        return _empty()
    out = pd.concat([p for p in parts if len(p)] or [_empty()], ignore_index=True)
    return out[[c.name for c in ATTRIBUTE_TABLE.frame_columns]]


def _long(
    scores: pd.DataFrame, source: pd.DataFrame, name: str, role: str, rows: np.ndarray
) -> pd.DataFrame:
    if name not in source.columns:
        raise ValueError(
            f"table {ATTRIBUTE_TABLE.name!r}: the scored rows lack {role} column {name!r} "
            f"(have {list(source.columns)})"
        )
    values = source[name].reset_index(drop=True)[rows]
    numeric = pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
        values.dtype
    )
    number = values.astype("float64") if numeric else pd.Series(np.nan, index=values.index)
    if numeric and role == "feature":
        text = pd.Series(None, index=values.index, dtype=object)
    else:
        text = values.astype(object).where(values.notna(), None)
        text = text.map(lambda v: v if v is None else _as_text(v))
    return pd.DataFrame(
        {
            "record_key": scores["record_key"].astype(str).reset_index(drop=True)[rows].to_numpy(),
            "event_time": scores["event_time"].reset_index(drop=True)[rows].to_numpy(),
            "attribute": name,
            "role": role,
            "text_value": text.to_numpy(dtype=object),
            "number_value": number.to_numpy(dtype="float64"),
        }
    ).astype({"event_time": scores["event_time"].dtype})


def _as_text(value: object) -> str:
    """A value as text; whole floats (an integer column read with missing values) without ``.0``."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_key": pd.Series(dtype=object),
            "event_time": pd.Series(dtype="datetime64[us, UTC]"),
            "attribute": pd.Series(dtype=object),
            "role": pd.Series(dtype=object),
            "text_value": pd.Series(dtype=object),
            "number_value": pd.Series(dtype="float64"),
        }
    )
