"""The lifecycle rules without Dagster: holdout split, candidates, evaluation sets, champion decision."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import parse_feed
from pynomaly_core.data.demo import DemoSettings, generate_day
from pynomaly_core.lifecycle import (
    candidate_names,
    decide,
    evaluate,
    evaluation_set,
    score_models,
    split_holdout,
    train_candidates,
)

FEED = {
    "name": "telemetry",
    "source": {"kind": "demo"},
    "event_time": "event_time",
    "record_key": "reading_id",
    "label": "is_anomaly",
    "passthrough": ["machine_id", "anomaly_kind"],
    "features": [
        {"name": "machine_type", "type": "category"},
        {"name": "rpm"},
        {"name": "power_kw"},
        {"name": "temperature_c"},
        {"name": "vibration_mm_s"},
        {"name": "pressure_bar"},
    ],
    "partitioning": {"start_date": "2026-11-01"},
    "detector": {"name": "KNN", "contamination": 0.03},
    "lifecycle": {"candidates": ["IForest", "HBOS"], "n_boot": 300},
}


def feed(**changes):
    data = {**FEED, **changes}
    if "lifecycle" in changes:
        data["lifecycle"] = {**FEED["lifecycle"], **changes["lifecycle"]}
    return parse_feed(data)


@pytest.fixture(scope="module")
def window():
    settings = DemoSettings(machines=3, interval_minutes=10, anomaly_rate=0.03)
    return pd.concat(
        [generate_day(dt.date(2026, 11, d), settings) for d in range(1, 5)], ignore_index=True
    )


def test_holdout_is_the_last_days_of_the_window(window):
    train, holdout = split_holdout(window, feed(lifecycle={"holdout_days": 1}))
    assert set(pd.to_datetime(holdout["event_time"], utc=True).dt.day) == {4}
    assert set(pd.to_datetime(train["event_time"], utc=True).dt.day) == {1, 2, 3}
    assert len(train) + len(holdout) == len(window)


def test_one_day_window_holds_out_its_latest_fifth(window):
    one_day = window[pd.to_datetime(window["event_time"], utc=True).dt.day == 2]
    train, holdout = split_holdout(one_day, feed())
    assert len(holdout) == pytest.approx(0.2 * len(one_day), abs=1)
    assert pd.to_datetime(train["event_time"]).max() <= pd.to_datetime(holdout["event_time"]).min()


def test_candidates_put_the_feed_detector_first_and_skip_semi_supervised_without_labels():
    assert candidate_names(feed(), 1000) == ["KNN", "IForest", "HBOS"]
    unlabelled = feed(label=None, lifecycle={"candidates": ["XGBOD", "ECOD"]})
    assert candidate_names(unlabelled, 1000) == ["KNN", "ECOD"]
    assert (
        len(candidate_names(feed(lifecycle={"candidates": None, "max_candidates": 3}), 5000)) == 3
    )


def test_unknown_candidate_is_named():
    with pytest.raises(Exception, match="unknown detector 'IForrest'"):
        candidate_names(feed(lifecycle={"candidates": ["IForrest"]}), 1000)


def test_labelled_holdout_is_evaluated_on_its_labels(window):
    f = feed(lifecycle={"min_labelled_anomalies": 5})
    train, holdout = split_holdout(window, f)
    evalset = evaluation_set(f, train, holdout)
    assert evalset.kind == "labels" and evalset.n_synthetic == 0
    assert evalset.n_positive == int(holdout["is_anomaly"].sum())


def test_feedback_overrides_labels_and_stands_alone_without_a_label_column(window):
    f = feed(label=None, lifecycle={"min_labelled_anomalies": 3})
    train, holdout = split_holdout(window, f)
    keys = holdout["reading_id"].astype(str)
    feedback = pd.DataFrame({"record_key": keys.iloc[:10], "label": [1, 1, 1, 0, 0, 0, 0, 1, 0, 0]})
    evalset = evaluation_set(f, train, holdout, feedback)
    assert evalset.kind == "feedback"
    assert len(evalset.y) == 10 and evalset.n_positive == 4


def test_too_few_labels_fall_back_to_synthetic_anomalies(window):
    f = feed(lifecycle={"min_labelled_anomalies": 10_000, "synthetic_anomalies": 200})
    train, holdout = split_holdout(window, f)
    evalset = evaluation_set(f, train, holdout, random_state=1)
    assert evalset.kind == "synthetic"
    assert (evalset.n_holdout, evalset.n_synthetic, evalset.n_positive) == (len(holdout), 200, 200)
    assert sum(evalset.synthetic_kinds.values()) == 200
    assert list(evalset.frame.columns) == list(holdout.columns)


def test_candidates_are_fitted_evaluated_and_a_broken_one_is_reported(window):
    f = feed(
        lifecycle={"candidates": ["IForest", "PCA"], "min_labelled_anomalies": 5},
        detector={"name": "KNN", "contamination": 0.03, "params": {"n_neighbors": 10**6}},
    )
    train, holdout = split_holdout(window, f)
    candidates = train_candidates(f, train, holdout, candidate_names(f, len(train)))
    assert [c.name for c in candidates] == ["KNN", "IForest", "PCA"]
    assert candidates[0].model is None and "n_neighbors" in candidates[0].error
    evalset = evaluation_set(f, train, holdout)
    fitted = {c.name: c.model for c in candidates if c.model is not None}
    table = evaluate(candidates, evalset, score_models(fitted, evalset))
    assert table.loc["IForest", "roc_auc"] > 0.8
    assert table.loc["KNN", "error"] is not None and np.isnan(table.loc["KNN", "roc_auc"])
    # calibrated on training + holdout scores
    iforest = fitted["IForest"]
    assert iforest.n_calibration_ == len(train) + len(holdout)


def _evalset(n=2000, positives=60, seed=0):
    from pynomaly_core.lifecycle import EvaluationSet

    y = np.r_[np.zeros(n - positives, int), np.ones(positives, int)]
    rng = np.random.default_rng(seed)
    good = y * 2.5 + rng.normal(size=n)
    weak = y * 1.0 + rng.normal(size=n)
    return EvaluationSet(pd.DataFrame({"x": good}), y, "labels", n), good, weak


def test_a_better_challenger_is_promoted_with_its_evidence():
    evalset, good, weak = _evalset()
    d = decide(feed(), evalset, "IForest", good, weak)
    assert d.promote and d.gate_passed
    assert d.comparison["ci_low"] > 0 and "beats the champion" in d.reason


def test_an_equal_challenger_does_not_replace_the_champion():
    evalset, good, _ = _evalset()
    d = decide(feed(), evalset, "IForest", good, good.copy())
    assert not d.promote and d.gate_passed and "not better" in d.reason


def test_a_forced_worse_challenger_is_blocked_by_the_gate():
    evalset, good, weak = _evalset()
    d = decide(feed(), evalset, "HBOS", weak, good, forced=True)
    assert not d.promote and not d.gate_passed
    assert "blocked by the promotion gate" in d.reason and "max_regression" in d.gate_reason


def test_first_champion_is_promoted_on_weak_evidence_with_a_warning_naming_the_numbers():
    """With no incumbent the best candidate scores the feed, whatever its ROC-AUC: a feed with a weak
    model says so, a feed without one never scores."""
    from pynomaly_core.evaluation.compare import metrics

    evalset, _, weak = _evalset()
    noise = np.random.default_rng(3).normal(size=len(evalset.y))
    d = decide(feed(lifecycle={"min_auc": 0.7}), evalset, "HBOS", noise, None)
    auc = metrics(evalset.y, noise)["roc_auc"]
    assert auc < 0.7
    assert d.promote and not d.gate_passed and d.gate_severity == "warn" and d.weak_first
    assert d.gate_reason.startswith(
        f"first champion promoted on weak evidence: ROC-AUC {auc:.3f} < lifecycle.min_auc 0.7"
    )
    assert (
        "on the labels evaluation set (2000 rows, 60 anomalies) of feed 'telemetry'"
        in d.gate_reason
    )
    assert d.reason == "no current champion: HBOS is the first, on weak evidence"
    ok = decide(feed(lifecycle={"min_auc": 0.55}), evalset, "HBOS", weak, None)
    assert (
        ok.promote
        and ok.gate_passed
        and not ok.weak_first
        and ok.reason == "no current champion: HBOS is the first"
    )


def test_the_gate_still_blocks_a_weak_challenger_against_an_existing_champion():
    evalset, good, _ = _evalset()
    noise = np.random.default_rng(3).normal(size=len(evalset.y))
    d = decide(feed(lifecycle={"min_auc": 0.7}), evalset, "HBOS", noise, good, forced=True)
    assert not d.promote and not d.gate_passed and d.gate_severity == "error" and not d.weak_first
    assert "below lifecycle.min_auc = 0.7" in d.gate_reason


# ------------------------------------------------------------------ the champion record
def test_champion_record_round_trips_through_its_stored_value():
    from pynomaly_core.lifecycle import ChampionRecord

    record = ChampionRecord(
        feed="telemetry",
        version="3",
        path="/models/telemetry/b-KNN",
        reason="KNN beats the champion",
        detector="KNN",
        manifest_sha256="ab" * 32,
        threshold=1.5,
        mlflow_run_id="r1",
        registered_model="pynomaly-telemetry",
        run_url=None,
        promoted=True,
        evaluation="labels",
        metrics={"roc_auc": 0.9, "average_precision": 0.5},
        training_days=("2026-11-01", "2026-11-02"),
    )
    value = record.to_value()
    assert list(value) == [
        "feed",
        "detector",
        "version",
        "path",
        "manifest_sha256",
        "threshold",
        "mlflow_run_id",
        "registered_model",
        "run_url",
        "promoted",
        "reason",
        "evaluation",
        "metrics",
        "training_days",
        "window_first",
        "window_last",
        # which rows the detector was fitted on and how its p-values are calibrated
        # (lifecycle.refit_on_window)
        "fitted_days",
        "calibration",
    ]
    assert (value["window_first"], value["window_last"]) == ("2026-11-01", "2026-11-02")
    assert ChampionRecord.from_value(value) == record
    # a value from JSON with a numeric version and extra keys reads back as the same record
    assert ChampionRecord.from_value({**value, "version": 3, "extra": 1}) == record
    assert record.require() is record
    # a value stored before the training window was recorded reads back without one
    legacy = {
        k: v for k, v in value.items() if k not in ("training_days", "window_first", "window_last")
    }
    assert (
        ChampionRecord.from_value(legacy).training_days == ()
        and ChampionRecord.from_value(legacy).window_last is None
    )


def test_a_feed_without_champion_stores_only_why_and_cannot_load():
    from pynomaly_core.lifecycle import ChampionRecord, NoChampionError

    record = ChampionRecord.none("telemetry", "HBOS blocked by the promotion gate")
    assert record.to_value() == {
        "feed": "telemetry",
        "version": None,
        "path": None,
        "reason": "HBOS blocked by the promotion gate",
    }
    assert ChampionRecord.from_value(record.to_value()) == record and not record.exists
    with pytest.raises(NoChampionError, match="'telemetry' has no champion \\(HBOS blocked"):
        record.load()


def test_the_evaluation_frame_reads_back_what_was_written(tmp_path):
    from pynomaly_core.lifecycle import EvaluationSet, read_evaluation_frame, write_evaluation_frame
    from pynomaly_core.storage import FrameStore

    evalset, good, weak = _evalset(n=50, positives=5)
    store = FrameStore(tmp_path)
    write_evaluation_frame(store, "telemetry", "batch-1", evalset, {"KNN": good, "HBOS": weak})
    stored = read_evaluation_frame(store, "telemetry", "batch-1")
    assert list(stored.frame.columns) == ["x"] and stored.y.tolist() == evalset.y.tolist()
    assert np.array_equal(stored.scores_of("KNN"), good) and np.array_equal(
        stored.scores_of("HBOS"), weak
    )
    with pytest.raises(KeyError, match="recorded scores of detector 'PCA'"):
        stored.scores_of("PCA")
    again = EvaluationSet.from_description(stored.frame, stored.y, evalset.describe())
    assert again.describe() == evalset.describe()


def test_a_refitted_candidate_is_recorded_with_the_registered_models_scores(tmp_path):
    """The picked candidate's registered model is its refit on the whole window: the weekly
    model-health check must compare a version with the refit's scores, the gate with the
    evaluated model's (held-out) ones."""
    from pynomaly_core.lifecycle import read_evaluation_frame, write_evaluation_frame
    from pynomaly_core.storage import FrameStore

    evalset, good, weak = _evalset(n=50, positives=5)
    refit = good + 1.0
    store = FrameStore(tmp_path)
    write_evaluation_frame(
        store, "telemetry", "batch-1", evalset, {"KNN": good, "HBOS": weak}, {"KNN": refit}
    )
    stored = read_evaluation_frame(store, "telemetry", "batch-1")
    assert list(stored.frame.columns) == ["x"]
    assert np.array_equal(stored.scores_of("KNN"), good)
    assert np.array_equal(stored.registered_scores_of("KNN"), refit)
    assert np.array_equal(stored.registered_scores_of("HBOS"), weak)


