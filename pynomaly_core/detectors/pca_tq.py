"""PCA T² + Q (squared prediction error): the statistical process control detector for
multivariate sensors.

A principal component model of normal operation splits each reading into the part the
components explain and the residual. Hotelling's T² measures how far the explained part lies
from normal *within* the model (an unusual but correlated state), Q = ‖x − x̂‖² how much the
reading breaks the correlations of normal operation (a sensor that no longer moves with the
others). Each is divided by its control limit — the ``1 - alpha`` quantile of its training values
— and the score is the larger ratio: a row is out of control when either statistic exceeds its
limit (score > 1 at the limits' own level).

This is the "T-squared+Q (PCA)" baseline of the SKAB benchmark (Katser & Kozitsin, 2020).
"""

from __future__ import annotations

import numpy as np

from pynomaly_core.detectors.base import BaseDetector, DetectorError


class PCATQDetector(BaseDetector):
    """Hotelling T² and Q statistics of a PCA model, each relative to its control limit.

    Parameters
    ----------
    variance : float in (0, 1]
        Share of the (standardized) variance the retained components explain; ignored when
        ``n_components`` is given.
    n_components : int or None
        Number of components to keep.
    alpha : float
        The control limits are the ``1 - alpha`` quantiles of the training T² and Q.
    contamination : float
        As for every detector: sets ``threshold_`` from the training scores.
    random_state : int or None
        Accepted like every registry detector's; unused, the fit is deterministic (an SVD).
    """

    detector_name = "PCA_TQ"

    def __init__(
        self,
        variance: float = 0.9,
        n_components: int | None = None,
        alpha: float = 0.01,
        contamination: float = 0.1,
        random_state: int | None = None,
    ) -> None:
        super().__init__(contamination=contamination)
        self.variance = variance
        self.n_components = n_components
        self.alpha = alpha
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        if not 0.0 < float(self.variance) <= 1.0:
            raise DetectorError(
                f"PCATQDetector: variance must be in (0, 1], got {self.variance!r}."
            )
        if not 0.0 < float(self.alpha) < 0.5:
            raise DetectorError(f"PCATQDetector: alpha must be in (0, 0.5), got {self.alpha!r}.")
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        Z = (X - self.mean_) / self.scale_
        _, s, vt = np.linalg.svd(Z, full_matrices=False)
        eigenvalues = s**2 / max(len(Z) - 1, 1)
        if self.n_components is not None:
            k = int(self.n_components)
            if not 1 <= k <= len(eigenvalues):
                raise DetectorError(
                    f"PCATQDetector: n_components={k} must be between 1 and {len(eigenvalues)} (the features)."
                )
        else:
            share = (
                np.cumsum(eigenvalues) / eigenvalues.sum()
                if eigenvalues.sum() > 0
                else np.ones_like(eigenvalues)
            )
            k = int(np.searchsorted(share, float(self.variance) - 1e-12) + 1)
        # keep at least one residual dimension when there is more than one feature: Q needs it
        if k >= Z.shape[1] > 1:
            k = Z.shape[1] - 1
        self.components_ = vt[:k]
        self.eigenvalues_ = np.maximum(eigenvalues[:k], 1e-12)
        t2, q = self._statistics(X)
        self.t2_limit_ = max(float(np.quantile(t2, 1.0 - float(self.alpha))), 1e-12)
        self.q_limit_ = max(float(np.quantile(q, 1.0 - float(self.alpha))), 1e-12)

    def _statistics(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Z = (X - self.mean_) / self.scale_
        T = Z @ self.components_.T
        t2 = np.sum(T**2 / self.eigenvalues_, axis=1)
        residual = Z - T @ self.components_
        q = np.sum(residual**2, axis=1)
        return t2, q

    def statistics(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hotelling T² and Q of each row of ``X`` (for reports)."""
        self._check_fitted()
        return self._statistics(self._validate(X, fitting=False))

    def _score(self, X: np.ndarray) -> np.ndarray:
        t2, q = self._statistics(X)
        return np.maximum(t2 / self.t2_limit_, q / self.q_limit_)
