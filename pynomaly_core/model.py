"""The fitted unit a feed trains and scores with: preprocessing + detector + calibration.

``AnomalyModel.fit(frame)`` learns the preprocessing and the detector on a validated
training frame; ``score(frame)`` returns, per row, the raw score, a normalized score
(the share of training scores below it), the anomaly flag (score above the detector's
contamination threshold), a conformal p-value against the calibration scores, a
severity from that p-value (:mod:`pynomaly_core.severity`) and the top contributing
features.

A model built with a :class:`~pynomaly_core.features.derived.Derivation` (the feed's ``derived``
section, event time and entity) derives its time-aware features itself, in ``fit``, ``score`` and
``decision_function``, so training, scoring, explanations and drift see one transformation. Rows
before the scored ones are passed as ``history`` (the warm-up); the derivation is saved with the
model, so a loaded model derives the same way whatever the feed file says later.

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
from pynomaly_core.features.derived import Derivation, derive
from pynomaly_core.severity import (
    ScoreLookup,
    SeverityCutoffs,
    calibration_set,
    p_values,
    severity,
)

N_QUANTILES = 1001
#: probabilities of the stored training-score quantiles = the normalized score at each
QUANTILE_LEVELS = np.linspace(0, 1, N_QUANTILES)


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
    derivation : Derivation or None
        Time-aware features derived before preprocessing (float, nullable, imputed like the
        other numeric features); None: the model sees ``features`` only.
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
        derivation: Derivation | None = None,
    ) -> None:
        self.features = features
        self.detector = detector
        self.contamination = contamination
        self.params = params or {}
        self.random_state = random_state
        self.scaling = scaling
        self.severity_cutoffs = severity_cutoffs or SeverityCutoffs()
        self.derivation = derivation

    @property
    def input_features(self) -> list[FeatureSpec]:
        """What the preprocessing encodes: ``features``, then the derived columns (float, nullable)."""
        if self.derivation is None:
            return list(self.features)
        return [
            *self.features,
            *(
                FeatureSpec(name=n, type="float", nullable=True)
                for n in self.derivation.derived_names
            ),
        ]

    def derive(self, frame: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
        """``frame`` with the model's derived columns appended (``history``: the rows before it).

        Without a derivation, ``frame`` itself. Rows without enough history get missing derived
        values, imputed by the preprocessing.
        """
        if self.derivation is None:
            return frame
        return derive(frame, self.derivation, history=history)

    def fit(
        self,
        frame: pd.DataFrame,
        labels: pd.Series | np.ndarray | None = None,
        *,
        preprocessor: FeaturePreprocessor | None = None,
        X: np.ndarray | None = None,
        history: pd.DataFrame | None = None,
    ) -> AnomalyModel:
        """Fit preprocessing and detector on the validated training ``frame``.

        ``labels`` (1 = anomaly) are passed to semi-supervised detectors (XGBOD, DevNet),
        which need them; missing labels count as normal (0). Unsupervised detectors
        ignore them. Candidates trained on the same frame may share one fitted
        ``preprocessor`` (and its output ``X``) instead of refitting it each; a model with a
        derivation derives ``frame`` first (``history``: rows before it) and checks that a shared
        preprocessor encodes its derived columns.
        """
        start = time.perf_counter()
        frame = self.derive(frame, history)
        if preprocessor is not None and self.derivation is not None:
            shared = [f["name"] if isinstance(f, dict) else f.name for f in preprocessor.features]
            if shared != [f.name for f in self.input_features]:
                raise ValueError(
                    f"detector {self.detector!r}: the shared preprocessor encodes {shared}, but this model's "
                    f"inputs are {[f.name for f in self.input_features]} (build it from model.input_features)"
                )
        if preprocessor is None:
            preprocessor = FeaturePreprocessor(
                [f.model_dump() for f in self.input_features], scaling=self.scaling
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
        self.quantiles_ = np.quantile(train_scores, QUANTILE_LEVELS)
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
        self._index_scores()
        return self

    def _index_scores(self) -> None:
        """Build what scoring looks up per call from the quantiles and calibration scores.

        Once per calibration (and per load), not per :meth:`score` call: the merged
        knots of :class:`ScoreLookup` and the numeric-feature mask of ``top_features``.
        """
        self.lookup_ = ScoreLookup(
            self.quantiles_, QUANTILE_LEVELS, self.calibration_, self.n_calibration_
        )
        names = self.preprocessor_.feature_names_out_
        # one-hot columns are 0/1 indicators, not deviations: rank numeric features only
        self._numeric_features = np.array(["=" not in n for n in names])

    def p_values(self, scores: np.ndarray) -> np.ndarray:
        """Conformal p-value of raw ``scores`` against the calibration scores."""
        return p_values(scores, self.calibration_, self.n_calibration_)

    def decision_function(
        self, frame: pd.DataFrame, history: pd.DataFrame | None = None
    ) -> np.ndarray:
        """Raw detector scores, higher = more anomalous (``history``: rows before ``frame``)."""
        return self.detector_.decision_function(self.transform(frame, history))

    def transform(self, frame: pd.DataFrame, history: pd.DataFrame | None = None) -> np.ndarray:
        """The detector's input matrix for ``frame``: derived (with ``history``), then preprocessed."""
        return self.preprocessor_.transform(self.derive(frame, history))

    def score(
        self, frame: pd.DataFrame, *, top_features: int = 3, history: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Score ``frame``: columns score, normalized_score, is_anomaly, p_value, severity, top_features.

        ``top_features`` lists, for anomalies only, the numeric features furthest from
        the training centre in scaled units (a cheap attribution; SHAP explanations are a
        separate asset). ``history``: rows before ``frame`` for the derived features' warm-up.
        """
        X = self.transform(frame, history)
        # a copy the scored frame owns (the detector may hand out a view of its own buffer)
        scores = np.array(self.detector_.decision_function(X), dtype=np.float64)
        if not np.isfinite(scores).all():
            bad = np.where(~np.isfinite(scores))[0]
            raise ValueError(
                f"detector {self.detector!r} gave {len(bad)} non-finite score(s) (first at row "
                f"{frame.index[bad[0]]!r}); refusing to export unrankable scores"
            )
        normalized, p = self.lookup_.lookup(scores)
        flags = scores > self.threshold_
        tops = np.full(len(frame), None, dtype=object)
        if flags.any() and top_features:
            idx = np.where(flags)[0]
            tops[idx] = self._top_features(X[idx], top_features)
        # every column is a fresh array: no copy, and no consolidation into 2-D blocks
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
            copy=False,
        )

    def _top_features(self, X: np.ndarray, top_features: int) -> np.ndarray:
        """JSON list of the ``top_features`` numeric features furthest from the centre, per row of ``X``.

        Rows share few distinct rankings, so each distinct one is serialized once.
        """
        numeric = self._numeric_features
        names = self.preprocessor_.feature_names_out_
        deviation = np.where(numeric, np.abs(X), -np.inf)
        order = np.argsort(-deviation, axis=1)[:, : min(top_features, int(numeric.sum()))]
        rankings, row_ranking = np.unique(order, axis=0, return_inverse=True)
        texts = np.array([json.dumps([names[j] for j in cols]) for cols in rankings], dtype=object)
        return texts[row_ranking.reshape(-1)]

    # ---------------------------------------------------------- persistence
    def save(
        self, path: str | Path, info: dict[str, Any] | None = None, *, key: bytes | None = None
    ) -> Path:
        """Save as a signed directory; ``key`` signs it (None: the default signing key)."""
        return save_object(self, path, kind="anomaly_model", info=info, key=key)

    def _save_payload(self, directory: Path, key: bytes) -> None:
        import joblib

        joblib.dump(self.preprocessor_, directory / "preprocessor.joblib")
        save_object(self.detector_, directory / "detector", kind="detector", key=key)
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
        calibration["derivation"] = (
            self.derivation.to_dict() if self.derivation is not None else None
        )
        (directory / "calibration.json").write_text(json.dumps(calibration))
        np.save(directory / "calibration.npy", self.calibration_, allow_pickle=False)

    @classmethod
    def _load_payload(cls, directory: Path, key: bytes) -> AnomalyModel:
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
            derivation=Derivation.from_dict(cal["derivation"]) if cal.get("derivation") else None,
        )
        model.preprocessor_ = joblib.load(directory / "preprocessor.joblib")
        model.detector_ = load_object(directory / "detector", key=key)
        model.quantiles_ = np.asarray(cal["quantiles"])
        model.threshold_ = cal["threshold"]
        model.max_training_score_ = cal["max_training_score"]
        model.training_rows_ = cal["training_rows"]
        model.fit_seconds_ = cal["fit_seconds"]
        model.calibration_ = np.load(directory / "calibration.npy", allow_pickle=False)
        model.n_calibration_ = cal["n_calibration"]
        model._index_scores()
        return model
