"""Feature preprocessing fitted with the detector and applied identically at scoring time.

What a user would otherwise write by hand: missing values filled by the feature's
rule, numeric scaling (robust by default), one-hot encoding of categories seen in
training (unseen categories encode as all zeros, so they stand out to most detectors
without breaking the model), and zero-variance columns dropped (PyOD's PCA and
several others fail or divide by zero on them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from pynomaly_core.data.config import FeatureSpec

MAX_CATEGORIES = 50
#: scaled features are clipped to +-this: valid values up to float64's 1.8e308 would otherwise
#: overflow to inf in scaling or in a detector's squares and distances (issue #13, bug 7); a value
#: this many scales from the centre is extreme to every detector either way
FEATURE_LIMIT = 1e15


class FeaturePreprocessor(BaseEstimator):  # type: ignore[misc]  # sklearn has no stubs: Any
    """Turn a validated frame into the float matrix a detector expects.

    Parameters
    ----------
    features : list of FeatureSpec (or their dicts)
        The feed's feature columns, in order.
    scaling : {"robust", "standard", "minmax", "none"}
        Numeric scaling fitted on the training frame.

    Attributes
    ----------
    feature_names_out_ : list of str
        Names of the output columns (``col`` or ``col=category``).
    dropped_constant_ : list of str
        Output columns dropped because they had zero variance in training.
    """

    def __init__(self, features: list[Any], scaling: str = "robust") -> None:
        self.features = features
        self.scaling = scaling

    def _specs(self) -> list[FeatureSpec]:
        specs = getattr(self, "_specs_cache", None)
        if specs is None:
            specs = [
                f if isinstance(f, FeatureSpec) else FeatureSpec.model_validate(f)
                for f in self.features
            ]
            self._specs_cache = specs
        return specs

    def fit(self, frame: pd.DataFrame, y: Any = None) -> FeaturePreprocessor:
        """Learn fill values, scales and categories from the training ``frame``."""
        if self.scaling not in ("robust", "standard", "minmax", "none"):
            raise ValueError(
                f"scaling must be one of 'robust', 'standard', 'minmax', 'none'; got {self.scaling!r}"
            )
        specs = self._specs()
        missing = [s.name for s in specs if s.name not in frame.columns]
        if missing:
            raise ValueError(f"training frame lacks feature column(s) {missing}")
        self.fill_: dict[str, Any] = {}
        self.categories_: dict[str, list[str]] = {}
        for spec in specs:
            col = frame[spec.name]
            if spec.type == "category":
                counts = col.dropna().astype(str).value_counts()
                self.categories_[spec.name] = sorted(counts.index[:MAX_CATEGORIES].tolist())
                continue
            values = col.astype("float64")
            if spec.missing == "mean":
                fill = values.mean()
            elif spec.missing == "zero":
                fill = 0.0
            elif spec.missing == "most_frequent":
                mode = values.mode()
                fill = mode.iloc[0] if len(mode) else 0.0
            else:
                fill = values.median()
            self.fill_[spec.name] = 0.0 if pd.isna(fill) else float(fill)
        matrix, names = self._encode(frame, specs)
        with np.errstate(over="ignore", invalid="ignore"):  # +-1e308: inf std is not constant
            std = matrix.std(axis=0) if len(matrix) else np.zeros(matrix.shape[1])
        keep = std > 1e-12
        self.dropped_constant_ = [n for n, k in zip(names, keep) if not k]
        self.keep_ = keep
        self.feature_names_out_ = [n for n, k in zip(names, keep) if k]
        if not self.feature_names_out_:
            raise ValueError(
                f"every feature column is constant in the training window ({names}); nothing to learn from"
            )
        kept = matrix[:, keep]
        numeric = np.array([not n.count("=") for n in self.feature_names_out_])
        center = np.zeros(kept.shape[1])
        scale = np.ones(kept.shape[1])
        if self.scaling == "robust":
            center = np.median(kept, axis=0)
            q75, q25 = np.percentile(kept, [75, 25], axis=0)
            with np.errstate(over="ignore", invalid="ignore"):
                iqr = q75 - q25
            scale = np.where(iqr > 1e-12, iqr, _overflow_safe_mean_std(kept)[1])
        elif self.scaling == "standard":
            center, scale = _overflow_safe_mean_std(kept)
        elif self.scaling == "minmax":
            center = kept.min(axis=0)
            with np.errstate(over="ignore"):
                scale = kept.max(axis=0) - center
        # quartiles or a range wider than float64's: the largest finite scale instead of inf
        scale = np.where(np.isfinite(scale), scale, np.finfo(np.float64).max)
        # one-hot columns stay 0/1
        self.center_ = np.where(numeric, center, 0.0)
        self.scale_ = np.where(numeric & (scale > 1e-12), scale, 1.0)
        self.n_features_in_ = len(specs)
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode ``frame`` with the fitted rules; returns ``(n_rows, len(feature_names_out_))``."""
        if not hasattr(self, "keep_"):
            raise ValueError("FeaturePreprocessor is not fitted yet: call fit(frame) first")
        matrix, _ = self._encode(frame, self._specs())
        kept = matrix[:, self.keep_] if not self.keep_.all() else matrix
        with np.errstate(over="ignore", invalid="ignore"):
            kept -= self.center_
            kept /= self.scale_
        # only +-1e308 inputs overflow here (validation quarantines inf and NaN): bound them
        np.nan_to_num(kept, copy=False, nan=0.0, posinf=FEATURE_LIMIT, neginf=-FEATURE_LIMIT)
        np.clip(kept, -FEATURE_LIMIT, FEATURE_LIMIT, out=kept)
        return kept

    def _encode(
        self, frame: pd.DataFrame, specs: list[FeatureSpec]
    ) -> tuple[np.ndarray, list[str]]:
        names: list[str] = []
        for spec in specs:
            if spec.name not in frame.columns:
                raise ValueError(f"frame lacks feature column {spec.name!r}")
            names.extend(
                [f"{spec.name}={c}" for c in self.categories_[spec.name]]
                if spec.type == "category"
                else [spec.name]
            )
        n = len(frame)
        matrix = np.zeros((n, len(names)), dtype=np.float64)
        j = 0
        for spec in specs:
            col = frame[spec.name]
            if spec.type == "category":
                cats = self.categories_[spec.name]
                # unseen categories and missing values get code -1: an all-zero one-hot row
                codes = pd.Categorical(col, categories=cats).codes
                hit = np.nonzero(codes >= 0)[0]
                matrix[hit, j + codes[hit]] = 1.0
                j += len(cats)
            else:
                values = col.to_numpy(dtype=np.float64, na_value=np.nan)
                matrix[:, j] = np.where(np.isnan(values), self.fill_[spec.name], values)
                j += 1
        return matrix, names


def _overflow_safe_mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations that stay finite for values near +-1.8e308.

    Computed on the columns divided by their largest magnitude, then scaled back: the plain sum
    and squares overflow to inf (and the scaled features to NaN) for valid extreme values.
    """
    magnitude = np.abs(values).max(axis=0) if len(values) else np.ones(values.shape[1])
    magnitude = np.where(magnitude > 0, magnitude, 1.0)
    unit = values / magnitude
    return unit.mean(axis=0) * magnitude, unit.std(axis=0) * magnitude
