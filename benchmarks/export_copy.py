#!/usr/bin/env python
"""Benchmark: loading scored rows into PostgreSQL with ``pynomaly_core.warehouse``.

One synthetic frame of ``--rows`` scored records (the anomaly table's columns; anomalies
at ``--anomaly-rate`` carry ``top_features`` as a JSON string, as ``AnomalyModel.score``
produces) is loaded, in the same run and into tables of identical definition
(``CREATE TABLE ... (LIKE anomaly_scores INCLUDING ALL)``: same types, NOT NULLs and
primary key), by

(a) ``replace_partition`` -- ours: validation, conversion, advisory lock, DELETE of the
    (empty) partition, binary COPY, commit;
(b) the reference: a plain psycopg 3 binary COPY of the same frame,
    ``Copy.write_row`` over ``frame.itertuples()`` with ``set_types``
    (JSON strings passed through unchanged via ``set_json_dumps``);
(c) pandas ``DataFrame.to_sql`` (default method, i.e. ``executemany``) on the first
    ``--to-sql-rows`` rows, its time extrapolated linearly to the full frame; its
    ``top_features`` are parsed beforehand (untimed) and bound with ``dtype=JSONB``.

Also reported: the server floor (the same rows as binary COPY data, dumped with
``COPY TO`` after an untimed warm-up load and replayed from memory: no client-side
encoding at all), ``replace_partition``
replacing an already loaded partition (DELETE of all its rows included), and the COPY
format comparison behind ``export``'s choice: the same validated arrow table sent as
binary COPY (our encoder) and as CSV text COPY (``pyarrow.csv`` writer).

Every timed load starts on empty tables (``TRUNCATE``) after a ``CHECKPOINT``; (a), (b),
the floor and the format pair run interleaved ``--repeats`` times and the median is
reported. After the runs the script checks that (a) and (b) stored identical rows
(``EXCEPT ALL`` both ways). It creates a fresh database ``pynomaly_bench_<hex>`` on the
server and drops it at the end.

Usage::

    python benchmarks/export_copy.py                      # 1e6 rows, 3 repeats
    python benchmarks/export_copy.py --rows 100000 --repeats 1 --to-sql-rows 20000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg.types.json import set_json_dumps
from sqlalchemy.dialects.postgresql import JSONB

from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    SEVERITIES,
    Column,
    TableSpec,
    ensure_table,
    make_engine,
    replace_partition,
)
from pynomaly_core.warehouse.frames import to_arrow
from pynomaly_core.warehouse.load import COPY_BATCH_ROWS, binary_copy_stream

FEED = "bench"
DAY = "2024-05-01"
PG_TYPES = {
    "text": "text",
    "float": "float8",
    "int": "int8",
    "bool": "bool",
    "timestamp": "timestamptz",
    "date": "date",
    "json": "jsonb",
}


def synthetic_scores(
    rows: int, anomaly_rate: float, seed: int, spec: TableSpec = ANOMALY_TABLE
) -> pd.DataFrame:
    """A frame with exactly ``spec.frame_columns``, in table order, built from the spec.

    The columns the scoring path gives a meaning get realistic values: gamma scores, the top
    ``anomaly_rate`` of them flagged with a severity and three top features, conformal-like
    p-values. Every other column gets values of its kind that its spec accepts
    (:func:`column_values`), so a column added to the table cannot break the benchmark
    (the explanation columns were, once).
    """
    rng = np.random.default_rng(seed)
    score = rng.gamma(2.0, 1.0, rows)
    threshold = np.quantile(score, 1.0 - anomaly_rate)
    is_anomaly = score > threshold
    level = np.searchsorted([0.25, 0.5, 1.0], (score - threshold) / (score.max() - threshold))
    severity = np.where(is_anomaly, np.array(SEVERITIES[1:])[level], SEVERITIES[0])
    features = [f"sensor_{i}" for i in range(12)]
    top = np.full(rows, None, dtype=object)
    for i in np.flatnonzero(is_anomaly):
        top[i] = '["' + '", "'.join(rng.choice(features, 3, replace=False)) + '"]'
    rank = np.argsort(np.argsort(-score))  # 0 = the highest score
    scoring: dict[str, tuple[str, Any]] = {  # column -> (kind, values)
        "record_key": ("text", [f"machine-{i % 500:03d}/{i:09d}" for i in range(rows)]),
        "event_time": ("timestamp", _moments(rng, rows)),
        "score": ("float", score),
        "normalized_score": ("float", np.clip(score / score.max(), 0.0, 1.0)),
        "is_anomaly": ("bool", is_anomaly),
        "severity": ("text", severity),
        "model_name": ("text", "IForest"),
        "model_version": ("text", "20240430T0300-3f9c2a1b"),
        "run_id": ("text", str(uuid.UUID(int=int(rng.integers(0, 2**63))))),
        "top_features": ("json", top),
        "scored_at": ("timestamp", pd.Timestamp("2024-05-02 03:00:00", tz="UTC")),
        "p_value": ("float", (1.0 + rank) / (rows + 1.0)),
    }
    columns = {}
    for column in spec.frame_columns:
        kind, values = scoring.get(column.name, (None, None))
        if kind != column.kind:
            values = column_values(
                column, rows, is_anomaly, rng, unique=column.name in spec.primary_key
            )
        columns[column.name] = values
    return pd.DataFrame(columns)


def _moments(rng: np.random.Generator, rows: int) -> pd.Series:
    """Random UTC moments within :data:`DAY`, microsecond precision."""
    return pd.Timestamp(DAY, tz="UTC") + pd.to_timedelta(
        rng.integers(0, 86_400_000_000, rows), unit="us"
    )


def column_values(
    column: Column, rows: int, filled: np.ndarray, rng: np.random.Generator, *, unique: bool = False
) -> Any:
    """Values of ``column``'s kind that its spec accepts: its allowed values, within its bounds.

    A NOT NULL column gets a value on every row; a nullable one only where ``filled`` (the
    anomalies, as the explanation columns), NULL elsewhere. ``unique`` (a primary-key column)
    gives every row its own text.
    """
    if column.kind == "text":
        if column.allowed is not None:
            values = rng.choice(sorted(column.allowed), rows).astype(object)
        else:
            values = np.array(
                [f"{column.name}-{i if unique else i % 7}" for i in range(rows)], dtype=object
            )
    elif column.kind == "float":
        low, high = column.bounds or (-1.0, 1.0)
        values = rng.uniform(low, high, rows)
    elif column.kind == "int":
        values = pd.array(rng.integers(0, 1_000, rows), dtype="Int64")
    elif column.kind == "bool":
        values = filled.copy()
    elif column.kind == "timestamp":
        values = _moments(rng, rows)
    elif column.kind == "date":
        values = np.full(rows, pd.Timestamp(DAY).date(), dtype=object)
    else:  # json
        values = np.full(rows, '{"source": "benchmark"}', dtype=object)
    if not column.nullable:
        return values
    return pd.Series(values).where(
        pd.Series(filled), None if column.kind in ("text", "json") else pd.NA
    )


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """Create ``pynomaly_bench_<hex>`` on the server, yield its URL, drop it at the end."""
    server = sa.make_url(server_url).set(drivername="postgresql")
    name = f"pynomaly_bench_{uuid.uuid4().hex}"
    admin_dsn = server.render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def reference_copy(conn: psycopg.Connection, table: str, frame: pd.DataFrame) -> None:
    """(b): the plain psycopg 3 binary COPY of the frame, row by row.

    Missing values (NaN, ``pd.NA``) of nullable columns are sent as NULL, as ours stores them:
    psycopg would send a float NaN as NaN.
    """
    day = pd.Timestamp(DAY).date()
    gaps = [c for c in frame.columns if frame[c].hasnans]
    if gaps:
        frame = frame.assign(
            **{c: frame[c].astype(object).where(frame[c].notna(), None) for c in gaps}
        )
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([PG_TYPES[c.kind] for c in ANOMALY_TABLE.columns])
        for row in frame.itertuples(index=False, name=None):
            copy.write_row((FEED, day, *row))
    conn.commit()


def replay(conn: psycopg.Connection, table: str, data: bytes, fmt: str) -> None:
    """Send already encoded COPY data (the server floor)."""
    view = memoryview(data)
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT {fmt})") as copy:
        for start in range(0, len(view), 1 << 20):
            copy.write(view[start : start + (1 << 20)])
    conn.commit()


def encoded_copy(conn: psycopg.Connection, table: str, data: pa.Table, fmt: str) -> None:
    """Encode a validated arrow table as binary (our encoder) or CSV (pyarrow) and COPY it."""
    if fmt == "binary":
        chunks: Iterator[bytes | memoryview] = binary_copy_stream(ANOMALY_TABLE, data)
    else:
        options = pa_csv.WriteOptions(include_header=False)

        def csv_chunks() -> Iterator[bytes]:
            for batch in data.to_batches(max_chunksize=COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pa_csv.write_csv(batch, buffer, options)
                yield buffer.getvalue()

        chunks = csv_chunks()
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT {fmt})") as copy:
        for chunk in chunks:
            copy.write(chunk)
    conn.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the frame")
    parser.add_argument("--to-sql-rows", type=int, default=100_000, help="rows for (c) to_sql")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats, median kept")
    parser.add_argument("--anomaly-rate", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--server-url",
        default=os.environ.get("PYNOMALY_TEST_PG_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server (default $PYNOMALY_TEST_PG_URL or the local one)",
    )
    args = parser.parse_args(argv)

    print(f"building {args.rows:,} synthetic scored rows ...", flush=True)
    frame = synthetic_scores(args.rows, args.anomaly_rate, args.seed)
    day = pd.Timestamp(DAY).date()
    arrow_table = to_arrow(ANOMALY_TABLE, frame, feed=FEED, day=day)
    times: dict[str, list[float]] = {}

    with fresh_database(args.server_url) as url:
        engine = make_engine(url)
        conn = psycopg.connect(url)
        set_json_dumps(lambda text: text, context=conn)  # (b): JSON strings pass through
        ensure_table(engine, ANOMALY_TABLE)
        tables = ["anomaly_scores", "ref", "floor", "fmt_binary", "fmt_csv", "to_sql"]
        for table in tables[1:]:
            conn.execute(f"CREATE TABLE {table} (LIKE anomaly_scores INCLUDING ALL)")
        conn.commit()
        server_version = conn.execute("SHOW server_version").fetchone()[0]

        def ours() -> None:
            replace_partition(engine, ANOMALY_TABLE, frame, feed=FEED, partition_date=DAY)

        # warm-up load, untimed; its rows as the server encodes them are the floor's input
        ours()
        floor_data = bytearray()
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY anomaly_scores TO STDOUT (FORMAT BINARY)") as out,
        ):
            for block in out:
                floor_data += block
        conn.commit()

        steps: list[tuple[str, Callable[[], object]]] = [
            ("a_ours", ours),
            ("b_reference", lambda: reference_copy(conn, "ref", frame)),
            ("floor", lambda: replay(conn, "floor", floor_data, "binary")),
            ("fmt_binary", lambda: encoded_copy(conn, "fmt_binary", arrow_table, "binary")),
            ("fmt_csv", lambda: encoded_copy(conn, "fmt_csv", arrow_table, "csv")),
        ]
        for repeat in range(args.repeats):
            conn.execute(f"TRUNCATE {', '.join(tables)}")
            conn.commit()
            for name, step in steps:
                conn.execute("CHECKPOINT")
                seconds = timed(step)
                times.setdefault(name, []).append(seconds)
                print(f"  repeat {repeat + 1} {name:<12} {seconds:8.2f} s", flush=True)

        differences = [
            conn.execute(
                f"SELECT COUNT(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) AS d"
            ).fetchone()[0]
            for a, b in (("anomaly_scores", "ref"), ("ref", "anomaly_scores"))
        ]
        conn.commit()
        if differences != [0, 0]:
            print(f"ERROR: ours and the reference stored different rows: {differences}")
            return 1

        conn.execute("CHECKPOINT")
        rerun = timed(ours)
        print(f"  rerun (replace a loaded partition) {rerun:8.2f} s", flush=True)

        subset = frame.head(args.to_sql_rows).copy()
        subset.insert(0, "partition_date", day)
        subset.insert(0, "feed", FEED)
        # to_sql binds JSON through SQLAlchemy's JSONB type, which serializes objects itself
        subset["top_features"] = [
            None if t is None else json.loads(t) for t in subset["top_features"]
        ]
        conn.execute("CHECKPOINT")
        to_sql_seconds = timed(
            lambda: subset.to_sql(
                "to_sql",
                engine,
                if_exists="append",
                index=False,
                dtype={"top_features": JSONB(none_as_null=True)},
            )
        )
        print(f"  to_sql {len(subset):,} rows {to_sql_seconds:8.2f} s", flush=True)
        conn.close()
        engine.dispose()

    median = {name: statistics.median(values) for name, values in times.items()}
    to_sql_extrapolated = to_sql_seconds * args.rows / len(subset)
    reference = median["b_reference"]
    print()
    print(
        f"rows={args.rows:,} repeats={args.repeats} anomaly_rate={args.anomaly_rate}; "
        f"PostgreSQL {server_version}, psycopg {psycopg.__version__}, pyarrow {pa.__version__}, "
        f"pandas {pd.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print("| load | median s | rows/s | time / (b) |")
    print("|---|---:|---:|---:|")
    lines = [
        ("(a) `replace_partition` (ours, binary COPY)", median["a_ours"]),
        ("(b) psycopg `write_row` binary COPY (reference)", reference),
        ("server floor: replay of pre-encoded binary COPY data", median["floor"]),
        (f"(c) pandas `to_sql`, {len(subset):,} rows, extrapolated", to_sql_extrapolated),
        ("ours replacing a loaded partition (1 run)", rerun),
        ("format: binary COPY of the validated table (our encoder)", median["fmt_binary"]),
        ("format: CSV COPY of the validated table (pyarrow writer)", median["fmt_csv"]),
    ]
    for label, seconds in lines:
        print(
            f"| {label} | {seconds:.2f} | {args.rows / seconds:,.0f} | {seconds / reference:.2f} |"
        )
    print()
    print(
        f"ours / reference = {median['a_ours'] / reference:.2f} (target <= 1.2); "
        f"ours / floor = {median['a_ours'] / median['floor']:.2f}; "
        f"to_sql / ours = {to_sql_extrapolated / median['a_ours']:.1f}; "
        f"CSV / binary = {median['fmt_csv'] / median['fmt_binary']:.2f}; "
        "(a) and (b) stored identical rows"
    )
    per_repeat = [a / b for a, b in zip(times["a_ours"], times["b_reference"], strict=True)]
    print(f"ours / reference per repeat: {', '.join(f'{r:.2f}' for r in per_repeat)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
