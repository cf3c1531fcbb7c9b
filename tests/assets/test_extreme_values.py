"""Issue #13, bug 7: finite but huge floats (1e308) flow through the whole graph.

A float feature without a ``max`` accepts 1e308: it is valid data, so validation keeps it, and
every later stage must cope (scaling, the detector, synthetic anomalies, drift binning, KS,
SHAP) instead of crashing on NaN or overflow. Here a few rows of ``1e308`` (and ``-1e308``) sit
in a training day and in a scored day; the day is ingested, trained on, scored, explained,
exported, judged for drift and for performance.
"""

from __future__ import annotations

import json
import math

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_core.data.config import FeatureSpec
from tests.assets.helpers import (
    check_results,
    definitions_for,
    failure_message,
    latest_metadata,
    run_job,
    run_range,
    seed_mlflow,
    write_feed,
)

NAME = "extreme"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
TRAIN_END = DAYS[1]
SCORED = DAYS[2]
FEED = {
    "name": NAME,
    "source": {"kind": "csv", "path": "landing/{date}.csv"},
    "event_time": "ts",
    "record_key": "id",
    "label": "label",
    "features": [
        {"name": "load", "type": "float"},  # no max: 1e308 is valid here
        {"name": "temp", "type": "float"},
        {"name": "kind", "type": "category"},
    ],
    "partitioning": {"start_date": DAYS[0]},
    "validation": {"min_rows": 10},
    "training": {"window_days": 2, "min_rows": 100},
    "detector": {"name": "IForest", "contamination": 0.05},
    "lifecycle": {"candidates": ["IForest"], "min_labelled_anomalies": 3, "n_boot": 100},
    "explanations": {"top_k": 3, "max_background": 10},
    "monitoring": {"drift_sample_rows": 1000, "reference_sample_rows": 500, "canary_rows": 50},
}
ROWS = 96
HUGE = [1e308, 1e308, -1e308, 1e308, 1.7976931348623157e308]  # the last is float64's max


