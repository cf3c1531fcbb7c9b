"""The registry's entries: one line of data per detector.

Every tabular detector of PyOD 3 and the five outlier detectors of scikit-learn,
plus the :class:`~pynomaly_core.detectors.ensemble.EnsembleDetector`; importing
this module also imports :mod:`pynomaly_core.detectors.catalog_deep` (our own
torch and Keras detectors).

``cost_class`` gives how fit time grows with ``n`` training rows and ``d``
features, and how scoring time grows with ``m`` scored rows (``k`` neighbours,
``t`` trees or members, ``e`` epochs, ``h`` hidden units, ``s`` support vectors).
Defaults differ from the wrapped library's only where the entry's description says
so, apart from progress output, which is off.

Run ``python -m pynomaly_core.detectors.catalog`` to print the Markdown table of
all entries used in ``docs/detectors.md``.
"""

from __future__ import annotations

from typing import Any

# our own torch / Keras / torch-neighbour detectors live in their own catalog module
import pynomaly_core.detectors.catalog_deep  # noqa: F401
from pynomaly_core.detectors.registry import DetectorSpec, register

_ADAPTERS = "pynomaly_core.detectors.adapters"
PYOD = f"{_ADAPTERS}:PyODDetector"
PYOD_SEMI = f"{_ADAPTERS}:SemiSupervisedPyODDetector"
PYOD_PCA = f"{_ADAPTERS}:PCADetector"
PYOD_UNIVARIATE = f"{_ADAPTERS}:UnivariatePyODDetector"
PYOD_TRANSDUCTIVE = f"{_ADAPTERS}:TransductivePyODDetector"
PYOD_DEVNET = f"{_ADAPTERS}:DevNetDetector"
PYOD_MOGAAL = f"{_ADAPTERS}:MOGAALDetector"
SKLEARN = f"{_ADAPTERS}:SklearnDetector"
ENSEMBLE = "pynomaly_core.detectors.ensemble:EnsembleDetector"

#: extras (``pip install 'pynomaly[<extra>]'``) for detectors outside the core install
TORCH: dict[str, Any] = {"extra": "torch", "requires_module": "torch"}
ZOO_COMBO: dict[str, Any] = {"extra": "zoo", "requires_module": "combo"}
ZOO_SUOD: dict[str, Any] = {"extra": "zoo", "requires_module": "suod"}
ZOO_XGBOOST: dict[str, Any] = {"extra": "zoo", "requires_module": "xgboost"}


def _pyod(
    name: str,
    wraps: str,
    family: str,
    cost: str,
    description: str,
    *,
    target: str = PYOD,
    supervision: str = "unsupervised",
    gpu: bool = False,
    extra: str | None = None,
    requires_module: str | None = None,
    **defaults: Any,
) -> None:
    register(
        DetectorSpec(
            name=name,
            family=family,
            framework="pyod",
            target=target,
            wraps=f"pyod.models.{wraps}",
            supervision=supervision,
            gpu=gpu,
            cost_class=cost,
            defaults=defaults,
            extra=extra,
            requires_module=requires_module,
            description=description,
        )
    )


def _sklearn(
    name: str, wraps: str, family: str, cost: str, description: str, **defaults: Any
) -> None:
    register(
        DetectorSpec(
            name=name,
            family=family,
            framework="sklearn",
            target=SKLEARN,
            wraps=wraps,
            cost_class=cost,
            defaults=defaults,
            description=description,
        )
    )


