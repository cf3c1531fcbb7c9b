"""anomaly_scores streams a partition larger than scoring.chunk_rows, and the graph downstream still reads it."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pynomaly_core.detectors import load_object
from pynomaly_core.storage import FrameStore, JsonStore
from pynomaly_core.streaming import ScoringLayout, score_frame
from tests.assets.helpers import (
    SMALL_DEMO,
    definitions_for,
    failure_message,
    latest_metadata,
    run_job,
    write_feed,
)

FEED = "demo_chunked"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
CHUNKED_FEED = {
    **SMALL_DEMO,
    "name": FEED,
    # 12 machines every 15 minutes: 1,152 rows a day, more than the smallest chunk of 1,000 rows
    "source": {**SMALL_DEMO["source"], "machines": 12},
    "scoring": {"chunk_rows": 1000},
    "lifecycle": {"candidates": ["KNN"], "n_boot": 100},
    "explanations": {"top_k": 5, "max_background": 10},
}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunked")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    try:
        write_feed(root / "feeds", CHUNKED_FEED)
        defs = definitions_for(root / "feeds")
        with dg.instance_for_test(temp_dir=str(root)) as instance:
            results = {day: run_job(defs, instance, f"{FEED}__ingest", day) for day in DAYS}
            results["train"] = run_job(defs, instance, f"{FEED}__train")
            results["score"] = run_job(defs, instance, f"{FEED}__score", DAYS[-1])
            for name, result in results.items():
                assert result.success, f"{name}: {failure_message(result)}"
            yield {"instance": instance, "home": root / "home"}
    finally:
        mp.undo()


def test_large_partition_is_scored_in_chunks_with_the_in_memory_metadata(scored):
    meta = latest_metadata(scored["instance"], [FEED, "anomaly_scores"], DAYS[-1])
    assert meta["dagster/row_count"] == 12 * 96
    assert (meta["scoring_chunks"], meta["chunk_rows"]) == (2, 1000)
    for key in (
        "anomalies",
        "anomaly_rate",
        "mean_score",
        "score_p99",
        "score_histogram",
        "roc_auc",
        "average_precision",
        "model_version",
        "severity_critical",
    ):
        assert key in meta, key
    assert meta["roc_auc"] > 0.8


def test_streamed_file_equals_in_memory_scoring_by_the_champion(scored, monkeypatch):
    monkeypatch.setenv(
        "PYNOMALY_HOME", str(scored["home"])
    )  # the signing key the champion was saved with
    frames = FrameStore(scored["home"] / "frames")
    stored = frames.read([FEED, "anomaly_scores"], DAYS[-1])
    assert (
        pq.ParquetFile(frames.path([FEED, "anomaly_scores"], DAYS[-1])).metadata.num_row_groups == 2
    )
    champion = JsonStore(scored["home"] / "values").read([FEED, "champion"])
    model = load_object(champion["path"], expected_sha256=champion["manifest_sha256"])
    layout = ScoringLayout(
        record_key=SMALL_DEMO["record_key"],
        event_time=SMALL_DEMO["event_time"],
        passthrough=tuple(SMALL_DEMO["passthrough"]),
        label=SMALL_DEMO["label"],
        model_name=champion["detector"],
        model_version=str(champion["version"]),
    )
    expected = score_frame(model, frames.read([FEED, "validated"], DAYS[-1]), layout)
    pd.testing.assert_frame_equal(
        stored, pd.read_parquet(frames.write(expected, ["expected"], "x"))
    )


def test_explanations_and_export_read_the_streamed_partition(scored):
    table = latest_metadata(scored["instance"], [FEED, "anomaly_table"], DAYS[-1])
    assert table["dagster/row_count"] == 12 * 96
    explained = latest_metadata(scored["instance"], [FEED, "explanations"], DAYS[-1])
    assert explained["explained_rows"] == min(
        5, latest_metadata(scored["instance"], [FEED, "anomaly_scores"], DAYS[-1])["anomalies"]
    )
