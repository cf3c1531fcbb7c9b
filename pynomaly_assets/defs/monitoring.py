"""Monitoring: the champion's reference, drift per partition, detector performance per partition.

* ``monitoring_reference`` (unpartitioned, materialized with every training run) — what the
  champion's training data looked like: feature histograms and a sample for Evidently, the
  anomaly scores of its held-out rows, and the baseline the performance check compares with
  (average precision on labelled holdout rows, canary recall, alert rate). One per champion
  version, stored under ``$PYNOMALY_REPORTS_DIR/<feed>/references/<version>``.
* ``drift_report`` (daily) — an Evidently data-drift report of the partition against that
  reference (HTML linked from metadata), PSI per feature on all rows, and drift of the
  anomaly-score distribution and of the alert rate; check ``drift_within_bounds``.
* ``detector_performance`` (daily) — ranking metrics with labels or feedback, label-free health
  without; check ``performance_not_degraded``.

Both checks are non-blocking: a warning (moderate change) is shown in the UI and scoring goes
on; an error is what the retraining sensor (``defs/sensors.py``) acts on.
"""


import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.resources import ReportStoreResource, WarehouseResource
from pynomaly_core.storage import atomic_write_text

DRIFT_WITHIN_BOUNDS = "drift_within_bounds"
PERFORMANCE_NOT_DEGRADED = "performance_not_degraded"
BASELINE_FILE = "baseline.json"


def _write_json(path: Path, doc: dict) -> Path:
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True, default=str))
    return path


def read_baseline(reports: ReportStoreResource, fc: FeedContext, version: str) -> dict:
    """The stored baseline of champion ``version``; a clear failure when it was never built."""
    path = reports.reference_dir(fc.name, version) / BASELINE_FILE
    if not path.exists():
        raise dg.Failure(
            f"feed {fc.name!r}: no monitoring reference for model version {version} ({path} is missing); "
            f"materialize {fc.key('monitoring_reference').to_user_string()} (it runs with job {fc.name}__train)"
        )
    return json.loads(path.read_text())


def scored_version(anomaly_scores: pd.DataFrame, fc: FeedContext) -> str:
    versions = anomaly_scores["model_version"].dropna().astype(str).unique()
    if len(versions) != 1:
        raise dg.Failure(
            f"asset {fc.key('anomaly_scores').to_user_string()}: expected the partition to be scored by one "
            f"model version, found {sorted(versions)}"
        )
    return str(versions[0])


def _numeric_and_categorical(fc: FeedContext) -> tuple[list[str], list[str]]:
    numeric = [f.name for f in fc.feed.features if f.type in ("float", "int")]
    categorical = [f.name for f in fc.feed.features if f.type not in ("float", "int")]
    return numeric, categorical


