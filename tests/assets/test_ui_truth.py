"""What the UI, the demo's summary and the reports show is what happened (issue 14)."""

from __future__ import annotations

import copy
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from pynomaly_assets.defs.maintenance import _earlier_evaluations
from pynomaly_assets.defs.validation import ROW_ACCOUNTING
from pynomaly_assets.feed_context import load_feed_contexts
from pynomaly_assets.metadata import histogram_table, report_links, rounded, significant
from pynomaly_assets.names import DRIFT_WITHIN_BOUNDS, PERFORMANCE_NOT_DEGRADED
from pynomaly_core.warehouse.catalog import ensure_warehouse
from pynomaly_core.warehouse.sql import make_engine
from tests.assets.helpers import (
    SMALL_DEMO,
    definitions_for,
    failure_message,
    latest_metadata,
    run_job,
    write_feed,
)
from tests.pg import temporary_database


@pytest.mark.postgres
def test_demo_summary_resolves_the_postgres_warehouse_from_the_environment(monkeypatch):
    """``summarize`` runs outside Dagster; the warehouse's ``EnvVar`` must still be resolved."""
    from pynomaly_assets.demo import summarize

    with temporary_database("pynomaly_wh") as url:
        monkeypatch.setenv("PYNOMALY_WAREHOUSE_URL", url)
        monkeypatch.setenv("PYNOMALY_WAREHOUSE_SCHEMA", "Anomalies")
        engine = make_engine(url)
        try:
            ensure_warehouse(engine, "Anomalies")
        finally:
            engine.dispose()
        text = summarize("demo_telemetry")
    shown = sa.make_url(url).render_as_string(hide_password=True)
    assert f'warehouse {shown} view "Anomalies".anomaly_daily_summary:' in text


# ----------------------------------------------------------------- a rescore keeps the evidence
FEED = "truth"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
SCORED = "2026-11-04"  # after both champions' training window: rescoring it is no hindsight
WEAK = {"name": "HBOS", "contamination": 0.05}
REPORTS_URL = "http://reports.example:8001/pynomaly/"
STRONG = {"name": "KNN", "contamination": 0.05}


def _feed(detector: dict, **lifecycle) -> dict:
    data = copy.deepcopy(SMALL_DEMO)
    data["name"] = FEED
    data["source"]["anomaly_rate"] = 0.08
    data["detector"] = detector
    data["lifecycle"] = {
        "candidates": [detector["name"]],
        "min_labelled_anomalies": 5,
        "n_boot": 200,
        **lifecycle,
    }
    data["explanations"] = {"top_k": 0}
    return data


def _drift_events(instance: dg.DagsterInstance, day: str) -> list[dict]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([FEED, "drift_report"]), asset_partitions=[day]
        ),
        limit=10,
    ).records
    return [
        {k: v.value for k, v in r.event_log_entry.asset_materialization.metadata.items()}
        for r in reversed(records)  # oldest first
    ]


@pytest.fixture(scope="module")
def rescored(tmp_path_factory):
    """A weak first champion scores SCORED; a better one is promoted and rescores it."""
    root = tmp_path_factory.mktemp("truth")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    for var in ("PYNOMALY_WAREHOUSE_URL", "PYNOMALY_MLFLOW_TRACKING_URI", "PYNOMALY_REPORTS_DIR"):
        mp.delenv(var, raising=False)
    # where a web server would serve $PYNOMALY_HOME/reports: reports get a link beside their path
    mp.setenv("PYNOMALY_REPORTS_URL", REPORTS_URL)
    feeds = root / "feeds"
    window = {"ops": {f"{FEED}__training_window": {"config": {"end_date": DAYS[-1]}}}}
    out: dict = {"root": root}
    with dg.instance_for_test(temp_dir=str(root)) as instance:
        write_feed(feeds, _feed(WEAK, min_auc=0.99))
        defs = definitions_for(feeds)
        for day in [*DAYS, SCORED]:
            assert run_job(defs, instance, f"{FEED}__ingest", day).success
        first_train = run_job(defs, instance, f"{FEED}__train", run_config=window)
        assert first_train.success, failure_message(first_train)
        first = run_job(defs, instance, f"{FEED}__score", SCORED)
        assert first.success, failure_message(first)
        (before,) = _drift_events(instance, SCORED)
        out["first_html"] = Path(before["report_html"]).read_text()

        write_feed(feeds, _feed(STRONG))
        defs = definitions_for(feeds)
        second_train = run_job(defs, instance, f"{FEED}__train", run_config=window)
        assert second_train.success, failure_message(second_train)
        assert latest_metadata(instance, [FEED, "champion"])["decision"] == "promoted"
        again = run_job(defs, instance, f"{FEED}__score", SCORED)
        assert again.success, failure_message(again)
        from pynomaly_core.storage import JsonStore

        values = JsonStore(root / "home" / "values")
        fc = next(c for c in load_feed_contexts(feeds) if c.name == FEED)
        out.update(
            instance=instance,
            before=before,
            events=_drift_events(instance, SCORED),
            earlier=_earlier_evaluations(
                instance,
                fc,
                [SCORED],
                {SCORED: values.read([FEED, "drift_report"], SCORED)},
                {SCORED: values.read([FEED, "detector_performance"], SCORED)},
            ),
        )
        yield out
    mp.undo()