# ------------------------------------------------------------------ train a batch, promote on a real MLflow
SIGNING_KEY = "test-lifecycle-signing-key"
PROMO = {
    "name": "promo",
    "source": {"kind": "demo"},
    "label": "is_anomaly",
    "detector": {"name": "KNN", "contamination": 0.05},
    "lifecycle": {"candidates": ["HBOS"], "min_labelled_anomalies": 5, "n_boot": 300},
}


@pytest.fixture(autouse=True)
def _signing_key(monkeypatch):
    """Models saved by the module's story verify in every test (conftest gives each test its own home)."""
    monkeypatch.setenv("PYNOMALY_SIGNING_KEY", SIGNING_KEY)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """One batch (KNN, HBOS) trained and logged, then four decisions on it, in order: HBOS forced as the
    first champion; KNN, the best, replaces it; HBOS forced again is blocked; with the champion's model
    directory gone, HBOS forced once more becomes champion as if it were the first."""
    import shutil

    from pynomaly_core.lifecycle import promote, train_candidate_batch
    from pynomaly_core.storage import FrameStore
    from pynomaly_core.tracking import Tracker

    root = tmp_path_factory.mktemp("promote")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYNOMALY_HOME", str(root / "home"))
        mp.setenv("PYNOMALY_SIGNING_KEY", SIGNING_KEY)
        f = feed(**PROMO)
        settings = DemoSettings(seed=3, machines=2, interval_minutes=15, anomaly_rate=0.08)
        window = pd.concat(
            [generate_day(dt.date(2026, 11, d), settings) for d in (1, 2, 3)], ignore_index=True
        )
        tracker = Tracker(f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "artifacts"))
        frames = FrameStore(root / "frames")
        asked = []
        batch = train_candidate_batch(
            f,
            window,
            frames=frames,
            model_dir=lambda version: root / "models" / version,
            tracker=tracker,
            run_id="run-train-0001",
            feedback=lambda start, end: asked.append((start, end)),
            reason="test",
            tags={"dagster_asset": "promo/detector_candidates"},
        )
        value = batch.to_value()
        steps = {}

        def step(name, **kwargs):
            promotion = promote(f, value, frames, tracker, run_id=f"run-{name}", **kwargs)
            steps[name] = {
                "promotion": promotion,
                "champion": tracker.get_alias(f.name, "champion"),
                "challenger": tracker.get_alias(f.name, "challenger"),
                "previous": tracker.get_alias(f.name, "previous"),
                # the decision's tags on the challenger's run (a later decision overwrites them)
                "run_tags": tracker.client.get_run(promotion.challenger["mlflow_run_id"]).data.tags,
            }

        step("first", candidate="HBOS")
        step("better")
        step("forced_worse", candidate="HBOS")
        knn_dir = steps["better"]["promotion"].record.path
        shutil.move(knn_dir, root / "moved")
        step("unloadable", candidate="HBOS")
        shutil.move(root / "moved", knn_dir)
        yield {
            "feed": f,
            "batch": batch,
            "value": value,
            "asked": asked,
            "steps": steps,
            "tracker": tracker,
            "frames": frames,
        }


