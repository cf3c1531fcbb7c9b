"""An ensemble of registry detectors with normalised, combined scores.

Detectors score on different scales (distances, log-densities, probabilities), so
each member's scores are first mapped to a common scale fitted on that member's
training scores, then combined row by row.

Example
-------
>>> import numpy as np
>>> from pynomaly_core.detectors import create
>>> rng = np.random.default_rng(0)
>>> X = np.vstack([rng.normal(size=(300, 4)), [[7.0, -7.0, 7.0, -7.0]]])
>>> det = create("Ensemble", detectors=["IForest", ("KNN", {"n_neighbors": 10})],
...              combination="maximum", random_state=0).fit(X)
>>> int(np.argmax(det.decision_scores_))
300
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from pynomaly_core.detectors.base import BaseDetector, DetectorError

NORMALIZATIONS = ("rank", "zscore", "minmax")
COMBINATIONS = ("average", "maximum", "aom", "moa")
DEFAULT_DETECTORS = ("IForest", "HBOS", "ECOD", "KNN")

_SHELL = "ensemble.joblib"


def _member_spec(item: Any, index: int) -> tuple[str, dict[str, Any]]:
    """``(name, params)`` from a registry name, a pair or a ``{"name", "params"}`` mapping."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Mapping) and "name" in item:
        return item["name"], dict(item.get("params") or {})
    if (
        isinstance(item, Sequence)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], Mapping)
    ):
        return item[0], dict(item[1])
    raise DetectorError(
        f"Ensemble: detectors[{index}] must be a registry name, a (name, params) pair or "
        f"{{'name': ..., 'params': {{...}}}}, got {item!r}."
    )


