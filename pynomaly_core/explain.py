"""SHAP explanations of the rows a fitted :class:`~pynomaly_core.model.AnomalyModel` flags.

:func:`explain` attributes ``model.decision_function`` (higher = more anomalous) of each
row of a frame — typically the top anomalies of a scored partition — to the feed's
*input* features. Attributions are computed on the detector's input, the preprocessed
matrix (``col`` for numeric features, ``col=category`` one-hot columns), and summed back
per input feature: the one-hot columns of a categorical feature add up to that feature,
numeric columns map one to one, and columns the preprocessor dropped as constant get 0.
Positive contributions push a row towards anomalous.

Which method runs (``method="auto"``), in this order:

1. **tree** — the fitted detector is an isolation forest: PyOD's ``IForest`` (the
   registry's default; its scikit-learn ``IsolationForest`` is reached through the
   adapter as ``model.detector_.estimator_.detector_``) or the registry's scikit-learn
   ``IsolationForest`` (``model.detector_.estimator_``). These are exact path-dependent
   TreeSHAP values (what ``shap.TreeExplainer(forest)`` computes, no background needed:
   the training rows that went down each branch are the background), computed by
   :func:`isolation_forest_shap`, our own implementation for isolation trees (tables
   per leaf, compiled with numba; agrees with ``shap.TreeExplainer`` to 1e-14 and is
   about 20x faster than shap's C++ TreeSHAP on the default forest: 13-15 thousand
   rows/s against 730 on one core, see ``benchmarks/explain.py``). Where numba is
   missing, or the per-leaf tables would pass ``MAX_TABLE_ENTRIES`` (deep trees with
   many distinct features per path: ``max_samples`` in the thousands and more than
   about 8 columns), shap's own ``TreeExplainer`` computes the same values, more
   slowly; ``note`` says so.

   *Units*: an isolation forest scores a row by the mean path length ``h(x)`` of its
   trees (shorter = more anomalous); every detector score is a decreasing function of it
   (PyOD and scikit-learn: ``2 ** (-h / c(psi))`` up to a constant). TreeSHAP attributes
   ``h``; the contributions here are **its negation, in tree levels** (number of splits,
   averaged over the trees): ``+1.5`` means the feature shortens the row's mean
   isolation path by 1.5 splits. ``base_value`` is minus the training rows' expected
   path length, and ``values.sum(axis=1) + base_value == -h(x)`` exactly.

2. **kernel** — any other detector, when the evaluation budget covers every coalition
   of the ``M`` preprocessed columns (``2**M - 2 <= max_evals``, default budget 256, i.e.
   ``M <= 8``): ``shap.KernelExplainer`` then enumerates all coalitions and returns the
   *exact* Shapley values of the background game.

3. **permutation** — otherwise: ``shap.PermutationExplainer`` (antithetic permutations)
   with ``max_evals`` (default ``4 * (2M + 1)``, four permutations forward and back).
   Chosen over Kernel by measurement (``benchmarks/explain.py --fidelity``: demo feed,
   IForest, 100 background rows, mean relative error against a reference, same rows): at
   ``M = 32`` Permutation has 2.9 % error at 65 evaluations (28 rows/s) and 1.5 % at 260
   (12 rows/s), Kernel 3.7 % at 260 and 1.9 % at 520 (7 rows/s) — Permutation needs 2-4x
   fewer evaluations for the same error; at ``M = 8`` Permutation has 4.1 % at 68
   evaluations (14 rows/s), Kernel 5.3 % at 136 (17 rows/s) and 0 % with all 254
   coalitions (12 rows/s) — hence rule 2. The default budget ``4 * (2M + 1)`` is 1.5 %
   error at ``M = 32``.

   Kernel and Permutation explain ``decision_function`` itself, so contributions are in
   the detector's score units, relative to ``base_value`` = the mean score of the
   background rows. They need ``background``: the model keeps no training data, so pass
   representative (normal) rows; at most ``max_background`` of them are drawn at random
   (``random_state``) — a random sample rather than k-means centres, which would average
   one-hot indicators into fractions no real row has.

Neither applies — the detector raises on the perturbed rows the sampled explainers
score, or returns non-finite scores for them — :class:`ExplanationError` (a
``ValueError``) names the detector and the cause; nothing falls back silently.
``method="tree"`` on a detector that is not an isolation forest, and a missing
``background`` for Kernel/Permutation, raise ``ValueError`` too.

shap is imported only inside the functions that need it (``pip install
'pynomaly[explain]'``); this module imports without it.
"""

