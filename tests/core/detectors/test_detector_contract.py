"""The detector contract, checked for every registry entry (``available()``).

Each test checks one behaviour for every detector. A module-scoped cache fits each
detector once on the same data (200 rows x 5 features with 5 planted outliers),
so the whole module runs in a few minutes on two CPU cores. Detectors whose
extra is not installed are skipped here; ``test_missing_framework_*`` covers them.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from pynomaly_core.detectors import (
    BaseDetector,
    DetectorError,
    DetectorSpec,
    MissingExtraError,
    NotFittedError,
    available,
    create,
    registry,
)
from pynomaly_core.detectors.targets import import_target

SEED = 0
CONTAMINATION = 0.05
N_TRAIN, N_TEST, N_OUTLIERS, N_FEATURES = 195, 95, 5, 5
#: rows of the test data used where any rows will do (keeps the slow scorers cheap)
N_PROBE = 10
#: the planted outliers' mean rank (0 = top) must lie in the top decile of the scored rows
TOP_SHARE = 0.1

#: speed knobs only (epochs, ensemble sizes) for the slow detectors; every other
#: parameter is the registry default
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "AE1SVM": {"epochs": 10},
    "ALAD": {"epochs": 300},
    "AnoGAN": {"epochs": 30, "epochs_query": 10},
    "DIF": {"n_ensemble": 10},
    "PyOD-VAE": {"epoch_num": 5},
}

#: detectors that genuinely cannot rank the planted far-out rows first, and why;
#: their ranking tests are expected to fail (strictly, so a change is noticed)
CANNOT_RANK: dict[str, str] = {
    "RGraph": "R-graph scores rows by how little other rows use them in a sparse "
    "self-representation; far-out rows have large norms and are used by everyone, so it "
    "ranks magnitude outliers as normal (it targets points off a union of subspaces)",
    "DAGMM": "its features are a saturating tanh code plus scale-invariant reconstruction "
    "features (relative distance, cosine), so rows far out along a direction look like "
    "inliers; it targets rows off the data manifold (tests/core/detectors/test_deep_detectors.py "
    "checks it on curve-shaped data)",
}
#: detectors whose ranking depends on the seed (adversarial training on 200 rows);
#: the ranking tests may pass or fail
UNSTABLE: dict[str, str] = {
    "ALAD": "BiGAN training on 200 rows does not converge to a usable critic",
    "SO_GAAL": "a single generator collapses on 200 rows; ranking varies with the seed",
    "MO_GAAL": "GAAL boundaries on 200 rows vary with the seed",
}
#: detectors that rank the training outliers but cannot extrapolate to new ones
NO_EXTRAPOLATION: dict[str, str] = {
    "HDBSCAN": "new rows get the neighbour-weighted training scores, so a new far-out row "
    "scores no higher than the training extremes",
}
#: detectors that rank new outliers but not reliably the training outliers
TRAINING_EDGE: dict[str, str] = {
    "LUNAR": "the score network learns from negative samples drawn inside the training "
    "range, so the training outliers at its edge get seed-dependent scores",
}

ALL_SPECS = available()
NAMES = [spec.name for spec in ALL_SPECS]
SEMI_SUPERVISED = [spec.name for spec in ALL_SPECS if spec.supervision != "unsupervised"]
WITH_EXTRA = [spec.name for spec in ALL_SPECS if spec.requires_module is not None]


# ------------------------------------------------------------------------- data
def _outlier_patterns(n_features: int) -> np.ndarray:
    """Sign vectors with an even number of -1s: any two differ in at least 2 coordinates."""
    if n_features == 1:
        return np.array([[1.0], [-1.0]])
    signs = [p for p in itertools.product((1.0, -1.0), repeat=n_features) if math.prod(p) > 0]
    return np.array(signs)


def make_data(
    n_inliers: int, n_features: int, *, test: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal inliers plus N_OUTLIERS rows 6 units out along distinct sign patterns.

    The outliers are far from the inliers and from each other (no near twin to mask
    them); training and test outliers use different patterns. Returns ``X, y`` with
    ``y = 1`` on the outliers, which come first.
    """
    rng = np.random.default_rng(seed)
    patterns = _outlier_patterns(n_features)
    idx = np.arange(N_OUTLIERS) + (N_OUTLIERS if test else 0)
    outliers = 6.0 * patterns[idx % len(patterns)] + rng.normal(
        scale=0.3, size=(N_OUTLIERS, n_features)
    )
    X = np.vstack([outliers, rng.normal(size=(n_inliers, n_features))])
    y = np.r_[np.ones(N_OUTLIERS, int), np.zeros(n_inliers, int)]
    return X, y


def spec_of(name: str) -> DetectorSpec:
    return registry.get_spec(name)


def n_features_for(name: str) -> int:
    """1 for univariate detectors (MAD), else N_FEATURES."""
    spec = spec_of(name)
    if spec.installed and getattr(import_target(spec.target), "univariate", False):
        return 1
    return N_FEATURES


