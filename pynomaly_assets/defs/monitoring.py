"""Monitoring: the champion's reference, drift per partition, detector performance per partition.

* ``monitoring_reference`` (unpartitioned, materialized with every training run) — what the
  champion's training data looked like: feature histograms and a sample for Evidently, the
  anomaly scores of its held-out rows, the baseline the performance check compares with
  (average precision on labelled holdout rows, canary recall, alert rate), and the feed's
  normal day-to-day variability over the training window (:mod:`pynomaly_core.drift.normal`),
  which both checks hold a day to. One per champion version, stored under
  ``$PYNOMALY_REPORTS_DIR/<feed>/references/<version>``.
* ``drift_report`` (daily) — an Evidently data-drift report of the partition against that
  reference (HTML linked from metadata), PSI per feature on all rows, and drift of the
  anomaly-score distribution and of the alert rate; check ``drift_within_bounds``.
* ``detector_performance`` (daily) — ranking metrics with labels or feedback, label-free health
  without; check ``performance_not_degraded``. It reads the alert-rate and score KS tests from
  the same day's ``drift_report`` (an input), so they are computed once per partition.

Both checks are non-blocking: a warning (moderate change) is shown in the UI and scoring goes
on; an error is what the retraining sensor (``defs/sensors.py``) acts on. The rules themselves
live in core (:func:`pynomaly_core.drift.judge`, :func:`pynomaly_core.evaluation.health.judge`);
this module only wires them to Dagster.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np
import pandas as pd

from pynomaly_assets.feed_context import FeedContext, transient
from pynomaly_assets.metadata import report_links, rounded
from pynomaly_assets.names import (
    DRIFT_WITHIN_BOUNDS,
    MODEL_VERSION_KEY,
    PARTITION_KEY,
    PERFORMANCE_NOT_DEGRADED,
)
from pynomaly_assets.resources import (
    FrameStoreResource,
    ModelStoreResource,
    ReportStoreResource,
    WarehouseResource,
)
from pynomaly_core.storage import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.drift import DriftResult, NormalDays, NormalRanges
    from pynomaly_core.evaluation.health import Measurements, Verdict

BASELINE_FILE = "baseline.json"
#: baseline numbers shown on ``monitoring_reference`` and on ``detector_performance``
REFERENCE_BASELINE_KEYS = ("average_precision", "roc_auc", "canary_recall", "alert_rate")
PERFORMANCE_BASELINE_KEYS = ("average_precision", "canary_recall", "alert_rate")


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


def read_normal(
    reports: ReportStoreResource, fc: FeedContext, version: str
) -> tuple["NormalDays | None", "NormalRanges"]:
    """The normal-day profile of champion ``version`` and its limits under the feed's current settings."""
    from pynomaly_core.drift import NormalDays, NormalRanges

    normal = NormalDays.load(reports.reference_dir(fc.name, version))
    if normal is None:
        return None, NormalRanges.fixed(
            f"the reference of model version {version} has no normal-day profile (built before profiles "
            f"existed); materialize {fc.key('monitoring_reference').to_user_string()} with a retrain to build one"
        )
    return normal, normal.ranges(fc.feed.monitoring)


def _verdict_metadata(verdict: "Verdict") -> dict[str, Any]:
    """What a check shows of the rule it applied: ``rule`` and the calibrated ``<statistic>_limit`` values."""
    return {"rule": verdict.rule, **{k: float(v) for k, v in verdict.limits.items()}}


def scored_version(anomaly_scores: pd.DataFrame, fc: FeedContext) -> str:
    versions = anomaly_scores["model_version"].dropna().astype(str).unique()
    if len(versions) != 1:
        raise dg.Failure(
            f"asset {fc.key('anomaly_scores').to_user_string()}: expected the partition to be scored by one "
            f"model version, found {sorted(versions)}"
        )
    return str(versions[0])