def build_monitoring_assets(fc: FeedContext) -> list[dg.AssetsDefinition]:
    feed = fc.feed
    settings = feed.monitoring
    reference_key = fc.key("monitoring_reference")
    drift_key = fc.key("drift_report")
    performance_key = fc.key("detector_performance")
    numeric, categorical = _numeric_and_categorical(fc)

    @dg.asset(
        key=reference_key,
        ins={
            "training_window": dg.AssetIn(key=fc.key("training_window")),
            "champion": dg.AssetIn(key=fc.key("champion")),
        },
        group_name=feed.name,
        kinds={"evidently"},
        tags=fc.tags,
        description=f"What `{feed.name}`'s champion was trained on: feature histograms and an Evidently sample, "
        "the scores of its held-out rows and the performance baseline, stored once per champion version.",
    )
    def monitoring_reference(
        context: dg.AssetExecutionContext, training_window: pd.DataFrame, champion: dict,
        reports: ReportStoreResource,
    ):
        from pynomaly_core.detectors import load_object
        from pynomaly_core.drift import build_reference
        from pynomaly_core.evaluation.health import canary_recall
        from pynomaly_core.lifecycle import split_holdout

        if champion.get("path") is None:
            raise dg.Failure(
                f"feed {feed.name!r} has no champion ({champion.get('reason', 'not trained')}); "
                f"materialize {fc.key('champion').to_user_string()} first"
            )
        version = str(champion["version"])
        directory = reports.reference_dir(feed.name, version)
        if not champion.get("promoted") and (directory / BASELINE_FILE).exists():
            baseline = json.loads((directory / BASELINE_FILE).read_text())
            context.log.info(f"champion version {version} kept; reusing its reference {directory}")
            return dg.MaterializeResult(
                value={"version": version, "path": str(directory)},
                metadata={"reference_version": version, "built": False, "path": dg.MetadataValue.path(str(directory)),
                          **_baseline_metadata(baseline)},
            )
        model = load_object(champion["path"], expected_sha256=champion["manifest_sha256"])
        try:
            _, holdout = split_holdout(training_window, feed)
        except ValueError as exc:
            raise dg.Failure(f"asset {reference_key.to_user_string()}: {exc}") from exc
        seed = feed.detector.random_state or 0
        holdout_scores = np.asarray(model.decision_function(holdout), dtype=float)
        reference = build_reference(
            training_window[feed.feature_names], numeric, categorical, holdout_scores,
            expected_alert_rate=feed.detector.contamination, sample_rows=settings.reference_sample_rows,
            random_state=seed,
        )
        reference.save(directory)
        metrics = champion.get("metrics") or {}
        labelled = champion.get("evaluation") in ("labels", "feedback")
        baseline = {
            "feed": feed.name, "version": version, "detector": champion["detector"],
            "model_path": champion["path"], "manifest_sha256": champion["manifest_sha256"],
            "threshold": float(model.threshold_), "evaluation": champion.get("evaluation"),
            "average_precision": float(metrics["average_precision"]) if labelled and "average_precision" in metrics else None,
            "roc_auc": float(metrics["roc_auc"]) if labelled and "roc_auc" in metrics else None,
            "canary_recall": canary_recall(model, holdout, numeric, settings.canary_rows, random_state=seed)
            if numeric else None,
            "alert_rate": float(np.mean(holdout_scores > model.threshold_)),
            "expected_alert_rate": float(feed.detector.contamination),
            "holdout_rows": len(holdout), "reference_rows": len(training_window),
            "training_days": sorted(pd.to_datetime(training_window[feed.event_time], utc=True)
                                    .dt.strftime("%Y-%m-%d").unique().tolist()),
            "dagster_run_id": context.run.run_id,
        }
        _write_json(directory / BASELINE_FILE, baseline)
        return dg.MaterializeResult(
            value={"version": version, "path": str(directory)},
            metadata={"reference_version": version, "built": True, "path": dg.MetadataValue.path(str(directory)),
                      "reference_rows": len(training_window), **_baseline_metadata(baseline)},
        )

    @dg.asset(
        key=drift_key,
        ins={
            "anomaly_scores": dg.AssetIn(key=fc.key("anomaly_scores")),
            "validated": dg.AssetIn(key=fc.key("validated")),
        },
        deps=[reference_key],
        partitions_def=fc.partitions_def,
        group_name=feed.name,
        kinds={"evidently"},
        tags=fc.tags,
        check_specs=[
            dg.AssetCheckSpec(
                DRIFT_WITHIN_BOUNDS, asset=drift_key, blocking=False,
                description=f"share of drifted features < monitoring.drift_share_warn ({settings.drift_share_warn}) "
                f"passes; >= drift_share_error ({settings.drift_share_error}) or anomaly-score PSI > "
                f"score_psi_error ({settings.score_psi_error}) is an error",
            )
        ],
        description=f"Evidently data-drift report of one day of `{feed.name}` against the champion's training "
        "reference (HTML linked), PSI per feature, and drift of the anomaly-score distribution and alert rate.",
    )
    def drift_report(
        context: dg.AssetExecutionContext, anomaly_scores: pd.DataFrame, validated: pd.DataFrame,
        reports: ReportStoreResource,
    ):
        from pynomaly_core.drift import DriftReference
        from pynomaly_core.drift import drift_report as run_drift

        day = context.partition_key
        version = scored_version(anomaly_scores, fc)
        directory = reports.reference_dir(feed.name, version)
        baseline = read_baseline(reports, fc, version)  # fails clearly when the reference was never built
        in_sample = day in set(baseline.get("training_days") or [])
        reference = DriftReference.load(directory)
        out_dir = reports.feed_dir(feed.name, "drift")
        html = out_dir / f"{day}.html"
        result = run_drift(
            reference, validated[feed.feature_names].reset_index(drop=True),
            anomaly_scores["score"].to_numpy(dtype=float), anomaly_scores["is_anomaly"].to_numpy(dtype=bool),
            html_path=html, sample_rows=settings.drift_sample_rows,
            drift_share_threshold=settings.drift_share_error, random_state=feed.detector.random_state or 0,
        )
        summary = {"feed": feed.name, "partition": day, "reference_version": version, **result.summary()}
        json_path = _write_json(out_dir / f"{day}.json", summary)
        columns = result.columns
        drifted = columns.loc[columns["drifted"].astype(bool), "column"].tolist()

        share = float(result.drift_share)
        reasons = []
        severity = dg.AssetCheckSeverity.WARN
        if share >= settings.drift_share_error:
            severity = dg.AssetCheckSeverity.ERROR
            reasons.append(f"{share:.0%} of features drifted (monitoring.drift_share_error={settings.drift_share_error})")
        elif share >= settings.drift_share_warn:
            reasons.append(f"{share:.0%} of features drifted (monitoring.drift_share_warn={settings.drift_share_warn})")
        if in_sample:
            # the champion was fitted on this day: its scores here are in-sample (lower), not drift
            pass
        elif result.score_psi > settings.score_psi_error:
            severity = dg.AssetCheckSeverity.ERROR
            reasons.append(f"anomaly-score PSI {result.score_psi:.3f} > monitoring.score_psi_error={settings.score_psi_error}")
        passed = not reasons
        metadata = {
            "drift_share": share,
            "dataset_drift": bool(result.dataset_drift),
            "drifted_features": len(drifted),
            "drifted_columns": dg.MetadataValue.json(drifted),
            "score_psi": float(result.score_psi),
            "score_ks": float(result.score_ks),
            "score_ks_pvalue": float(result.score_ks_pvalue),
            "alert_rate": float(result.alert_rate),
            "expected_alert_rate": float(result.expected_alert_rate),
            "alert_rate_ratio": float(result.alert_rate_ratio),
            "alert_rate_pvalue": float(result.alert_rate_pvalue),
            "rows": int(result.rows),
            "sampled_rows": int(result.sampled_rows),
            "drift_seconds": float(result.seconds),
            "reference_version": version,
            "in_training_window": in_sample,
            "report_html": dg.MetadataValue.path(str(html)),
            "report_json": dg.MetadataValue.path(str(json_path)),
            "columns": dg.MetadataValue.md(columns.to_markdown(index=False, floatfmt=".4f")),
        }
        check = dg.AssetCheckResult(
            check_name=DRIFT_WITHIN_BOUNDS, passed=passed, severity=severity,
            metadata={"drift_share": share, "score_psi": float(result.score_psi), "model_version": version, "partition": day,
                      "drifted_columns": dg.MetadataValue.json(drifted)},
            description=f"{feed.name}/{day}: " + ("; ".join(reasons) if reasons else
                                                   f"{share:.0%} of features drifted, score PSI {result.score_psi:.3f}")
            + (" (a training day of this champion: score drift not judged)" if in_sample else ""),
        )
        return dg.MaterializeResult(value=summary, metadata=metadata, check_results=[check])

    @dg.asset(
        key=performance_key,
        ins={
            "anomaly_scores": dg.AssetIn(key=fc.key("anomaly_scores")),
            "validated": dg.AssetIn(key=fc.key("validated")),
        },
        deps=[reference_key],
        partitions_def=fc.partitions_def,
        group_name=feed.name,
        kinds={"scikitlearn"},
        tags=fc.tags,
        check_specs=[
            dg.AssetCheckSpec(
                PERFORMANCE_NOT_DEGRADED, asset=performance_key, blocking=False,
                description="With labels: average precision within monitoring.ap_tolerance_warn / _error of the "
                "champion's baseline. Without: canary recall within canary_recall_tolerance and alert rate "
                "below alert_rate_max_ratio x contamination.",
            )
        ],
        description=f"How well the champion does on one day of `{feed.name}`: precision@k, average precision and "
        "ROC-AUC from labels and feedback; label-free health (canary recall, alert rate, score drift) always.",
    )
    def detector_performance(
        context: dg.AssetExecutionContext, anomaly_scores: pd.DataFrame, validated: pd.DataFrame,
        reports: ReportStoreResource, warehouse: WarehouseResource,
    ):
        from scipy.stats import ks_2samp

        from pynomaly_core.detectors import load_object
        from pynomaly_core.drift import DriftReference
        from pynomaly_core.evaluation.health import (
            alert_rate_test,
            canary_recall,
            judge,
            labelled_metrics,
        )
        from pynomaly_core.export import read_feedback

        day = context.partition_key
        version = scored_version(anomaly_scores, fc)
        baseline = read_baseline(reports, fc, version)
        scores = anomaly_scores["score"].to_numpy(dtype=float)
        flags = anomaly_scores["is_anomaly"].to_numpy(dtype=bool)
        current: dict[str, float] = {}
        labels = labels_for_partition(fc, anomaly_scores, read_feedback(
            warehouse.engine(), feed=feed.name, start=day, end=day, schema=warehouse.schema_name))
        known = labels.notna().to_numpy()
        y = labels[known].astype(int).to_numpy()
        positives, negatives = int(y.sum()), int((y == 0).sum())
        mode = "label_free"
        if positives >= settings.min_labelled_anomalies and negatives >= settings.min_labelled_anomalies:
            current.update(labelled_metrics(y, scores[known], settings.top_k))
            mode = "labels"
        model = load_object(baseline["model_path"], expected_sha256=baseline["manifest_sha256"])
        if numeric and len(validated):
            current["canary_recall"] = canary_recall(
                model, validated.reset_index(drop=True), numeric, settings.canary_rows,
                random_state=(feed.detector.random_state or 0) + int(day.replace("-", "")) % 10_000,
            )
        current.update(alert_rate_test(int(flags.sum()), len(flags), float(feed.detector.contamination)))
        reference = DriftReference.load(reports.reference_dir(feed.name, version))
        if len(scores) and len(reference.scores):
            ks = ks_2samp(scores, reference.scores)
            current["score_ks"], current["score_ks_pvalue"] = float(ks.statistic), float(ks.pvalue)
        verdict = judge(current, baseline, settings)
        value = {"feed": feed.name, "partition": day, "model_version": version, "mode": mode,
                 "labelled_rows": int(known.sum()), "labelled_anomalies": positives,
                 "severity": verdict.severity, "reasons": verdict.reasons,
                 **{k: float(v) for k, v in current.items()},
                 "baseline": {k: baseline.get(k) for k in ("average_precision", "roc_auc", "canary_recall", "alert_rate")}}
        metadata = {
            **{k: dg.MetadataValue.float(float(v)) for k, v in current.items() if k != "k"},
            "mode": mode,
            "labelled_rows": int(known.sum()),
            "labelled_anomalies": positives,
            "model_version": version,
            "verdict": verdict.severity,
            **{f"baseline_{k}": float(baseline[k]) for k in ("average_precision", "canary_recall", "alert_rate")
               if baseline.get(k) is not None},
        }
        check = dg.AssetCheckResult(
            check_name=PERFORMANCE_NOT_DEGRADED,
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.ERROR if verdict.severity == "error" else dg.AssetCheckSeverity.WARN,
            metadata={"mode": mode, "verdict": verdict.severity, "model_version": version, "partition": day,
                      **{k: float(v) for k, v in current.items() if k in ("average_precision", "canary_recall",
                                                                         "alert_rate_ratio")}},
            description=f"{feed.name}/{day} (model version {version}, {mode}): {verdict.describe()}",
        )
        return dg.MaterializeResult(value=value, metadata=metadata, check_results=[check])

    return [monitoring_reference, drift_report, detector_performance]


def labels_for_partition(fc: FeedContext, scored: pd.DataFrame, feedback: pd.DataFrame | None) -> pd.Series:
    """Known labels of a scored partition: the feed's label column, overridden by reviewer feedback."""
    from pynomaly_core.lifecycle import labels_with_feedback

    labels = scored["label"] if fc.feed.label is not None and "label" in scored.columns else None
    return labels_with_feedback(labels, scored["record_key"], feedback)


def _baseline_metadata(baseline: dict) -> dict:
    return {f"baseline_{k}": float(baseline[k]) for k in ("average_precision", "roc_auc", "canary_recall", "alert_rate")
            if baseline.get(k) is not None}