# ------------------------------------------------------------------ probabilistic
_pyod(
    "ECOD",
    "ecod:ECOD",
    "probabilistic",
    "fit O(n·d log n), score O(m·d log n)",
    "Empirical-CDF tail probabilities per feature: parameter-free, fast, explains per feature. "
    "A strong first choice.",
)
_pyod(
    "COPOD",
    "copod:COPOD",
    "probabilistic",
    "fit O(n·d log n), score O(m·d log n)",
    "Copula-based tail probabilities: parameter-free and fast, like ECOD without skewness "
    "correction.",
)
_pyod(
    "HBOS",
    "hbos:HBOS",
    "probabilistic",
    "fit O(n·d), score O(m·d)",
    "Histogram per feature: the fastest detector; assumes independent features, misses "
    "outliers that are only unusual in combination.",
)
_pyod(
    "ABOD",
    "abod:ABOD",
    "probabilistic",
    "fit O(n³·d), score O(m·n²·d)",
    "Exact angle-based outlier degree over all pairs of training rows: robust in high "
    "dimensions but cubic; keep to a few thousand rows, else use FastABOD.",
    method="default",
)
_pyod(
    "FastABOD",
    "abod:ABOD",
    "probabilistic",
    "fit O(n log n·d + n·k²·d), score O(m·(log n + k²)·d)",
    "Angle-based outlier degree over the k nearest neighbours: the practical ABOD.",
    method="fast",
)
_pyod(
    "MAD",
    "mad:MAD",
    "probabilistic",
    "fit O(n), score O(m)",
    "Median absolute deviation (modified z-score) of ONE feature: X must have exactly one "
    "column. For screening a single metric.",
    target=PYOD_UNIVARIATE,
)
_pyod(
    "SOS",
    "sos:SOS",
    "probabilistic",
    "fit O(n²·d), score O(m·n·d); memory O(n²)",
    "Stochastic outlier selection: affinity-based outlier probability; quadratic memory, "
    "keep below ~10⁴ rows. New rows are scored against the training rows.",
    target=PYOD_TRANSDUCTIVE,
)
_pyod(
    "QMCD",
    "qmcd:QMCD",
    "probabilistic",
    "fit O(n²·d), score O(m·n·d)",
    "Quasi-Monte Carlo discrepancy: rows in regions whose uniformity breaks; parameter-free.",
)
_pyod(
    "KDE",
    "kde:KDE",
    "probabilistic",
    "fit O(n log n·d), score O(m·n·d) worst case",
    "Gaussian kernel density: low density = anomalous; needs scaled features and a sensible "
    "bandwidth.",
)
_pyod(
    "Sampling",
    "sampling:Sampling",
    "probabilistic",
    "fit O(s·d), score O(m·s·d) (s = subset_size)",
    "Distance to a small random subset of the training data: very fast, coarse; results vary "
    "with the seed.",
)
_pyod(
    "GMM",
    "gmm:GMM",
    "probabilistic",
    "fit O(e·n·c·d²), score O(m·c·d²) (c = components)",
    "Gaussian mixture likelihood: set n_components to the number of normal modes.",
)

# ------------------------------------------------------------------------ linear
_pyod(
    "PCA",
    "pca:PCA",
    "linear",
    "fit O(n·d² + d³), score O(m·d²)",
    "Weighted distance in the principal components: fast, good for correlated features. "
    "Components with zero variance (rank-deficient data, e.g. one-hot columns) are dropped: "
    "PyOD's PCA would score every new row NaN.",
    target=PYOD_PCA,
)
_pyod(
    "KPCA",
    "kpca:KPCA",
    "linear",
    "fit O(n²·d + n³), score O(m·n·d); memory O(n²)",
    "Reconstruction error in kernel PCA space: non-linear PCA, quadratic memory. "
    "n_components 10 (PyOD keeps all n, which makes the training scores numerical noise).",
    n_components=10,
)
_pyod(
    "MCD",
    "mcd:MCD",
    "linear",
    "fit O(n·d² + d³) per C-step, score O(m·d²)",
    "Robust Mahalanobis distance (minimum covariance determinant): for roughly elliptical "
    "data with n ≫ d.",
)
_pyod(
    "CD",
    "cd:CD",
    "linear",
    "fit O(n·d³), score O(m·d³)",
    "Cook's distance of each row in regressions of every feature on the others: rows with "
    "high influence. New rows are scored against the training rows.",
    target=PYOD_TRANSDUCTIVE,
)
_pyod(
    "OCSVM",
    "ocsvm:OCSVM",
    "linear",
    "fit O(n²·d)–O(n³·d), score O(m·s·d)",
    "One-class SVM with an RBF kernel: smooth boundary around the data; slow above ~10⁴ rows.",
)
_pyod(
    "LMDD",
    "lmdd:LMDD",
    "linear",
    "fit O(i·n·d), score O(m·i·d) (i = n_iter)",
    "Linear method for deviation-based detection: rows whose removal most reduces the "
    "dissimilarity of the data. New rows are scored against the training rows.",
    target=PYOD_TRANSDUCTIVE,
)

