"""Weekly maintenance per feed (Monday-to-Sunday partitions, run Monday 03:00 UTC).

* ``data_quality_report`` — a Great Expectations suite derived from the feed schema plus
  distribution expectations learned from the champion's reference, run over the week's
  validated rows; results and data docs linked from metadata.
* ``model_health`` — every registered model version reloaded under the current dependencies and
  re-scored on the sample it recorded when trained; the champion re-evaluated on the week's
  labels and feedback; versions that are neither champion nor challenger archived.
* ``retention_cleanup`` — this feed's exported rows, quarantine rows, notifications, reports,
  frames and archived models older than its ``retention`` settings removed, and counted.
* ``maintenance_report`` — one HTML and one JSON report of the week (quality, drift,
  performance, retrains, cleanup, model health); a notification (warehouse table
  ``notifications`` and the webhook ``$PYNOMALY_NOTIFY_WEBHOOK_URL``) only when a
  ``notifications`` threshold is crossed, at most once per ``notifications.cooldown_hours``.

The library code lives in :mod:`pynomaly_core.quality` and :mod:`pynomaly_core.maintenance`.
"""

import datetime as dt
import math

import dagster as dg
import numpy as np
import pandas as pd

from pynomaly_assets.defs.jobs import job_names
from pynomaly_assets.defs.monitoring import labels_for_partition, read_baseline
from pynomaly_assets.defs.sensors import AFFECTED_TAG, champion_version
from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.resources import (
    FrameStoreResource,
    MlflowResource,
    ModelStoreResource,
    NotifierResource,
    ReportStoreResource,
    WarehouseResource,
)

EXPECTATIONS_MET = "expectations_met"
VERSIONS_REPRODUCIBLE = "versions_reproducible"


def week_days(fc: FeedContext, week: str) -> list[str]:
    window = fc.weekly_partitions_def.time_window_for_partition_key(week)
    first = window.start.date()
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((window.end.date() - first).days)]


def _finite(values: list) -> list[float]:
    return [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]


def _by_day(loaded: dict) -> dict[str, dict]:
    """``{day: value}`` of a daily input; a week holding one day loads as that day's value alone."""
    if "partition" in loaded and isinstance(loaded.get("partition"), str):
        return {loaded["partition"]: loaded}
    return loaded