from __future__ import annotations

import base64
import io
import math
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

METHODS = ("auto", "tree", "kernel", "permutation")
#: evaluation budget below which Kernel enumerates every coalition (exact): M <= 8
DEFAULT_KERNEL_BUDGET = 256
#: permutations (each forward and backward) the Permutation explainer runs by default
DEFAULT_PERMUTATIONS = 4
#: largest per-forest table (float64 entries) of :func:`isolation_forest_shap`
MAX_TABLE_ENTRIES = 50_000_000
#: fewest rows :func:`isolation_forest_shap` spreads over numba's threads
PARALLEL_MIN_ROWS = 2048
_EXTRA_HINT = "pip install 'pynomaly[explain]'"


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
        values = np.asarray(self.values, dtype=np.float64).reshape(len(self.row_index), len(self.features))
        order = np.argsort(-values, axis=1, kind="stable")[:, :k]
        names = np.asarray(self.features, dtype=object)
        columns: dict[str, Any] = {}
        for i in range(k):
            if i < order.shape[1]:
                columns[f"feature_{i + 1}"] = names[order[:, i]] if len(names) else []
                columns[f"contribution_{i + 1}"] = np.take_along_axis(values, order[:, i : i + 1], 1)[:, 0]
            else:
                columns[f"feature_{i + 1}"] = np.full(len(values), None, dtype=object)
                columns[f"contribution_{i + 1}"] = np.full(len(values), np.nan)
        return pd.DataFrame(columns, index=self.row_index)

    def mean_abs(self) -> pd.Series:
        """Mean absolute contribution per feature, largest first."""
        values = np.asarray(self.values, dtype=np.float64).reshape(len(self.row_index), len(self.features))
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
        The rows to explain, with the model's feature columns.
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
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if not hasattr(model, "detector_") or not hasattr(model, "preprocessor_"):
        raise ValueError("model is not fitted: call AnomalyModel.fit(frame) before explain()")
    if max_background < 1:
        raise ValueError(f"max_background must be at least 1, got {max_background}")
    detector_name = str(getattr(model, "detector", type(model.detector_).__name__))
    X = model.preprocessor_.transform(frame)
    columns = list(model.preprocessor_.feature_names_out_)
    features, groups = _input_features(model, columns)
    M = X.shape[1]

    forest = isolation_forest_of(model.detector_)
    if method == "tree" and forest is None:
        raise ValueError(
            f"method='tree' needs an isolation forest (IForest or IsolationForest); detector "
            f"{detector_name!r} is not one: use method='auto', 'kernel' or 'permutation'"
        )
    chosen = method
    if method == "auto":
        if forest is not None:
            chosen = "tree"
        else:
            budget = DEFAULT_KERNEL_BUDGET if max_evals is None else max_evals
            chosen = "kernel" if M <= 30 and 2**M - 2 <= budget else "permutation"

    if chosen == "tree":
        raw, base, note = _explain_tree(forest, X)
        background_rows = int(getattr(forest, "max_samples_", 0))
    else:
        if background is None:
            raise ValueError(
                f"method={chosen!r} (detector {detector_name!r}) needs background=: a frame of "
                "representative rows with the model's feature columns (the model stores no "
                "training data); e.g. the partition's unflagged rows"
            )
        if len(background) == 0:
            raise ValueError("background= is empty: pass at least one representative row")
        B = model.preprocessor_.transform(background)
        if len(B) > max_background:
            pick = np.random.default_rng(random_state).choice(len(B), size=max_background, replace=False)
            B = B[np.sort(pick)]
        background_rows = len(B)
        score = _checked_scorer(model.detector_, detector_name)
        score(B)  # fail early, with the detector's name, if it cannot score the background
        if chosen == "kernel":
            raw, base, note = _explain_kernel(score, X, B, max_evals, random_state)
        else:
            raw, base, note = _explain_permutation(score, X, B, max_evals, random_state)
        note = f"{note}; {M} preprocessed columns, {background_rows} background rows"

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
def _require_shap() -> Any:
    try:
        import shap
    except ImportError as exc:
        raise ImportError(f"explanations need shap, which is not installed: {_EXTRA_HINT}") from exc
    return shap