class EnsembleDetector(BaseDetector):
    """Combine several registry detectors.

    Parameters
    ----------
    detectors : sequence
        Members, each a registry name (``"IForest"``), a ``(name, params)`` pair or a
        ``{"name": ..., "params": {...}}`` mapping (the form a feed YAML gives).
    normalization : {"rank", "zscore", "minmax"}
        How each member's scores are put on a common scale, fitted on that member's
        training scores: ``"rank"`` maps a score to its mid-rank among the training
        scores (in [0, 1]; robust to outliers, saturates at 1 beyond the training
        maximum), ``"zscore"`` subtracts the mean and divides by the standard
        deviation, ``"minmax"`` maps the training range to [0, 1].
    combination : {"average", "maximum", "aom", "moa"}
        Row-wise combination of the normalised scores: mean, maximum,
        average-of-maximum (maximum within each of ``n_buckets`` groups of members,
        then the mean of the groups) or maximum-of-average.
    n_buckets : int
        Number of member groups for ``"aom"`` and ``"moa"``; between 1 and the
        number of members. Members are assigned to groups by a permutation drawn
        from ``random_state``.
    contamination : float in (0, 0.5]
        Expected share of anomalies; sets ``threshold_``.
    random_state : int or None
        Seeds the grouping and the members (member ``i`` gets ``random_state + i``
        when it accepts a ``random_state``).

    Attributes
    ----------
    members_ : list of BaseDetector
        The fitted members, in the order of ``detectors``.
    member_names_ : list of str
        Their registry names.
    buckets_ : list of ndarray
        Member indices of each group (one group holding all members for
        ``"average"`` and ``"maximum"``).
    sorted_scores_ : list of ndarray
        Each member's sorted training scores (``normalization="rank"``).
    center_, scale_ : ndarray of shape (n_members,)
        Offset and scale of each member's scores (``"zscore"``, ``"minmax"``).
    """

    detector_name = "Ensemble"

    def __init__(
        self,
        detectors: Sequence[Any] = DEFAULT_DETECTORS,
        normalization: str = "rank",
        combination: str = "average",
        n_buckets: int = 2,
        contamination: float = 0.1,
        random_state: int | None = None,
    ) -> None:
        super().__init__(contamination=contamination)
        self.detectors = detectors
        self.normalization = normalization
        self.combination = combination
        self.n_buckets = n_buckets
        self.random_state = random_state

    # ------------------------------------------------------------ validation
    def _check_params(self) -> list[tuple[str, dict[str, Any]]]:
        if self.normalization not in NORMALIZATIONS:
            raise DetectorError(
                f"Ensemble: normalization must be one of {list(NORMALIZATIONS)}, "
                f"got {self.normalization!r}."
            )
        if self.combination not in COMBINATIONS:
            raise DetectorError(
                f"Ensemble: combination must be one of {list(COMBINATIONS)}, "
                f"got {self.combination!r}."
            )
        if isinstance(self.detectors, (str, Mapping)) or not isinstance(self.detectors, Sequence):
            raise DetectorError(
                "Ensemble: detectors must be a list of registry names or (name, params) pairs, "
                f"got {self.detectors!r}."
            )
        if len(self.detectors) == 0:
            raise DetectorError("Ensemble: detectors must name at least one detector, got [].")
        specs = [_member_spec(item, i) for i, item in enumerate(self.detectors)]
        if self.combination in ("aom", "moa"):
            n = len(specs)
            if (
                not isinstance(self.n_buckets, numbers.Integral)
                or isinstance(self.n_buckets, bool)
                or not 1 <= self.n_buckets <= n
            ):
                raise DetectorError(
                    f"Ensemble: n_buckets must be an integer from 1 to the number of detectors "
                    f"({n}) for combination={self.combination!r}, got {self.n_buckets!r}."
                )
        if self.random_state is not None and (
            not isinstance(self.random_state, numbers.Integral)
            or isinstance(self.random_state, bool)
        ):
            raise DetectorError(
                f"Ensemble: random_state must be an int or None, got {self.random_state!r}."
            )
        return specs

    # ----------------------------------------------------------------- hooks
    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        from pynomaly_core.detectors.registry import create

        specs = self._check_params()
        members = []
        for i, (name, params) in enumerate(specs):
            member = create(name, **params)
            if (
                self.random_state is not None
                and "random_state" in member.get_params()
                and "random_state" not in params
            ):
                member.set_params(random_state=self.random_state + i)
            member.fit(X, y if member.requires_labels else None)
            members.append(member)
        self.members_ = members
        self.member_names_ = [name for name, _ in specs]

        train = np.column_stack([m.decision_scores_ for m in members])
        if self.normalization == "rank":
            self.sorted_scores_ = [np.sort(train[:, j]) for j in range(train.shape[1])]
        elif self.normalization == "zscore":
            self.center_ = train.mean(axis=0)
            self.scale_ = train.std(axis=0)
        else:
            self.center_ = train.min(axis=0)
            self.scale_ = train.max(axis=0) - self.center_
        if self.normalization != "rank":
            self.scale_ = np.where(self.scale_ > 0, self.scale_, 1.0)

        k = len(members)
        if self.combination in ("aom", "moa"):
            order = np.random.default_rng(self.random_state).permutation(k)
            self.buckets_ = np.array_split(order, self.n_buckets)
        else:
            self.buckets_ = [np.arange(k)]

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        train = np.column_stack([m.decision_scores_ for m in self.members_])
        return self._combine(self._normalize(train))

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._combine(
            self._normalize(np.column_stack([m.decision_function(X) for m in self.members_]))
        )

    # --------------------------------------------------------------- helpers
    def _normalize(self, scores: np.ndarray) -> np.ndarray:
        if self.normalization == "rank":
            out = np.empty_like(scores)
            for j, ref in enumerate(self.sorted_scores_):
                lo = np.searchsorted(ref, scores[:, j], side="left")
                hi = np.searchsorted(ref, scores[:, j], side="right")
                out[:, j] = (lo + hi) / (2.0 * ref.size)
            return out
        return cast("np.ndarray", (scores - self.center_) / self.scale_)

    def _combine(self, scores: np.ndarray) -> np.ndarray:
        if self.combination == "average":
            return cast("np.ndarray", scores.mean(axis=1))
        if self.combination == "maximum":
            return cast("np.ndarray", scores.max(axis=1))
        if self.combination == "aom":
            return cast(
                "np.ndarray",
                np.column_stack([scores[:, b].max(axis=1) for b in self.buckets_]).mean(axis=1),
            )
        return cast(
            "np.ndarray",
            np.column_stack([scores[:, b].mean(axis=1) for b in self.buckets_]).max(axis=1),
        )

    # ------------------------------------------------------------ persistence
    def _save_payload(self, dirpath: Path, key: bytes) -> None:
        """Write the ensemble without its members (skops) and each member as its own saved model.

        Members go through :func:`~pynomaly_core.detectors.persistence.save_object` with the
        ensemble's ``key``, so deep members keep their framework-native files; the ensemble's
        manifest checksums every file below it, the members' included.
        """
        from pynomaly_core.detectors.persistence import save_object
        from pynomaly_core.detectors.safe_io import dump_estimator

        shell = copy.copy(self)
        shell.__dict__.pop("members_", None)
        dump_estimator(shell, dirpath, "ensemble")
        for i, member in enumerate(getattr(self, "members_", [])):
            save_object(
                member,
                dirpath / f"member-{i}",
                kind="detector",
                info={"name": type(member).__name__},
                key=key,
            )

    @classmethod
    def _load_payload(cls, dirpath: Path, key: bytes) -> EnsembleDetector:
        """Rebuild an ensemble written by :meth:`_save_payload`."""
        from pynomaly_core.detectors.persistence import load_object
        from pynomaly_core.detectors.safe_io import load_payload_file

        dirpath = Path(dirpath)
        safe = dirpath / "ensemble.skops"
        # models of format 1 and shells skops cannot represent: a pickle, verified by the caller
        shell = load_payload_file(safe if safe.exists() else dirpath / _SHELL)
        if hasattr(shell, "member_names_"):
            shell.members_ = [
                load_object(dirpath / f"member-{i}", key=key)
                for i in range(len(shell.member_names_))
            ]
        return cast("EnsembleDetector", shell)
