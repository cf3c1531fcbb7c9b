"""The :class:`Tracker`: candidate runs, registered versions, aliases and archive tags on MLflow.

See :mod:`pynomaly_core.tracking` for the layout it writes; settings (the tracking URI) are in
:mod:`~pynomaly_core.tracking.settings`, the tags and records in
:mod:`~pynomaly_core.tracking.records`. mlflow is imported inside methods only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import uuid4

from pynomaly_core.tracking.records import (
    EXPERIMENT_KIND_ML,
    TAG_ARCHIVED,
    TAG_ARCHIVED_AT,
    TAG_ARCHIVED_REASON,
    TAG_DAGSTER_RUN,
    TAG_DETECTOR,
    TAG_EXPERIMENT_KIND,
    TAG_FEED,
    TAG_MANIFEST,
    TAG_MODEL_DIR,
    TAG_PROMOTION,
    TAG_PROMOTION_AT,
    TAG_PROMOTION_REASON,
    CandidateRecord,
    ModelVersionInfo,
)
from pynomaly_core.tracking.settings import (
    FLUENT_LOCK,
    LOCAL_SCHEMES,
    TRACKING_URI_ENV,
    TrackingError,
    default_artifact_root,
    default_pip_requirements,
    default_tracking_uri,
    fluent_tracking_uri,
    mask_uri,
    require_mlflow,
    strip_userinfo,
    uri_scheme,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from mlflow import MlflowClient

MODEL_NAME = "model"  # the LoggedModel's name inside a candidate run
EVALUATION_ARTIFACT = "evaluation/benchmark.json"
_MAX_TAG_VALUE = 5000  # MLflow's limit is 8000 characters; keep well below it


def _tag_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_TAG_VALUE else text[: _MAX_TAG_VALUE - 3] + "..."


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _run_name(feed: str, detector: str, tags: Mapping[str, str]) -> str:
    """``<feed>-<detector>-<Dagster run id[:8]>-<4 random hex>``: MLflow's run list tells the
    trainings of one detector apart and points at the Dagster run; the random part keeps two logs
    of one run (or none from Dagster) apart."""
    run = str(tags.get("dagster_run_id") or "")[:8] or "local"
    return f"{feed}-{detector}-{run}-{uuid4().hex[:4]}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _error_code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


class Tracker:
    """A small MLflow layer: candidate runs, the registry's versions, aliases and archive tags.

    Parameters
    ----------
    tracking_uri : str or None
        MLflow tracking URI (``http(s)://`` server, ``sqlite:///``, ``postgresql://`` ...);
        default :func:`default_tracking_uri`. The registry uses the same URI.
    artifact_root : str or None
        Where experiments created by this tracker store artifacts. Default: the tracking
        server's own choice for ``http(s)`` URIs, :func:`default_artifact_root` for a local
        backend (SQLite, PostgreSQL, files), where MLflow would otherwise write ``./mlruns``.
    experiment_prefix : str
        Experiments are ``"{prefix}/{feed}"``, registered models ``"{prefix}-{feed}"``.
    pip_requirements : list of str or None
        Requirements written into logged pyfuncs; default :func:`default_pip_requirements`.

    Operations go through one :class:`mlflow.MlflowClient` bound to ``tracking_uri``; only
    logging the pyfunc uses MLflow's fluent API (it reads the process-wide tracking URI and
    active run), which is done under a lock with the URI restored and the run ended afterwards.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        artifact_root: str | None = None,
        experiment_prefix: str = "pynomaly",
        pip_requirements: list[str] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.experiment_prefix = experiment_prefix
        self._artifact_root = artifact_root
        self.pip_requirements = pip_requirements
        self._client: MlflowClient | None = None
        self._lock = threading.Lock()
        self._experiments: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Tracker(tracking_uri={mask_uri(self.tracking_uri)!r}, prefix={self.experiment_prefix!r})"

    # ------------------------------------------------------------ connection
    @property
    def is_local(self) -> bool:
        """True for a backend this process opens itself (SQLite, a database, files), not a server."""
        return uri_scheme(self.tracking_uri) in LOCAL_SCHEMES

    @property
    def artifact_root(self) -> str | None:
        if self._artifact_root is not None:
            return self._artifact_root
        return default_artifact_root() if self.is_local else None

    def _error(self, problem: str, exc: BaseException | None = None) -> TrackingError:
        detail = ""
        if exc is not None:
            detail = f": {type(exc).__name__}: {exc}"
            try:
                password = urlsplit(self.tracking_uri).password
            except ValueError:
                password = None
            if password:
                detail = detail.replace(password, "***")
            if len(detail) > 1500:
                detail = detail[:1500] + " ..."
        return TrackingError(
            f"MLflow tracking URI {mask_uri(self.tracking_uri)!r} ({TRACKING_URI_ENV}) {problem}{detail}"
        )

    def _check_server(self, timeout: float = 5.0) -> None:
        """Fail fast on an unreachable http(s) server (MLflow itself retries for minutes)."""
        import ssl
        import urllib.error
        import urllib.request

        url = strip_userinfo(self.tracking_uri).rstrip("/") + "/health"
        if uri_scheme(url) not in {"http", "https"}:
            raise ValueError(f"{TRACKING_URI_ENV}: only an http(s) server can be health-checked")
        try:
            urllib.request.urlopen(url, timeout=timeout).close()  # nosec B310: http(s) only, above
        except urllib.error.HTTPError:
            return  # the server answered (maybe 401/404 behind a proxy): it is reachable
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLError):
                return  # TLS set-up is MLflow's business (MLFLOW_TRACKING_INSECURE_TLS, ...)
            raise self._error("cannot be reached; is the tracking server running?", exc) from exc
        except (OSError, ValueError) as exc:
            raise self._error("cannot be reached; is the tracking server running?", exc) from exc

    @property
    def client(self) -> MlflowClient:
        """The :class:`mlflow.MlflowClient` bound to this tracker's URI (created and checked once).

        On a fresh local database the first use runs MLflow's schema migrations.
        """
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> MlflowClient:
        mlflow = require_mlflow()
        scheme = uri_scheme(self.tracking_uri)
        if scheme in {"http", "https"}:
            self._check_server()
        try:
            client: MlflowClient = mlflow.MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
            client.search_experiments(
                max_results=1
            )  # opens the store (migrations) / checks the server
        except Exception as exc:  # a bad scheme, an unreadable database, a refused login
            raise self._error("cannot be used", exc) from exc
        return client

    def check(self) -> None:
        """Open the backend now (raises :class:`TrackingError` naming the setting if it fails)."""
        _ = self.client

    # ------------------------------------------------------------ naming
    def experiment_name(self, feed: str) -> str:
        return f"{self.experiment_prefix}/{feed}"

    def registered_model_name(self, feed: str) -> str:
        """``"{prefix}-{feed}"``: MLflow forbids ``/`` and ``:`` in registered model names."""
        name = f"{self.experiment_prefix}-{feed}"
        if "/" in name or ":" in name:
            raise ValueError(f"registered model name {name!r} may not contain '/' or ':'")
        return name

    def experiment_id(self, feed: str) -> str:
        """The id of experiment ``"{prefix}/{feed}"``, created (with the artifact root) on first use."""
        name = self.experiment_name(feed)
        if name in self._experiments:
            return self._experiments[name]
        from mlflow.exceptions import MlflowException

        client = self.client
        experiment = client.get_experiment_by_name(name)
        if experiment is not None and experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        if experiment is not None and experiment.tags.get(TAG_EXPERIMENT_KIND) is None:
            # an experiment created before the tag existed would open in the GenAI view
            client.set_experiment_tag(
                experiment.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_ML
            )
        if experiment is None:
            location = None
            if self.artifact_root is not None:
                root = self.artifact_root
                location = (
                    Path(root, self.experiment_prefix, feed).resolve().as_uri()
                    if uri_scheme(root) in {"", "file"} and not root.startswith("file:")
                    else f"{root.rstrip('/')}/{self.experiment_prefix}/{feed}"
                )
            try:
                exp_id = client.create_experiment(
                    name,
                    artifact_location=location,
                    tags={TAG_FEED: feed, TAG_EXPERIMENT_KIND: EXPERIMENT_KIND_ML},
                )
            except MlflowException as exc:  # created concurrently by another process
                if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                    raise
                created = client.get_experiment_by_name(name)
                if created is None:  # pragma: no cover - deleted again in between
                    raise
                exp_id = created.experiment_id
        else:
            exp_id = experiment.experiment_id
        self._experiments[name] = exp_id
        return exp_id

    # ------------------------------------------------------------ URLs
    def run_url(self, run_id: str, experiment_id: str | None = None) -> str | None:
        """The tracking UI's page of the run for an http(s) tracking URI; None for a local backend."""
        if uri_scheme(self.tracking_uri) not in {"http", "https"}:
            return None
        if experiment_id is None:
            experiment_id = self.client.get_run(run_id).info.experiment_id
        return f"{strip_userinfo(self.tracking_uri).rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def model_version_url(self, feed: str, version: str | int) -> str | None:
        """The registry page of one version on a tracking server (credentials stripped); None for a
        local backend, which has no UI until ``mlflow ui`` runs (see :meth:`ui_hint`)."""
        if uri_scheme(self.tracking_uri) not in {"http", "https"}:
            return None
        base = strip_userinfo(self.tracking_uri).rstrip("/")
        return f"{base}/#/models/{self.registered_model_name(feed)}/versions/{version}"

    def ui_hint(self) -> str:
        """How to look at the runs: the ``mlflow ui`` command for a local backend, else the server URL."""
        if uri_scheme(self.tracking_uri) in {"http", "https"}:
            return f"open {strip_userinfo(self.tracking_uri).rstrip('/')}"
        return f"mlflow ui --backend-store-uri '{mask_uri(self.tracking_uri)}'"

    # ------------------------------------------------------------ candidates
    def log_candidate(
        self,
        feed: str,
        *,
        detector: str,
        model_dir: str | Path,
        manifest_sha256: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        input_example: pd.DataFrame,
        evaluation: pd.DataFrame | None = None,
        register: bool = True,
        run_name: str | None = None,
        signing_key: bytes | None = None,
    ) -> CandidateRecord:
        """Log one trained candidate as one MLflow run; register it as a new version if ``register``.

        The signed model directory is verified (``expected_sha256=manifest_sha256``, signature
        with ``signing_key``; None: the default key) before it is logged as the artifact of a
        pyfunc model whose signature is inferred from ``input_example`` and the model's score
        frame. ``metrics`` with a None value are skipped.
        """
        from pynomaly_core.detectors.persistence import load_object

        model_dir = Path(model_dir).resolve()
        model = load_object(model_dir, expected_sha256=manifest_sha256, key=signing_key)
        exp_id = self.experiment_id(feed)
        client = self.client
        run_tags = {str(k): _tag_value(v) for k, v in tags.items()}
        run_tags.update({TAG_DETECTOR: detector, TAG_MANIFEST: manifest_sha256, TAG_FEED: feed})
        run = client.create_run(
            exp_id, run_name=run_name or _run_name(feed, detector, tags), tags=run_tags
        )
        run_id = run.info.run_id
        try:
            self._log_run_data(run_id, params, metrics, evaluation)
            model_info = self._log_pyfunc(run_id, model, model_dir, manifest_sha256, input_example)
        except BaseException:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "FAILED")
            raise

        record = CandidateRecord(
            run_id=run_id,
            experiment_id=exp_id,
            model_uri=model_info.model_uri,
            registered_model=None,
            version=None,
            run_url=self.run_url(run_id, exp_id),
            model_id=getattr(model_info, "model_id", None),
        )
        if register:
            # a version carries what identifies and loads it (the pynomaly.* tags); the run keeps
            # the free text (reason, asset) that the registry UI would only show truncated
            version_tags = {k: v for k, v in run_tags.items() if k.startswith("pynomaly.")}
            version_tags[TAG_MODEL_DIR] = str(model_dir)
            if tags.get("dagster_run_id"):
                version_tags[TAG_DAGSTER_RUN] = str(tags["dagster_run_id"])
            mv = self._create_version(feed, model_info, run_id, version_tags)
            record.registered_model = mv.name
            record.version = str(mv.version)
        return record

    def _log_run_data(
        self,
        run_id: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        evaluation: pd.DataFrame | None,
    ) -> None:
        """A run's params and metrics (None values skipped), 100 per call, and its evaluation table."""
        from mlflow.entities import Metric, Param

        now_ms = int(time.time() * 1000)
        metric_list = [
            Metric(str(k), float(v), now_ms, 0) for k, v in metrics.items() if v is not None
        ]
        param_list = [Param(str(k), _param_value(v)) for k, v in params.items()]
        for start in range(0, max(len(param_list), len(metric_list), 1), 100):
            self.client.log_batch(
                run_id,
                metrics=metric_list[start : start + 100],
                params=param_list[start : start + 100],
            )
        if evaluation is not None:
            self.client.log_table(run_id, data=evaluation, artifact_file=EVALUATION_ARTIFACT)

    def _log_pyfunc(
        self,
        run_id: str,
        model: Any,
        model_dir: Path,
        manifest_sha256: str,
        input_example: Any,
    ) -> Any:
        mlflow = require_mlflow()
        from mlflow.models import infer_signature

        from pynomaly_core import _mlflow_pyfunc

        signature = infer_signature(input_example, model.score(input_example))
        with FLUENT_LOCK, fluent_tracking_uri(mlflow, self.tracking_uri):
            nested = mlflow.active_run() is not None
            mlflow.start_run(run_id=run_id, nested=nested)
            status = "FAILED"
            try:
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME,
                    # models from code: the file is copied into the model; nothing is pickled
                    python_model=str(Path(_mlflow_pyfunc.__file__).resolve()),
                    artifacts={_mlflow_pyfunc.ARTIFACT_KEY: str(model_dir)},
                    model_config={_mlflow_pyfunc.SHA_KEY: manifest_sha256},
                    signature=signature,
                    input_example=input_example,
                    pip_requirements=self.pip_requirements or default_pip_requirements(),
                )
                status = "FINISHED"
            finally:
                mlflow.end_run(status)
        return info

    def _create_version(self, feed: str, model_info: Any, run_id: str, tags: dict[str, str]) -> Any:
        from mlflow.exceptions import MlflowException

        client = self.client
        name = self.registered_model_name(feed)
        try:
            client.create_registered_model(name, tags={TAG_FEED: feed})
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
        # The source is the LoggedModel's artifact location, not ``models:/<model_id>``: MLflow's
        # SQL registry resolves a models:/ source with a client on the *global* tracking URI
        # (a TODO in mlflow/store/model_registry/sqlalchemy_store.py), which may be another backend.
        model_id = getattr(model_info, "model_id", None)
        source = (
            client.get_logged_model(model_id).artifact_location
            if model_id
            else model_info.model_uri
        )
        return client.create_model_version(
            name, source=source, run_id=run_id, tags=tags, model_id=model_id
        )

    def load_pyfunc(self, model_uri: str) -> Any:
        """``mlflow.pyfunc.load_model(model_uri)`` against this tracker's backend.

        ``model_uri`` may be ``models:/<model_id>``, ``models:/<name>/<version>`` or
        ``models:/<name>@<alias>``. Loading verifies the model directory's signature with the
        signing key of this process.
        """
        mlflow = require_mlflow()
        with FLUENT_LOCK, fluent_tracking_uri(mlflow, self.tracking_uri, registry=True):
            return mlflow.pyfunc.load_model(model_uri)

    # ------------------------------------------------------------ decisions
    def log_decision(
        self,
        feed: str,
        run_id: str,
        *,
        decision: str | None = None,
        reason: str | None = None,
        metrics: Mapping[str, float | None] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Add the champion decision's evidence to the candidate's (finished) run.

        ``decision`` (e.g. ``"champion"`` / ``"rejected"``) and ``reason`` become the run tags
        ``pynomaly.promotion`` / ``pynomaly.promotion_reason`` and are copied onto the feed's
        registered versions created from that run; ``metrics`` (e.g. the champion's and the
        candidate's benchmark figures) and ``tags`` are added to the run.
        """
        from mlflow.entities import Metric, RunTag

        client = self.client
        all_tags = {str(k): _tag_value(v) for k, v in (tags or {}).items()}
        if decision is not None:
            all_tags[TAG_PROMOTION] = decision
            all_tags[TAG_PROMOTION_AT] = _now()
        if reason is not None:
            all_tags[TAG_PROMOTION_REASON] = _tag_value(reason)
        now_ms = int(time.time() * 1000)
        metric_list = [
            Metric(str(k), float(v), now_ms, 0) for k, v in (metrics or {}).items() if v is not None
        ]
        tag_list = [RunTag(k, v) for k, v in all_tags.items()]
        for start in range(0, max(len(metric_list), len(tag_list), 1), 100):
            client.log_batch(
                run_id, metrics=metric_list[start : start + 100], tags=tag_list[start : start + 100]
            )
        version_tags = {k: v for k, v in all_tags.items() if k.startswith("pynomaly.promotion")}
        if version_tags:
            for info in self.list_versions(feed):
                if info.run_id == run_id and info.registered_model is not None:
                    for key, value in version_tags.items():
                        client.set_model_version_tag(
                            info.registered_model, info.version, key, value
                        )

    # ------------------------------------------------------------ aliases
    def set_alias(self, feed: str, alias: str, version: str | int) -> None:
        """Point ``alias`` (e.g. ``champion``) at ``version``, moving it if it pointed elsewhere."""
        self.client.set_registered_model_alias(
            self.registered_model_name(feed), alias, str(version)
        )

    def get_alias(self, feed: str, alias: str) -> ModelVersionInfo | None:
        """The version ``alias`` points at; None if the alias or the registered model does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(self.registered_model_name(feed), alias)
        except MlflowException as exc:
            # a missing registered model is RESOURCE_DOES_NOT_EXIST; a missing alias (MLflow 3
            # SQL store) INVALID_PARAMETER_VALUE "Registered model alias ... not found."
            code = _error_code(exc)
            if code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"} or (
                code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc).lower()
            ):
                return None
            raise
        return ModelVersionInfo.from_mlflow(mv)

    def delete_alias(self, feed: str, alias: str) -> None:
        """Remove ``alias`` (a missing alias or registered model is not an error)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model_alias(self.registered_model_name(feed), alias)
        except MlflowException as exc:
            if _error_code(exc) not in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
                raise

    # ------------------------------------------------------------ versions
    def get_version(self, feed: str, version: str | int) -> ModelVersionInfo:
        mv = self.client.get_model_version(self.registered_model_name(feed), str(version))
        return ModelVersionInfo.from_mlflow(mv)

    def list_versions(self, feed: str, *, include_archived: bool = True) -> list[ModelVersionInfo]:
        """The feed's registered versions with their aliases, oldest first (empty if none yet)."""
        name = self.registered_model_name(feed)
        escaped = name.replace("'", "\\'")
        versions = [
            ModelVersionInfo.from_mlflow(mv)
            for mv in _all_pages(self.client.search_model_versions, f"name = '{escaped}'")
        ]
        versions.sort(key=lambda v: int(v.version))
        if versions:
            self._fill_aliases(name, versions)
        if not include_archived:
            versions = [v for v in versions if not v.archived]
        return versions

    def _fill_aliases(self, name: str, versions: list[ModelVersionInfo]) -> None:
        """Add the registered model's aliases to ``versions`` where the search left them empty.

        MLflow 3's SQL store returns no aliases from ``search_model_versions`` (its REST store
        does); the registered model lists them all (alias -> version) in one call.
        """
        from mlflow.exceptions import MlflowException

        try:
            aliases = dict(self.client.get_registered_model(name).aliases or {})
        except MlflowException as exc:  # deleted since it was searched: nothing points anywhere
            if _error_code(exc) not in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
                raise
            return
        for info in versions:
            if not info.aliases:
                info.aliases = [
                    alias for alias, version in aliases.items() if str(version) == info.version
                ]

    def archive_version(self, feed: str, version: str | int, reason: str) -> ModelVersionInfo:
        """Mark ``version`` retired with the tags ``pynomaly.archived=true`` (+ reason, time).

        MLflow 3 keeps stages only as deprecated API, so archiving is a tag. A version an alias
        still points at (e.g. the champion) is refused: move or delete the alias first.
        """
        name = self.registered_model_name(feed)
        client = self.client
        info = ModelVersionInfo.from_mlflow(client.get_model_version(name, str(version)))
        if info.aliases:
            raise ValueError(
                f"registered model {name!r} version {version} still has alias(es) {info.aliases}; "
                "move or delete them before archiving it"
            )
        for key, value in {
            TAG_ARCHIVED: "true",
            TAG_ARCHIVED_REASON: _tag_value(reason),
            TAG_ARCHIVED_AT: _now(),
        }.items():
            client.set_model_version_tag(name, str(version), key, value)
        return ModelVersionInfo.from_mlflow(client.get_model_version(name, str(version)))


def _all_pages(search: Callable[..., Any], filter_string: str) -> Iterator[Any]:
    token = None
    while True:
        page = search(filter_string=filter_string, page_token=token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return
