"""TorchKNN and TorchLOF give PyOD's KNN and LOF scores, on every search path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyod.models.knn import KNN
from pyod.models.lof import LOF

from pynomaly_core.detectors import DetectorError, load_object, proximity, save_object
from pynomaly_core.detectors.proximity import TREE_MAX_FEATURES, TorchKNN, TorchLOF

pytest.importorskip("torch")

#: float64 agreement: PyOD's brute force uses ||a||² + ||b||² - 2ab, ours exact differences
TOLERANCE = {"rtol": 1e-9, "atol": 1e-12}


@pytest.fixture(autouse=True)
def _signing_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PYNOMALY_HOME", str(tmp_path))


def random_data(n_train: int, n_new: int, n_features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_train, n_features)), rng.normal(size=(n_new, n_features))


@pytest.mark.parametrize("method", ["largest", "mean", "median"])
@pytest.mark.parametrize(
    ("algorithm", "n_features"), [("brute", 12), ("kd_tree", 4), ("ball_tree", 4)]
)
def test_knn_scores_equal_pyod(method, algorithm, n_features):
    # 2,600 training rows span two reference tiles and several query blocks.
    X, X_new = random_data(2_600, 300, n_features)
    reference = KNN(n_neighbors=5, method=method).fit(X)
    ours = TorchKNN(n_neighbors=5, method=method, algorithm=algorithm, device="cpu").fit(X)
    assert ours.algorithm_ == algorithm
    np.testing.assert_allclose(ours.decision_scores_, reference.decision_scores_, **TOLERANCE)
    np.testing.assert_allclose(
        ours.decision_function(X_new), reference.decision_function(X_new), **TOLERANCE
    )


def test_tree_and_brute_force_give_the_same_scores():
    X, X_new = random_data(1_500, 200, 3)
    tree = TorchKNN(n_neighbors=7, method="mean", algorithm="kd_tree", device="cpu").fit(X)
    brute = TorchKNN(n_neighbors=7, method="mean", algorithm="brute", device="cpu").fit(X)
    np.testing.assert_allclose(brute.decision_scores_, tree.decision_scores_, **TOLERANCE)
    np.testing.assert_allclose(
        brute.decision_function(X_new), tree.decision_function(X_new), **TOLERANCE
    )


def test_auto_uses_a_tree_at_low_dimension_on_cpu_and_brute_force_above():
    low, _ = random_data(50, 1, TREE_MAX_FEATURES)
    high, _ = random_data(50, 1, TREE_MAX_FEATURES + 1)
    assert TorchKNN(device="cpu").fit(low).algorithm_ == "kd_tree"
    assert TorchKNN(device="cpu").fit(high).algorithm_ == "brute"


def test_training_scores_exclude_each_row_like_pyod_even_with_duplicates():
    X, _ = random_data(400, 1, 8)
    X = np.vstack([X, X[:60], X[:10]])  # pairs and triples of identical rows
    reference = KNN(n_neighbors=3).fit(X)
    ours = TorchKNN(n_neighbors=3, algorithm="brute", device="cpu").fit(X)
    np.testing.assert_allclose(ours.decision_scores_, reference.decision_scores_, **TOLERANCE)


def test_rows_float32_cannot_resolve_fall_back_to_an_exact_float64_search(monkeypatch):
    # Two tight clusters 2e4 apart: float32 rounding of ||r||² dwarfs the neighbour gaps.
    rng = np.random.default_rng(1)
    X = np.vstack([1e4 + 1e-3 * rng.normal(size=(300, 9)), -1e4 + 1e-3 * rng.normal(size=(300, 9))])
    calls = []
    exhaustive = proximity._BruteSearch._exhaustive
    monkeypatch.setattr(
        proximity._BruteSearch,
        "_exhaustive",
        lambda self, q, k: calls.append(len(q)) or exhaustive(self, q, k),
    )
    ours = TorchKNN(n_neighbors=5, algorithm="brute", device="cpu").fit(X)
    tree = TorchKNN(n_neighbors=5, algorithm="kd_tree", device="cpu").fit(X)
    assert sum(calls) > 0
    np.testing.assert_allclose(ours.decision_scores_, tree.decision_scores_, rtol=1e-9)


@pytest.mark.parametrize(("algorithm", "n_features"), [("brute", 10), ("kd_tree", 3)])
def test_lof_scores_equal_pyod(algorithm, n_features):
    X, X_new = random_data(1_200, 200, n_features)
    reference = LOF(n_neighbors=20).fit(X)
    ours = TorchLOF(n_neighbors=20, algorithm=algorithm, device="cpu").fit(X)
    np.testing.assert_allclose(ours.decision_scores_, reference.decision_scores_, **TOLERANCE)
    np.testing.assert_allclose(
        ours.decision_function(X_new), reference.decision_function(X_new), **TOLERANCE
    )


@pytest.mark.filterwarnings("ignore:n_neighbors .20. is greater than:UserWarning")
def test_lof_caps_the_neighbourhood_like_scikit_learn():
    X, _ = random_data(15, 1, 3)
    with pytest.warns(UserWarning, match="n_neighbors=20 is not smaller than the 15 training rows"):
        ours = TorchLOF(n_neighbors=20, device="cpu").fit(X)
    assert ours.n_neighbors_ == 14
    np.testing.assert_allclose(
        ours.decision_scores_, LOF(n_neighbors=20).fit(X).decision_scores_, **TOLERANCE
    )


def test_threads_do_not_change_the_scores():
    X, X_new = random_data(1_000, 700, 16)
    one = TorchKNN(algorithm="brute", device="cpu", n_jobs=1).fit(X)
    two = TorchKNN(algorithm="brute", device="cpu", n_jobs=2).fit(X)
    np.testing.assert_array_equal(one.decision_scores_, two.decision_scores_)
    np.testing.assert_array_equal(one.decision_function(X_new), two.decision_function(X_new))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"method": "max"}, r"method must be one of \('largest', 'mean', 'median'\)"),
        ({"algorithm": "annoy"}, r"algorithm must be one of \('auto', 'brute'"),
        ({"n_neighbors": 0}, r"n_neighbors must be an int >= 1"),
        ({"n_neighbors": 30}, r"n_neighbors=30 must be smaller than the number of training rows"),
        ({"device": "gpu"}, r"device must be one of"),
    ],
)
def test_invalid_parameters_name_the_parameter(params, message):
    X, _ = random_data(30, 1, 3)
    with pytest.raises(DetectorError, match=message):
        TorchKNN(**params).fit(X)


@pytest.mark.parametrize("cls", [TorchKNN, TorchLOF])
@pytest.mark.parametrize("algorithm", ["brute", "kd_tree"])
def test_save_load_gives_identical_scores_without_pickle(cls, algorithm, tmp_path):
    X, X_new = random_data(300, 50, 5)
    det = cls(algorithm=algorithm, device="cpu").fit(X)
    path = save_object(det, tmp_path / "model", kind="detector")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["loader"] == f"{cls.__module__}:{cls.__qualname__}"
    for name in manifest["files"]:
        if name.endswith(".npy"):
            np.load(path / name, allow_pickle=False)
    loaded = load_object(path)
    assert loaded.get_params() == det.get_params() and loaded.algorithm_ == algorithm
    np.testing.assert_array_equal(loaded.decision_scores_, det.decision_scores_)
    np.testing.assert_array_equal(loaded.decision_function(X_new), det.decision_function(X_new))


def test_apple_mps_falls_back_to_cpu_or_is_refused_when_requested(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    X, _ = random_data(100, 1, 12)
    assert TorchKNN(algorithm="brute").fit(X).device_ == "cpu"
    with pytest.raises(
        DetectorError, match=r"device='mps' is not supported .* use 'auto' or 'cpu'"
    ):
        TorchKNN(algorithm="brute", device="mps").fit(X)
