"""The BI views (pynomaly_core.warehouse.views) on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import sqlalchemy as sa

from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    ANOMALY_TOP_N,
    create_views,
    read_feedback,
    replace_partition,
)
from tests.core.warehouse.helpers import DAY, scores


def test_views_count_severities_join_feedback_and_list_model_versions(engine: sa.Engine) -> None:
    create_views(engine)
    frame = scores(50, seed=5)
    frame["severity"] = np.where(
        frame["is_anomaly"], np.resize(["low", "medium", "high", "critical"], 50), "none"
    )
    replace_partition(engine, ANOMALY_TABLE, frame, feed="payments", partition_date=DAY)
    replace_partition(
        engine,
        ANOMALY_TABLE,
        scores(10, seed=6).assign(model_version=2),
        feed="payments",
        partition_date="2024-05-02",
    )
    flagged = frame.loc[frame["is_anomaly"], "record_key"].tolist()
    day = dt.date(2024, 5, 1) if engine.dialect.name == "postgresql" else DAY
    with engine.begin() as conn:  # what a BI user does
        for key, verdict in [
            (flagged[0], "confirmed"),
            (flagged[1], "rejected"),
            (flagged[2], "confirmed"),
        ]:
            conn.execute(
                sa.text(
                    "INSERT INTO anomaly_feedback (feed, partition_date, record_key, verdict, reviewed_at)"
                    " VALUES ('payments', :day, :key, :verdict, CURRENT_TIMESTAMP)"
                ),
                {"day": day, "key": key, "verdict": verdict},
            )
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT low, medium, high, critical, confirmed, rejected FROM anomaly_daily_summary"
                " WHERE feed = 'payments' AND partition_date = :day"
            ),
            {"day": day},
        ).one()
        top = conn.execute(
            sa.text(
                "SELECT record_key, verdict, feature_1, contribution_1, p_value FROM anomaly_top"
                " WHERE feed = 'payments' AND partition_date = :day"
            ),
            {"day": day},
        ).all()
        versions = conn.execute(
            sa.text(
                "SELECT model_version, partitions, rows FROM model_versions_in_use ORDER BY model_version"
            )
        ).all()
    counts = frame.loc[frame["is_anomaly"], "severity"].value_counts()
    assert tuple(row) == (counts["low"], counts["medium"], counts["high"], counts["critical"], 2, 1)
    verdicts = {r.record_key: r.verdict for r in top}
    assert verdicts[flagged[0]] == "confirmed" and verdicts[flagged[1]] == "rejected"
    assert sum(v is None for v in verdicts.values()) == len(flagged) - 3
    assert {(r.feature_1, r.contribution_1, r.p_value) for r in top} == {("amount", 0.7, 0.001)}
    assert [tuple(v) for v in versions] == [(1, 1, 50), (2, 1, 10)]
    got = read_feedback(engine, feed="payments", start=DAY, end=DAY)
    assert dict(zip(got["record_key"], got["label"])) == {
        flagged[0]: 1,
        flagged[1]: 0,
        flagged[2]: 1,
    }


def test_views_aggregate_per_feed_and_day(engine: sa.Engine) -> None:
    create_views(engine)
    create_views(engine)  # idempotent
    frames = {
        ("payments", DAY): scores(40, seed=1),
        ("payments", "2024-05-02"): scores(30, seed=2).assign(model_version=2),
        ("logins", DAY): scores(20, seed=3),
    }
    # 150 anomalies in one partition, plus a higher-scoring row that is not one
    many = scores(300, seed=4).assign(is_anomaly=lambda f: f.index < 150)
    many.loc[299, "score"] = 1_000.0
    frames[("logins", "2024-05-02")] = many
    for (feed, day), frame in frames.items():
        replace_partition(engine, ANOMALY_TABLE, frame, feed=feed, partition_date=day)

    with engine.connect() as conn:
        summary = conn.execute(
            sa.text(
                "SELECT feed, partition_date, rows, anomalies, anomaly_rate, mean_score, max_score,"
                " model_version FROM anomaly_daily_summary"
            )
        ).all()
        top = conn.execute(
            sa.text(
                "SELECT anomaly_rank, record_key, score FROM anomaly_top"
                " WHERE feed = 'logins' AND partition_date = :day ORDER BY anomaly_rank"
            ),
            {"day": dt.date(2024, 5, 2) if engine.dialect.name == "postgresql" else "2024-05-02"},
        ).all()

    assert len(summary) == 4
    for feed, day, rows, anomalies, rate, mean, high, version in summary:
        frame = frames[(feed, str(day))]
        assert (rows, anomalies) == (len(frame), int(frame["is_anomaly"].sum()))
        assert rate == pytest.approx(frame["is_anomaly"].mean())
        assert mean == pytest.approx(frame["score"].mean())
        assert high == pytest.approx(frame["score"].max())
        assert version == frame["model_version"].iloc[0]
    anomalies = many[many["is_anomaly"]].sort_values("score", ascending=False)
    assert [r.anomaly_rank for r in top] == list(range(1, ANOMALY_TOP_N + 1))
    assert [r.record_key for r in top] == anomalies["record_key"].head(ANOMALY_TOP_N).tolist()
