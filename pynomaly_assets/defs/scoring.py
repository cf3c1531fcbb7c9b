"""Scoring: ``anomaly_scores`` scores one validated partition with the current champion.

A partition of more than ``scoring.chunk_rows`` rows is never loaded whole: it is streamed from
its Parquet file in chunks (:func:`pynomaly_core.streaming.score_parquet`) straight into the
file the frame IO manager would have written, so downstream assets read the same format.

No hindsight (:func:`pynomaly_core.lifecycle.rescoring_verdict`): a partition already scored by
another model version is not rescored by a champion whose training window contains the day or
lies after it — the run fails naming the day, both versions and the window — unless the run
config sets ``allow_hindsight: true``. Every materialization records the version that scored
it (``model_version``) and the one whose scores it replaced (``previous_model_version``).
"""

import dataclasses
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
import pandas as pd

from pynomaly_assets.defs.validation import (
    AcceptFailedValidation,
    accept_hint,
    accepted_partitions,
    failed_validations,
    is_accepted,
    record_accepted,
)
from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.metadata import histogram_table, report_links, rounded
from pynomaly_assets.names import MODEL_VERSION_KEY, PREVIOUS_MODEL_VERSION_KEY
from pynomaly_assets.resources import FrameStoreResource, ModelStoreResource, ReportStoreResource
from pynomaly_core.severity import budget_metadata
from pynomaly_core.streaming import (
    NO_LABEL,
    SEVERITY_LEVELS,
    ScoringLayout,
    parquet_rows,
    score_frame,
    score_parquet,
)

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.lifecycle import ChampionRecord


def histogram_png(scores: np.ndarray, threshold: float, title: str) -> bytes:
    """A score histogram with the threshold marked, as a PNG (log-scale counts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=90)
    if len(scores):
        ax.hist(scores, bins=60, color="#4f6bed")
    ax.axvline(threshold, color="#d0342c", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("rows (log)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def score_metadata(
    scores: np.ndarray,
    flags: np.ndarray,
    severity_counts: dict[str, int],
    labels: np.ndarray | None,
    seconds: float,
    champion: dict,
    title: str,
    histogram_png_path: Path | None = None,
) -> dict:
    """Metadata of one scored partition; ``labels`` as int8 codes, :data:`NO_LABEL` where missing.

    The histogram is a table the UI shows inline; with ``histogram_png_path`` its plot is written
    there too (linked by the caller). Floats are rounded (:func:`pynomaly_assets.metadata.rounded`).
    """
    rows = len(scores)
    anomalies = int(flags.sum())
    metadata: dict = {
        "dagster/row_count": rows,
        "anomalies": anomalies,
        "anomaly_rate": float(anomalies / rows) if rows else 0.0,
        "mean_score": float(scores.mean()) if rows else 0.0,
        "score_p99": float(np.quantile(scores, 0.99)) if rows else 0.0,
        "scoring_seconds": float(seconds),
        "rows_per_second": float(rows / seconds) if seconds > 0 and rows else 0.0,
        "model_name": champion["detector"],
        MODEL_VERSION_KEY: str(champion["version"]),
        **{f"severity_{level}": int(severity_counts.get(level, 0)) for level in SEVERITY_LEVELS},
        "threshold": float(champion["threshold"]),
        "score_histogram": histogram_table(scores, float(champion["threshold"])),
    }
    if histogram_png_path is not None:
        histogram_png_path.write_bytes(histogram_png(scores, float(champion["threshold"]), title))
    if labels is not None:
        known = labels != NO_LABEL
        # a streamed partition can have 1e7 rows: no copies when every row is labelled
        y, s, flagged = (
            (labels, scores, flags) if known.all() else (labels[known], scores[known], flags[known])
        )
        if len(np.unique(y)) == 2:
            from sklearn.metrics import average_precision_score, roc_auc_score

            metadata["roc_auc"] = float(roc_auc_score(y, s))
            metadata["average_precision"] = float(average_precision_score(y, s))
            metadata["precision_at_threshold"] = (
                float((y[flagged] == 1).mean()) if flagged.any() else 0.0
            )
            metadata["recall_at_threshold"] = float(flagged[y == 1].mean())
    return rounded(metadata)


def label_codes(labels: pd.Series) -> np.ndarray:
    return labels.astype("float64").fillna(NO_LABEL).to_numpy().astype("int8")


class ScoringConfig(AcceptFailedValidation):
    """Run config of ``anomaly_scores`` (``accept_failed_validation``: see :func:`validation_gate`)."""

    allow_hindsight: bool = False
    """Rescore a partition that another model version scored even though the champion's training
    window contains the day or lies after it (the model has seen this day or later ones). Off: such
    a day keeps its first scores and the run fails saying so."""


def previous_model_version(context: dg.AssetExecutionContext) -> str | None:
    """The model version whose scores the partition holds now (None when it was never scored)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=context.asset_key, asset_partitions=[context.partition_key]
        ),
        limit=1,
    ).records
    meta = (
        records[0].asset_materialization.metadata
        if records and records[0].asset_materialization
        else {}
    )
    value = meta.get(MODEL_VERSION_KEY)
    return None if value is None or value.value in (None, "none") else str(value.value)