def _input_features(model: Any, columns: list[str]) -> tuple[list[str], np.ndarray]:
    """Input feature names and the (columns x features) 0/1 matrix that sums columns into them."""
    features = [f.name if hasattr(f, "name") else f["name"] for f in model.features]
    position = {name: j for j, name in enumerate(features)}
    groups = np.zeros((len(columns), len(features)))
    for i, column in enumerate(columns):
        source = column.split("=", 1)[0]
        if source not in position:
            raise ValueError(f"preprocessed column {column!r} belongs to no model feature {features}")
        groups[i, position[source]] = 1.0
    return features, groups


def isolation_forest_of(detector: Any) -> Any:
    """The fitted scikit-learn ``IsolationForest`` behind a registry detector, else ``None``.

    PyOD's ``IForest`` keeps it as ``detector_`` (its ``decision_function`` is minus
    scikit-learn's); the registry's ``IsolationForest`` adapter holds it as
    ``estimator_`` (its score is minus ``score_samples``). Both scores decrease with the
    forest's mean path length. Subclassed adapters (e.g. transductive ones) are not
    matched, since their scores are not the forest's.
    """
    from sklearn.ensemble import IsolationForest

    from pynomaly_core.detectors.adapters import PyODDetector, SklearnDetector

    estimator = getattr(detector, "estimator_", None)
    if type(detector) is SklearnDetector and isinstance(estimator, IsolationForest):
        return estimator
    if type(detector) is PyODDetector and type(estimator).__name__ == "IForest":
        from pyod.models.iforest import IForest

        inner = getattr(estimator, "detector_", None)
        if isinstance(estimator, IForest) and isinstance(inner, IsolationForest):
            return inner
    return None


def _checked_scorer(detector: Any, name: str):
    def score(Z: np.ndarray) -> np.ndarray:
        try:
            out = np.asarray(detector.decision_function(np.asarray(Z, dtype=np.float64)), dtype=np.float64)
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


def _explain_kernel(score, X, B, max_evals, random_state):
    shap = _require_shap()
    from pynomaly_core.detectors.adapters import seeded

    M = X.shape[1]
    full = 2**M - 2 if M <= 30 else None
    nsamples = max_evals if max_evals is not None else min(full or 2**31, 2 * M + 2048)
    exact = full is not None and nsamples >= full
    if len(X) == 0:
        return np.zeros((0, M)), float(score(B).mean()), "kernel: no rows"
    with seeded(random_state), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = shap.KernelExplainer(score, B)
        raw = explainer.shap_values(X, nsamples=nsamples, l1_reg=False, silent=True)
    raw = np.asarray(raw, dtype=np.float64).reshape(len(X), M)
    how = "all coalitions (exact)" if exact else f"{nsamples} sampled coalitions"
    return raw, float(np.ravel(explainer.expected_value)[0]), (
        f"kernel SHAP of decision_function (score units) over {how}"
    )


def _explain_permutation(score, X, B, max_evals, random_state):
    shap = _require_shap()
    from pynomaly_core.detectors.adapters import seeded

    M = X.shape[1]
    evals = max_evals if max_evals is not None else DEFAULT_PERMUTATIONS * (2 * M + 1)
    if evals < 2 * M + 1:
        raise ValueError(f"max_evals={evals} is too low for method='permutation': it needs at least 2M+1 = {2 * M + 1}")
    if len(X) == 0:
        return np.zeros((0, M)), float(score(B).mean()), "permutation: no rows"
    with seeded(random_state), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masker = shap.maskers.Independent(B, max_samples=len(B))
        explainer = shap.PermutationExplainer(score, masker, seed=random_state)
        result = explainer(X, max_evals=evals, silent=True)
    raw = np.asarray(result.values, dtype=np.float64).reshape(len(X), M)
    base = float(np.ravel(result.base_values)[0])
    return raw, base, (
        f"permutation SHAP of decision_function (score units), {evals // (2 * M + 1)} antithetic permutations"
    )


