"""The drift-driven retraining story on a real Dagster instance, real MLflow, real Evidently.

In order: a champion is trained on calm days; scoring the calm days passes the drift and
performance checks; the feed drifts and scoring the drifted days fails
``performance_not_degraded``; the retraining sensor fires once (and skips on its next tick);
while the retrain runs, the next day arrives and the old champion scores it; the retrain
(its window: the champion's calm days plus the recent days up to the last drifted one)
promotes a new champion with the sensor's reason in its tags and in the new model's MLflow
run; the sensor then rescores only the day after the new champion's training window, which
recovers, while the drifted days inside the window keep their first scores (no hindsight:
rescoring them is refused unless asked for). Then the cooldown and the schedules.
"""

import copy
import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest

from tests.assets.helpers import (
    SMALL_DEMO,
    check_results,
    definitions_for,
    failure_message,
    latest_metadata,
    run_job,
    write_feed,
)

FEED = "drifty"
CALM = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
DRIFTED = ["2026-11-06", "2026-11-07"]
AFTER = "2026-11-08"
DAYS = [*CALM, "2026-11-05", *DRIFTED, AFTER]


def feed_dict(**monitoring) -> dict:
    data = copy.deepcopy(SMALL_DEMO)
    data["name"] = FEED
    data["source"].update(
        {
            "machines": 3,
            "interval_minutes": 10,
            "anomaly_rate": 0.05,
            "drift_date": "2026-11-06",
            "drift_strength": 2.0,
        }
    )
    data["detector"] = {"name": "KNN", "contamination": 0.05}
    data["training"] = {"window_days": 4, "min_rows": 200, "retrain_window": {"recent_days": 3}}
    data["lifecycle"] = {"candidates": ["KNN"], "min_labelled_anomalies": 5, "n_boot": 300}
    data["explanations"] = {"top_k": 3, "max_background": 10}
    data["monitoring"] = {
        "cooldown_hours": 0,
        "drift_sample_rows": 1000,
        "reference_sample_rows": 1000,
        "canary_rows": 100,
        **monitoring,
    }
    return data


def evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    sensor = defs.resolve_sensor_def(f"{FEED}__retrain_sensor")
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as ctx:
        data = sensor.evaluate_tick(ctx)
    return data


def execute(
    defs, instance, request: dg.RunRequest, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(request.job_name)
    return job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        run_config={**(request.run_config or {}), **(run_config or {})},
        tags=request.tags,
        raise_on_error=False,
    )


