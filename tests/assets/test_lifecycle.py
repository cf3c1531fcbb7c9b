"""Champion promotion on a real Dagster instance with a real MLflow backend (SQLite under the test home).

One story, in order: a weak first champion; a better challenger replaces it; a forced worse
challenger is blocked by the promotion gate and scoring keeps using the champion.
"""

import copy

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.assets.helpers import (
    SMALL_DEMO,
    check_results,
    definitions_for,
    failure_message,
    latest_metadata,
    run_job,
    write_feed,
)

FEED = "promo"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
#: per-feature histograms miss this feed's contextual anomalies (holdout ROC-AUC ~0.75 vs ~1.0 for KNN)
WEAK = {"name": "HBOS", "contamination": 0.05}
STRONG = {"name": "KNN", "contamination": 0.05}


def feed(detector: dict) -> dict:
    data = copy.deepcopy(SMALL_DEMO)
    data["name"] = FEED
    data["source"]["anomaly_rate"] = 0.08
    data["detector"] = detector
    data["lifecycle"] = {"candidates": [detector["name"]], "min_labelled_anomalies": 5,
                         "n_boot": 500}
    data["explanations"] = {"top_k": 5}
    return data


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    mp.delenv("PYNOMALY_WAREHOUSE_URL", raising=False)
    mp.delenv("PYNOMALY_MLFLOW_TRACKING_URI", raising=False)
    feeds = root / "feeds"
    from pynomaly_core.tracking import Tracker

    tracker = Tracker(f"sqlite:///{root / 'home' / 'mlflow' / 'mlflow.db'}")
    steps = {}
    with dg.instance_for_test(temp_dir=str(root)) as instance:
        write_feed(feeds, feed(WEAK))
        defs = definitions_for(feeds)
        for day in DAYS:
            assert run_job(defs, instance, f"{FEED}__ingest", day).success
        window = {"ops": {f"{FEED}__training_window": {"config": {"end_date": DAYS[-1]}}}}

        def train(detector: dict, run_config: dict | None = None) -> dict:
            write_feed(feeds, feed(detector))
            result = run_job(definitions_for(feeds), instance, f"{FEED}__train", run_config={**window, **(run_config or {})})
            return {
                "result": result,
                "checks": check_results(instance, result.run_id),
                "meta": latest_metadata(instance, [FEED, "champion"]),
                "champion": tracker.get_alias(FEED, "champion"),
                "challenger": tracker.get_alias(FEED, "challenger"),
            }

        steps["first"] = train(WEAK)
        steps["better"] = train(STRONG)
        steps["forced_worse"] = train(WEAK, {"ops": {f"{FEED}__champion": {"config": {"candidate": "HBOS"}}}})
        steps["score"] = run_job(definitions_for(feeds), instance, f"{FEED}__score", DAYS[-1])
        yield {"steps": steps, "instance": instance, "home": root / "home", "tracker": tracker}
    mp.undo()


def test_first_model_becomes_champion(story):
    first = story["steps"]["first"]
    assert first["result"].success, failure_message(first["result"])
    assert first["checks"] == {"promotion_gate": True}
    assert first["champion"].detector == "HBOS" and first["meta"]["decision"] == "promoted"


def test_better_challenger_replaces_the_champion(story):
    first, better = story["steps"]["first"], story["steps"]["better"]
    assert better["result"].success, failure_message(better["result"])
    assert better["meta"]["decision"] == "promoted", better["meta"]["reason"]
    assert better["meta"]["delta_ap_ci_low"] > 0
    assert better["champion"].detector == "KNN"
    assert better["challenger"].version == first["champion"].version  # the previous champion: rollback target
    # the decision is recorded on the challenger's MLflow run and version
    run = story["tracker"].client.get_run(better["champion"].run_id)
    assert run.data.tags["pynomaly.promotion"] == "champion"
    assert "beats the champion" in run.data.tags["pynomaly.promotion_reason"]


def test_forced_worse_challenger_is_blocked_and_scoring_keeps_the_champion(story, monkeypatch):
    better, worse = story["steps"]["better"], story["steps"]["forced_worse"]
    assert not worse["result"].success  # the blocking check fails the run
    assert worse["checks"] == {"promotion_gate": False}
    assert worse["champion"].version == better["champion"].version
    assert worse["challenger"].detector == "HBOS"
    assert worse["meta"]["champion_detector"] == "KNN"
    assert "blocked by the promotion gate" in worse["meta"]["reason"]

    score = story["steps"]["score"]
    assert score.success, failure_message(score)
    exported = pd.read_sql(
        "SELECT DISTINCT model_name, model_version FROM anomaly_scores",
        sa.create_engine(f"sqlite:///{story['home'] / 'warehouse.db'}"),
    )
    assert exported.to_dict("records") == [{"model_name": "KNN", "model_version": better["champion"].version}]