def hindsight_guard(
    context: dg.AssetExecutionContext, record: "ChampionRecord", allow_hindsight: bool
) -> dict:
    """Refuse (``dg.Failure``) to rescore with hindsight; else the metadata naming both versions."""
    from pynomaly_core.lifecycle import rescoring_verdict

    op = context.op_def.name
    verdict = rescoring_verdict(
        record,
        context.partition_key,
        previous_model_version(context),
        allow_hindsight=allow_hindsight,
        config_hint=f"run config allow_hindsight: true on {context.asset_key.to_user_string()} "
        f"(ops: {{{op}: {{config: {{allow_hindsight: true}}}}}})",
    )
    if not verdict.allowed:
        raise dg.Failure(verdict.reason, allow_retries=False)
    if verdict.previous_version not in (None, str(record.version)):
        context.log.info(verdict.reason)
    return {
        PREVIOUS_MODEL_VERSION_KEY: verdict.previous_version or "none",
        "hindsight": verdict.hindsight,
    }


def validation_gate(
    context: dg.AssetExecutionContext, fc: FeedContext, configured: list[str]
) -> dict:
    """Refuse (``dg.Failure``) a partition whose latest ``validated`` evaluation failed a blocking check.

    The checks block downstream steps only inside the run that evaluated them; a later scoring
    run reads the verdict from the instance. Returns the metadata recording an accepted override.
    """
    partition = context.partition_key
    failed = failed_validations(context.instance, fc.key("validated"), [partition])
    if not failed:
        return {}
    if not is_accepted(partition, accepted_partitions(context, configured)):
        raise dg.Failure(
            f"feed {fc.name!r}: {failed[partition].describe()}, so "
            f"{context.asset_key.to_user_string()} refuses to use it: a partition that failed "
            f"validation is neither scored, exported nor trained on until it passes. Fix the source and "
            f"re-materialize {fc.key('validated').to_user_string()} (job {fc.name}__ingest), or, "
            f"{accept_hint(context.asset_key, context.op_def.name, partition)}.",
            allow_retries=False,
        )
    return record_accepted(context, failed)


def alert_limit(context: dg.AssetExecutionContext, fc: FeedContext, rows: int) -> int | None:
    """Alerts the partition may raise under the feed's budget (None: no budget), the per-day
    number prorated to the partition's length (:class:`~pynomaly_core.severity.AlertBudget`)."""
    from pynomaly_core.severity import AlertBudget

    budget = AlertBudget(fc.feed.scoring.max_alerts_per_day, fc.feed.scoring.max_alert_rate)
    if not budget.active:
        return None
    window = context.partition_time_window
    days = (pd.Timestamp(window.end) - pd.Timestamp(window.start)) / pd.Timedelta(days=1)
    return budget.limit(rows, days)


#: at most this many earlier partitions are read for one partition's warm-up (a sparse feed's
#: previous day may hold fewer rows than the longest look-back)
MAX_WARMUP_PARTITIONS = 31


def warmup_history(
    context: dg.AssetExecutionContext, fc: FeedContext, store, model
) -> pd.DataFrame | None:
    """The earlier rows that the champion's derived features and sequence-aware detector need
    (None: neither; :meth:`AnomalyModel.history_tail`).

    Read explicitly from the previous validated partitions (only the columns the warm-up uses),
    going back until the warm-up is covered for every entity of this partition
    (:func:`~pynomaly_core.features.derived.warmup_covered`), at most
    :data:`MAX_WARMUP_PARTITIONS`, so a day scored alone equals the same day scored inside a long
    run. A missing earlier partition stops the walk with a warning: the rows it would have
    warmed up get imputed derived values.
    """
    if not model.needs_history:
        return None
    keys = fc.partitions_def.get_partition_keys()
    position = keys.index(context.partition_key)
    columns = model.history_columns
    start = pd.Timestamp(context.partition_time_window.start).tz_convert("UTC")
    validated = list(fc.key("validated").path)
    entities = None
    if model.warmup_entity is not None:
        entities = pd.read_parquet(
            store.path(validated, context.partition_key), columns=[model.warmup_entity]
        )
        entities = entities[model.warmup_entity].to_numpy()
    parts: list[pd.DataFrame] = []
    for key in reversed(keys[max(0, position - MAX_WARMUP_PARTITIONS) : position]):
        path = store.path(validated, key)
        if not path.exists():
            context.log.warning(
                f"{path}: partition {key} of {fc.key('validated').to_user_string()} is not "
                f"materialized; {context.partition_key} is scored with the warm-up read before it"
            )
            break
        parts.insert(0, pd.read_parquet(path, columns=columns))
        if model.warmup_covered(pd.concat(parts, ignore_index=True), start, entities):
            break
    return model.history_tail(pd.concat(parts, ignore_index=True), start) if parts else None


