"""Validation of a raw partition against its feed: typed coercion, pandera rules, quarantine.

Nothing is dropped silently. Every raw row ends up either in ``valid`` (typed, ready
for training and scoring) or in ``quarantine`` with one record per failed rule naming
the column, the rule and the offending value, so that
``raw rows == valid rows + distinct quarantined rows`` always holds.

Structural problems — a missing column, or an unexpected one — are not row problems:
they raise :class:`SchemaMismatchError` naming the column and the source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from pynomaly_core.data.config import FeatureSpec, FeedConfig
from pynomaly_core.data.timestamps import to_utc

#: the largest integer magnitude a float64 (how features are scored) represents exactly
MAX_EXACT_INT = 2**53 - 1
#: longest failure_value stored in quarantine; the full row is in row_json once
MAX_FAILURE_VALUE = 1000
#: what a personal-data value (a column marked pii) is replaced by in quarantine
MASK = "***masked***"

QUARANTINE_COLUMNS = [
    "row_number",
    "record_key",
    "column_name",
    "rule",
    "failure_value",
    "row_json",
]
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
# spellings of "no value" in text files; they count as missing (null), not as unparseable
_MISSING_TEXT = {"", "nan", "null", "none", "na", "n/a", "<na>", "nat"}


class SchemaMismatchError(ValueError):
    """The partition's columns do not match the feed; the message names the columns and source."""


@dataclass
class ValidationResult:
    """Outcome of validating one partition."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    raw_rows: int

    @property
    def valid_rows(self) -> int:
        return len(self.valid)

    @property
    def quarantined_rows(self) -> int:
        """Distinct raw rows with at least one failure."""
        return int(self.quarantine["row_number"].nunique()) if len(self.quarantine) else 0

    @property
    def pass_rate(self) -> float | None:
        return self.valid_rows / self.raw_rows if self.raw_rows else None

    @property
    def accounting_holds(self) -> bool:
        return self.raw_rows == self.valid_rows + self.quarantined_rows

    def failures_by_rule(self) -> dict[str, int]:
        if not len(self.quarantine):
            return {}
        keys = self.quarantine["column_name"].fillna("<row>") + ": " + self.quarantine["rule"]
        return {str(k): int(v) for k, v in keys.value_counts().items()}


def check_columns(columns: list[str], feed: FeedConfig, *, source: str) -> None:
    """Raise :class:`SchemaMismatchError` for missing (or, unless allowed, extra) columns."""
    expected = feed.expected_columns
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    problems = []
    if missing:
        problems.append(f"missing column(s) {missing}")
    if extra and not feed.validation.allow_extra_columns:
        problems.append(
            f"unexpected column(s) {extra} (declare them under 'features' or 'passthrough', or set "
            "validation.allow_extra_columns: true)"
        )
    if problems:
        raise SchemaMismatchError(f"{source}: {' and '.join(problems)} for feed {feed.name!r}")


def build_schema(
    feed: FeedConfig,
    partition_start: pd.Timestamp | None = None,
    partition_end: pd.Timestamp | None = None,
) -> pa.DataFrameSchema:
    """The pandera schema of a feed's *typed* (coerced) data."""
    columns: dict[str, pa.Column] = {
        feed.record_key: pa.Column(
            str,
            nullable=False,
            unique=True,
            report_duplicates="exclude_first",
            description="record key (unique within the partition)",
        ),
        feed.event_time: pa.Column(
            pd.DatetimeTZDtype(tz="UTC"),
            checks=(
                [
                    pa.Check.in_range(
                        partition_start,
                        partition_end,
                        include_max=False,
                        error="event time within the partition window",
                    )
                ]
                if partition_start is not None and partition_end is not None
                else []
            ),
            nullable=False,
            description="event time (UTC)",
        ),
    }
    if feed.entity is not None:
        columns[feed.entity] = pa.Column(object, nullable=False, description="entity (series key)")
    for col in feed.passthrough:
        if col != feed.entity:
            columns[col] = pa.Column(
                object, nullable=True, required=True, description="passthrough column"
            )
    for spec in feed.features:
        columns[spec.name] = _feature_column(spec)
    if feed.label is not None:
        columns[feed.label] = pa.Column(
            "Int64",
            checks=[pa.Check.isin([0, 1])],
            nullable=True,
            description="ground-truth label (1 = anomaly)",
        )
    return pa.DataFrameSchema(columns, strict=True, name=f"{feed.name}_validated")