def labels_for_partition(
    fc: FeedContext, scored: pd.DataFrame, feedback: pd.DataFrame | None
) -> pd.Series:
    """Known labels of a scored partition: the feed's label column, overridden by reviewer feedback."""
    from pynomaly_core.lifecycle import labels_with_feedback

    labels = scored["label"] if fc.feed.label is not None and "label" in scored.columns else None
    return labels_with_feedback(labels, scored["record_key"], feedback)


def _numeric_and_categorical(fc: FeedContext) -> tuple[list[str], list[str]]:
    numeric = [f.name for f in fc.feed.features if f.type in ("float", "int")]
    categorical = [f.name for f in fc.feed.features if f.type not in ("float", "int")]
    return numeric, categorical


def _baseline_metadata(
    baseline: dict, keys: tuple[str, ...] = REFERENCE_BASELINE_KEYS
) -> dict[str, float]:
    return {f"baseline_{k}": float(baseline[k]) for k in keys if baseline.get(k) is not None}


def _check_result(
    name: str, verdict: "Verdict", metadata: dict[str, Any], description: str
) -> dg.AssetCheckResult:
    """A core verdict as a non-blocking check: "error" is what the retraining sensor acts on, anything else warns."""
    severity = (
        dg.AssetCheckSeverity.ERROR if verdict.severity == "error" else dg.AssetCheckSeverity.WARN
    )
    return dg.AssetCheckResult(
        check_name=name,
        passed=verdict.passed,
        severity=severity,
        metadata=rounded(metadata),
        description=description,
    )


# ------------------------------------------------------------------ monitoring_reference
def _reference_result(
    version: str, directory: Path, baseline: dict, **built: Any
) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        value={"version": version, "path": str(directory)},
        metadata=rounded(
            {
                "reference_version": version,
                **built,
                "path": dg.MetadataValue.path(str(directory)),
                **_baseline_metadata(baseline),
            }
        ),
    )


def _normal_metadata(normal: "NormalDays", settings: Any) -> dict[str, Any]:
    """The normal-day profile on ``monitoring_reference``: days measured, or why none, and today's limits."""
    ranges = normal.ranges(settings)
    out: dict[str, Any] = {
        "normal_days": len(normal.table),
        "normal_folds": normal.folds,
        "normal_seconds": float(normal.seconds),
        "normal_profile": ranges.describe(),
    }
    if normal.canaries is not None:
        out["canaries"] = normal.canaries
    if normal.built:
        out["normal_table"] = dg.MetadataValue.md(
            normal.table.to_markdown(index=False, floatfmt=".4g")
        )
    return {**out, **{k: float(v) for k, v in ranges.limits().items()}}


