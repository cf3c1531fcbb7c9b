"""What a row is judged against (normal ranges, the series around it) and the charts drawing it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pynomaly_review import charts
from pynomaly_review.context import (
    normal_ranges,
    passthrough_values,
    series_around,
    validated_frame_path,
)
from tests.review.conftest import DAY, FEED, FLAGGED, attributes, key, scored_day, validated_day


def write_frame(frames: Path, feed: str = FEED) -> Path:
    path = frames / feed / "validated" / f"{DAY}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    validated_day().to_parquet(path, index=False)
    return path


def test_the_normal_range_leaves_the_flagged_rows_out(tmp_path: Path) -> None:
    write_frame(tmp_path)
    flagged = {key(i) for i in FLAGGED}
    with_them = normal_ranges(tmp_path, FEED, DAY, ["temp_c"])
    without = normal_ranges(tmp_path, FEED, DAY, ["temp_c", "vibration", "no_such"], flagged)
    # 12 of 240 rows were 95 degrees: with them the 99th percentile is theirs
    assert with_them["temp_c"][2] == 95.0
    low, median, high = without["temp_c"]
    assert 50 < low < median < high < 70
    assert set(without) == {"temp_c", "vibration"}


def test_no_frame_or_an_unsafe_feed_name_gives_no_range(tmp_path: Path) -> None:
    write_frame(tmp_path)
    assert normal_ranges(tmp_path, "other_feed", DAY, ["temp_c"]) == {}
    assert normal_ranges(None, FEED, DAY, ["temp_c"]) == {}
    outside = tmp_path / "outside"
    write_frame(outside, FEED)
    # a feed name that climbs out of the frames directory is never looked up
    assert validated_frame_path(tmp_path / "frames", "../outside/" + FEED, DAY) is None
    assert validated_frame_path(tmp_path, FEED, DAY) is not None


def test_the_series_is_the_rows_entity_around_it_in_time() -> None:
    scores = scored_day()
    entity = attributes(scores, validated_day())
    rows = scores.merge(
        entity[entity["role"] == "entity"][["record_key", "text_value"]].rename(
            columns={"text_value": "entity"}
        ),
        on="record_key",
    )
    around = series_around(rows, key(19), points=5)
    # record 19 belongs to machine m-04 (every 4th row from 3): up to 5 of its points either side
    assert list(around["record_key"]) == [key(i) for i in range(3, 40, 4)]  # 4 before, 5 after
    assert around["event_time"].is_monotonic_increasing
    no_time = rows.assign(event_time=pd.NaT)
    assert series_around(no_time, key(19)).empty


def test_charts_escape_what_they_are_given() -> None:
    bars = str(charts.shap_bars([("<script>alert(1)</script>", 0.5), ("b&c", -0.2)]))
    assert "<script>" not in bars and "&lt;script&gt;" in bars and "b&amp;c" in bars
    assert bars.count("<rect") == 2
    assert "no SHAP" in str(charts.shap_bars([]))
    dot = str(charts.range_bar(95.0, 55.0, 65.0, 60.0))
    assert 'fill="#c0392b"' in dot  # outside the range: red
    inside = str(charts.range_bar(60.0, 55.0, 65.0))
    assert 'fill="#2e6da4"' in inside
    plot = str(charts.series_plot([0.1, 0.2, 2.0, 0.1], [False, False, True, False], 2, 1.0))
    assert plot.count("<circle") == 2 and "decision threshold" in plot


def test_passthrough_values_are_the_records_context_as_text() -> None:
    frame = pd.DataFrame(
        {
            "record_key": ["a", "a", "a", "b"],
            "attribute": ["site", "load", "temp_c", "site"],
            "role": ["passthrough", "passthrough", "feature", "passthrough"],
            "text_value": ["north", None, None, "south"],
            "number_value": [float("nan"), 0.25, 61.0, float("nan")],
        }
    )
    assert passthrough_values(frame, "a") == [("site", "north"), ("load", "0.25")]
