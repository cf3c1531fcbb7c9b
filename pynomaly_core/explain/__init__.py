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
   missing, or the per-leaf tables would pass ``forest.MAX_TABLE_ENTRIES`` (deep trees with
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
'pynomaly[explain]'``); this package imports without it.

Modules: :mod:`~pynomaly_core.explain.explanation` (:func:`explain`, the method choice and
the :class:`Explanation`), :mod:`~pynomaly_core.explain.forest` (our TreeSHAP for isolation
forests and its tables) and :mod:`~pynomaly_core.explain.shap_explainers` (shap's Kernel,
Permutation and Tree explainers).
"""

from pynomaly_core.explain.explanation import (
    DEFAULT_KERNEL_BUDGET,
    METHODS,
    Explanation,
    ExplanationError,
    explain,
    isolation_forest_of,
    summary_plot_markdown,
)
from pynomaly_core.explain.forest import isolation_forest_shap
from pynomaly_core.explain.shap_explainers import DEFAULT_PERMUTATIONS

__all__ = [
    "DEFAULT_KERNEL_BUDGET",
    "DEFAULT_PERMUTATIONS",
    "METHODS",
    "Explanation",
    "ExplanationError",
    "explain",
    "isolation_forest_of",
    "isolation_forest_shap",
    "summary_plot_markdown",
]
