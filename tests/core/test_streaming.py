"""Chunked scoring of a Parquet partition equals in-memory scoring, row for row and in the stored file."""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pynomaly_core.data.config import FeatureSpec
from pynomaly_core.data.demo import DemoSettings, generate_day
from pynomaly_core.model import AnomalyModel
from pynomaly_core.storage import FrameStore
from pynomaly_core.streaming import (
    NO_LABEL,
    ScoringLayout,
    parquet_rows,
    score_frame,
    score_parquet,
)

FEATURES = [
    FeatureSpec(name=n)
    for n in ("rpm", "power_kw", "temperature_c", "vibration_mm_s", "pressure_bar")
] + [FeatureSpec(name="machine_type", type="category")]
SETTINGS = DemoSettings(machines=3, interval_minutes=10, anomaly_rate=0.02)
LAYOUT = ScoringLayout(
    record_key="reading_id",
    event_time="event_time",
    passthrough=("machine_id", "anomaly_kind"),
    label="is_anomaly",
    model_name="KNN",
    model_version="7",
)


@pytest.fixture(scope="module", params=["KNN", "IForest"])
def model(request):
    train = pd.concat(
        [generate_day(dt.date(2026, 11, d), SETTINGS) for d in range(1, 4)], ignore_index=True
    )
    return AnomalyModel(FEATURES, request.param, contamination=0.02).fit(train)


@pytest.fixture
def partition(tmp_path):
    """A validated partition as the frame IO manager stores it (FrameStore: pandas to_parquet)."""
    day = pd.concat(
        [
            generate_day(dt.date(2026, 11, 6), SETTINGS),
            generate_day(dt.date(2026, 11, 7), SETTINGS),
        ],
        ignore_index=True,
    )
    # a passthrough column that is null on normal rows: whole chunks of it are null
    day["anomaly_kind"] = day["anomaly_kind"].mask(day["anomaly_kind"] == "")
    return FrameStore(tmp_path / "frames").write(day, ["feed", "validated"], "2026-11-06")


def in_memory(model, partition, tmp_path) -> pd.DataFrame:
    store = FrameStore(tmp_path / "frames")
    scored = score_frame(model, pd.read_parquet(partition), LAYOUT)
    return pd.read_parquet(store.write(scored, ["feed", "anomaly_scores"], "memory"))


def test_chunked_file_equals_the_in_memory_file_row_for_row(model, partition, tmp_path):
    expected = in_memory(model, partition, tmp_path)
    destination = tmp_path / "chunked.parquet"
    # 864 rows in chunks of 100: nine chunks, the last one short, several without any anomaly
    result = score_parquet(model, partition, destination, LAYOUT, chunk_rows=100)
    assert (result.rows, result.chunks) == (len(expected), 9)
    assert pq.ParquetFile(destination).metadata.num_row_groups == 9
    chunked = pd.read_parquet(destination)
    assert expected["top_features"].notna().any() and expected["anomaly_kind"].isna().any()
    pd.testing.assert_frame_equal(chunked, expected)


def test_result_carries_the_arrays_and_counts_of_the_whole_partition(model, partition, tmp_path):
    expected = in_memory(model, partition, tmp_path)
    result = score_parquet(model, partition, tmp_path / "out.parquet", LAYOUT, chunk_rows=250)
    np.testing.assert_array_equal(result.scores, expected["score"].to_numpy())
    np.testing.assert_array_equal(result.flags, expected["is_anomaly"].to_numpy())
    np.testing.assert_array_equal(result.labels, expected["label"].astype(int).to_numpy())
    assert result.severity_counts == {
        level: int((expected["severity"] == level).sum())
        for level in ("low", "medium", "high", "critical")
    }
    assert result.scoring_seconds <= result.total_seconds


def test_missing_labels_are_kept_as_no_label(model, tmp_path):
    day = generate_day(dt.date(2026, 11, 6), SETTINGS)
    day["is_anomaly"] = day["is_anomaly"].astype("float64")
    day.loc[:9, "is_anomaly"] = np.nan
    source = FrameStore(tmp_path).write(day, ["validated"], "d")
    result = score_parquet(model, source, tmp_path / "out.parquet", LAYOUT, chunk_rows=100)
    assert (result.labels[:10] == NO_LABEL).all() and set(result.labels[10:]) <= {0, 1}


def test_empty_partition_writes_the_empty_in_memory_frame(model, partition, tmp_path):
    empty = pd.read_parquet(partition).iloc[:0]
    source = FrameStore(tmp_path).write(empty, ["validated"], "empty")
    result = score_parquet(model, source, tmp_path / "out.parquet", LAYOUT, chunk_rows=100)
    assert (result.rows, result.chunks, len(result.scores)) == (0, 0, 0)
    expected = score_frame(model, empty, LAYOUT)
    assert list(pd.read_parquet(result.path).columns) == list(expected.columns)


def test_missing_input_column_is_named_and_nothing_is_written(model, partition, tmp_path):
    frame = pd.read_parquet(partition).drop(columns=["pressure_bar"])
    source = FrameStore(tmp_path).write(frame, ["validated"], "broken")
    destination = tmp_path / "scores" / "out.parquet"
    with pytest.raises(KeyError, match="pressure_bar"):
        score_parquet(model, source, destination, LAYOUT, chunk_rows=100)
    assert not destination.exists()


def test_failure_mid_stream_leaves_no_partial_file(model, partition, tmp_path):
    destination = tmp_path / "scores" / "out.parquet"

    class FailsOnThirdChunk:
        features = model.features

        def __init__(self):
            self.calls = 0

        def score(self, frame):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("detector crashed")
            return model.score(frame)

    with pytest.raises(RuntimeError, match="detector crashed"):
        score_parquet(FailsOnThirdChunk(), partition, destination, LAYOUT, chunk_rows=100)
    assert list(destination.parent.iterdir()) == []


def test_parquet_rows_reads_the_footer(partition):
    assert parquet_rows(partition) == 2 * 144 * 3


def test_first_chunk_without_anomalies_does_not_fix_empty_column_types(model, partition, tmp_path):
    # the writer's schema is fixed by the first chunk; its top_features and anomaly_kind are all null
    frame = pd.read_parquet(partition)
    frame = frame.iloc[np.argsort(model.decision_function(frame), kind="stable")].reset_index(
        drop=True
    )
    source = FrameStore(tmp_path / "frames").write(frame, ["feed", "validated"], "sorted")
    first = score_frame(model, frame.iloc[:100], LAYOUT)
    assert first["top_features"].isna().all() and first["anomaly_kind"].isna().all()
    result = score_parquet(model, source, tmp_path / "chunked.parquet", LAYOUT, chunk_rows=100)
    pd.testing.assert_frame_equal(pd.read_parquet(result.path), in_memory(model, source, tmp_path))