def _explain_tree(forest, X):
    units = ("tree SHAP (path-dependent) of the forest's mean path length, negated: contributions "
             "in tree levels (splits saved), base_value = -expected path length")
    if _numba() is not None:
        try:
            raw, base = isolation_forest_shap(forest, X)
            return raw, base, units
        except _TablesTooLarge as exc:
            fallback = f"; shap.TreeExplainer used: {exc}"
    else:
        fallback = "; numba unavailable: shap.TreeExplainer used"
    shap = _require_shap()
    explainer = shap.TreeExplainer(forest)
    raw = np.asarray(explainer.shap_values(X), dtype=np.float64).reshape(X.shape)
    return -raw, -float(np.ravel(explainer.expected_value)[0]), units + fallback


# ----------------------------------------------- path-dependent TreeSHAP for isolation trees
#
# For one tree, path-dependent TreeSHAP explains v(S) = sum over leaves l of
# value_l * prod_{j in P_l} (x_j known ? o_lj : z_lj), where P_l are the distinct features
# split on along the root-to-leaf path, o_lj = 1 if x satisfies every split on j on that
# path (else 0) and z_lj is the product of the cover fractions (child / parent training
# rows) of those splits. Each leaf is a product game whose Shapley value for i in P_l is
#     value_l * (o_li - z_li) * sum_{S subset of O_l - i} w(|S|, d) prod_{j in P_l - S - i} z_lj
# with d = |P_l|, w(s, d) = s! (d - s - 1)! / d! and O_l the features x agrees with. It
# depends on x only through the d-bit pattern O_l, so a table of d * 2**d numbers per leaf
# (at most 8 * 256 for the default max_samples = 256, depth <= 8) turns every row into one
# pass over the nodes (which split x passes) and d table reads per leaf: O(T L d) per row
# instead of TreeSHAP's O(T L D^2).

_TABLE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_KERNELS: dict[str, Any] = {}


class _TablesTooLarge(Exception):
    pass


def _numba() -> Any:
    try:
        import numba
    except ImportError:
        return None
    return numba


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n) of Liu et al. exactly as scikit-learn computes it."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _paths(left, right, feature, cover, max_d, depth, path_d, path_f, path_z, bit):  # pragma: no cover
    """Per node: depth, distinct path features (first-appearance order), zero fractions, split bit."""
    # nodes are numbered in preorder (children after their parent)
    for p in range(left.shape[0]):
        if left[p] < 0:
            continue
        f = feature[p]
        d = path_d[p]
        k = -1
        for j in range(d):
            if path_f[p, j] == f:
                k = j
                break
        nd = d
        if k < 0:
            k = d
            nd = d + 1
        bit[p] = k
        for side in range(2):
            c = left[p] if side == 0 else right[p]
            for j in range(max_d):
                path_f[c, j] = path_f[p, j]
                path_z[c, j] = path_z[p, j]
            path_f[c, k] = f
            path_z[c, k] *= cover[c] / cover[p]
            path_d[c] = nd
            depth[c] = depth[p] + 1


def _tables(leaves, path_d, path_z, value, offsets, out):  # pragma: no cover - numba
    """Fill each leaf's table (2**d patterns x d features); returns the tree's expected value."""
    base = 0.0
    for li in range(leaves.shape[0]):
        node = leaves[li]
        d = path_d[node]
        n_masks = 1 << d
        off = offsets[li]
        v = value[node]
        all_z = 1.0
        for j in range(d):
            all_z *= path_z[node, j]
        base += v * all_z
        if d == 0:
            continue
        w = np.empty(d)
        for s in range(d):
            w[s] = math.exp(math.lgamma(s + 1) + math.lgamma(d - s) - math.lgamma(d + 1))
        g = np.empty(n_masks)
        for k in range(d):
            kb = 1 << k
            for S in range(n_masks):
                if S & kb:
                    g[S] = 0.0
                    continue
                prod = 1.0
                cnt = 0
                for j in range(d):
                    if (S >> j) & 1:
                        cnt += 1
                    elif j != k:
                        prod *= path_z[node, j]
                g[S] = w[cnt] * prod
            for j in range(d):  # g[A] = sum of g over the subsets of A
                if j == k:
                    continue
                jb = 1 << j
                for S in range(n_masks):
                    if S & jb:
                        g[S] += g[S ^ jb]
            zk = path_z[node, k]
            for O in range(n_masks):
                o = 1.0 if O & kb else 0.0
                out[off + O * d + k] = v * (o - zk) * g[O & ~kb]
    return base