def build_monitoring_reference_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    settings = feed.monitoring
    reference_key = fc.key("monitoring_reference")
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
        context: dg.AssetExecutionContext,
        training_window: pd.DataFrame,
        champion: dict,
        reports: ReportStoreResource,
        model_store: ModelStoreResource,
    ):
        from pynomaly_core.drift import build_normal_days, build_reference
        from pynomaly_core.drift.reference import save_derivation
        from pynomaly_core.evaluation.health import canaries_for, performance_baseline
        from pynomaly_core.lifecycle import ChampionRecord, NoChampionError, split_holdout

        try:
            record = ChampionRecord.from_value(champion).require()
        except NoChampionError as exc:
            raise dg.Failure(
                f"{exc}; materialize {fc.key('champion').to_user_string()} first"
            ) from exc
        version = str(record.version)
        directory = reports.reference_dir(feed.name, version)
        if not record.promoted and (directory / BASELINE_FILE).exists():
            baseline = json.loads((directory / BASELINE_FILE).read_text())
            context.log.info(f"champion version {version} kept; reusing its reference {directory}")
            return _reference_result(version, directory, baseline, built=False)
        model = record.load(model_store.signing_key())
        try:
            train, holdout = split_holdout(training_window, feed)
        except ValueError as exc:
            raise dg.Failure(f"asset {reference_key.to_user_string()}: {exc}") from exc
        seed = feed.detector.random_state or 0
        holdout_scores, holdout_scoring = _holdout_scores(
            record, model, train, holdout, training_window, feed.event_time
        )
        context.log.info(f"holdout scores of the reference: {holdout_scoring}")
        # the derived columns drift too: computed with the champion's own derivation, in time order
        derived = model.derivation.derived_names if model.derivation is not None else []
        reference_rows = model.derive(training_window) if derived else training_window
        save_derivation(directory, model.derivation)
        build_reference(
            reference_rows[[*feed.feature_names, *derived]],
            [*numeric, *derived],
            categorical,
            holdout_scores,
            expected_alert_rate=feed.detector.contamination,
            sample_rows=settings.reference_sample_rows,
            random_state=seed,
        ).save(directory)
        baseline = performance_baseline(
            record,
            model,
            training_window,
            holdout,
            holdout_scores,
            feed,
            numeric=numeric,
            random_state=seed,
        )
        normal = build_normal_days(
            training_window,
            feed,
            model,
            numeric=[*numeric, *derived],
            categorical=categorical,
            canaries=canaries_for(feed, numeric),
            random_state=seed,
        )
        normal.save(directory)
        _write_json(directory / BASELINE_FILE, {**baseline, "dagster_run_id": context.run.run_id})
        return _reference_result(
            version,
            directory,
            baseline,
            built=True,
            reference_rows=len(training_window),
            holdout_scoring=holdout_scoring,
            **_normal_metadata(normal, settings),
        )

    return monitoring_reference


def _holdout_scores(
    record: Any,
    model: Any,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    window: pd.DataFrame,
    event_time: str,
) -> tuple[np.ndarray, str]:
    """The holdout's scores for the score-drift reference and the baseline's alert rate, and how
    they were made: by the champion when it was not fitted on the holdout; out of sample
    (:func:`~pynomaly_core.lifecycle.refit.held_out_scores`) when it was (refitted on the whole
    window), as its in-sample scores would be lower than any new day's."""
    from pynomaly_core.detectors.registry import get_spec
    from pynomaly_core.lifecycle.refit import held_out_scores
    from pynomaly_core.lifecycle.window import frame_days

    seen = bool(record.fitted_days) and set(record.fitted_days) >= set(
        frame_days(holdout, event_time)
    )
    if not seen:
        how = "by the champion (not fitted on the holdout)"
    elif get_spec(model.detector).supervision == "unsupervised":
        return held_out_scores(model, train, holdout, window, event_time), (
            "out of sample (the champion was fitted on the holdout: a model of its configuration "
            "fitted without it scored it, ranks mapped to the champion's scale)"
        )
    else:
        how = "in-sample (the champion was fitted on the holdout; a supervised detector is not refitted here)"
    return np.asarray(model.decision_function(holdout), dtype=float), how


# ------------------------------------------------------------------ drift_report
def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """Metadata of a verdict: lists as JSON, None left out (Dagster metadata has no null float)."""
    return {
        k: dg.MetadataValue.json(v) if isinstance(v, list) else v
        for k, v in values.items()
        if v is not None
    }


def _drift_metadata(
    result: "DriftResult", version: str, in_window: bool, html: Path, json_path: Path
) -> dict:
    drifted = result.drifted_columns
    return {
        "drift_share": float(result.drift_share),
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
        "score_reference": result.score_reference,
        "drift_seconds": float(result.seconds),
        "reference_version": version,
        MODEL_VERSION_KEY: version,  # the model switch on the partition charts
        "in_training_window": in_window,
        "report_html": dg.MetadataValue.path(str(html)),
        "report_json": dg.MetadataValue.path(str(json_path)),
        "columns": dg.MetadataValue.md(result.columns.to_markdown(index=False, floatfmt=".4f")),
    }


