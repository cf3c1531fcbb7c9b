"""Validation quarantines every bad row with its column and rule, and the rows always add up."""

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import parse_feed
from pynomaly_core.data.sources import partition_window
from pynomaly_core.data.validation import SchemaMismatchError, build_schema, validate_partition

FEED = parse_feed(
    {
        "name": "sensors",
        "source": {"kind": "csv", "path": "in/{date}.csv"},
        "event_time": "ts",
        "record_key": "id",
        "label": "y",
        "features": [
            {"name": "temp", "type": "float", "min": -10, "max": 60},
            {"name": "count", "type": "int", "min": 0},
            {"name": "kind", "type": "category", "allowed": ["a", "b"]},
            {"name": "flag", "type": "bool", "nullable": True},
        ],
        "partitioning": {"start_date": "2026-11-01"},
    }
)
START, END = partition_window(dt.date(2026, 11, 1))


def frame(**overrides) -> pd.DataFrame:
    base = {
        "id": ["r1", "r2", "r3"],
        "ts": ["2026-11-01T01:00:00Z", "2026-11-01T02:00:00Z", "2026-11-01T03:00:00Z"],
        "temp": ["20.5", "21.0", "19.5"],
        "count": ["1", "2", "3"],
        "kind": ["a", "b", "a"],
        "flag": ["true", "", "no"],
        "y": ["0", "0", "1"],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def validate(raw: pd.DataFrame):
    return validate_partition(
        raw, FEED, source="in/2026-11-01.csv", partition_start=START, partition_end=END
    )


def quarantined(result, column: str) -> list[str]:
    q = result.quarantine
    return q.loc[q["column_name"] == column, "rule"].tolist()


def test_clean_partition_is_fully_valid_and_typed():
    result = validate(frame())
    assert result.valid_rows == 3 and result.quarantined_rows == 0
    assert str(result.valid["ts"].dtype) == "datetime64[ns, UTC]"
    assert result.valid["temp"].dtype == np.float64
    assert result.valid["flag"].tolist() == [True, pd.NA, False]
    assert result.pass_rate == 1.0


def test_wrong_type_is_quarantined_with_column_and_value():
    result = validate(frame(temp=["20.5", "warm", "19.5"]))
    assert result.valid_rows == 2 and result.quarantined_rows == 1
    row = result.quarantine.iloc[0]
    assert (row["column_name"], row["rule"], row["failure_value"], row["record_key"]) == (
        "temp",
        "parse as float",
        "warm",
        "r2",
    )
    assert '"temp": "warm"' in row["row_json"]


def test_nan_in_non_nullable_column_is_quarantined_as_not_nullable():
    result = validate(frame(temp=["20.5", "NaN", "19.5"]))
    assert quarantined(result, "temp") == ["not_nullable"]


def test_infinite_value_is_quarantined_as_not_finite():
    result = validate(frame(temp=["inf", "21", "19.5"]))
    assert "value must be finite (not inf)" in quarantined(result, "temp")
    assert result.quarantined_rows == 1


def test_out_of_range_value_is_quarantined_naming_the_bound():
    result = validate(frame(temp=["20", "61", "19.5"]))
    assert quarantined(result, "temp") == ["less_than_or_equal_to(60.0)"]


def test_unknown_category_and_bad_bool_and_fractional_int_are_quarantined():
    result = validate(
        frame(kind=["a", "z", "a"], flag=["true", "", "maybe"], count=["1", "2", "2.5"])
    )
    assert quarantined(result, "kind") == ["isin(['a', 'b'])"]
    assert quarantined(result, "flag") == ["parse as bool"]
    assert quarantined(result, "count") == ["parse as int"]
    assert result.quarantined_rows == 2


def test_event_outside_the_partition_window_is_quarantined():
    result = validate(frame(ts=["2026-11-01T01:00:00Z", "2026-11-02T00:00:00Z", "yesterday"]))
    assert sorted(quarantined(result, "ts")) == [
        "event time within the partition window",
        "parse as UTC timestamp",
    ]


def test_duplicate_record_key_keeps_the_first_and_quarantines_the_rest():
    result = validate(frame(id=["r1", "r1", "r3"]))
    assert result.valid["id"].tolist() == ["r1", "r3"]
    assert quarantined(result, "id") == ["field_uniqueness"]


def test_row_failing_two_rules_is_counted_once():
    result = validate(frame(temp=["20", "99", "19.5"], kind=["a", "z", "a"]))
    assert len(result.quarantine) == 2
    assert result.quarantined_rows == 1
    assert result.accounting_holds


@pytest.mark.parametrize("column", ["temp", "ts", "id"])
def test_missing_column_raises_naming_column_and_source(column):
    with pytest.raises(
        SchemaMismatchError, match=rf"in/2026-11-01.csv: missing column\(s\) \['{column}'\]"
    ):
        validate(frame().drop(columns=[column]))


def test_extra_column_raises_naming_it():
    with pytest.raises(SchemaMismatchError, match=r"unexpected column\(s\) \['surprise'\]"):
        validate(frame().assign(surprise=1))


def test_empty_partition_is_valid_with_zero_rows():
    result = validate(frame().iloc[0:0])
    assert (result.raw_rows, result.valid_rows, result.quarantined_rows) == (0, 0, 0)
    assert result.pass_rate is None and result.accounting_holds


def test_accounting_holds_on_a_messy_partition():
    rng = np.random.default_rng(0)
    n = 400
    temps = rng.normal(25, 20, n).round(2).astype(str)
    temps[rng.choice(n, 20, replace=False)] = "oops"
    raw = pd.DataFrame(
        {
            "id": [f"k{i % 390}" for i in range(n)],
            "ts": pd.date_range("2026-11-01", periods=n, freq="4min", tz="UTC").astype(str),
            "temp": temps,
            "count": rng.integers(-2, 10, n).astype(str),
            "kind": rng.choice(["a", "b", "c"], n),
            "flag": rng.choice(["true", "false", "", "?"], n),
            "y": rng.choice(["0", "1"], n),
        }
    )
    result = validate(raw)
    assert 0 < result.quarantined_rows < n
    assert result.raw_rows == result.valid_rows + result.quarantined_rows == n
    # every valid row satisfies the schema on its own
    build_schema(FEED, START, END).validate(result.valid)


def test_a_named_time_zone_is_quarantined_not_read_as_utc():
    raw = frame(
        ts=["2026-11-01 01:00:00 EST", "2026-11-01T02:00:00+01:00", "2026-11-01 03:00:00 UTC"]
    )
    result = validate_partition(
        raw, FEED, source="in/2026-11-01.csv", partition_start=START, partition_end=END
    )
    assert result.valid["ts"].tolist() == [
        pd.Timestamp("2026-11-01T01:00:00Z"),
        pd.Timestamp("2026-11-01T03:00:00Z"),
    ]
    [row] = result.quarantine.to_dict("records")
    assert (
        row["row_number"] == 0
        and row["column_name"] == "ts"
        and row["failure_value"] == "2026-11-01 01:00:00 EST"
    )
    assert "named time zone 'EST'" in row["rule"] and "event_time_zone" in row["rule"]
    assert len(result.valid) + result.quarantine["row_number"].nunique() == result.raw_rows


def test_naive_times_are_local_to_the_declared_event_time_zone():
    berlin = FEED.model_copy(update={"event_time_zone": "Europe/Berlin"})
    raw = frame(ts=["2026-11-01 02:00:00", "2026-11-01T02:00:00Z", "2026-11-01 05:30:00+05:30"])
    result = validate_partition(
        raw, berlin, source="in/2026-11-01.csv", partition_start=START, partition_end=END
    )
    # 02:00 in Berlin (CET, +01:00) is 01:00 UTC; explicit offsets are not touched by the zone
    assert result.valid["ts"].tolist() == [
        pd.Timestamp("2026-11-01T01:00:00Z"),
        pd.Timestamp("2026-11-01T02:00:00Z"),
        pd.Timestamp("2026-11-01T00:00:00Z"),
    ]


def test_a_local_time_skipped_by_daylight_saving_is_refused():
    berlin = FEED.model_copy(update={"event_time_zone": "Europe/Berlin"})
    start, end = partition_window(dt.date(2026, 3, 29))
    raw = frame(ts=["2026-03-29 02:30:00", "2026-03-29 03:30:00", "2026-03-29 04:00:00"])
    result = validate_partition(
        raw, berlin, source="in/2026-03-29.csv", partition_start=start, partition_end=end
    )
    assert result.quarantine["row_number"].tolist() == [0]
    assert (
        "does not exist or is ambiguous in event_time_zone 'Europe/Berlin'"
        in result.quarantine["rule"][0]
    )
    assert result.valid["ts"].tolist() == [
        pd.Timestamp("2026-03-29T01:30:00Z"),
        pd.Timestamp("2026-03-29T02:00:00Z"),
    ]


@pytest.mark.parametrize(
    "values", [["1", "9223372036854775808", "9007199254740993"], [1, 2**63, 2**53 + 1]]
)
def test_integers_beyond_2_pow_53_are_quarantined_with_the_rule(values):
    raw = frame(count=pd.Series(values, dtype=object))
    result = validate_partition(
        raw, FEED, source="in/2026-11-01.csv", partition_start=START, partition_end=END
    )
    assert result.valid["count"].tolist() == [1]
    q = result.quarantine
    assert q["row_number"].tolist() == [1, 2] and set(q["column_name"]) == {"count"}
    assert all("2^53" in rule for rule in q["rule"])


def test_pii_columns_are_masked_in_quarantine():
    feed = parse_feed(
        {
            "name": "payments",
            "source": {"kind": "csv", "path": "in/{date}.csv"},
            "event_time": "ts",
            "record_key": "id",
            "passthrough": ["email", "region"],
            "pii": ["email"],
            "features": [
                {"name": "amount", "type": "float", "min": 0},
                {"name": "card", "type": "category", "pii": True},
            ],
            "partitioning": {"start_date": "2026-11-01"},
        }
    )
    raw = pd.DataFrame(
        {
            "id": ["r1", "r2"],
            "ts": ["2026-11-01T01:00:00Z"] * 2,
            "email": ["a@x.org", "b@x.org"],
            "region": ["eu", "us"],
            "amount": ["-5", "3"],
            "card": ["4111-1111", ""],
        }
    )
    result = validate_partition(
        raw, feed, source="in/2026-11-01.csv", partition_start=START, partition_end=END
    )
    by_column = {row["column_name"]: row for row in result.quarantine.to_dict("records")}
    assert set(by_column) == {"amount", "card"}
    assert by_column["card"]["failure_value"] is None  # missing is shown as missing, not as a mask
    for row in by_column.values():
        assert "a@x.org" not in row["row_json"] and "4111-1111" not in row["row_json"]
    stored = json.loads(by_column["amount"]["row_json"])
    assert (
        stored["email"] == stored["card"] == "***masked***"
        and stored["region"] == "eu"
        and stored["amount"] == "-5"
    )


def test_pii_may_only_name_passthrough_or_entity_columns():
    from pynomaly_core.data.config import FeedConfigError

    with pytest.raises(FeedConfigError, match="pii: 'id' is not a passthrough or entity column"):
        parse_feed(
            {
                "name": "p",
                "source": {"kind": "csv", "path": "in/{date}.csv"},
                "event_time": "ts",
                "record_key": "id",
                "pii": ["id"],
                "features": [{"name": "x"}],
                "partitioning": {"start_date": "2026-11-01"},
            }
        )