def _rows(XT, node_off, n_nodes, internal, internal_off, leaves, leaf_off, feature, threshold,
          left, right, bit, leaf_d, leaf_foff, leaf_feats, leaf_toff, tab, block):  # pragma: no cover
    """SHAP values of every row (``XT`` is features x rows); blocks of rows run in parallel.

    Per block and tree: which side of every split each row takes (as the bit pattern of
    disagreements carried down the tree), then ``d`` table reads per leaf and row.
    """
    n_out, n = XT.shape
    out = np.zeros((n, n_out))
    n_trees = node_off.shape[0]
    max_nodes = 1
    for t in range(n_trees):
        max_nodes = max(max_nodes, n_nodes[t])
    n_blocks = (n + block - 1) // block
    for b in prange(n_blocks):
        lo = b * block
        nb = min(n, lo + block) - lo
        masks = np.empty((max_nodes, block), np.int64)
        acc = np.zeros((n_out, block))
        for t in range(n_trees):  # trees outside rows: a tree's tables stay in cache
            base = node_off[t]
            for r in range(nb):
                masks[0, r] = -1
            for ii in range(internal_off[t], internal_off[t + 1]):
                node = internal[ii]
                j = node - base
                f = feature[node]
                thr = threshold[node]
                kb = np.int64(1) << bit[node]
                lc = left[node]
                rc = right[node]
                for r in range(nb):
                    m = masks[j, r]
                    go = np.int64(XT[f, lo + r] <= thr)
                    masks[lc, r] = m & ~(kb * (1 - go))
                    masks[rc, r] = m & ~(kb * go)
            for li in range(leaf_off[t], leaf_off[t + 1]):
                node = leaves[li]
                j = node - base
                d = leaf_d[node]
                dm = (np.int64(1) << d) - 1
                toff = leaf_toff[node]
                foff = leaf_foff[node]
                for k in range(d):
                    f = leaf_feats[foff + k]
                    for r in range(nb):
                        acc[f, r] += tab[toff + (masks[j, r] & dm) * d + k]
        for f in range(n_out):
            for r in range(nb):
                out[lo + r, f] = acc[f, r]
    return out


prange = range  # numba.prange once compiled


def _compile() -> dict[str, Any]:
    """Compile the kernels with numba (cached on disk by numba after the first run)."""
    if _KERNELS:
        return _KERNELS
    numba = _numba()
    globals()["prange"] = numba.prange
    _KERNELS.update(
        paths=numba.njit(cache=True)(_paths),
        tables=numba.njit(cache=True)(_tables),
        rows=numba.njit(parallel=True, cache=True)(_rows),
    )
    return _KERNELS


