"""The demo generator is deterministic, labels three kinds of anomaly and drifts on its date."""

import datetime as dt

from pynomaly_core.data.demo import DemoSettings, generate_day

DAY = dt.date(2026, 11, 3)


def test_same_seed_and_day_give_the_same_frame():
    a = generate_day(DAY, DemoSettings(seed=1))
    b = generate_day(DAY, DemoSettings(seed=1))
    assert a.equals(b)
    assert not a.equals(generate_day(DAY, DemoSettings(seed=2)))


def test_rows_cover_the_day_for_every_machine():
    frame = generate_day(DAY, DemoSettings(machines=3, interval_minutes=10))
    assert len(frame) == 3 * 144
    assert frame["reading_id"].is_unique
    assert frame["event_time"].min().date() == DAY and frame["event_time"].max().date() == DAY


def test_all_three_anomaly_kinds_are_injected_and_labelled():
    frame = generate_day(DAY, DemoSettings(anomaly_rate=0.02))
    kinds = set(frame.loc[frame["is_anomaly"] == 1, "anomaly_kind"])
    assert kinds == {"point", "contextual", "collective"}
    assert (frame["is_anomaly"] == 1).mean() <= 0.03


def test_drift_raises_temperature_from_the_drift_date_on():
    settings = DemoSettings(drift_date=dt.date(2026, 11, 4))
    before = generate_day(dt.date(2026, 11, 3), settings)
    after = generate_day(dt.date(2026, 11, 4), settings)
    normal = lambda f: f[f["is_anomaly"] == 0]
    assert normal(after)["temperature_c"].mean() - normal(before)["temperature_c"].mean() > 4.0
    assert (after["is_anomaly"] == 1).mean() < 0.03  # drift is not labelled anomalous
