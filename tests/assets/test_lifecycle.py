"""Champion promotion on a real Dagster instance with a real MLflow backend (SQLite under the test home).

One story, in order: a weak first champion, promoted below lifecycle.min_auc with a WARN gate,
scores a day; a better challenger replaces it; a forced worse challenger is blocked by the
promotion gate and scoring keeps using the champion; the new champion does not rescore the day
the first one scored (its training window contains it) unless the run config asks for hindsight.
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


def feed(detector: dict, **lifecycle) -> dict:
    data = copy.deepcopy(SMALL_DEMO)
    data["name"] = FEED
    data["source"]["anomaly_rate"] = 0.08
    data["detector"] = detector
    data["lifecycle"] = {
        "candidates": [detector["name"]],
        "min_labelled_anomalies": 5,
        "n_boot": 500,
        **lifecycle,
    }
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

        def train(detector: dict, run_config: dict | None = None, **lifecycle) -> dict:
            write_feed(feeds, feed(detector, **lifecycle))
            result = run_job(
                definitions_for(feeds),
                instance,
                f"{FEED}__train",
                run_config={**window, **(run_config or {})},
            )
            return {
                "result": result,
                "checks": check_results(instance, result.run_id),
                "meta": latest_metadata(instance, [FEED, "champion"]),
                "champion": tracker.get_alias(FEED, "champion"),
                "challenger": tracker.get_alias(FEED, "challenger"),
                "previous": tracker.get_alias(FEED, "previous"),
            }

        # HBOS's holdout ROC-AUC (~0.75) is below this floor: weak evidence
        steps["first"] = train(WEAK, min_auc=0.99)
        steps["first_score"] = run_job(definitions_for(feeds), instance, f"{FEED}__score", DAYS[0])
        steps["first_score_meta"] = latest_metadata(instance, [FEED, "anomaly_scores"], DAYS[0])
        steps["better"] = train(STRONG)
        steps["forced_worse"] = train(
            WEAK, {"ops": {f"{FEED}__champion": {"config": {"candidate": "HBOS"}}}}
        )
        steps["score"] = run_job(definitions_for(feeds), instance, f"{FEED}__score", DAYS[-1])
        steps["hindsight_refused"] = run_job(
            definitions_for(feeds), instance, f"{FEED}__score", DAYS[0]
        )
        steps["hindsight_asked"] = run_job(
            definitions_for(feeds),
            instance,
            f"{FEED}__score",
            DAYS[0],
            run_config={"ops": {f"{FEED}__anomaly_scores": {"config": {"allow_hindsight": True}}}},
        )
        yield {"steps": steps, "instance": instance, "home": root / "home", "tracker": tracker}
    mp.undo()


def gate_of(instance, run_id: str):
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return next(r.dagster_event.event_specific_data for r in records)


def test_a_weak_first_model_becomes_champion_with_a_warning_and_scores(story):
    """Dagster blocks only on failed ERROR results of a blocking check: the WARN lets the run succeed."""
    first = story["steps"]["first"]
    assert first["result"].success, failure_message(first["result"])
    assert first["champion"].detector == "HBOS" and first["meta"]["decision"] == "promoted"
    gate = gate_of(story["instance"], first["result"].run_id)
    assert gate.passed is False and gate.severity == dg.AssetCheckSeverity.WARN
    auc = first["meta"]["challenger_roc_auc"]
    assert auc < 0.99
    assert gate.description.startswith(
        f"first champion promoted on weak evidence: ROC-AUC {auc:.3f} < lifecycle.min_auc 0.99"
    )
    assert first["meta"]["gate"] == "weak first champion"
    assert first["meta"]["champion_training_days"] == f"{DAYS[0]}..{DAYS[-1]}"
    scored = story["steps"]["first_score"]
    assert scored.success, failure_message(scored)
    meta = story["steps"]["first_score_meta"]
    assert (
        meta["model_version"] == first["champion"].version
        and meta["previous_model_version"] == "none"
    )


def test_better_challenger_replaces_the_champion(story):
    first, better = story["steps"]["first"], story["steps"]["better"]
    assert better["result"].success, failure_message(better["result"])
    assert better["meta"]["decision"] == "promoted", better["meta"]["reason"]
    meta = better["meta"]
    assert meta["delta_ap_ci_low"] > 0 and "delta_ap_delta" not in meta
    # champion_* are the new champion's (= the challenger's) figures; previous_champion_* keep the
    # dethroned model's on the same rows, and delta_ap is their difference
    assert meta["champion_average_precision"] == meta["challenger_average_precision"]
    assert meta["previous_champion_version"] == first["champion"].version
    assert meta["delta_ap"] == pytest.approx(  # each figure rounded to 4 significant digits
        meta["challenger_average_precision"] - meta["previous_champion_average_precision"], abs=2e-4
    )
    assert better["champion"].detector == "KNN"
    # the previous champion is the rollback target; `challenger` is cleared
    assert better["previous"].version == first["champion"].version
    assert better["challenger"] is None
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
        f"SELECT DISTINCT model_name, model_version FROM anomaly_scores WHERE partition_date = '{DAYS[-1]}'",
        sa.create_engine(f"sqlite:///{story['home'] / 'warehouse.db'}"),
    )
    assert exported.to_dict("records") == [
        {"model_name": "KNN", "model_version": int(better["champion"].version)}
    ]


def test_the_new_champion_does_not_rescore_a_day_it_was_trained_on_unless_asked(story):
    """Day 1 was scored by the first champion; KNN was trained on days 1-3: no hindsight."""
    first, better = story["steps"]["first"], story["steps"]["better"]
    refused = story["steps"]["hindsight_refused"]
    assert not refused.success
    message = failure_message(refused)
    assert (
        f"champion version {better['champion'].version} of feed '{FEED}' was trained on {DAYS[0]}..{DAYS[-1]}"
        in message
    )
    assert (
        f"partition {DAYS[0]} lies inside that window: it was scored by version {first['champion'].version}"
        in message
    )
    assert (
        f"set run config allow_hindsight: true on {FEED}/anomaly_scores "
        f"(ops: {{{FEED}__anomaly_scores: {{config: {{allow_hindsight: true}}}}}})"
    ) in message
    asked = story["steps"]["hindsight_asked"]
    assert asked.success, failure_message(asked)
    meta = latest_metadata(story["instance"], [FEED, "anomaly_scores"], DAYS[0])
    assert meta["model_version"] == better["champion"].version
    assert meta["previous_model_version"] == first["champion"].version and meta["hindsight"] is True
