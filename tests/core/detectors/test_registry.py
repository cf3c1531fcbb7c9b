"""The detector registry: metadata of every entry, ``create`` and scikit-learn cloning."""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest
from sklearn.base import clone

from pynomaly_core.detectors import (
    BaseDetector,
    DetectorError,
    DetectorSpec,
    available,
    create,
    get_spec,
    registry,
)
from pynomaly_core.detectors.adapters import PyODDetector, _WrappedDetector
from pynomaly_core.detectors.targets import import_target

SPECS = available()
FAMILIES = {"probabilistic", "linear", "proximity", "ensemble", "neural", "graph", "sequence"}
SUPERVISION = {"unsupervised", "semi-supervised"}


def test_registry_covers_pyod_and_sklearn_detectors() -> None:
    names = {s.name for s in SPECS}
    expected = {
        "ABOD", "FastABOD", "AE1SVM", "ALAD", "AnoGAN", "AvgKNN", "CBLOF", "CD", "COF", "COPOD",
        "DevNet", "DIF", "ECOD", "FeatureBagging", "GMM", "HBOS", "HDBSCAN", "IForest", "INNE",
        "KDE", "KNN", "KPCA", "LMDD", "LOCI", "LODA", "LOF", "LSCP", "LUNAR", "MAD", "MCD",
        "MedKNN", "MO_GAAL", "OCSVM", "PCA", "PyOD-AutoEncoder", "PyOD-DeepSVDD", "PyOD-VAE",
        "QMCD", "RGraph", "ROD", "Sampling", "SO_GAAL", "SOD", "SOS", "SUOD", "XGBOD",
        "IsolationForest", "LocalOutlierFactor", "OneClassSVM", "SGDOneClassSVM",
        "EllipticEnvelope", "Ensemble",
    }  # fmt: skip
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_entry_has_complete_metadata(spec: DetectorSpec) -> None:
    assert spec.name and spec.framework and spec.description.strip()
    assert spec.family in FAMILIES
    assert spec.cost_class.startswith("fit ") or spec.framework == "pynomaly", spec.cost_class
    assert spec.supervision in SUPERVISION
    assert isinstance(spec.gpu, bool)
    assert isinstance(spec.defaults, dict)
    # a detector outside the core install says which extra brings its framework
    assert (spec.extra is None) == (spec.requires_module is None)
    info = spec.as_dict()
    assert set(info) >= {"name", "family", "framework", "supervision", "gpu", "cost_class",
                         "defaults", "extra", "installed", "description"}  # fmt: skip


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.framework in ("pyod", "sklearn")], ids=lambda s: s.name
)
def test_wrapped_entry_points_at_a_real_class(spec: DetectorSpec) -> None:
    if not spec.installed:
        pytest.skip(f"{spec.requires_module} is not installed")
    module, _, cls_name = spec.wraps.partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = set(spec.defaults) - set(accepted)
    assert not unknown, f"{spec.name}: defaults {sorted(unknown)} are not arguments of {spec.wraps}"
    if spec.gpu:
        assert spec.requires_module == "torch", "only torch-based wrapped detectors run on CUDA"


def test_import_target_follows_nested_names_and_errors_name_the_target() -> None:
    assert import_target("pynomaly_core.detectors.adapters:PyODDetector") is PyODDetector
    assert import_target("pynomaly_core.detectors.base:BaseDetector.fit") is BaseDetector.fit
    with pytest.raises(ValueError, match="'no_colon' is not of the form 'module:QualifiedName'"):
        import_target("no_colon")
    with pytest.raises(ImportError, match="target 'no_such_module:X': module 'no_such_module'"):
        import_target("no_such_module:X")
    with pytest.raises(AttributeError, match="target 'pyod.models.iforest:Nope'.*'Nope'"):
        import_target("pyod.models.iforest:Nope")


@pytest.mark.parametrize("spec", [s for s in SPECS if s.installed], ids=lambda s: s.name)
def test_supervision_matches_the_class(spec: DetectorSpec) -> None:
    det = create(spec.name)
    assert det.requires_labels == (spec.supervision == "semi-supervised")


def test_names_are_unique_and_conflicts_are_refused(monkeypatch) -> None:
    names = [s.name for s in SPECS]
    assert len(names) == len(set(names))
    # re-registering the identical entry is a no-op; a different one under the same name is refused
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    spec = get_spec("IForest")
    assert registry.register(spec) is spec
    with pytest.raises(ValueError, match="already registered"):
        registry.register(
            DetectorSpec(name="IForest", family="x", framework="x", target=spec.target)
        )


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(DetectorError, match=r"unknown detector 'IForrest'.*Did you mean 'IForest'"):
        create("IForrest")
    with pytest.raises(DetectorError, match=r"unknown detector 'zzzz'\. `pynomaly_core"):
        create("zzzz")