# --------------------------------------------------------------------- proximity
_pyod(
    "LOF",
    "lof:LOF",
    "proximity",
    "fit O(n log n·d), score O(m·k log n·d)",
    "Local outlier factor: density relative to the neighbours; finds local anomalies in data "
    "with clusters of different density.",
)
_pyod(
    "COF",
    "cof:COF",
    "proximity",
    "fit O(n²·d), score O(m·n·d); memory O(n²)",
    "Connectivity-based outlier factor: LOF for data on lines and curves (low-density "
    "patterns). New rows are scored against the training rows.",
    target=PYOD_TRANSDUCTIVE,
)
_pyod(
    "CBLOF",
    "cblof:CBLOF",
    "proximity",
    "fit O(e·n·c·d), score O(m·c·d) (c = n_clusters)",
    "Cluster-based local outlier factor: distance to the nearest large k-means cluster; for "
    "clustered data.",
)
_pyod(
    "LOCI",
    "loci:LOCI",
    "proximity",
    "fit O(n³), score O(m·n²); memory O(n²)",
    "Local correlation integral: multi-radius density test; cubic, keep to ~10³ rows. "
    "New rows are scored against the training rows.",
    target=PYOD_TRANSDUCTIVE,
)
_pyod(
    "KNN",
    "knn:KNN",
    "proximity",
    "fit O(n log n·d), score O(m·k log n·d)",
    "Distance to the k-th nearest neighbour (method='largest'): simple and strong for global "
    "outliers.",
    method="largest",
)
_pyod(
    "AvgKNN",
    "knn:KNN",
    "proximity",
    "fit O(n log n·d), score O(m·k log n·d)",
    "Mean distance to the k nearest neighbours: smoother than KNN.",
    method="mean",
)
_pyod(
    "MedKNN",
    "knn:KNN",
    "proximity",
    "fit O(n log n·d), score O(m·k log n·d)",
    "Median distance to the k nearest neighbours: robust to a few near neighbours.",
    method="median",
)
_pyod(
    "SOD",
    "sod:SOD",
    "proximity",
    "fit O(n²·d), score O(m·n·d)",
    "Subspace outlier degree: deviation in the subspace spanned by shared-nearest-neighbour "
    "references; for high-dimensional data. New rows are scored against the training rows.",
    target=PYOD_TRANSDUCTIVE,
)
_pyod(
    "ROD",
    "rod:ROD",
    "proximity",
    "fit O(n·d³), score O(m·d³)",
    "Rotation-based outlier detection over all 3-D subspaces: parameter-free; cost grows with "
    "d³, keep d below ~20.",
)
_pyod(
    "HDBSCAN",
    "hdbscan:HDBSCAN",
    "proximity",
    "fit O(n log n·d)–O(n²·d), score O(m·k log n·d)",
    "Weak HDBSCAN cluster membership: for clustered data. New rows get the distance-weighted "
    "training scores of their neighbours, so they never score above the training extremes.",
)