def derived_day(
    context: dg.AssetExecutionContext,
    fc: FeedContext,
    frame_store: FrameStoreResource,
    reference_dir: Path,
    validated: pd.DataFrame,
) -> pd.DataFrame:
    """``validated`` with the champion's derived columns (stored beside its reference), computed
    with the warm-up read from the previous partitions as scoring does; unchanged without any."""
    from pynomaly_core.drift.reference import load_derivation

    derivation = load_derivation(reference_dir)
    if derivation is None:
        return validated
    from pynomaly_assets.defs.scoring import warmup_history
    from pynomaly_core.model import AnomalyModel

    deriver = AnomalyModel(fc.feed.features, derivation=derivation)
    return deriver.derive(validated, warmup_history(context, fc, frame_store.store(), deriver))


def build_drift_report_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    settings = feed.monitoring
    drift_key = fc.key("drift_report")

    @dg.asset(
        key=drift_key,
        ins={
            "anomaly_scores": dg.AssetIn(key=fc.key("anomaly_scores")),
            "validated": dg.AssetIn(key=fc.key("validated")),
        },
        deps=[fc.key("monitoring_reference")],
        partitions_def=fc.partitions_def,
        group_name=feed.name,
        kinds={"evidently"},
        tags=fc.tags,
        check_specs=[
            dg.AssetCheckSpec(
                DRIFT_WITHIN_BOUNDS,
                asset=drift_key,
                partitions_def=fc.partitions_def,  # one history row per evaluation, with its day
                blocking=False,
                description="Held to the feed's normal day-to-day range (measured on the champion's reference days): "
                f"a share of features whose PSI is past its normal limit (monitoring.normal_quantile "
                f"{settings.normal_quantile} x normal_margin {settings.normal_margin}) >= drift_share_warn "
                f"({settings.drift_share_warn}) warns, >= drift_share_error ({settings.drift_share_error}) or an "
                "anomaly-score PSI past its normal limit is an error. With fewer than monitoring.normal_min_days "
                f"({settings.normal_min_days}) reference days the profile is provisional (the largest day is "
                "normal); fallback with fewer than monitoring.normal_provisional_days "
                f"({settings.normal_provisional_days}): fixed cut-offs on "
                f"Evidently's drift share and score_psi_error ({settings.score_psi_error}).",
            )
        ],
        description=f"Evidently data-drift report of one day of `{feed.name}` against the champion's training "
        "reference (HTML linked), PSI per feature, and drift of the anomaly-score distribution and alert rate.",
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        anomaly_scores: pd.DataFrame,
        validated: pd.DataFrame,
        reports: ReportStoreResource,
        frame_store: FrameStoreResource,
    ):
        from pynomaly_core.drift import DriftReference, judge
        from pynomaly_core.drift import drift_report as run_drift

        day = context.partition_key
        version = scored_version(anomaly_scores, fc)
        baseline = read_baseline(
            reports, fc, version
        )  # fails clearly when the reference was never built
        in_window = day[:10] in set(baseline.get("training_days") or [])  # an hour: its day
        reference = DriftReference.load(reports.reference_dir(feed.name, version))
        normal, ranges = read_normal(reports, fc, version)
        out_dir = reports.feed_dir(feed.name, "drift")
        # one report per day AND model version: a rescore by a new champion must not erase the
        # evidence (the drift the first scoring saw) that led to it
        html = out_dir / f"{day}.model-{version}.html"
        current = derived_day(
            context, fc, frame_store, reports.reference_dir(feed.name, version), validated
        )
        result = run_drift(
            reference,
            current[reference.features].reset_index(drop=True),
            anomaly_scores["score"].to_numpy(dtype=float),
            anomaly_scores["is_anomaly"].to_numpy(dtype=bool),
            html_path=html,
            sample_rows=settings.drift_sample_rows,
            drift_share_threshold=settings.drift_share_error,
            random_state=feed.detector.random_state or 0,
            normal=normal,
            current_normalized=anomaly_scores["normalized_score"].to_numpy(dtype=float),
        )
        verdict = judge(result, settings, in_training_window=in_window, normal=ranges)
        judged = {
            **_verdict_metadata(verdict),
            "abnormal_feature_share": verdict.abnormal_share,
            "abnormal_features": verdict.abnormal_features,
        }
        summary = {
            "feed": feed.name,
            "partition": day,
            "reference_version": version,
            **result.summary(),
            **judged,
        }
        json_path = _write_json(out_dir / f"{day}.model-{version}.json", summary)
        check = _check_result(
            DRIFT_WITHIN_BOUNDS,
            verdict,
            {
                "drift_share": verdict.drift_share,
                "score_psi": verdict.score_psi,
                MODEL_VERSION_KEY: version,
                PARTITION_KEY: day,
                "drifted_columns": dg.MetadataValue.json(result.drifted_columns),
                **_json_safe(judged),
            },
            f"{feed.name}/{day}: {verdict.describe()}",
        )
        metadata = {
            **_drift_metadata(result, version, in_window, html, json_path),
            **_json_safe(judged),
            **report_links(
                reports.base_dir, reports.base_url, report_html=html, report_json=json_path
            ),
        }
        return dg.MaterializeResult(
            value=summary, metadata=rounded(metadata), check_results=[check]
        )

    return drift_report


