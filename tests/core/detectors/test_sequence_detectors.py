"""Sequence-aware window detectors (ConvAE, LSTMAE) and PCA T² + Q, beyond the registry contract.

The registry-wide contract (shapes, thresholds, seeds, save/load, NaN, feature count) runs in
``test_detector_contract.py``; here: what makes a window detector sequence-aware (past-only
scores, edge padding of the first rows, a warm-up that makes a partition scored alone equal the
long run), what it can see that a row-wise detector cannot, its time-ordered validation split,
and what T² and Q each catch. Small series and few epochs keep the module fast on two cores.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pynomaly_core.detectors import BaseDetector, DetectorError, create
from pynomaly_core.detectors.sequence import is_sequence_aware, sequence_aware_names, warmup_rows

torch = pytest.importorskip("torch")

WINDOW = 12
FAST = {"window_size": WINDOW, "epochs": 15, "random_state": 0, "device": "cpu"}
WINDOW_DETECTORS = ["ConvAE", "LSTMAE"]


def sine(n: int, seed: int = 0, period: float = 20.0) -> np.ndarray:
    """Two sensors in quadrature with a little noise: ``(n, 2)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * 2 * np.pi / period
    return np.c_[np.sin(t), np.cos(t)] + 0.02 * rng.normal(size=(n, 2))


@pytest.fixture(autouse=True)
def _signing_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PYNOMALY_HOME", str(tmp_path))


@pytest.fixture(scope="module")
def fitted() -> dict[str, BaseDetector]:
    """Each window detector fitted once on 400 rows of the two-sensor sine."""
    return {name: create(name, **FAST).fit(sine(400)) for name in WINDOW_DETECTORS}


# ------------------------------------------------------------------ declaration
def test_window_detectors_declare_themselves_sequence_aware_and_row_wise_ones_do_not():
    assert set(WINDOW_DETECTORS) <= set(sequence_aware_names())
    assert not {"PCA_TQ", "IForest", "AutoEncoder"} & set(sequence_aware_names())
    for name in WINDOW_DETECTORS:
        det = create(name, window_size=24)
        assert is_sequence_aware(det) and is_sequence_aware(type(det))
        assert warmup_rows(det) == 23  # the instance's window
        assert warmup_rows(type(det)) == 31  # the class: its default window of 32
    assert warmup_rows(create("PCA_TQ")) == 0 and warmup_rows(create("IForest")) == 0


