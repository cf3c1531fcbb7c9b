"""Time-series anomalies are injected into a copy of the series, each kind as its name says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.evaluation.series_synthetic import KINDS, inject_series


def series(days: int = 2, machines: int = 2) -> pd.DataFrame:
    frames = []
    for m in range(machines):
        ts = pd.date_range("2026-11-01", periods=days * 288, freq="5min", tz="UTC")
        hour = ts.hour.to_numpy() + ts.minute.to_numpy() / 60
        rng = np.random.default_rng(m)
        frames.append(
            pd.DataFrame(
                {
                    "ts": ts,
                    "machine": f"m{m}",
                    "temp": 40 + 10 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 0.3, len(ts)),
                    "flow": 5 + rng.normal(0, 0.1, len(ts)),
                }
            )
        )
    return pd.concat(frames).sample(frac=1.0, random_state=1).reset_index(drop=True)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_only_the_rows_it_labels(kind):
    frame = series()
    result = inject_series(
        frame,
        event_time="ts",
        columns=["temp", "flow"],
        entity="machine",
        n_events=4,
        kinds=[kind],
        random_state=3,
    )
    assert list(result.frame.index) == list(frame.index)
    changed = (result.frame[["temp", "flow"]] != frame[["temp", "flow"]]).any(axis=1).to_numpy()
    labelled = result.y.astype(bool)
    assert labelled.any() and (result.events["kind"] == kind).all()
    assert not (changed & ~labelled).any()  # nothing outside the labelled rows moved
    if kind != "stuck":  # a stuck value may equal the one before it by chance on one row, not here
        assert changed[labelled].mean() > 0.9
    # the untouched columns of other rows are bit-for-bit the input
    pd.testing.assert_frame_equal(
        result.frame.loc[~labelled, ["ts", "machine"]], frame.loc[~labelled, ["ts", "machine"]]
    )


def test_kind_shapes():
    frame = series(machines=1)
    spike = inject_series(
        frame, event_time="ts", columns=["temp"], n_events=1, kinds=["spike"], random_state=0
    )
    assert spike.y.sum() == 1
    jump = abs(spike.frame["temp"][spike.y == 1].iloc[0] - frame["temp"][spike.y == 1].iloc[0])
    scale = (frame["temp"].quantile(0.75) - frame["temp"].quantile(0.25)) / 1.349
    assert 4 * scale <= jump <= 8 * scale + 1e-9

    stuck = inject_series(
        frame, event_time="ts", columns=["temp"], n_events=1, kinds=["stuck"], random_state=0
    )
    assert stuck.frame["temp"][stuck.y == 1].nunique() == 1 and stuck.y.sum() >= 6

    ctx = inject_series(
        frame, event_time="ts", columns=["temp"], n_events=1, kinds=["contextual"], random_state=0
    )
    rows = ctx.frame[ctx.y == 1].sort_values("ts")
    # the values are the series' own values from about 12 h earlier: ordinary values, wrong time
    earlier = frame.set_index("ts")["temp"].sort_index()
    for t, v in zip(rows["ts"], rows["temp"], strict=True):
        assert v == pytest.approx(earlier.asof(t - pd.Timedelta(hours=12)))


def test_events_do_not_overlap_and_are_reproducible():
    frame = series()
    a = inject_series(
        frame,
        event_time="ts",
        columns=["temp", "flow"],
        entity="machine",
        n_events=20,
        random_state=7,
    )
    b = inject_series(
        frame,
        event_time="ts",
        columns=["temp", "flow"],
        entity="machine",
        n_events=20,
        random_state=7,
    )
    np.testing.assert_array_equal(a.y, b.y)
    assert a.events["rows"].sum() == a.y.sum()  # disjoint: every labelled row belongs to one event
    assert set(a.events["kind"]) == set(KINDS)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown series anomaly kind"):
        inject_series(series(), event_time="ts", columns=["temp"], kinds=["meteor"])
