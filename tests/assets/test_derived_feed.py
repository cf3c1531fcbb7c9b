"""A feed with an entity and derived features, through the asset graph: a day scored alone (its
warm-up read from the previous validated partition) equals the same day scored inside one long
frame by the same champion, row for row; its explanations name the derived features."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from tests.assets.helpers import (
    definitions_for,
    failure_message,
    latest_metadata,
    run_job,
    run_range,
    seed_mlflow,
    write_feed,
)

NAME = "machines_derived"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
FEED = {
    "name": NAME,
    "source": {"kind": "csv", "path": "landing/{date}.csv"},
    "event_time": "ts",
    "record_key": "id",
    "entity": "machine",
    "features": [{"name": "temperature", "type": "float"}, {"name": "load", "type": "float"}],
    "derived": {
        "features": [
            {"source": "temperature", "kind": "lag", "periods": 1},
            {"source": "temperature", "kind": "diff"},
            {"source": "temperature", "kind": "rolling_zscore", "window": 12},
            {"source": "load", "kind": "rolling_mean", "window": "1h"},
        ],
        "calendar": {"fields": ["hour"], "cyclical": True},
    },
    "partitioning": {"start_date": "2026-11-01"},
    "validation": {"min_rows": 10},
    "training": {"window_days": 3, "min_rows": 100},
    "detector": {"name": "IForest", "contamination": 0.01},
    "lifecycle": {"candidates": ["IForest"]},
}


def telemetry(day: str, machines: int = 3, seed: int = 0) -> pd.DataFrame:
    """One day of 5-minute readings of ``machines`` machines, with a daily cycle and a few spikes."""
    rng = np.random.default_rng(seed + int(day[-2:]))
    start = pd.Timestamp(day, tz="UTC")
    frames = []
    for m in range(machines):
        ts = start + pd.to_timedelta(np.arange(288) * 5, unit="min")
        hours = ts.hour + ts.minute / 60
        temperature = np.asarray(50 + 8 * np.sin(2 * np.pi * hours / 24)) + rng.normal(0, 0.4, 288)
        temperature[rng.choice(288, 2, replace=False)] += 15
        frames.append(
            pd.DataFrame(
                {
                    "id": [f"{day}-m{m}-{i}" for i in range(288)],
                    "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "machine": f"m{m}",
                    "temperature": temperature.round(3),
                    "load": rng.uniform(20, 80, 288).round(2),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("derived")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    mp.delenv("PYNOMALY_WAREHOUSE_URL", raising=False)
    seed_mlflow(root / "home")
    feeds = root / "feeds"
    write_feed(feeds, FEED)
    (feeds / "landing").mkdir()
    for day in DAYS:
        telemetry(day).to_csv(feeds / "landing" / f"{day}.csv", index=False)
    defs = definitions_for(feeds)
    with dg.instance_for_test(temp_dir=str(root)) as instance:
        # the three days in one run (a single-run backfill): each day is still its own partition
        results = {"ingest": run_range(defs, instance, f"{NAME}__ingest", DAYS[0], DAYS[-1])}
        results["train"] = run_job(
            defs,
            instance,
            f"{NAME}__train",
            run_config={"ops": {f"{NAME}__training_window": {"config": {"end_date": DAYS[-1]}}}},
        )
        # day 3 alone: the only history it can see is day 2's validated partition
        results["score"] = run_job(defs, instance, f"{NAME}__score", DAYS[-1])
        yield {"results": results, "home": root / "home", "instance": instance}
    mp.undo()


def test_every_run_succeeds(env):
    failed = {k: failure_message(r) for k, r in env["results"].items() if not r.success}
    assert failed == {}


def test_a_day_scored_alone_equals_the_day_in_one_long_frame(env):
    from pynomaly_core.lifecycle import ChampionRecord
    from pynomaly_core.storage import FrameStore, JsonStore

    frames = FrameStore(env["home"] / "frames")
    model = ChampionRecord.from_value(
        JsonStore(env["home"] / "values").read([NAME, "champion"])
    ).load()  # the session's key file, outside every home
    assert (
        model.derivation is not None
        and "temperature__rolling_zscore_12" in model.preprocessor_.feature_names_out_
    )
    long = pd.concat([frames.read([NAME, "validated"], day) for day in DAYS], ignore_index=True)
    expected = pd.Series(model.decision_function(long), index=long["id"].astype(str))
    scored = frames.read([NAME, "anomaly_scores"], DAYS[-1])
    assert len(scored) == 3 * 288
    got = scored.set_index(scored["record_key"].astype(str))["score"]
    np.testing.assert_allclose(
        got.to_numpy(), expected.loc[got.index].to_numpy(), rtol=0, atol=1e-9
    )
    # the warm-up matters: without day 2 the first rows of each machine score differently
    cold = model.decision_function(frames.read([NAME, "validated"], DAYS[-1]))
    assert not np.allclose(np.sort(cold), np.sort(got.to_numpy()), rtol=0, atol=1e-9)


def test_explanations_name_the_derived_features(env):
    meta = latest_metadata(env["instance"], [NAME, "explanations"], DAYS[-1])
    assert meta["explained_rows"] > 0
    contributions = meta["mean_abs_contribution"]
    assert {"temperature", "temperature__rolling_zscore_12", "hour_sin"} <= set(contributions)


def test_label_free_selection_injects_series_anomalies_into_the_holdout(env):
    meta = latest_metadata(env["instance"], [NAME, "detector_candidates"])
    assert meta["evaluation"] == "synthetic"
    # the evaluation rows are the holdout day itself (3 machines x 288), some of them modified in place
    assert meta["evaluation_rows"] == 3 * 288
    assert 0 < meta["evaluation_anomalies"] <= 0.2 * 3 * 288 + 24
