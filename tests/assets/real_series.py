"""Real time series through the asset graph: one home for what the real-data tests and benchmarks share.

``tests/assets/test_lifecycle_real.py``, ``test_monitoring_real.py``, ``test_real_graph.py`` and
``benchmarks/real_graph.py`` / ``monitoring_real.py`` all cut a shared NAB or SKAB file into one
CSV per UTC day (as a landing folder holds them), run the feed's jobs in process on a real
Dagster instance, evaluate the retraining sensor as the daemon would, and read what landed in
the warehouse. Those steps live here once, so the tests and the benchmarks measure the same
thing the same way.

The shared data is ``$PYNOMALY_TIMESERIES_DIR``, else ``../shared/datasets/timeseries`` beside
the checkout; callers skip, saying why, when a file is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import sqlalchemy as sa

from tests.assets.helpers import check_results, definitions_for, failure_message, write_feed

TIMESERIES = Path(
    os.environ.get(
        "PYNOMALY_TIMESERIES_DIR",
        Path(__file__).resolve().parents[3] / "shared" / "datasets" / "timeseries",
    )
)
NAB = TIMESERIES / "nab"
SKAB = TIMESERIES / "skab"
#: what the console shows of a run: warnings and errors (the full event log stays in the instance)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# ----------------------------------------------------------------------------- NAB files
def nab_series(series: str) -> pd.DataFrame:
    """A shared NAB file: ``reading_id`` (row number), ``timestamp`` (text, UTC) and ``value``."""
    frame = pd.read_csv(NAB / series)
    frame.insert(0, "reading_id", np.arange(len(frame)))
    return frame[["reading_id", "timestamp", "value"]]


def labelled_windows(series: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The labelled anomaly windows of a NAB file (``combined_windows.json``), naive UTC."""
    windows = json.loads((NAB / "combined_windows.json").read_text())[series]
    return [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in windows]


def labelled_days(series: str) -> set[str]:
    """UTC days touched by a labelled window of a NAB file."""
    return {
        str(day.date())
        for start, end in labelled_windows(series)
        for day in pd.date_range(start.floor("D"), end.floor("D"), freq="D")
    }


def inside_windows(times: pd.Series, windows: Sequence[tuple[pd.Timestamp, pd.Timestamp]]):
    """Per row of ``times``: does it fall inside a labelled window?"""
    times = pd.to_datetime(times, utc=True).dt.tz_localize(None)
    inside = pd.Series(False, index=times.index)
    for start, end in windows:
        inside |= (times >= start) & (times <= end)
    return inside


def flags_outside_windows(
    table: pd.DataFrame, windows: Sequence[tuple[pd.Timestamp, pd.Timestamp]]
) -> pd.Series:
    """Alerts per day (``partition_date``) on rows outside every labelled window."""
    flagged = table["is_anomaly"].astype(bool) & ~inside_windows(table["event_time"], windows)
    return flagged.groupby(table["partition_date"].astype(str)).sum()


def write_days(frame: pd.DataFrame, directory: Path, time_column: str = "timestamp") -> list[str]:
    """``directory/<day>.csv`` per UTC day of ``frame`` (as a landing folder holds them); the days, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    days = pd.to_datetime(frame[time_column], utc=True).dt.strftime("%Y-%m-%d")
    for day, rows in frame.groupby(days):
        rows.to_csv(directory / f"{day}.csv", index=False)
    return sorted(days.unique())


# ----------------------------------------------------------------------------- the graph
@contextlib.contextmanager
def pynomaly_home(home: Path) -> Iterator[Path]:
    """``$PYNOMALY_HOME`` set to ``home`` (the embedded SQLite warehouse, MLflow and stores) and the
    external warehouse/MLflow/report settings unset, all restored afterwards. Build the
    definitions inside it: the stores' directories are resolved when they are built."""
    names = (
        "PYNOMALY_HOME",
        "PYNOMALY_WAREHOUSE_URL",
        "PYNOMALY_MLFLOW_TRACKING_URI",
        "PYNOMALY_REPORTS_DIR",
    )
    saved = {name: os.environ.get(name) for name in names}
    os.environ["PYNOMALY_HOME"] = str(home)
    for name in names[1:]:
        os.environ.pop(name, None)
    try:
        yield home
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job: str,
    partition: str | None = None,
    run_config: dict | None = None,
    tags: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """One job run in process, its console quiet (warnings only)."""
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        partition_key=partition,
        run_config={**(run_config or {}), **QUIET},
        tags=tags,
        raise_on_error=False,
    )


