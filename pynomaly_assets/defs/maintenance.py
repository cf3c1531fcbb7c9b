"""Weekly maintenance per feed (Monday-to-Sunday partitions, run Monday 03:00 UTC).

* ``data_quality_report`` — a Great Expectations suite derived from the feed schema plus
  distribution expectations learned from the champion's reference, run over the week's
  validated rows; results and data docs linked from metadata.
* ``model_health`` — every registered model version reloaded under the current dependencies and
  re-scored on the sample it recorded when trained; the champion re-evaluated on the week's
  labels and feedback; versions that are neither champion nor challenger archived.
* ``retention_cleanup`` — this feed's exported rows, quarantine rows, notifications, reports,
  frames and archived models older than its ``retention`` settings removed, and counted.
* ``platform_audit`` — the code location's installed packages checked against a local OSV
  vulnerability database (``$PYNOMALY_VULN_DB_DIR``) and bandit on the installed code
  (:mod:`pynomaly_core.maintenance.audit`); a database that cannot be read is a WARN saying the
  packages were not checked, never a clean result.
* ``maintenance_report`` — one HTML and one JSON report of the week (quality, drift,
  performance, retrains, cleanup, model health); a notification (warehouse table
  ``notifications`` and the webhook ``$PYNOMALY_NOTIFY_WEBHOOK_URL``) only when a
  ``notifications`` threshold is crossed, at most once per ``notifications.cooldown_hours``.

The library code lives in :mod:`pynomaly_core.quality` and :mod:`pynomaly_core.maintenance`.
"""

import datetime as dt
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from pynomaly_assets.defs.jobs import job_names
from pynomaly_assets.defs.monitoring import labels_for_partition, read_baseline
from pynomaly_assets.defs.sensors import champion_version
from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.metadata import report_links, rounded
from pynomaly_assets.names import AFFECTED_TAG, REASON_TAG
from pynomaly_assets.resources import (
    FrameStoreResource,
    MlflowResource,
    ModelStoreResource,
    NotifierResource,
    ReportStoreResource,
    WarehouseResource,
)

EXPECTATIONS_MET = "expectations_met"
NO_HIGH_FINDINGS = "no_high_findings"
VERSIONS_REPRODUCIBLE = "versions_reproducible"


def week_days(fc: FeedContext, week: str) -> list[str]:
    window = fc.weekly_partitions_def.time_window_for_partition_key(week)
    first = window.start.date()
    return [
        (first + dt.timedelta(days=i)).isoformat() for i in range((window.end.date() - first).days)
    ]


def _by_day(loaded: dict) -> dict[str, dict]:
    """``{day: value}`` of a daily input; a week holding one day loads as that day's value alone."""
    if "partition" in loaded and isinstance(loaded.get("partition"), str):
        return {loaded["partition"]: loaded}
    return loaded


def build_maintenance_assets(fc: FeedContext) -> list[dg.AssetsDefinition]:
    """The feed's four weekly maintenance assets, one builder each."""
    return [
        build_quality_asset(fc),
        build_model_health_asset(fc),
        build_retention_asset(fc),
        build_platform_audit_asset(fc),
        build_report_asset(fc),
    ]


def _weekly(fc: FeedContext) -> dict[str, Any]:
    """What every maintenance asset shares: weekly partitions, the feed's group and tags."""
    return {"partitions_def": fc.weekly_partitions_def, "group_name": fc.feed.name, "tags": fc.tags}


