"""Retention (pynomaly_core.maintenance.retention) on SQLite and PostgreSQL warehouses and real files."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_core.maintenance import cleanup_section, retention_cleanup
from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    QUARANTINE_TABLE,
    ensure_table,
    make_engine,
    replace_partition,
)
from tests.core.maintenance.helpers import FIRST, SECOND, TODAY

FEEDS = ("alpha", "beta")
DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(10)]  # 2026-01-01 .. 2026-01-10
ROWS_PER_DAY = {"anomaly_scores": 3, "quarantine": 2}


# the `engine` fixture (SQLite and PostgreSQL warehouses) lives in tests/core/conftest.py


def _anomaly_frame(n: int, day: dt.date) -> pd.DataFrame:
    scored_at = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=3)
    return pd.DataFrame(
        {
            "record_key": [f"rec-{i}" for i in range(n)],
            "event_time": [scored_at] * n,
            "score": np.linspace(0.1, 0.9, n),
            "normalized_score": np.linspace(0.1, 0.9, n),
            "is_anomaly": [False] * n,
            "severity": ["none"] * n,
            "model_name": "IForest",
            "model_version": 1,  # an integer column of the warehouse
            "run_id": "run",
            "top_features": [None] * n,
            "scored_at": [scored_at] * n,
            "p_value": [0.5] * n,
            "explanation_method": [None] * n,
            **{f"feature_{i}": [None] * n for i in (1, 2, 3)},
            **{f"contribution_{i}": [np.nan] * n for i in (1, 2, 3)},
        }
    )


def _quarantine_frame(n: int, day: dt.date) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row_number": pd.array(range(n), dtype="int64"),
            "record_key": [f"rec-{i}" for i in range(n)],
            "column_name": ["amount"] * n,
            "rule": ["not_null"] * n,
            "failure_value": [None] * n,
            "row_json": [{"amount": None}] * n,
            "run_id": "run",
            "quarantined_at": [pd.Timestamp(day, tz="UTC")] * n,
        }
    )


def _fill(engine: sa.Engine) -> None:
    for spec, build in ((ANOMALY_TABLE, _anomaly_frame), (QUARANTINE_TABLE, _quarantine_frame)):
        ensure_table(engine, spec)
        for feed in FEEDS:
            for day in DAYS:
                replace_partition(
                    engine,
                    spec,
                    build(ROWS_PER_DAY[spec.name], day),
                    feed=feed,
                    partition_date=day.isoformat(),
                )


def _counts(engine: sa.Engine, table: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f'SELECT feed, COUNT(*) FROM "{table}" GROUP BY feed')).all()
    return {feed: int(n) for feed, n in rows}


def _oldest_day(engine: sa.Engine, table: str, feed: str) -> str:
    with engine.connect() as conn:
        value = conn.execute(
            sa.text(f'SELECT MIN(partition_date) FROM "{table}" WHERE feed = :f'), {"f": feed}
        ).scalar_one()
    return str(value)


def test_retention_deletes_only_this_feeds_old_rows_and_is_idempotent(engine, tmp_path):
    _fill(engine)
    table_days = {"anomaly_scores": 5, "quarantine": 3, "notifications": 30}

    result = retention_cleanup(engine, "alpha", today=TODAY, table_days=table_days, file_dirs={})

    # anomaly_scores keeps 2026-01-06 .. 01-10 (5 days), quarantine 01-08 .. 01-10 (3 days)
    assert result.removed == {"anomaly_scores": 5 * 3, "quarantine": 7 * 2, "notifications": 0}
    assert result.cutoffs == {
        "anomaly_scores": "2026-01-06",
        "quarantine": "2026-01-08",
        "notifications": "2025-12-12",
    }
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
    old_by_mtime = _touch(
        reports / "maintenance_latest.json", "c" * 10, mtime_day=dt.date(2025, 12, 1)
    )
    new_by_mtime = _touch(reports / "index.json", mtime_day=dt.date(2026, 1, 10))
    # the date in the path wins over a recent mtime
    old_frame = _touch(frames / "scores" / "2026-01-01.parquet", "d" * 20, mtime_day=TODAY)
    kept_frame = _touch(frames / "scores" / "2026-01-09.parquet", mtime_day=dt.date(2025, 1, 1))
    protected = _touch(frames / "pinned" / "2025-06-01.parquet")

    file_dirs = {"reports": (reports, 5), "frames": (frames, 5)}
    result = retention_cleanup(
        engine,
        "alpha",
        today=TODAY,
        table_days={},
        file_dirs=file_dirs,
        protect=[frames / "pinned"],
    )

    assert result.removed == {"reports": 3, "frames": 1}
    assert result.cutoffs == {"reports": "2026-01-06", "frames": "2026-01-06"}
    assert result.freed_bytes == 100 + 50 + 10 + 20
    for path in (old_report, old_dated_dir, old_by_mtime, old_frame):
        assert not path.exists(), path
    assert not old_dated_dir.parent.exists()  # emptied by the cleanup
    for path in (kept_report, new_by_mtime, kept_frame, protected):
        assert path.exists(), path

    again = retention_cleanup(
        engine,
        "alpha",
        today=TODAY,
        table_days={},
        file_dirs=file_dirs,
        protect=[frames / "pinned"],
    )
    assert again.removed == {"reports": 0, "frames": 0} and again.freed_bytes == 0
    engine.dispose()


def test_retention_refuses_the_pynomaly_home_as_a_file_dir(tmp_path, isolated_home):
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    with pytest.raises(ValueError, match="PYNOMALY_HOME"):
        retention_cleanup(
            engine,
            "alpha",
            today=TODAY,
            table_days={},
            file_dirs={"everything": (isolated_home, 5)},
        )
    engine.dispose()


@pytest.mark.parametrize(
    "registry", [{FIRST: ("IForest", "HBOS"), SECOND: ("IForest",)}], indirect=True
)
def test_retention_keeps_model_dirs_and_evaluation_frames_of_active_versions(registry, tmp_path):
    tracker, store, versions, feed = (
        registry["tracker"],
        registry["store"],
        registry["versions"],
        registry["feed"],
    )
    tracker.archive_version(feed, versions[(FIRST, "HBOS")], "superseded")
    # the second batch's evaluation frame belongs to no active version once it is archived too
    tracker.archive_version(feed, versions[(SECOND, "IForest")], "superseded")
    old = dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp()
    for path in [*registry["models_root"].rglob("*"), *store.root.rglob("*")]:
        os.utime(path, (old, old))
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    file_dirs = {"models": (registry["models_root"], 30), "frames": (store.root / feed, 30)}

    without_tracker = retention_cleanup(
        engine, feed, today=TODAY, table_days={}, file_dirs=file_dirs
    )
    # without the registry nothing tells which versions are active: models and evaluation frames stay
    assert (
        without_tracker.removed == {"models": 0, "frames": 0}
        and without_tracker.kept_models == 3 + 2
    )

    result = retention_cleanup(
        engine,
        feed,
        today=TODAY,
        table_days={},
        file_dirs=file_dirs,
        tracker=tracker,
        frame_store=store,
    )
    # the archived versions' directories and the frame only they used go; the active version stays
    assert result.removed == {"models": 2, "frames": 1} and result.kept_models == 2
    assert [p.name for p in registry["models_root"].iterdir()] == [f"{FIRST}-IForest"]
    assert store.exists([feed, "detector_candidates", "evaluation"], FIRST)
    assert not store.exists([feed, "detector_candidates", "evaluation"], SECOND)
    assert cleanup_section(result)["removed"][0] == {
        "what": "models",
        "removed": 2,
        "dated_before": "2025-12-12",
    }
    again = retention_cleanup(
        engine,
        feed,
        today=TODAY,
        table_days={},
        file_dirs=file_dirs,
        tracker=tracker,
        frame_store=store,
    )
    assert again.removed == {"models": 0, "frames": 0}
    engine.dispose()