def test_params_are_folded_into_the_wrapped_estimator() -> None:
    det = create("KNN", n_neighbors=7, contamination=0.02, random_state=3)
    assert isinstance(det, PyODDetector)
    assert det.contamination == 0.02 and det.random_state == 3
    # registry defaults and caller params both land in `params`, caller wins
    assert det.params == {"method": "largest", "n_neighbors": 7}
    X = np.random.default_rng(0).normal(size=(60, 3))
    det.fit(X)
    assert det.estimator_.n_neighbors == 7
    assert det.estimator_.method == "largest"
    assert det.estimator_.contamination == 0.02


def test_unknown_wrapped_parameter_is_refused_at_fit() -> None:
    det = create("IForest", n_trees=10)
    with pytest.raises(
        DetectorError, match=r"unknown parameter\(s\) \['n_trees'\]; accepted: .*'n_estimators'"
    ):
        det.fit(np.zeros((20, 2)))


def test_ensemble_members_accept_registry_names() -> None:
    det = create("LSCP", detector_list=["LOF", ("KNN", {"n_neighbors": 8})], random_state=0)
    det.fit(np.random.default_rng(0).normal(size=(80, 3)))
    members = det.estimator_.detector_list
    assert [type(m).__name__ for m in members] == ["LOF", "KNN"]
    assert members[1].n_neighbors == 8 and members[1].method == "largest"
    with pytest.raises(DetectorError, match="must be PyOD registry entries"):
        create("LSCP", detector_list=["IsolationForest", "LOF"]).fit(np.zeros((40, 2)))


@pytest.mark.parametrize("spec", [s for s in SPECS if s.installed], ids=lambda s: s.name)
def test_get_params_and_clone(spec: DetectorSpec) -> None:
    det = create(spec.name, contamination=0.03)
    params = det.get_params()
    assert params["contamination"] == 0.03
    twin = clone(det)
    assert type(twin) is type(det) and twin is not det
    assert twin.get_params() == params
    if isinstance(det, _WrappedDetector):
        assert params["model"] == spec.wraps
        assert params["params"] == (spec.defaults or None)
    # the constructor stores parameters unchanged and learns nothing
    assert not [k for k in vars(det) if k.endswith("_") and not k.startswith("_")]


def test_clone_of_fitted_detector_is_unfitted() -> None:
    det = create("HBOS").fit(np.random.default_rng(0).normal(size=(50, 2)))
    twin = clone(det)
    assert det.is_fitted and not twin.is_fitted
    assert isinstance(twin, BaseDetector)


# ------------------------------------------------------------------- Ensemble
FAST_MEMBERS = ["HBOS", "ECOD", "PCA", ("KNN", {"n_neighbors": 5})]


def _ensemble(**params) -> BaseDetector:
    return create("Ensemble", detectors=FAST_MEMBERS, random_state=0, **params)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"normalization": "robust"},
            r"normalization must be one of \['rank', 'zscore', 'minmax'\], got 'robust'",
        ),
        (
            {"combination": "median"},
            r"combination must be one of \['average', 'maximum', 'aom', 'moa'\], got 'median'",
        ),
        (
            {"combination": "aom", "n_buckets": 5},
            r"n_buckets must be an integer from 1 to the number of detectors \(4\)",
        ),
        ({"combination": "moa", "n_buckets": 0}, r"n_buckets must be an integer from 1"),
        ({"detectors": []}, r"detectors must name at least one detector"),
        ({"detectors": "IForest"}, r"detectors must be a list of registry names"),
        (
            {"detectors": ["IForest", 3]},
            r"detectors\[1\] must be a registry name, a \(name, params\) pair",
        ),
        ({"detectors": ["IForst"]}, r"unknown detector 'IForst'.*Did you mean 'IForest'"),
        ({"random_state": 1.5}, r"random_state must be an int or None, got 1.5"),
    ],
)
def test_ensemble_parameters_are_validated_at_fit(params, message) -> None:
    det = create("Ensemble", **{"detectors": FAST_MEMBERS, **params})  # construction never fails
    with pytest.raises(DetectorError, match=message):
        det.fit(np.random.default_rng(0).normal(size=(40, 3)))