def day_frame(day: str, seed: int, huge: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(day, periods=ROWS, freq="15min", tz="UTC")
    frame = pd.DataFrame(
        {
            "id": [f"{day}-{i}" for i in range(ROWS)],
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "load": rng.normal(50, 5, ROWS),
            "temp": rng.normal(20, 2, ROWS),
            "kind": rng.choice(["a", "b"], ROWS),
            "label": 0,
        }
    )
    anomalies = rng.choice(ROWS, 6, replace=False)
    frame.loc[anomalies, "temp"] += 25
    frame.loc[anomalies, "label"] = 1
    if huge:
        rows = [r for r in range(ROWS) if r not in set(anomalies)][: len(HUGE)]
        frame.loc[rows, "load"] = HUGE
        frame.loc[rows, "label"] = 1
    return frame


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    root = tmp_path_factory.mktemp("extreme")
    mp = pytest.MonkeyPatch()
    home = root / "home"
    mp.setenv("PYNOMALY_HOME", str(home))
    for var in ("PYNOMALY_WAREHOUSE_URL", "PYNOMALY_MLFLOW_TRACKING_URI", "PYNOMALY_REPORTS_DIR"):
        mp.delenv(var, raising=False)
    seed_mlflow(home)
    feeds = root / "feeds"
    write_feed(feeds, FEED)
    (feeds / "landing").mkdir()
    for i, day in enumerate(DAYS):
        frame = day_frame(day, seed=i, huge=day in (DAYS[1], SCORED))
        frame.to_csv(feeds / "landing" / f"{day}.csv", index=False, float_format="%.17g")
    defs = definitions_for(feeds)
    (root / "dagster").mkdir()
    results: dict[str, dg.ExecuteInProcessResult] = {}
    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
        # the three days in one run (a single-run backfill): each day is still validated on its own
        results["ingest"] = run_range(defs, instance, f"{NAME}__ingest", DAYS[0], DAYS[-1])
        window = {"ops": {f"{NAME}__training_window": {"config": {"end_date": TRAIN_END}}}}
        results["train"] = run_job(defs, instance, f"{NAME}__train", run_config=window)
        results["score"] = run_job(defs, instance, f"{NAME}__score", SCORED)
        yield {"instance": instance, "results": results, "home": home}
    mp.undo()


def test_every_stage_succeeds_with_huge_finite_values(graph):
    failed = {k: failure_message(r) for k, r in graph["results"].items() if not r.success}
    assert failed == {}


def test_huge_values_are_kept_scored_and_exported_not_quarantined(graph):
    engine = sa.create_engine(f"sqlite:///{graph['home'] / 'warehouse.db'}")
    exported = pd.read_sql(
        sa.text("SELECT * FROM anomaly_scores WHERE partition_date = :d"),
        engine,
        params={"d": SCORED},
    )
    assert len(exported) == ROWS
    assert np.isfinite(exported["score"]).all()
    assert exported["normalized_score"].between(0, 1).all()
    huge = exported["record_key"].isin(
        day_frame(SCORED, DAYS.index(SCORED), True).query("abs(load) > 1e300")["id"]
    )
    assert huge.sum() == len(HUGE)
    # the training window held such values too, so they need not be flagged; they are explained
    explained = exported.loc[huge, "top_features"].dropna()  # top features of flagged rows
    assert all(json.loads(row)[0] == "load" for row in explained)


def test_drift_and_performance_report_finite_numbers(graph):
    instance = graph["instance"]
    run_id = graph["results"]["score"].run_id
    checks = check_results(instance, run_id)
    assert checks  # drift and performance checks were evaluated, whatever their verdict
    drift = latest_metadata(instance, [NAME, "drift_report"], SCORED)
    performance = latest_metadata(instance, [NAME, "detector_performance"], SCORED)
    for meta in (drift, performance):
        numbers = [v for v in meta.values() if isinstance(v, float)]
        assert numbers and all(math.isfinite(v) for v in numbers), meta


# --- each stage on its own: what the graph test exercises, pinned where it broke -------------
def _with_huge(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"load": rng.normal(50, 0.2, n), "temp": rng.normal(20, 2, n)})
    frame.loc[: len(HUGE) - 1, "load"] = HUGE
    return frame


def test_synthetic_anomalies_describe_the_bulk_not_the_overflowing_rows():
    from pynomaly_core.evaluation.synthetic import inject_frame

    frame = _with_huge()
    canaries = inject_frame(frame, ["load", "temp"], 40, random_state=0)  # GaussianMixture: NaN
    assert np.isfinite(canaries[["load", "temp"]].to_numpy()).all()
    assert canaries["load"].abs().max() < 1e3  # around the bulk (50 +- 0.2), not at 1e308


@pytest.mark.parametrize("scaling", ["robust", "standard", "minmax", "none"])
def test_preprocessing_keeps_huge_values_finite_and_extreme(scaling):
    from pynomaly_core.data.preprocess import FEATURE_LIMIT, FeaturePreprocessor

    frame = _with_huge()
    specs = [FeatureSpec(name="load"), FeatureSpec(name="temp")]
    X = FeaturePreprocessor(specs, scaling=scaling).fit(frame).transform(frame)
    assert np.isfinite(X).all() and np.abs(X).max() <= FEATURE_LIMIT
    if scaling != "minmax":  # minmax puts its centre at the minimum, -1e308 here
        extreme = np.abs(X[: len(HUGE), 0]).min()
        assert extreme > np.abs(X[len(HUGE) :, 0]).max()  # still the furthest from the centre


def test_drift_bins_of_huge_values_are_finite_and_ordered():
    from pynomaly_core.drift.binning import quantile_edges

    values = np.concatenate([np.linspace(0, 1, 50), [-1e308, 1.7976931348623157e308]])
    edges = quantile_edges(values, 10)
    assert not np.isnan(edges).any() and (np.diff(edges) > 0).all()
