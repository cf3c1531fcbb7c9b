"""Adapters that put PyOD and scikit-learn detectors behind the Pynomaly contract.

One generic adapter per library: the registry entry names the wrapped class
(``model="pyod.models.iforest:IForest"``) and its default parameters, so adding a
detector is a line of data in :mod:`pynomaly_core.detectors.catalog`.

A few PyOD detectors need more than the generic adapter; each has a small subclass
here that says why:

* :class:`UnivariatePyODDetector` — detectors defined for one feature (MAD);
* :class:`TransductivePyODDetector` — detectors whose PyOD ``decision_function``
  scores a batch relative to itself (CD, COF, LMDD, LOCI, SOD, SOS);
* :class:`DevNetDetector` — works around the inverted training loss of PyOD's DevNet;
* :class:`MOGAALDetector` — makes PyOD's MO_GAAL picklable.

Detectors that combine base detectors (LSCP, SUOD, FeatureBagging, XGBOD) take
their members as registry names: ``detector_list=["LOF", ("KNN", {"n_neighbors":
10})]``; see :func:`pyod_member`.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import io
import math
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar, cast

import numpy as np
from sklearn.base import BaseEstimator

from pynomaly_core.detectors.base import BaseDetector, DetectorError
from pynomaly_core.detectors.seeding import seeded
from pynomaly_core.detectors.targets import import_target

#: parameters of PyOD ensembles that hold a list of base detectors
MEMBER_LIST_PARAMS = frozenset({"detector_list", "base_estimators", "estimator_list"})
#: parameters of PyOD ensembles that hold one base detector
MEMBER_PARAMS = frozenset({"base_estimator"})


def pyod_member(item: Any, random_state: int | None = None) -> Any:
    """A PyOD detector instance for an ensemble's member list.

    Parameters
    ----------
    item : str, (str, dict), {"name": str, "params": dict} or PyOD detector
        A registry name of a PyOD entry (``"LOF"``), optionally with parameters
        over that entry's defaults. A PyOD detector instance is deep-copied.
    random_state : int or None
        Given to members that accept ``random_state`` and did not set it.

    Returns
    -------
    pyod.models.base.BaseDetector
        An unfitted PyOD detector.
    """
    if hasattr(item, "fit") and hasattr(item, "decision_function"):
        return copy.deepcopy(item)
    params: Mapping[str, Any]
    if isinstance(item, str):
        name, params = item, {}
    elif isinstance(item, Mapping) and "name" in item:
        name, params = item["name"], item.get("params") or {}
    elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], Mapping):
        name, params = item
    else:
        raise DetectorError(
            f"base detector {item!r}: give a registry name ('LOF'), a (name, params) pair or "
            "{'name': ..., 'params': {...}}."
        )
    from pynomaly_core.detectors.registry import get_spec

    spec = get_spec(name)
    if spec.wraps is None or not spec.wraps.startswith("pyod."):
        raise DetectorError(
            f"base detector {name!r}: members of a PyOD ensemble must be PyOD registry entries "
            f"(e.g. 'LOF', 'HBOS', 'IForest'); {name!r} is a {spec.framework} detector."
        )
    cls = import_target(spec.wraps)
    kwargs = {**spec.defaults, **params}
    accepted = inspect.signature(cls.__init__).parameters
    if random_state is not None and "random_state" in accepted and "random_state" not in kwargs:
        kwargs["random_state"] = random_state
    return cls(**kwargs)


class _WrappedDetector(BaseDetector):
    """Shared logic: build the wrapped estimator from ``model`` + ``params`` at fit time."""

    def __init__(
        self,
        model: str,
        contamination: float = 0.1,
        random_state: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(contamination=contamination)
        self.model = model
        self.random_state = random_state
        self.params = params

    def _build(self, extra: dict[str, Any]) -> Any:
        """The wrapped estimator from ``params``, plus ``extra`` arguments it accepts."""
        cls = import_target(self.model)
        accepted = inspect.signature(cls.__init__).parameters
        kwargs = dict(self.params or {})
        for key, value in extra.items():
            if key in accepted and key not in kwargs:
                kwargs[key] = value
        if (
            "random_state" in accepted
            and "random_state" not in kwargs
            and self.random_state is not None
        ):
            kwargs["random_state"] = self.random_state
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown and not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
            raise DetectorError(
                f"{cls.__name__}: unknown parameter(s) {unknown}; accepted: "
                f"{sorted(k for k in accepted if k != 'self')}."
            )
        seed = self.random_state if isinstance(self.random_state, numbers.Integral) else None
        for key in MEMBER_LIST_PARAMS & kwargs.keys():
            if kwargs[key] is not None:
                kwargs[key] = [
                    pyod_member(item, None if seed is None else seed + i)
                    for i, item in enumerate(kwargs[key])
                ]
        for key in MEMBER_PARAMS & kwargs.keys():
            if kwargs[key] is not None:
                kwargs[key] = pyod_member(kwargs[key], seed)
        return cls(**kwargs)

    @property
    def estimator_name(self) -> str:
        return self.model.rpartition(":")[2]

    def __repr__(self) -> str:  # short, readable in logs and Dagster metadata
        return (
            f"{self.estimator_name}(contamination={self.contamination}, params={self.params or {}})"
        )


class PyODDetector(_WrappedDetector):
    """Any PyOD detector behind the contract.

    Parameters
    ----------
    model : str
        ``"module:Class"`` of the PyOD detector, e.g. ``"pyod.models.knn:KNN"``.
    contamination : float
        Passed to PyOD and used for ``threshold_``.
    random_state : int or None
        Passed to PyOD when the detector accepts it; an integer also seeds the
        global ``random``/NumPy/torch RNGs while fitting and scoring (see
        :func:`~pynomaly_core.detectors.seeding.seeded`), so two fits with the same value
        give the same scores.
    params : dict
        Other constructor arguments of the PyOD class. ``n_features`` (DeepSVDD) is
        filled in from the data.

    Attributes
    ----------
    estimator_ : pyod.models.base.BaseDetector
        The fitted PyOD detector.
    """

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        import_target(self.model)  # imports torch (if used) before its RNG is seeded
        with seeded(self.random_state):
            self.estimator_ = self._build(
                {"contamination": self.contamination, "n_features": X.shape[1]}
            )
            if self.requires_labels:
                self.estimator_.fit(X, y)
            else:
                self.estimator_.fit(X)

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        scores = getattr(self.estimator_, "decision_scores_", None)
        return self._score(X) if scores is None else np.asarray(scores, dtype=np.float64)

    def _score(self, X: np.ndarray) -> np.ndarray:
        with seeded(self.random_state):
            return cast("np.ndarray", self.estimator_.decision_function(X))

    def isolation_forest(self) -> Any:
        """The scikit-learn forest inside PyOD's ``IForest`` (``estimator_.detector_``), else None.

        PyOD's ``IForest.decision_function`` is minus scikit-learn's, so it decreases with the
        forest's mean path length.
        """
        estimator = getattr(self, "estimator_", None)
        if type(estimator).__name__ != "IForest":  # no PyOD import for every other detector
            return None
        from pyod.models.iforest import IForest
        from sklearn.ensemble import IsolationForest

        inner = getattr(estimator, "detector_", None)
        return (
            inner if isinstance(estimator, IForest) and isinstance(inner, IsolationForest) else None
        )


class PCADetector(PyODDetector):
    """PyOD's PCA, minus the principal components with zero variance.

    PyOD divides each row's distance to a component by the component's explained
    variance ratio; a component with *exactly* zero variance (any rank-deficient input,
    e.g. the one-hot columns of one categorical feature, which sum to 1) turns every new
    row's score into NaN. When the fitted PCA has such components it is refitted with
    ``n_components`` = the number of components with non-zero variance (unless the
    caller set ``n_components``). Full-rank data fits exactly as PyOD does.
    """

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        super()._fit(X, y)
        if (self.params or {}).get("n_components") is not None:
            return
        ratios = np.asarray(self.estimator_.explained_variance_ratio_, dtype=float)
        keep = int((ratios > 1e-12).sum())
        if 0 < keep < ratios.size:
            params = {**(self.params or {}), "n_components": keep}
            original, self.params = self.params, params
            try:
                super()._fit(X, y)
            finally:
                self.params = original


class SemiSupervisedPyODDetector(PyODDetector):
    """PyOD detectors that learn from labels (XGBOD, DevNet): ``fit(X, y)``."""

    requires_labels = True


class UnivariatePyODDetector(PyODDetector):
    """PyOD detectors defined for exactly one feature (MAD).

    Fit one detector per column to screen several features; a multivariate
    detector (ECOD, HBOS) does that in one model.
    """

    #: the detector accepts only ``X`` of shape ``(n_samples, 1)``
    univariate: ClassVar[bool] = True

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        if X.shape[1] != 1:
            raise DetectorError(
                f"{self.estimator_name} is univariate: X must have exactly 1 feature column, "
                f"got {X.shape[1]}. Fit one detector per column, or use a multivariate detector "
                "such as ECOD or HBOS."
            )
        super()._fit(X, y)


class TransductivePyODDetector(PyODDetector):
    """PyOD detectors whose ``decision_function`` scores a batch relative to itself.

    PyOD's CD, COF, LMDD, LOCI, SOD and SOS recompute neighbourhoods, leverages or
    affinities within the rows they are asked to score and ignore the training
    data, so the scores of a small batch say nothing about the training population
    (and COF and SOD fail on batches smaller than ``n_neighbors``). This adapter
    keeps the training rows and scores new rows appended to them, at most
    ``block_fraction`` times the training size at a time, so new scores are
    comparable with ``decision_scores_`` and ``threshold_``. Scoring ``m`` rows
    costs about ``m / (block_fraction * n)`` runs of the detector on ``1.1 n`` rows.

    Attributes
    ----------
    X_train_ : ndarray of shape (n_samples, n_features)
        The training rows new data is scored against.
    """

    #: largest share of a scoring run taken by new rows
    block_fraction: ClassVar[float] = 0.1

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        super()._fit(X, y)
        self.X_train_ = X

    def isolation_forest(self) -> Any:
        """None: a batch is scored against itself and the training rows, not by the forest alone."""
        return None

    def _score(self, X: np.ndarray) -> np.ndarray:
        block = max(1, math.floor(self.block_fraction * self.X_train_.shape[0]))
        parts = []
        for start in range(0, X.shape[0], block):
            chunk = X[start : start + block]
            scores = super()._score(np.vstack([self.X_train_, chunk]))
            parts.append(np.asarray(scores, dtype=np.float64)[-chunk.shape[0] :])
        return np.concatenate(parts)


_DEVNET_FAULTY_CALL = "deviation_loss(outputs, labels)"


def _corrected_deviation_loss(original: Any) -> Any:
    def loss(y_pred: Any, y_true: Any) -> Any:
        return original(y_true, y_pred.reshape(-1))

    return loss


class DevNetDetector(SemiSupervisedPyODDetector):
    """PyOD's DevNet (deviation network) with its training loss corrected.

    PyOD's ``DevNet.fit`` calls ``deviation_loss(outputs, labels)`` although the
    function is ``deviation_loss(y_true, y_pred)``, and the network's ``(batch, 1)``
    outputs broadcast against the ``(batch,)`` labels; trained that way the known
    anomalies get the *lowest* scores. While fitting, this adapter replaces the
    module's loss with one that passes predictions and labels in the right order
    and shape — only when the installed PyOD still contains the faulty call — and
    discards DevNet's per-epoch prints.
    """

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        module: Any = importlib.import_module(self.model.partition(":")[0])
        original = module.deviation_loss
        faulty = _DEVNET_FAULTY_CALL in inspect.getsource(module.DevNet.fit)
        if faulty:
            module.deviation_loss = _corrected_deviation_loss(original)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                super()._fit(X, y)
        finally:
            module.deviation_loss = original


class MOGAALDetector(PyODDetector):
    """PyOD's MO_GAAL, made picklable.

    PyOD builds MO_GAAL's discriminator from a class defined inside a function,
    which pickle (and so :func:`~pynomaly_core.detectors.persistence.save_object`)
    cannot save. After fitting, the discriminator is replaced by an
    ``nn.Sequential`` of the same layers (Linear, ReLU, Linear, Sigmoid), which
    computes the same scores.
    """

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        super()._fit(X, y)
        from torch import nn

        net = self.estimator_.discriminator
        self.estimator_.discriminator = nn.Sequential(
            net.layer1, nn.ReLU(), net.layer2, nn.Sigmoid()
        )


class SklearnDetector(_WrappedDetector):
    """A scikit-learn outlier detector behind the contract.

    scikit-learn's ``score_samples`` is higher for *normal* points, so the score is
    its negation. ``LocalOutlierFactor`` is built with ``novelty=True`` so it can
    score new data.

    Attributes
    ----------
    estimator_ : sklearn estimator
        The fitted scikit-learn estimator.
    """

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        extra: dict[str, Any] = {"contamination": self.contamination}
        if self.model.endswith(":LocalOutlierFactor"):
            extra["novelty"] = True
        self.estimator_ = self._build(extra)
        self.estimator_.fit(X)

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        nof = getattr(self.estimator_, "negative_outlier_factor_", None)
        if nof is not None:
            return -np.asarray(nof, dtype=np.float64)
        return self._score(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return cast("np.ndarray", -self.estimator_.score_samples(X))

    def isolation_forest(self) -> Any:
        """The wrapped ``IsolationForest`` (the score is minus its ``score_samples``), else None."""
        from sklearn.ensemble import IsolationForest

        estimator = getattr(self, "estimator_", None)
        return estimator if isinstance(estimator, IsolationForest) else None


class NystroemSGDOneClassSVM(BaseEstimator):  # type: ignore[misc]  # sklearn has no stubs: Any
    """``SGDOneClassSVM`` on a Nyström approximation of the RBF kernel.

    A plain ``SGDOneClassSVM`` is linear: it separates the data from the origin
    with a hyperplane and cannot enclose centred (scaled) data. scikit-learn
    documents combining it with a kernel approximation, which gives a one-class
    SVM whose fit is linear in the number of rows.

    Parameters
    ----------
    nu : float in (0, 1]
        Upper bound on the share of training errors (as in ``OneClassSVM``).
    gamma : float or None
        RBF kernel coefficient; ``None`` uses ``1 / n_features``.
    n_components : int
        Nyström components (capped at the number of training rows).
    max_iter, tol
        Passed to ``SGDOneClassSVM``.
    random_state : int or None
        Seeds the Nyström sample and the SGD shuffling.

    Attributes
    ----------
    pipeline_ : sklearn.pipeline.Pipeline
        The fitted Nyström + ``SGDOneClassSVM`` pipeline.
    """

    def __init__(
        self,
        nu: float = 0.5,
        gamma: float | None = None,
        n_components: int = 100,
        max_iter: int = 1000,
        tol: float = 1e-3,
        random_state: int | None = None,
    ) -> None:
        self.nu = nu
        self.gamma = gamma
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: Any = None) -> NystroemSGDOneClassSVM:
        from sklearn.kernel_approximation import Nystroem
        from sklearn.linear_model import SGDOneClassSVM
        from sklearn.pipeline import make_pipeline

        self.pipeline_ = make_pipeline(
            Nystroem(
                kernel="rbf",
                gamma=self.gamma,
                n_components=min(self.n_components, X.shape[0]),
                random_state=self.random_state,
            ),
            SGDOneClassSVM(
                nu=self.nu, max_iter=self.max_iter, tol=self.tol, random_state=self.random_state
            ),
        ).fit(X)
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Higher for normal points (scikit-learn convention)."""
        return cast("np.ndarray", self.pipeline_.score_samples(X))
