"""Reviewer feedback (pynomaly_core.warehouse.feedback) on SQLite and PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_core.warehouse import FEEDBACK_TABLE, read_feedback, read_partition, upsert_feedback
from tests.core.warehouse.helpers import DAY


def verdicts(**by_key: str) -> pd.DataFrame:
    return pd.DataFrame({
        "record_key": list(by_key),
        "verdict": list(by_key.values()),
        "reviewer": "ana",
        "note": None,
        "reviewed_at": pd.Timestamp(f"{DAY} 09:00", tz="UTC"),
    })


def test_a_new_verdict_replaces_the_old_one(engine: sa.Engine) -> None:
    assert upsert_feedback(engine, verdicts(a="confirmed", b="confirmed"), feed="payments", partition_date=DAY) == 2
    upsert_feedback(engine, verdicts(b="rejected"), feed="payments", partition_date=DAY)
    upsert_feedback(engine, verdicts(c="confirmed"), feed="payments", partition_date="2024-05-03")
    upsert_feedback(engine, verdicts(a="rejected"), feed="logins", partition_date=DAY)

    stored = read_partition(engine, FEEDBACK_TABLE, feed="payments", partition_date=DAY)
    assert dict(zip(stored["record_key"], stored["verdict"])) == {"a": "confirmed", "b": "rejected"}
    labels = read_feedback(engine, feed="payments", start=DAY, end="2024-05-02")
    assert dict(zip(labels["record_key"], labels["label"])) == {"a": 1, "b": 0}
    assert list(labels.columns) == ["record_key", "partition_date", "label"]
    with pytest.raises(ValueError, match="column 'verdict' of table 'anomaly_feedback'.*'maybe'"):
        upsert_feedback(engine, verdicts(a="maybe"), feed="payments", partition_date=DAY)


def test_read_feedback_creates_the_table(engine: sa.Engine) -> None:
    assert read_feedback(engine, feed="payments", start=DAY, end=DAY).empty
    assert sa.inspect(engine).has_table("anomaly_feedback")
