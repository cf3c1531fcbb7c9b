"""The fitted unit a feed trains and scores with: preprocessing + detector + calibration.

``AnomalyModel.fit(frame)`` learns the preprocessing and the detector on a validated
training frame; ``score(frame)`` returns, per row, the raw score, a normalized score
(the share of training scores below it), the anomaly flag (score above the detector's
contamination threshold), a conformal p-value against the calibration scores, a
severity from that p-value (:mod:`pynomaly_core.severity`) and the top contributing
features.

Saved with :func:`pynomaly_core.detectors.save_object` as a signed directory: the
preprocessor (joblib), the detector (its own signed directory; deep detectors in their
framework's weight format), a JSON calibration file and the calibration scores
(``calibration.npy``, loaded without pickle).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pynomaly_core.data.config import FeatureSpec
from pynomaly_core.data.preprocess import FeaturePreprocessor
from pynomaly_core.detectors import create, load_object, save_object
from pynomaly_core.severity import SeverityCutoffs, calibration_set, p_values, severity

N_QUANTILES = 1001


class AnomalyModel:
    """Preprocessing and a registry detector, fitted together.

    Parameters
    ----------
    features : list of FeatureSpec
    detector : str
        Registry name, e.g. ``"IForest"``.
    contamination : float
    params : dict
        Detector parameters over the registry defaults.
    random_state : int or None
    scaling : str
        See :class:`FeaturePreprocessor`.
    severity_cutoffs : SeverityCutoffs or None
        p-value cut-offs of the severity levels (default: :class:`SeverityCutoffs`).
    """

    def __init__(
        self,
        features: list[FeatureSpec],
        detector: str = "IForest",
        contamination: float = 0.01,
        params: dict[str, Any] | None = None,
        random_state: int | None = 42,
        scaling: str = "robust",
        severity_cutoffs: SeverityCutoffs | None = None,
    ) -> None:
        self.features = features
        self.detector = detector
        self.contamination = contamination
        self.params = params or {}
        self.random_state = random_state
        self.scaling = scaling
        self.severity_cutoffs = severity_cutoffs or SeverityCutoffs()

    def fit(
        self,
        frame: pd.DataFrame,
        labels: pd.Series | np.ndarray | None = None,
        *,
        preprocessor: FeaturePreprocessor | None = None,
        X: np.ndarray | None = None,
    ) -> AnomalyModel:
        """Fit preprocessing and detector on the validated training ``frame``.

        ``labels`` (1 = anomaly) are passed to semi-supervised detectors (XGBOD, DevNet),
        which need them; missing labels count as normal (0). Unsupervised detectors
        ignore them. Candidates trained on the same frame may share one fitted
        ``preprocessor`` (and its output ``X``) instead of refitting it each.
        """
        start = time.perf_counter()
        if preprocessor is None:
            preprocessor = FeaturePreprocessor(
                [f.model_dump() for f in self.features], scaling=self.scaling
            ).fit(frame)
            X = None
        self.preprocessor_ = preprocessor
        if X is None:
            X = self.preprocessor_.transform(frame)
        params = dict(self.params)
        if self.random_state is not None:
            params.setdefault("random_state", self.random_state)
        self.detector_ = create(self.detector, contamination=self.contamination, **params)
        if self.detector_.requires_labels:
            if labels is None:
                raise ValueError(
                    f"detector {self.detector!r} is semi-supervised and needs labels: set the feed's "
                    "'label' column (1 = anomaly, 0 or empty = normal)"
                )
            y = pd.Series(np.asarray(labels, dtype="float64")).fillna(0).astype(int).to_numpy()
            self.detector_.fit(X, y)
        else:
            self.detector_.fit(X)
        train_scores = np.asarray(self.detector_.decision_scores_, dtype=float)
        if not np.isfinite(train_scores).all():
            bad = int((~np.isfinite(train_scores)).sum())
            raise ValueError(
                f"detector {self.detector!r} gave {bad} non-finite training score(s) of {len(train_scores)}; "
                "it cannot rank these rows (try another detector or check for constant/duplicate columns)"
            )
        self.quantiles_ = np.quantile(train_scores, np.linspace(0, 1, N_QUANTILES))
        self.threshold_ = float(self.detector_.threshold_)
        self.max_training_score_ = float(train_scores.max())
        self.calibrate(train_scores)
        self.training_rows_ = len(frame)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def calibrate(self, scores: np.ndarray) -> AnomalyModel:
        """Use ``scores`` (raw detector scores of representative rows) for p-values and severity.

        ``fit`` calibrates on the training scores; the lifecycle recalibrates on the
        training scores plus the out-of-sample scores of the held-out slice.
        """
        scores = np.asarray(scores, dtype=float)
        self.calibration_ = calibration_set(scores)
        self.n_calibration_ = int(np.isfinite(scores).sum())
        return self

    def p_values(self, scores: np.ndarray) -> np.ndarray:
        """Conformal p-value of raw ``scores`` against the calibration scores."""
        return p_values(scores, self.calibration_, self.n_calibration_)

    def decision_function(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw detector scores, higher = more anomalous."""
        return self.detector_.decision_function(self.preprocessor_.transform(frame))

    def score(self, frame: pd.DataFrame, *, top_features: int = 3) -> pd.DataFrame:
        """Score ``frame``: columns score, normalized_score, is_anomaly, p_value, severity, top_features.

        ``top_features`` lists, for anomalies only, the numeric features furthest from
        the training centre in scaled units (a cheap attribution; SHAP explanations are a
        separate asset).
        """
        X = self.preprocessor_.transform(frame)
        scores = self.detector_.decision_function(X)
        if not np.isfinite(scores).all():
            bad = np.where(~np.isfinite(scores))[0]
            raise ValueError(
                f"detector {self.detector!r} gave {len(bad)} non-finite score(s) (first at row "
                f"{frame.index[bad[0]]!r}); refusing to export unrankable scores"
            )
        normalized = np.interp(scores, self.quantiles_, np.linspace(0, 1, N_QUANTILES))
        flags = scores > self.threshold_
        p = self.p_values(scores)
        tops = np.full(len(frame), None, dtype=object)
        if flags.any() and top_features:
            names = self.preprocessor_.feature_names_out_
            numeric = np.array(["=" not in n for n in names])
            idx = np.where(flags)[0]
            # one-hot columns are 0/1 indicators, not deviations: rank numeric features only
            deviation = np.where(numeric, np.abs(X[idx]), -np.inf)
            order = np.argsort(-deviation, axis=1)[:, : min(top_features, int(numeric.sum()))]
            for row, cols in zip(idx, order):
                tops[row] = json.dumps([names[j] for j in cols])
        return pd.DataFrame(
            {
                "score": scores,
                "normalized_score": normalized,
                "is_anomaly": flags,
                "p_value": p,
                "severity": severity(p, flags, self.n_calibration_, self.severity_cutoffs),
                "top_features": tops,
            },
            index=frame.index,
        )

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path, info: dict[str, Any] | None = None) -> Path:
        return save_object(self, path, kind="anomaly_model", info=info)

    def _save_payload(self, directory: Path) -> None:
        import joblib

        joblib.dump(self.preprocessor_, directory / "preprocessor.joblib")
        save_object(self.detector_, directory / "detector", kind="detector")
        calibration = {
            "features": [f.model_dump() for f in self.features],
            "detector": self.detector,
            "contamination": self.contamination,
            "params": self.params,
            "random_state": self.random_state,
            "scaling": self.scaling,
            "threshold": self.threshold_,
            "max_training_score": self.max_training_score_,
            "training_rows": self.training_rows_,
            "fit_seconds": self.fit_seconds_,
            "quantiles": self.quantiles_.tolist(),
        }
        calibration["severity_cutoffs"] = dataclasses.asdict(self.severity_cutoffs)
        calibration["n_calibration"] = self.n_calibration_
        (directory / "calibration.json").write_text(json.dumps(calibration))
        np.save(directory / "calibration.npy", self.calibration_, allow_pickle=False)

    @classmethod
    def _load_payload(cls, directory: Path) -> AnomalyModel:
        import joblib

        cal = json.loads((directory / "calibration.json").read_text())
        model = cls(
            [FeatureSpec.model_validate(f) for f in cal["features"]],
            detector=cal["detector"],
            contamination=cal["contamination"],
            params=cal["params"],
            random_state=cal["random_state"],
            scaling=cal["scaling"],
            severity_cutoffs=SeverityCutoffs(**cal["severity_cutoffs"]),
        )
        model.preprocessor_ = joblib.load(directory / "preprocessor.joblib")
        model.detector_ = load_object(directory / "detector")
        model.quantiles_ = np.asarray(cal["quantiles"])
        model.threshold_ = cal["threshold"]
        model.max_training_score_ = cal["max_training_score"]
        model.training_rows_ = cal["training_rows"]
        model.fit_seconds_ = cal["fit_seconds"]
        model.calibration_ = np.load(directory / "calibration.npy", allow_pickle=False)
        model.n_calibration_ = cal["n_calibration"]
        return model
