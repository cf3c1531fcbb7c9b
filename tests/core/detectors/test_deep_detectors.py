"""Specification of the deep detectors (torch and Keras) beyond the registry-wide contract.

Tiny data and few epochs keep the module fast on two CPU cores; TensorFlow is imported
once (module-scoped fixture) and only by the few Keras tests.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from pynomaly_core.detectors import DetectorError, MissingExtraError, load_object, save_object
from pynomaly_core.detectors.deep import (
    DAGMM,
    VAE,
    AutoEncoder,
    DeepSVDD,
    KerasAutoEncoder,
    KerasDeepSVDD,
    KerasVAE,
)
from pynomaly_core.detectors.deep import device as device_module

torch = pytest.importorskip("torch")

TORCH_DETECTORS = [AutoEncoder, VAE, DeepSVDD, DAGMM]
KERAS_DETECTORS = [KerasAutoEncoder, KerasVAE, KerasDeepSVDD]
FAST = {"epochs": 8, "random_state": 0}


# ------------------------------------------------------------------------- data
def gaussian_with_far_outliers(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """300 standard-normal rows in 5-D plus 6 rows 6 units out along distinct sign patterns."""
    rng = np.random.default_rng(seed)
    signs = np.array(
        [
            [1, 1, 1, 1, 1],
            [-1, -1, 1, 1, 1],
            [1, -1, -1, 1, 1],
            [1, 1, -1, -1, 1],
            [1, 1, 1, -1, -1],
            [-1, 1, 1, 1, -1],
        ],
        dtype=float,
    )
    X = np.vstack([rng.normal(size=(300, 5)), 6.0 * signs + rng.normal(scale=0.3, size=(6, 5))])
    return X, np.r_[np.zeros(300), np.ones(6)]


def curve_with_off_curve_outliers(seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """400 rows near a 1-D curve in 6-D plus 8 uniform rows off it (what DAGMM's features see)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(-2, 2, size=(400, 1))
    curve = np.tanh(t @ rng.normal(size=(1, 6))) + 0.05 * rng.normal(size=(400, 6))
    return np.vstack([curve, rng.uniform(-3, 3, size=(8, 6))]), np.r_[np.zeros(400), np.ones(8)]


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    return gaussian_with_far_outliers()[0]


@pytest.fixture(autouse=True)
def _signing_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PYNOMALY_HOME", str(tmp_path))


# ------------------------------------------------------------------- import cost
def test_importing_the_detectors_imports_neither_torch_nor_tensorflow():
    code = (
        "import sys\n"
        "import pynomaly_core.detectors.deep, pynomaly_core.detectors.proximity\n"
        "from pynomaly_core.detectors import available, create\n"
        "[create(s.name) for s in available() if s.framework in ('torch', 'tensorflow')]\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_torch_raises_missing_extra_naming_the_extra(monkeypatch, small):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'pynomaly\[torch\]'"):
        AutoEncoder(**FAST).fit(small)


def test_missing_tensorflow_raises_missing_extra_naming_the_extra(monkeypatch, small):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'pynomaly\[tensorflow\]'"):
        KerasAutoEncoder(**FAST).fit(small)


# ------------------------------------------------------------------------ device
@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, no_accelerator):
    assert device_module.resolve_device(torch, "auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert device_module.resolve_device(torch, "auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert device_module.resolve_device(torch, "auto") == torch.device("cuda", 0)


def test_explicit_device_overrides_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_module.resolve_device(torch, "cpu") == torch.device("cpu")
    assert device_module.resolve_device(torch, "cuda:1") == torch.device("cuda", 1)


def test_unavailable_cuda_is_a_clear_error(no_accelerator, small):
    with pytest.raises(
        DetectorError, match=r"device='cuda' was requested but CUDA is not available"
    ):
        device_module.resolve_device(torch, "cuda")
    with pytest.raises(DetectorError, match=r"AutoEncoder: device='cuda:1' was requested"):
        AutoEncoder(device="cuda:1", **FAST).fit(small)


def test_cuda_index_beyond_the_visible_devices_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DetectorError, match=r"only 1 CUDA device"):
        device_module.resolve_device(torch, "cuda:3")


def test_unavailable_mps_is_a_clear_error(no_accelerator):
    with pytest.raises(DetectorError, match=r"device='mps' was requested but Apple MPS"):
        device_module.resolve_device(torch, "mps")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "CPU", 0, None])