def _forest_tables(forest: Any) -> tuple:
    """Flattened trees and per-leaf tables of ``forest`` (cached per fitted forest)."""
    estimators = forest.estimators_
    cached = _TABLE_CACHE.get(forest)
    if cached is not None and cached[0] is estimators:
        return cached[1]
    k = _compile()
    n_trees = len(estimators)
    node_off, n_nodes = [], []
    feature, threshold, left, right, bit = [], [], [], [], []
    leaf_d, leaf_foff, leaf_toff = [], [], []
    leaf_feats, tabs = [], []
    internal_ids, leaf_ids = [], []
    n_nodes_total = foff_total = toff_total = 0
    total_entries = 0
    base = 0.0
    for est, feats in zip(estimators, forest.estimators_features_):
        tree = est.tree_
        nn = tree.node_count
        lc = tree.children_left.astype(np.int64)
        rc = tree.children_right.astype(np.int64)
        internal = lc >= 0
        if np.any(lc[internal] <= np.nonzero(internal)[0]) or np.any(rc[internal] <= np.nonzero(internal)[0]):
            raise _TablesTooLarge("tree nodes are not in preorder")
        f_global = np.where(internal, np.asarray(feats, dtype=np.int64)[np.maximum(tree.feature, 0)], -1)
        cover = tree.weighted_n_node_samples.astype(np.float64)
        max_d = max(1, int(tree.max_depth))
        depth = np.zeros(nn, dtype=np.int64)
        path_d = np.zeros(nn, dtype=np.int64)
        path_f = np.full((nn, max_d), -1, dtype=np.int64)
        path_z = np.ones((nn, max_d))
        tbit = np.zeros(nn, dtype=np.int64)
        k["paths"](lc, rc, f_global, cover, max_d, depth, path_d, path_f, path_z, tbit)
        leaves = np.nonzero(~internal)[0]
        d = path_d[leaves]
        sizes = d * (1 << d)
        total_entries += int(sizes.sum())
        if total_entries > MAX_TABLE_ENTRIES:
            raise _TablesTooLarge(
                f"per-leaf tables would exceed {MAX_TABLE_ENTRIES:,} entries (trees up to depth "
                f"{int(d.max())} in distinct features)"
            )
        # leaf value: depth + c(leaf size), averaged over trees; negated so positive = anomalous
        value = -(depth + _average_path_length(tree.n_node_samples)) / n_trees
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        tab = np.empty(int(sizes.sum()))
        base += k["tables"](leaves.astype(np.int64), path_d, path_z, value, offsets, tab)
        l_d = np.zeros(nn, dtype=np.int64)
        l_foff = np.zeros(nn, dtype=np.int64)
        l_toff = np.zeros(nn, dtype=np.int64)
        l_d[leaves] = d
        feat_counts = d
        l_foff[leaves] = foff_total + np.concatenate([[0], np.cumsum(feat_counts)[:-1]])
        l_toff[leaves] = toff_total + offsets
        leaf_feats.append(path_f[leaves][np.arange(max_d) < d[:, None]])
        internal_ids.append(n_nodes_total + np.nonzero(internal)[0])
        leaf_ids.append(n_nodes_total + leaves)
        tabs.append(tab)
        node_off.append(n_nodes_total)
        n_nodes.append(nn)
        feature.append(np.maximum(f_global, 0))
        threshold.append(tree.threshold.astype(np.float64))
        left.append(np.where(internal, lc, -1))
        right.append(np.where(internal, rc, -1))
        bit.append(tbit)
        leaf_d.append(l_d)
        leaf_foff.append(l_foff)
        leaf_toff.append(l_toff)
        n_nodes_total += nn
        foff_total += int(feat_counts.sum())
        toff_total += int(sizes.sum())

    def counts(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)

    result = (
        np.array(node_off, dtype=np.int64), np.array(n_nodes, dtype=np.int64),
        np.concatenate(internal_ids).astype(np.int64), counts(internal_ids),
        np.concatenate(leaf_ids).astype(np.int64), counts(leaf_ids),
        np.concatenate(feature), np.concatenate(threshold), np.concatenate(left),
        np.concatenate(right), np.concatenate(bit), np.concatenate(leaf_d),
        np.concatenate(leaf_foff), np.concatenate(leaf_feats).astype(np.int64),
        np.concatenate(leaf_toff), np.concatenate(tabs), float(base),
    )
    _TABLE_CACHE[forest] = (estimators, result)
    return result


def isolation_forest_shap(forest: Any, X: np.ndarray, *, block: int = 64) -> tuple[np.ndarray, float]:
    """Exact path-dependent TreeSHAP of a fitted scikit-learn ``IsolationForest``, negated.

    Returns ``(values, base_value)`` with ``values`` of shape ``X.shape``: minus the SHAP
    values of the forest's mean path length (what ``shap.TreeExplainer(forest)`` explains),
    so positive = shortens the path = more anomalous, and ``values.sum(1) + base_value``
    is minus the mean path length of each row. Needs numba; rows run in parallel on
    numba's threads.
    """
    if _numba() is None:
        raise ImportError(f"isolation_forest_shap needs numba (installed with shap): {_EXTRA_HINT}")
    k = _compile()
    *arrays, base = _forest_tables(forest)
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != forest.n_features_in_:
        raise ValueError(f"X must have shape (rows, {forest.n_features_in_}), got {X.shape}")
    # scikit-learn compares float32 inputs with float64 thresholds; features x rows for the kernel
    XT = np.ascontiguousarray(X.astype(np.float32).T, dtype=np.float64)
    numba = _numba()
    threads = numba.get_num_threads()
    # waking numba's thread pool costs milliseconds: small batches run on the calling thread
    numba.set_num_threads(1 if len(X) < PARALLEL_MIN_ROWS else threads)
    try:
        return k["rows"](XT, *arrays, block), base
    finally:
        numba.set_num_threads(threads)
