"""Scoring: ``anomaly_scores`` scores one validated partition with the current champion."""


import base64
import io
import time

import dagster as dg
import numpy as np
import pandas as pd

from pynomaly_assets.feed_context import FeedContext

SCORE_COLUMNS = ["score", "normalized_score", "is_anomaly", "p_value", "severity", "top_features"]
SCORE_DTYPES = ["float64", "float64", "bool", "float64", "object", "object"]


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


def build_scoring_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed

    @dg.asset(
        key=fc.key("anomaly_scores"),
        ins={
            "validated": dg.AssetIn(key=fc.key("validated")),
            "champion": dg.AssetIn(key=fc.key("champion")),
        },
        partitions_def=fc.partitions_def,
        group_name=feed.name,
        kinds={"parquet"},
        io_manager_key="frame_io_manager",
        tags=fc.tags,
        description=f"Per-row anomaly score, normalized score, flag, p-value, severity and top features for "
        f"one day of `{feed.name}`, scored by the current champion, with the model version that scored it.",
    )
    def anomaly_scores(context: dg.AssetExecutionContext, validated: pd.DataFrame, champion: dict):
        from pynomaly_core.detectors import load_object

        if champion.get("path") is None:
            raise dg.Failure(
                f"feed {feed.name!r} has no champion to score with ({champion.get('reason', 'not trained')}); "
                f"materialize {fc.key('champion').to_user_string()} (job {feed.name}__train) first"
            )
        model = load_object(champion["path"], expected_sha256=champion["manifest_sha256"])
        keep = [feed.record_key, feed.event_time, *feed.passthrough]
        start = time.perf_counter()
        scored = model.score(validated) if len(validated) else pd.DataFrame(
            {c: pd.Series(dtype=t) for c, t in
             zip(SCORE_COLUMNS, SCORE_DTYPES)}
        )
        seconds = time.perf_counter() - start
        out = pd.concat([validated[keep].reset_index(drop=True), scored.reset_index(drop=True)], axis=1)
        out = out.rename(columns={feed.record_key: "record_key", feed.event_time: "event_time"})
        out["model_name"] = champion["detector"]
        out["model_version"] = str(champion["version"])
        if feed.label is not None:
            out["label"] = validated[feed.label].reset_index(drop=True)

        anomalies = int(out["is_anomaly"].sum())
        metadata: dict = {
            "dagster/row_count": len(out),
            "anomalies": anomalies,
            "anomaly_rate": float(anomalies / len(out)) if len(out) else 0.0,
            "mean_score": float(out["score"].mean()) if len(out) else 0.0,
            "score_p99": float(out["score"].quantile(0.99)) if len(out) else 0.0,
            "scoring_seconds": float(seconds),
            "rows_per_second": float(len(out) / seconds) if seconds > 0 and len(out) else 0.0,
            "model_name": champion["detector"],
            "model_version": str(champion["version"]),
            **{f"severity_{level}": int((out["severity"] == level).sum()) for level in ("low", "medium", "high", "critical")},
            "score_histogram": dg.MetadataValue.md(
                histogram_markdown(out["score"].to_numpy(), float(champion["threshold"]),
                                   f"{feed.name} {context.partition_key}")
            ),
        }
        if feed.label is not None:
            labels = out["label"].dropna().astype(int)
            if labels.nunique() == 2:
                from sklearn.metrics import average_precision_score, roc_auc_score

                scores = out.loc[labels.index, "score"]
                metadata["roc_auc"] = float(roc_auc_score(labels, scores))
                metadata["average_precision"] = float(average_precision_score(labels, scores))
                flagged = out.loc[labels.index, "is_anomaly"].astype(bool)
                metadata["precision_at_threshold"] = float(labels[flagged].mean()) if flagged.any() else 0.0
                metadata["recall_at_threshold"] = float(flagged[labels == 1].mean())
        return dg.MaterializeResult(value=out, metadata=metadata)

    return anomaly_scores