def test_misspelt_device_lists_the_allowed_values(bad):
    with pytest.raises(DetectorError, match=r"device must be one of 'auto', 'cpu', 'cuda'"):
        device_module.resolve_device(torch, bad)


def test_mixed_precision_is_off_on_cpu():
    assert device_module.autocast_dtype(torch, torch.device("cpu")) is None


# ----------------------------------------------------------------------- threads
def test_thread_choice_follows_n_jobs_and_work_size(monkeypatch):
    monkeypatch.setattr(device_module, "available_cpus", lambda: 8)
    assert device_module.cpu_threads(None, work_per_op=32 * 64 * 64) == 1
    assert device_module.cpu_threads(None, work_per_op=4 * device_module.MIN_WORK_PER_THREAD) == 4
    assert device_module.cpu_threads(None) == 8
    assert device_module.cpu_threads(-1, work_per_op=1) == 8
    assert device_module.cpu_threads(3) == 3


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_fit_and_scoring_restore_the_callers_torch_threads(small, n_jobs):
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        det = AutoEncoder(n_jobs=n_jobs, epochs=1, random_state=0).fit(small)
        det.decision_function(small)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(previous)


# ------------------------------------------------------------------ parameters
def test_constructor_stores_parameters_unchanged_and_clones():
    det = AutoEncoder(hidden_neurons=(8, 4), dropout_rate=0.1, device="cpu", n_jobs=1)
    params = clone(det).get_params()
    assert (
        params["hidden_neurons"] == (8, 4) and params["device"] == "cpu" and params["n_jobs"] == 1
    )
    assert not hasattr(det, "network_")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"validation_fraction": 1.5}, r"validation_fraction must be a float in \[0.0, 1.0\)"),
        ({"epochs": 0}, r"epochs must be an int >= 1"),
        ({"hidden_neurons": ()}, r"hidden_neurons must be a non-empty tuple"),
        ({"n_jobs": 0}, r"n_jobs must be None"),
        ({"random_state": 1.5}, r"random_state must be None or a non-negative int"),
    ],
)
def test_invalid_parameters_name_the_parameter_and_allowed_values(small, params, message):
    with pytest.raises(DetectorError, match=message):
        AutoEncoder(**{**FAST, **params}).fit(small)


# ------------------------------------------------------------ reproducibility
@pytest.mark.parametrize("cls", TORCH_DETECTORS)
def test_same_seed_gives_identical_scores_on_cpu(cls, small):
    first = cls(device="cpu", **FAST).fit(small)
    second = cls(device="cpu", **FAST).fit(small)
    np.testing.assert_array_equal(first.decision_scores_, second.decision_scores_)
    np.testing.assert_array_equal(first.decision_function(small), second.decision_function(small))


def test_different_seeds_give_different_scores(small):
    a = AutoEncoder(device="cpu", epochs=3, random_state=0).fit(small)
    b = AutoEncoder(device="cpu", epochs=3, random_state=1).fit(small)
    assert not np.array_equal(a.decision_scores_, b.decision_scores_)


def test_seeding_leaves_the_global_torch_rng_alone(small):
    state = torch.random.get_rng_state()
    AutoEncoder(device="cpu", **FAST).fit(small)
    assert torch.equal(state, torch.random.get_rng_state())


def test_scores_do_not_depend_on_chunking_or_threads(small):
    det = AutoEncoder(device="cpu", **FAST).fit(small)
    reference = det.decision_function(small)
    for params in ({"score_batch_size": 7}, {"score_batch_size": 100, "n_jobs": 2}):
        det.set_params(**params)
        np.testing.assert_allclose(det.decision_function(small), reference, rtol=1e-5)


def test_features_with_a_large_offset_keep_their_precision(small):
    # Standardization runs in float64: shifting every feature by 1e9 (think Unix
    # timestamps) must not change the scores beyond float32 rounding of the result.
    plain = AutoEncoder(device="cpu", **FAST).fit(small)
    shifted = AutoEncoder(device="cpu", **FAST).fit(small + 1e9)
    np.testing.assert_allclose(shifted.decision_scores_, plain.decision_scores_, rtol=1e-3)


def test_flat_adam_matches_torch_adam():
    from pynomaly_core.detectors.deep.optim import FlatAdam
    from pynomaly_core.detectors.deep.torch_networks import AutoEncoderNet

    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        nets.append(AutoEncoderNet(6, (8, 4), batch_norm=True, dropout_rate=0.0))
    reference = torch.optim.Adam(nets[0].parameters(), lr=1e-2, weight_decay=1e-3)
    flat = FlatAdam(nets[1], lr=1e-2, weight_decay=1e-3)
    batches = torch.randn(20, 16, 6)
    for batch in batches:
        for net, optimizer in zip(nets, (reference, flat), strict=True):
            optimizer.zero_grad()
            net.loss(batch).backward()
            optimizer.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- early stopping
