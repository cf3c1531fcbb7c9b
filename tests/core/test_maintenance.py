"""Weekly maintenance on real components: SQLite and PostgreSQL warehouses, a local HTTP webhook,
a real MLflow registry on SQLite with signed models."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_core.data.config import FeatureSpec
from pynomaly_core.detectors.persistence import sha256_file
from pynomaly_core.export import (
    ANOMALY_TABLE,
    QUARANTINE_TABLE,
    ensure_table,
    make_engine,
    read_partition,
    replace_partition,
)
from pynomaly_core.maintenance import (
    NOTIFICATIONS_TABLE,
    check_model_versions,
    cleanup_section,
    crossed_thresholds,
    health_section,
    notify,
    recorded_scores_from_frame_store,
    render_report,
    retention_cleanup,
)
from pynomaly_core.model import AnomalyModel
from pynomaly_core.storage import FrameStore
from pynomaly_core.tracking import Tracker

FEEDS = ("alpha", "beta")
DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(10)]  # 2026-01-01 .. 2026-01-10
TODAY = dt.date(2026, 1, 11)
ROWS_PER_DAY = {"anomaly_scores": 3, "quarantine": 2}


# ======================================================================== warehouse fixtures
# the `engine` fixture (SQLite and PostgreSQL warehouses) lives in tests/core/conftest.py


def _anomaly_frame(n: int, day: dt.date) -> pd.DataFrame:
    scored_at = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=3)
    return pd.DataFrame({
        "record_key": [f"rec-{i}" for i in range(n)],
        "event_time": [scored_at] * n,
        "score": np.linspace(0.1, 0.9, n),
        "normalized_score": np.linspace(0.1, 0.9, n),
        "is_anomaly": [False] * n,
        "severity": ["none"] * n,
        "model_name": "IForest",
        "model_version": "1",
        "run_id": "run",
        "top_features": [None] * n,
        "scored_at": [scored_at] * n,
        "p_value": [0.5] * n,
        "explanation_method": [None] * n,
        **{f"feature_{i}": [None] * n for i in (1, 2, 3)},
        **{f"contribution_{i}": [np.nan] * n for i in (1, 2, 3)},
    })


def _quarantine_frame(n: int, day: dt.date) -> pd.DataFrame:
    return pd.DataFrame({
        "row_number": pd.array(range(n), dtype="int64"),
        "record_key": [f"rec-{i}" for i in range(n)],
        "column_name": ["amount"] * n,
        "rule": ["not_null"] * n,
        "failure_value": [None] * n,
        "row_json": [{"amount": None}] * n,
        "run_id": "run",
        "quarantined_at": [pd.Timestamp(day, tz="UTC")] * n,
    })


def _fill(engine: sa.Engine) -> None:
    for spec, build in ((ANOMALY_TABLE, _anomaly_frame), (QUARANTINE_TABLE, _quarantine_frame)):
        ensure_table(engine, spec)
        for feed in FEEDS:
            for day in DAYS:
                replace_partition(engine, spec, build(ROWS_PER_DAY[spec.name], day), feed=feed,
                                  partition_date=day.isoformat())


def _counts(engine: sa.Engine, table: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f'SELECT feed, COUNT(*) FROM "{table}" GROUP BY feed')).all()
    return {feed: int(n) for feed, n in rows}


def _oldest_day(engine: sa.Engine, table: str, feed: str) -> str:
    with engine.connect() as conn:
        value = conn.execute(sa.text(f'SELECT MIN(partition_date) FROM "{table}" WHERE feed = :f'),
                             {"f": feed}).scalar_one()
    return str(value)


def test_importing_the_module_imports_neither_dagster_nor_mlflow():
    code = ("import sys, pynomaly_core.maintenance\n"
            "print([m for m in ('dagster', 'mlflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ======================================================================== retention
def test_retention_deletes_only_this_feeds_old_rows_and_is_idempotent(engine, tmp_path):
    _fill(engine)
    table_days = {"anomaly_scores": 5, "quarantine": 3, "notifications": 30}

    result = retention_cleanup(engine, "alpha", today=TODAY, table_days=table_days, file_dirs={})

    # anomaly_scores keeps 2026-01-06 .. 01-10 (5 days), quarantine 01-08 .. 01-10 (3 days)
    assert result.removed == {"anomaly_scores": 5 * 3, "quarantine": 7 * 2, "notifications": 0}
    assert result.cutoffs == {"anomaly_scores": "2026-01-06", "quarantine": "2026-01-08",
                              "notifications": "2025-12-12"}
    assert result.skipped_tables == ["notifications"]
    assert _counts(engine, "anomaly_scores") == {"alpha": 5 * 3, "beta": 10 * 3}
    assert _counts(engine, "quarantine") == {"alpha": 3 * 2, "beta": 10 * 2}
    assert _oldest_day(engine, "anomaly_scores", "alpha") == "2026-01-06"
    assert _oldest_day(engine, "quarantine", "alpha") == "2026-01-08"
    assert _oldest_day(engine, "anomaly_scores", "beta") == "2026-01-01"

    again = retention_cleanup(engine, "alpha", today=TODAY, table_days=table_days, file_dirs={})
    assert again.removed == {"anomaly_scores": 0, "quarantine": 0, "notifications": 0}
    assert _counts(engine, "anomaly_scores") == {"alpha": 5 * 3, "beta": 10 * 3}


def _touch(path: Path, text: str = "x", *, mtime_day: dt.date | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime_day is not None:
        stamp = dt.datetime.combine(mtime_day, dt.time(12), dt.UTC).timestamp()
        os.utime(path, (stamp, stamp))
    return path


def test_retention_removes_files_by_path_date_else_mtime(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    reports = tmp_path / "reports" / "alpha"
    frames = tmp_path / "frames" / "alpha"
    old_report = _touch(reports / "drift_2026-01-02.html", "a" * 100)
    old_dated_dir = _touch(reports / "2026-01-03" / "quality.json", "b" * 50)
    kept_report = _touch(reports / "drift_2026-01-09.html")
    # no date in the name: judged by modification time
    old_by_mtime = _touch(reports / "maintenance_latest.json", "c" * 10, mtime_day=dt.date(2025, 12, 1))
    new_by_mtime = _touch(reports / "index.json", mtime_day=dt.date(2026, 1, 10))
    # the date in the path wins over a recent mtime
    old_frame = _touch(frames / "scores" / "2026-01-01.parquet", "d" * 20, mtime_day=TODAY)
    kept_frame = _touch(frames / "scores" / "2026-01-09.parquet", mtime_day=dt.date(2025, 1, 1))
    protected = _touch(frames / "pinned" / "2025-06-01.parquet")

    file_dirs = {"reports": (reports, 5), "frames": (frames, 5)}
    result = retention_cleanup(engine, "alpha", today=TODAY, table_days={}, file_dirs=file_dirs,
                               protect=[frames / "pinned"])

    assert result.removed == {"reports": 3, "frames": 1}
    assert result.cutoffs == {"reports": "2026-01-06", "frames": "2026-01-06"}
    assert result.freed_bytes == 100 + 50 + 10 + 20
    for path in (old_report, old_dated_dir, old_by_mtime, old_frame):
        assert not path.exists(), path
    assert not old_dated_dir.parent.exists()  # emptied by the cleanup
    for path in (kept_report, new_by_mtime, kept_frame, protected):
        assert path.exists(), path

    again = retention_cleanup(engine, "alpha", today=TODAY, table_days={}, file_dirs=file_dirs,
                              protect=[frames / "pinned"])
    assert again.removed == {"reports": 0, "frames": 0} and again.freed_bytes == 0
    engine.dispose()


def test_retention_refuses_the_pynomaly_home_as_a_file_dir(tmp_path, isolated_home):
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    with pytest.raises(ValueError, match="PYNOMALY_HOME"):
        retention_cleanup(engine, "alpha", today=TODAY, table_days={},
                          file_dirs={"everything": (isolated_home, 5)})
    engine.dispose()


# ======================================================================== webhook server
class _Webhook:
    """A real HTTP server on 127.0.0.1 that records the JSON bodies posted to it."""

    def __init__(self, status: int = 200) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"path": self.path, "content_type": self.headers["Content-Type"],
                                 "json": json.loads(body)})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        # the token in the path stands for the secret part of a real webhook URL
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/s3cr3t-t0ken"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    server = _Webhook()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def _table_text(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        rows = conn.execute(sa.text('SELECT * FROM "notifications"')).all()
    return json.dumps([[str(v) for v in row] for row in rows])


NOW = dt.datetime(2026, 1, 12, 3, 0, tzinfo=dt.UTC)
COOLDOWN = dt.timedelta(hours=24)


# ======================================================================== notifications
def test_notify_posts_json_records_it_and_honours_the_cooldown(engine, webhook):
    payload = {"reasons": ["drift.drift_share 0.6 is above max_drift_share = 0.5"], "share": 0.6}
    first = notify(engine, "alpha", "weekly_report", "thresholds crossed", payload,
                   webhook_url=webhook.url, cooldown=COOLDOWN, now=NOW)
    assert first.sent and first.delivered is True and first.error is None
    assert len(webhook.received) == 1
    posted = webhook.received[0]
    assert posted["content_type"] == "application/json" and posted["path"] == "/hooks/s3cr3t-t0ken"
    assert posted["json"]["feed"] == "alpha" and posted["json"]["kind"] == "weekly_report"
    assert posted["json"]["payload"] == payload and posted["json"]["message"] == "thresholds crossed"

    rows = read_partition(engine, NOTIFICATIONS_TABLE, feed="alpha", partition_date="2026-01-12")
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["kind"] == "weekly_report" and row["payload"] == payload
    assert row["channel"] == "webhook" and bool(row["delivered"]) and pd.isna(row["delivery_error"])
    assert row["created_at"] == pd.Timestamp(NOW)

    inside = notify(engine, "alpha", "weekly_report", "again", payload, webhook_url=webhook.url,
                    cooldown=COOLDOWN, now=NOW + dt.timedelta(hours=23))
    assert not inside.sent and inside.delivered is None
    assert "2026-01-12T03:00:00+00:00" in inside.suppressed_reason
    assert len(webhook.received) == 1
    assert _count(engine) == 1

    # another feed or another kind has its own cooldown
    other = notify(engine, "beta", "weekly_report", "beta", {}, webhook_url=webhook.url,
                   cooldown=COOLDOWN, now=NOW + dt.timedelta(hours=1))
    assert other.sent and len(webhook.received) == 2

    after = notify(engine, "alpha", "weekly_report", "next week", payload, webhook_url=webhook.url,
                   cooldown=COOLDOWN, now=NOW + COOLDOWN + dt.timedelta(seconds=1))
    assert after.sent and after.delivered is True
    assert len(webhook.received) == 3 and webhook.received[-1]["json"]["message"] == "next week"
    assert _count(engine) == 3
    assert "s3cr3t" not in _table_text(engine)


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text('SELECT COUNT(*) FROM "notifications"')).scalar_one())


def test_failing_webhook_is_recorded_without_the_url(engine):
    failing = _Webhook(status=500)
    try:
        result = notify(engine, "alpha", "weekly_report", f"see {failing.url}", {"link": failing.url},
                        webhook_url=failing.url, cooldown=COOLDOWN, now=NOW)
    finally:
        failing.close()
    assert result.sent and result.delivered is False
    assert "HTTP 500" in result.error and "PYNOMALY_NOTIFY_WEBHOOK_URL" in result.error
    assert len(failing.received) == 1 and "s3cr3t" not in json.dumps(failing.received[0]["json"])
    row = read_partition(engine, NOTIFICATIONS_TABLE, feed="alpha", partition_date="2026-01-12").iloc[0]
    assert not bool(row["delivered"]) and "HTTP 500" in row["delivery_error"]
    assert "s3cr3t" not in _table_text(engine) and "s3cr3t" not in result.error

    # a failed delivery does not hold the next one back, even inside the cooldown
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks/s3cr3t-t0ken"
    refused = notify(engine, "alpha", "weekly_report", "retry", {}, webhook_url=closed,
                     cooldown=COOLDOWN, now=NOW + dt.timedelta(minutes=5), timeout_s=2.0)
    assert refused.sent and refused.delivered is False and "cannot be reached" in refused.error
    assert "s3cr3t" not in refused.error and "s3cr3t" not in _table_text(engine)
    assert _count(engine) == 2


def test_concurrent_notifications_send_once(engine, webhook):
    start = threading.Barrier(3)

    def send(n: int):
        start.wait()
        return notify(engine, "alpha", "weekly_report", f"call {n}", {}, webhook_url=webhook.url,
                      cooldown=COOLDOWN, now=NOW)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(send, range(3)))
    assert sum(r.sent for r in results) == 1
    assert len(webhook.received) == 1 and _count(engine) == 1


def test_notify_without_a_webhook_records_only(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    result = notify(engine, "alpha", "weekly_report", "recorded", {"n": np.int64(3), "x": float("nan")},
                    webhook_url=None, cooldown=COOLDOWN, now=NOW)
    assert result.sent and result.delivered is None and result.error is None
    row = read_partition(engine, NOTIFICATIONS_TABLE, feed="alpha", partition_date="2026-01-12").iloc[0]
    assert row["channel"] == "table" and row["payload"] == {"n": 3, "x": None}
    suppressed = notify(engine, "alpha", "weekly_report", "again", {}, webhook_url=None,
                        cooldown=COOLDOWN, now=NOW + dt.timedelta(hours=1))
    assert not suppressed.sent and "recorded only" in suppressed.suppressed_reason
    engine.dispose()


# ======================================================================== report
def test_render_report_writes_json_and_escaped_html(tmp_path):
    sections = {
        "model_health": {"unreproducible": 1, "versions": [
            {"version": "3", "detector": "HBOS", "error": "<script>alert('x')</script>"}]},
        "quality": {"success_percent": 97.5, "note": "<script>alert(1)</script>"},
        "drift": {"drift_share": [0.1, float("nan"), 0.6]},
    }
    html_path, json_path = render_report("alpha", "2026-01-05", sections, tmp_path / "reports")
    assert html_path.name == "maintenance_alpha_2026-01-05.html"
    document = json.loads(json_path.read_text())
    assert document["feed"] == "alpha" and document["week"] == "2026-01-05"
    assert document["sections"]["drift"]["drift_share"] == [0.1, None, 0.6]
    assert list(document["sections"]) == ["quality", "drift", "model_health"]
    page = html_path.read_text()
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.index('id="quality"') < page.index('id="drift"') < page.index('id="model_health"')
    assert not [p for p in html_path.parent.iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(ValueError, match="week"):
        render_report("alpha", "../escape", sections, tmp_path)


def test_crossed_thresholds_name_each_crossing():
    thresholds = {"max_drift_share": 0.5, "min_quality_success_percent": 95.0, "max_retrains": 2,
                  "min_average_precision": 0.3, "cooldown_hours": 24.0}
    calm = {"drift": {"drift_share": [0.1, 0.2]}, "quality": {"success_percent": 99.0},
            "retrains": {"count": 1}, "performance": {"average_precision": 0.8},
            "model_health": {"unreproducible": 0}}
    assert crossed_thresholds(calm, thresholds) == []
    bad = {"drift": {"drift_share": [0.1, 0.7]}, "quality": {"success_percent": [99.0, 90.0]},
           "retrains": {"count": 3}, "performance": {"average_precision": 0.2},
           "model_health": {"unreproducible": 1}}
    reasons = crossed_thresholds(bad, thresholds)
    assert len(reasons) == 5
    assert any("drift_share 0.7" in r and "max_drift_share" in r for r in reasons)
    assert any("success_percent 90" in r for r in reasons)
    assert any("unreproducible 1" in r for r in reasons)
    assert crossed_thresholds({}, thresholds) == []  # a week without data crosses nothing
    with pytest.raises(ValueError, match="max_drift_shares"):
        crossed_thresholds(calm, {"max_drift_shares": 0.5})


# ======================================================================== model health
KEY = "test-maintenance-signing-key"


FIRST, SECOND = "20260101T000000Z-aaaa1111", "20260105T000000Z-bbbb2222"
FULL_LAYOUT = {FIRST: ("IForest", "HBOS", "ECOD"), SECOND: ("IForest",)}


@pytest.fixture(scope="module")
def mlflow_backend(tmp_path_factory):
    """One MLflow registry on SQLite for the module (its schema migrations cost seconds); tests use own feeds."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow")
    tracker = Tracker(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "artifacts"))
    tracker.check()
    return tracker


