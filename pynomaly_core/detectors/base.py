"""The one detector contract every Pynomaly detector implements.

PyOD semantics (``fit``, ``decision_function`` where higher means more anomalous,
``threshold_``, ``labels_``, ``contamination``) on top of scikit-learn's
``BaseEstimator`` so ``clone`` and ``get_params`` work.

A concrete detector implements two methods:

* ``_fit(X, y)`` — learn from a validated float64 matrix ``X`` of shape
  ``(n_samples, n_features)``;
* ``_score(X)`` — return a float64 vector of shape ``(n_samples,)``, higher = more
  anomalous.

Everything else (input validation, threshold from contamination, labels,
probabilities, persistence) lives here so every detector behaves the same way.

Example
-------
>>> import numpy as np
>>> from pynomaly_core.detectors import create
>>> rng = np.random.default_rng(0)
>>> X = np.vstack([rng.normal(size=(200, 3)), [[8.0, 8.0, 8.0]]])
>>> det = create("IForest", contamination=0.01, random_state=0).fit(X)
>>> int(np.argmax(det.decision_scores_))
200
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
from sklearn.base import BaseEstimator


class DetectorError(ValueError):
    """Raised for invalid input or misuse of a detector; the message names the cause."""


class NotFittedError(DetectorError):
    """Raised when a detector is used before ``fit``."""


class BaseDetector(BaseEstimator):  # type: ignore[misc]  # sklearn has no stubs: Any
    """Base class of the detector contract.

    Parameters
    ----------
    contamination : float in (0, 0.5]
        Expected share of anomalies in the training data; sets ``threshold_`` to
        the ``1 - contamination`` quantile of the training scores.

    Attributes
    ----------
    decision_scores_ : ndarray of shape (n_samples,)
        Scores of the training data, higher = more anomalous.
    threshold_ : float
        Scores strictly above it are labelled anomalies.
    labels_ : ndarray of shape (n_samples,)
        0/1 labels of the training data.
    n_features_in_ : int
        Number of features seen at ``fit``.
    """

    #: registry name; set by subclasses or the registry
    detector_name: ClassVar[str] = ""
    #: whether ``fit`` needs labels ``y`` (semi-supervised detectors)
    requires_labels: ClassVar[bool] = False

    def __init__(self, contamination: float = 0.1) -> None:
        self.contamination = contamination

    # ----------------------------------------------------------------- hooks
    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        """Scores of the training data; detectors that keep them override this."""
        return self._score(X)

    # -------------------------------------------------------------- contract
    def fit(self, X: Any, y: Any = None) -> BaseDetector:
        """Fit the detector on ``X`` of shape ``(n_samples, n_features)``; returns ``self``."""
        self._check_contamination()
        X = self._validate(X, fitting=True)
        if self.requires_labels:
            if y is None:
                raise DetectorError(
                    f"{type(self).__name__} is semi-supervised: fit(X, y) needs labels y "
                    "(1 = anomaly, 0 = normal)."
                )
            y = np.asarray(y).astype(int).ravel()
            if y.shape[0] != X.shape[0]:
                raise DetectorError(
                    f"{type(self).__name__}: y has {y.shape[0]} labels but X has {X.shape[0]} rows."
                )
        elif y is not None:
            y = np.asarray(y).ravel()
        self.n_features_in_ = X.shape[1]
        self._fit(X, y)
        scores = np.asarray(self._training_scores(X), dtype=np.float64).ravel()
        self._set_threshold(scores)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly scores of ``X``, shape ``(n_samples,)``; higher = more anomalous."""
        self._check_fitted()
        X = self._validate(X, fitting=False)
        scores = np.asarray(self._score(X), dtype=np.float64).ravel()
        if scores.shape[0] != X.shape[0]:
            raise DetectorError(
                f"{type(self).__name__} returned {scores.shape[0]} scores for {X.shape[0]} rows."
            )
        return scores

    def predict(self, X: Any) -> np.ndarray:
        """0/1 labels of ``X``: 1 where the score is above ``threshold_``."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Outlier probability by min-max scaling against the training scores, shape ``(n, 2)``."""
        scores = self.decision_function(X)
        lo, hi = float(self.decision_scores_.min()), float(self.decision_scores_.max())
        span = hi - lo if hi > lo else 1.0
        p = np.clip((scores - lo) / span, 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit on ``X`` and return the training labels."""
        return self.fit(X, y).labels_

    # ------------------------------------------------------------ capabilities
    def isolation_forest(self) -> Any:
        """The fitted scikit-learn ``IsolationForest`` this detector's score is a function of, else None.

        A detector whose score decreases with that forest's mean path length (and with nothing
        else) returns it, so explanations (:mod:`pynomaly_core.explain`) can compute exact
        path-dependent TreeSHAP instead of sampling; every other detector keeps this default.
        """
        return None

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, key: bytes | None = None) -> Path:
        """Save to directory ``path`` in a signed, checksummed format; returns the path.

        ``key`` signs it; None: the default signing key (see :mod:`pynomaly_core.signing`).
        """
        from pynomaly_core.detectors.persistence import save_detector

        return save_detector(self, path, key=key)

    @classmethod
    def load(cls, path: str | Path, *, key: bytes | None = None) -> BaseDetector:
        """Load a detector saved with :meth:`save`, verifying its signature with ``key`` first."""
        from pynomaly_core.detectors.persistence import load_detector

        return cast("BaseDetector", load_detector(path, key=key))

    # --------------------------------------------------------------- helpers
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "threshold_")

    def _set_threshold(self, scores: np.ndarray) -> None:
        if not np.all(np.isfinite(scores)):
            # A detector that produces inf/NaN on its own training data is broken for
            # thresholding; keep order by mapping non-finite values to the extremes.
            finite = scores[np.isfinite(scores)]
            hi = finite.max() if finite.size else 0.0
            lo = finite.min() if finite.size else 0.0
            scores = np.nan_to_num(scores, nan=hi, posinf=hi + 1.0, neginf=lo - 1.0)
        self.decision_scores_ = scores
        self.threshold_ = float(np.quantile(scores, 1.0 - float(self.contamination)))
        self.labels_ = (scores > self.threshold_).astype(int)

    def _check_contamination(self) -> None:
        c = self.contamination
        if not isinstance(c, numbers.Real) or not (0.0 < float(c) <= 0.5):
            raise DetectorError(
                f"{type(self).__name__}: contamination must be a float in (0, 0.5], got {c!r}."
            )

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call fit(X) before scoring."
            )

    def _validate(self, X: Any, *, fitting: bool) -> np.ndarray:
        name = type(self).__name__
        if hasattr(X, "to_numpy"):
            X = X.to_numpy()
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DetectorError(f"{name}: X must be numeric ({exc}).") from exc
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        if X.ndim != 2:
            raise DetectorError(f"{name}: X must be 2-D (n_samples, n_features), got {X.ndim}-D.")
        if X.shape[0] == 0:
            raise DetectorError(f"{name}: X has no rows.")
        if not np.all(np.isfinite(X)):
            bad = np.where(~np.all(np.isfinite(X), axis=0))[0].tolist()
            raise DetectorError(
                f"{name}: X contains NaN or infinite values in feature column(s) {bad[:10]}; "
                "impute or drop them first (the feed preprocessing does this by rule)."
            )
        if not fitting and X.shape[1] != self.n_features_in_:
            raise DetectorError(
                f"{name}: X has {X.shape[1]} features but the detector was fitted on "
                f"{self.n_features_in_}."
            )
        return cast("np.ndarray", X)