def test_importing_the_window_detectors_and_listing_them_does_not_import_torch():
    code = (
        "import sys\n"
        "from pynomaly_core.detectors.sequence import sequence_aware_names\n"
        "from pynomaly_core.detectors import create\n"
        "names = sequence_aware_names(); [create(n) for n in names]\n"
        "print(names, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['ConvAE', 'LSTMAE'] False"


# ------------------------------------------------------------- rows and windows
@pytest.mark.parametrize("name", WINDOW_DETECTORS)
def test_scores_are_past_only(fitted, name):
    det, X = fitted[name], sine(200, seed=1)
    changed = X.copy()
    changed[120:] += 3.0  # everything from row 120 on
    before, after = det.decision_function(X), det.decision_function(changed)
    np.testing.assert_allclose(after[:120], before[:120], rtol=1e-6, atol=1e-7)
    assert np.all(after[120:] > before[120:])


@pytest.mark.parametrize("name", WINDOW_DETECTORS)
def test_a_partition_scored_after_its_warmup_equals_the_same_rows_in_a_long_run(fitted, name):
    det, X = fitted[name], sine(300, seed=2)
    long_run = det.decision_function(X)
    start = 180  # "today" starts here; the window - 1 rows before it are the warm-up
    warm = warmup_rows(det)
    alone = det.decision_function(X[start - warm :])[warm:]
    np.testing.assert_allclose(alone, long_run[start:], rtol=1e-6, atol=1e-7)
    # without the warm-up only the first window - 1 rows differ (they are edge-padded)
    cold = det.decision_function(X[start:])
    np.testing.assert_allclose(cold[warm:], long_run[start + warm :], rtol=1e-6, atol=1e-7)
    assert not np.allclose(cold[:warm], long_run[start : start + warm])


@pytest.mark.parametrize("name", WINDOW_DETECTORS)
def test_first_rows_are_scored_on_a_window_padded_with_the_first_row(fitted, name):
    det, X = fitted[name], sine(50, seed=3)
    scores = det.decision_function(X)
    for row in (0, 5, WINDOW - 2):
        padded = np.vstack([np.repeat(X[:1], WINDOW - 1 - row, axis=0), X[: row + 1]])
        assert padded.shape[0] == WINDOW
        np.testing.assert_allclose(scores[row], det.decision_function(padded)[-1], rtol=1e-6)


@pytest.mark.parametrize("name", WINDOW_DETECTORS)
def test_one_score_per_row_even_with_fewer_rows_than_a_window(fitted, name):
    det = fitted[name]
    for n in (1, 3, WINDOW, 37):
        scores = det.decision_function(sine(n, seed=4))
        assert scores.shape == (n,) and np.all(np.isfinite(scores))


@pytest.mark.parametrize("name", WINDOW_DETECTORS)
def test_scores_do_not_depend_on_the_scoring_chunk(fitted, name):
    det, X = fitted[name], sine(300, seed=5)
    whole = det.decision_function(X)
    det.set_params(score_batch_size=7)
    try:
        np.testing.assert_allclose(det.decision_function(X), whole, rtol=1e-5, atol=1e-7)
    finally:
        det.set_params(score_batch_size=None)


@pytest.mark.parametrize("name", WINDOW_DETECTORS)
def test_sees_a_rhythm_change_that_a_row_wise_detector_cannot(name):
    """Rows 300-359 run at twice the frequency: each row (and its value distribution) is normal."""
    rng = np.random.default_rng(6)
    train = np.sin(np.arange(600) * 2 * np.pi / 25)[:, None] + 0.02 * rng.normal(size=(600, 1))
    t = np.arange(500) * 2 * np.pi / 25
    test = np.sin(np.where((np.arange(500) >= 300) & (np.arange(500) < 360), 2 * t, t))[:, None]
    test = test + 0.02 * rng.normal(size=test.shape)
    y = ((np.arange(500) >= 300) & (np.arange(500) < 360)).astype(int)
    window = create(name, **{**FAST, "epochs": 20}).fit(train)
    row_wise = create("IForest", random_state=0).fit(train)
    assert roc_auc_score(y, window.decision_function(test)) > 0.9
    assert roc_auc_score(y, row_wise.decision_function(test)) < 0.7


# ---------------------------------------------------------------------- training
@pytest.mark.parametrize("name", WINDOW_DETECTORS)
def test_validation_windows_are_the_last_ones_in_time(name, monkeypatch):
    from pynomaly_core.detectors.deep.window_models import WindowDetector

    seen = {}
    real_train = WindowDetector._train

    def spy(self, torch_module, network, train, validation, device, chunk):
        seen["train"], seen["validation"] = train.clone(), validation.clone()
        return real_train(self, torch_module, network, train, validation, device, chunk)

    monkeypatch.setattr(WindowDetector, "_train", spy)
    X = np.arange(200, dtype=float)[:, None] * np.array([[1.0, -1.0]])
    det = create(name, **{**FAST, "epochs": 1, "validation_fraction": 0.1}).fit(X)
    scale, mean = det.scaler_scale_[None, :, None], det.scaler_mean_[None, :, None]
    validation = seen["validation"].numpy() * scale + mean
    assert validation.shape == (20, 2, WINDOW)
    # the validation windows end at rows 180..199, the training windows at rows 0..179
    np.testing.assert_allclose(validation[:, 0, -1], np.arange(180, 200), atol=1e-3)
    train = seen["train"].numpy() * scale + mean
    np.testing.assert_allclose(train[:, 0, -1], np.arange(180), atol=1e-3)


def test_early_stopping_keeps_the_best_epoch_and_auto_picks_the_cpu_here():
    det = create("ConvAE", **{**FAST, "epochs": 200, "patience": 2}).fit(sine(300))
    # stopped `patience` epochs after the last improvement, with the best epoch's weights
    assert det.n_epochs_ < 200 and det.n_epochs_ == det.best_epoch_ + 1 + 2
    curve = det.validation_loss_curve_
    assert curve[det.best_epoch_] <= min(curve) * (1 + det.tol)
    auto = create("ConvAE", **{**FAST, "epochs": 1, "device": "auto"}).fit(sine(60))
    assert auto.device_ == ("cuda:0" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_unavailable_cuda_is_a_clear_error():
    with pytest.raises(DetectorError, match=r"LSTMAE: device='cuda' was requested but CUDA is not"):
        create("LSTMAE", **{**FAST, "device": "cuda"}).fit(sine(40))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("ConvAE", {"window_size": 1}, r"ConvAE: window_size must be an int >= 2"),
        ("LSTMAE", {"window_size": 2.5}, r"LSTMAE: window_size must be an int >= 2"),
        ("ConvAE", {"kernel_size": 4}, r"ConvAE: kernel_size must be odd"),
        (
            "ConvAE",
            {"channels": ()},
            r"ConvAE: channels must be a non-empty tuple of positive ints",
        ),
        ("LSTMAE", {"hidden_size": 0}, r"LSTMAE: hidden_size must be an int >= 1"),
        ("LSTMAE", {"n_layers": 0}, r"LSTMAE: n_layers must be an int >= 1"),
        ("ConvAE", {"dropout_rate": 1.0}, r"ConvAE: dropout_rate must be a float in \[0.0, 1.0\)"),
    ],
)
def test_invalid_parameters_name_the_parameter(name, params, message):
    det = create(name, **{**FAST, **params})  # construction stores them unchanged
    with pytest.raises(DetectorError, match=message):
        det.fit(sine(40))


