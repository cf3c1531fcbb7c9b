"""What :class:`~pynomaly_core.tracking.Tracker` writes and reads back: tags and records.

The version and run tags Pynomaly writes (``pynomaly.*``), where a logged candidate lives
(:class:`CandidateRecord`) and a registered version with those tags (:class:`ModelVersionInfo`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TAG_DETECTOR = "pynomaly.detector"
TAG_MANIFEST = "pynomaly.manifest_sha256"
TAG_MODEL_DIR = "pynomaly.model_dir"
TAG_DAGSTER_RUN = "pynomaly.dagster_run_id"
TAG_FEED = "pynomaly.feed"
TAG_ARCHIVED = "pynomaly.archived"
TAG_ARCHIVED_REASON = "pynomaly.archived_reason"
TAG_ARCHIVED_AT = "pynomaly.archived_at"
TAG_PROMOTION = "pynomaly.promotion"
TAG_PROMOTION_REASON = "pynomaly.promotion_reason"
TAG_PROMOTION_AT = "pynomaly.promotion_at"
#: MLflow 3's experiment-type tag: the UI opens an experiment without it in the GenAI view
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_ML = "custom_model_development"


@dataclass
class CandidateRecord:
    """Where one logged candidate lives in MLflow."""

    run_id: str
    experiment_id: str
    model_uri: str
    """``models:/<model_id>`` (the MLflow 3 LoggedModel)."""
    registered_model: str | None
    version: str | None
    run_url: str | None
    model_id: str | None = None

    @property
    def registered_uri(self) -> str | None:
        """``models:/<registered model>/<version>`` when the candidate was registered."""
        if self.registered_model is None or self.version is None:
            return None
        return f"models:/{self.registered_model}/{self.version}"


@dataclass
class ModelVersionInfo:
    """A registered model version with the tags Pynomaly writes."""

    version: str
    run_id: str | None
    detector: str | None
    manifest_sha256: str | None
    model_dir: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    registered_model: str | None = None

    @property
    def archived(self) -> bool:
        return self.tags.get(TAG_ARCHIVED, "").lower() == "true"

    @property
    def dagster_run_id(self) -> str | None:
        return self.tags.get(TAG_DAGSTER_RUN) or None

    @property
    def model_uri(self) -> str | None:
        return f"models:/{self.registered_model}/{self.version}" if self.registered_model else None

    @classmethod
    def from_mlflow(cls, mv: Any) -> ModelVersionInfo:
        tags = dict(mv.tags or {})
        return cls(
            version=str(mv.version),
            run_id=mv.run_id or None,
            detector=tags.get(TAG_DETECTOR),
            manifest_sha256=tags.get(TAG_MANIFEST),
            model_dir=tags.get(TAG_MODEL_DIR),
            tags=tags,
            aliases=list(getattr(mv, "aliases", None) or []),
            registered_model=mv.name,
        )