def test_a_batch_is_trained_saved_logged_and_its_evaluation_stored(story):
    from pynomaly_core.lifecycle import read_evaluation_frame

    batch, value = story["batch"], story["value"]
    # verdicts of the training days (for a feedback-aware candidate), then of the holdout day,
    # then of the whole window (the picked candidate is refitted on it: lifecycle.refit_on_window)
    assert story["asked"] == [
        ("2026-11-01", "2026-11-02"),
        ("2026-11-03", "2026-11-03"),
        ("2026-11-01", "2026-11-03"),
    ]
    assert list(value) == [
        "feed",
        "batch",
        "dagster_run_id",
        "evaluation",
        "training_rows",
        "holdout_rows",
        "candidates",
        "training_days",
        "refit",
    ]
    assert value["training_days"] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    # the evaluation picks KNN: it alone is refitted on the whole window, holdout day included
    assert value["refit"]["detector"] == "KNN" and value["refit"]["error"] is None
    assert value["refit"]["fitted_days"] == value["training_days"]
    fitted = {c["detector"]: (c["fitted_days"], c["calibration"]) for c in value["candidates"]}
    assert fitted == {
        "KNN": (["2026-11-01", "2026-11-02", "2026-11-03"], "cross-fit (3 folds)"),
        "HBOS": (["2026-11-01", "2026-11-02"], "training+holdout"),
    }
    assert value["batch"].endswith("-run-trai") and value["dagster_run_id"] == "run-train-0001"
    assert value["evaluation"]["kind"] == "labels" and value["evaluation"]["path"] == str(
        batch.evaluation_path
    )
    assert [c["detector"] for c in value["candidates"]] == ["KNN", "HBOS"] and batch.failed == 0
    for entry in value["candidates"]:
        assert entry["model_dir"].endswith(f"{value['batch']}-{entry['detector']}")
        run = story["tracker"].client.get_run(entry["mlflow_run_id"])
        assert (
            run.data.tags["reason"] == "test"
            and run.data.tags["dagster_asset"] == "promo/detector_candidates"
        )
        assert run.data.tags["pynomaly.training_days"] == "2026-11-01..2026-11-03"
        assert run.data.params["evaluation"] == "labels"
        refitted = entry["detector"] == "KNN"
        assert run.data.params["refit_on_window"] == ("true" if refitted else "false")
        assert run.data.tags["pynomaly.fitted_days"] == (
            "2026-11-01..2026-11-03" if refitted else "2026-11-01..2026-11-02"
        )
    stored = read_evaluation_frame(story["frames"], "promo", value["batch"])
    assert len(stored.y) == value["evaluation"]["rows"] and sorted(stored.scores) == ["HBOS", "KNN"]