@pytest.mark.parametrize("name", WINDOW_DETECTORS)
def test_save_load_keeps_the_window_and_pickles_nothing(fitted, name, tmp_path):
    det, X = fitted[name], sine(80, seed=7)
    path = det.save(tmp_path / name)
    assert not (path / "model.joblib").exists()
    config = json.loads((path / "config.json").read_text())
    assert config["class"] == name and config["params"]["window_size"] == WINDOW
    loaded = BaseDetector.load(path)
    assert is_sequence_aware(loaded) and warmup_rows(loaded) == WINDOW - 1
    np.testing.assert_array_equal(loaded.decision_function(X), det.decision_function(X))


# ---------------------------------------------------------------------- PCA T²+Q
def _correlated(n: int = 500, seed: int = 8) -> np.ndarray:
    """Three sensors driven by one factor: x2 ≈ x1, x3 ≈ -x1."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 1))
    return np.hstack([f, f, -f]) + 0.05 * rng.normal(size=(n, 3))


def test_pca_tq_t2_sees_an_extreme_correlated_state_and_q_a_broken_correlation():
    det = create("PCA_TQ", contamination=0.01).fit(_correlated())
    assert det.components_.shape == (1, 3)  # one component explains > 90 % of the variance
    extreme = [[5.0, 5.0, -5.0]]  # far along the normal direction: the sensors still agree
    broken = [[1.0, -1.0, -1.0]]  # ordinary magnitudes, but sensor 2 no longer follows sensor 1
    (t2_e,), (q_e,) = det.statistics(extreme)
    (t2_b,), (q_b,) = det.statistics(broken)
    assert t2_e > det.t2_limit_ and q_e < det.q_limit_
    assert q_b > det.q_limit_ and t2_b < det.t2_limit_
    scores = det.decision_function(np.vstack([extreme, broken]))
    np.testing.assert_allclose(scores, [t2_e / det.t2_limit_, q_b / det.q_limit_])
    assert det.predict(np.vstack([extreme, broken, [[0.1, 0.1, -0.1]]])).tolist() == [1, 1, 0]


def test_pca_tq_control_limits_are_training_quantiles_at_alpha():
    X = _correlated()
    det = create("PCA_TQ", alpha=0.05).fit(X)
    t2, q = det.statistics(X)
    assert np.mean(t2 > det.t2_limit_) == pytest.approx(0.05, abs=0.005)
    assert np.mean(q > det.q_limit_) == pytest.approx(0.05, abs=0.005)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"variance": 1.5}, r"variance must be in \(0, 1\]"),
        ({"alpha": 0.7}, r"alpha must be in \(0, 0.5\)"),
        ({"n_components": 5}, r"n_components=5 must be between 1 and 3"),
    ],
)
def test_pca_tq_invalid_parameters_name_the_parameter(params, message):
    with pytest.raises(DetectorError, match=message):
        create("PCA_TQ", **params).fit(_correlated(50))


def test_pca_tq_keeps_a_residual_dimension_and_handles_one_feature():
    det = create("PCA_TQ", variance=1.0).fit(_correlated())
    assert det.components_.shape[0] == 2  # Q needs at least one residual dimension
    one = create("PCA_TQ").fit(np.random.default_rng(9).normal(size=(200, 1)))
    scores = one.decision_function([[0.0], [6.0]])
    assert np.all(np.isfinite(scores)) and scores[1] > one.threshold_ > scores[0]