# ------------------------------------------------------------------------------ data quality
def build_quality_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    key = fc.key("data_quality_report")

    @dg.asset(
        key=key,
        deps=[fc.key("validated"), fc.key("monitoring_reference")],
        kinds={"greatexpectations"},
        check_specs=[
            dg.AssetCheckSpec(
                EXPECTATIONS_MET,
                asset=key,
                partitions_def=fc.weekly_partitions_def,  # one history row, with its week
                blocking=False,
                description="every expectation of the week's suite met (a warning)",
            )
        ],
        description=f"Great Expectations suite (feed schema + distributions learned from the champion's reference) "
        f"over the week's validated `{feed.name}` rows, with data docs.",
        **_weekly(fc),
    )
    def data_quality_report(
        context: dg.AssetExecutionContext,
        frame_store: FrameStoreResource,
        reports: ReportStoreResource,
    ):
        from pynomaly_core.drift import DriftReference
        from pynomaly_core.quality import build_suite_spec, run_quality

        week = context.partition_key
        days = week_days(fc, week)
        done = set(context.instance.get_materialized_partitions(fc.key("validated")))
        present = [d for d in days if d in done]
        if not present:
            raise dg.Failure(
                f"asset {key.to_user_string()} week {week}: no materialized "
                f"{fc.key('validated').to_user_string()} partition in {days[0]}..{days[-1]}"
            )
        store = frame_store.store()
        frame = pd.concat(
            [store.read(list(fc.key("validated").path), d) for d in present], ignore_index=True
        )
        version = champion_version(context.instance, fc)
        if version is None:
            raise dg.Failure(
                f"feed {feed.name!r} has no champion; its reference is what the distribution "
                f"expectations are learned from (run {feed.name}__train)"
            )
        read_baseline(reports, fc, version)
        reference = DriftReference.load(reports.reference_dir(feed.name, version)).sample
        result = run_quality(
            feed,
            frame,
            build_suite_spec(feed, reference),
            run_name=f"{feed.name}-{week}",
            output_dir=reports.feed_dir(feed.name, "quality"),
        )
        summary = {**result.summary(), "week": week, "days": present, "reference_version": version}
        return dg.MaterializeResult(
            value=summary,
            metadata=rounded(_quality_metadata(result, summary)),
            check_results=[_quality_check(fc, week, result, summary)],
        )

    return data_quality_report


def _quality_metadata(result: Any, summary: dict) -> dict[str, Any]:
    """``data_quality_report``'s metadata of a :class:`pynomaly_core.quality.QualityResult`."""
    metadata = {
        "success": bool(result.success),
        "success_percent": float(result.success_percent),
        "evaluated": int(result.evaluated),
        "failed": int(result.failed),
        "rows": int(result.rows),
        "days": dg.MetadataValue.json(summary["days"]),
        "reference_version": summary["reference_version"],
        "failures": dg.MetadataValue.md(
            "\n".join(f"- {line}" for line in summary["failures"]) or "none"
        ),
    }
    for name, path in (
        ("data_docs", result.docs_path),
        ("validation_page", result.page_path),
        ("result_json", result.json_path),
    ):
        if path is not None:
            metadata[name] = dg.MetadataValue.path(str(path))
    return metadata


def _quality_check(fc: FeedContext, week: str, result: Any, summary: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=EXPECTATIONS_MET,
        passed=bool(result.success),
        severity=dg.AssetCheckSeverity.WARN,
        metadata=rounded(
            {"failed": int(result.failed), "success_percent": float(result.success_percent)}
        ),
        description=f"{fc.name} week {week}: {result.failed} of {result.evaluated} expectations failed"
        + (": " + "; ".join(summary["failures"][:3]) if result.failed else ""),
    )


# ------------------------------------------------------------------------------ model health
def build_model_health_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    key = fc.key("model_health")

    @dg.asset(
        key=key,
        deps=[fc.key("champion"), fc.key("anomaly_scores")],
        kinds={"mlflow"},
        check_specs=[
            dg.AssetCheckSpec(
                VERSIONS_REPRODUCIBLE,
                asset=key,
                partitions_def=fc.weekly_partitions_def,  # one history row, with its week
                blocking=False,
                description="every active registered version loads and reproduces its "
                "recorded scores under the current dependencies",
            )
        ],
        description=f"Every registered `{feed.name}` model version reloaded and re-scored on the sample it recorded; "
        "the champion re-evaluated on the week's labels; versions with no alias archived.",
        **_weekly(fc),
    )
    def model_health(
        context: dg.AssetExecutionContext,
        mlflow: MlflowResource,
        frame_store: FrameStoreResource,
        warehouse: WarehouseResource,
        model_store: ModelStoreResource,
    ):
        from pynomaly_core.maintenance import (
            check_model_versions,
            health_section,
            recorded_scores_from_frame_store,
        )

        week = context.partition_key
        tracker = mlflow.tracker()
        store = frame_store.store()
        results = check_model_versions(
            tracker,
            feed.name,
            recorded_scores_from_frame_store(store, feed.name),
            reason=f"weekly maintenance {week}: neither champion nor challenger",
            signing_key=model_store.signing_key(),
        )
        section = health_section(results)
        champion = tracker.get_alias(feed.name, "champion")
        section["champion_week"] = _champion_week(fc, week, store, champion, warehouse)
        return dg.MaterializeResult(
            value=section,
            metadata=rounded(_health_metadata(section, champion)),
            check_results=[_health_check(fc, section)],
        )

    return model_health


