"""Derived features use past rows only, per entity, and a day scored alone with its warm-up equals
the same day inside a long history, row for row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import FeedConfigError, parse_feed
from pynomaly_core.features import derive, history_tail, warmup

BASE = {
    "name": "machines",
    "source": {"kind": "csv", "path": "in/{date}.csv"},
    "event_time": "ts",
    "record_key": "id",
    "entity": "machine",
    "features": [{"name": "temp", "type": "float"}, {"name": "load", "type": "int"}],
    "partitioning": {"start_date": "2026-11-01"},
}
DERIVED = {
    "features": [
        {"source": "temp", "kind": "lag", "periods": 2},
        {"source": "temp", "kind": "diff"},
        {"source": "temp", "kind": "rolling_mean", "window": 6},
        {"source": "temp", "kind": "rolling_zscore", "window": 12},
        {"source": "load", "kind": "rolling_max", "window": "1h"},
        {"source": "load", "kind": "rolling_std", "window": "30min", "name": "load_jitter"},
    ],
    "calendar": {"fields": ["hour", "dayofweek"], "cyclical": True, "zone": "Europe/Berlin"},
}
FEED = parse_feed({**BASE, "derived": DERIVED})


def telemetry(days: int = 3, machines: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for m in range(machines):
        # irregular 5-minute-ish sampling, different per machine
        steps = rng.integers(200, 400, size=days * 288).cumsum()
        ts = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(steps, unit="s")
        ts = ts[ts < pd.Timestamp("2026-11-01", tz="UTC") + pd.Timedelta(days=days)]
        frames.append(
            pd.DataFrame(
                {
                    "id": [f"m{m}-{i}" for i in range(len(ts))],
                    "ts": ts,
                    "machine": f"m{m}",
                    "temp": 40 + 5 * np.sin(np.arange(len(ts)) / 30) + rng.normal(0, 0.5, len(ts)),
                    "load": rng.integers(0, 100, len(ts)),
                }
            )
        )
    # rows arrive interleaved and not sorted, as files do
    return pd.concat(frames).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def day(frame: pd.DataFrame, which: str) -> pd.DataFrame:
    start = pd.Timestamp(which, tz="UTC")
    return frame[(frame["ts"] >= start) & (frame["ts"] < start + pd.Timedelta(days=1))]


def test_warmup_is_the_longest_look_back():
    need = warmup(FEED)
    assert need.rows == 12 and need.span == pd.Timedelta("1h")


def test_a_day_alone_with_its_warmup_equals_the_day_inside_the_long_history():
    history = telemetry()
    long_run = derive(history, FEED)
    previous = pd.concat([day(history, "2026-11-01"), day(history, "2026-11-02")])
    today = day(history, "2026-11-03")
    tail = history_tail(previous, FEED, pd.Timestamp("2026-11-03", tz="UTC"))
    assert len(tail) < len(previous)  # only the warm-up, not the whole past
    alone = derive(today, FEED, history=tail)
    assert list(alone.index) == list(today.index)  # same rows, same order
    expected = long_run.loc[today.index, FEED.derived_names]
    pd.testing.assert_frame_equal(alone[FEED.derived_names], expected, check_exact=False, rtol=1e-9)
    assert alone[FEED.derived_names].notna().all().all()


def test_without_warmup_the_first_rows_differ_which_is_why_it_is_read():
    history = telemetry()
    alone = derive(day(history, "2026-11-03"), FEED)
    long_run = derive(history, FEED)
    diff = alone["temp__rolling_mean_6"] - long_run.loc[alone.index, "temp__rolling_mean_6"]
    assert diff.abs().max() > 0


def test_no_look_ahead_changing_a_later_row_changes_no_earlier_feature():
    history = telemetry(days=1, machines=2)
    before = derive(history, FEED)
    ordered = history.sort_values("ts")
    last = ordered.index[-1]
    changed = history.copy()
    changed.loc[last, ["temp", "load"]] = [1e6, 10_000]
    after = derive(changed, FEED)
    earlier = ordered.index[:-1]
    pd.testing.assert_frame_equal(
        after.loc[earlier, FEED.derived_names], before.loc[earlier, FEED.derived_names]
    )


def test_values_on_a_small_series_per_entity():
    feed = parse_feed(
        {
            **BASE,
            "derived": {
                "features": [
                    {"source": "temp", "kind": "lag"},
                    {"source": "temp", "kind": "diff", "periods": 2},
                    {"source": "temp", "kind": "rolling_mean", "window": 2},
                    {"source": "temp", "kind": "rolling_zscore", "window": 3},
                ]
            },
        }
    )
    ts = pd.date_range("2026-11-01", periods=5, freq="5min", tz="UTC")
    a = pd.DataFrame(
        {
            "id": list("abcde"),
            "ts": ts,
            "machine": "A",
            "temp": [1.0, 2.0, 4.0, 4.0, 4.0],
            "load": 0,
        }
    )
    b = a.assign(id=list("vwxyz"), machine="B", temp=[10.0, 10.0, 10.0, 10.0, 50.0])
    out = derive(pd.concat([b, a]).reset_index(drop=True), feed)
    got_a = out[out["machine"] == "A"]
    assert got_a["temp__lag_1"].tolist()[1:] == [1.0, 2.0, 4.0, 4.0] and np.isnan(
        got_a["temp__lag_1"].iloc[0]
    )
    assert got_a["temp__diff_2"].tolist()[2:] == [3.0, 2.0, 0.0]
    # the mean of the two rows BEFORE each row, not including it
    assert got_a["temp__rolling_mean_2"].tolist()[1:] == [1.0, 1.5, 3.0, 4.0]
    got_b = out[out["machine"] == "B"]
    assert got_b["temp__lag_1"].iloc[1] == 10.0  # B's lag never reads A's rows
    # after a flat stretch a jump is very anomalous, capped instead of infinite
    assert got_b["temp__rolling_zscore_3"].iloc[-1] == pytest.approx(1_000.0)


def test_calendar_features_are_local_and_cyclical():
    feed = parse_feed(
        {**BASE, "derived": {"calendar": {"fields": ["hour"], "zone": "Europe/Berlin"}}}
    )
    frame = pd.DataFrame(
        {
            "id": ["a", "b"],
            "ts": pd.to_datetime(["2026-11-01T23:00:00Z", "2026-11-01T05:00:00Z"]),
            "machine": "A",
            "temp": 1.0,
            "load": 1,
        }
    )
    out = derive(frame, feed)
    # 23:00 UTC is midnight in Berlin (CET): angle 0
    assert out["hour_sin"].iloc[0] == pytest.approx(0.0, abs=1e-12) and out["hour_cos"].iloc[
        0
    ] == pytest.approx(1.0)
    assert out["hour_sin"].iloc[1] == pytest.approx(np.sin(2 * np.pi * 6 / 24))


@pytest.mark.parametrize(
    ("derived", "message"),
    [
        (
            {"features": [{"source": "nope", "kind": "lag"}]},
            "source 'nope' is not a numeric feature",
        ),
        ({"features": [{"source": "temp", "kind": "rolling_mean"}]}, "needs a window"),
        (
            {"features": [{"source": "temp", "kind": "lag", "window": 3}]},
            "takes periods, not a window",
        ),
        (
            {"features": [{"source": "temp", "kind": "rolling_mean", "window": "3 fortnights"}]},
            "a span such as",
        ),
        ({"features": [{"source": "temp", "kind": "lag", "name": "load"}]}, "used twice"),
        ({"calendar": {"zone": "Mars/Olympus"}}, "not an IANA time zone"),
    ],
)
def test_invalid_derived_sections_name_the_problem(derived, message):
    with pytest.raises(FeedConfigError, match=message):
        parse_feed({**BASE, "derived": derived})