def build_maintenance_assets(fc: FeedContext) -> list[dg.AssetsDefinition]:
    feed = fc.feed
    weekly = fc.weekly_partitions_def
    quality_key, health_key = fc.key("data_quality_report"), fc.key("model_health")
    cleanup_key, report_key = fc.key("retention_cleanup"), fc.key("maintenance_report")
    common = {"partitions_def": weekly, "group_name": feed.name, "tags": fc.tags}

    @dg.asset(
        key=quality_key, deps=[fc.key("validated"), fc.key("monitoring_reference")], kinds={"greatexpectations"},
        check_specs=[dg.AssetCheckSpec(EXPECTATIONS_MET, asset=quality_key, blocking=False,
                                       description="every expectation of the week's suite met (a warning)")],
        description=f"Great Expectations suite (feed schema + distributions learned from the champion's reference) "
        f"over the week's validated `{feed.name}` rows, with data docs.",
        **common,
    )
    def data_quality_report(context: dg.AssetExecutionContext, frame_store: FrameStoreResource,
                            reports: ReportStoreResource):
        from pynomaly_core.drift import DriftReference
        from pynomaly_core.quality import build_suite_spec, run_quality

        week = context.partition_key
        days = week_days(fc, week)
        done = set(context.instance.get_materialized_partitions(fc.key("validated")))
        present = [d for d in days if d in done]
        if not present:
            raise dg.Failure(f"asset {quality_key.to_user_string()} week {week}: no materialized "
                             f"{fc.key('validated').to_user_string()} partition in {days[0]}..{days[-1]}")
        store = frame_store.store()
        frame = pd.concat([store.read(list(fc.key("validated").path), d) for d in present], ignore_index=True)
        version = champion_version(context.instance, fc)
        if version is None:
            raise dg.Failure(f"feed {feed.name!r} has no champion; its reference is what the distribution "
                             f"expectations are learned from (run {feed.name}__train)")
        read_baseline(reports, fc, version)
        reference = DriftReference.load(reports.reference_dir(feed.name, version)).sample
        spec = build_suite_spec(feed, reference)
        result = run_quality(feed, frame, spec, run_name=f"{feed.name}-{week}",
                             output_dir=reports.feed_dir(feed.name, "quality"))
        summary = {**result.summary(), "week": week, "days": present, "reference_version": version}
        metadata = {
            "success": bool(result.success), "success_percent": float(result.success_percent),
            "evaluated": int(result.evaluated), "failed": int(result.failed), "rows": int(result.rows),
            "days": dg.MetadataValue.json(present), "reference_version": version,
            "failures": dg.MetadataValue.md("\n".join(f"- {line}" for line in summary["failures"]) or "none"),
        }
        for name, path in (("data_docs", result.docs_path), ("validation_page", result.page_path),
                           ("result_json", result.json_path)):
            if path is not None:
                metadata[name] = dg.MetadataValue.path(str(path))
        check = dg.AssetCheckResult(
            check_name=EXPECTATIONS_MET, passed=bool(result.success), severity=dg.AssetCheckSeverity.WARN,
            metadata={"failed": int(result.failed), "success_percent": float(result.success_percent)},
            description=f"{feed.name} week {week}: {result.failed} of {result.evaluated} expectations failed"
            + (": " + "; ".join(summary["failures"][:3]) if result.failed else ""),
        )
        return dg.MaterializeResult(value=summary, metadata=metadata, check_results=[check])

    @dg.asset(
        key=health_key, deps=[fc.key("champion"), fc.key("anomaly_scores")], kinds={"mlflow"},
        check_specs=[dg.AssetCheckSpec(VERSIONS_REPRODUCIBLE, asset=health_key, blocking=False,
                                       description="every active registered version loads and reproduces its "
                                       "recorded scores under the current dependencies")],
        description=f"Every registered `{feed.name}` model version reloaded and re-scored on the sample it recorded; "
        "the champion re-evaluated on the week's labels; versions with no alias archived.",
        **common,
    )
    def model_health(context: dg.AssetExecutionContext, mlflow: MlflowResource, frame_store: FrameStoreResource,
                     warehouse: WarehouseResource):
        from pynomaly_core.evaluation.health import labelled_metrics
        from pynomaly_core.export import read_feedback
        from pynomaly_core.maintenance import (
            check_model_versions,
            health_section,
            recorded_scores_from_frame_store,
        )

        week = context.partition_key
        tracker = mlflow.tracker()
        store = frame_store.store()
        results = check_model_versions(tracker, feed.name, recorded_scores_from_frame_store(store, feed.name),
                                       reason=f"weekly maintenance {week}: neither champion nor challenger")
        section = health_section(results)
        champion = tracker.get_alias(feed.name, "champion")
        days = week_days(fc, week)
        frames = [store.read(list(fc.key("anomaly_scores").path), d) for d in days
                  if store.exists(list(fc.key("anomaly_scores").path), d)]
        week_eval: dict = {"days_scored": len(frames)}
        if champion is not None and frames:
            scored = pd.concat(frames, ignore_index=True)
            scored = scored[scored["model_version"].astype(str) == str(champion.version)].reset_index(drop=True)
            feedback = read_feedback(warehouse.engine(), feed=feed.name, start=days[0], end=days[-1],
                                     schema=warehouse.schema_name)
            labels = labels_for_partition(fc, scored, feedback)
            known = labels.notna().to_numpy()
            y = labels[known].astype(int).to_numpy()
            week_eval.update({"champion_version": str(champion.version), "rows": len(scored),
                              "labelled_rows": int(known.sum()), "labelled_anomalies": int(y.sum())})
            if y.sum() >= 1 and (y == 0).sum() >= 1:
                week_eval.update(labelled_metrics(y, scored.loc[known, "score"].to_numpy(float),
                                                  feed.monitoring.top_k))
        section["champion_week"] = week_eval
        metadata = {
            "versions_checked": section["versions_checked"], "reproducible": section["reproducible"],
            "unreproducible": section["unreproducible"], "failed_to_load": section["failed_to_load"],
            "archived_now": section["archived_now"],
            "champion_version": str(champion.version) if champion else "none",
            "versions": dg.MetadataValue.md(pd.DataFrame(section["versions"]).to_markdown(index=False)
                                            if section["versions"] else "none"),
            **{f"champion_week_{k}": float(v) for k, v in week_eval.items()
               if k in ("average_precision", "roc_auc", "precision_at_k")},
        }
        bad = [v for v in section["versions"] if not v["reproducible"]]
        check = dg.AssetCheckResult(
            check_name=VERSIONS_REPRODUCIBLE, passed=not bad, severity=dg.AssetCheckSeverity.WARN,
            metadata={"unreproducible": len(bad)},
            description=f"{feed.name}: {section['reproducible']} of {section['versions_checked']} versions reproduce "
            "their recorded scores" + ("; " + "; ".join(f"version {v['version']}: {v['error'] or 'scores differ'}"
                                                       for v in bad[:3]) if bad else ""),
        )
        return dg.MaterializeResult(value=section, metadata=metadata, check_results=[check])

    @dg.asset(
        key=cleanup_key, deps=[fc.key("anomaly_table")], kinds={"sql"},
        description=f"Removes `{feed.name}` warehouse rows, reports, frames and archived models older than the "
        "feed's `retention` settings, and counts what it removed.",
        **common,
    )
    def retention_cleanup(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                          reports: ReportStoreResource, frame_store: FrameStoreResource,
                          model_store: ModelStoreResource, mlflow: MlflowResource):
        from pynomaly_core.maintenance import cleanup_section
        from pynomaly_core.maintenance import retention_cleanup as cleanup

        r = feed.retention
        window = weekly.time_window_for_partition_key(context.partition_key)
        today = window.end.date()  # the week's end: a rerun of the same week removes the same rows
        frames_root = frame_store.store().root / feed.name
        file_dirs = {
            "drift_reports": (reports.feed_dir(feed.name, "drift"), r.reports_days),
            "maintenance_reports": (reports.feed_dir(feed.name, "maintenance"), r.reports_days),
            **{f"{stage}_frames": (frames_root / stage, r.frames_days)
               for stage in ("raw", "validated", "anomaly_scores", "explanations")},
            "models": (model_store.model_dir(feed.name, "x").parent, r.models_days),
        }
        file_dirs = {k: v for k, v in file_dirs.items() if v[0].exists()}
        result = cleanup(
            warehouse.engine(), feed.name, today=today,
            table_days={"anomaly_scores": r.anomaly_days, "quarantine": r.quarantine_days,
                        "notifications": r.notifications_days},
            file_dirs=file_dirs, schema=warehouse.schema_name, tracker=mlflow.tracker(),
            frame_store=frame_store.store(),
        )
        section = {**cleanup_section(result), "as_of": today.isoformat()}
        return dg.MaterializeResult(
            value=section,
            metadata={
                **{f"removed_{k}": int(v) for k, v in result.removed.items()},
                "removed_total": int(sum(result.removed.values())),
                "freed_bytes": int(result.freed_bytes),
                "as_of": today.isoformat(),
                "cutoffs": dg.MetadataValue.json({k: str(v) for k, v in result.cutoffs.items()}),
            },
        )

    daily_window = dg.TimeWindowPartitionMapping()

    @dg.asset(
        key=report_key,
        ins={
            "data_quality_report": dg.AssetIn(key=quality_key),
            "model_health": dg.AssetIn(key=health_key),
            "retention_cleanup": dg.AssetIn(key=cleanup_key),
            "drift_report": dg.AssetIn(key=fc.key("drift_report"), partition_mapping=daily_window),
            "detector_performance": dg.AssetIn(key=fc.key("detector_performance"), partition_mapping=daily_window),
        },
        kinds={"html"},
        description=f"The week of `{feed.name}` in one HTML and one JSON report; notifies (warehouse table "
        "`notifications`, webhook) only when a `notifications` threshold is crossed.",
        **common,
    )
    def maintenance_report(context: dg.AssetExecutionContext, data_quality_report: dict, model_health: dict,
                           retention_cleanup: dict, drift_report: dict, detector_performance: dict,
                           reports: ReportStoreResource, warehouse: WarehouseResource, notifier: NotifierResource):
        from pynomaly_core.maintenance import crossed_thresholds, notify, render_report

        week = context.partition_key
        days = week_days(fc, week)
        drift_report, detector_performance = _by_day(drift_report), _by_day(detector_performance)
        drift_days = [drift_report[d] for d in sorted(drift_report)]
        perf_days = [detector_performance[d] for d in sorted(detector_performance)]
        retrains = []
        for run in context.instance.get_runs(filters=dg.RunsFilter(job_name=job_names(feed.name)["retrain"]),
                                             limit=200):
            affected = [d for d in run.tags.get(AFFECTED_TAG, "").split(",") if d]
            if set(affected) & set(days):
                retrains.append({"run_id": run.run_id, "status": run.status.value, "days": ", ".join(affected),
                                 "reason": run.tags.get("pynomaly/reason", "")[:300]})
        sections = {
            "quality": {k: data_quality_report.get(k) for k in ("success", "success_percent", "evaluated", "failed",
                                                                 "rows", "docs_path", "failures")},
            "drift": {
                "days": len(drift_days),
                "drift_share": _finite([d.get("drift_share") for d in drift_days]),
                "score_psi": _finite([d.get("score_psi") for d in drift_days]),
                "per_day": [{"day": d.get("partition"), "drift_share": d.get("drift_share"),
                             "score_psi": d.get("score_psi"), "alert_rate": d.get("alert_rate"),
                             "drifted": ", ".join(d.get("drifted_columns") or [])} for d in drift_days],
            },
            "performance": {
                "days": len(perf_days),
                "average_precision": _finite([p.get("average_precision") for p in perf_days]),
                "degraded_days": [p["partition"] for p in perf_days if p.get("severity") != "ok"],
                "per_day": [{"day": p.get("partition"), "mode": p.get("mode"), "severity": p.get("severity"),
                             "average_precision": p.get("average_precision"), "canary_recall": p.get("canary_recall"),
                             "alert_rate": p.get("alert_rate"), "model_version": p.get("model_version")}
                            for p in perf_days],
            },
            "retrains": {"count": len(retrains), "runs": retrains},
            "cleanup": retention_cleanup,
            "model_health": {k: v for k, v in model_health.items() if k != "champion_week"},
            "champion_week": model_health.get("champion_week", {}),
        }
        html, json_path = render_report(feed.name, week, sections, reports.feed_dir(feed.name, "maintenance"))
        thresholds = feed.notifications.model_dump()
        reasons = crossed_thresholds(sections, thresholds)
        notified = "no threshold crossed"
        if reasons:
            result = notify(
                warehouse.engine(), feed.name, "maintenance_report",
                f"Pynomaly {feed.name}, week {week}: " + "; ".join(reasons),
                {"feed": feed.name, "week": week, "reasons": reasons, "report_json": str(json_path),
                 "dagster_run_id": context.run.run_id},
                webhook_url=notifier.url(), cooldown=dt.timedelta(hours=feed.notifications.cooldown_hours),
                schema=warehouse.schema_name,
            )
            notified = ("sent" + ("" if result.delivered in (None, True) else f", delivery failed: {result.error}")
                        if result.sent else f"suppressed: {result.suppressed_reason}")
        ap = sections["performance"]["average_precision"]
        shares = sections["drift"]["drift_share"]
        return dg.MaterializeResult(
            value={"week": week, "html": str(html), "json": str(json_path), "reasons": reasons, "notified": notified},
            metadata={
                "report_html": dg.MetadataValue.path(str(html)),
                "report_json": dg.MetadataValue.path(str(json_path)),
                "thresholds_crossed": len(reasons),
                "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in reasons) or "none"),
                "notification": notified,
                "retrains": len(retrains),
                "max_drift_share": float(max(shares)) if shares else 0.0,
                "min_average_precision": float(min(ap)) if ap else float("nan"),
                "mean_average_precision": float(np.mean(ap)) if ap else float("nan"),
                "quality_success_percent": float(data_quality_report.get("success_percent") or 0.0),
            },
        )

    return [data_quality_report, model_health, retention_cleanup, maintenance_report]
