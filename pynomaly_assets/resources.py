"""Resources of the code location: where frames, models and exported tables live.

Everything is configured from environment variables so the same code runs on the
embedded defaults (files under ``$PYNOMALY_HOME``, a SQLite warehouse) and in
production (PostgreSQL warehouse, shared volumes):

* ``PYNOMALY_HOME`` — local state (default ``./.pynomaly``);
* ``PYNOMALY_WAREHOUSE_URL`` — SQLAlchemy URL of the warehouse the anomaly and
  quarantine tables are written to (default ``sqlite:///$PYNOMALY_HOME/warehouse.db``);
* ``PYNOMALY_WAREHOUSE_SCHEMA`` — optional PostgreSQL schema for those tables;
* ``PYNOMALY_MLFLOW_TRACKING_URI`` — MLflow tracking server / backend of candidate runs
  and the model registry (default: SQLite and artifacts under ``$PYNOMALY_HOME/mlflow``);
* ``PYNOMALY_REPORTS_DIR`` — drift, data-quality and maintenance reports and the drift
  references of each champion (default ``$PYNOMALY_HOME/reports``);
* ``PYNOMALY_REPORTS_URL`` — optional URL where a web server serves that directory: reports
  and plots then get a link in the Dagster UI beside their path;
* ``PYNOMALY_NOTIFY_WEBHOOK_URL`` — optional webhook the weekly maintenance report posts to
  when a threshold is crossed (a secret: read at run time, never stored in metadata);
* ``PYNOMALY_SIGNING_KEY`` — the HMAC key that signs and verifies saved models (a secret, read
  at run time; default: the key file ``PYNOMALY_SIGNING_KEY_FILE``, itself by default
  ``~/.config/pynomaly/signing_key``: never inside ``$PYNOMALY_HOME`` or the model store).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from pynomaly_core.paths import pynomaly_home
from pynomaly_core.signing import KEY_ENV, check_key_location, resolve_signing_key
from pynomaly_core.storage import FrameStore, JsonStore


def home_subdir(name: str) -> str:
    return str(pynomaly_home() / name)


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse that BI tools read (anomaly table, quarantine, views)."""

    url: str | None = None
    schema_name: str | None = None

    _engine: Any = PrivateAttr(default=None)

    def resolved_url(self) -> str:
        from pynomaly_core.warehouse import warehouse_url_default

        return self.url or warehouse_url_default()

    def engine(self):
        if self._engine is None:
            from pynomaly_core.warehouse import make_engine

            try:
                self._engine = make_engine(self.resolved_url())
            except ValueError as exc:
                # a wrong URL is no transient error: fail at once, not after the I/O step retries
                raise dg.Failure(str(exc), allow_retries=False) from exc
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @property
    def dialect(self) -> str:
        return self.resolved_url().split(":", 1)[0].split("+", 1)[0]


