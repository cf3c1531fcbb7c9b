"""Fast tests of the ADBench protocol in ``benchmarks/adbench.py``.

The synthetic tests always run. The tests on real ADBench files skip, saying why, when the
dataset folder (``$PYNOMALY_ADBENCH_DIR`` or ``../shared/datasets/adbench``) is absent.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_module():
    name = "pynomaly_benchmarks_adbench"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / "adbench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered while it executes
    spec.loader.exec_module(module)
    return module


adb = _load_module()

DATA_DIR = adb.default_data_dir()
needs_data = pytest.mark.skipif(
    not (DATA_DIR / "42_WBC.npz").exists(),
    reason=f"ADBench datasets not found at {DATA_DIR} (set {adb.DATA_DIR_ENV} to run these tests)",
)


def _synthetic(n: int, d: int = 4, anomaly_share: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_cauchy(size=(n, d))  # heavy tails: test values will leave the train range
    y = np.zeros(n, dtype=int)
    y[: max(2, round(n * anomaly_share))] = 1
    rng.shuffle(y)
    return X, y


# ----------------------------------------------------------------------------- split
@pytest.mark.parametrize("n", [2000, 5000])
def test_stratified_split_keeps_anomaly_ratio_and_sizes(n):
    X, y = _synthetic(n, anomaly_share=0.07)
    split = adb.adbench_split(X, y, seed=1)
    assert split.X_train.shape[0] == int(n * 0.7)
    assert split.X_test.shape[0] == n - int(n * 0.7)
    overall = y.mean()
    # stratification: each side within one row of the overall share
    assert abs(split.y_train.mean() - overall) <= 1 / len(split.y_train)
    assert abs(split.y_test.mean() - overall) <= 1 / len(split.y_test)
    assert split.y_train.sum() + split.y_test.sum() == y.sum()


def test_minmax_is_fitted_on_train_only():
    X_train = np.array([[0.0, 10.0], [2.0, 20.0], [4.0, 30.0]])
    X_test = np.array([[8.0, 0.0], [-2.0, 25.0]])
    tr, te = adb.minmax_fit_transform(X_train, X_test)
    np.testing.assert_allclose(tr, [[0, 0], [0.5, 0.5], [1, 1]])
    # scaled with the *train* min/range, so test values leave [0, 1]
    np.testing.assert_allclose(te, [[2.0, -0.5], [-0.5, 0.75]])


def test_split_scales_train_to_unit_range_and_test_may_exceed_it():
    X, y = _synthetic(3000, d=5)
    split = adb.adbench_split(X, y, seed=2)
    np.testing.assert_allclose(split.X_train.min(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(split.X_train.max(axis=0), 1.0, atol=1e-12)
    assert split.X_test.min() < 0.0 or split.X_test.max() > 1.0


def test_small_datasets_are_resampled_with_replacement_to_1000_rows():
    X, y = _synthetic(300)
    X[:, 0] = np.arange(300)  # row id, to trace the draw
    rng = np.random.RandomState(1)
    Xr, yr = adb.resample_rows(X, y, rng)
    assert Xr.shape == (1000, X.shape[1]) and yr.shape == (1000,)
    ids = Xr[:, 0].astype(int)
    assert len(np.unique(ids)) < 1000  # duplicates: drawn with replacement
    np.testing.assert_array_equal(Xr, X[ids])
    np.testing.assert_array_equal(yr, y[ids])
    split = adb.adbench_split(X, y, seed=1)
    assert (split.X_train.shape[0], split.X_test.shape[0]) == (700, 300)


def test_large_datasets_are_subsampled_without_replacement_to_10000_rows():
    X, y = _synthetic(12_000, d=2)
    X[:, 0] = np.arange(12_000)
    Xr, yr = adb.resample_rows(X, y, np.random.RandomState(3))
    ids = Xr[:, 0].astype(int)
    assert len(ids) == 10_000 and len(np.unique(ids)) == 10_000
    np.testing.assert_array_equal(yr, y[ids])
    split = adb.adbench_split(X, y, seed=3)
    assert (split.X_train.shape[0], split.X_test.shape[0]) == (7000, 3000)


def test_mid_sized_datasets_are_not_resampled():
    X, y = _synthetic(1000)
    Xr, yr = adb.resample_rows(X, y, np.random.RandomState(0))
    assert Xr is X and yr is y
    X, y = _synthetic(10_000, d=2)
    assert adb.resample_rows(X, y, np.random.RandomState(0))[0] is X


def test_split_is_deterministic_in_the_seed():
    X, y = _synthetic(400)
    a, b, c = (adb.adbench_split(X, y, seed=s) for s in (7, 7, 8))
    for name in ("X_train", "X_test", "y_train", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.X_train, c.X_train)


@pytest.mark.parametrize("n", [300, 2000, 12_000])
def test_split_follows_adbench_generator_rng_stream(n):
    """Same rows as ADBench's DataGenerator, which seeds NumPy's global generator, draws the
    resample with ``np.random.choice`` and splits with ``train_test_split`` (no random_state)."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    X, y = _synthetic(n, d=3, seed=5)
    seed = 2
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        Xa, ya = X, y
        if n < 1000:
            np.random.seed(seed)
            idx = np.random.choice(np.arange(n), 1000, replace=True)
            Xa, ya = X[idx], y[idx]
        if len(ya) > 10000:
            np.random.seed(seed)
            idx = np.random.choice(np.arange(len(ya)), 10000, replace=False)
            Xa, ya = Xa[idx], ya[idx]
        X_tr, X_te, _y_tr, y_te = train_test_split(Xa, ya, test_size=0.3, shuffle=True, stratify=ya)
    finally:
        np.random.set_state(state)
    scaler = MinMaxScaler().fit(X_tr)
    split = adb.adbench_split(X, y, seed=seed)
    np.testing.assert_array_equal(split.X_train, scaler.transform(X_tr))
    np.testing.assert_array_equal(split.X_test, scaler.transform(X_te))
    np.testing.assert_array_equal(split.y_test, y_te)


