"""Scoring a validated Parquet partition too large for memory, chunk by chunk.

:func:`score_parquet` reads the partition with ``pyarrow.parquet.ParquetFile.iter_batches``
(``chunk_rows`` rows at a time, only the columns scoring needs), scores each chunk with
:meth:`AnomalyModel.score`, assembles the same output columns as the in-memory path
(:func:`assemble_scored_frame`) and appends them to the destination with one
``pyarrow.parquet.ParquetWriter`` (one row group per chunk). Peak memory is one chunk's working
set plus 10 bytes per row kept for the partition's metrics (score, flag, label): the
partition-level p99, histogram and ROC-AUC need every score (100 MB at 1e7 rows). The destination is written to a
temporary file in its directory and renamed at the end, so a failed run never leaves a
half-written partition.

For a detector that scores each row on its own (IForest, KNN, LOF, PCA, ECOD after fit, ...)
the chunked output equals the in-memory output row for row. Detectors that standardize or
score a batch relative to itself (DIF, CD, COF, LMDD, LOCI, SOD, SOS; see docs/detectors.md)
give slightly batch-dependent scores in either path; large chunks keep the difference small.
A sequence-aware detector (ConvAE, LSTMAE) gets each chunk with the tail of the rows before it
(:meth:`AnomalyModel.history_tail`), so in a time-ordered file its chunked scores equal the
in-memory ones too.

The alert budget (``scoring.max_alerts_per_day`` / ``max_alert_rate``,
:class:`pynomaly_core.severity.AlertBudget`) ranks a partition's flagged rows by score: only the
top ``ScoringLayout.alert_limit`` are alerts (``is_alert``). It needs every score of the
partition, so the chunked path writes ``is_alert = is_anomaly`` first and, when the budget binds,
rewrites the ``is_alert`` column row group by row group at the end (memory: one row group).

Example
-------
>>> layout = ScoringLayout(record_key="reading_id", event_time="event_time",
...                        passthrough=("machine_id",), label=None,
...                        model_name="IForest", model_version="3")     # doctest: +SKIP
>>> result = score_parquet(model, "validated/2026-11-01.parquet",
...                        "anomaly_scores/2026-11-01.parquet", layout, chunk_rows=250_000)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from pynomaly_core.severity import LEVELS, within_budget

if TYPE_CHECKING:
    from pynomaly_core.model import AnomalyModel

SCORE_COLUMNS = ["score", "normalized_score", "is_anomaly", "p_value", "severity", "top_features"]
SCORE_DTYPES = ["float64", "float64", "bool", "float64", "object", "object"]
SEVERITY_LEVELS = LEVELS[1:]  # the levels of flagged rows ("none" is every other row)
NO_LABEL = -1  # label value kept for rows whose label is missing


@dataclass(frozen=True)
class ScoringLayout:
    """Which input columns travel into the scored frame and what they are called there."""

    record_key: str
    event_time: str
    passthrough: tuple[str, ...]
    label: str | None
    model_name: str
    model_version: str
    alert_limit: int | None = None
    """Alerts the partition may raise (:meth:`AlertBudget.limit`); None: every flagged row."""

    @property
    def kept(self) -> list[str]:
        return [self.record_key, self.event_time, *self.passthrough]


def empty_scores() -> pd.DataFrame:
    """The score columns of :meth:`AnomalyModel.score` for zero rows."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(SCORE_COLUMNS, SCORE_DTYPES)})


def assemble_scored_frame(
    validated: pd.DataFrame,
    scored: pd.DataFrame,
    layout: ScoringLayout,
    alerts: np.ndarray | None = None,
) -> pd.DataFrame:
    """The stored ``anomaly_scores`` frame: kept input columns, score columns, model, label.

    The columns are the input's and the scores' own arrays, put side by side under a new
    ``RangeIndex`` without copying them (selecting, re-indexing, concatenating and renaming
    copied each kept column four times, a chunk's worth of memory and time per chunk). The
    frame therefore shares memory with ``validated`` and ``scored``: neither is written to
    afterwards, by the asset or by :func:`score_parquet`. ``alerts``: the ``is_alert`` column
    (None: every flagged row is an alert).
    """
    renamed = {layout.record_key: "record_key", layout.event_time: "event_time"}
    index = pd.RangeIndex(len(validated))
    columns = [validated[c] for c in layout.kept] + [scored[c] for c in scored.columns]
    # Series keep their arrays as they are; bare arrays would be re-inferred (object columns scanned)
    out = pd.DataFrame(
        {i: c.set_axis(index, copy=False) for i, c in enumerate(columns)}, copy=False
    )
    out.columns = [renamed.get(c, c) for c in [*layout.kept, *scored.columns]]
    out["is_alert"] = (
        scored["is_anomaly"].to_numpy(dtype=bool).copy() if alerts is None else np.asarray(alerts)
    )
    out["model_name"] = layout.model_name
    out["model_version"] = layout.model_version
    if layout.label is not None:
        out["label"] = validated[layout.label].set_axis(index, copy=False)
    return out


