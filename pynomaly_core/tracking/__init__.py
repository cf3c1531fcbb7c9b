"""Experiment tracking and model registry on MLflow (optional extra ``pynomaly[tracking]``).

The Dagster code location wraps :class:`Tracker` in a resource; this package never imports
dagster, and importing it does not import mlflow (every mlflow import is inside a function).

Layout in MLflow, per feed:

* experiment ``"{prefix}/{feed}"``: one run per trained candidate, with its params, metrics
  (``fit_seconds`` ...), tags (``dagster_run_id``, ``feed``, ``reason`` from the caller,
  ``pynomaly.detector`` and ``pynomaly.manifest_sha256`` added here), the evaluation table
  (``evaluation/benchmark.json``) and the model, logged as an MLflow 3 *LoggedModel*
  (``models:/<model_id>``): a pyfunc whose artifact is the signed model directory and whose
  ``predict`` returns :meth:`AnomalyModel.score`;
* registered model ``"{prefix}-{feed}"`` (registered model names may not contain ``/`` or
  ``:``): one version per registered candidate, with version tags ``pynomaly.detector``,
  ``pynomaly.manifest_sha256``, ``pynomaly.model_dir``, ``pynomaly.dagster_run_id`` (and the
  caller's run tags); the champion is an *alias* (``models:/pynomaly-<feed>@champion``).

Model registry *stages* are deprecated since MLflow 2.9 (``transition_model_version_stage``
warns "Model registry stages will be removed in a future major release"); their replacement
is aliases for named references and model version tags for status. A retired version is
therefore marked with the tag ``pynomaly.archived=true`` (:meth:`Tracker.archive_version`),
never a stage.

The tracking URI comes from ``PYNOMALY_MLFLOW_TRACKING_URI``, else ``MLFLOW_TRACKING_URI``,
else an embedded SQLite database under ``$PYNOMALY_HOME/mlflow`` (browse it with the command
:meth:`Tracker.ui_hint` prints).

Modules: :mod:`~pynomaly_core.tracking.settings` (the URI, mlflow's process state),
:mod:`~pynomaly_core.tracking.records` (tags, :class:`CandidateRecord`,
:class:`ModelVersionInfo`) and :mod:`~pynomaly_core.tracking.tracker` (:class:`Tracker`).
"""

from typing import Any

from pynomaly_core.tracking.records import CandidateRecord, ModelVersionInfo
from pynomaly_core.tracking.settings import (
    INSTALL_HINT,
    MLFLOW_TRACKING_URI_ENV,
    TRACKING_URI_ENV,
    TrackingError,
    default_artifact_root,
    default_pip_requirements,
    default_tracking_uri,
    mask_uri,
    require_mlflow,
)
from pynomaly_core.tracking.tracker import EVALUATION_ARTIFACT, MODEL_NAME, Tracker

__all__ = [
    "EVALUATION_ARTIFACT",
    "INSTALL_HINT",
    "MLFLOW_TRACKING_URI_ENV",
    "MODEL_NAME",
    "TRACKING_URI_ENV",
    "CandidateRecord",
    "ModelVersionInfo",
    "Tracker",
    "TrackingError",
    "default_artifact_root",
    "default_pip_requirements",
    "default_tracking_uri",
    "mask_uri",
]


def __getattr__(name: str) -> Any:
    """``PynomalyPyfunc`` is resolved lazily: its module imports mlflow."""
    if name == "PynomalyPyfunc":
        require_mlflow()
        from pynomaly_core._mlflow_pyfunc import PynomalyPyfunc

        return PynomalyPyfunc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
