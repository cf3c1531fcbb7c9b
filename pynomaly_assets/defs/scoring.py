"""Scoring: ``anomaly_scores`` scores one validated partition with the current champion.

A partition of more than ``scoring.chunk_rows`` rows is never loaded whole: it is streamed from
its Parquet file in chunks (:func:`pynomaly_core.streaming.score_parquet`) straight into the
file the frame IO manager would have written, so downstream assets read the same format.
"""


import base64
import io
import time

import dagster as dg
import numpy as np
import pandas as pd

from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.resources import FrameStoreResource
from pynomaly_core.streaming import (
    NO_LABEL,
    SEVERITY_LEVELS,
    ScoringLayout,
    parquet_rows,
    score_frame,
    score_parquet,
)


def histogram_markdown(scores: np.ndarray, threshold: float, title: str) -> str:
    """A score histogram with the threshold marked, as a markdown image (base64 PNG)."""
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
    return f"![score histogram](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def score_metadata(scores: np.ndarray, flags: np.ndarray, severity_counts: dict[str, int],
                   labels: np.ndarray | None, seconds: float, champion: dict, title: str) -> dict:
    """Metadata of one scored partition; ``labels`` as int8 codes, :data:`NO_LABEL` where missing."""
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
        "model_version": str(champion["version"]),
        **{f"severity_{level}": int(severity_counts.get(level, 0)) for level in SEVERITY_LEVELS},
        "score_histogram": dg.MetadataValue.md(histogram_markdown(scores, float(champion["threshold"]), title)),
    }
    if labels is not None:
        known = labels != NO_LABEL
        # a streamed partition can have 1e7 rows: no copies when every row is labelled
        y, s, flagged = (labels, scores, flags) if known.all() else (labels[known], scores[known], flags[known])
        if len(np.unique(y)) == 2:
            from sklearn.metrics import average_precision_score, roc_auc_score

            metadata["roc_auc"] = float(roc_auc_score(y, s))
            metadata["average_precision"] = float(average_precision_score(y, s))
            metadata["precision_at_threshold"] = float((y[flagged] == 1).mean()) if flagged.any() else 0.0
            metadata["recall_at_threshold"] = float(flagged[y == 1].mean())
    return metadata


def label_codes(labels: pd.Series) -> np.ndarray:
    return labels.astype("float64").fillna(NO_LABEL).to_numpy().astype("int8")


def build_scoring_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed

    @dg.asset(
        key=fc.key("anomaly_scores"),
        # validated is a dependency, not a loaded input: a partition too large for memory is streamed
        deps=[fc.key("validated")],
        ins={"champion": dg.AssetIn(key=fc.key("champion"))},
        partitions_def=fc.partitions_def,
        group_name=feed.name,
        kinds={"parquet"},
        io_manager_key="frame_io_manager",
        tags=fc.tags,
        description=f"Per-row anomaly score, normalized score, flag, p-value, severity and top features for "
        f"one day of `{feed.name}`, scored by the current champion, with the model version that scored it.",
    )
    def anomaly_scores(context: dg.AssetExecutionContext, champion: dict, frame_store: FrameStoreResource):
        from pynomaly_core.lifecycle import ChampionRecord, NoChampionError

        record = ChampionRecord.from_value(champion)
        try:
            model = record.load()
        except NoChampionError as exc:
            raise dg.Failure(
                f"feed {feed.name!r} has no champion to score with ({exc.reason}); "
                f"materialize {fc.key('champion').to_user_string()} (job {feed.name}__train) first"
            ) from exc
        layout = ScoringLayout(
            record_key=feed.record_key, event_time=feed.event_time, passthrough=tuple(feed.passthrough),
            label=feed.label, model_name=str(record.detector), model_version=str(record.version),
        )
        store = frame_store.store()
        partition = context.partition_key
        source = store.path(list(fc.key("validated").path), partition)
        if not source.exists():
            raise dg.Failure(f"{source}: no stored data for partition {partition} of asset "
                             f"{fc.key('validated').to_user_string()}; materialize it first (job {feed.name}__ingest)")
        title = f"{feed.name} {partition}"
        chunk_rows = feed.scoring.chunk_rows
        if parquet_rows(source) > chunk_rows:
            destination = store.path(list(context.asset_key.path), partition)
            result = score_parquet(model, source, destination, layout, chunk_rows=chunk_rows)
            metadata = score_metadata(result.scores, result.flags, result.severity_counts, result.labels,
                                      result.scoring_seconds, champion, title)
            metadata.update({
                "path": dg.MetadataValue.path(str(destination)),
                "scoring_chunks": result.chunks,
                "chunk_rows": chunk_rows,
            })
            # the file is written; the frame IO manager stores nothing for a None value
            return dg.MaterializeResult(value=None, metadata=metadata)

        validated = store.read(list(fc.key("validated").path), partition)
        start = time.perf_counter()
        out = score_frame(model, validated, layout)
        seconds = time.perf_counter() - start
        metadata = score_metadata(
            out["score"].to_numpy(dtype="float64"), out["is_anomaly"].to_numpy(dtype=bool),
            out["severity"].value_counts().to_dict(),
            label_codes(out["label"]) if feed.label is not None else None, seconds, champion, title,
        )
        return dg.MaterializeResult(value=out, metadata=metadata)

    return anomaly_scores
