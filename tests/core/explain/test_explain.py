"""SHAP explanations of AnomalyModel scores: signs, units, one-hot aggregation, errors."""

import base64
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import FeatureSpec
from pynomaly_core.explain import (
    Explanation,
    ExplanationError,
    explain,
    isolation_forest_of,
    isolation_forest_shap,
    summary_plot_markdown,
)
from pynomaly_core.model import AnomalyModel

NUMERIC = ["a", "b", "c"]
FEATURES = [FeatureSpec(name=n) for n in NUMERIC] + [
    FeatureSpec(name="kind", type="category"),
    FeatureSpec(name="flat"),  # constant in training: dropped by the preprocessor
]
INPUTS = NUMERIC + ["kind", "flat"]


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame({name: rng.normal(size=n) for name in NUMERIC})
    out["kind"] = rng.choice(["x", "y", "z"], size=n, p=[0.5, 0.49, 0.01])
    out["flat"] = 1.0
    return out


def anomalous_rows() -> pd.DataFrame:
    """Row j is ordinary except feature j (a, b, c far out; kind a rare category)."""
    rows = pd.DataFrame({name: [0.0] * 4 for name in NUMERIC})
    rows["kind"] = ["x", "x", "x", "z"]
    rows["flat"] = 1.0
    for j, name in enumerate(NUMERIC):
        rows.loc[j, name] = 8.0 if j != 1 else -8.0
    rows.index = [101, 102, 103, 104]
    return rows


EXPECTED_TOP = ["a", "b", "c", "kind"]


@pytest.fixture(scope="module")
def train():
    return frame(600, seed=0)


@pytest.fixture(scope="module")
def iforest(train):
    return AnomalyModel(FEATURES, "IForest", contamination=0.02, random_state=0).fit(train)


@pytest.fixture(scope="module")
def knn(train):
    return AnomalyModel(FEATURES, "KNN", contamination=0.02).fit(train)


def mean_path_length(forest, X):
    from sklearn.ensemble._iforest import _average_path_length

    c = _average_path_length(np.array([forest.max_samples_]))[0]
    return -c * np.log2(-forest.score_samples(X))


# ----------------------------------------------------------------------------- tree
@pytest.mark.parametrize("detector", ["IForest", "IsolationForest"])
def test_tree_sign_row_anomalous_in_feature_j_gets_largest_positive_contribution_on_j(
    train, detector
):
    model = AnomalyModel(FEATURES, detector, contamination=0.02, random_state=0).fit(train)
    rows = anomalous_rows()
    result = explain(model, rows)
    assert result.method == "tree"
    assert result.features == INPUTS
    top = result.top(1)
    assert top["feature_1"].tolist() == EXPECTED_TOP
    assert (top["contribution_1"] > 0).all()


def test_tree_values_are_negated_path_lengths_in_tree_levels(iforest, train):
    rows = pd.concat([anomalous_rows(), train.iloc[:50]])
    result = explain(iforest, rows)
    forest = isolation_forest_of(iforest.detector_)
    h = mean_path_length(forest, iforest.preprocessor_.transform(rows))
    np.testing.assert_allclose(result.values.sum(axis=1) + result.base_value, -h, atol=1e-9)
    # the anomalies' paths are shorter than the expected path: positive totals
    assert (result.values[:4].sum(axis=1) > 0).all()
    assert result.background_rows == forest.max_samples_


def test_tree_values_agree_with_shap_tree_explainer(iforest, train):
    shap = pytest.importorskip("shap")
    forest = isolation_forest_of(iforest.detector_)
    X = iforest.preprocessor_.transform(pd.concat([anomalous_rows(), train.iloc[:200]]))
    ours, base = isolation_forest_shap(forest, X)
    explainer = shap.TreeExplainer(forest)
    np.testing.assert_allclose(ours, -explainer.shap_values(X), atol=1e-9)
    assert base == pytest.approx(-float(np.ravel(explainer.expected_value)[0]), abs=1e-9)


def test_tree_with_feature_subsampling_and_large_leaves_matches_path_lengths(train):
    model = AnomalyModel(
        FEATURES,
        "IForest",
        contamination=0.02,
        random_state=3,
        params={"max_features": 0.5, "max_samples": 100, "n_estimators": 30},
    ).fit(train)
    rows = train.iloc[:100]
    result = explain(model, rows)
    forest = isolation_forest_of(model.detector_)
    h = mean_path_length(forest, model.preprocessor_.transform(rows))
    np.testing.assert_allclose(result.values.sum(axis=1) + result.base_value, -h, atol=1e-9)