def score_frame(
    model: AnomalyModel,
    validated: pd.DataFrame,
    layout: ScoringLayout,
    history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Score an in-memory partition (``model``: a fitted :class:`AnomalyModel`).

    ``history``: rows before the partition (the previous partition's tail) that a model with
    derived features uses as their warm-up.
    """
    scored = _score(model, validated, history) if len(validated) else empty_scores()
    alerts = within_budget(
        scored["score"].to_numpy(dtype="float64"),
        scored["is_anomaly"].to_numpy(dtype=bool),
        layout.alert_limit,
    )
    return assemble_scored_frame(validated, scored, layout, alerts)


@dataclass
class ChunkedScoringResult:
    """What :func:`score_parquet` wrote, with the arrays the partition's metrics need."""

    path: Path
    rows: int
    chunks: int
    scoring_seconds: float
    """Seconds spent in ``model.score`` (reading and writing excluded), as in the in-memory path."""
    total_seconds: float
    scores: np.ndarray
    flags: np.ndarray
    labels: np.ndarray | None
    """Labels as int8, :data:`NO_LABEL` where missing; None when the feed has no label."""
    alerts: np.ndarray
    """``is_alert`` of every row (the flags within the alert budget)."""
    severity_counts: dict[str, int] = field(default_factory=dict)


def _needed_columns(
    model: AnomalyModel, layout: ScoringLayout, available: Sequence[str]
) -> list[str]:
    wanted = [*layout.kept, *(f.name for f in model.features)]
    wanted += list(getattr(model, "history_columns", []))
    if layout.label is not None:
        wanted.append(layout.label)
    missing = [c for c in dict.fromkeys(wanted) if c not in available]
    if missing:
        raise KeyError(
            f"columns {missing} are missing from the validated partition (has {list(available)})"
        )
    return list(dict.fromkeys(wanted))


def _output_schema(first: pd.DataFrame, source_schema: Any, layout: ScoringLayout) -> Any:
    """Arrow schema of the output: input columns keep their stored types, score columns fixed ones.

    The first chunk alone cannot decide a column that is empty in it (``top_features`` of a chunk
    without anomalies, a passthrough column that is null there) — the stored partition's types can.
    """
    import pyarrow as pa

    fixed = {
        "score": pa.float64(),
        "normalized_score": pa.float64(),
        "is_anomaly": pa.bool_(),
        "is_alert": pa.bool_(),
        "p_value": pa.float64(),
        "severity": pa.string(),
        "top_features": pa.string(),
        "model_name": pa.string(),
        "model_version": pa.string(),
    }
    renamed = {layout.record_key: "record_key", layout.event_time: "event_time"}
    if layout.label is not None:
        renamed[layout.label] = "label"
    stored = {renamed.get(f.name, f.name): f.type for f in source_schema}
    table = pa.Table.from_pandas(first, preserve_index=False)
    fields = [
        pa.field(name, fixed.get(name, stored.get(name, table.schema.field(name).type)))
        for name in first.columns
    ]
    return pa.schema(fields, metadata=table.schema.metadata)


def _needs_history(model: AnomalyModel) -> bool:
    """Whether ``model`` scores with warm-up rows (derived features or a sequence-aware detector)."""
    return bool(getattr(model, "needs_history", False))


def _score(model: AnomalyModel, frame: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    """``model.score(frame)``, with ``history`` for a model that needs warm-up (others take none)."""
    if not _needs_history(model):
        return model.score(frame)
    return model.score(frame, history=history)


def _next_history(
    model: AnomalyModel, history: pd.DataFrame | None, chunk: pd.DataFrame
) -> pd.DataFrame | None:
    """The warm-up of the chunk after ``chunk``: the tail of ``history`` + ``chunk`` it needs."""
    if not _needs_history(model) or not len(chunk):
        return None
    columns = model.history_columns
    rows = (
        chunk[columns]
        if history is None or not len(history)
        else pd.concat([history[columns], chunk[columns]], ignore_index=True)
    )
    # every row so far counts: the next chunk starts after them in a time-ordered file
    ordering = model.series if model.sequence_rows else model.derivation
    if ordering is None:
        raise ValueError("a model scoring with warm-up rows needs its series order or derivation")
    time_column = ordering.event_time
    after = pd.to_datetime(rows[time_column], utc=True).max() + pd.Timedelta(1, "ns")
    return model.history_tail(rows, after)


def score_parquet(
    model: AnomalyModel,
    source: str | Path,
    destination: str | Path,
    layout: ScoringLayout,
    *,
    chunk_rows: int,
    compression: str = "snappy",
    history: pd.DataFrame | None = None,
) -> ChunkedScoringResult:
    """Score the validated Parquet file ``source`` in chunks of ``chunk_rows`` rows into ``destination``.

    Parameters
    ----------
    model : AnomalyModel
        Fitted model; ``model.score`` is called once per chunk.
    source, destination : path
        The validated partition and the scored partition to write (replaced atomically).
    layout : ScoringLayout
    chunk_rows : int
        Rows per chunk (the feed's ``scoring.chunk_rows``).
    compression : str
        Parquet codec of the output (pandas' ``to_parquet`` default is snappy too).
    history : DataFrame or None
        Rows before the partition (a model with derived features: their warm-up). Each later
        chunk gets the tail of the rows before it, so a time-ordered file scores exactly as in
        memory.

    Returns
    -------
    ChunkedScoringResult
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if chunk_rows < 1:
        raise ValueError(
            f"chunk_rows must be at least 1, got {chunk_rows} (setting scoring.chunk_rows)"
        )
    source, destination = Path(source), Path(destination)
    start = time.perf_counter()
    # pre_buffer off: with it, iter_batches keeps every row group it has read until the end
    # (peak memory then grows with the file: 0.7 GB at 1e6 rows, 1.2 GB at 1e7 in benchmarks/streaming.py)
    parquet = pq.ParquetFile(source, pre_buffer=False)
    columns = _needed_columns(model, layout, parquet.schema_arrow.names)
    total = parquet.metadata.num_rows
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=destination.parent)
    os.close(fd)
    writer = None
    # filled in place, chunk by chunk: 10 bytes a row, never a second copy
    scores = np.empty(total, dtype="float64")
    flags = np.empty(total, dtype=bool)
    labels = np.empty(total if layout.label is not None else 0, dtype="int8")
    severity_counts = dict.fromkeys(SEVERITY_LEVELS, 0)
    rows = chunks = 0
    scoring_seconds = 0.0
    try:
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
            chunk = pa.Table.from_batches([batch]).to_pandas()
            t0 = time.perf_counter()
            scored = _score(model, chunk, history) if len(chunk) else empty_scores()
            scoring_seconds += time.perf_counter() - t0
            history = _next_history(model, history, chunk)
            out = assemble_scored_frame(chunk, scored, layout)
            del chunk, scored
            if writer is None:
                schema = _output_schema(out, parquet.schema_arrow, layout)
                writer = pq.ParquetWriter(tmp, schema, compression=compression)
            writer.write_table(pa.Table.from_pandas(out, schema=schema, preserve_index=False))
            end = rows + len(out)
            scores[rows:end] = out["score"].to_numpy(dtype="float64")
            flags[rows:end] = out["is_anomaly"].to_numpy(dtype=bool)
            if layout.label is not None:
                labels[rows:end] = (
                    out["label"].astype("float64").fillna(NO_LABEL).to_numpy().astype("int8")
                )
            counts = out["severity"].value_counts()
            for level in SEVERITY_LEVELS:
                severity_counts[level] += int(counts.get(level, 0))
            rows += len(out)
            chunks += 1
            del out
        alerts = within_budget(scores[:rows], flags[:rows], layout.alert_limit)
        if writer is None:  # an empty partition: write the empty frame the in-memory path would
            empty = parquet.read(columns=columns).to_pandas()
            score_frame(model, empty, layout).to_parquet(tmp, index=False)
        else:
            writer.close()
            writer = None
            if not np.array_equal(alerts, flags[:rows]):
                _rewrite_alerts(Path(tmp), alerts, compression)
        os.replace(tmp, destination)
    except BaseException:
        if writer is not None:
            writer.close()
        Path(tmp).unlink(missing_ok=True)
        raise
    return ChunkedScoringResult(
        path=destination,
        rows=rows,
        chunks=chunks,
        scoring_seconds=scoring_seconds,
        total_seconds=time.perf_counter() - start,
        scores=scores[:rows],
        flags=flags[:rows],
        labels=labels[:rows] if layout.label is not None else None,
        severity_counts=severity_counts,
        alerts=alerts,
    )


def _rewrite_alerts(path: Path, alerts: np.ndarray, compression: str) -> None:
    """Replace the ``is_alert`` column of the scored file ``path`` by ``alerts``, one row group at
    a time (the budget is known only once every chunk is scored)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fd, rewritten = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=path.parent)
    os.close(fd)
    try:
        source = pq.ParquetFile(path, pre_buffer=False)
        column = source.schema_arrow.get_field_index("is_alert")
        with pq.ParquetWriter(rewritten, source.schema_arrow, compression=compression) as writer:
            start = 0
            for group in range(source.num_row_groups):
                table = source.read_row_group(group)
                end = start + table.num_rows
                table = table.set_column(
                    column, "is_alert", pa.array(alerts[start:end], type=pa.bool_())
                )
                writer.write_table(table)
                start = end
        os.replace(rewritten, path)
    except BaseException:
        Path(rewritten).unlink(missing_ok=True)
        raise


def parquet_rows(path: str | Path) -> int:
    """Row count of a Parquet file from its footer (nothing else is read)."""
    import pyarrow.parquet as pq

    return cast("int", pq.ParquetFile(path).metadata.num_rows)


# ---------------------------------------------------------------- fan-out: one partition, many steps
#
# ``scoring.fan_out_rows`` splits a partition into row ranges (:func:`chunk_ranges`) that separate
# processes or machines score on their own (:func:`score_parquet_range`, one file per range);
# :func:`combine_scored_chunks` joins the files in order into the partition's scored file. The
# combined file equals what :func:`score_parquet` writes for the same rows: every chunk is scored
# with the warm-up of the rows before it, and the alert budget is applied over the whole partition.


def chunk_ranges(rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """``[start, stop)`` row ranges of at most ``chunk_rows`` rows covering ``rows`` rows, in order
    (one empty range for an empty partition, so it is still written).

    >>> chunk_ranges(2500, 1000)
    [(0, 1000), (1000, 2000), (2000, 2500)]
    >>> chunk_ranges(0, 1000)
    [(0, 0)]
    """
    if chunk_rows < 1:
        raise ValueError(
            f"chunk_rows must be at least 1, got {chunk_rows} (setting scoring.fan_out_rows)"
        )
    if rows <= 0:
        return [(0, 0)]
    return [(start, min(start + chunk_rows, rows)) for start in range(0, rows, chunk_rows)]


def read_rows(source: str | Path, columns: Sequence[str], start: int, stop: int) -> pd.DataFrame:
    """Rows ``[start, stop)`` of the Parquet file ``source`` (only ``columns``), reading only the
    row groups that hold them."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source, pre_buffer=False)
    groups, first, offset = [], None, 0
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        if offset + size > start and offset < stop:
            groups.append(group)
            first = offset if first is None else first
        offset += size
    if not groups:
        return parquet.schema_arrow.empty_table().select(list(columns)).to_pandas()
    table = parquet.read_row_groups(groups, columns=list(columns))
    begin = start - (first or 0)
    return cast("pd.DataFrame", table.slice(begin, stop - start).to_pandas())


@dataclass(frozen=True)
class ScoredChunk:
    """One row range of a partition scored into its own file by :func:`score_parquet_range`."""

    index: int
    path: Path
    rows: int
    scoring_seconds: float


def score_parquet_range(
    model: AnomalyModel,
    source: str | Path,
    destination: str | Path,
    layout: ScoringLayout,
    *,
    start: int,
    stop: int,
    index: int = 0,
    history: pd.DataFrame | None = None,
) -> ScoredChunk:
    """Score rows ``[start, stop)`` of the validated Parquet file ``source`` into ``destination``.

    ``history``: the rows before the partition (its warm-up, as for :func:`score_parquet`); a
    range that does not start at row 0 also gets the tail of the partition's rows before it, so
    each range scores exactly as it would inside one pass over the file. ``is_alert`` is written
    as ``is_anomaly``: the alert budget needs the whole partition (:func:`combine_scored_chunks`).
    ``destination`` is replaced atomically, so a retried range overwrites its own file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    source, destination = Path(source), Path(destination)
    schema_arrow = pq.ParquetFile(source).schema_arrow
    columns = _needed_columns(model, layout, schema_arrow.names)
    if _needs_history(model) and start > 0:
        before = read_rows(source, model.history_columns, 0, start)
        history = _next_history(model, history, before)
    chunk = read_rows(source, columns, start, stop)
    t0 = time.perf_counter()
    scored = _score(model, chunk, history) if len(chunk) else empty_scores()
    seconds = time.perf_counter() - t0
    out = assemble_scored_frame(chunk, scored, layout)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=destination.parent)
    os.close(fd)
    try:
        schema = _output_schema(out, schema_arrow, layout)
        pq.write_table(pa.Table.from_pandas(out, schema=schema, preserve_index=False), tmp)
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ScoredChunk(index=index, path=destination, rows=len(out), scoring_seconds=seconds)


def combine_scored_chunks(
    chunks: Sequence[ScoredChunk],
    destination: str | Path,
    layout: ScoringLayout,
    compression: str = "snappy",
) -> ChunkedScoringResult:
    """Join the files of :func:`score_parquet_range` in ``index`` order into ``destination``.

    The partition's alert budget (``layout.alert_limit``) is applied over every chunk's scores
    while the rows are copied (one chunk in memory at a time). ``destination`` is replaced
    atomically: combining the same chunks again writes the same file, and a chunk listed twice (a
    retried step reported twice) is refused rather than duplicated.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    ordered = sorted(chunks, key=lambda c: c.index)
    indexes = [c.index for c in ordered]
    if indexes != list(range(len(ordered))):
        raise ValueError(
            f"scored chunks {indexes} are not the ranges 0..{len(ordered) - 1} of one partition, "
            "each once; rescore the partition"
        )
    parts = [
        pq.read_table(
            c.path,
            columns=["score", "is_anomaly", "severity"]
            + (["label"] if layout.label is not None else []),
        )
        for c in ordered
    ]
    scores = np.concatenate([p.column("score").to_numpy() for p in parts]).astype("float64")
    flags = np.concatenate([p.column("is_anomaly").to_numpy() for p in parts]).astype(bool)
    labels = None
    if layout.label is not None:
        labels = np.concatenate(
            [
                p.column("label").to_pandas().astype("float64").fillna(NO_LABEL).to_numpy()
                for p in parts
            ]
        ).astype("int8")
    severity_counts = dict.fromkeys(SEVERITY_LEVELS, 0)
    for part in parts:
        counts = part.column("severity").to_pandas().value_counts()
        for level in SEVERITY_LEVELS:
            severity_counts[level] += int(counts.get(level, 0))
    del parts
    alerts = within_budget(scores, flags, layout.alert_limit)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=destination.parent)
    os.close(fd)
    writer = None
    try:
        row = 0
        for chunk in ordered:
            table = pq.read_table(chunk.path)
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(tmp, schema, compression=compression)
            end = row + table.num_rows
            table = table.set_column(
                table.schema.get_field_index("is_alert"),
                "is_alert",
                pa.array(alerts[row:end], type=pa.bool_()),
            )
            writer.write_table(table.cast(schema))
            row = end
        if writer is not None:
            writer.close()
            writer = None
        os.replace(tmp, destination)
    except BaseException:
        if writer is not None:
            writer.close()
        Path(tmp).unlink(missing_ok=True)
        raise
    return ChunkedScoringResult(
        path=destination,
        rows=len(scores),
        chunks=len(ordered),
        scoring_seconds=sum(c.scoring_seconds for c in ordered),
        total_seconds=time.perf_counter() - start,
        scores=scores,
        flags=flags,
        labels=labels,
        alerts=alerts,
        severity_counts=severity_counts,
    )
