"""MLflow settings of :mod:`pynomaly_core.tracking`: the tracking URI, its masking, mlflow itself.

The URI is ``$PYNOMALY_MLFLOW_TRACKING_URI``, else ``$MLFLOW_TRACKING_URI``, else an embedded
SQLite database under ``$PYNOMALY_HOME/mlflow``. mlflow is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pynomaly_core.paths import pynomaly_home

TRACKING_URI_ENV = "PYNOMALY_MLFLOW_TRACKING_URI"
MLFLOW_TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
INSTALL_HINT = "pip install 'pynomaly[tracking]'"
#: schemes of backends the process opens itself (no tracking server)
LOCAL_SCHEMES = frozenset({"", "file", "sqlite", "postgresql", "mysql", "mssql"})
#: mlflow's tracking URI and active-run stack are process state: fluent calls hold this lock
FLUENT_LOCK = threading.RLock()


class TrackingError(RuntimeError):
    """The MLflow tracking backend is unreachable or misconfigured; the message names the setting."""


def default_tracking_uri() -> str:
    """``$PYNOMALY_MLFLOW_TRACKING_URI``, else ``$MLFLOW_TRACKING_URI``, else embedded SQLite.

    The embedded default is ``sqlite:///$PYNOMALY_HOME/mlflow/mlflow.db``; its directory is
    created here.
    """
    for env in (TRACKING_URI_ENV, MLFLOW_TRACKING_URI_ENV):
        value = os.environ.get(env, "").strip()
        if value:
            return value
    directory = pynomaly_home() / "mlflow"
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(directory / 'mlflow.db').as_posix()}"


def default_artifact_root() -> str:
    """``$PYNOMALY_HOME/mlflow/artifacts``: where experiments created on a local backend keep artifacts."""
    return str(pynomaly_home() / "mlflow" / "artifacts")


def mask_uri(uri: str) -> str:
    """``uri`` with any password (``user:password@``, ``?password=``/``token=``) replaced by ``***``."""
    masked = uri
    try:
        password = urlsplit(uri).password
    except ValueError:
        password = None
    if password:
        masked = masked.replace(f":{password}@", ":***@", 1)
    return re.sub(
        r"([?&](?:password|passwd|pwd|token|secret|access_token)=)[^&#]*",
        r"\1***",
        masked,
        flags=re.IGNORECASE,
    )


def strip_userinfo(uri: str) -> str:
    """``uri`` without credentials, query or fragment: safe to show as a link."""
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def uri_scheme(uri: str) -> str:
    """The lower-case scheme of ``uri`` without a driver (``postgresql+psycopg`` -> ``postgresql``)."""
    if re.match(r"^[A-Za-z]:[\\/]", uri):  # a Windows path
        return ""
    return urlsplit(uri).scheme.split("+", 1)[0].lower()


def require_mlflow() -> Any:
    """The mlflow module, or an ``ImportError`` naming the extra that installs it."""
    try:
        import mlflow
    except ImportError as exc:
        raise ImportError(
            f"MLflow tracking needs the optional dependency mlflow: {INSTALL_HINT} ({exc})"
        ) from exc
    return mlflow


def _package_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def default_pip_requirements() -> list[str]:
    """The pinned requirements written into a logged pyfunc (so MLflow does not infer them).

    Inferring requirements makes MLflow import the model in a subprocess (seconds); listing
    them is instant. ``pynomaly`` itself is listed too: the pyfunc imports it to load the model.
    """
    reqs = []
    for dist in (
        "mlflow",
        "pynomaly",
        "pyod",
        "scikit-learn",
        "numpy",
        "pandas",
        "joblib",
        "pydantic",
        "pyyaml",
    ):
        ver = _package_version(dist)
        if ver is not None:
            reqs.append(f"{dist}=={ver}")
    return reqs


@contextlib.contextmanager
def fluent_tracking_uri(mlflow: Any, uri: str, registry: bool = False) -> Iterator[None]:
    """Point mlflow's process-wide tracking (and registry) URI at ``uri``; restore it afterwards.

    ``mlflow.set_tracking_uri`` / ``set_registry_uri`` also export ``MLFLOW_TRACKING_URI`` /
    ``MLFLOW_REGISTRY_URI``; those variables are restored too.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {k: os.environ.get(k) for k in (MLFLOW_TRACKING_URI_ENV, "MLFLOW_REGISTRY_URI")}
    previous_tracking = tracking_utils._tracking_uri
    previous_registry = registry_utils._registry_uri
    mlflow.set_tracking_uri(uri)
    if registry:
        mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        if registry:
            mlflow.set_registry_uri(previous_registry)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