def test_one_hot_columns_sum_into_their_feature_and_dropped_columns_get_zero(iforest):
    rows = anomalous_rows()
    result = explain(iforest, rows)
    columns = iforest.preprocessor_.feature_names_out_
    assert "flat" not in columns and [c for c in columns if c.startswith("kind=")] == [
        "kind=x",
        "kind=y",
        "kind=z",
    ]
    raw, _ = isolation_forest_shap(
        isolation_forest_of(iforest.detector_), iforest.preprocessor_.transform(rows)
    )
    kind = [i for i, c in enumerate(columns) if c.startswith("kind=")]
    np.testing.assert_allclose(result.values[:, INPUTS.index("kind")], raw[:, kind].sum(axis=1))
    for name in NUMERIC:
        np.testing.assert_allclose(
            result.values[:, INPUTS.index(name)], raw[:, columns.index(name)]
        )
    assert (result.values[:, INPUTS.index("flat")] == 0).all()
    assert result.values.shape == (4, len(INPUTS))
    assert list(result.row_index) == [101, 102, 103, 104]


def test_detectors_say_whether_an_isolation_forest_is_their_score():
    from sklearn.ensemble import IsolationForest

    from pynomaly_core.detectors import create
    from pynomaly_core.detectors.adapters import TransductivePyODDetector

    X = np.random.default_rng(0).normal(size=(80, 3))
    pyod_forest = create("IForest", random_state=0).fit(X)
    sklearn_forest = create("IsolationForest", random_state=0).fit(X)
    assert pyod_forest.isolation_forest() is pyod_forest.estimator_.detector_
    assert sklearn_forest.isolation_forest() is sklearn_forest.estimator_
    assert isinstance(isolation_forest_of(pyod_forest), IsolationForest)
    assert create("KNN").fit(X).isolation_forest() is None
    assert create("IForest").isolation_forest() is None  # not fitted
    transductive = TransductivePyODDetector(
        model="pyod.models.iforest:IForest", random_state=0
    ).fit(X)
    assert transductive.isolation_forest() is None  # batch-relative scores are not the forest's
    assert isolation_forest_of(object()) is None


def test_tree_method_refuses_a_detector_that_is_not_a_forest(knn):
    with pytest.raises(ValueError, match="'KNN' is not one"):
        explain(knn, anomalous_rows(), method="tree")


# ------------------------------------------------------------ kernel / permutation
@pytest.mark.parametrize("method", ["auto", "permutation"])
def test_sampled_explainers_sign_and_additivity(knn, train, method):
    pytest.importorskip("shap")
    rows = anomalous_rows()
    result = explain(
        knn,
        rows,
        method=method,
        background=train,
        max_background=40,
        max_evals=None if method == "auto" else 10 * 13,
    )
    # 6 preprocessed columns: 62 coalitions fit the default budget, so auto is exact Kernel SHAP
    assert result.method == ("kernel" if method == "auto" else "permutation")
    assert result.background_rows == 40
    top = result.top(1)
    assert top["feature_1"].tolist() == EXPECTED_TOP
    assert (top["contribution_1"] > 0).all()
    np.testing.assert_allclose(
        result.values.sum(axis=1) + result.base_value,
        knn.decision_function(rows),
        rtol=1e-6,
        atol=1e-6,
    )
    assert (result.values[:, INPUTS.index("flat")] == 0).all()


def test_kernel_is_reproducible_and_exact_regardless_of_seed(knn, train):
    pytest.importorskip("shap")
    rows = anomalous_rows()
    first = explain(knn, rows, method="kernel", background=train, max_background=30, random_state=5)
    again = explain(knn, rows, method="kernel", background=train, max_background=30, random_state=5)
    np.testing.assert_array_equal(first.values, again.values)
    assert "exact" in first.note


def test_sampled_method_without_background_names_the_parameter(knn):
    with pytest.raises(ValueError, match="background="):
        explain(knn, anomalous_rows())
    with pytest.raises(ValueError, match="background="):
        explain(knn, anomalous_rows(), method="permutation", background=anomalous_rows().iloc[:0])


