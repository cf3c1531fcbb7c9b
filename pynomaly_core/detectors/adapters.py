"""Adapters that put PyOD and scikit-learn detectors behind the Pynomaly contract.

One generic adapter per library: the registry entry names the wrapped class
(``model="pyod.models.iforest:IForest"``) and its default parameters, so adding a
detector is a line of data in :mod:`pynomaly_core.detectors.catalog`.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from pynomaly_core.detectors.base import BaseDetector, DetectorError


def _import_target(target: str) -> type:
    import importlib

    module, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


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
        cls = _import_target(self.model)
        accepted = inspect.signature(cls.__init__).parameters
        kwargs = dict(self.params or {})
        for key, value in extra.items():
            if key in accepted and key not in kwargs:
                kwargs[key] = value
        if "random_state" in accepted and "random_state" not in kwargs and self.random_state is not None:
            kwargs["random_state"] = self.random_state
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown and not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
            raise DetectorError(
                f"{cls.__name__}: unknown parameter(s) {unknown}; accepted: "
                f"{sorted(k for k in accepted if k != 'self')}."
            )
        return cls(**kwargs)

    @property
    def estimator_name(self) -> str:
        return self.model.rpartition(":")[2]

    def __repr__(self) -> str:  # short, readable in logs and Dagster metadata
        return f"{self.estimator_name}(contamination={self.contamination}, params={self.params or {}})"


class PyODDetector(_WrappedDetector):
    """Any PyOD detector behind the contract.

    Parameters
    ----------
    model : str
        ``"module:Class"`` of the PyOD detector, e.g. ``"pyod.models.knn:KNN"``.
    contamination : float
        Passed to PyOD and used for ``threshold_``.
    random_state : int or None
        Passed to PyOD when the detector accepts it.
    params : dict
        Other constructor arguments of the PyOD class.
    """

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self.estimator_ = self._build({"contamination": self.contamination})
        if self.requires_labels:
            self.estimator_.fit(X, y)
        else:
            self.estimator_.fit(X)

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        scores = getattr(self.estimator_, "decision_scores_", None)
        return self._score(X) if scores is None else np.asarray(scores, dtype=np.float64)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.estimator_.decision_function(X)


class SemiSupervisedPyODDetector(PyODDetector):
    """PyOD detectors that learn from labels (XGBOD, DevNet): ``fit(X, y)``."""

    requires_labels = True


class SklearnDetector(_WrappedDetector):
    """A scikit-learn outlier detector behind the contract.

    scikit-learn's ``score_samples`` is higher for *normal* points, so the score is
    its negation. ``LocalOutlierFactor`` is built with ``novelty=True`` so it can
    score new data.
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
        return -self.estimator_.score_samples(X)
