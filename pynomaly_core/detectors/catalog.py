"""The registry's entries: one line of data per detector.

Cost classes use ``n`` rows and ``d`` features for fit / score time, e.g.
``"fit O(n log n), score O(n)"``.
"""

from __future__ import annotations

from pynomaly_core.detectors.registry import DetectorSpec, register

PYOD = "pynomaly_core.detectors.adapters:PyODDetector"
PYOD_SEMI = "pynomaly_core.detectors.adapters:SemiSupervisedPyODDetector"
SKLEARN = "pynomaly_core.detectors.adapters:SklearnDetector"


def _pyod(name: str, module: str, cls: str, family: str, cost: str, description: str, **defaults) -> None:
    register(
        DetectorSpec(
            name=name,
            family=family,
            framework="pyod",
            target=PYOD,
            wraps=f"pyod.models.{module}:{cls}",
            cost_class=cost,
            defaults=defaults,
            description=description,
        )
    )


def _sklearn(name: str, module: str, cls: str, family: str, cost: str, description: str, **defaults) -> None:
    register(
        DetectorSpec(
            name=name,
            family=family,
            framework="sklearn",
            target=SKLEARN,
            wraps=f"sklearn.{module}:{cls}",
            cost_class=cost,
            defaults=defaults,
            description=description,
        )
    )


_pyod("IForest", "iforest", "IForest", "ensemble", "fit O(t·ψ log ψ), score O(n·t log ψ)",
      "Isolation forest: fast, robust default for mixed tabular data.")
_pyod("LOF", "lof", "LOF", "proximity", "fit O(n² d) brute / O(n log n · d) tree, score O(n·k)",
      "Local outlier factor: density relative to neighbours; good for local anomalies.")
_pyod("KNN", "knn", "KNN", "proximity", "fit O(n log n · d), score O(n·k log n)",
      "Distance to the k-th nearest neighbour (method='largest').")
_pyod("ECOD", "ecod", "ECOD", "probabilistic", "fit O(n d), score O(n d)",
      "Empirical-CDF outlier detection: parameter-free, fast, interpretable per feature.")
_pyod("COPOD", "copod", "COPOD", "probabilistic", "fit O(n d), score O(n d)",
      "Copula-based outlier detection: parameter-free and fast.")
_pyod("HBOS", "hbos", "HBOS", "probabilistic", "fit O(n d), score O(n d)",
      "Histogram-based: very fast, assumes feature independence.")
_pyod("PCA", "pca", "PCA", "linear", "fit O(n d²), score O(n d²)",
      "Distance in the minor principal components; drop constant columns first.")
_pyod("OCSVM", "ocsvm", "OCSVM", "linear", "fit O(n²)–O(n³), score O(n·s)",
      "One-class SVM (RBF kernel); slow above ~1e4 rows.")

_sklearn("IsolationForest", "ensemble", "IsolationForest", "ensemble", "fit O(t·ψ log ψ), score O(n·t log ψ)",
         "scikit-learn's isolation forest.")
_sklearn("LocalOutlierFactor", "neighbors", "LocalOutlierFactor", "proximity",
         "fit O(n log n · d), score O(n·k log n)", "scikit-learn LOF in novelty mode.")
_sklearn("OneClassSVM", "svm", "OneClassSVM", "linear", "fit O(n²)–O(n³), score O(n·s)",
         "scikit-learn one-class SVM.")
