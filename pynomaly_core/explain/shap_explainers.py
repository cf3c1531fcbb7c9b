"""The paths of :func:`pynomaly_core.explain.explain` that run shap's own explainers.

Kernel and Permutation SHAP of any detector's ``decision_function`` (given as ``score``,
already wrapped to name the detector when it fails), and ``shap.TreeExplainer``: the
tree method's fallback where our isolation-forest TreeSHAP cannot run
(:mod:`pynomaly_core.explain.forest`). shap is imported inside these functions only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

#: permutations (each forward and backward) the Permutation explainer runs by default
DEFAULT_PERMUTATIONS = 4
EXTRA_HINT = "pip install 'pynomaly[explain]'"

Scorer = Callable[[np.ndarray], np.ndarray]


def require_shap() -> Any:
    """The shap module, or an ``ImportError`` naming the extra that installs it."""
    try:
        import shap
    except ImportError as exc:
        raise ImportError(f"explanations need shap, which is not installed: {EXTRA_HINT}") from exc
    return shap


def explain_kernel(
    score: Scorer, X: np.ndarray, B: np.ndarray, max_evals: int | None, random_state: int
) -> tuple[np.ndarray, float, str]:
    """``(values, base_value, note)`` of Kernel SHAP over background ``B``; exact with every coalition."""
    shap = require_shap()
    from pynomaly_core.detectors.seeding import seeded

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
    return (
        raw,
        float(np.ravel(explainer.expected_value)[0]),
        (f"kernel SHAP of decision_function (score units) over {how}"),
    )


def explain_permutation(
    score: Scorer, X: np.ndarray, B: np.ndarray, max_evals: int | None, random_state: int
) -> tuple[np.ndarray, float, str]:
    """``(values, base_value, note)`` of antithetic Permutation SHAP over background ``B``."""
    shap = require_shap()
    from pynomaly_core.detectors.seeding import seeded

    M = X.shape[1]
    evals = max_evals if max_evals is not None else DEFAULT_PERMUTATIONS * (2 * M + 1)
    if evals < 2 * M + 1:
        raise ValueError(
            f"max_evals={evals} is too low for method='permutation': it needs at least 2M+1 = {2 * M + 1}"
        )
    if len(X) == 0:
        return np.zeros((0, M)), float(score(B).mean()), "permutation: no rows"
    with seeded(random_state), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masker = shap.maskers.Independent(B, max_samples=len(B))
        explainer = shap.PermutationExplainer(score, masker, seed=random_state)
        result = explainer(X, max_evals=evals, silent=True)
    raw = np.asarray(result.values, dtype=np.float64).reshape(len(X), M)
    base = float(np.ravel(result.base_values)[0])
    return (
        raw,
        base,
        (
            f"permutation SHAP of decision_function (score units), {evals // (2 * M + 1)} antithetic permutations"
        ),
    )


def shap_tree_explainer(forest: Any, X: np.ndarray) -> tuple[np.ndarray, float]:
    """``shap.TreeExplainer(forest)``'s SHAP values of ``X`` and expected value (not negated)."""
    shap = require_shap()
    explainer = shap.TreeExplainer(forest)
    raw = np.asarray(explainer.shap_values(X), dtype=np.float64).reshape(X.shape)
    return raw, float(np.ravel(explainer.expected_value)[0])