def test_a_rescore_keeps_the_first_drift_report_and_its_metrics(rescored):
    first, latest = rescored["events"]
    assert first == rescored["before"]  # the first materialization's metadata is untouched
    assert first["model_version"] != latest["model_version"]
    assert first["report_html"] != latest["report_html"]
    # the first report file is still there, unchanged, next to the rescore's
    assert Path(first["report_html"]).read_text() == rescored["first_html"]
    assert Path(latest["report_html"]).is_file()
    assert Path(first["report_html"]).name == f"{SCORED}.model-{first['model_version']}.html"


def test_the_weekly_report_lists_the_evaluation_a_rescore_replaced(rescored):
    earlier = rescored["earlier"]
    first = rescored["before"]
    rows = {(r["asset"], r["model_version"]) for r in earlier["per_day"]}
    assert rows == {
        ("drift_report", first["model_version"]),
        ("detector_performance", first["model_version"]),
    }
    drift = next(r for r in earlier["per_day"] if r["asset"] == "drift_report")
    assert drift["score_psi"] == first["score_psi"] and drift["day"] == SCORED
    assert drift["report_html"] == first["report_html"]


def test_each_partitioned_check_evaluation_is_recorded_once_with_its_partition(rescored):
    """Not a partitioned "planned" row shown as Skipped next to a result without a partition."""
    instance = rescored["instance"]
    expected = {
        dg.AssetCheckKey(dg.AssetKey([FEED, "validated"]), ROW_ACCOUNTING): 1,  # one ingest
        dg.AssetCheckKey(dg.AssetKey([FEED, "drift_report"]), DRIFT_WITHIN_BOUNDS): 2,  # 2 scores
        dg.AssetCheckKey(dg.AssetKey([FEED, "detector_performance"]), PERFORMANCE_NOT_DEGRADED): 2,
    }
    for key, runs in expected.items():
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=20)
        mine = [h for h in history if h.partition == SCORED or h.partition is None]
        assert len(mine) == runs, (key, [(h.status, h.partition) for h in history])
        assert {h.partition for h in mine} == {SCORED}, key
        assert all(h.status != AssetCheckExecutionRecordStatus.PLANNED for h in mine), key


def test_every_exported_column_has_a_description_in_the_column_schema():
    from pynomaly_assets.defs.export import anomaly_table_schema
    from pynomaly_core.warehouse import ANOMALY_TABLE

    schema = anomaly_table_schema()
    assert [c.name for c in schema.columns] == [c.name for c in ANOMALY_TABLE.columns]
    missing = [c.name for c in schema.columns if not c.description]
    assert not missing, f"exported columns without a description: {missing}"


# ----------------------------------------------------------------- metadata the UI shows as it is
def test_metadata_floats_keep_four_significant_digits_in_every_form():
    meta = rounded(
        {
            "rate": 0.0123456789,
            "p_value": 3.219876e-9,  # rounding to decimal places would show 0
            "chart": dg.MetadataValue.float(0.987654321),
            "json": dg.MetadataValue.json({"psi": [0.333333333, 2], "ok": True}),
            "numpy": np.float32(1234.5678),
            "rows": 12345678,
            "flag": True,
            "missing": float("nan"),
        }
    )
    assert (meta["rate"], meta["p_value"]) == (0.01235, 3.22e-9)
    assert meta["chart"] == dg.MetadataValue.float(0.9877)
    assert meta["json"].data == {"psi": [0.3333, 2], "ok": True}
    assert meta["numpy"] == 1235.0 and type(meta["numpy"]) is float
    assert meta["rows"] == 12345678 and meta["flag"] is True and np.isnan(meta["missing"])


