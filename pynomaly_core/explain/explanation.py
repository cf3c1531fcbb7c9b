"""The :func:`explain` entry point: which SHAP method runs, on what, and the :class:`Explanation`.

See :mod:`pynomaly_core.explain` for the methods, their units and when each is chosen; the
isolation-forest TreeSHAP is in :mod:`~pynomaly_core.explain.forest`, the shap explainers in
:mod:`~pynomaly_core.explain.shap_explainers`.
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from pynomaly_core.explain.forest import explain_tree
from pynomaly_core.explain.shap_explainers import Scorer, explain_kernel, explain_permutation

METHODS = ("auto", "tree", "kernel", "permutation")
#: evaluation budget below which Kernel enumerates every coalition (exact): M <= 8
DEFAULT_KERNEL_BUDGET = 256


class ExplanationError(ValueError):
    """The model cannot be explained as asked; the message names the detector and cause."""


@dataclass
class Explanation:
    """Per-row feature attributions of a model's anomaly score.

    Attributes
    ----------
    method : str
        ``"tree"``, ``"kernel"`` or ``"permutation"``.
    features : list of str
        The model's input feature names (one-hot columns summed into their feature).
    values : ndarray of shape (rows, features)
        Contribution of each feature to the row's score; positive = more anomalous.
        Units depend on the method (see the module docstring).
    base_value : float
        The explained output with no feature known; ``values.sum(1) + base_value`` is
        the row's explained output.
    row_index : pandas.Index
        Index of the explained rows in the frame given to :func:`explain`.
    seconds : float
        Wall time of :func:`explain`.
    background_rows : int
        Background rows used (tree: the training subsample each tree was grown on).
    note : str
        Units, budget and any fallback taken.
    """

    method: str
    features: list[str]
    values: np.ndarray
    base_value: float
    row_index: pd.Index
    seconds: float
    background_rows: int
    note: str = ""

    def top(self, k: int = 3) -> pd.DataFrame:
        """The ``k`` largest contributions of each row, indexed like ``row_index``.

        Columns ``feature_1, contribution_1, ..., feature_k, contribution_k`` in order of
        contribution, largest first (ties keep the feature order); where there are fewer
        than ``k`` features the rest are ``None`` / NaN.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        values = np.asarray(self.values, dtype=np.float64).reshape(
            len(self.row_index), len(self.features)
        )
        order = np.argsort(-values, axis=1, kind="stable")[:, :k]
        names = np.asarray(self.features, dtype=object)
        columns: dict[str, Any] = {}
        for i in range(k):
            if i < order.shape[1]:
                columns[f"feature_{i + 1}"] = names[order[:, i]] if len(names) else []
                columns[f"contribution_{i + 1}"] = np.take_along_axis(
                    values, order[:, i : i + 1], 1
                )[:, 0]
            else:
                columns[f"feature_{i + 1}"] = np.full(len(values), None, dtype=object)
                columns[f"contribution_{i + 1}"] = np.full(len(values), np.nan)
        return pd.DataFrame(columns, index=self.row_index)

    def mean_abs(self) -> pd.Series:
        """Mean absolute contribution per feature, largest first."""
        values = np.asarray(self.values, dtype=np.float64).reshape(
            len(self.row_index), len(self.features)
        )
        mean = np.abs(values).mean(axis=0) if len(values) else np.zeros(len(self.features))
        return pd.Series(mean, index=list(self.features), name="mean_abs_contribution").sort_values(
            ascending=False, kind="stable"
        )


# ------------------------------------------------------------------------- public API
def explain(
    model: Any,
    frame: pd.DataFrame,
    *,
    method: str = "auto",
    background: pd.DataFrame | None = None,
    max_background: int = 100,
    max_evals: int | None = None,
    random_state: int = 0,
) -> Explanation:
    """Explain ``model.decision_function`` for the rows of ``frame``.

    Parameters
    ----------
    model : AnomalyModel
        A fitted model (``preprocessor_``, ``detector_``, ``features``).
    frame : DataFrame
        The rows to explain, with the model's feature columns. A model with derived features:
        pass rows already derived within their partition (``model.derive(partition, history)``
        then the rows to explain); rows without the derived columns are derived on their own.
    method : {"auto", "tree", "kernel", "permutation"}
        See the module docstring for what ``"auto"`` picks.
    background : DataFrame, optional
        Representative rows (same columns) that stand for "feature unknown"; required
        by Kernel and Permutation, ignored by the tree method.
    max_background : int
        At most this many background rows are drawn at random.
    max_evals : int, optional
        Model evaluations per explained row (Kernel: coalitions, Permutation:
        ``max_evals // (2M + 1)`` permutations). Also the budget rule 2 tests.
    random_state : int
        Seeds the background sample and the explainers' sampling.

    Returns
    -------
    Explanation
    """
    start = time.perf_counter()
    _check_arguments(model, method, max_background)
    detector_name = str(getattr(model, "detector", type(model.detector_).__name__))
    X = _matrix(model, frame)
    features, groups = _input_features(model, list(model.preprocessor_.feature_names_out_))
    forest = isolation_forest_of(model.detector_)
    chosen = _choose_method(method, forest, X.shape[1], max_evals, detector_name)
    if chosen == "tree":
        raw, base, note = explain_tree(forest, X)
        background_rows = int(getattr(forest, "max_samples_", 0))
    else:
        B = _background_matrix(
            model, background, chosen, detector_name, max_background, random_state
        )
        background_rows = len(B)
        score = _checked_scorer(model.detector_, detector_name)
        score(B)  # fail early, with the detector's name, if it cannot score the background
        sampled = explain_kernel if chosen == "kernel" else explain_permutation
        raw, base, note = sampled(score, X, B, max_evals, random_state)
        note = f"{note}; {X.shape[1]} preprocessed columns, {background_rows} background rows"

    values = raw @ groups if len(raw) else np.zeros((0, len(features)))
    return Explanation(
        method=chosen,
        features=features,
        values=values,
        base_value=float(base),
        row_index=frame.index,
        seconds=time.perf_counter() - start,
        background_rows=background_rows,
        note=note,
    )


