"""A time-aware feed with a sequence-aware champion (ConvAE) and an alert budget, through the
asset graph: day 3 scored alone (its warm-up read from day 2's validated partition) equals the
same day scored inside one long frame, row for row; the budget caps the day's alerts, keeps the
rows over it, and records its use as numeric metadata."""

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
from tests.assets.test_derived_feed import telemetry

pytest.importorskip("torch")

NAME = "machines_sequence"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
BUDGET = 2
FEED = {
    "name": NAME,
    "source": {"kind": "csv", "path": "landing/{date}.csv"},
    "event_time": "ts",
    "record_key": "id",
    "entity": "machine",
    "features": [{"name": "temperature", "type": "float"}, {"name": "load", "type": "float"}],
    "derived": {"features": [{"source": "temperature", "kind": "diff"}]},
    "partitioning": {"start_date": "2026-11-01"},
    "validation": {"min_rows": 10},
    "training": {"window_days": 3, "min_rows": 100},
    "detector": {
        "name": "ConvAE",
        "contamination": 0.02,
        "params": {"window_size": 8, "channels": [8, 4], "epochs": 3, "batch_size": 128},
    },
    "lifecycle": {"candidates": ["ConvAE"]},
    "scoring": {"max_alerts_per_day": BUDGET},
    # kept quick: no SHAP of the ConvAE, no cross-fitted normal-days profile
    "explanations": {"top_k": 0},
    "monitoring": {"normal_folds": 0},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequence")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    mp.delenv("PYNOMALY_WAREHOUSE_URL", raising=False)
    seed_mlflow(root / "home")
    feeds = root / "feeds"
    write_feed(feeds, FEED)
    (feeds / "landing").mkdir()
    for day in DAYS:
        # rows arrive shuffled: the model, not the file, puts them in time order per machine
        telemetry(day).sample(frac=1.0, random_state=1).to_csv(
            feeds / "landing" / f"{day}.csv", index=False
        )
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
    ).load()
    assert model.detector == "ConvAE" and model.sequence_rows == 7
    long = pd.concat([frames.read([NAME, "validated"], day) for day in DAYS], ignore_index=True)
    expected = pd.Series(model.decision_function(long), index=long["id"].astype(str))
    scored = frames.read([NAME, "anomaly_scores"], DAYS[-1])
    got = scored.set_index(scored["record_key"].astype(str))["score"]
    np.testing.assert_allclose(got.to_numpy(), expected.loc[got.index].to_numpy(), rtol=1e-6)


def test_the_budget_caps_alerts_and_keeps_the_rest(env):
    from pynomaly_core.storage import FrameStore

    scored = FrameStore(env["home"] / "frames").read([NAME, "anomaly_scores"], DAYS[-1])
    assert len(scored) == 3 * 288
    assert int(scored["is_anomaly"].sum()) > BUDGET
    assert int(scored["is_alert"].sum()) == BUDGET
    meta = latest_metadata(env["instance"], [NAME, "anomaly_scores"], DAYS[-1])
    assert meta["alert_budget"] == BUDGET and meta["alerts"] == BUDGET
    assert meta["alert_budget_used"] == 1.0
    assert meta["alerts_over_budget"] == int(scored["is_anomaly"].sum()) - BUDGET


def test_the_drift_report_covers_the_derived_column(env):
    """Drift is computed on the derived column too, with the champion's derivation and warm-up."""
    (summary,) = list(env["home"].rglob(f"drift/{DAYS[-1]}.model-*.json"))
    import json

    columns = {c["column"]: c for c in json.loads(summary.read_text())["columns"]}
    assert {"temperature", "load", "temperature__diff_1"} <= set(columns)
    assert columns["temperature__diff_1"]["psi"] is not None
