"""The ``auto`` detector: label-free selection among registry detectors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pynomaly_core.detectors import BaseDetector, DetectorError, create, get_spec
from pynomaly_core.detectors.auto import AutoDetector, default_portfolio, estimated_cost
from pynomaly_core.detectors.ensemble import EnsembleDetector


def ring(n: int, n_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows on a circle of radius 5, anomalies in the empty centre.

    Every feature's marginal looks ordinary at the centre, so per-feature detectors
    (HBOS, ECOD, COPOD) cannot see these anomalies; distance-based ones can.
    """
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = 5 + rng.normal(scale=0.3, size=n)
    X = np.c_[radius * np.cos(angle), radius * np.sin(angle)]
    return np.vstack([X, rng.normal(scale=0.5, size=(n_out, 2))]), np.r_[
        np.zeros(n), np.ones(n_out)
    ]


@pytest.fixture(scope="module")
def fitted() -> AutoDetector:
    X, _ = ring(400, 8, seed=1)
    return create("auto", candidates=["HBOS", "IForest", "KNN"], random_state=0).fit(X)


def test_create_auto_from_the_registry() -> None:
    spec = get_spec("auto")
    assert spec.family == "ensemble" and spec.framework == "pynomaly"
    det = create("auto")
    assert isinstance(det, AutoDetector) and det.candidates is None
    det = create("auto", candidates=["IForest", "ECOD"], contamination=0.02, random_state=3)
    assert det.candidates == ["IForest", "ECOD"]
    assert det.contamination == 0.02 and det.random_state == 3


def test_picks_a_sensible_model_and_exposes_evidence(fitted: AutoDetector) -> None:
    X_test, y_test = ring(300, 10, seed=2)
    # HBOS looks at one feature at a time and misses the hole in the ring
    assert fitted.choice_ == "KNN"
    assert isinstance(fitted.best_model_, BaseDetector)
    assert fitted.best_model_.n_features_in_ == 2
    assert roc_auc_score(y_test, fitted.decision_function(X_test)) > 0.95
    ev = fitted.evidence_
    assert list(ev.index) == fitted.candidates_ == ["HBOS", "IForest", "KNN"]
    for col in ("synthetic_auc", "synthetic_ap", "consensus", "selection_score", "rank",
                "fit_seconds", "auc_local", "auc_global", "auc_dependency", "auc_clustered"):  # fmt: skip
        assert col in ev.columns, col
    assert ev["selection_score"].idxmax() == "KNN" and ev.loc["KNN", "rank"] == 1
    assert ev.loc["KNN", "synthetic_auc"] > ev.loc["HBOS", "synthetic_auc"]
    # the scores are the refitted choice's, and the threshold follows contamination
    np.testing.assert_array_equal(fitted.decision_scores_, fitted.best_model_.decision_scores_)
    assert fitted.labels_.mean() <= fitted.contamination + 1 / fitted.decision_scores_.size


def test_default_portfolio_on_data_where_marginal_detectors_fail() -> None:
    X, _ = ring(400, 8, seed=1)
    X_test, y_test = ring(300, 10, seed=2)
    det = create("auto", random_state=0).fit(X)
    assert det.candidates_ == default_portfolio(X.shape[0], X.shape[1])
    assert det.choice_ not in {"ECOD", "COPOD", "HBOS"}  # ROC-AUC ~0 here
    assert roc_auc_score(y_test, det.decision_function(X_test)) > 0.9


def test_save_load_round_trip(fitted: AutoDetector, tmp_path) -> None:
    X_test, _ = ring(100, 5, seed=3)
    loaded = BaseDetector.load(fitted.save(tmp_path / "auto"))
    assert type(loaded) is AutoDetector and loaded.get_params() == fitted.get_params()
    assert loaded.choice_ == fitted.choice_ and loaded.threshold_ == fitted.threshold_
    assert loaded.evidence_.equals(fitted.evidence_)
    np.testing.assert_array_equal(
        loaded.decision_function(X_test), fitted.decision_function(X_test)
    )
    assert (tmp_path / "auto" / "best" / "manifest.json").exists()  # the choice saved on its own