def test_constant_training_columns_are_dropped_unless_kept():
    X, y = _synthetic(1500, d=4)
    X[:, 2] = 3.0
    split = adb.adbench_split(X, y, seed=1)
    assert split.dropped_features == [2] and split.n_features == 3
    kept = adb.adbench_split(X, y, seed=1, drop_constant=False)
    assert kept.dropped_features == [] and kept.n_features == 4
    np.testing.assert_array_equal(kept.X_train[:, [0, 1, 3]], split.X_train)


# ----------------------------------------------------------------------------- loading
def test_load_dataset_errors_name_the_file(tmp_path):
    missing_y = tmp_path / "99_bad.npz"
    np.savez(missing_y, X=np.zeros((3, 2)))
    with pytest.raises(adb.BenchmarkError, match="99_bad.npz.*missing"):
        adb.load_dataset(missing_y)
    bad_labels = tmp_path / "98_labels.npz"
    np.savez(bad_labels, X=np.zeros((3, 2)), y=np.array([0, 2, 1]))
    with pytest.raises(adb.BenchmarkError, match="98_labels.npz.*0/1"):
        adb.load_dataset(bad_labels)
    not_npz = tmp_path / "97_text.npz"
    not_npz.write_text("hello")
    with pytest.raises(adb.BenchmarkError, match="97_text.npz"):
        adb.load_dataset(not_npz)


def test_dataset_names_and_selection(tmp_path):
    for stem in ("6_cardio", "42_WBC", "14_glass"):
        np.savez(tmp_path / f"{stem}.npz", X=np.zeros((2, 1)), y=np.array([0, 1]))
    assert adb.dataset_name("6_cardio.npz") == "cardio"
    assert [p.stem for p in adb.list_datasets(tmp_path)] == ["6_cardio", "14_glass", "42_WBC"]
    assert [p.stem for p in adb.select_datasets("wbc,6_cardio", tmp_path)] == ["42_WBC", "6_cardio"]
    with pytest.raises(adb.BenchmarkError, match="unknown dataset 'nope'"):
        adb.select_datasets("nope", tmp_path)
    with pytest.raises(adb.BenchmarkError, match="does not exist"):
        adb.list_datasets(tmp_path / "absent")


def test_published_aliases_and_missing_values(tmp_path):
    path = tmp_path / "pub.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "algorithm", "roc_auc", "pr_auc"])
        w.writerow(["WBC", "IForest", "0.99", "0.9"])
        w.writerow(["WBC", "DAGMM", "", ""])
    table = adb.load_published(path)
    assert table == {("WBC", "IForest"): (0.99, 0.9)}
    algorithms = {a for _, a in table}
    assert adb.published_name("IForest", algorithms) == ("IForest", "name")
    assert adb.published_name("IsolationForest", algorithms) == ("IForest", "alias")
    assert adb.published_name("KNN", algorithms) == (None, "")


def test_markdown_keeps_hand_written_text(tmp_path):
    path = tmp_path / "report.md"
    adb.write_markdown("first", path)
    path.write_text("intro\n" + path.read_text() + "notes by hand\n")
    adb.write_markdown("second", path)
    text = path.read_text()
    assert "intro" in text and "notes by hand" in text and "second" in text
    assert "first" not in text


# ----------------------------------------------------------------------------- real data
@needs_data
@pytest.mark.parametrize("detector", ["KNN", "HBOS", "ECOD", "IForest"])
def test_adapter_reproduces_direct_pyod_on_wbc(detector):
    X, y = adb.load_dataset(DATA_DIR / "42_WBC.npz")
    split = adb.adbench_split(X, y, seed=1)
    ours = adb.evaluate(detector, "ours", split, seed=1)
    ref = adb.evaluate(detector, "reference", split, seed=1)
    assert ours["status"] == ref["status"] == "ok"
    assert ours["roc_auc"] == ref["roc_auc"]
    np.testing.assert_array_equal(ours["scores"], ref["scores"])
    assert 0.5 < ours["roc_auc"] <= 1.0


@needs_data
def test_cli_end_to_end_on_wbc(tmp_path):
    out, md = tmp_path / "r.csv", tmp_path / "r.md"
    code = adb.main(
        [
            "--detectors",
            "HBOS",
            "--datasets",
            "WBC",
            "--seeds",
            "1",
            "--out",
            str(out),
            "--markdown",
            str(md),
            "--max-seconds-per-fit",
            "0",
        ]
    )
    assert code == 0
    rows = adb.read_csv(out)
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["ref_status"] == "ok"
    assert rows[0]["abs_diff_auc_vs_ref"] == 0.0
    assert rows[0]["published_roc_auc"] is not None  # WBC/HBOS is in the published table
    assert "| HBOS | 1/1 |" in md.read_text()
