"""What a flagged row is judged against: its feature values with their normal range, and the
series around it.

The feature values are the ones exported with the row (``anomaly_attributes``, flagged rows
only). Their *normal range* is the 1st to 99th percentile of the feature over the feed's
validated rows of the same day that were not flagged, read from the Parquet file the pipeline stored them in
(``<frames>/<feed>/validated/<day>.parquet``; the code location's ``$PYNOMALY_HOME/frames``). Features
derived while scoring (lags, rolling statistics) are not in that file and get no range; nor does
anything when the file is absent (a review page with no access to the frames). Parquet is
plain data: reading it runs nothing.

The *series around the point* is the anomaly score of the same entity (the whole feed when it
has no entity), ordered by event time, a few points either side of the row, within its day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pynomaly_core.warehouse.sql import partition_day

__all__ = [
    "FeatureValue",
    "feature_values",
    "normal_ranges",
    "passthrough_values",
    "series_around",
]

RANGE_QUANTILES = (0.01, 0.99)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class FeatureValue:
    """One feature of a row: its value and, when known, the day's normal range and median."""

    name: str
    value: float | str | None
    low: float | None = None
    median: float | None = None
    high: float | None = None

    @property
    def outside(self) -> bool:
        """The value lies outside the normal range (False when either is unknown)."""
        if not isinstance(self.value, float) or self.low is None or self.high is None:
            return False
        return not self.low <= self.value <= self.high


def feature_values(
    attributes: pd.DataFrame,
    record_key: str,
    ranges: dict[str, tuple[float, float, float]] | None = None,
) -> list[FeatureValue]:
    """The exported feature values of one record (``anomaly_attributes`` rows of its day), with
    ``ranges`` joined on, in export order."""
    rows = attributes[(attributes["record_key"] == record_key) & (attributes["role"] == "feature")]
    out = []
    for row in rows.itertuples(index=False):
        value: float | str | None
        if pd.notna(row.number_value):
            value = float(row.number_value)
        elif pd.notna(row.text_value):
            value = str(row.text_value)
        else:
            value = None
        low, median, high = (ranges or {}).get(str(row.attribute), (None, None, None))
        out.append(FeatureValue(str(row.attribute), value, low, median, high))
    return out


def passthrough_values(attributes: pd.DataFrame, record_key: str) -> list[tuple[str, str]]:
    """The record's passthrough columns (``anomaly_attributes`` role ``passthrough``) as text."""
    rows = attributes[
        (attributes["record_key"] == record_key) & (attributes["role"] == "passthrough")
    ]
    out = []
    for row in rows.itertuples(index=False):
        if pd.notna(row.text_value):
            out.append((str(row.attribute), str(row.text_value)))
        elif pd.notna(row.number_value):
            out.append((str(row.attribute), f"{float(row.number_value):.6g}"))
    return out


def validated_frame_path(frames_dir: Path, feed: str, day: str) -> Path | None:
    """The Parquet file of ``feed``'s validated rows on ``day``, if the name is safe and it exists."""
    partition_day(day)
    if _SAFE_NAME.fullmatch(feed) is None:
        return None  # a feed name that could leave the frames directory is not looked up
    path = frames_dir / feed / "validated" / f"{day}.parquet"
    return path if path.is_file() else None


def normal_ranges(
    frames_dir: Path | None,
    feed: str,
    day: str,
    features: list[str],
    flagged: set[str] | frozenset[str] = frozenset(),
) -> dict[str, tuple[float, float, float]]:
    """``{feature: (1st percentile, median, 99th percentile)}`` of the day's validated rows.

    Only numeric ``features`` the validated file has; ``{}`` without the file. The rows whose
    record key is in ``flagged`` are left out when the file's record-key column can be told (the
    column whose values include every flagged key): what is normal is judged without them.
    """
    if frames_dir is None or not features:
        return {}
    path = validated_frame_path(frames_dir, feed, day)
    if path is None:
        return {}
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    wanted = [f for f in features if f in schema.names]
    if not wanted:
        return {}
    frame = pd.read_parquet(path, columns=wanted)
    if flagged:
        normal = _unflagged(path, schema, flagged)
        if normal is not None:
            frame = frame[normal]
    out = {}
    for name in wanted:
        column = frame[name]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        values = column.dropna().to_numpy(dtype=float)
        if values.size == 0:
            continue
        low, median, high = np.quantile(values, [RANGE_QUANTILES[0], 0.5, RANGE_QUANTILES[1]])
        out[name] = (float(low), float(median), float(high))
    return out


def _unflagged(path: Path, schema: Any, flagged: set[str] | frozenset[str]) -> np.ndarray | None:
    """Per row of the file: not one of the ``flagged`` records; None when no column holds the keys."""
    import pyarrow as pa

    for field in schema:
        if pa.types.is_floating(field.type) or pa.types.is_boolean(field.type):
            continue
        keys = pd.read_parquet(path, columns=[field.name])[field.name].astype(str)
        hit = keys.isin(flagged).to_numpy()
        if int(hit.sum()) >= len(flagged):
            return np.asarray(~hit)
    return None


def series_around(rows: pd.DataFrame, record_key: str, points: int = 36) -> pd.DataFrame:
    """The scores of the row's entity around it: up to ``points`` rows either side by event time.

    Columns ``record_key``, ``event_time``, ``score``, ``is_anomaly``; empty when the row has no
    event time (a feed that is not time-ordered).
    """
    columns = ["record_key", "event_time", "score", "is_anomaly"]
    match = rows[rows["record_key"] == record_key]
    if match.empty or pd.isna(match["event_time"].iloc[0]):
        return pd.DataFrame(columns=columns)
    entity = match["entity"].iloc[0] if "entity" in rows else None
    same = rows if entity is None or pd.isna(entity) else rows[rows["entity"] == entity]
    same = same.dropna(subset=["event_time"]).sort_values(["event_time", "record_key"])
    same = same.reset_index(drop=True)
    at = int(np.flatnonzero(same["record_key"].to_numpy() == record_key)[0])
    return same.iloc[max(0, at - points) : at + points + 1][columns].reset_index(drop=True)