@pytest.fixture
def registry(mlflow_backend, tmp_path, monkeypatch, request):
    """Registered versions of a feed of its own as the lifecycle logs them, with their evaluation frames.

    The layout (batch -> detectors) is the indirect parameter, default :data:`FULL_LAYOUT` (four
    versions from two batches).
    """
    monkeypatch.setenv("PYNOMALY_SIGNING_KEY", KEY)
    feed = request.node.originalname.removeprefix("test_")[:40]
    layout = getattr(request, "param", FULL_LAYOUT)
    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.normal(size=(300, 2)), columns=["a", "b"])
    sample = pd.DataFrame(rng.normal(size=(80, 2)), columns=["a", "b"])
    features = [FeatureSpec(name="a"), FeatureSpec(name="b")]
    store = FrameStore(tmp_path / "frames")
    models_root = tmp_path / "models" / feed
    versions = {}
    for batch, detectors in layout.items():
        frame = sample.assign(_label=0)
        for detector in detectors:
            params = {"n_estimators": 25} if detector == "IForest" else {}
            model = AnomalyModel(features, detector=detector, params=params).fit(train)
            frame[f"_score_{detector}"] = model.decision_function(sample)
            model_dir = model.save(models_root / f"{batch}-{detector}")
            record = mlflow_backend.log_candidate(
                feed, detector=detector, model_dir=model_dir,
                manifest_sha256=sha256_file(model_dir / "manifest.json"), params={}, metrics={},
                tags={"dagster_run_id": batch}, input_example=sample.head(3),
            )
            versions[(batch, detector)] = record.version
        store.write(frame, [feed, "detector_candidates", "evaluation"], batch)
    return {"tracker": mlflow_backend, "feed": feed, "store": store, "versions": versions,
            "models_root": models_root}