def test_the_first_champion_is_promoted_without_comparison(story):
    first = story["steps"]["first"]
    p = first["promotion"]
    assert p.decision.promote and p.decision.forced and p.decision.comparison is None
    assert p.decision.reason == "no current champion: HBOS is the first" and p.gate_passed
    assert first["champion"].detector == "HBOS" and first["challenger"] is None
    hbos = next(c for c in story["value"]["candidates"] if c["detector"] == "HBOS")
    assert p.challenger == hbos and p.registered_model == "pynomaly-promo"
    assert p.record.to_value() == {
        "feed": "promo",
        "detector": "HBOS",
        "version": hbos["mlflow_version"],
        "path": hbos["model_dir"],
        "manifest_sha256": hbos["manifest_sha256"],
        "threshold": hbos["threshold"],
        "mlflow_run_id": hbos["mlflow_run_id"],
        "registered_model": "pynomaly-promo",
        "run_url": None,
        "promoted": True,
        "reason": p.decision.reason,
        "evaluation": "labels",
        "metrics": hbos["metrics"],
        "training_days": ["2026-11-01", "2026-11-02", "2026-11-03"],
        "window_first": "2026-11-01",
        "window_last": "2026-11-03",
        # forced, not the evaluation's pick: the registered HBOS is the evaluated one
        "fitted_days": ["2026-11-01", "2026-11-02"],
        "calibration": "training+holdout",
    }