# ------------------------------------------------------------------ detector_performance
def _performance_value(
    fc: FeedContext,
    day: str,
    version: str,
    measured: "Measurements",
    verdict: "Verdict",
    baseline: dict,
) -> dict:
    return {
        "feed": fc.name,
        "partition": day,
        "model_version": version,
        "mode": measured.mode,
        "labelled_rows": measured.labelled_rows,
        "labelled_anomalies": measured.labelled_anomalies,
        "severity": verdict.severity,
        "reasons": verdict.reasons,
        "rule": verdict.rule,
        **{k: float(v) for k, v in measured.values.items()},
        **verdict.limits,
        "baseline": {k: baseline.get(k) for k in REFERENCE_BASELINE_KEYS},
    }


def _performance_metadata(
    version: str, measured: "Measurements", verdict: "Verdict", baseline: dict
) -> dict:
    return {
        **{k: dg.MetadataValue.float(float(v)) for k, v in measured.values.items() if k != "k"},
        "mode": measured.mode,
        "labelled_rows": measured.labelled_rows,
        "labelled_anomalies": measured.labelled_anomalies,
        "model_version": version,
        "verdict": verdict.severity,
        **_verdict_metadata(verdict),
        **_baseline_metadata(baseline, PERFORMANCE_BASELINE_KEYS),
    }


def _require_drift_of_version(fc: FeedContext, drift_report: dict, day: str, version: str) -> None:
    """The day's drift report must judge the scores being judged here, or its score tests are of other scores."""
    if str(drift_report.get("reference_version")) != version:
        raise dg.Failure(
            f"asset {fc.key('detector_performance').to_user_string()} {day}: the partition is scored by model "
            f"version {version} but its {fc.key('drift_report').to_user_string()} was computed for version "
            f"{drift_report.get('reference_version')}; materialize both for {day} (job {fc.name}__score does)"
        )