def test_model_health_reports_reproduction_errors_and_archives_the_rest(registry):
    tracker, store, versions, feed = registry["tracker"], registry["store"], registry["versions"], registry["feed"]
    champion, challenger = versions[(SECOND, "IForest")], versions[(FIRST, "IForest")]
    altered, deleted = versions[(FIRST, "HBOS")], versions[(FIRST, "ECOD")]
    tracker.set_alias(feed, "champion", champion)
    tracker.set_alias(feed, "challenger", challenger)
    # the recorded scores of HBOS no longer match what the model gives
    key = [feed, "detector_candidates", "evaluation"]
    frame = store.read(key, FIRST)
    frame.loc[5, "_score_HBOS"] += 0.5
    store.write(frame, key, FIRST)
    # ECOD's model files are gone
    shutil.rmtree(registry["models_root"] / f"{FIRST}-ECOD")

    results = check_model_versions(tracker, feed, recorded_scores_from_frame_store(store, feed), sample_rows=50)
    by_version = {r.version: r for r in results}
    assert sorted(by_version) == sorted(versions.values())

    for version in (champion, challenger):
        health = by_version[version]
        assert health.loaded and health.reproducible and health.error is None
        assert health.rows_compared == 50 and health.max_abs_diff <= 1e-9
        assert not health.archived_now
    assert by_version[champion].aliases == ["champion"]
    assert by_version[challenger].aliases == ["challenger"]

    hbos = by_version[altered]
    assert hbos.loaded and not hbos.reproducible and hbos.error is None
    assert hbos.max_abs_diff == pytest.approx(0.5)

    ecod = by_version[deleted]
    assert not ecod.loaded and not ecod.reproducible and ecod.rows_compared == 0
    assert f"{FIRST}-ECOD" in ecod.error and "could not be loaded" in ecod.error

    assert by_version[altered].archived_now and by_version[deleted].archived_now
    assert tracker.get_version(feed, altered).archived
    assert not tracker.get_version(feed, champion).archived
    active = {v.version for v in tracker.list_versions(feed, include_archived=False)}
    assert active == {champion, challenger}

    section = health_section(results)
    assert (section["versions_checked"], section["unreproducible"], section["failed_to_load"],
            section["archived_now"]) == (4, 2, 1, 2)
    assert crossed_thresholds({"model_health": section}, {}) == [
        "model_health.unreproducible 2 is above max_unreproducible_versions = 0"]

    # next week: the archived versions are not checked again, nothing more is archived
    again = check_model_versions(tracker, feed, recorded_scores_from_frame_store(store, feed))
    assert {r.version for r in again} == {champion, challenger}
    assert all(r.reproducible and not r.archived_now for r in again)


