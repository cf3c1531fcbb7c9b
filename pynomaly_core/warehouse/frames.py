"""Frames in and out of the warehouse: validating a frame against a table and converting values.

Going in, :func:`to_arrow` checks that a frame carries exactly a table's columns (except
``feed`` and ``partition_date``, filled from the arguments) and that each column's values fit
its kind, naming the table and the column when they do not; the arrow table it returns is what
every load encodes (binary COPY on PostgreSQL, :func:`sqlite_rows` on SQLite, :func:`bind_rows`
for single-row statements). Timestamps are kept in UTC with microsecond precision (finer parts
are truncated). Coming out, :func:`from_sql` turns either backend's values into pandas-friendly
columns.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pynomaly_core.warehouse.sql import Dialect
from pynomaly_core.warehouse.tables import PARTITION_COLUMNS, Column, ColumnKind, TableSpec

__all__ = ["bind_rows", "from_sql", "sqlite_rows", "to_arrow"]

_ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "text": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "json": pa.string(),
}


def to_arrow(spec: TableSpec, frame: pd.DataFrame, *, feed: str, day: dt.date) -> pa.Table:
    """Validate ``frame`` against ``spec`` and convert it, partition columns added."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"frame for table {spec.name!r} must be a pandas DataFrame, got {type(frame).__name__}"
        )
    if frame.columns.has_duplicates:
        duplicated = sorted(map(str, frame.columns[frame.columns.duplicated()].unique()))
        raise ValueError(f"frame for table {spec.name!r} has duplicate column(s) {duplicated}")
    for name in PARTITION_COLUMNS:
        if name in frame.columns:
            raise ValueError(
                f"frame for table {spec.name!r} must not have column {name!r}: "
                f"it is filled from the {name} argument"
            )
    expected = {c.name for c in spec.frame_columns}
    filled = {
        c.name: c.fill_from
        for c in spec.frame_columns
        if c.name not in frame.columns and c.fill_from in frame.columns
    }
    missing = [
        c.name for c in spec.frame_columns if c.name not in frame.columns and c.name not in filled
    ]
    extra = [str(c) for c in frame.columns if c not in expected]
    if missing or extra:
        problems = [f"missing column(s) {missing}"] if missing else []
        problems += [f"unexpected column(s) {extra}"] if extra else []
        raise ValueError(f"frame for table {spec.name!r}: {'; '.join(problems)}")
    rows = len(frame)
    arrays = {
        "feed": pa.repeat(pa.scalar(feed, pa.string()), rows),
        "partition_date": pa.repeat(pa.scalar(day, pa.date32()), rows),
    }
    for column in spec.frame_columns:
        series = frame[filled.get(column.name, column.name)]
        arrays[column.name] = _column_array(spec.name, column, series)
    return pa.Table.from_arrays(
        [arrays[c.name] for c in spec.columns], names=[c.name for c in spec.columns]
    )


def _column_array(table: str, column: Column, series: pd.Series) -> pa.Array:
    where = f"column {column.name!r} of table {table!r}"
    try:
        array = _CONVERTERS[column.kind](series, where, column)
    except ValueError:
        if not series.isna().all():
            raise
        # all missing (e.g. an empty frame): the dtype says nothing, accept any
        array = pa.nulls(len(series), _ARROW_TYPES[column.kind])
    if not column.nullable and array.null_count:
        position = pc.index(pc.is_null(array), True).as_py()
        raise ValueError(
            f"{where} is NOT NULL but has a missing value (None/NaN/NaT) at index "
            f"{series.index[position]!r}"
        )
    return array


def _first_bad(series: pd.Series, mask: np.ndarray) -> tuple[Any, Any]:
    """Index label and value of the first True in ``mask``."""
    position = int(np.argmax(mask))
    return series.index[position], series.iloc[position]


def _text(series: pd.Series, where: str, column: Column) -> pa.Array:
    if not (series.dtype == object or isinstance(series.dtype, pd.StringDtype)):
        raise ValueError(f"{where} must hold str values, got dtype {series.dtype}")
    try:
        array = pa.array(series, type=pa.string(), from_pandas=True)
    except (pa.ArrowException, UnicodeError) as exc:
        raise ValueError(f"{where} must hold str values: {exc}") from exc
    has_nul = pc.fill_null(pc.match_substring(array, "\x00"), False).to_numpy(zero_copy_only=False)
    if has_nul.any():
        label, _ = _first_bad(series, has_nul)
        raise ValueError(f"{where} has a NUL character at index {label!r}; text cannot hold it")
    if column.allowed is not None:
        value_set = pa.array(sorted(column.allowed), pa.string())
        bad = pc.and_(pc.is_valid(array), pc.invert(pc.is_in(array, value_set=value_set)))
        bad_rows = bad.to_numpy(zero_copy_only=False)
        if bad_rows.any():
            label, value = _first_bad(series, bad_rows)
            raise ValueError(
                f"{where} has value {value!r} at index {label!r}; allowed: {sorted(column.allowed)}"
            )
    return array