def build_scoring_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    if feed.scoring.fan_out_rows is not None:  # one step per chunk of rows (scoring_fan_out.py)
        from pynomaly_assets.defs.scoring_fan_out import build_fan_out_scoring_asset

        return build_fan_out_scoring_asset(fc)

    @dg.asset(
        key=fc.key("anomaly_scores"),
        # validated is a dependency, not a loaded input: a partition too large for memory is streamed
        deps=[fc.key("validated")],
        ins={"champion": dg.AssetIn(key=fc.key("champion"))},
        partitions_def=fc.partitions_def,
        backfill_policy=fc.backfill_policy,
        group_name=feed.name,
        kinds={"parquet"},
        io_manager_key="frame_io_manager",
        tags=fc.tags,
        description=f"Per-row anomaly score, normalized score, flag, p-value, severity and top features for "
        f"one day of `{feed.name}`, scored by the current champion, with the model version that scored it.",
    )
    def anomaly_scores(
        context: dg.AssetExecutionContext,
        config: ScoringConfig,
        champion: dict,
        frame_store: FrameStoreResource,
        model_store: ModelStoreResource,
        reports: ReportStoreResource,
    ):
        return fc.each_partition(
            context,
            score_one,
            config=config,
            champion=champion,
            frame_store=frame_store,
            model_store=model_store,
            reports=reports,
        )

    def score_one(
        context: dg.AssetExecutionContext,
        config: ScoringConfig,
        champion: dict,
        frame_store: FrameStoreResource,
        model_store: ModelStoreResource,
        reports: ReportStoreResource,
    ):
        from pynomaly_core.lifecycle import ChampionRecord, NoChampionError

        accepted = validation_gate(context, fc, config.accept_failed_validation)
        record = ChampionRecord.from_value(champion)
        try:
            model = record.load(model_store.signing_key())
        except NoChampionError as exc:
            raise dg.Failure(
                f"feed {feed.name!r} has no champion to score with ({exc.reason}); "
                f"materialize {fc.key('champion').to_user_string()} (job {feed.name}__train) first"
            ) from exc
        versions = hindsight_guard(context, record, config.allow_hindsight)
        layout = ScoringLayout(
            record_key=feed.record_key,
            event_time=feed.event_time,
            passthrough=tuple(feed.passthrough),
            label=feed.label,
            model_name=str(record.detector),
            model_version=str(record.version),
        )
        store = frame_store.store()
        partition = context.partition_key
        source = store.path(list(fc.key("validated").path), partition)
        if not source.exists():
            raise dg.Failure(
                f"{source}: no stored data for partition {partition} of asset "
                f"{fc.key('validated').to_user_string()}; materialize it first (job {feed.name}__ingest)"
            )
        title = f"{feed.name} {partition}"
        # one plot per day and model version, beside the drift reports: a rescore keeps the first
        png = reports.feed_dir(feed.name, "scores") / f"{partition}.model-{record.version}.hist.png"
        links = report_links(reports.base_dir, reports.base_url, score_histogram_png=png)
        chunk_rows = feed.scoring.chunk_rows
        history = warmup_history(context, fc, store, model)
        rows = parquet_rows(source)
        layout = dataclasses.replace(layout, alert_limit=alert_limit(context, fc, rows))
        if rows > chunk_rows:
            destination = store.path(list(context.asset_key.path), partition)
            result = score_parquet(
                model, source, destination, layout, chunk_rows=chunk_rows, history=history
            )
            metadata = score_metadata(
                result.scores,
                result.flags,
                result.severity_counts,
                result.labels,
                result.scoring_seconds,
                champion,
                title,
                png,
            )
            metadata.update(
                {
                    **links,
                    **versions,
                    **accepted,
                    **budget_metadata(result.flags, result.alerts, layout.alert_limit),
                    "path": dg.MetadataValue.path(str(destination)),
                    "scoring_chunks": result.chunks,
                    "chunk_rows": chunk_rows,
                }
            )
            # the file is written; the frame IO manager stores nothing for a None value
            return dg.MaterializeResult(value=None, metadata=rounded(metadata))

        validated = store.read(list(fc.key("validated").path), partition)
        start = time.perf_counter()
        out = score_frame(model, validated, layout, history=history)
        seconds = time.perf_counter() - start
        metadata = score_metadata(
            out["score"].to_numpy(dtype="float64"),
            out["is_anomaly"].to_numpy(dtype=bool),
            out["severity"].value_counts().to_dict(),
            label_codes(out["label"]) if feed.label is not None else None,
            seconds,
            champion,
            title,
            png,
        )
        budget = budget_metadata(
            out["is_anomaly"].to_numpy(dtype=bool),
            out["is_alert"].to_numpy(dtype=bool),
            layout.alert_limit,
        )
        return dg.MaterializeResult(
            value=out, metadata=rounded({**metadata, **links, **versions, **accepted, **budget})
        )

    return anomaly_scores
