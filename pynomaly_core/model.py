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

A model built with a :class:`SeriesOrder` (the feed's event time and entity) feeds a
*sequence-aware* detector (:mod:`pynomaly_core.detectors.sequence`: ConvAE, LSTMAE) the way it
needs: rows sorted by event time, one entity at a time (a window never spans two entities), and
the ``window_size - 1`` rows before the scored ones (from ``history``) as the windows' warm-up;
the scores come back aligned to the rows as given. :meth:`AnomalyModel.history_tail` cuts the
history a partition needs (the derived features' look-back plus the windows'), so a day scored
alone with its tail equals the same day scored inside a long run, row for row.

Saved with :func:`pynomaly_core.detectors.save_object` as a signed directory: the
preprocessor (JSON + ``.npz`` arrays, no pickle), the detector (its own signed directory;
skops for PyOD/scikit-learn, deep detectors in their framework's weight format), a JSON
calibration file and the calibration scores (``calibration.npy``, loaded without pickle).
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
from pynomaly_core.detectors.safe_io import (
    LEGACY_PREPROCESSOR,
    PREPROCESSOR_JSON,
    load_payload_file,
    load_preprocessor,
    save_preprocessor,
)
from pynomaly_core.detectors.sequence import is_sequence_aware, warmup_rows
from pynomaly_core.features.derived import Derivation, Warmup, derive, warmup
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


@dataclasses.dataclass(frozen=True)
class SeriesOrder:
    """Which columns put a feed's rows in time order: the event time, and the entity (a series key).

    Only a sequence-aware detector uses it (row-wise detectors do not care about order).
    """

    event_time: str
    entity: str | None = None

    @property
    def columns(self) -> list[str]:
        return [c for c in (self.event_time, self.entity) if c]

    def groups(self, frame: pd.DataFrame) -> list[np.ndarray]:
        """Positions of ``frame``'s rows, one array per entity (all rows without one), each in
        event-time order (ties keep the rows' order)."""
        times = pd.to_datetime(frame[self.event_time], utc=True).to_numpy()
        order = np.argsort(times, kind="stable")
        if self.entity is None:
            return [order]
        keys = frame[self.entity].to_numpy()[order]
        codes, _ = pd.factorize(keys, use_na_sentinel=False)
        by_entity = np.argsort(codes, kind="stable")  # entity blocks, time order kept inside
        bounds = np.flatnonzero(np.diff(codes[by_entity])) + 1
        return np.split(order[by_entity], bounds)


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
    series : SeriesOrder or None
        Event time and entity: a sequence-aware detector then gets its rows in time order per
        entity, with the warm-up from ``history``; None: rows as given (edge-padded windows).
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
        series: SeriesOrder | None = None,
    ) -> None:
        self.features = features
        self.detector = detector
        self.contamination = contamination
        self.params = params or {}
        self.random_state = random_state
        self.scaling = scaling
        self.severity_cutoffs = severity_cutoffs or SeverityCutoffs()
        self.derivation = derivation
        self.series = series

    def unfitted(self) -> AnomalyModel:
        """A new, unfitted model with this one's configuration (what a cross-fitting fold fits)."""
        return AnomalyModel(
            self.features,
            detector=self.detector,
            contamination=self.contamination,
            params=dict(self.params),
            random_state=self.random_state,
            scaling=self.scaling,
            severity_cutoffs=self.severity_cutoffs,
            derivation=getattr(self, "derivation", None),
            series=getattr(self, "series", None),
        )

    # ------------------------------------------------------------ time order and warm-up
    @property
    def sequence_rows(self) -> int:
        """Rows before a scored row that the detector's window reads (0: row-wise or no order)."""
        if getattr(self, "series", None) is None:  # also a model built before series existed
            return 0
        if hasattr(self, "detector_"):
            return warmup_rows(self.detector_)
        from pynomaly_core.detectors import get_spec
        from pynomaly_core.detectors.targets import import_target

        target = import_target(get_spec(self.detector).target)
        if not is_sequence_aware(target):
            return 0
        size = self.params.get("window_size")
        if size is None:
            return warmup_rows(target)
        return int(size) - 1

    def warmup(self) -> Warmup:
        """The look-back of the derived features plus the detector's window, per entity."""
        derived = (
            warmup(self.derivation) if self.derivation is not None else Warmup(0, pd.Timedelta(0))
        )
        return Warmup(derived.rows + self.sequence_rows, derived.span)

    @property
    def needs_history(self) -> bool:
        """Whether scoring a partition needs the rows before it (see :meth:`history_tail`)."""
        return self.warmup().needed

    @property
    def warmup_entity(self) -> str | None:
        """The column the warm-up is counted per value of (None: over all rows)."""
        if self.sequence_rows:
            return self.series.entity  # type: ignore[union-attr]
        d = self.derivation
        return d.entity if d is not None and d.derived.per_entity else None

    @property
    def history_columns(self) -> list[str]:
        """The columns of earlier rows that :meth:`history_tail` and scoring read."""
        columns = self.derivation.columns if self.derivation is not None else []
        if self.sequence_rows:
            columns = [*self.series.columns, *columns, *(f.name for f in self.features)]  # type: ignore[union-attr]
        return list(dict.fromkeys(columns))

    def _time_column(self) -> str:
        return self.series.event_time if self.sequence_rows else self.derivation.event_time  # type: ignore[union-attr]

    def history_tail(self, previous: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
        """The rows of ``previous`` that scoring rows from ``start`` needs as warm-up.

        Without a sequence-aware detector, the derived features' tail
        (:func:`~pynomaly_core.features.derived.history_tail`). With one, per entity the last
        ``window_size - 1`` rows plus the derived look-back of those rows (so their own derived
        values are complete), and every row within the derived time span before the first of them.
        """
        from pynomaly_core.features.derived import history_tail

        if not self.sequence_rows:
            if self.derivation is None:
                return previous.iloc[0:0]
            return history_tail(previous, self.derivation, start)
        need = self.warmup()
        if previous.empty:
            return previous.iloc[0:0]
        before, times, rank = self._ranked_before(previous, start)
        keep = (rank < need.rows).to_numpy()
        if need.span > pd.Timedelta(0):
            windows = (rank < self.sequence_rows).to_numpy()
            first = times[windows].min() if windows.any() else start
            keep |= (times >= first - need.span).to_numpy()
        return before[keep]

    def warmup_covered(
        self, history: pd.DataFrame, start: pd.Timestamp, entities: np.ndarray | None = None
    ) -> bool:
        """Whether ``history`` (earlier rows read so far) holds the whole warm-up of rows from ``start``.

        ``entities``: the entities of the rows to score (default: those in ``history``).
        """
        from pynomaly_core.features.derived import warmup_covered

        if not self.sequence_rows:
            if self.derivation is None:
                return True
            return warmup_covered(history, self.derivation, start, entities)
        if history.empty:
            return False
        need = self.warmup()
        before, times, rank = self._ranked_before(history, start)
        entity = self.series.entity  # type: ignore[union-attr]
        if entity is None:
            enough = len(before) >= need.rows
        else:
            counts = before[entity].value_counts()
            keys = (
                counts.index if entities is None else pd.unique(np.asarray(entities, dtype=object))
            )
            enough = all(counts.get(k, 0) >= need.rows for k in keys)
        if enough and need.span > pd.Timedelta(0):
            windows = (rank < self.sequence_rows).to_numpy()
            first = times[windows].min() if windows.any() else start
            enough = bool(times.min() <= first - need.span)
        return enough

    def _ranked_before(
        self, previous: pd.DataFrame, start: pd.Timestamp
    ) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
        """Rows of ``previous`` before ``start`` in time order, their times, and each row's rank
        from the end of its entity (0 = the last row before ``start``)."""
        times = pd.to_datetime(previous[self._time_column()], utc=True)
        mask = (times < start).to_numpy()
        order = np.argsort(times[mask].to_numpy(), kind="stable")
        before = previous[mask].iloc[order]
        times = times[mask].iloc[order]
        entity = self.series.entity  # type: ignore[union-attr]
        if entity is None:
            rank = pd.Series(np.arange(len(before))[::-1], index=before.index)
        else:
            rank = before.groupby(entity, sort=False, dropna=False).cumcount(ascending=False)
        return before, times, rank

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
        elif self.sequence_rows:
            train_scores = self._fit_sequence(frame, X)
        else:
            self.detector_.fit(X)
        if not self.sequence_rows:
            train_scores = np.asarray(self.detector_.decision_scores_, dtype=float)
        if not np.isfinite(train_scores).all():
            bad = int((~np.isfinite(train_scores)).sum())
            raise ValueError(
                f"detector {self.detector!r} gave {bad} non-finite training score(s) of {len(train_scores)}; "
                "it cannot rank these rows (try another detector or check for constant/duplicate columns)"
            )
        self.train_scores_ = train_scores
        self.quantiles_ = np.quantile(train_scores, QUANTILE_LEVELS)
        self.threshold_ = (
            float(np.quantile(train_scores, 1.0 - float(self.contamination)))
            if self.sequence_rows
            else float(self.detector_.threshold_)
        )
        self.max_training_score_ = float(train_scores.max())
        self.calibrate(train_scores)
        self.training_rows_ = len(frame)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _fit_sequence(self, frame: pd.DataFrame, X: np.ndarray) -> np.ndarray:
        """Fit a sequence-aware detector on the rows in time order, entity after entity; the
        training scores, aligned to ``frame``'s rows, come from scoring each entity on its own
        (so no window spans two entities), as scoring will."""
        groups = self.series.groups(frame)  # type: ignore[union-attr]
        order = np.concatenate(groups) if groups else np.arange(len(frame))
        self.detector_.fit(X[order])
        if len(groups) == 1:
            scores = np.empty(len(frame))
            scores[order] = np.asarray(self.detector_.decision_scores_, dtype=float)
            return scores
        return self._scores_by_entity(X, groups)

    def _scores_by_entity(self, X: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
        scores = np.empty(X.shape[0])
        for rows in groups:
            if len(rows):
                scores[rows] = np.asarray(self.detector_.decision_function(X[rows]), dtype=float)
        return scores

    def _sequence_scores(
        self, frame: pd.DataFrame, history: pd.DataFrame | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(raw scores, detector input) of ``frame``'s rows: ``history`` and ``frame`` derived and
        encoded together, each entity scored in time order, the history rows' scores dropped."""
        columns = list(
            dict.fromkeys(
                [
                    *self.series.columns,  # type: ignore[union-attr]
                    *(self.derivation.columns if self.derivation is not None else []),
                    *(f.name for f in self.features),
                ]
            )
        )
        parts = [frame[columns]]
        if history is not None and len(history):
            missing = [c for c in columns if c not in history.columns]
            if missing:
                raise KeyError(
                    f"detector {self.detector!r}: the warm-up history lacks column(s) {missing} "
                    f"(it needs {self.history_columns})"
                )
            parts.insert(0, history[columns])
        combined = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        X = self.preprocessor_.transform(self.derive(combined.reset_index(drop=True)))
        scores = self._scores_by_entity(X, self.series.groups(combined))  # type: ignore[union-attr]
        skip = len(combined) - len(frame)
        return scores[skip:], X[skip:]

    def calibrate(self, scores: np.ndarray) -> AnomalyModel:
        """Use ``scores`` (raw detector scores of representative rows) for p-values and severity.

        ``fit`` calibrates on the training scores; the lifecycle recalibrates on the
        training scores plus the out-of-sample scores of the held-out slice, and a model
        refitted on the whole window on cross-fitted out-of-fold scores only
        (:mod:`pynomaly_core.lifecycle.refit`).
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
        if self.sequence_rows:
            return self._sequence_scores(frame, history)[0]
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
        if self.sequence_rows:
            raw, X = self._sequence_scores(frame, history)
        else:
            X = self.transform(frame, history)
            raw = self.detector_.decision_function(X)
        # a copy the scored frame owns (the detector may hand out a view of its own buffer)
        scores = np.array(raw, dtype=np.float64)
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
        save_preprocessor(self.preprocessor_, directory)  # JSON + arrays: loaded without pickle
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
        calibration["series"] = dataclasses.asdict(self.series) if self.series is not None else None
        (directory / "calibration.json").write_text(json.dumps(calibration))
        np.save(directory / "calibration.npy", self.calibration_, allow_pickle=False)

    @classmethod
    def _load_payload(cls, directory: Path, key: bytes) -> AnomalyModel:
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
            series=SeriesOrder(**cal["series"]) if cal.get("series") else None,
        )
        model.preprocessor_ = (
            load_preprocessor(directory)
            if (directory / PREPROCESSOR_JSON).exists()
            else load_payload_file(directory / LEGACY_PREPROCESSOR)  # format 1, signature verified
        )
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