class Daemon:
    """The retraining sensor of ``feed`` evaluated as the daemon would, its run requests executed in process."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, feed: str) -> None:
        self.defs, self.instance, self.feed, self.cursor = defs, instance, feed, None
        self.requests: list[dg.RunRequest] = []
        self.failed: list[str] = []
        #: retrains whose candidate the promotion gate refused (the run fails by design; the champion stays)
        self.blocked: list[str] = []

    def tick(self, max_ticks: int = 4) -> None:
        sensor = self.defs.resolve_sensor_def(f"{self.feed}__retrain_sensor")
        for _ in range(max_ticks):
            with dg.build_sensor_context(
                instance=self.instance, cursor=self.cursor, definitions=self.defs
            ) as ctx:
                data = sensor.evaluate_tick(ctx)
            self.cursor = data.cursor
            if not data.run_requests:
                return
            for request in data.run_requests:
                self.requests.append(request)
                result = run(
                    self.defs,
                    self.instance,
                    request.job_name,
                    request.partition_key,
                    dict(request.run_config or {}),
                    dict(request.tags),
                )
                if result.success:
                    continue
                message = failure_message(result)
                gate = (
                    request.job_name.endswith("__retrain") and "champion: promotion_gate" in message
                )
                (self.blocked if gate else self.failed).append(
                    f"{request.job_name}[{request.partition_key}]: {message}"
                )

    @property
    def retrains(self) -> int:
        return sum(r.job_name.endswith("__retrain") for r in self.requests)


@dataclass
class GraphRun:
    """What a feed's days through the graph left: the exported rows and how the runs went."""

    feed: str
    days: list[str]
    #: ``anomaly_scores`` rows of the feed as the warehouse holds them
    table: pd.DataFrame
    #: the first champion's materialization metadata (decision, gate, version, ...)
    first_champion: dict
    failed: dict[str, str] = field(default_factory=dict)
    retrains: int = 0
    retrains_blocked: int = 0
    runs: int = 0
    #: champions the feed had, in order: version and training days
    champions: list[dict] = field(default_factory=list)
    #: per scored day, the checks of its latest scoring run: {check name: passed}
    checks: dict[str, dict[str, bool]] = field(default_factory=dict)
    #: the first champion's stored value (``ChampionRecord.from_value`` loads its model)
    first_value: dict | None = None
    #: ``$PYNOMALY_HOME`` of the run (stores and the embedded warehouse)
    home: Path | None = None


def read_scores(home: Path, feed: str) -> pd.DataFrame:
    """``anomaly_scores`` rows of ``feed`` in the embedded warehouse under ``home``, in time order."""
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
    try:
        table = pd.read_sql(
            sa.text(
                "SELECT partition_date, record_key, event_time, score, is_anomaly, model_version "
                "FROM anomaly_scores WHERE feed = :feed"
            ),
            engine,
            params={"feed": feed},
        )
    finally:
        engine.dispose()
    table["event_time"] = pd.to_datetime(table["event_time"], utc=True)
    table["is_anomaly"] = table["is_anomaly"].astype(bool)
    return table.sort_values("event_time", kind="stable").reset_index(drop=True)