# ---------------------------------------------------------------------- ensemble
_pyod(
    "IForest",
    "iforest:IForest",
    "ensemble",
    "fit O(t·ψ log ψ), score O(m·t log ψ) (ψ = max_samples)",
    "Isolation forest: fast, robust default for mixed tabular data.",
)
_pyod(
    "INNE",
    "inne:INNE",
    "ensemble",
    "fit O(t·ψ²·d), score O(m·t·ψ·d) (ψ = max_samples)",
    "Isolation with nearest-neighbour ensembles: like IForest but also finds local anomalies "
    "and axis-parallel blind spots.",
)
_pyod(
    "LODA",
    "loda:LODA",
    "ensemble",
    "fit O(t·n·d), score O(m·t·d)",
    "Lightweight on-line detector of anomalies: histograms of random 1-D projections; very "
    "fast, suits streaming-sized batches.",
)
_pyod(
    "FeatureBagging",
    "feature_bagging:FeatureBagging",
    "ensemble",
    "fit O(t·n log n·d), score O(m·t·k log n·d)",
    "LOF (or base_estimator) on random feature subsets, averaged: for many noisy features.",
    **ZOO_COMBO,
)
_pyod(
    "LSCP",
    "lscp:LSCP",
    "ensemble",
    "fit O(t·fit(base)), score O(m·(t + r log n)) (r = local_region_size)",
    "Locally selective combination: per row, uses the base detectors most competent in its "
    "neighbourhood. detector_list takes registry names or (name, params) pairs; default "
    "LOF k=10/20/40, KNN k=10/20, HBOS, with n_bins 6 (one per member).",
    detector_list=(
        ("LOF", {"n_neighbors": 10}),
        ("LOF", {"n_neighbors": 20}),
        ("LOF", {"n_neighbors": 40}),
        ("KNN", {"n_neighbors": 10}),
        ("KNN", {"n_neighbors": 20}),
        ("HBOS", {}),
    ),
    n_bins=6,
)
_pyod(
    "SUOD",
    "suod:SUOD",
    "ensemble",
    "fit O(Σ fit(base)), score O(Σ score(base))",
    "Scalable unsupervised outlier detection: a large heterogeneous ensemble (LOF, HBOS, COPOD, "
    "IForest by default) accelerated with random projection and model approximation.",
    **ZOO_SUOD,
)
_pyod(
    "XGBOD",
    "xgbod:XGBOD",
    "ensemble",
    "fit O(Σ fit(base) + t·n·(d + b)), score O(Σ score(base) + m·t) (b = base detectors)",
    "Semi-supervised: XGBoost on the features plus the scores of many unsupervised detectors; "
    "needs labels (1 = anomaly) and beats unsupervised detectors when some anomalies are known.",
    target=PYOD_SEMI,
    supervision="semi-supervised",
    **ZOO_XGBOOST,
)