def test_ensemble_combinations_reduce_to_each_other() -> None:
    X = np.random.default_rng(0).normal(size=(120, 4))
    scores = {
        (combination, n_buckets): _ensemble(combination=combination, n_buckets=n_buckets).fit(X).decision_scores_
        for combination, n_buckets in [("average", 2), ("maximum", 2), ("aom", 1), ("aom", 4), ("moa", 1), ("moa", 4), ("aom", 2)]
    }  # fmt: skip
    average, maximum = scores[("average", 2)], scores[("maximum", 2)]
    np.testing.assert_allclose(scores[("aom", 1)], maximum)  # one group: its maximum
    np.testing.assert_allclose(scores[("aom", 4)], average)  # one member per group: their mean
    np.testing.assert_allclose(scores[("moa", 1)], average)
    np.testing.assert_allclose(scores[("moa", 4)], maximum)
    assert np.all(average <= scores[("aom", 2)] + 1e-12) and np.all(
        scores[("aom", 2)] <= maximum + 1e-12
    )


@pytest.mark.parametrize("normalization", ["rank", "zscore", "minmax"])
def test_ensemble_normalization_is_fitted_on_training_scores(normalization: str) -> None:
    X = np.random.default_rng(0).normal(size=(100, 3))
    det = _ensemble(normalization=normalization, combination="maximum").fit(X)
    member = np.column_stack([m.decision_scores_ for m in det.members_])
    normalized = det._normalize(member)
    if normalization == "rank":
        assert normalized.min() > 0 and normalized.max() <= 1
        # a new score above every training score saturates at 1
        assert np.all(det._normalize(member.max(axis=0, keepdims=True) + 1.0) == 1.0)
    elif normalization == "zscore":
        np.testing.assert_allclose(normalized.mean(axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(normalized.std(axis=0), 1)
    else:
        np.testing.assert_allclose(normalized.min(axis=0), 0)
        np.testing.assert_allclose(normalized.max(axis=0), 1)
    np.testing.assert_allclose(det.decision_scores_, normalized.max(axis=1))


def test_ensemble_seeds_members_and_keeps_their_params() -> None:
    det = create(
        "Ensemble", detectors=["IForest", ("IForest", {"n_estimators": 20})], random_state=7
    )
    det.fit(np.random.default_rng(0).normal(size=(60, 2)))
    assert [m.random_state for m in det.members_] == [7, 8]
    assert det.members_[1].estimator_.n_estimators == 20
    assert det.member_names_ == ["IForest", "IForest"]


@pytest.mark.skipif(not get_spec("AutoEncoder").installed, reason="needs torch")
def test_ensemble_with_a_deep_member_round_trips(tmp_path) -> None:
    from pynomaly_core.detectors import ModelIntegrityError

    X = np.random.default_rng(0).normal(size=(80, 3))
    det = create(
        "Ensemble", detectors=["HBOS", ("AutoEncoder", {"epochs": 2})], random_state=0
    ).fit(X)
    path = det.save(tmp_path / "ens")
    # the deep member is saved in its framework's format, not pickled with the ensemble
    assert not (path / "member-1" / "model.joblib").exists()
    loaded = BaseDetector.load(path)
    np.testing.assert_array_equal(loaded.decision_function(X), det.decision_function(X))
    # a member replaced by another validly signed model is refused
    create("AutoEncoder", epochs=1, random_state=1).fit(X).save(path / "member-1")
    with pytest.raises(ModelIntegrityError, match="sha256 does not match"):
        BaseDetector.load(path)


def test_pca_drops_zero_variance_components_that_make_pyod_score_nan():
    from pyod.models.pca import PCA as PyODPCA

    rng = np.random.default_rng(0)
    category = rng.integers(0, 2, 400)
    X = np.c_[rng.normal(size=(400, 3)), category, 1 - category]  # one-hot: rank 4 of 5
    X_new = np.c_[rng.normal(size=(50, 3)), np.ones(50), np.zeros(50)]
    # the bug being fixed: dividing by a (numerically) zero variance gives NaN or ~1e17 scores
    broken = PyODPCA().fit(X).decision_function(X_new)
    assert not np.isfinite(broken).all() or broken.min() > 1e12
    ours = create("PCA").fit(X)
    fixed = ours.decision_function(X_new)
    assert np.isfinite(fixed).all() and fixed.max() < 1e6
    assert ours.estimator_.n_components_ == 4
    full = rng.normal(size=(300, 5))  # full rank: exactly PyOD
    np.testing.assert_array_equal(
        create("PCA").fit(full).decision_function(full), PyODPCA().fit(full).decision_function(full)
    )