def _feature_column(spec: FeatureSpec) -> pa.Column:
    checks: list[pa.Check] = []
    if spec.type in ("float", "int"):
        checks.append(
            pa.Check(
                lambda s: np.isfinite(s.astype("float64")),
                name="finite",
                error="value must be finite (not inf)",
            )
        )
        if spec.min is not None:
            checks.append(pa.Check.ge(spec.min))
        if spec.max is not None:
            checks.append(pa.Check.le(spec.max))
    if spec.type == "category" and spec.allowed is not None:
        checks.append(pa.Check.isin(spec.allowed))
    dtype = {"float": "float64", "int": "Int64", "bool": "boolean", "category": str}[spec.type]
    return pa.Column(
        dtype, checks=checks, nullable=spec.nullable, description=f"feature ({spec.type})"
    )


def _coerce(raw: pd.DataFrame, feed: FeedConfig) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Cast raw columns to their declared types; unparseable values become failures."""
    typed = pd.DataFrame(index=raw.index)
    failures: list[dict[str, Any]] = []

    def record(col: str, bad: pd.Series, rule: str) -> None:
        for idx, value in raw.loc[bad[bad].index, col].items():
            failures.append(
                {"index": idx, "column_name": col, "rule": rule, "failure_value": value}
            )

    def blank(series: pd.Series) -> pd.Series:
        text = series.astype(str).str.strip().str.lower()
        return series.isna() | text.isin(_MISSING_TEXT)

    key = raw[feed.record_key]
    typed[feed.record_key] = (
        key.where(~blank(key), None).astype(object).map(lambda v: None if v is None else str(v))
    )
    parsed = to_utc(raw[feed.event_time], zone=feed.event_time_zone)
    refused = parsed.failures.notna()
    for idx, rule in parsed.failures[refused].items():
        failures.append(
            {
                "index": idx,
                "column_name": feed.event_time,
                "rule": rule,
                "failure_value": raw.at[idx, feed.event_time],
            }
        )
    times = parsed.times
    record(
        feed.event_time,
        times.isna() & ~blank(raw[feed.event_time]) & ~refused,
        "parse as UTC timestamp",
    )
    typed[feed.event_time] = times
    if feed.entity is not None:
        entity = raw[feed.entity]
        typed[feed.entity] = (
            entity.where(~blank(entity), None)
            .astype(object)
            .map(lambda v: None if v is None else str(v).strip())
        )
    for col in feed.passthrough:
        if col != feed.entity:
            typed[col] = raw[col].astype(object)
    for spec in feed.features:
        col = raw[spec.name]
        missing = blank(col)
        if spec.type in ("float", "int"):
            values = (
                pd.to_numeric(col, errors="coerce")
                if col.dtype == object
                else col.astype("float64")
            )
            values = values.astype("float64")
            record(spec.name, values.isna() & ~missing, f"parse as {spec.type}")
            if spec.type == "int":
                not_int = values.notna() & (~np.isfinite(values) | (values % 1 != 0))
                record(spec.name, not_int, "parse as int")
                # beyond 2^53 a float64 no longer holds every integer: the value would be rounded silently
                too_big = values.notna() & ~not_int & (values.abs() > MAX_EXACT_INT)
                record(
                    spec.name,
                    too_big,
                    f"int within ±{MAX_EXACT_INT} (2^53 - 1): larger values are not stored exactly",
                )
                typed[spec.name] = values.where(~not_int & ~too_big).astype("Int64")
            else:
                typed[spec.name] = values
        elif spec.type == "bool":
            text = col.astype(str).str.strip().str.lower()
            parsed = pd.Series(pd.NA, index=col.index, dtype="boolean")
            parsed[text.isin(_TRUE)] = True
            parsed[text.isin(_FALSE)] = False
            record(spec.name, parsed.isna() & ~missing, "parse as bool")
            typed[spec.name] = parsed
        else:
            typed[spec.name] = col.where(~missing, None).map(
                lambda v: None if v is None else str(v).strip()
            )
    if feed.label is not None:
        labels = pd.to_numeric(raw[feed.label], errors="coerce")
        record(feed.label, labels.isna() & ~blank(raw[feed.label]), "parse as 0/1 label")
        bad = labels.notna() & ~labels.isin([0, 1])
        record(feed.label, bad, "label in {0, 1}")
        typed[feed.label] = labels.where(~bad).astype("Int64")
    return typed, failures


def validate_partition(
    raw: pd.DataFrame,
    feed: FeedConfig,
    *,
    source: str,
    partition_start: pd.Timestamp | None = None,
    partition_end: pd.Timestamp | None = None,
) -> ValidationResult:
    """Validate one raw partition of ``feed`` read from ``source`` (quoted in errors)."""
    check_columns(list(raw.columns), feed, source=source)
    raw = raw[feed.expected_columns].reset_index(drop=True)
    typed, failures = _coerce(raw, feed)
    schema = build_schema(feed, partition_start, partition_end)
    coerced_cells = {(f["index"], f["column_name"]) for f in failures}
    try:
        schema.validate(typed, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        for row in cases.itertuples(index=False):
            if row.index is None or (isinstance(row.index, float) and np.isnan(row.index)):
                raise SchemaMismatchError(
                    f"{source}: {row.check} failed for column {row.column!r}"
                ) from None
            idx = int(row.index)
            if (idx, row.column) in coerced_cells:
                continue  # already quarantined for failing to parse; NaN after coercion is not news
            failures.append(
                {
                    "index": idx,
                    "column_name": row.column,
                    "rule": str(row.check),
                    "failure_value": row.failure_case,
                }
            )
    bad_rows = sorted({f["index"] for f in failures})
    quarantine = _quarantine_frame(raw, feed, failures)
    valid = typed.drop(index=bad_rows).reset_index(drop=True)
    return ValidationResult(valid=valid, quarantine=quarantine, raw_rows=len(raw))


def _quarantine_frame(
    raw: pd.DataFrame, feed: FeedConfig, failures: list[dict[str, Any]]
) -> pd.DataFrame:
    if not failures:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in QUARANTINE_COLUMNS}).astype(
            {"row_number": "int64"}
        )
    rows = []
    masked = feed.pii_columns
    for f in sorted(failures, key=lambda f: (f["index"], str(f["column_name"]))):
        record = raw.loc[f["index"]]
        key = record[feed.record_key]
        rows.append(
            {
                "row_number": int(f["index"]),
                "record_key": None if pd.isna(key) else str(key),
                "column_name": f["column_name"],
                "rule": f["rule"],
                "failure_value": MASK
                if f["column_name"] in masked and not _isna(f["failure_value"])
                else _shown_value(f["failure_value"]),
                "row_json": json.dumps(
                    {
                        k: MASK if k in masked and not _isna(v) else _jsonable(v)
                        for k, v in record.items()
                    }
                ),
            }
        )
    return pd.DataFrame(rows, columns=QUARANTINE_COLUMNS)


def _shown_value(value: object) -> str | None:
    """The failing value as text, cut at :data:`MAX_FAILURE_VALUE` characters (``row_json`` keeps it whole)."""
    if _isna(value):
        return None
    text = str(value)
    if len(text) <= MAX_FAILURE_VALUE:
        return text
    return f"{text[:MAX_FAILURE_VALUE]}… ({len(text):,} characters; the whole value is in row_json)"


def _isna(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _jsonable(value: object) -> object:
    if _isna(value):
        return None
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value if isinstance(value, (int, str, bool)) else str(value)