# ------------------------------------------------------------------------ neural
_pyod(
    "PyOD-AutoEncoder",
    "auto_encoder:AutoEncoder",
    "neural",
    "fit O(e·n·d·h), score O(m·d·h)",
    "PyOD's fully connected autoencoder: reconstruction error; for many correlated features.",
    gpu=True,
    **TORCH,
    verbose=0,
)
_pyod(
    "PyOD-VAE",
    "vae:VAE",
    "neural",
    "fit O(e·n·d·h), score O(m·d·h)",
    "PyOD's variational autoencoder (beta-VAE via beta/capacity): reconstruction error. Scores "
    "are sampled; fix random_state for repeatable scores. epoch_num 20 (PyOD: 30).",
    gpu=True,
    **TORCH,
    verbose=0,
    epoch_num=20,
)
_pyod(
    "PyOD-DeepSVDD",
    "deep_svdd:DeepSVDD",
    "neural",
    "fit O(e·n·d·h), score O(m·d·h)",
    "PyOD's deep support vector data description: distance to a learned hypersphere centre. "
    "CPU only in PyOD. epochs 50 (PyOD: 100).",
    **TORCH,
    verbose=0,
    epochs=50,
)
_pyod(
    "SO_GAAL",
    "so_gaal:SO_GAAL",
    "neural",
    "fit O(e·n·d·h), score O(m·d·h)",
    "Single-objective generative adversarial active learning: a classifier against generated "
    "outliers. Unstable: results vary with the seed. CPU only in PyOD.",
    **TORCH,
)
_pyod(
    "MO_GAAL",
    "mo_gaal:MO_GAAL",
    "neural",
    "fit O(k·e·n·d·h), score O(m·d·h)",
    "Multi-objective GAAL: k generators for a more stable boundary than SO_GAAL; still "
    "seed-sensitive.",
    target=PYOD_MOGAAL,
    gpu=True,
    **TORCH,
)
_pyod(
    "ALAD",
    "alad:ALAD",
    "neural",
    "fit O(e·b·d·h), score O(m·d·h) (e = steps, b = batch)",
    "Adversarially learned anomaly detection (BiGAN with cycle-consistency critics). PyOD's "
    "'epochs' are single mini-batch steps: 1000 (PyOD: 200); dropout_rate 0 because PyOD keeps "
    "dropout on while scoring. Weak on small data.",
    gpu=True,
    **TORCH,
    epochs=1000,
    dropout_rate=0.0,
    preprocessing=True,
    verbose=0,
)
_pyod(
    "AnoGAN",
    "anogan:AnoGAN",
    "neural",
    "fit O(e·n·d·h), score O(m·q·d·h) (q = epochs_query)",
    "Anomaly GAN: residual of the closest generated sample, found by gradient descent per "
    "scored row (slow scoring). epochs 100 (PyOD: 500). Runs on the GPU only with "
    "device='cuda'.",
    gpu=True,
    **TORCH,
    epochs=100,
    verbose=0,
)
_pyod(
    "DIF",
    "dif:DIF",
    "neural",
    "fit O(r·(n·d·h + t·ψ log ψ)), score O(m·r·(d·h + t log ψ)) (r = n_ensemble)",
    "Deep isolation forest: isolation forests on random neural representations; finds "
    "non-linear anomalies. PyOD standardizes the representations of each scoring call, so "
    "score large batches.",
    gpu=True,
    **TORCH,
)
_pyod(
    "AE1SVM",
    "ae1svm:AE1SVM",
    "neural",
    "fit O(e·n·(d·h + f)), score O(m·(d·h + f)) (f = kernel_approx_features)",
    "Autoencoder jointly trained with a one-class SVM on random Fourier features of the code. "
    "PyOD fails when the row count is 1 more than a multiple of batch_size (BatchNorm on a "
    "one-row batch): change batch_size then.",
    gpu=True,
    **TORCH,
)
_pyod(
    "DevNet",
    "devnet:DevNet",
    "neural",
    "fit O(e·n·d·h), score O(m·d·h)",
    "Deviation network, semi-supervised: learns from a few labelled anomalies (1 = anomaly). "
    "PyOD's inverted training loss is corrected by the adapter. CPU only in PyOD.",
    target=PYOD_DEVNET,
    supervision="semi-supervised",
    **TORCH,
)

# ------------------------------------------------------------------------- graph
_pyod(
    "LUNAR",
    "lunar:LUNAR",
    "graph",
    "fit O(n log n·d + e·n·k), score O(m·k log n·d)",
    "Graph neural network over each row's k-nearest-neighbour distances: a learned, "
    "trainable LOF/KNN.",
    gpu=True,
    **TORCH,
)
_pyod(
    "RGraph",
    "rgraph:RGraph",
    "graph",
    "fit O(n²·d), score O((m/b)·n²·d) (b = blocksize_test_data)",
    "R-graph: rows that other rows do not use in their self-representation. Only for data on a "
    "union of low-dimensional subspaces (unit-norm rows); it ranks far-out magnitude outliers "
    "as normal. Slow scoring.",
    verbose=False,
)

# ----------------------------------------------------------------- scikit-learn
_sklearn(
    "IsolationForest",
    "sklearn.ensemble:IsolationForest",
    "ensemble",
    "fit O(t·ψ log ψ), score O(m·t log ψ) (ψ = max_samples)",
    "scikit-learn's isolation forest.",
)
_sklearn(
    "LocalOutlierFactor",
    "sklearn.neighbors:LocalOutlierFactor",
    "proximity",
    "fit O(n log n·d), score O(m·k log n·d)",
    "scikit-learn's LOF in novelty mode.",
)
_sklearn(
    "OneClassSVM",
    "sklearn.svm:OneClassSVM",
    "linear",
    "fit O(n²·d)–O(n³·d), score O(m·s·d)",
    "scikit-learn's one-class SVM (RBF kernel); slow above ~10⁴ rows.",
)
_sklearn(
    "SGDOneClassSVM",
    f"{_ADAPTERS}:NystroemSGDOneClassSVM",
    "linear",
    "fit O(n·c·d + e·n·c), score O(m·c·d) (c = n_components)",
    "scikit-learn's SGDOneClassSVM on a Nyström RBF kernel approximation: a one-class SVM "
    "linear in the number of rows, for data too large for OneClassSVM.",
)
_sklearn(
    "EllipticEnvelope",
    "sklearn.covariance:EllipticEnvelope",
    "linear",
    "fit O(n·d² + d³) per C-step, score O(m·d²)",
    "scikit-learn's robust covariance (MCD) Mahalanobis distance.",
)