class ModelStoreResource(dg.ConfigurableResource):
    """Directory of trained models (signed, checksummed directories) and the key that signs them."""

    base_dir: str
    signing_secret: str | None = None
    """The models' HMAC key; :func:`default_resources` sets ``dg.EnvVar("PYNOMALY_SIGNING_KEY")``
    when that is set. Unset: ``$PYNOMALY_SIGNING_KEY`` at run time, else the key file outside
    ``$PYNOMALY_HOME`` and ``base_dir`` (:mod:`pynomaly_core.signing`)."""

    def model_dir(self, feed: str, version: str) -> Path:
        return Path(self.base_dir) / feed / version

    def signing_key(self) -> bytes:
        """The key every model this code location saves is signed with and verified against."""
        return resolve_signing_key(
            pynomaly_home(), secret=self.signing_secret, stores=[self.base_dir]
        )


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking and model registry for candidates and champions.

    A plain resource instead of the dagster-mlflow hook (which ends runs early): each
    call opens and closes its own MLflow run through :class:`pynomaly_core.tracking.Tracker`.
    """

    tracking_uri: str | None = None
    """Default: ``$PYNOMALY_MLFLOW_TRACKING_URI``, else SQLite under ``$PYNOMALY_HOME/mlflow``."""
    experiment_prefix: str = "pynomaly"

    def tracker(self):
        from pynomaly_core.tracking import Tracker

        return Tracker(self.tracking_uri, experiment_prefix=self.experiment_prefix)


class ReportStoreResource(dg.ConfigurableResource):
    """Where reports (HTML, JSON) and per-champion drift references are written."""

    base_dir: str
    base_url: str | None = None
    """Where a web server serves ``base_dir`` (``$PYNOMALY_REPORTS_URL``): reports then get a link
    in the UI beside their path (pynomaly_assets/metadata.py)."""

    def feed_dir(self, feed: str, kind: str) -> Path:
        path = Path(self.base_dir) / feed / kind
        path.mkdir(parents=True, exist_ok=True)
        return path

    def reference_dir(self, feed: str, version: str) -> Path:
        """The drift/health reference of one champion version."""
        return Path(self.base_dir) / feed / "references" / str(version)


class NotifierResource(dg.ConfigurableResource):
    """Webhook of the maintenance notifications; the URL comes from an env var and is never logged."""

    webhook_url: str | None = None
    """Default: ``$PYNOMALY_NOTIFY_WEBHOOK_URL`` (unset: notifications are only written to the warehouse)."""

    def url(self) -> str | None:
        return self.webhook_url or os.environ.get("PYNOMALY_NOTIFY_WEBHOOK_URL") or None


class FrameStoreResource(dg.ConfigurableResource):
    """Parquet files of DataFrame assets, one per partition; assets that read windows use it directly."""

    base_dir: str

    def store(self) -> FrameStore:
        return FrameStore(self.base_dir)


class ParquetFrameIOManager(dg.ConfigurableIOManager):
    """Stores DataFrame asset values as Parquet, one file per partition (no pickling)."""

    frames: FrameStoreResource

    def store(self) -> FrameStore:
        return self.frames.store()

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if context.has_asset_partitions and len(context.asset_partition_keys) > 1:
            # a range run (single-run backfill) returns {partition: frame}: one file per partition
            for partition, frame in obj.items():
                self.store().write(frame, list(context.asset_key.path), partition)
            return
        partition = context.partition_key if context.has_partition_key else None
        path = self.store().write(obj, list(context.asset_key.path), partition)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        key = list(context.asset_key.path)
        if context.has_asset_partitions:
            partitions = context.asset_partition_keys
            if len(partitions) != 1:
                # a range run: {partition: frame}, each read when the body asks for it
                return StoredPartitions(self.store(), key, partitions)
            return self.store().read(key, partitions[0])
        return self.store().read(key)


class StoredPartitions(Mapping):
    """``{partition: frame}`` of one asset's stored partitions, read one at a time on access."""

    def __init__(self, store: FrameStore, key: list[str], partitions: Sequence[str]) -> None:
        self._store, self._key, self._partitions = store, key, list(partitions)

    def __getitem__(self, partition: str) -> Any:
        if partition not in self._partitions:
            raise KeyError(partition)
        return self._store.read(self._key, partition)

    def __contains__(self, partition: object) -> bool:  # without reading the frame
        return partition in self._partitions

    def __iter__(self) -> Iterator[str]:
        return iter(self._partitions)

    def __len__(self) -> int:
        return len(self._partitions)


class JsonIOManager(dg.ConfigurableIOManager):
    """Stores small asset values (model references, metric dicts) as JSON documents."""

    base_dir: str

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        partition = context.partition_key if context.has_partition_key else None
        JsonStore(self.base_dir).write(obj, list(context.asset_key.path), partition)

    def load_input(self, context: dg.InputContext) -> Any:
        store, key = JsonStore(self.base_dir), list(context.asset_key.path)
        if context.has_asset_partitions and len(context.asset_partition_keys) != 1:
            # a window of partitions (e.g. a week of daily reports): {partition: value} of those stored
            return {
                p: store.read(key, p)
                for p in context.asset_partition_keys
                if store.path(key, p).exists()
            }
        partition = context.asset_partition_key if context.has_asset_partitions else None
        return store.read(key, partition)


def default_resources() -> dict[str, Any]:
    """Resources wired from the environment (see the module docstring)."""
    url = dg.EnvVar("PYNOMALY_WAREHOUSE_URL") if os.environ.get("PYNOMALY_WAREHOUSE_URL") else None
    schema = (
        dg.EnvVar("PYNOMALY_WAREHOUSE_SCHEMA")
        if os.environ.get("PYNOMALY_WAREHOUSE_SCHEMA")
        else None
    )
    frames = FrameStoreResource(base_dir=home_subdir("frames"))
    tracking = (
        dg.EnvVar("PYNOMALY_MLFLOW_TRACKING_URI")
        if os.environ.get("PYNOMALY_MLFLOW_TRACKING_URI")
        else None
    )
    reports = os.environ.get("PYNOMALY_REPORTS_DIR")
    signing = dg.EnvVar(KEY_ENV) if os.environ.get(KEY_ENV) else None
    # refuse to start with a signing key that whoever writes models could read
    check_key_location(pynomaly_home(), [home_subdir("models")])
    return {
        "warehouse": WarehouseResource(url=url, schema_name=schema),
        "reports": ReportStoreResource(
            base_dir=dg.EnvVar("PYNOMALY_REPORTS_DIR") if reports else home_subdir("reports"),
            base_url=dg.EnvVar("PYNOMALY_REPORTS_URL")
            if os.environ.get("PYNOMALY_REPORTS_URL")
            else None,
        ),
        "notifier": NotifierResource(),
        "model_store": ModelStoreResource(base_dir=home_subdir("models"), signing_secret=signing),
        "mlflow": MlflowResource(tracking_uri=tracking),
        "frame_store": frames,
        "frame_io_manager": ParquetFrameIOManager(frames=frames),
        "io_manager": JsonIOManager(base_dir=home_subdir("values")),
    }