def test_detector_failing_on_perturbed_rows_is_named(knn, train, monkeypatch):
    pytest.importorskip("shap")

    def broken(X):
        raise RuntimeError("cannot score")

    monkeypatch.setattr(knn.detector_, "decision_function", broken)
    with pytest.raises(ExplanationError, match="detector 'KNN' failed.*cannot score"):
        explain(knn, anomalous_rows(), background=train)
    monkeypatch.setattr(knn.detector_, "decision_function", lambda X: np.full(len(X), np.nan))
    with pytest.raises(ExplanationError, match="'KNN' returned NaN"):
        explain(knn, anomalous_rows(), method="permutation", background=train)


def test_unknown_method_is_refused(iforest):
    with pytest.raises(ValueError, match="method must be one of"):
        explain(iforest, anomalous_rows(), method="deep")


# ------------------------------------------------------------------- Explanation
def make(values, features=("a", "b", "c")) -> Explanation:
    values = np.asarray(values, dtype=float)
    return Explanation(
        method="tree",
        features=list(features),
        values=values,
        base_value=0.0,
        row_index=pd.Index([10, 20][: len(values)], name="row"),
        seconds=0.0,
        background_rows=0,
    )


def test_top_orders_by_contribution_keeps_ties_stable_and_pads():
    result = make([[0.1, 0.5, 0.5], [-1.0, 0.0, 2.0]])
    top = result.top(2)
    assert list(top.columns) == ["feature_1", "contribution_1", "feature_2", "contribution_2"]
    assert list(top.index) == [10, 20] and top.index.name == "row"
    assert top.loc[10, "feature_1"] == "b" and top.loc[10, "feature_2"] == "c"  # tie: feature order
    assert top.loc[20].tolist() == ["c", 2.0, "b", 0.0]
    padded = result.top(4)
    assert padded.shape == (2, 8)
    assert padded["feature_4"].isna().all() and padded["contribution_4"].isna().all()
    assert padded.loc[20, "feature_3"] == "a" and padded.loc[20, "contribution_3"] == -1.0


def test_mean_abs_is_sorted_per_feature():
    mean = make([[0.1, -3.0, 0.5], [-1.0, 1.0, 0.5]]).mean_abs()
    assert mean.index.tolist() == ["b", "a", "c"]
    np.testing.assert_allclose(mean.to_numpy(), [2.0, 0.55, 0.5])


def test_empty_frame_gives_empty_explanation(iforest):
    result = explain(iforest, anomalous_rows().iloc[:0])
    assert result.values.shape == (0, len(INPUTS))
    assert result.top(3).shape == (0, 6)


def test_summary_plot_is_a_markdown_png(iforest):
    markdown = summary_plot_markdown(explain(iforest, anomalous_rows()), "demo: top anomalies")
    assert markdown.startswith("![feature contributions](data:image/png;base64,")
    png = base64.b64decode(markdown.split(",", 1)[1].rstrip(")"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------ imports
def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_module_imports_without_shap_and_missing_shap_names_the_extra():
    done = run_python(
        """
        import sys
        import pynomaly_core.explain
        assert "shap" not in sys.modules and "numba" not in sys.modules, sorted(sys.modules)
        sys.modules["shap"] = None  # as if not installed
        import numpy as np, pandas as pd
        from pynomaly_core.data.config import FeatureSpec
        from pynomaly_core.model import AnomalyModel
        rng = np.random.default_rng(0)
        train = pd.DataFrame({"a": rng.normal(size=50), "b": rng.normal(size=50)})
        model = AnomalyModel([FeatureSpec(name="a"), FeatureSpec(name="b")], "HBOS").fit(train)
        try:
            pynomaly_core.explain.explain(model, train.iloc[:2], background=train)
        except ImportError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'pynomaly[explain]'" in done.stdout


def test_tables_too_large_fall_back_to_shap_tree_explainer_with_a_note(train, monkeypatch):
    pytest.importorskip("shap")
    import pynomaly_core.explain.forest as module

    model = AnomalyModel(
        FEATURES, "IForest", contamination=0.02, random_state=1, params={"n_estimators": 10}
    ).fit(train)
    rows = anomalous_rows()
    monkeypatch.setattr(module, "MAX_TABLE_ENTRIES", 10)
    fallback = explain(model, rows)
    assert fallback.method == "tree" and "shap.TreeExplainer used" in fallback.note
    monkeypatch.setattr(module, "MAX_TABLE_ENTRIES", 50_000_000)
    ours = explain(model, rows)
    assert "shap.TreeExplainer" not in ours.note
    np.testing.assert_allclose(fallback.values, ours.values, atol=1e-9)
    assert fallback.base_value == pytest.approx(ours.base_value)