def _champion_week(
    fc: FeedContext, week: str, store: Any, champion: Any, warehouse: WarehouseResource
) -> dict:
    """The champion on the week's scored days, with labels from the feed and reviewer feedback."""
    from pynomaly_core.maintenance import champion_rows, champion_week
    from pynomaly_core.warehouse import read_feedback

    days = week_days(fc, week)
    scores_key = list(fc.key("anomaly_scores").path)
    frames = [store.read(scores_key, d) for d in days if store.exists(scores_key, d)]
    week_eval: dict = {"days_scored": len(frames)}
    if champion is not None and frames:
        scored = champion_rows(frames, champion.version)
        feedback = read_feedback(
            warehouse.engine(),
            feed=fc.name,
            start=days[0],
            end=days[-1],
            schema=warehouse.schema_name,
        )
        labels = labels_for_partition(fc, scored, feedback)
        week_eval.update(champion_week(scored, labels, champion.version, fc.feed.monitoring.top_k))
    return week_eval


def _health_metadata(section: dict, champion: Any) -> dict[str, Any]:
    week_eval = section["champion_week"]
    return {
        "versions_checked": section["versions_checked"],
        "reproducible": section["reproducible"],
        "unreproducible": section["unreproducible"],
        "failed_to_load": section["failed_to_load"],
        "archived_now": section["archived_now"],
        "champion_version": str(champion.version) if champion else "none",
        "versions": dg.MetadataValue.md(
            pd.DataFrame(section["versions"]).to_markdown(index=False)
            if section["versions"]
            else "none"
        ),
        **{
            f"champion_week_{k}": float(v)
            for k, v in week_eval.items()
            if k in ("average_precision", "roc_auc") or k.startswith("precision_at_")
        },
    }


def _health_check(fc: FeedContext, section: dict) -> dg.AssetCheckResult:
    bad = [v for v in section["versions"] if not v["reproducible"]]
    return dg.AssetCheckResult(
        check_name=VERSIONS_REPRODUCIBLE,
        passed=not bad,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unreproducible": len(bad)},
        description=f"{fc.name}: {section['reproducible']} of {section['versions_checked']} versions reproduce "
        "their recorded scores"
        + (
            "; "
            + "; ".join(f"version {v['version']}: {v['error'] or 'scores differ'}" for v in bad[:3])
            if bad
            else ""
        ),
    )