def test_same_seed_same_choice_and_scores() -> None:
    X, _ = ring(150, 5, seed=4)
    a = create("auto", candidates=["IForest", "HBOS", "KNN"], random_state=7).fit(X)
    b = create("auto", candidates=["IForest", "HBOS", "KNN"], random_state=7).fit(X)
    assert a.choice_ == b.choice_
    np.testing.assert_array_equal(a.decision_scores_, b.decision_scores_)
    assert a.evidence_.drop(columns="fit_seconds").equals(b.evidence_.drop(columns="fit_seconds"))


def test_failing_candidate_is_dropped_and_reported() -> None:
    X, _ = ring(120, 4, seed=5)
    det = create("auto", candidates=["MAD", "IForest"], random_state=0).fit(X)
    assert "MAD" in det.failures_ and "exactly 1 feature" in det.failures_["MAD"]
    assert det.choice_ == "IForest" and list(det.evidence_.index) == ["IForest"]
    with pytest.raises(DetectorError, match="every candidate failed"):
        create("auto", candidates=["MAD"], random_state=0).fit(X)


def test_combine_averages_the_best_candidates() -> None:
    X, _ = ring(150, 5, seed=6)
    det = create("auto", candidates=["IForest", "HBOS", "KNN"], combine=2, random_state=0).fit(X)
    assert isinstance(det.best_model_, EnsembleDetector)
    top2 = list(det.evidence_.sort_values("rank").index[:2])
    assert det.choice_ == "+".join(top2) and det.best_model_.member_names_ == top2


def test_max_rows_bounds_the_selection_but_the_refit_uses_all_rows() -> None:
    X, _ = ring(300, 6, seed=8)
    det = create("auto", candidates=["IForest", "KNN"], max_rows=100, random_state=0).fit(X)
    assert det.split_ == "holdout" and det.selection_rows_ == 100
    assert det.best_model_.decision_scores_.shape == (306,)  # refitted on every row
    full = create("auto", candidates=["IForest", "KNN"], max_rows=None, random_state=0).fit(X)
    assert full.choice_ in {"IForest", "KNN"}


def test_tiny_data_uses_in_sample_evidence() -> None:
    X, _ = ring(20, 2, seed=7)
    det = create("auto", candidates=["IForest", "KNN"], random_state=0).fit(X)
    assert det.split_ == "in-sample" and det.choice_ in {"IForest", "KNN"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"holdout_fraction": 1.5}, "holdout_fraction"),
        ({"n_synthetic": 0}, "n_synthetic"),
        ({"synthetic_share": 0.7}, "synthetic_share"),
        ({"combine": 0}, "combine"),
        ({"max_rows": 5}, "max_rows"),
        ({"candidates": []}, "at least one"),
        ({"candidates": "IForest"}, "list of registry names"),
        ({"candidates": ["auto"]}, "cannot be 'auto'"),
        ({"candidates": ["IForest", "IForest"]}, "listed twice"),
        ({"candidates": ["IForrest"]}, "Did you mean 'IForest'"),
        ({"candidates": ["XGBOD"]}, "semi-supervised"),
    ],
)
def test_bad_parameters_are_refused(params: dict, message: str) -> None:
    with pytest.raises(DetectorError, match=message):
        create("auto", **params).fit(np.random.default_rng(0).normal(size=(60, 3)))


def test_default_portfolio_is_diverse_cheap_and_sized_to_the_data() -> None:
    small = default_portfolio(1000, 10)
    assert len(small) == 10 and small[0] == "IForest"
    assert {get_spec(n).family for n in small} >= {
        "ensemble",
        "probabilistic",
        "proximity",
        "linear",
    }
    costs = [estimated_cost(n, 1000, 10) for n in small]
    assert costs == sorted(costs)  # cheapest first
    four = default_portfolio(1000, 10, max_candidates=4)
    assert len({get_spec(n).family for n in four}) == 4
    # many features: the d² / d³ detectors (PCA, MCD, GMM) drop out
    wide = default_portfolio(5000, 2000)
    assert not {"PCA", "MCD", "GMM"} & set(wide) and len(wide) == 10
    assert estimated_cost("OCSVM", 10_000, 10) > estimated_cost("KNN", 10_000, 10)
    with pytest.raises(DetectorError, match="max_candidates"):
        default_portfolio(100, 3, max_candidates=0)