def test_the_histogram_table_marks_exactly_the_rows_above_the_threshold():
    scores = np.random.default_rng(0).normal(0, 1, 5000)
    threshold = float(np.quantile(scores, 0.97))
    scores[:3] = threshold  # at the threshold: not flagged (flags are score > threshold)
    records = [r.data for r in histogram_table(scores, threshold).records]
    assert sum(r["rows"] for r in records) == 5000
    assert sum(r["rows"] for r in records if r["flagged"]) == int((scores > threshold).sum())
    assert [r["flagged"] for r in records] == sorted(r["flagged"] for r in records)  # low to high
    assert all(r["bar"] for r in records if r["rows"])  # every non-empty bin draws a bar
    # no score below the threshold: the rows exactly at it get a bin of their own, unflagged
    edge = [r.data for r in histogram_table(np.array([1.0, 1.0, 2.0, 3.0]), 1.0).records]
    assert [(r["rows"], r["flagged"]) for r in edge if r["rows"]] == [
        (2, False),
        (1, True),
        (1, True),
    ]


def test_a_report_gets_a_link_only_where_its_directory_is_served(tmp_path):
    html = tmp_path / "feed" / "drift" / "2026-11-04.model-1.html"
    assert report_links(tmp_path, None, report_html=html) == {
        "report_html": dg.MetadataValue.path(str(html))
    }
    served = report_links(tmp_path, "http://h:8001/r/", report_html=html)
    assert served["report_html_url"] == dg.MetadataValue.url(
        "http://h:8001/r/feed/drift/2026-11-04.model-1.html"
    )
    elsewhere = report_links(tmp_path / "feed", "http://h:8001/r", report_html=tmp_path / "x.html")
    assert "report_html_url" not in elsewhere


def _floats(value) -> list[float]:
    if isinstance(value, dg.FloatMetadataValue):
        return [] if value.value is None else [value.value]
    if isinstance(value, dg.JsonMetadataValue):
        return _floats(value.data)
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return []


def test_every_float_in_asset_and_check_metadata_is_rounded(rescored):
    instance = rescored["instance"]
    unrounded, seen = [], 0
    for run in instance.get_runs():
        for event in instance.all_logs(run.run_id):
            if event.asset_materialization is not None:
                what, metadata = (
                    event.asset_materialization.asset_key,
                    event.asset_materialization.metadata,
                )
            elif event.asset_check_evaluation is not None:
                check = event.asset_check_evaluation
                what, metadata = (check.asset_key, check.check_name), check.metadata
            else:
                continue
            for key, value in metadata.items():
                for number in _floats(value):
                    seen += 1
                    if np.isfinite(number) and significant(number) != number:
                        unrounded.append((what, key, number))
    assert seen > 50  # the graph's scores, drift, performance, lifecycle and their checks
    assert not unrounded, unrounded


def test_the_score_histogram_shows_inline_and_its_plot_is_linked(rescored):
    (first, latest) = rescored["events"]
    meta = latest_metadata(rescored["instance"], [FEED, "anomaly_scores"], SCORED)
    histogram = meta["score_histogram"]
    assert isinstance(histogram, dg.TableMetadataValue)  # rendered inline, not behind a button
    assert sum(r.data["rows"] for r in histogram.records) == meta["dagster/row_count"]
    plot = Path(meta["score_histogram_png"])
    assert plot.read_bytes().startswith(b"\x89PNG")
    # one plot per day and model version, like the drift reports: the rescore kept the first
    assert plot.name == f"{SCORED}.model-{latest['model_version']}.hist.png"
    assert (plot.parent / f"{SCORED}.model-{first['model_version']}.hist.png").is_file()
    reports = rescored["root"] / "home" / "reports"
    assert meta["score_histogram_png_url"] == REPORTS_URL + plot.relative_to(reports).as_posix()


def test_drift_reports_are_linked_where_the_reports_are_served(rescored):
    latest = rescored["events"][-1]
    reports = rescored["root"] / "home" / "reports"
    html = Path(latest["report_html"])
    assert latest["report_html_url"] == REPORTS_URL + html.relative_to(reports).as_posix()