def run_feed(
    root: Path,
    feed: dict,
    days: Sequence[str],
    train_days: int,
    *,
    monitor: bool = True,
) -> GraphRun:
    """A feed through the asset graph as a new user's deployment would run it.

    ``feed``'s source files must already lie under ``root/feeds``. The first ``train_days`` days
    are ingested, the first training (``<feed>__train``, its window ending on the last of them)
    picks the champion, and they are scored; then each later day is ingested and scored (the
    daily schedule), and with ``monitor`` the retraining sensor is evaluated after every day and
    its retrains and rescorings run. Returns the warehouse's rows and the runs' outcome.
    """
    from pynomaly_assets.names import CHAMPION_VERSION_KEY

    name = feed["name"]
    feeds = root / "feeds"
    write_feed(feeds, feed)
    home, dagster_dir = root / "home", root / "dagster"
    dagster_dir.mkdir(parents=True, exist_ok=True)
    out = GraphRun(name, list(days), pd.DataFrame(), {})

    def step(job: str, partition: str | None = None, config: dict | None = None) -> None:
        result = run(defs, instance, job, partition, config)
        out.runs += 1
        if partition and job.endswith(("__score", "__daily")):
            out.checks[partition] = check_results(instance, result.run_id)
        if not result.success:
            out.failed[f"{job}[{partition or ''}]"] = failure_message(result)

    with pynomaly_home(home), dg.instance_for_test(temp_dir=str(dagster_dir)) as instance:
        # built inside: the stores' directories are resolved from $PYNOMALY_HOME when built
        defs = definitions_for(feeds)
        first = list(days[:train_days])
        for day in first:
            step(f"{name}__ingest", day)
        window = {"ops": {f"{name}__training_window": {"config": {"end_date": first[-1]}}}}
        step(f"{name}__train", config=window)
        from pynomaly_core.storage import JsonStore

        try:
            out.first_value = JsonStore(home / "values").read([name, "champion"])
        except FileNotFoundError:  # the first training failed: out.failed says why
            out.first_value = None
        event = instance.get_latest_materialization_event(dg.AssetKey([name, "champion"]))
        if event is not None and event.asset_materialization is not None:
            out.first_champion = {
                k: v.value for k, v in event.asset_materialization.metadata.items()
            }
        for day in first:
            step(f"{name}__score", day)
        daemon = Daemon(defs, instance, name)
        if monitor:
            daemon.tick()
        for day in days[train_days:]:
            step(f"{name}__daily", day)
            if monitor:
                daemon.tick()
        out.runs += len(daemon.requests)
        out.failed.update({f"sensor: {m[:80]}": m for m in daemon.failed})
        out.retrains, out.retrains_blocked = daemon.retrains, len(daemon.blocked)
        records = instance.fetch_materializations(
            dg.AssetKey([name, "champion"]), limit=100
        ).records
        for record in reversed(records):
            meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
            if meta.get("decision") == "promoted":
                out.champions.append(
                    {
                        "version": str(meta.get(CHAMPION_VERSION_KEY)),
                        "training_days": meta.get("champion_training_days"),
                    }
                )
        out.table = read_scores(home, name)
    out.home = home
    return out


def left_alone(run: GraphRun, time_column: str = "timestamp") -> pd.DataFrame:
    """What the first champion, left alone, flags on every validated day (the counterfactual of
    the monitoring loop): ``partition_date``, ``event_time``, ``is_anomaly``."""
    from pynomaly_core.lifecycle import ChampionRecord
    from pynomaly_core.storage import FrameStore

    assert run.first_value is not None and run.home is not None, f"{run.feed}: no first champion"
    frames = []
    with pynomaly_home(run.home):  # the model store and its signing key live there
        model = ChampionRecord.from_value(run.first_value).load()
    for day in run.days:
        validated = FrameStore(run.home / "frames").read([run.feed, "validated"], day)
        frames.append(
            pd.DataFrame(
                {
                    "partition_date": day,
                    "event_time": validated[time_column],
                    "is_anomaly": model.decision_function(validated) > model.threshold_,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def detections_by_row(table: pd.DataFrame, n_rows: int) -> np.ndarray:
    """``is_anomaly`` of the exported rows placed at their row number (``record_key``); rows the
    graph did not export (quarantined, never scored) count as not detected."""
    out = np.zeros(n_rows, dtype=bool)
    keys = table["record_key"].astype(int).to_numpy()
    out[keys] = table["is_anomaly"].to_numpy(bool)
    return out