@pytest.mark.parametrize("registry", [{SECOND: ("IForest",)}], indirect=True)
def test_model_health_refuses_a_tampered_model_directory(registry):
    tracker, store, feed = registry["tracker"], registry["store"], registry["feed"]
    calibration = registry["models_root"] / f"{SECOND}-IForest" / "calibration.json"
    calibration.write_text(calibration.read_text() + " ")
    results = check_model_versions(tracker, feed, recorded_scores_from_frame_store(store, feed), archive=False)
    assert len(results) == 1
    tampered = results[0]
    assert not tampered.loaded and "ModelIntegrityError" in tampered.error and "calibration.json" in tampered.error
    assert not tampered.archived_now and not tracker.get_version(feed, tampered.version).archived


@pytest.mark.parametrize("registry", [{FIRST: ("IForest", "HBOS"), SECOND: ("IForest",)}], indirect=True)
def test_retention_keeps_model_dirs_and_evaluation_frames_of_active_versions(registry, tmp_path):
    tracker, store, versions, feed = registry["tracker"], registry["store"], registry["versions"], registry["feed"]
    tracker.archive_version(feed, versions[(FIRST, "HBOS")], "superseded")
    # the second batch's evaluation frame belongs to no active version once it is archived too
    tracker.archive_version(feed, versions[(SECOND, "IForest")], "superseded")
    old = dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp()
    for path in [*registry["models_root"].rglob("*"), *store.root.rglob("*")]:
        os.utime(path, (old, old))
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    file_dirs = {"models": (registry["models_root"], 30), "frames": (store.root / feed, 30)}

    without_tracker = retention_cleanup(engine, feed, today=TODAY, table_days={}, file_dirs=file_dirs)
    # without the registry nothing tells which versions are active: models and evaluation frames stay
    assert without_tracker.removed == {"models": 0, "frames": 0} and without_tracker.kept_models == 3 + 2

    result = retention_cleanup(engine, feed, today=TODAY, table_days={}, file_dirs=file_dirs,
                               tracker=tracker, frame_store=store)
    # the archived versions' directories and the frame only they used go; the active version stays
    assert result.removed == {"models": 2, "frames": 1} and result.kept_models == 2
    assert [p.name for p in registry["models_root"].iterdir()] == [f"{FIRST}-IForest"]
    assert store.exists([feed, "detector_candidates", "evaluation"], FIRST)
    assert not store.exists([feed, "detector_candidates", "evaluation"], SECOND)
    assert cleanup_section(result)["removed"][0] == {"what": "models", "removed": 2, "dated_before": "2025-12-12"}
    again = retention_cleanup(engine, feed, today=TODAY, table_days={}, file_dirs=file_dirs,
                              tracker=tracker, frame_store=store)
    assert again.removed == {"models": 0, "frames": 0}
    engine.dispose()