def test_a_better_candidate_replaces_the_champion_which_becomes_the_rollback_target(story):
    first, better = story["steps"]["first"], story["steps"]["better"]
    p = better["promotion"]
    assert (
        p.decision.promote and not p.decision.forced and "beats the champion" in p.decision.reason
    )
    assert p.comparison["ci_low"] > 0
    assert better["champion"].detector == "KNN" and p.record.version == better["champion"].version
    # the dethroned champion is the rollback target; no candidate is under evaluation any more
    assert better["previous"].version == first["champion"].version
    assert better["challenger"] is None
    assert p.incumbent_version == first["champion"].version
    assert p.incumbent_metrics["average_precision"] == pytest.approx(p.comparison["score_a"])
    assert p.incumbent_metrics["average_precision"] < p.record.metrics["average_precision"]
    assert better["run_tags"]["pynomaly.promotion"] == "champion"
    assert better["run_tags"]["pynomaly.decided_by_dagster_run"] == "run-better"
    assert p.record.load().threshold_ == pytest.approx(p.record.threshold)
    # the evaluation's pick was refitted on the whole window before it was registered
    assert p.record.fitted_days == ("2026-11-01", "2026-11-02", "2026-11-03")
    assert p.record.calibration == "cross-fit (3 folds)"


def test_a_forced_worse_candidate_is_blocked_and_the_champion_kept(story):
    better, worse = story["steps"]["better"], story["steps"]["forced_worse"]
    p = worse["promotion"]
    assert (
        not p.decision.promote
        and not p.gate_passed
        and "blocked by the promotion gate" in p.decision.reason
    )
    assert (
        worse["champion"].version == better["champion"].version
        and worse["challenger"].detector == "HBOS"
    )
    kept = p.record
    assert (kept.detector, kept.version, kept.promoted) == (
        "KNN",
        better["champion"].version,
        False,
    )
    assert (
        kept.path == better["promotion"].record.path
        and kept.manifest_sha256 == better["champion"].manifest_sha256
    )
    # the kept champion's figures are re-measured on this batch's rows: the registered KNN was
    # refitted on the whole window (lifecycle.refit_on_window), this batch's holdout included, so
    # they are its own re-measurement, not the evaluated (holdout-free) model's figures
    assert kept.metrics == p.incumbent_metrics and kept.metrics["roc_auc"] > 0.9
    assert kept.threshold == pytest.approx(better["promotion"].record.threshold)
    # the kept champion's training days come back from its registered version's tags
    assert kept.training_days == ("2026-11-01", "2026-11-02", "2026-11-03")
    assert (
        worse["run_tags"]["pynomaly.promotion"] == "rejected"
        and worse["run_tags"]["pynomaly.gate"] == "failed"
    )


def test_a_champion_that_cannot_be_loaded_cannot_defend_its_title(story):
    p = story["steps"]["unloadable"]["promotion"]
    assert p.decision.promote and p.record.detector == "HBOS"
    assert p.decision.reason.startswith("no current champion (current champion version ")
    assert "could not be loaded" in p.decision.reason


def test_a_forced_candidate_must_be_one_of_the_batch(story):
    from pynomaly_core.lifecycle import LifecycleError, promote

    with pytest.raises(
        LifecycleError, match="run config candidate='PCA' is not a fitted candidate"
    ):
        promote(
            story["feed"],
            story["value"],
            story["frames"],
            story["tracker"],
            run_id="run-x",
            candidate="PCA",
        )