# ---------------------------------------------------------------------- pynomaly
register(
    DetectorSpec(
        name="PCA_TQ",
        family="linear",
        framework="pynomaly",
        target="pynomaly_core.detectors.pca_tq:PCATQDetector",
        cost_class="fit O(n·d² + d³), score O(m·d·c) (c = components)",
        description="Statistical process control for multivariate sensors: Hotelling's T² (an "
        "unusual state the principal components explain) and Q, the squared prediction error "
        "(a reading that breaks the sensors' normal correlations), each over its training "
        "control limit; score = the larger ratio. Row-wise; the SKAB T²+Q baseline.",
    )
)
register(
    DetectorSpec(
        name="Ensemble",
        family="ensemble",
        framework="pynomaly",
        target=ENSEMBLE,
        cost_class="sum of the members' fit and score costs",
        description="Normalised, combined scores of several registry detectors (default IForest, "
        "HBOS, ECOD, KNN): more robust than any single one when the anomaly type is unknown.",
    )
)
register(
    DetectorSpec(
        name="FeedbackBoost",
        family="ensemble",
        framework="pynomaly",
        target="pynomaly_core.detectors.feedback:FeedbackDetector",
        supervision="semi-supervised",
        cost_class="the Ensemble's fit and score, plus one k-NN search and up to 3·n_folds "
        "gradient-boosting fits O(t·n·d) on the confirmed, rejected and (at most max_unlabelled) "
        "unlabelled rows",
        description="Learns from reviewer verdicts (y: 1 confirmed, 0 rejected, -1 no verdict): "
        "gradient boosting on the features plus the IForest/HBOS/ECOD/KNN ensemble's scores, "
        "k-NN distances and LOF at 1-50 neighbours; unlabelled rows train as down-weighted "
        "normal or, when that cross-fits worse, only the reliable ones, "
        "blended with the unsupervised ensemble by a cross-fitted weight; the lifecycle adds it "
        "when a feed has verdicts.",
    )
)
register(
    DetectorSpec(
        name="auto",
        family="ensemble",
        framework="pynomaly",
        target="pynomaly_core.detectors.auto:AutoDetector",
        cost_class="sum of the candidates' fit and score costs on the fit split, plus one refit",
        description="Label-free model selection: fits a cheap, diverse portfolio (default up to "
        "10 of IForest, INNE, HBOS, ECOD, COPOD, GMM, KNN, CBLOF, PCA, MCD) on part of the rows "
        "with a few synthetic anomalies mixed in, scores held-out rows and more synthetic "
        "anomalies, picks the candidate with the best z(synthetic ROC-AUC) + z(consensus) and "
        "refits it on all rows. choice_, evidence_ and best_model_ say what it chose and why.",
    )
)


def markdown_table() -> str:
    """The Markdown table of every registered detector (used in ``docs/detectors.md``)."""
    from pynomaly_core.detectors.registry import available

    rows = [
        "| Name | Family | Framework | Supervision | GPU | Cost | Extra | When to choose it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec in available():
        cells = [
            f"`{spec.name}`",
            spec.family,
            spec.framework,
            spec.supervision,
            "yes" if spec.gpu else "no",
            spec.cost_class,
            f"`{spec.extra}`" if spec.extra else "—",
            spec.description,
        ]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
