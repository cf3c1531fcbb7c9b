"""scoring.fan_out_rows: anomaly_scores as one step per chunk of rows, combined into the same file."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pynomaly_core.detectors import load_object
from pynomaly_core.storage import FrameStore, JsonStore
from pynomaly_core.streaming import (
    ScoredChunk,
    ScoringLayout,
    chunk_ranges,
    combine_scored_chunks,
    read_rows,
    score_frame,
)
from tests.assets.helpers import (
    SMALL_DEMO,
    definitions_for,
    failure_message,
    latest_metadata,
    run_job,
    write_feed,
)

FEED = "demo_fan_out"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
FAN_OUT_FEED = {
    **SMALL_DEMO,
    "name": FEED,
    # 12 machines every 15 minutes: 1,152 rows a day, two chunks (1,000 rows and 152)
    "source": {**SMALL_DEMO["source"], "machines": 12},
    "scoring": {"fan_out_rows": 1000},
    "lifecycle": {"candidates": ["KNN"], "n_boot": 100},
    "explanations": {"top_k": 5, "max_background": 10},
}
ROWS = 12 * 96
KEY = [FEED, "anomaly_scores"]


@pytest.fixture(scope="module")
def fanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("fan_out")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    try:
        write_feed(root / "feeds", FAN_OUT_FEED)
        defs = definitions_for(root / "feeds")
        with dg.instance_for_test(temp_dir=str(root)) as instance:
            results = {day: run_job(defs, instance, f"{FEED}__ingest", day) for day in DAYS}
            results["train"] = run_job(defs, instance, f"{FEED}__train")
            results["score"] = run_job(defs, instance, f"{FEED}__score", DAYS[-1])
            for name, result in results.items():
                assert result.success, f"{name}: {failure_message(result)}"
            yield {
                "instance": instance,
                "home": root / "home",
                "defs": defs,
                "score_run": results["score"],
            }
    finally:
        mp.undo()


def expected_scores(home: Path) -> pd.DataFrame:
    """The partition as the one-step asset scores it: the champion on the whole validated frame."""
    frames = FrameStore(home / "frames")
    champion = JsonStore(home / "values").read([FEED, "champion"])
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
    return pd.read_parquet(frames.write(expected, ["expected"], "x"))


def test_each_chunk_is_scored_in_its_own_step(fanned):
    steps = {
        e.step_key
        for e in fanned["score_run"].all_events
        if e.event_type == dg.DagsterEventType.STEP_SUCCESS
    }
    chunk_steps = sorted(s for s in steps if "__score_chunk[" in s)
    assert [s.rsplit("[", 1)[1] for s in chunk_steps] == ["chunk_00000]", "chunk_00001]"], steps
    meta = latest_metadata(fanned["instance"], KEY, DAYS[-1])
    assert (meta["dagster/row_count"], meta["scoring_chunks"], meta["fan_out_rows"]) == (
        ROWS,
        2,
        1000,
    )
    for key in (
        "anomalies",
        "roc_auc",
        "model_version",
        "previous_model_version",
        "score_histogram_png",
    ):
        assert key in meta, key


def test_fanned_out_file_equals_one_step_scoring_by_the_champion(fanned, monkeypatch):
    monkeypatch.setenv("PYNOMALY_HOME", str(fanned["home"]))
    stored = FrameStore(fanned["home"] / "frames").read(KEY, DAYS[-1])
    pd.testing.assert_frame_equal(stored, expected_scores(fanned["home"]))


def test_chunk_files_are_removed_and_downstream_reads_the_combined_partition(fanned):
    chunks = fanned["home"] / "frames" / FEED / "anomaly_scores" / ".chunks"
    assert not any(p.is_file() for p in chunks.rglob("*")) if chunks.exists() else True
    table = latest_metadata(fanned["instance"], [FEED, "anomaly_table"], DAYS[-1])
    assert table["dagster/row_count"] == ROWS


def test_rescoring_the_partition_gives_identical_rows(fanned, monkeypatch):
    monkeypatch.setenv("PYNOMALY_HOME", str(fanned["home"]))
    frames = FrameStore(fanned["home"] / "frames")
    before = frames.read(KEY, DAYS[-1])
    again = run_job(
        fanned["defs"],
        fanned["instance"],
        f"{FEED}__score",
        DAYS[-1],
        run_config={"ops": {f"{FEED}__anomaly_scores": {"config": {"allow_hindsight": False}}}},
    )
    assert again.success, failure_message(again)
    pd.testing.assert_frame_equal(frames.read(KEY, DAYS[-1]), before)


def test_chunk_ranges_cover_the_rows_in_order():
    assert chunk_ranges(2500, 1000) == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert chunk_ranges(1000, 1000) == [(0, 1000)]
    assert chunk_ranges(0, 1000) == [(0, 0)]
    with pytest.raises(ValueError, match="fan_out_rows"):
        chunk_ranges(10, 0)


def test_read_rows_reads_a_range_across_row_groups(tmp_path):
    frame = pd.DataFrame({"a": range(100), "b": [str(i) for i in range(100)]})
    path = tmp_path / "f.parquet"
    frame.to_parquet(path, index=False, row_group_size=30)
    got = read_rows(path, ["a"], 25, 71)
    assert got["a"].tolist() == list(range(25, 71))


def _chunk_file(tmp_path: Path, index: int, scores: list[float]) -> ScoredChunk:
    frame = pd.DataFrame(
        {
            "record_key": [f"{index}-{i}" for i in range(len(scores))],
            "score": scores,
            "is_anomaly": [s > 0.5 for s in scores],
            "is_alert": [s > 0.5 for s in scores],
            "severity": ["high" if s > 0.5 else "none" for s in scores],
        }
    )
    path = tmp_path / f"{index:05d}.parquet"
    frame.to_parquet(path, index=False)
    return ScoredChunk(index=index, path=path, rows=len(frame), scoring_seconds=0.1)


LAYOUT = ScoringLayout("record_key", "event_time", (), None, "KNN", "1", alert_limit=2)


def test_combine_applies_the_alert_budget_over_the_whole_partition_and_is_repeatable(tmp_path):
    chunks = [_chunk_file(tmp_path, 0, [0.9, 0.1, 0.6]), _chunk_file(tmp_path, 1, [0.95, 0.2])]
    first = combine_scored_chunks(list(reversed(chunks)), tmp_path / "out.parquet", LAYOUT)
    combined = pd.read_parquet(tmp_path / "out.parquet")
    assert combined["record_key"].tolist() == ["0-0", "0-1", "0-2", "1-0", "1-1"]
    # three flagged rows, a budget of two: the two highest scores are the alerts
    assert combined["is_alert"].tolist() == [True, False, False, True, False]
    assert (first.rows, first.chunks, first.severity_counts["high"]) == (5, 2, 3)
    combine_scored_chunks(chunks, tmp_path / "out.parquet", LAYOUT)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), combined)


def test_combine_refuses_a_chunk_reported_twice(tmp_path):
    chunk = _chunk_file(tmp_path, 0, [0.9, 0.1])
    with pytest.raises(ValueError, match="each once"):
        combine_scored_chunks([chunk, chunk], tmp_path / "out.parquet", LAYOUT)
    assert not (tmp_path / "out.parquet").exists()