def summary_plot_markdown(explanation: Explanation, title: str) -> str:
    """Mean |contribution| per feature as a horizontal bar chart, a markdown image (base64 PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = explanation.mean_abs().iloc[::-1]  # largest at the top
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.28 * max(len(mean), 1)), dpi=90)
    ax.barh(list(mean.index), mean.to_numpy(), color="#4f6bed")
    ax.set_xlabel(f"mean |contribution| ({explanation.method}, {len(explanation.row_index)} rows)")
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f"![feature contributions](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


# ---------------------------------------------------------------------------- helpers
def _check_arguments(model: Any, method: str, max_background: int) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if not hasattr(model, "detector_") or not hasattr(model, "preprocessor_"):
        raise ValueError("model is not fitted: call AnomalyModel.fit(frame) before explain()")
    if max_background < 1:
        raise ValueError(f"max_background must be at least 1, got {max_background}")


def _choose_method(
    method: str, forest: Any, M: int, max_evals: int | None, detector_name: str
) -> str:
    """The method that runs: ``method``, or for ``"auto"`` tree, else exact kernel, else permutation."""
    if method == "tree" and forest is None:
        raise ValueError(
            f"method='tree' needs an isolation forest (IForest or IsolationForest); detector "
            f"{detector_name!r} is not one: use method='auto', 'kernel' or 'permutation'"
        )
    if method != "auto":
        return method
    if forest is not None:
        return "tree"
    budget = DEFAULT_KERNEL_BUDGET if max_evals is None else max_evals
    return "kernel" if M <= 30 and 2**M - 2 <= budget else "permutation"


def _background_matrix(
    model: Any,
    background: pd.DataFrame | None,
    chosen: str,
    detector_name: str,
    max_background: int,
    random_state: int,
) -> np.ndarray:
    """The preprocessed background rows the sampled explainers need, at most ``max_background``."""
    if background is None:
        raise ValueError(
            f"method={chosen!r} (detector {detector_name!r}) needs background=: a frame of "
            "representative rows with the model's feature columns (the model stores no "
            "training data); e.g. the partition's unflagged rows"
        )
    if len(background) == 0:
        raise ValueError("background= is empty: pass at least one representative row")
    B = _matrix(model, background)
    if len(B) > max_background:
        pick = np.random.default_rng(random_state).choice(
            len(B), size=max_background, replace=False
        )
        B = B[np.sort(pick)]
    return B


def _matrix(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """The preprocessed rows of ``frame``; a model with derived features derives them first unless
    ``frame`` already holds them (rows derived inside their whole partition, with its warm-up: a
    subset of rows cannot be derived alone, its lags would skip the rows left out)."""
    derivation = getattr(model, "derivation", None)
    if derivation is not None and not set(derivation.derived_names) <= set(frame.columns):
        frame = model.derive(frame)
    return cast("np.ndarray", model.preprocessor_.transform(frame))


def _input_features(model: Any, columns: list[str]) -> tuple[list[str], np.ndarray]:
    """Input feature names and the (columns x features) 0/1 matrix that sums columns into them.

    A derived column (``temp__rolling_zscore_12``, ``hour_sin``) is a feature in its own right:
    its attribution is not folded into its source column, whose name the model's derivation
    keeps (:meth:`~pynomaly_core.features.derived.Derivation.sources`)."""
    specs = getattr(model, "input_features", None) or model.features
    features = [f.name if hasattr(f, "name") else f["name"] for f in specs]
    position = {name: j for j, name in enumerate(features)}
    groups = np.zeros((len(columns), len(features)))
    for i, column in enumerate(columns):
        source = column.split("=", 1)[0]
        if source not in position:
            raise ValueError(
                f"preprocessed column {column!r} belongs to no model feature {features}"
            )
        groups[i, position[source]] = 1.0
    return features, groups


def isolation_forest_of(detector: Any) -> Any:
    """The fitted scikit-learn ``IsolationForest`` behind a detector, else ``None``.

    Asks the detector (:meth:`~pynomaly_core.detectors.base.BaseDetector.isolation_forest`):
    the registry's ``IForest`` (PyOD, the default) and ``IsolationForest`` (scikit-learn)
    adapters return their forest, whose mean path length their score decreases with; every
    other detector, including adapters whose scores are not the forest's alone (e.g.
    transductive ones), and objects outside the detector contract give ``None``.
    """
    capability = getattr(detector, "isolation_forest", None)
    return capability() if callable(capability) else None


def _checked_scorer(detector: Any, name: str) -> Scorer:
    def score(Z: np.ndarray) -> np.ndarray:
        try:
            out = np.asarray(
                detector.decision_function(np.asarray(Z, dtype=np.float64)), dtype=np.float64
            )
        except Exception as exc:  # re-raised with the detector's name
            raise ExplanationError(
                f"detector {name!r} failed to score the perturbed rows a sampled SHAP explainer "
                f"needs ({type(exc).__name__}: {exc}); it cannot be explained with Kernel/Permutation"
            ) from exc
        if not np.all(np.isfinite(out)):
            raise ExplanationError(
                f"detector {name!r} returned NaN or infinite scores for perturbed rows; its "
                "explanations would be meaningless"
            )
        return out

    return score