# ------------------------------------------------------------------------------ retention
def build_retention_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed

    @dg.asset(
        key=fc.key("retention_cleanup"),
        deps=[fc.key("anomaly_table")],
        kinds={"sql"},
        description=f"Removes `{feed.name}` warehouse rows, reports, frames and archived models older than the "
        "feed's `retention` settings, and counts what it removed.",
        **_weekly(fc),
    )
    def retention_cleanup(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        reports: ReportStoreResource,
        frame_store: FrameStoreResource,
        model_store: ModelStoreResource,
        mlflow: MlflowResource,
    ):
        from pynomaly_core.maintenance import cleanup_section
        from pynomaly_core.maintenance import retention_cleanup as cleanup

        r = feed.retention
        window = fc.weekly_partitions_def.time_window_for_partition_key(context.partition_key)
        today = window.end.date()  # the week's end: a rerun of the same week removes the same rows
        result = cleanup(
            warehouse.engine(),
            feed.name,
            today=today,
            table_days={
                "anomaly_scores": r.anomaly_days,
                "anomaly_attributes": r.anomaly_days,  # the scored rows' context goes with them
                "quarantine": r.quarantine_days,
                "notifications": r.notifications_days,
            },
            file_dirs=_retention_dirs(fc, reports, frame_store, model_store),
            schema=warehouse.schema_name,
            tracker=mlflow.tracker(),
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

    return retention_cleanup


def _retention_dirs(
    fc: FeedContext,
    reports: ReportStoreResource,
    frame_store: FrameStoreResource,
    model_store: ModelStoreResource,
) -> dict[str, tuple]:
    """The feed's own report, frame and model directories that exist, with their retention in days."""
    r = fc.feed.retention
    frames_root = frame_store.store().root / fc.name
    file_dirs = {
        "drift_reports": (reports.feed_dir(fc.name, "drift"), r.reports_days),
        "maintenance_reports": (reports.feed_dir(fc.name, "maintenance"), r.reports_days),
        **{
            f"{stage}_frames": (frames_root / stage, r.frames_days)
            for stage in ("raw", "validated", "anomaly_scores", "explanations")
        },
        "models": (model_store.model_dir(fc.name, "x").parent, r.models_days),
    }
    return {k: v for k, v in file_dirs.items() if v[0].exists()}


# ------------------------------------------------------------------------------ platform audit
def build_platform_audit_asset(fc: FeedContext) -> dg.AssetsDefinition:
    key = fc.key("platform_audit")

    @dg.asset(
        key=key,
        kinds={"python"},
        check_specs=[
            dg.AssetCheckSpec(
                NO_HIGH_FINDINGS,
                asset=key,
                description="No HIGH or CRITICAL vulnerability in an installed package and no HIGH "
                "bandit issue (ERROR); WARN when the vulnerability database or bandit could not be used.",
            )
        ],
        description="The code location's installed packages checked against the local OSV vulnerability "
        "database ($PYNOMALY_VULN_DB_DIR) and bandit on the installed Pynomaly code; an unreadable "
        "database is reported as a WARN (packages not checked), never as no known vulnerabilities.",
        **_weekly(fc),
    )
    def platform_audit(context: dg.AssetExecutionContext):
        from pynomaly_core.maintenance.audit import audit_platform

        result = audit_platform()
        for warning in result.warnings:
            context.log.warning(warning)
        section = result.section()
        high = result.high
        check = dg.AssetCheckResult(
            check_name=NO_HIGH_FINDINGS,
            passed=result.status == "ok",
            severity=dg.AssetCheckSeverity.ERROR if high else dg.AssetCheckSeverity.WARN,
            description=result.summary(),
            metadata={"high_findings": len(high), "warnings": len(result.warnings)},
        )
        return dg.MaterializeResult(
            value=section,
            metadata={
                "status": result.status,
                "summary": result.summary(),
                "packages_checked": section["packages_checked"],
                "vulnerability_records": result.vuln_records,
                "high_findings": len(high),
                "findings": dg.MetadataValue.json(section["findings"][:50]),
            },
            check_results=[check],
        )

    return platform_audit


def audit_reasons(section: dict) -> list[str]:
    """The notification reasons of a ``platform_audit`` section: its high findings."""
    if section.get("status") != "high":
        return []
    high = [f for f in section.get("findings", []) if f["severity"] in ("HIGH", "CRITICAL")]
    named = ", ".join(f"{f['id']} ({f['subject']})" for f in high[:5])
    return [f"platform_audit: {len(high)} high or critical finding(s): {named}"]


# ------------------------------------------------------------------------------ weekly report
def build_report_asset(fc: FeedContext) -> dg.AssetsDefinition:
    feed = fc.feed
    daily_window = dg.TimeWindowPartitionMapping()

    @dg.asset(
        key=fc.key("maintenance_report"),
        ins={
            "data_quality_report": dg.AssetIn(key=fc.key("data_quality_report")),
            "model_health": dg.AssetIn(key=fc.key("model_health")),
            "retention_cleanup": dg.AssetIn(key=fc.key("retention_cleanup")),
            "platform_audit": dg.AssetIn(key=fc.key("platform_audit")),
            "drift_report": dg.AssetIn(key=fc.key("drift_report"), partition_mapping=daily_window),
            "detector_performance": dg.AssetIn(
                key=fc.key("detector_performance"), partition_mapping=daily_window
            ),
        },
        kinds={"html"},
        description=f"The week of `{feed.name}` in one HTML and one JSON report; notifies (warehouse table "
        "`notifications`, webhook) only when a `notifications` threshold is crossed.",
        **_weekly(fc),
    )
    def maintenance_report(
        context: dg.AssetExecutionContext,
        data_quality_report: dict,
        model_health: dict,
        retention_cleanup: dict,
        platform_audit: dict,
        drift_report: dict,
        detector_performance: dict,
        reports: ReportStoreResource,
        warehouse: WarehouseResource,
        notifier: NotifierResource,
    ):
        from pynomaly_core.maintenance import (
            crossed_thresholds,
            notify,
            render_report,
            weekly_sections,
        )

        week = context.partition_key
        drift_report, detector_performance = _by_day(drift_report), _by_day(detector_performance)
        sections = weekly_sections(
            quality=data_quality_report,
            model_health=model_health,
            cleanup=retention_cleanup,
            drift_days=[drift_report[d] for d in sorted(drift_report)],
            performance_days=[detector_performance[d] for d in sorted(detector_performance)],
            retrains=_week_retrains(context.instance, fc, week_days(fc, week)),
        )
        sections["earlier_evaluations"] = _earlier_evaluations(
            context.instance, fc, week_days(fc, week), drift_report, detector_performance
        )
        sections["platform_audit"] = platform_audit
        html, json_path = render_report(
            feed.name, week, sections, reports.feed_dir(feed.name, "maintenance")
        )
        reasons = crossed_thresholds(sections, feed.notifications.model_dump())
        reasons += audit_reasons(platform_audit)
        notified = "no threshold crossed"
        if reasons:
            notified = notify(
                warehouse.engine(),
                feed.name,
                "maintenance_report",
                f"Pynomaly {feed.name}, week {week}: " + "; ".join(reasons),
                {
                    "feed": feed.name,
                    "week": week,
                    "reasons": reasons,
                    "report_json": str(json_path),
                    "dagster_run_id": context.run.run_id,
                },
                webhook_url=notifier.url(),
                cooldown=dt.timedelta(hours=feed.notifications.cooldown_hours),
                schema=warehouse.schema_name,
            ).outcome()
        return dg.MaterializeResult(
            value={
                "week": week,
                "html": str(html),
                "json": str(json_path),
                "reasons": reasons,
                "notified": notified,
            },
            metadata=rounded(
                {
                    **_report_metadata(sections, html, json_path, reasons, notified),
                    **report_links(
                        reports.base_dir, reports.base_url, report_html=html, report_json=json_path
                    ),
                }
            ),
        )

    return maintenance_report


def _earlier_evaluations(
    instance: dg.DagsterInstance,
    fc: FeedContext,
    days: list[str],
    latest_drift: dict[str, dict],
    latest_performance: dict[str, dict],
) -> dict[str, Any]:
    """The week's drift and performance evaluations by a model other than the latest one's.

    A rescore by a new champion replaces a day's asset value (what the sections above read), but
    the instance keeps every materialization: these rows are the first evaluations (the drift that
    led to a retrain), each with its model version and its own report file.
    """
    rows: list[dict[str, Any]] = []
    for name, latest in (
        ("drift_report", latest_drift),
        ("detector_performance", latest_performance),
    ):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=fc.key(name), asset_partitions=list(days)), limit=1000
        ).records
        for record in reversed(records):  # oldest first
            event = record.event_log_entry.asset_materialization
            if event is None or event.partition is None:
                continue
            meta = {k: v.value for k, v in event.metadata.items()}
            version = str(meta.get("model_version", meta.get("reference_version")))
            now = latest.get(event.partition) or {}
            if version == str(now.get("model_version", now.get("reference_version"))):
                continue
            rows.append(
                {
                    "day": event.partition,
                    "asset": name,
                    "model_version": version,
                    "drift_share": meta.get("drift_share"),
                    "score_psi": meta.get("score_psi"),
                    "average_precision": meta.get("average_precision"),
                    "verdict": meta.get("verdict"),
                    "report_html": meta.get("report_html"),
                }
            )
    return {"count": len(rows), "per_day": sorted(rows, key=lambda r: (r["day"], r["asset"]))}


