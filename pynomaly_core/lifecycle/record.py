"""The champion as a typed record: what the ``champion`` asset stores and every consumer reads.

Scoring, monitoring and explanations read the stored JSON value back with
:meth:`ChampionRecord.from_value` and load the model with :meth:`ChampionRecord.load`, so the
"no champion yet" check and the verified load live here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.model import AnomalyModel


class LifecycleError(ValueError):
    """A training batch or a champion decision cannot be made; the message names the feed and the setting."""


class NoChampionError(LookupError):
    """A feed has no champion yet (its first training was not run, or was refused)."""

    def __init__(self, feed: str, reason: str) -> None:
        super().__init__(f"feed {feed!r} has no champion ({reason})")
        self.feed = feed
        self.reason = reason


@dataclass(frozen=True)
class ChampionRecord:
    """The model that scores a feed, as the ``champion`` asset stores it.

    The stored value (JSON, read by scoring, monitoring and explanations) is
    :meth:`to_value`; :meth:`from_value` reads it back. A feed without a champion has a
    record whose ``version`` and ``path`` are ``None`` and whose ``reason`` says why.
    """

    feed: str
    version: str | None = None
    path: str | None = None
    reason: str = ""
    detector: str | None = None
    manifest_sha256: str | None = None
    threshold: float | None = None
    mlflow_run_id: str | None = None
    registered_model: str | None = None
    run_url: str | None = None
    promoted: bool = False
    evaluation: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    training_days: tuple[str, ...] = ()
    """The UTC days (``YYYY-MM-DD``, ascending) of the window the model was trained on; empty when
    unknown (a value stored before the window was recorded). Rescoring reads it: see
    :func:`pynomaly_core.lifecycle.rescoring_verdict`."""
    fitted_days: tuple[str, ...] = ()
    """The UTC days of the rows the detector was fitted on: the whole training window when it was
    refitted (``lifecycle.refit_on_window``), else the window minus its holdout; empty when unknown."""
    calibration: str | None = None
    """How its p-values are calibrated: ``cross-fit (K folds)`` (out-of-fold scores of the window)
    or ``training+holdout``; None when unknown."""

    @property
    def exists(self) -> bool:
        """The feed has a champion: a registered version with a model directory to load."""
        return self.path is not None and self.version is not None

    @property
    def window_first(self) -> str | None:
        """First day of the training window (None when unknown)."""
        return self.training_days[0] if self.training_days else None

    @property
    def window_last(self) -> str | None:
        """Last day of the training window: the model has seen this day (None when unknown)."""
        return self.training_days[-1] if self.training_days else None

    @classmethod
    def none(cls, feed: str, reason: str) -> ChampionRecord:
        """The record of a feed without champion; ``reason`` says why (shown where scoring refuses)."""
        return cls(feed=feed, reason=reason)

    @classmethod
    def from_value(cls, value: dict[str, Any] | ChampionRecord) -> ChampionRecord:
        """The record of a stored ``champion`` value (unknown keys are ignored)."""
        if isinstance(value, ChampionRecord):
            return value
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in value.items() if k in known}
        if kwargs.get("version") is not None:
            kwargs["version"] = str(kwargs["version"])
        kwargs["metrics"] = dict(kwargs.get("metrics") or {})
        kwargs["training_days"] = tuple(sorted(str(d) for d in kwargs.get("training_days") or ()))
        kwargs["fitted_days"] = tuple(sorted(str(d) for d in kwargs.get("fitted_days") or ()))
        return cls(**kwargs)

    def to_value(self) -> dict[str, Any]:
        """The JSON document the ``champion`` asset stores."""
        if not self.exists:
            return {"feed": self.feed, "version": None, "path": None, "reason": self.reason}
        return {
            "feed": self.feed,
            "detector": self.detector,
            "version": self.version,
            "path": self.path,
            "manifest_sha256": self.manifest_sha256,
            "threshold": self.threshold,
            "mlflow_run_id": self.mlflow_run_id,
            "registered_model": self.registered_model,
            "run_url": self.run_url,
            "promoted": self.promoted,
            "reason": self.reason,
            "evaluation": self.evaluation,
            "metrics": dict(self.metrics),
            "training_days": list(self.training_days),
            "window_first": self.window_first,
            "window_last": self.window_last,
            "fitted_days": list(self.fitted_days),
            "calibration": self.calibration,
        }

    def require(self) -> ChampionRecord:
        """This record, or :class:`NoChampionError` when the feed has no champion."""
        if not self.exists:
            raise NoChampionError(self.feed, self.reason or "not trained")
        return self

    def load(self, signing_key: bytes | None = None) -> AnomalyModel:
        """The champion model, verified against its signature (``signing_key``; None: the default
        key) and the recorded manifest digest."""
        from pynomaly_core.detectors import load_object

        record = self.require()
        if record.path is None:  # require() checked it; narrowed here for the type checker
            raise NoChampionError(self.feed, self.reason or "not trained")
        return cast(
            "AnomalyModel",
            load_object(record.path, expected_sha256=record.manifest_sha256, key=signing_key),
        )
