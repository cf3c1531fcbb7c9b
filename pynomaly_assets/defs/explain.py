"""Explanations: ``explanations`` attributes each day's top anomalies to their features with SHAP.

The ``explanations.top_k`` highest-scoring flagged rows of a partition are explained
with :func:`pynomaly_core.explain.explain` on the champion that scored them
(TreeExplainer for tree detectors, a sampled explainer with a bounded background of
the day's unflagged rows otherwise). The top three features and their contributions
go into the exported anomaly table; a summary plot goes into the metadata.
"""

import dagster as dg
import pandas as pd

from pynomaly_assets.defs.scoring import warmup_history
from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.metadata import rounded
from pynomaly_assets.resources import FrameStoreResource, ModelStoreResource

TOP = 3
EXPLANATION_COLUMNS = ["record_key", "explanation_method"] + [
    c for i in range(1, TOP + 1) for c in (f"feature_{i}", f"contribution_{i}")
]


def empty_explanations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype="float64" if c.startswith("contribution") else "object")
            for c in EXPLANATION_COLUMNS
        }
    )


#: fewer unflagged rows than this and the background is the day's lowest-scoring rows instead
MIN_BACKGROUND = 10


def build_explanations_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    settings = feed.explanations

    @dg.asset(
        key=fc.key("explanations"),
        ins={
            "anomaly_scores": dg.AssetIn(key=fc.key("anomaly_scores")),
            "validated": dg.AssetIn(key=fc.key("validated")),
            "champion": dg.AssetIn(key=fc.key("champion")),
        },
        partitions_def=fc.partitions_def,
        group_name=feed.name,
        kinds={"shap", "parquet"},
        io_manager_key="frame_io_manager",
        tags=fc.tags,
        description=f"SHAP attributions of the top {settings.top_k} anomalies of each `{feed.name}` day: "
        "the three features that pushed each row's score up the most.",
    )
    def explanations(
        context: dg.AssetExecutionContext,
        anomaly_scores: pd.DataFrame,
        validated: pd.DataFrame,
        champion: dict,
        model_store: ModelStoreResource,
        frame_store: FrameStoreResource,
    ):
        from pynomaly_core.explain import explain, summary_plot_markdown
        from pynomaly_core.lifecycle import ChampionRecord

        flagged = anomaly_scores[anomaly_scores["is_anomaly"].astype(bool)]
        top = flagged.sort_values("score", ascending=False).head(settings.top_k)
        if top.empty:
            return dg.MaterializeResult(value=empty_explanations(), metadata={"explained_rows": 0})
        record = ChampionRecord.from_value(champion)
        versions = set(top["model_version"].astype(str))
        if versions != {str(record.version)}:
            raise dg.Failure(
                f"asset {fc.key('explanations').to_user_string()} partition {context.partition_key}: scored by "
                f"model version(s) {sorted(versions)} but the champion is now version {record.version}; "
                f"rescore the partition ({feed.name}__score) before explaining it"
            )
        model = record.load(model_store.signing_key())
        # derived features over the whole day with its warm-up, as scoring computed them
        validated = model.derive(validated, warmup_history(context, fc, frame_store.store(), model))
        # anomaly_scores rows are the validated rows in order
        rows = validated.reset_index(drop=True).loc[top.index]
        normal = validated.reset_index(drop=True).loc[
            ~anomaly_scores["is_anomaly"].astype(bool).to_numpy()
        ]
        background_note = ""
        if len(normal) < MIN_BACKGROUND:
            # a drifted day can flag (nearly) every row: its least anomalous rows stand in for "normal"
            calm = (
                anomaly_scores["score"]
                .reset_index(drop=True)
                .nsmallest(settings.max_background)
                .index
            )
            normal = validated.reset_index(drop=True).loc[calm]
            background_note = (
                f"only {int((~anomaly_scores['is_anomaly'].astype(bool)).sum())} unflagged rows: "
                f"background = the day's {len(normal)} lowest-scoring rows"
            )
            context.log.warning(f"{feed.name}/{context.partition_key}: {background_note}")
        try:
            result = explain(
                model,
                rows,
                method=settings.method,
                background=normal,
                max_background=settings.max_background,
                random_state=feed.detector.random_state or 0,
            )
        except (ValueError, ImportError) as exc:
            raise dg.Failure(
                f"feed {feed.name!r}: explaining {len(rows)} anomalies of {context.partition_key} with "
                f"explanations.method={settings.method!r} failed: {exc}"
            ) from exc
        out = result.top(TOP).reset_index(drop=True)
        out.insert(0, "explanation_method", result.method)
        out.insert(0, "record_key", top["record_key"].astype(str).to_numpy())
        mean_abs = result.mean_abs()
        return dg.MaterializeResult(
            value=out[EXPLANATION_COLUMNS],
            metadata=rounded(
                {
                    "explained_rows": len(out),
                    "method": result.method,
                    "explain_seconds": float(result.seconds),
                    "rows_per_second": float(len(out) / result.seconds)
                    if result.seconds > 0
                    else 0.0,
                    "background_rows": int(result.background_rows),
                    "note": "; ".join(n for n in (result.note, background_note) if n),
                    "mean_abs_contribution": dg.MetadataValue.json(
                        {k: float(v) for k, v in mean_abs.items()}
                    ),
                    "summary_plot": dg.MetadataValue.md(
                        summary_plot_markdown(
                            result, f"{feed.name} {context.partition_key}: top {len(out)} anomalies"
                        )
                    ),
                }
            ),
        )

    return explanations