def _week_retrains(instance: dg.DagsterInstance, fc: FeedContext, days: list[str]) -> list[dict]:
    """The feed's retraining runs asked for any of ``days`` (by their affected-partitions tag)."""
    retrains = []
    for run in instance.get_runs(
        filters=dg.RunsFilter(job_name=job_names(fc.name)["retrain"]), limit=200
    ):
        affected = [d for d in run.tags.get(AFFECTED_TAG, "").split(",") if d]
        if set(affected) & set(days):
            retrains.append(
                {
                    "run_id": run.run_id,
                    "status": run.status.value,
                    "days": ", ".join(affected),
                    "reason": run.tags.get(REASON_TAG, "")[:300],
                }
            )
    return retrains


def _report_metadata(
    sections: dict, html: Any, json_path: Any, reasons: list[str], notified: str
) -> dict:
    ap = sections["performance"]["average_precision"]
    shares = sections["drift"]["drift_share"]
    return {
        "report_html": dg.MetadataValue.path(str(html)),
        "report_json": dg.MetadataValue.path(str(json_path)),
        "thresholds_crossed": len(reasons),
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in reasons) or "none"),
        "notification": notified,
        "retrains": sections["retrains"]["count"],
        # evaluations a rescore replaced, kept in the report's earlier_evaluations section
        "earlier_evaluations": int(sections.get("earlier_evaluations", {}).get("count", 0)),
        "max_drift_share": float(max(shares)) if shares else 0.0,
        "min_average_precision": float(min(ap)) if ap else float("nan"),
        "mean_average_precision": float(np.mean(ap)) if ap else float("nan"),
        "quality_success_percent": float(sections["quality"].get("success_percent") or 0.0),
        "platform_audit": str(sections.get("platform_audit", {}).get("status", "not run")),
    }