def check_of(instance, run_id: str, name: str):
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        data = record.dagster_event.event_specific_data
        if data.check_name == name:
            return data
    raise AssertionError(f"check {name} not evaluated in run {run_id}")


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    for var in ("PYNOMALY_WAREHOUSE_URL", "PYNOMALY_MLFLOW_TRACKING_URI", "PYNOMALY_REPORTS_DIR"):
        mp.delenv(var, raising=False)
    feeds = root / "feeds"
    write_feed(feeds, feed_dict())
    defs = definitions_for(feeds)
    from pynomaly_core.tracking import Tracker

    tracker = Tracker(f"sqlite:///{root / 'home' / 'mlflow' / 'mlflow.db'}")
    out: dict = {"defs": defs, "tracker": tracker, "feeds": feeds, "root": root}
    (root / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
        out["instance"] = instance
        for day in DAYS[:-1]:
            result = run_job(defs, instance, f"{FEED}__ingest", day)
            assert result.success, failure_message(result)
        window = {"ops": {f"{FEED}__training_window": {"config": {"end_date": CALM[-1]}}}}
        train = run_job(defs, instance, f"{FEED}__train", run_config=window)
        assert train.success, failure_message(train)
        out["first_champion"] = latest_metadata(instance, [FEED, "champion"])["champion_version"]
        out["before"] = {}
        for day in [*CALM[-2:], *DRIFTED]:
            result = run_job(defs, instance, f"{FEED}__score", day)
            assert result.success, failure_message(result)
            out["before"][day] = {
                "run_id": result.run_id,
                "performance": latest_metadata(instance, [FEED, "detector_performance"], day),
                "drift": latest_metadata(instance, [FEED, "drift_report"], day),
            }
        first = evaluate(defs, instance, None)
        out["first_tick"] = first
        out["second_tick"] = evaluate(defs, instance, first.cursor)
        # the next day arrives while the retrain runs: the old champion scores it
        for job in ("ingest", "score"):
            result = run_job(defs, instance, f"{FEED}__{job}", AFTER)
            assert result.success, failure_message(result)
        out["meanwhile"] = {
            "run_id": result.run_id,
            "performance": latest_metadata(instance, [FEED, "detector_performance"], AFTER),
            "drift": latest_metadata(instance, [FEED, "drift_report"], AFTER),
        }
        retrain_request = first.run_requests[0]
        # the window the retrain read when it started, before AFTER was ingested
        started = {"ops": {f"{FEED}__training_window": {"config": {"end_date": DRIFTED[-1]}}}}
        retrain = execute(defs, instance, retrain_request, started)
        assert retrain.success, failure_message(retrain)
        out["retrain"] = retrain
        out["retrain_window"] = latest_metadata(instance, [FEED, "training_window"])
        out["champion_after"] = latest_metadata(instance, [FEED, "champion"])
        third = evaluate(defs, instance, out["second_tick"].cursor)
        out["third_tick"] = third
        out["after"] = {}
        for request in third.run_requests:
            result = execute(defs, instance, request)
            assert result.success, failure_message(result)
            out["after"][request.partition_key] = {
                "run_id": result.run_id,
                "performance": latest_metadata(
                    instance, [FEED, "detector_performance"], request.partition_key
                ),
                "drift": latest_metadata(instance, [FEED, "drift_report"], request.partition_key),
                "scores": latest_metadata(
                    instance, [FEED, "anomaly_scores"], request.partition_key
                ),
            }
        out["fourth_tick"] = evaluate(defs, instance, third.cursor)
        # a plain rescore of a drifted day by the new champion, which has seen it, is refused
        out["hindsight"] = run_job(defs, instance, f"{FEED}__score", DRIFTED[-1])
        out["drifted_scores"] = {
            day: latest_metadata(instance, [FEED, "anomaly_scores"], day) for day in DRIFTED
        }
        yield out
    mp.undo()


def test_calm_days_pass_both_checks(story):
    for day in CALM[-2:]:
        run_id = story["before"][day]["run_id"]
        checks = check_results(story["instance"], run_id)
        assert checks["performance_not_degraded"] is True, story["before"][day]["performance"]
        assert story["before"][day]["performance"]["mode"] == "labels"


def test_drifted_days_fail_performance_with_error_severity(story):
    for day in DRIFTED:
        before = story["before"][day]
        evaluation = check_of(story["instance"], before["run_id"], "performance_not_degraded")
        assert evaluation.passed is False
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert (
            before["performance"]["average_precision"]
            < before["performance"]["baseline_average_precision"] - 0.25
        )
        # the drift report sees the shifted sensors and the flood of alerts
        assert {"temperature_c", "vibration_mm_s"} <= set(before["drift"]["drifted_columns"])
        assert before["drift"]["alert_rate_ratio"] > 3
        html = Path(before["drift"]["report_html"]).read_text()
        assert html.lstrip().startswith("<!DOCTYPE html>") and "temperature_c" in html


def test_drift_metadata_is_float_for_charts(story):
    meta = story["before"][DRIFTED[0]]["drift"]
    for name in ("drift_share", "score_psi", "score_ks", "alert_rate"):
        assert isinstance(meta[name], float), name
    perf = story["before"][DRIFTED[0]]["performance"]
    for name in ("average_precision", "roc_auc", "precision_at_100", "canary_recall", "alert_rate"):
        assert isinstance(perf[name], float), name


def test_sensor_fires_once_then_skips(story):
    first, second = story["first_tick"], story["second_tick"]
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.job_name == f"{FEED}__retrain"
    assert request.tags["pynomaly/retrain"] == FEED
    assert set(request.tags["pynomaly/affected_partitions"].split(",")) == set(DRIFTED)
    assert "performance_not_degraded" in request.tags["pynomaly/reason"]
    assert request.run_key
    assert not second.run_requests
    assert second.skip_message and "no new failed" in second.skip_message


def test_retrain_promotes_a_new_champion_and_records_the_reason(story):
    after = story["champion_after"]
    assert after["decision"] == "promoted", after["reason"]
    assert after["champion_version"] != story["first_champion"]
    # the retrain window: the first champion's calm days (its reference) plus the 3 recent days
    window = story["retrain_window"]
    assert window["retrain_window"] is True
    assert window["window"] == "reference 2026-11-01..2026-11-04 + recent 2026-11-05..2026-11-07"
    assert window["partitions_used"] == DAYS[:-1]
    assert after["champion_training_days"] == "2026-11-01..2026-11-07"
    run = story["instance"].get_run_by_id(story["retrain"].run_id)
    reason = run.tags["pynomaly/reason"]
    mlflow_run = story["tracker"].client.get_run(after["mlflow_run_id"])
    assert mlflow_run.data.tags["reason"] == reason


def test_sensor_rescores_only_the_day_after_the_new_window_and_it_recovers(story):
    third = story["third_tick"]
    # the affected drifted days lie inside the new champion's window; the day after it, which the
    # former champion scored meanwhile, is rescored
    assert [r.partition_key for r in third.run_requests] == [AFTER]
    assert all(r.job_name == f"{FEED}__score" for r in third.run_requests)
    before, after = story["meanwhile"], story["after"][AFTER]
    new = story["champion_after"]["champion_version"]
    assert check_results(story["instance"], before["run_id"])["performance_not_degraded"] is False
    assert after["performance"]["model_version"] == new
    assert (after["scores"]["model_version"], after["scores"]["previous_model_version"]) == (
        new,
        story["first_champion"],
    )
    assert check_results(story["instance"], after["run_id"])["performance_not_degraded"] is True, (
        after
    )
    assert (
        after["performance"]["average_precision"]
        > before["performance"]["average_precision"] + 0.25
    )
    assert after["drift"]["alert_rate_ratio"] < before["drift"]["alert_rate_ratio"]
    assert not story["fourth_tick"].run_requests


def test_drifted_days_keep_their_first_scores_without_hindsight(story):
    for day in DRIFTED:
        assert story["drifted_scores"][day]["model_version"] == story["first_champion"]
    refused = story["hindsight"]
    assert not refused.success
    message = failure_message(refused)
    assert (
        f"partition {DRIFTED[-1]} lies inside that window" in message
        and "allow_hindsight: true" in message
    )


def test_cooldown_keeps_failures_pending(story, tmp_path, monkeypatch):
    """A failure of the current champion within the cooldown waits; without a cooldown it retrains."""
    monkeypatch.setenv("PYNOMALY_HOME", str(story["root"] / "home"))
    instance = story["instance"]
    feeds = tmp_path / "feeds"
    # reviewers reject the day's true anomalies and confirm normal rows: average precision collapses
    from pynomaly_core.warehouse import (
        FEEDBACK_TABLE,
        ensure_table,
        make_engine,
        warehouse_url_default,
    )

    day = "2026-11-08"
    engine = make_engine(warehouse_url_default())
    ensure_table(engine, FEEDBACK_TABLE)
    import pandas as pd

    scores = pd.read_parquet(
        next((story["root"] / "home" / "frames").rglob(f"{FEED}/anomaly_scores/{DRIFTED[-1]}*"))
    )
    assert len(scores)
    write_feed(feeds, feed_dict(cooldown_hours=12))
    defs = definitions_for(feeds)
    result = run_job(defs, instance, f"{FEED}__score", day)
    assert result.success, failure_message(result)
    scored = pd.read_parquet(
        next((story["root"] / "home" / "frames").rglob(f"{FEED}/anomaly_scores/{day}*"))
    )
    # true anomalies rejected, 20 random normal rows confirmed: the detector now looks blind
    truly = scored[scored["label"] == 1]
    fake = scored[scored["label"] == 0].sample(20, random_state=0)
    verdicts = pd.concat([truly.assign(verdict="rejected"), fake.assign(verdict="confirmed")])
    import sqlalchemy as sa

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM anomaly_feedback WHERE feed = :feed"), {"feed": FEED})
        conn.execute(
            sa.text(
                "INSERT INTO anomaly_feedback (feed, partition_date, record_key, verdict, reviewer, reviewed_at) "
                "VALUES (:feed, :day, :key, :verdict, 'test', CURRENT_TIMESTAMP)"
            ),
            [
                {"feed": FEED, "day": day, "key": str(k), "verdict": v}
                for k, v in zip(verdicts["record_key"], verdicts["verdict"])
            ],
        )
    result = run_job(defs, instance, f"{FEED}__score", day)
    assert result.success, failure_message(result)
    assert check_results(instance, result.run_id)["performance_not_degraded"] is False
    cursor = story["fourth_tick"].cursor
    waiting = evaluate(defs, instance, cursor)
    assert not waiting.run_requests
    assert "cooldown" in waiting.skip_message
    assert json.loads(waiting.cursor)["seen"] == json.loads(cursor)["seen"]  # still pending
    write_feed(feeds, feed_dict(cooldown_hours=0))
    fired = evaluate(definitions_for(feeds), instance, waiting.cursor)
    assert [r.tags["pynomaly/affected_partitions"] for r in fired.run_requests] == [day]


def test_schedules_pick_the_period_that_ended(story):
    defs = story["defs"]
    daily = defs.resolve_schedule_def(f"{FEED}__daily_schedule")
    assert daily.cron_schedule == "0 1 * * *"
    assert daily.default_status == dg.DefaultScheduleStatus.STOPPED
    repo = defs.get_repository_def()
    with dg.build_schedule_context(
        instance=story["instance"],
        repository_def=repo,
        scheduled_execution_time=dt.datetime(2026, 11, 9, 1, tzinfo=dt.UTC),
    ) as ctx:
        data = daily.evaluate_tick(ctx)
    assert [r.partition_key for r in data.run_requests] == ["2026-11-08"]
    weekly = defs.resolve_schedule_def(f"{FEED}__maintenance_schedule")
    assert weekly.cron_schedule == "0 3 * * 1"
    assert weekly.execution_timezone == "UTC"
    with dg.build_schedule_context(
        instance=story["instance"],
        repository_def=repo,
        scheduled_execution_time=dt.datetime(2026, 11, 16, 3, tzinfo=dt.UTC),
    ) as ctx:
        data = weekly.evaluate_tick(ctx)
    assert [r.partition_key for r in data.run_requests] == ["2026-11-09"]


@pytest.fixture
def webhook():
    """A real HTTP server on 127.0.0.1 that records the JSON bodies posted to it."""
    import http.server
    import threading

    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def test_weekly_maintenance_reports_cleans_and_notifies(story, tmp_path, monkeypatch, webhook):
    """Runs last: its retention removes the story's oldest exported days."""
    import sqlalchemy as sa

    from pynomaly_core.warehouse import make_engine, warehouse_url_default

    url, received = webhook
    monkeypatch.setenv("PYNOMALY_HOME", str(story["root"] / "home"))
    monkeypatch.setenv("PYNOMALY_NOTIFY_WEBHOOK_URL", url)
    instance = story["instance"]
    feeds = tmp_path / "feeds"
    # the week 2026-11-02..08 had one retrain: crossing max_retrains = 0 notifies
    data = feed_dict()
    data["notifications"] = {"max_retrains": 0, "cooldown_hours": 24}
    data["retention"] = {"anomaly_days": 3}
    write_feed(feeds, data)
    defs = definitions_for(feeds)
    engine = make_engine(warehouse_url_default())
    with engine.connect() as conn:
        before = dict(
            conn.execute(
                sa.text(
                    "SELECT partition_date, COUNT(*) FROM anomaly_scores WHERE feed = :f GROUP BY partition_date"
                ),
                {"f": FEED},
            ).all()
        )
    week = "2026-11-02"
    result = run_job(defs, instance, f"{FEED}__maintenance", week)
    assert result.success, failure_message(result)

    quality = latest_metadata(instance, [FEED, "data_quality_report"], week)
    assert quality["evaluated"] > 20 and Path(quality["data_docs"]).exists()
    # the current champion's reference spans the calm and the drifted days (a retrain keeps the first
    # champion's days), so the week's rows fit the distributions it learned, and the schema holds
    assert quality["reference_version"] == story["champion_after"]["champion_version"]
    assert quality["failed"] == 0
    health = latest_metadata(instance, [FEED, "model_health"], week)
    assert health["versions_checked"] == 2 and health["reproducible"] == 2, health
    cleanup = latest_metadata(instance, [FEED, "retention_cleanup"], week)
    old = {str(d): n for d, n in before.items() if str(d) < "2026-11-06"}
    assert old and cleanup["removed_anomaly_scores"] == sum(old.values())
    with engine.connect() as conn:
        left = conn.execute(
            sa.text("SELECT MIN(partition_date) FROM anomaly_scores WHERE feed = :f"), {"f": FEED}
        ).scalar_one()
    assert str(left) >= "2026-11-06"

    report = latest_metadata(instance, [FEED, "maintenance_report"], week)
    doc = json.loads(Path(report["report_json"]).read_text())
    assert doc["sections"]["retrains"]["count"] == 1
    assert Path(report["report_html"]).read_text().count("<table") >= 3
    assert report["notification"].startswith("sent") and len(received) == 1
    assert received[0]["feed"] == FEED and "max_retrains" in json.dumps(received[0])
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT kind, message FROM notifications WHERE feed = :f"), {"f": FEED}
        ).all()
    assert len(rows) == 1 and url not in rows[0][1]

    again = run_job(defs, instance, f"{FEED}__maintenance", week)
    assert again.success, failure_message(again)
    assert latest_metadata(instance, [FEED, "maintenance_report"], week)["notification"].startswith(
        "suppressed"
    )
    assert len(received) == 1
    assert (
        latest_metadata(instance, [FEED, "retention_cleanup"], week)["removed_anomaly_scores"] == 0
    )