def build(name: str) -> BaseDetector:
    """An unfitted detector with the test's contamination, seed and speed knobs."""
    spec = spec_of(name)
    if not spec.installed:
        pytest.skip(
            f"{name} needs the '{spec.extra}' extra ({spec.requires_module} is not installed)"
        )
    return create(name, contamination=CONTAMINATION, random_state=SEED, **FAST_PARAMS.get(name, {}))


def fit(det: BaseDetector, X: np.ndarray, y: np.ndarray) -> BaseDetector:
    return det.fit(X, y if det.requires_labels else None)


def mean_outlier_rank(scores: np.ndarray) -> float:
    """Mean 0-based rank (0 = highest score) of the first N_OUTLIERS rows."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty_like(order)
    ranks[order] = np.arange(scores.size)
    return float(ranks[:N_OUTLIERS].mean())


class FittedCache:
    """Each detector fitted once per module on the shared training data, and its test scores."""

    def __init__(self) -> None:
        self._fitted: dict[str, BaseDetector | BaseException] = {}
        self._scores: dict[str, np.ndarray] = {}
        self.data: dict[int, tuple[np.ndarray, ...]] = {}

    def dataset(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        d = n_features_for(name)
        if d not in self.data:
            X, y = make_data(N_TRAIN, d, test=False, seed=1)
            X_test, y_test = make_data(N_TEST, d, test=True, seed=2)
            self.data[d] = (X, y, X_test, y_test)
        return self.data[d]

    def get(self, name: str) -> BaseDetector:
        if name not in self._fitted:
            X, y, _, _ = self.dataset(name)
            det = build(name)
            try:
                self._fitted[name] = fit(det, X, y)
            except Exception as exc:  # noqa: BLE001 - re-raised by every test that needs the fit
                self._fitted[name] = exc
        result = self._fitted[name]
        if isinstance(result, BaseException):
            raise result
        return result

    def test_scores(self, name: str) -> np.ndarray:
        """``decision_function`` of the test data (computed once)."""
        if name not in self._scores:
            self._scores[name] = self.get(name).decision_function(self.dataset(name)[2])
        return self._scores[name]


@pytest.fixture(scope="module")
def cache() -> FittedCache:
    return FittedCache()


@pytest.fixture(scope="module", autouse=True)
def single_threaded() -> Iterator[None]:
    """One BLAS/OpenMP/torch thread: tiny data gains nothing from intra-op threads, and on a
    busy 2-core machine spinning OpenMP threads make small torch models ~10x slower."""
    from threadpoolctl import threadpool_limits

    torch = importlib.import_module("torch") if importlib.util.find_spec("torch") else None
    previous = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    if torch is not None:
        torch.set_num_threads(previous)


def rank_marks(name: str, *, new_data: bool) -> list[pytest.MarkDecorator]:
    if name in CANNOT_RANK:
        return [pytest.mark.xfail(reason=CANNOT_RANK[name], strict=True)]
    if name in UNSTABLE:
        return [pytest.mark.xfail(reason=UNSTABLE[name], strict=False)]
    if new_data and name in NO_EXTRAPOLATION:
        return [pytest.mark.xfail(reason=NO_EXTRAPOLATION[name], strict=False)]
    if not new_data and name in TRAINING_EDGE:
        return [pytest.mark.xfail(reason=TRAINING_EDGE[name], strict=False)]
    return []


# ------------------------------------------------------------------------ tests
@pytest.mark.parametrize("name", NAMES)
def test_fit_and_score_shapes(cache: FittedCache, name: str) -> None:
    det = cache.get(name)
    X, _, X_test, _ = cache.dataset(name)
    assert det.n_features_in_ == X.shape[1]
    assert det.decision_scores_.shape == (X.shape[0],)
    assert det.labels_.shape == (X.shape[0],)
    scores = cache.test_scores(name)
    assert scores.shape == (X_test.shape[0],) and scores.dtype == np.float64
    assert np.all(np.isfinite(scores))
    probe = X_test[:N_PROBE]
    labels = det.predict(probe)
    assert labels.shape == (N_PROBE,) and set(np.unique(labels)) <= {0, 1}
    proba = det.predict_proba(probe)
    assert proba.shape == (N_PROBE, 2) and np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=rank_marks(n, new_data=True)) for n in NAMES]
)
def test_planted_outliers_score_highest_on_new_data(cache: FittedCache, name: str) -> None:
    _, _, X_test, _ = cache.dataset(name)
    rank = mean_outlier_rank(cache.test_scores(name))
    assert rank < TOP_SHARE * X_test.shape[0], (
        f"planted outliers' mean rank {rank:.1f} of {X_test.shape[0]}"
    )


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=rank_marks(n, new_data=False)) for n in NAMES]
)
def test_planted_outliers_score_highest_in_training_scores(cache: FittedCache, name: str) -> None:
    det = cache.get(name)
    X, _, _, _ = cache.dataset(name)
    rank = mean_outlier_rank(det.decision_scores_)
    assert rank < TOP_SHARE * X.shape[0], f"planted outliers' mean rank {rank:.1f} of {X.shape[0]}"


@pytest.mark.parametrize("name", NAMES)
def test_threshold_matches_contamination(cache: FittedCache, name: str) -> None:
    det = cache.get(name)
    scores, n = det.decision_scores_, det.decision_scores_.size
    # Scores strictly above threshold_ are labelled; ties at the threshold may only lower the share.
    assert np.array_equal(det.labels_, (scores > det.threshold_).astype(int))
    assert det.labels_.mean() <= CONTAMINATION + 1.0 / n
    assert np.mean(scores >= det.threshold_) >= CONTAMINATION - 1.0 / n


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_same_scores(cache: FittedCache, name: str) -> None:
    X, y = make_data(65, n_features_for(name), test=False, seed=3)
    probe = cache.dataset(name)[2][:N_PROBE]
    first, second = fit(build(name), X, y), fit(build(name), X, y)
    np.testing.assert_array_equal(first.decision_scores_, second.decision_scores_)
    np.testing.assert_array_equal(first.decision_function(probe), second.decision_function(probe))


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(cache: FittedCache, name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYNOMALY_HOME", str(tmp_path))
    det = cache.get(name)
    probe = cache.dataset(name)[2][:N_PROBE]
    loaded = BaseDetector.load(det.save(tmp_path / "model"))
    assert type(loaded) is type(det) and loaded.get_params() == det.get_params()
    assert loaded.threshold_ == det.threshold_
    np.testing.assert_array_equal(loaded.decision_function(probe), det.decision_function(probe))


@pytest.mark.parametrize("name", NAMES)
def test_nan_input_is_refused(cache: FittedCache, name: str) -> None:
    X, y, X_test, _ = cache.dataset(name)
    X_nan = X.copy()
    X_nan[3, 0] = np.nan
    with pytest.raises(DetectorError, match="NaN"):
        fit(build(name), X_nan, y)
    X_test_nan = X_test.copy()
    X_test_nan[0, -1] = np.nan
    with pytest.raises(DetectorError, match="NaN"):
        cache.get(name).decision_function(X_test_nan)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_feature_count_is_refused(cache: FittedCache, name: str) -> None:
    det = cache.get(name)
    _, _, X_test, _ = cache.dataset(name)
    wrong = np.hstack([X_test, X_test[:, :1]])
    with pytest.raises(
        DetectorError, match=f"has {wrong.shape[1]} features but .* fitted on {X_test.shape[1]}"
    ):
        det.decision_function(wrong)


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_use_raises_not_fitted(name: str) -> None:
    det = build(name)
    X, _ = make_data(10, n_features_for(name), test=True, seed=4)
    for method in (det.decision_function, det.predict, det.predict_proba):
        with pytest.raises(NotFittedError, match="not fitted"):
            method(X)


@pytest.mark.parametrize("name", SEMI_SUPERVISED)
def test_semi_supervised_fit_needs_labels(name: str) -> None:
    det = build(name)
    assert det.requires_labels
    X, _ = make_data(20, n_features_for(name), test=False, seed=5)
    with pytest.raises(DetectorError, match="needs labels"):
        det.fit(X)


def test_univariate_detector_refuses_several_features() -> None:
    univariate = [n for n in NAMES if n_features_for(n) == 1]
    assert univariate, "expected MAD to be registered as univariate"
    X, _ = make_data(50, 3, test=False, seed=6)
    for name in univariate:
        with pytest.raises(DetectorError, match="exactly 1 feature"):
            build(name).fit(X)


@pytest.mark.parametrize("name", WITH_EXTRA)
def test_missing_framework_raises_missing_extra(name: str, monkeypatch) -> None:
    spec = spec_of(name)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda module, *a: None if module == spec.requires_module else real_find_spec(module, *a),
    )
    assert name in [s.name for s in available()]
    assert name not in [s.name for s in available(installed_only=True)]
    with pytest.raises(MissingExtraError, match=rf"pip install 'pynomaly\[{spec.extra}\]'"):
        create(name)


def test_missing_framework_of_a_new_entry(monkeypatch) -> None:
    fake = DetectorSpec(
        name="FakeDeep",
        family="neural",
        framework="fakeframework",
        target="pynomaly_core.detectors.adapters:PyODDetector",
        requires_module="pynomaly_no_such_framework",
        extra="fake",
        wraps="pynomaly_no_such_framework.models:Fake",
    )
    monkeypatch.setitem(registry._REGISTRY, fake.name, fake)
    listed = {s.name: s for s in available()}
    assert "FakeDeep" in listed and not listed["FakeDeep"].installed
    with pytest.raises(MissingExtraError, match=r"fakeframework .*pip install 'pynomaly\[fake\]'"):
        create("FakeDeep")
