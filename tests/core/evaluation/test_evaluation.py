"""Synthetic anomalies, the paired bootstrap and the label-free evidence (pynomaly_core.evaluation)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from pynomaly_core.evaluation import (
    KINDS,
    ComparisonResult,
    inject_anomalies,
    inject_frame,
    label_free_evidence,
    metrics,
    paired_bootstrap,
    select,
    select_top,
)


def _normal(n: int = 400, d: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cov = np.full((d, d), 0.6) + 0.4 * np.eye(d)  # correlated features: dependency can break
    return rng.multivariate_normal(np.zeros(d), cov, size=n)


# ------------------------------------------------------------------ inject_anomalies
def test_inject_shapes_kinds_and_counts() -> None:
    X = _normal()
    X_syn, kinds = inject_anomalies(X, 41, random_state=0)
    assert X_syn.shape == (41, 4) and X_syn.dtype == np.float64
    assert np.all(np.isfinite(X_syn))
    assert kinds.shape == (41,)
    counts = pd.Series(kinds).value_counts()
    assert set(counts.index) == set(KINDS)
    assert counts.max() - counts.min() <= 1  # split as evenly as possible

    only, k = inject_anomalies(X, 10, kinds=("global",), random_state=0)
    assert set(k) == {"global"} and only.shape == (10, 4)


def test_inject_is_deterministic_per_seed() -> None:
    X = _normal()
    a, ka = inject_anomalies(X, 50, random_state=7)
    b, kb = inject_anomalies(X, 50, random_state=7)
    c, _ = inject_anomalies(X, 50, random_state=8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ka, kb)
    assert not np.array_equal(a, c)


def test_injected_anomalies_are_detectable_and_of_their_kind() -> None:
    from pynomaly_core.detectors import create

    X = _normal(600)
    X_syn, kinds = inject_anomalies(X, 200, random_state=1)
    det = create("KNN").fit(X)
    ref, syn = det.decision_function(_normal(300, seed=5)), det.decision_function(X_syn)
    y = np.r_[np.zeros(ref.size), np.ones(syn.size)]
    assert roc_auc_score(y, np.r_[ref, syn]) > 0.85
    # global rows spread over the whole (widened) box; clustered rows are tight groups
    # far from the centre; dependency rows keep ordinary marginals
    mad = np.median(np.abs(X), axis=0)
    glob, clus, dep = (
        X_syn[kinds == "global"],
        X_syn[kinds == "clustered"],
        X_syn[kinds == "dependency"],
    )
    assert np.all(glob.min(axis=0) >= X.min(axis=0) - 0.11 * np.ptp(X, axis=0))
    assert np.all(glob.max(axis=0) <= X.max(axis=0) + 0.11 * np.ptp(X, axis=0))
    assert np.median(np.abs(clus)) > 2 * np.median(mad)
    assert np.all(np.abs(np.median(dep, axis=0)) < 0.5)
    # dependency rows break the correlation of the reference
    assert abs(np.corrcoef(dep.T)[0, 1]) < 0.4 < np.corrcoef(X.T)[0, 1]


def test_inject_edge_cases() -> None:
    X = _normal(50, 3)
    X[:, 1] = 4.0  # a constant column stays constant
    X_syn, _ = inject_anomalies(X, 40, random_state=0)
    assert np.all(X_syn[:, 1] == 4.0)

    one_feature, kinds = inject_anomalies(np.arange(30.0), 12, random_state=0)
    assert one_feature.shape == (12, 1)
    assert "dependency" not in set(kinds)  # no dependence to break with one feature

    for n_ref in (1, 2, 5):
        out, _ = inject_anomalies(_normal(n_ref, 3), 8, random_state=0)
        assert out.shape == (8, 3) and np.all(np.isfinite(out))

    with_nan = _normal(60, 2)
    with_nan[:5, 0] = np.nan  # rows with NaN are ignored
    assert np.all(np.isfinite(inject_anomalies(with_nan, 10, random_state=0)[0]))

    empty, k = inject_anomalies(X, 0, random_state=0)
    assert empty.shape == (0, 3) and k.shape == (0,)
    high_d, _ = inject_anomalies(np.random.default_rng(0).normal(size=(60, 80)), 8, random_state=0)
    assert high_d.shape == (8, 80)


def test_inject_rejects_bad_arguments() -> None:
    X = _normal(30)
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        inject_anomalies(X, 5, kinds=("local", "weird"))
    with pytest.raises(ValueError, match="non-negative integer"):
        inject_anomalies(X, -1)
    with pytest.raises(ValueError, match="no row without NaN"):
        inject_anomalies(np.full((4, 2), np.nan), 3)


# ---------------------------------------------------------------------- inject_frame
def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    items = rng.integers(1, 6, n)
    amount = items * rng.lognormal(2.5, 0.2, n)  # amount depends on items
    amount[:7] = np.nan
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "amount": amount,
            "items": items,
            "flag": rng.random(n) < 0.3,
            "merchant": pd.Categorical(rng.choice(["food", "fuel", "travel"], n)),
            "country": rng.choice(["DE", "FR"], n),
            "when": pd.date_range("2026-01-01", periods=n, freq="h"),
        }
    )


def test_frame_wrapper_keeps_categorical_values_and_types() -> None:
    ref = _frame()
    out = inject_frame(ref, ["amount", "items", "flag"], 60, random_state=3)
    assert len(out) == 60
    assert list(out.columns) == [*ref.columns, "synthetic_kind"]
    assert set(out["synthetic_kind"]) == set(KINDS)
    # non-numeric columns come from real rows: every value exists in the reference
    assert set(out["merchant"]) <= set(ref["merchant"]) and out["merchant"].dtype == "category"
    assert set(out["country"]) <= set(ref["country"])
    assert set(out["when"]) <= set(ref["when"])
    # integer columns rounded, dtypes kept
    assert out["items"].dtype == ref["items"].dtype
    assert out["flag"].dtype == bool
    assert out["amount"].notna().all()  # NaNs in the reference are ignored, not copied
    # anomalous: a detector fitted on the reference's numeric columns ranks them high
    from pynomaly_core.detectors import create

    cols = ["amount", "items"]
    real = ref[cols].dropna().astype(float)
    center, scale = real.median(), real.quantile(0.75) - real.quantile(0.25)
    real, fake = (real - center) / scale, (out[cols].astype(float) - center) / scale
    det = create("KNN").fit(real.to_numpy()[:200])
    holdout, fake = (
        det.decision_function(real.to_numpy()[200:]),
        det.decision_function(fake.to_numpy()),
    )
    y = np.r_[np.zeros(holdout.size), np.ones(fake.size)]
    assert roc_auc_score(y, np.r_[holdout, fake]) > 0.8
    again = inject_frame(ref, ["amount", "items", "flag"], 60, random_state=3)
    pd.testing.assert_frame_equal(out, again)


def test_frame_wrapper_errors() -> None:
    ref = _frame(50)
    with pytest.raises(ValueError, match="not numeric"):
        inject_frame(ref, ["amount", "country"], 5)
    with pytest.raises(ValueError, match=r"\['nope'\] are not in the reference"):
        inject_frame(ref, ["nope"], 5)
    all_nan = ref.assign(amount=np.nan)
    out = inject_frame(all_nan, ["amount", "items"], 5, random_state=0)
    assert out["amount"].isna().all() and out["items"].notna().all()


# ------------------------------------------------------------------------ comparison
def _scored(n: int = 3000, share: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < share).astype(int)
    weak = rng.normal(size=n) + 0.5 * y
    strong = rng.normal(size=n) + 2.5 * y
    return y, weak, strong


def test_metrics_match_scikit_learn_with_ties() -> None:
    y, weak, _ = _scored(800)
    s = np.round(weak, 1)  # many ties
    m = metrics(y, s)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["average_precision"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    perfect = metrics([0, 0, 1, 1, 0], [0.1, 0.2, 0.9, 0.8, 0.3])
    assert perfect == {"roc_auc": 1.0, "average_precision": 1.0, "precision_at_n_true": 1.0}
    assert metrics([0, 1, 1, 0], [0.9, 0.8, 0.1, 0.2])["precision_at_n_true"] == 0.5


@pytest.mark.parametrize("metric", ["average_precision", "roc_auc"])
def test_bootstrap_detects_a_clearly_better_model(metric: str) -> None:
    y, weak, strong = _scored()
    res = paired_bootstrap(y, weak, strong, metric=metric, n_boot=500, random_state=1)
    assert isinstance(res, ComparisonResult)
    assert res.b_better and res.ci_low > 0 and res.p_value < 0.01
    assert res.delta == pytest.approx(res.score_b - res.score_a)
    assert res.ci_low <= res.delta <= res.ci_high
    assert res.n == y.size and res.n_positive == int(y.sum())
    direct = roc_auc_score if metric == "roc_auc" else average_precision_score
    assert res.score_b == pytest.approx(direct(y, strong), abs=1e-12)
    d = res.to_dict()
    assert d["b_better"] is True and d["metric"] == metric
    # reversed, A is the better one: B is not declared better
    rev = paired_bootstrap(y, strong, weak, metric=metric, n_boot=500, random_state=1)
    assert not rev.b_better and rev.p_value > 0.99


def test_bootstrap_does_not_declare_identical_scores_better() -> None:
    y, weak, _ = _scored()
    res = paired_bootstrap(y, weak, weak.copy(), n_boot=300)
    assert not res.b_better
    assert res.delta == 0 and res.ci_low == 0 and res.ci_high == 0 and res.p_value == 1.0
    # nearly identical (noise far below the signal) is not "better" either
    rng = np.random.default_rng(3)
    noisy = weak + rng.normal(scale=1e-3, size=weak.size)
    assert not paired_bootstrap(y, weak, noisy, n_boot=300).b_better


def test_bootstrap_is_reproducible_and_fast() -> None:
    y, weak, strong = _scored(20_000)
    first = paired_bootstrap(y, weak, strong, n_boot=200, random_state=5)
    assert first == paired_bootstrap(y, weak, strong, n_boot=200, random_state=5)
    t0 = time.perf_counter()
    paired_bootstrap(y, weak, strong, metric="roc_auc", n_boot=1000)
    # ~0.5 s measured on a loaded 2-core machine; a per-resample scikit-learn loop takes >10 s
    assert time.perf_counter() - t0 < 5.0


def test_bootstrap_error_messages() -> None:
    y, weak, strong = _scored(100)
    with pytest.raises(ValueError, match="only one class"):
        paired_bootstrap(np.zeros(100), weak, strong)
    with pytest.raises(ValueError, match="scores_b has 99 values but y_true has 100"):
        paired_bootstrap(y, weak, strong[:99])
    bad = strong.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="scores_b holds 1 NaN or infinite"):
        paired_bootstrap(y, weak, bad)
    bad_a = weak.copy()
    bad_a[0] = np.inf
    with pytest.raises(ValueError, match="scores_a holds 1 NaN"):
        paired_bootstrap(y, bad_a, strong)
    with pytest.raises(ValueError, match="metric must be one of"):
        paired_bootstrap(y, weak, strong, metric="f1")
    with pytest.raises(ValueError, match="0/1 labels"):
        paired_bootstrap(np.arange(100) % 3, weak, strong)
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap(y, weak, strong, n_boot=0)


# ------------------------------------------------------------------------ label-free
def test_evidence_prefers_the_candidate_that_separates_and_agrees() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=300)  # the "true" anomaly signal on the holdout
    hold = {
        "good": base + rng.normal(scale=0.2, size=300),
        "also_good": base + rng.normal(scale=0.4, size=300),
        "noise": rng.normal(size=300),
    }
    syn = {
        "good": rng.normal(loc=3.0, size=80),
        "also_good": rng.normal(loc=2.0, size=80),
        "noise": rng.normal(size=80),
    }
    kinds = np.repeat(["local", "global"], 40)
    ev = label_free_evidence(hold, syn, synthetic_kinds=kinds)
    assert list(ev.index) == ["good", "also_good", "noise"]
    assert {"synthetic_auc", "synthetic_ap", "auc_local", "auc_global", "consensus",
            "selection_score", "rank"} <= set(ev.columns)  # fmt: skip
    assert ev.loc["good", "synthetic_auc"] > 0.95
    assert ev.loc["noise", "synthetic_auc"] < 0.6
    assert ev.loc["good", "consensus"] > 0.5 > ev.loc["noise", "consensus"]
    assert select(ev) == "good" and ev.loc["good", "rank"] == 1
    assert select_top(ev, 2) == ["good", "also_good"]
    # the evidence is a pure function of the scores
    pd.testing.assert_frame_equal(ev, label_free_evidence(hold, syn, synthetic_kinds=kinds))
    # weights pick the signals: synthetic detection alone
    only_syn = label_free_evidence(hold, syn, weights={"synthetic_auc": 1.0})
    assert select(only_syn) == "good"


def test_evidence_errors_and_single_candidate() -> None:
    h, s = np.arange(10.0), np.arange(5.0) + 10
    ev = label_free_evidence({"a": h}, {"a": s})
    assert select(ev) == "a" and ev.loc["a", "synthetic_auc"] == 1.0
    with pytest.raises(ValueError, match="different candidates"):
        label_free_evidence({"a": h}, {"b": s})
    with pytest.raises(ValueError, match="same rows"):
        label_free_evidence({"a": h, "b": h[:9]}, {"a": s, "b": s})
    with pytest.raises(ValueError, match=r"scores_synthetic\['a'\] holds 1 NaN"):
        label_free_evidence({"a": h}, {"a": np.r_[s[:4], np.nan]})
    with pytest.raises(ValueError, match="unknown evidence column"):
        label_free_evidence({"a": h}, {"a": s}, weights={"stability": 1.0})
    with pytest.raises(ValueError, match="synthetic_kinds has 3 labels"):
        label_free_evidence({"a": h}, {"a": s}, synthetic_kinds=["local"] * 3)