def build_detector_performance_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    settings = feed.monitoring
    performance_key = fc.key("detector_performance")
    numeric, _ = _numeric_and_categorical(fc)

    @dg.asset(
        key=performance_key,
        ins={
            "anomaly_scores": dg.AssetIn(key=fc.key("anomaly_scores")),
            "validated": dg.AssetIn(key=fc.key("validated")),
            "drift_report": dg.AssetIn(key=fc.key("drift_report")),
        },
        deps=[fc.key("monitoring_reference")],
        partitions_def=fc.partitions_def,
        group_name=feed.name,
        kinds={"scikitlearn"},
        tags=fc.tags,
        check_specs=[
            dg.AssetCheckSpec(
                PERFORMANCE_NOT_DEGRADED,
                asset=performance_key,
                partitions_def=fc.partitions_def,  # one history row per evaluation, with its day
                blocking=False,
                description="With labels: average precision within monitoring.ap_tolerance_warn / _error of the "
                "champion's baseline. Without: canary recall and alert rate within the feed's normal day-to-day "
                f"range (reference days' p{settings.normal_quantile * 100:.0f} x normal_margin "
                f"{settings.normal_margin}; provisional, the extreme day, with fewer than monitoring.normal_min_days "
                f"({settings.normal_min_days})); with fewer than monitoring.normal_provisional_days "
                f"({settings.normal_provisional_days}) reference days the fixed fallback: canary recall within canary_recall_tolerance of the baseline "
                "and alert rate below alert_rate_max_ratio x contamination.",
            )
        ],
        description=f"How well the champion does on one day of `{feed.name}`: precision@k, average precision and "
        "ROC-AUC from labels and feedback; label-free health (canary recall, alert rate, score drift) always.",
    )
    def detector_performance(
        context: dg.AssetExecutionContext,
        anomaly_scores: pd.DataFrame,
        validated: pd.DataFrame,
        drift_report: dict,
        reports: ReportStoreResource,
        warehouse: WarehouseResource,
        model_store: ModelStoreResource,
    ):
        from pynomaly_core.drift import health_measurements
        from pynomaly_core.evaluation.health import (
            baseline_champion,
            canaries_for,
            judge,
            measure_partition,
        )
        from pynomaly_core.warehouse import read_feedback

        day = context.partition_key
        version = scored_version(anomaly_scores, fc)
        _require_drift_of_version(fc, drift_report, day, version)
        baseline = read_baseline(reports, fc, version)
        try:
            feedback = read_feedback(
                warehouse.engine(),
                feed=feed.name,
                start=day[:10],
                end=day[:10],
                schema=warehouse.schema_name,
            )
        except Exception as exc:
            if transient(exc):  # a warehouse restart: retry the step (feed setting retries)
                raise fc.retry_requested(context) from exc
            raise
        measured = measure_partition(
            baseline_champion(baseline).load(model_store.signing_key()),
            validated,
            anomaly_scores["score"].to_numpy(dtype=float),
            labels_for_partition(fc, anomaly_scores, feedback),
            numeric,
            settings,
            score_health=health_measurements(drift_report),
            canaries=canaries_for(feed, numeric),
            random_state=(feed.detector.random_state or 0)
            + int("".join(filter(str.isdigit, day))) % 10_000,
        )
        verdict = judge(
            measured.values, baseline, settings, normal=read_normal(reports, fc, version)[1]
        )
        check = _check_result(
            PERFORMANCE_NOT_DEGRADED,
            verdict,
            {
                "mode": measured.mode,
                "verdict": verdict.severity,
                MODEL_VERSION_KEY: version,
                PARTITION_KEY: day,
                **{
                    k: float(v)
                    for k, v in measured.values.items()
                    if k in ("average_precision", "canary_recall", "alert_rate_ratio", "alert_rate")
                },
                **_verdict_metadata(verdict),
            },
            f"{feed.name}/{day} (model version {version}, {measured.mode}): {verdict.describe()}",
        )
        return dg.MaterializeResult(
            value=_performance_value(fc, day, version, measured, verdict, baseline),
            metadata=rounded(_performance_metadata(version, measured, verdict, baseline)),
            check_results=[check],
        )

    return detector_performance


def build_monitoring_assets(fc: FeedContext) -> list[dg.AssetsDefinition]:
    """The feed's three monitoring assets, as ``definitions.py`` wires them."""
    return [
        build_monitoring_reference_asset(fc),
        build_drift_report_asset(fc),
        build_detector_performance_asset(fc),
    ]
