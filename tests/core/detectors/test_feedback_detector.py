"""The feedback-aware detector (``FeedbackBoost``) and the lifecycle helpers that feed it verdicts.

Data: 2-D normal rows plus a dense cluster of anomalies *inside* the normal range on one feature
and just outside it on the other; density detectors find it poorly, a few verdicts teach it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pynomaly_core.detectors import BaseDetector, DetectorError, create, get_spec
from pynomaly_core.detectors.persistence import ModelIntegrityError
from pynomaly_core.lifecycle.feedback import (
    FEEDBACK_DETECTOR,
    labels_for,
    review_order,
    training_verdicts,
    with_feedback_candidate,
)

SEED = 0
MEMBERS = ("IForest", "HBOS", "KNN")


def make_data(n_normal: int, n_anomalies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows ~ N(0, I) in 4-D; anomalies share a subtle signature (x0 ~ 1.8, x1 ~ -1.8)
    that a density detector ranks only moderately high."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(n_normal, 4))
    anomalies = rng.normal(size=(n_anomalies, 4))
    anomalies[:, 0] = rng.normal(1.8, 0.15, n_anomalies)
    anomalies[:, 1] = rng.normal(-1.8, 0.15, n_anomalies)
    X = np.vstack([normal, anomalies])
    y = np.r_[np.zeros(n_normal, int), np.ones(n_anomalies, int)]
    return X, y


def verdicts_for(y: np.ndarray, share: float, seed: int) -> np.ndarray:
    """True labels on a random ``share`` of the rows, -1 elsewhere."""
    rng = np.random.default_rng(seed)
    v = np.full(len(y), -1)
    idx = rng.choice(len(y), int(share * len(y)), replace=False)
    v[idx] = y[idx]
    return v


@pytest.fixture(scope="module")
def data():
    X, y = make_data(600, 30, seed=1)
    X_test, y_test = make_data(600, 30, seed=2)
    return X, y, X_test, y_test


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _, _ = data
    det = create(FEEDBACK_DETECTOR, detectors=MEMBERS, contamination=0.05, random_state=SEED)
    return det.fit(X, verdicts_for(y, 0.3, seed=3))


def test_registry_entry_is_semi_supervised():
    spec = get_spec(FEEDBACK_DETECTOR)
    assert spec.supervision == "semi-supervised"
    assert create(FEEDBACK_DETECTOR).requires_labels


def test_verdicts_improve_ranking_of_new_rows_over_the_unsupervised_ensemble(data, fitted):
    X, _, X_test, y_test = data
    ensemble = create("Ensemble", detectors=list(MEMBERS), random_state=SEED).fit(X)
    unsupervised = roc_auc_score(y_test, ensemble.decision_function(X_test))
    ours = roc_auc_score(y_test, fitted.decision_function(X_test))
    assert fitted.mode_ == "blend" and fitted.alpha_ > 0
    assert ours > unsupervised + 0.05, (ours, unsupervised)


@pytest.fixture(scope="module")
def by_mode(data):
    """The same verdicts fitted with each treatment of unlabelled rows."""
    X, y, _, _ = data
    v = verdicts_for(y, 0.3, seed=3)
    return {
        mode: create(
            FEEDBACK_DETECTOR,
            detectors=MEMBERS,
            unlabelled=mode,
            contamination=0.05,
            random_state=SEED,
        ).fit(X, v)
        for mode in ("weighted", "reliable")
    }


def test_weighted_mode_trains_every_unlabelled_row_as_normal(data, by_mode):
    _, y, _, _ = data
    v = verdicts_for(y, 0.3, seed=3)
    fitted = by_mode["weighted"]
    np.testing.assert_array_equal(fitted.training_negatives_, v != 1)
    w = fitted._weights(v, np.flatnonzero(v != 1))
    unlabelled = v[v != 1] == -1
    # an unlabelled normal row weighs unlabelled_weight (0.5) of a rejected one
    assert np.allclose(w[unlabelled] / w[~unlabelled].mean(), 0.5)


def test_auto_mode_keeps_the_treatment_with_the_better_cross_fitted_evidence(data, fitted, by_mode):
    _, _, X_test, _ = data
    best = {mode: max(det.cv_auc_.values()) for mode, det in by_mode.items()}
    expected = "reliable" if best["reliable"] > best["weighted"] else "weighted"
    assert fitted.unlabelled == "auto" and fitted.unlabelled_mode_ == expected
    np.testing.assert_array_equal(
        fitted.decision_function(X_test), by_mode[expected].decision_function(X_test)
    )


def test_reliable_mode_does_not_train_unreviewed_anomalies_as_normal(data, by_mode):
    """The unreviewed anomalies are in the top share the unsupervised score leaves out of the
    normal class (two-step PU), and the out-of-fold training scores rank them high."""
    _, y, _, _ = data
    v = verdicts_for(y, 0.3, seed=3)
    fitted = by_mode["reliable"]
    unreviewed_anomalies = (v == -1) & (y == 1)
    negative = fitted.training_negatives_
    assert negative[v == 0].all() and not negative[v == 1].any()
    unsupervised_only = fitted._training_negatives(v, fitted.ensemble_.decision_scores_, "reliable")
    assert (
        negative[unreviewed_anomalies].mean() < unsupervised_only[unreviewed_anomalies].mean() - 0.2
    )
    assert negative[(v == -1) & (y == 0)].mean() > 0.9
    assert roc_auc_score(y[v == -1], fitted.decision_scores_[v == -1]) > 0.9


def test_without_confirmed_rows_it_ranks_like_the_unsupervised_ensemble(data):
    X, y, X_test, _ = data
    v = np.full(len(y), -1)
    v[:50] = 0  # rejections alone say nothing about what an anomaly looks like
    det = create(FEEDBACK_DETECTOR, detectors=MEMBERS, random_state=SEED).fit(X, v)
    assert det.mode_ == "unsupervised" and det.classifiers_ == [] and det.alpha_ == 0.0
    ensemble = create("Ensemble", detectors=list(MEMBERS), random_state=SEED).fit(X)
    from scipy.stats import spearmanr

    ours, theirs = det.decision_function(X_test), ensemble.decision_function(X_test)
    assert spearmanr(ours, theirs).statistic > 0.9999  # a monotone map of the ensemble score


def test_one_or_two_confirmed_rows_get_a_prior_weight_and_already_help(data):
    X, y, X_test, y_test = data
    ensemble = create("Ensemble", detectors=list(MEMBERS), random_state=SEED).fit(X)
    unsupervised = roc_auc_score(y_test, ensemble.decision_function(X_test))
    for n_confirmed, alpha in ((1, 1 / 3), (2, 1 / 2)):
        v = np.full(len(y), -1)
        v[np.flatnonzero(y == 1)[:n_confirmed]] = 1  # fewer than min_labels = 3
        det = create(FEEDBACK_DETECTOR, detectors=MEMBERS, random_state=SEED).fit(X, v)
        assert det.mode_ == "few" and det.alpha_ == pytest.approx(alpha)
        ours = roc_auc_score(y_test, det.decision_function(X_test))
        assert ours > unsupervised + 0.02, (n_confirmed, ours, unsupervised)


def test_bad_verdicts_are_refused_naming_them(data):
    X, _, _, _ = data
    y = np.full(len(X), -1)
    y[:3] = 2
    with pytest.raises(DetectorError, match=r"verdicts 1 \(confirmed\).*found \[2\]"):
        create(FEEDBACK_DETECTOR).fit(X, y)
    with pytest.raises(DetectorError, match="needs labels"):
        create(FEEDBACK_DETECTOR).fit(X)


def test_training_scores_are_out_of_fold_so_p_values_of_new_normal_rows_are_calibrated(data):
    """A confirmed row's training score comes from a classifier that never saw its verdict, so the
    calibration set is representative: a new normal row's conformal p-value is as likely to be
    small as a normal training row's. The training rows hold 30 anomalies among 630, which sit
    at the top of the calibration set, so P(p <= a) for a normal row is (a * 631 - 30) / 600."""
    from pynomaly_core.severity import calibration_set, p_values

    X, y, _, _ = data
    det = create(FEEDBACK_DETECTOR, detectors=MEMBERS, contamination=0.05, random_state=SEED)
    det.fit(X, np.where(y == 1, 1, verdicts_for(y, 0.5, seed=4)))  # every anomaly confirmed
    X_new, _ = make_data(2000, 0, seed=5)
    p = p_values(det.decision_function(X_new), calibration_set(det.decision_scores_))
    n, n_anomalies = len(y), int(y.sum())
    for a in (0.1, 0.2, 0.5):
        expected = (a * (n + 1) - n_anomalies) / (n - n_anomalies)
        assert abs(np.mean(p <= a) - expected) < 0.06, (a, np.mean(p <= a), expected)


def test_save_load_round_trip_and_tampering_is_refused(fitted, data, tmp_path, monkeypatch):
    monkeypatch.setenv("PYNOMALY_HOME", str(tmp_path))
    _, _, X_test, _ = data
    path = fitted.save(tmp_path / "model")
    loaded = BaseDetector.load(path)
    np.testing.assert_array_equal(
        loaded.decision_function(X_test), fitted.decision_function(X_test)
    )
    np.testing.assert_array_equal(loaded.uncertainty(X_test), fitted.uncertainty(X_test))
    # the classifier and neighbour arrays are a skops file (no pickle); no joblib file is written
    assert (path / "feedback.skops").exists() and not list(path.glob("*.joblib"))
    shell = path / "feedback.skops"
    shell.write_bytes(shell.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="feedback.skops"):
        BaseDetector.load(path)


def test_neighbour_features_exclude_the_row_itself_and_score_isolated_rows_high():
    from pynomaly_core.detectors.feedback import NeighbourScores

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(300, 2)), [[8.0, 8.0]]])
    features = NeighbourScores((1, 10), max_rows=10_000, random_state=0)
    train = features.fit_transform(X)
    assert train.shape == (301, 4)  # 1st and 10th neighbour distance, LOF at 1 and 10
    assert (train[:, 0] > 0).all()  # no row is its own nearest neighbour
    assert train[-1, 0] == train[:, 0].max() and train[-1, 3] > 3 * np.median(train[:, 3])
    # a new row at the same place as a training row has that row as its nearest neighbour
    assert features.transform(X[-1:])[0, 0] == 0.0
    # a sample of the rows as reference: the same features, up to sampling noise
    sampled = NeighbourScores((1, 10), max_rows=200, random_state=0).fit_transform(X)
    assert sampled.shape == (301, 4) and (sampled[:, 0] > 0).all()
    assert sampled[-1, 3] > 3 * np.median(sampled[:, 3])


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("unlabelled", "all", "unlabelled must be one of"),
        ("neighbours", (0, 5), "neighbours must be a sequence of integers >= 1"),
    ],
)
def test_bad_parameters_are_refused_naming_them(data, param, value, message):
    X, y, _, _ = data
    with pytest.raises(DetectorError, match=message):
        create(FEEDBACK_DETECTOR, **{param: value}).fit(X, verdicts_for(y, 0.3, seed=3))


def test_explanations_work_for_the_feedback_model(data):
    from pynomaly_core.data.config import FeatureSpec
    from pynomaly_core.explain import explain
    from pynomaly_core.model import AnomalyModel

    X, y, X_test, _ = data
    cols = [f"x{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=cols)
    model = AnomalyModel(
        [FeatureSpec(name=c, type="float") for c in cols],
        detector=FEEDBACK_DETECTOR,
        contamination=0.05,
        params={"detectors": list(MEMBERS)},
        random_state=SEED,
    ).fit(frame, verdicts_for(y, 0.3, seed=3))
    rows = pd.DataFrame(X_test[-3:], columns=cols)
    explanation = explain(model, rows, background=frame.sample(40, random_state=0))
    scores = model.decision_function(rows)
    np.testing.assert_allclose(
        explanation.values.sum(axis=1) + explanation.base_value, scores, atol=1e-6
    )
    # the anomalies' signature features carry the explanation
    top = explanation.values.mean(axis=0).argsort()[::-1][:2]
    assert set(np.array(cols)[top]) == {"x0", "x1"}
    scored = model.score(rows)
    assert scored["p_value"].between(0, 1).all() and scored["severity"].notna().all()


# ------------------------------------------------------------------ lifecycle helpers
def test_review_order_mixes_top_rows_and_unsure_ones():
    scores = np.arange(100, dtype=float)  # row 99 highest
    unsure = np.zeros(100)
    unsure[[90, 85, 10]] = [0.9, 0.8, 1.0]  # row 10 is unsure but far outside the top pool
    order = review_order(scores, unsure, n=8, exploration=0.25, pool=0.2)
    assert order["reason"].tolist() == ["top"] * 6 + ["explore"] * 2
    assert order["position"].tolist() == [99, 98, 97, 96, 95, 94, 90, 85]
    only_top = review_order(scores, None, n=8)
    assert (only_top["reason"] == "top").all() and only_top["position"].tolist()[0] == 99


def test_training_verdicts_join_by_record_key_and_leave_the_rest_unlabelled():
    from pynomaly_core.data.config import FeedConfig

    feed = FeedConfig.model_validate(
        {
            "name": "f",
            "source": {"kind": "demo"},
            "event_time": "t",
            "record_key": "k",
            "features": [{"name": "x", "type": "float"}],
            "partitioning": {"start_date": "2026-11-01"},
        }
    )
    train = pd.DataFrame(
        {
            "t": pd.to_datetime(["2026-11-01", "2026-11-01", "2026-11-02"], utc=True),
            "k": ["a", "b", "c"],
            "x": [1.0, 2.0, 3.0],
        }
    )
    asked = []

    def feedback(first, last):
        asked.append((first, last))
        return pd.DataFrame({"record_key": ["c", "a", "zz"], "label": [1, 0, 1]})

    v = training_verdicts(feed, train, feedback)
    assert asked == [("2026-11-01", "2026-11-02")]
    assert v.tolist() == [0, -1, 1]
    assert (
        training_verdicts(feed, train, lambda a, b: pd.DataFrame(columns=["record_key", "label"]))
        is None
    )
    assert with_feedback_candidate(["KNN"], v) == ["KNN", FEEDBACK_DETECTOR]
    assert with_feedback_candidate(["KNN"], None) == ["KNN"]
    assert labels_for(FEEDBACK_DETECTOR, None, v) is v and labels_for("KNN", None, v) is None


def test_the_python_example_in_the_detector_docs_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "detectors.md").read_text()
    section = text.split("## Learning from reviewer verdicts: FeedbackBoost", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/detectors.md", "exec"), namespace)  # noqa: S102 - our own docs
    assert namespace["det"].mode_ in ("blend", "few", "unsupervised")
