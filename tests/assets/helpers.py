"""Helpers for running the real asset graph in-process on a real (temporary) Dagster instance."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

import dagster as dg
import yaml

from pynomaly_assets.definitions import build_definitions
from pynomaly_assets.feed_context import load_feed_contexts

SMALL_DEMO = {
    "name": "demo_small",
    "source": {
        "kind": "demo",
        "seed": 3,
        "machines": 2,
        "interval_minutes": 15,
        "anomaly_rate": 0.03,
    },
    "event_time": "event_time",
    "record_key": "reading_id",
    "label": "is_anomaly",
    "passthrough": ["machine_id", "anomaly_kind"],
    "features": [
        {"name": "machine_type", "type": "category"},
        {"name": "rpm", "type": "float", "min": 0},
        {"name": "power_kw", "type": "float"},
        {"name": "temperature_c", "type": "float"},
        {"name": "vibration_mm_s", "type": "float", "min": 0},
        {"name": "pressure_bar", "type": "float", "min": 0},
    ],
    "partitioning": {"start_date": "2026-11-01"},
    "validation": {"min_rows": 10},
    "training": {"window_days": 3, "min_rows": 100},
    "detector": {"name": "KNN", "contamination": 0.03},
    # one candidate, the feed's detector: a test that trains this feed pays for one model, not the
    # default portfolio; the tests about choosing among candidates name their own
    "lifecycle": {"candidates": ["KNN"], "n_boot": 200},
}


def write_feed(directory: Path, feed: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{feed['name']}.yaml"
    path.write_text(yaml.safe_dump(feed))
    return path


@cache
def _migrated_mlflow_db() -> Path:
    """An empty MLflow database that MLflow itself created and migrated, once per test process."""
    import mlflow

    directory = tempfile.mkdtemp(prefix="pynomaly_mlflow_template_")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = Path(directory) / "mlflow.db"
    uri = f"sqlite:///{path.as_posix()}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments(max_results=1)  # the tracking store: creates and migrates the schema
    client.search_registered_models(max_results=1)  # the registry store on the same database
    return path


def seed_mlflow(home: Path) -> None:
    """Give ``home`` (a ``$PYNOMALY_HOME``) the empty, already migrated MLflow database of its
    default tracking URI (``home/mlflow/mlflow.db``), copied from one made once per process.

    Every graph test that trains starts from a fresh home, and MLflow's schema migrations of a new
    SQLite database cost seconds each time; the database is the same empty one either way. Runs
    that create the database themselves (the demo, ``test_pipeline.py``) keep that path tested.
    """
    target = home / "mlflow" / "mlflow.db"
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated_mlflow_db(), target)


def definitions_for(feeds_dir: Path) -> dg.Definitions:
    return build_definitions(load_feed_contexts(feeds_dir))


def run_job(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job: str,
    partition: str | None = None,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        partition_key=partition,
        run_config=run_config or {},
        raise_on_error=False,
    )


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags Dagster gives the one run of a single-run backfill of ``first..last``."""
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }


def run_range(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job: str,
    first: str,
    last: str,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of ``job`` over the partitions ``first..last``, as the UI launches a backfill of the
    range-capable assets (``BackfillPolicy.single_run()``): each partition is still materialized
    and checked on its own, in one run instead of one run per partition."""
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        tags=range_tags(first, last),
        run_config=run_config or {},
        raise_on_error=False,
    )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        e.step_failure_data.error.message
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data.error is not None
    )


def check_results(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    """{check name: passed} for the checks evaluated in a run."""
    out = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        data = record.dagster_event.event_specific_data
        out[data.check_name] = data.passed
    return out


def latest_metadata(
    instance: dg.DagsterInstance, key: list[str], partition: str | None = None
) -> dict:
    event = (
        instance.get_latest_materialization_event(dg.AssetKey(key)) if partition is None else None
    )
    if partition is not None:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1
        ).records
        event = records[0].event_log_entry if records else None
    assert event is not None, f"{key} [{partition}] was never materialized"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}
