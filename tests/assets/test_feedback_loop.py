"""The analyst loop through the real asset graph: verdicts in the warehouse make the next champion better.

One story on a demo feed *without* a label column (its ground truth, ``anomaly_kind``, is only
passed through): a weak first champion (HBOS) scores three days; a reviewer confirms or rejects
the rows it flagged on the two training days (``upsert_feedback``, the warehouse write path);
the retrain adds the feedback-aware candidate, fits it with those verdicts, judges it on the
holdout day's verdicts, and promotes it; on the third day, which no model trained on and nobody
reviewed, its average precision against the ground truth beats the first champion's.
"""

from __future__ import annotations

import copy

import dagster as dg
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from tests.assets.helpers import (
    SMALL_DEMO,
    definitions_for,
    failure_message,
    latest_metadata,
    run_job,
    run_range,
    seed_mlflow,
    write_feed,
)

FEED = "fbloop"
TRAIN_DAYS = ["2026-11-01", "2026-11-02"]  # training day, then the holdout day
UNSEEN = "2026-11-03"
HINDSIGHT = {"ops": {f"{FEED}__anomaly_scores": {"config": {"allow_hindsight": True}}}}


def feed() -> dict:
    data = copy.deepcopy(SMALL_DEMO)
    data["name"] = FEED
    del data["label"]  # no labels: only the reviewers' verdicts
    data["source"]["anomaly_rate"] = 0.08
    data["detector"] = {"name": "HBOS", "contamination": 0.15}
    data["training"] = {**data["training"], "window_days": 2}
    # the ground-truth flag is not declared (not a label, not passed through); anomaly_kind is
    data["validation"] = {**data["validation"], "allow_extra_columns": True}
    # a few SHAP explanations per scored day, enough to show they work for every model
    data["explanations"] = {"top_k": 3, "max_background": 10}
    data["lifecycle"] = {"candidates": ["HBOS"], "min_labelled_anomalies": 3, "n_boot": 300}
    return data


def scored(home, day: str) -> pd.DataFrame:
    path = next((home / "frames").rglob(f"{FEED}/anomaly_scores/{day}*"))
    return pd.read_parquet(path)


def truth(frame: pd.DataFrame) -> pd.Series:
    return frame["anomaly_kind"].fillna("").ne("").astype(int)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    from pynomaly_core.warehouse import make_engine, upsert_feedback, warehouse_url_default

    root = tmp_path_factory.mktemp("feedback_loop")
    home = root / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(home))
    mp.delenv("PYNOMALY_WAREHOUSE_URL", raising=False)
    mp.delenv("PYNOMALY_MLFLOW_TRACKING_URI", raising=False)
    feeds = root / "feeds"
    write_feed(feeds, feed())
    seed_mlflow(home)
    out: dict = {"home": home}
    with dg.instance_for_test(temp_dir=str(root)) as instance:
        defs = definitions_for(feeds)
        # the three days in one run (a single-run backfill of the ingest assets)
        ingest = run_range(defs, instance, f"{FEED}__ingest", TRAIN_DAYS[0], UNSEEN)
        assert ingest.success, failure_message(ingest)
        window = {"ops": {f"{FEED}__training_window": {"config": {"end_date": TRAIN_DAYS[-1]}}}}
        first = run_job(defs, instance, f"{FEED}__train", run_config=window)
        assert first.success, failure_message(first)
        out["first"] = latest_metadata(instance, [FEED, "champion"])
        for day in TRAIN_DAYS:
            result = run_job(defs, instance, f"{FEED}__score", day, run_config=HINDSIGHT)
            assert result.success, failure_message(result)
        assert run_job(defs, instance, f"{FEED}__score", UNSEEN).success
        out["before"] = scored(home, UNSEEN)

        # the reviewer: a verdict on every row the champion flagged on the training days
        engine = make_engine(warehouse_url_default())
        reviewed = 0
        for day in TRAIN_DAYS:
            flagged = scored(home, day)
            flagged = flagged[flagged["is_anomaly"].astype(bool)]
            verdicts = pd.DataFrame(
                {
                    "record_key": flagged["record_key"].astype(str),
                    "verdict": truth(flagged).map({1: "confirmed", 0: "rejected"}),
                    "reviewer": "analyst@example.com",
                    "note": None,
                    "reviewed_at": pd.Timestamp.now(tz="UTC"),
                }
            )
            reviewed += upsert_feedback(engine, verdicts, feed=FEED, partition_date=day)
        out["reviewed"] = reviewed

        retrain = run_job(defs, instance, f"{FEED}__train", run_config=window)
        out["retrain"] = retrain
        out["candidates"] = instance.get_latest_materialization_event(
            dg.AssetKey([FEED, "detector_candidates"])
        )
        out["champion"] = latest_metadata(instance, [FEED, "champion"])
        rescore = run_job(defs, instance, f"{FEED}__score", UNSEEN)
        assert rescore.success, failure_message(rescore)
        out["after"] = scored(home, UNSEEN)
        yield out
    mp.undo()


def test_verdicts_add_the_feedback_candidate_which_is_judged_on_held_out_verdicts(story):
    assert story["first"]["champion_detector"] == "HBOS"
    assert story["reviewed"] > 40
    retrain = story["retrain"]
    assert retrain.success, failure_message(retrain)
    meta = {k: v.value for k, v in story["candidates"].asset_materialization.metadata.items()}
    shown = str(meta)
    assert "FeedbackBoost" in shown, shown
    champion = story["champion"]
    assert champion["decision"] == "promoted", champion.get("reason")
    assert champion["champion_detector"] == "FeedbackBoost"


def test_the_promoted_model_ranks_the_unseen_day_better(story):
    before, after = story["before"], story["after"]
    assert before["record_key"].tolist() == after["record_key"].tolist()
    y = truth(after)
    ap_before = average_precision_score(y, before["score"])
    ap_after = average_precision_score(y, after["score"])
    assert after["model_name"].iloc[0] == "FeedbackBoost" if "model_name" in after else True
    assert ap_after > ap_before + 0.05, (ap_before, ap_after)
    # calibrated: p-values and severities keep their meaning (flagged rows have a severity)
    flagged = after[after["is_anomaly"].astype(bool)]
    assert after["p_value"].between(0, 1).all()
    assert (flagged["severity"] != "none").all()