def _float(series: pd.Series, where: str, column: Column) -> pa.Array:
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        raise ValueError(f"{where} must be numeric, got dtype {series.dtype}")
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        label, value = _first_bad(series, infinite)
        raise ValueError(f"{where} has non-finite value {value!r} at index {label!r}")
    if column.bounds is not None:
        low, high = column.bounds
        outside = (values < low) | (values > high)
        if outside.any():
            label, value = _first_bad(series, outside)
            raise ValueError(
                f"{where} has value {value!r} at index {label!r} outside [{low}, {high}]"
            )
    return pa.array(values, from_pandas=True)  # NaN -> NULL


def _int(series: pd.Series, where: str, column: Column) -> pa.Array:
    if not pd.api.types.is_integer_dtype(series.dtype):
        raise ValueError(
            f"{where} must have an integer dtype (pandas 'Int64' for missing values), "
            f"got dtype {series.dtype}"
        )
    try:
        return pa.array(series, type=pa.int64(), from_pandas=True)
    except pa.ArrowException as exc:
        raise ValueError(f"{where} does not fit a 64-bit integer: {exc}") from exc


def _bool(series: pd.Series, where: str, column: Column) -> pa.Array:
    if pd.api.types.infer_dtype(series, skipna=True) != "boolean":
        raise ValueError(f"{where} must hold bool values, got dtype {series.dtype}")
    return pa.array(series, type=pa.bool_(), from_pandas=True)


def _timestamp(series: pd.Series, where: str, column: Column) -> pa.Array:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        array = pa.array(series.dt.tz_convert("UTC"), from_pandas=True)
        return array.cast(_ARROW_TYPES["timestamp"], safe=False)  # truncates to microseconds
    if pd.api.types.is_datetime64_dtype(series.dtype):
        problem = "holds naive timestamps; make them timezone-aware, e.g. .dt.tz_localize('UTC')"
    else:
        problem = f"must be a timezone-aware datetime64 column, got dtype {series.dtype}"
    raise ValueError(f"{where} {problem}")


def _json_default(value: Any) -> Any:
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _json(series: pd.Series, where: str, column: Column) -> pa.Array:
    values = series.to_numpy(dtype=object)
    texts = np.full(len(values), None, dtype=object)
    for position in np.flatnonzero(series.notna().to_numpy()):
        value = values[position]
        try:
            if isinstance(value, dict | list):
                try:
                    text = json.dumps(value, allow_nan=False, default=_json_default)
                except ValueError:  # NaN/inf somewhere inside: store them as null
                    text = json.dumps(_finite(value), allow_nan=False, default=_json_default)
            elif isinstance(value, str):
                json.loads(value, parse_constant=_reject_constant)
                text = value
            else:
                raise TypeError(f"expected a dict, list or JSON string, got {type(value).__name__}")
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{where} has an invalid JSON value at index {series.index[position]!r}: {exc}"
            ) from exc
        texts[position] = text
    return pa.array(texts, type=pa.string())


def _date(series: pd.Series, where: str, column: Column) -> pa.Array:
    try:
        return pa.array(series, type=pa.date32(), from_pandas=True)
    except (pa.ArrowException, TypeError) as exc:
        raise ValueError(f"{where} must hold datetime.date values: {exc}") from exc


_CONVERTERS = {
    "text": _text,
    "float": _float,
    "int": _int,
    "bool": _bool,
    "timestamp": _timestamp,
    "date": _date,
    "json": _json,
}


def sqlite_rows(spec: TableSpec, data: pa.Table) -> list[tuple[Any, ...]]:
    columns = []
    for column, values in zip(spec.columns, data.columns, strict=True):
        if column.kind == "timestamp":
            values = pc.strftime(values, format="%Y-%m-%dT%H:%M:%SZ")  # %S has the microseconds
        elif column.kind == "date":
            values = values.cast(pa.string())
        columns.append(values.to_pylist())
    return list(zip(*columns, strict=True))


def bind_rows(dialect: Dialect, spec: TableSpec, data: pa.Table) -> list[tuple[Any, ...]]:
    """Rows of ``data`` (columns in ``spec`` order) as values bound to a statement on ``dialect``.

    SQLite gets what :func:`sqlite_rows` stores; PostgreSQL gets Python values (``datetime`` in
    UTC, ``date``, JSON as its text, to be cast to JSONB by the statement).
    """
    if dialect == "sqlite":
        return sqlite_rows(spec, data)
    return list(zip(*(values.to_pylist() for values in data.columns), strict=True))


def from_sql(column: Column, values: list[Any]) -> Any:
    """Column values as returned by either backend -> a pandas-friendly array."""
    kind = column.kind
    if kind == "float":
        return np.array(values, dtype=np.float64)
    if kind == "int":
        return (
            pd.array(values, dtype="Int64") if column.nullable else np.array(values, dtype=np.int64)
        )
    if kind == "bool":
        return (
            pd.array(values, dtype="boolean") if column.nullable else np.array(values, dtype=bool)
        )
    if kind == "timestamp":
        return pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601")
    if kind == "date":
        values = [dt.date.fromisoformat(v) if isinstance(v, str) else v for v in values]
    elif kind == "json":
        values = [json.loads(v) if isinstance(v, str) else v for v in values]
    return pd.Series(values, dtype=object)