def test_early_stopping_stops_once_validation_loss_stalls():
    # A tiny easy problem: the validation loss flattens long before 200 epochs.
    X = np.random.default_rng(0).normal(size=(120, 3))
    det = VAE(device="cpu", epochs=200, patience=3, random_state=0).fit(X)
    assert det.n_epochs_ < 200
    assert det.n_epochs_ == det.best_epoch_ + 1 + det.patience
    assert len(det.validation_loss_curve_) == det.n_epochs_
    best = min(det.validation_loss_curve_)
    assert det.validation_loss_curve_[det.best_epoch_] == best


def test_without_a_validation_split_every_epoch_runs(small):
    det = AutoEncoder(device="cpu", epochs=6, validation_fraction=0.0, random_state=0).fit(small)
    assert det.n_epochs_ == 6 and det.best_epoch_ == 5 and det.validation_loss_curve_ == []


# ---------------------------------------------------------------- persistence
@pytest.mark.parametrize("cls", TORCH_DETECTORS)
def test_save_load_gives_identical_scores_without_pickle(cls, small, tmp_path):
    det = cls(device="cpu", **FAST).fit(small)
    path = save_object(det, tmp_path / "model", kind="detector")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["loader"] == f"{cls.__module__}:{cls.__qualname__}"
    assert sorted(manifest["files"]) == ["config.json", "weights.pt"]
    torch.load(path / "weights.pt", weights_only=True)  # tensors only: the safe loader accepts it
    loaded = load_object(path)
    assert type(loaded) is cls and loaded.get_params() == det.get_params()
    assert loaded.threshold_ == det.threshold_
    np.testing.assert_array_equal(loaded.decision_scores_, det.decision_scores_)
    np.testing.assert_array_equal(loaded.decision_function(small), det.decision_function(small))


# -------------------------------------------------------------------- quality
@pytest.mark.parametrize(
    ("cls", "data", "min_auc"),
    [
        (AutoEncoder, curve_with_off_curve_outliers, 0.99),
        (VAE, curve_with_off_curve_outliers, 0.99),
        (DeepSVDD, gaussian_with_far_outliers, 0.95),
        (DAGMM, curve_with_off_curve_outliers, 0.85),
    ],
)
def test_planted_outliers_score_high(cls, data, min_auc):
    X, y = data()
    det = cls(device="cpu", epochs=30, random_state=0).fit(X)
    assert roc_auc_score(y, det.decision_scores_) >= min_auc
    assert roc_auc_score(y, det.decision_function(X)) >= min_auc


# ----------------------------------------------------------------------- Keras
@pytest.fixture(scope="module")
def tensorflow():
    return pytest.importorskip("tensorflow")


@pytest.mark.parametrize("cls", KERAS_DETECTORS)
def test_keras_detector_ranks_outliers_and_round_trips_in_keras_format(cls, tensorflow, tmp_path):
    X, y = (
        curve_with_off_curve_outliers()
        if cls is not KerasDeepSVDD
        else gaussian_with_far_outliers()
    )
    det = cls(device="cpu", epochs=20, random_state=0).fit(X)
    assert roc_auc_score(y, det.decision_scores_) >= 0.9
    path = save_object(det, tmp_path / "model", kind="detector")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["loader"] == f"{cls.__module__}:{cls.__qualname__}"
    assert all(name.endswith((".keras", ".json", ".npz")) for name in manifest["files"])
    loaded = load_object(path)
    assert loaded.get_params() == det.get_params()
    np.testing.assert_array_equal(loaded.decision_function(X), det.decision_function(X))


def test_keras_same_seed_gives_identical_scores(tensorflow, small):
    first = KerasAutoEncoder(device="cpu", **FAST).fit(small)
    second = KerasAutoEncoder(device="cpu", **FAST).fit(small)
    np.testing.assert_array_equal(first.decision_scores_, second.decision_scores_)


def test_keras_unavailable_gpu_is_a_clear_error(tensorflow, small):
    if tensorflow.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    with pytest.raises(
        DetectorError, match=r"device='gpu' was requested but TensorFlow sees 0 GPU"
    ):
        KerasAutoEncoder(device="gpu", **FAST).fit(small)
