"""Reviewer feedback (pynomaly_core.warehouse.feedback) on SQLite and PostgreSQL: upserts, validation, the CHECK."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.schema import CreateView

from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    FEEDBACK_TABLE,
    ensure_table,
    read_feedback,
    read_partition,
    replace_partition,
    upsert_feedback,
    views,
)
from tests.core.warehouse.helpers import DAY, count, scores

KEYS = [f"rec-{i:06d}" for i in range(6)]  # the record keys helpers.scores(6) exports


def verdicts(**by_key: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_key": list(by_key),
            "verdict": list(by_key.values()),
            "reviewer": "ana",
            "note": None,
            "reviewed_at": pd.Timestamp(f"{DAY} 09:00", tz="UTC"),
        }
    )


def export(engine: sa.Engine, *partitions: tuple[str, str]) -> None:
    ensure_table(engine, ANOMALY_TABLE)
    ensure_table(engine, FEEDBACK_TABLE)
    for feed, day in partitions:
        replace_partition(engine, ANOMALY_TABLE, scores(6), feed=feed, partition_date=day)


def test_a_new_verdict_replaces_the_old_one(engine: sa.Engine) -> None:
    export(engine, ("payments", DAY), ("payments", "2024-05-03"), ("logins", DAY))
    a, b, c = KEYS[:3]
    assert (
        upsert_feedback(
            engine,
            verdicts(**{a: "confirmed", b: "confirmed"}),
            feed="payments",
            partition_date=DAY,
        )
        == 2
    )
    upsert_feedback(engine, verdicts(**{b: "rejected"}), feed="payments", partition_date=DAY)
    upsert_feedback(
        engine, verdicts(**{c: "confirmed"}), feed="payments", partition_date="2024-05-03"
    )
    upsert_feedback(engine, verdicts(**{a: "rejected"}), feed="logins", partition_date=DAY)

    stored = read_partition(engine, FEEDBACK_TABLE, feed="payments", partition_date=DAY)
    assert dict(zip(stored["record_key"], stored["verdict"])) == {a: "confirmed", b: "rejected"}
    labels = read_feedback(engine, feed="payments", start=DAY, end="2024-05-02")
    assert dict(zip(labels["record_key"], labels["label"])) == {a: 1, b: 0}
    assert list(labels.columns) == ["record_key", "partition_date", "label"]


def test_upsert_feedback_names_every_bad_row_and_writes_nothing(engine: sa.Engine) -> None:
    export(engine, ("payments", DAY))
    bad = pd.concat(
        [
            verdicts(**{KEYS[0]: "confirmed", KEYS[1]: "Confirmed!", KEYS[2]: "maybe"}),
            verdicts(**{"rec-999999": "rejected"}),  # never exported
            verdicts(**{KEYS[3]: "rejected"}).assign(record_key=[None]),
        ],
        ignore_index=True,
    )
    with pytest.raises(ValueError) as failure:
        upsert_feedback(engine, bad, feed="payments", partition_date=DAY)
    message = str(failure.value)
    assert message.startswith(
        "upsert_feedback(feed='payments', partition_date='2024-05-01'): nothing was written"
    )
    assert "2 row(s) with a verdict other than ['confirmed', 'rejected']" in message
    assert (
        f"index 1: '{KEYS[1]}' -> 'Confirmed!'" in message
        and f"index 2: '{KEYS[2]}' -> 'maybe'" in message
    )
    assert (
        "1 row(s) whose record_key was not exported to anomaly_scores" in message
        and "'rec-999999'" in message
    )
    assert "1 row(s) without a text record_key: index 4: None" in message
    assert count(engine, "anomaly_feedback") == 0  # not even the one good row

    # a key exported for another day or another feed is not a key of this partition
    with pytest.raises(
        ValueError, match=r"1 row\(s\) whose record_key was not exported.*'rec-000000'"
    ):
        upsert_feedback(
            engine, verdicts(**{KEYS[0]: "confirmed"}), feed="payments", partition_date="2024-05-02"
        )
    with pytest.raises(ValueError, match=r"feed='logins'.*whose record_key was not exported"):
        upsert_feedback(
            engine, verdicts(**{KEYS[0]: "confirmed"}), feed="logins", partition_date=DAY
        )


@pytest.mark.parametrize("day", ["2024-02-30", "01/05/2024", "2024-5-1", "2024-05-01T00:00"])
def test_upsert_feedback_refuses_a_malformed_day(sqlite_engine: sa.Engine, day: str) -> None:
    with pytest.raises(
        ValueError, match=rf"upsert_feedback\(feed='payments', partition_date='{day}'\).*ISO date"
    ):
        upsert_feedback(
            sqlite_engine, verdicts(**{KEYS[0]: "confirmed"}), feed="payments", partition_date=day
        )


def test_the_table_refuses_another_verdict_written_with_sql(engine: sa.Engine) -> None:
    """BI users may write the table with plain SQL, past upsert_feedback: the database refuses 'Confirmed!'."""
    ensure_table(engine, FEEDBACK_TABLE)
    insert = sa.text(
        "INSERT INTO anomaly_feedback (feed, partition_date, record_key, verdict, reviewed_at)"
        " VALUES ('payments', '2024-05-01', :key, :verdict, CURRENT_TIMESTAMP)"
    )
    with engine.begin() as conn:
        conn.execute(insert, {"key": "a", "verdict": "confirmed"})
    refused = pytest.raises(sa.exc.IntegrityError, match="ck_anomaly_feedback_verdict")
    with refused, engine.begin() as conn:
        conn.execute(insert, {"key": "b", "verdict": "Confirmed!"})
    assert count(engine, "anomaly_feedback") == 1


def old_feedback_spec():
    """anomaly_feedback as releases before the CHECK created it."""
    columns = tuple(dataclasses.replace(c, check=False) for c in FEEDBACK_TABLE.columns)
    return dataclasses.replace(FEEDBACK_TABLE, columns=columns)


def old_warehouse(engine: sa.Engine) -> None:
    """Tables and views as an older release left them: the feedback table without its CHECK."""
    ensure_table(engine, old_feedback_spec())
    ensure_table(engine, ANOMALY_TABLE)
    with (
        engine.begin() as conn
    ):  # the views, without create_views (which would migrate the table first)
        for name, select in views._view_selects(conn, None).items():
            conn.execute(CreateView(select, name))


def test_an_older_feedback_table_gains_the_check_and_keeps_its_rows(engine: sa.Engine) -> None:
    old_warehouse(engine)
    insert = sa.text(
        "INSERT INTO anomaly_feedback (feed, partition_date, record_key, verdict, reviewed_at)"
        " VALUES ('payments', '2024-05-01', :key, :verdict, CURRENT_TIMESTAMP)"
    )
    with engine.begin() as conn:
        conn.execute(
            insert, [{"key": "a", "verdict": "confirmed"}, {"key": "b", "verdict": "Confirmed!"}]
        )

    with pytest.raises(ValueError) as failure:
        ensure_table(engine, FEEDBACK_TABLE)
    message = str(failure.value)
    assert (
        "anomaly_feedback: column 'verdict' now accepts only ['confirmed', 'rejected']" in message
    )
    assert "record_key='b', verdict='Confirmed!'" in message and "record_key='a'" not in message
    assert "ck_anomaly_feedback_verdict" not in _checks(engine)  # nothing was changed

    with engine.begin() as conn:  # what the message asks for
        conn.execute(
            sa.text(
                "UPDATE anomaly_feedback SET verdict = 'confirmed' WHERE verdict = 'Confirmed!'"
            )
        )
    for _ in range(2):  # idempotent
        ensure_table(engine, FEEDBACK_TABLE)
    assert "ck_anomaly_feedback_verdict" in _checks(engine)
    assert read_partition(engine, FEEDBACK_TABLE, feed="payments", partition_date=DAY)[
        "verdict"
    ].tolist() == ["confirmed", "confirmed"]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(insert, {"key": "c", "verdict": "nope"})
    with engine.connect() as conn:  # the views survived (SQLite rebuilt the table under them)
        assert conn.execute(sa.text("SELECT COUNT(*) FROM anomaly_top")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT COUNT(*) FROM anomaly_daily_summary")).scalar_one() == 0


def _checks(engine: sa.Engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_check_constraints("anomaly_feedback")}


def test_read_feedback_creates_the_table(engine: sa.Engine) -> None:
    assert read_feedback(engine, feed="payments", start=DAY, end=DAY).empty
    assert sa.inspect(engine).has_table("anomaly_feedback")
