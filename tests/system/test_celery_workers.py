"""A feed's scoring job on two dagster-celery workers through the local broker (PYNOMALY_EXECUTOR=celery).

The instance is ``docker/dagster.yaml`` on a fresh PostgreSQL database; the broker is the local
RabbitMQ server on a virtual host of its own (``tests/system/celery_cluster.py``). Ingest and
training run in this process; the scoring job is launched by ``dagster job execute`` with the
run config of ``deploy/celery/run_config.celery_executor.yaml``, and two ``dagster-celery worker``
processes execute its steps. The feed fans a day out in two chunks (``scoring.fan_out_rows``), so
the two chunk steps run at the same time, one on each worker. Then the same job runs in-process,
and the exported anomaly table must not have changed by a single value.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.assets.helpers import SMALL_DEMO, definitions_for, failure_message, run_job, write_feed

pytest.importorskip("dagster_celery", reason="dagster-celery is not installed (extra 'deploy')")

from tests.system.celery_cluster import celery_cluster, rabbitmq_unavailable

pytestmark = [pytest.mark.system, pytest.mark.postgres]

FEED = "demo_celery"
DAYS = ["2026-11-01", "2026-11-02"]
SCORED_DAY = DAYS[-1]
WORKERS = ["pynomaly-celery-a", "pynomaly-celery-b"]
ROWS = 12 * 96
CELERY_FEED = {
    **SMALL_DEMO,
    "name": FEED,
    # 12 machines every 15 minutes: 1,152 rows a day, scored as two chunks (1,000 and 152 rows)
    "source": {**SMALL_DEMO["source"], "machines": 12},
    "training": {"window_days": 1, "min_rows": 100},
    "scoring": {"fan_out_rows": 1000},
    "lifecycle": {"candidates": ["KNN"], "n_boot": 100},
    "explanations": {"top_k": 5, "max_background": 10},
}
RUN_TIMEOUT = 420  # generous: CI runs this beside the rest of the suite on 2 cores
#: columns that name the run or its time, not the scores
RUN_COLUMNS = ["run_id", "scored_at"]


def exported(cluster) -> pd.DataFrame:
    """The feed's rows of the warehouse anomaly table, without the run's id and time."""
    engine = sa.create_engine(f"sqlite:///{cluster.home / 'warehouse.db'}")
    try:
        frame = pd.read_sql(
            sa.text("SELECT * FROM anomaly_scores WHERE feed = :feed"),
            engine,
            params={"feed": FEED},
        )
    finally:
        engine.dispose()
    return frame.drop(columns=RUN_COLUMNS).sort_values("record_key").reset_index(drop=True)


@pytest.fixture(scope="module")
def celery_run(tmp_path_factory):
    reason = rabbitmq_unavailable()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("celery")
    feeds = root / "feeds"
    write_feed(feeds, CELERY_FEED)
    mp = pytest.MonkeyPatch()
    try:
        with celery_cluster(root, feeds) as cluster:
            for name, value in cluster.instance_env().items():
                mp.setenv(name, value)
            mp.delenv("PYNOMALY_EXECUTOR", raising=False)
            defs = definitions_for(feeds)
            with dg.DagsterInstance.from_config(str(cluster.dagster_home)) as instance:
                # trained on the first day; the second arrives after, and is scored
                for job, partition in [
                    (f"{FEED}__ingest", DAYS[0]),
                    (f"{FEED}__train", None),
                    (f"{FEED}__ingest", DAYS[1]),
                ]:
                    result = run_job(defs, instance, job, partition)
                    assert result.success, f"{job} {partition}: {failure_message(result)}"
                cluster.start_workers(WORKERS)
                pid, code, output = cluster.execute_job(f"{FEED}__score", SCORED_DAY, RUN_TIMEOUT)
                if code != 0:
                    raise cluster.services.fail(
                        f"dagster job execute exited {code}:\n{output[-15000:]}"
                    )
                runs = instance.get_run_records(dg.RunsFilter(job_name=f"{FEED}__score"), limit=1)
                assert runs, f"no run of {FEED}__score was recorded:\n{output[-3000:]}"
                run = runs[0].dagster_run
                events = instance.all_logs(run.run_id)
                # which worker each step ran on, read while the workers (and their pools) live
                step_pids = {
                    e.step_key: e.dagster_event.pid
                    for e in events
                    if e.dagster_event is not None
                    and e.dagster_event.event_type == dg.DagsterEventType.STEP_START
                }
                step_workers = {key: cluster.worker_of(pid) for key, pid in step_pids.items()}
                celery_table = exported(cluster)
                in_process = run_job(defs, instance, f"{FEED}__score", SCORED_DAY)
                assert in_process.success, failure_message(in_process)
                yield {
                    "run": run,
                    "events": events,
                    "launcher_pid": pid,
                    "step_pids": step_pids,
                    "step_workers": step_workers,
                    "celery_table": celery_table,
                    "in_process_table": exported(cluster),
                    "in_process_steps": {
                        e.step_key
                        for e in in_process.all_events
                        if e.event_type == dg.DagsterEventType.STEP_SUCCESS
                    },
                }
    finally:
        mp.undo()


def test_scoring_job_succeeds_with_the_celery_executor(celery_run):
    run = celery_run["run"]
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.run_config["execution"]["config"]["broker"].startswith("amqp://")
    assert run.tags["dagster/partition"] == SCORED_DAY


def test_every_step_ran_in_a_worker_process_not_the_launching_one(celery_run):
    step_pids, step_workers = celery_run["step_pids"], celery_run["step_workers"]
    # the same steps as the in-process run: plan, two chunks, combine and the four downstream assets
    assert set(step_pids) == celery_run["in_process_steps"]
    assert len(step_pids) == 8, sorted(step_pids)
    assert celery_run["launcher_pid"] not in step_pids.values()
    assert all(step_workers[key] in WORKERS for key in step_pids), step_workers


def test_the_worker_reports_each_step_it_executes(celery_run):
    reported = {}
    for record in celery_run["events"]:
        event = record.dagster_event
        if (
            event is not None
            and event.is_engine_event
            and "in celery worker" in (event.message or "")
        ):
            worker = event.engine_event_data.metadata["Celery worker"].value
            reported[event.step_key] = worker.split("@", 1)[0]
    assert reported == celery_run["step_workers"]


def test_two_workers_shared_the_chunks_of_one_partition(celery_run):
    chunk_workers = {
        worker for key, worker in celery_run["step_workers"].items() if "__score_chunk[" in key
    }
    assert chunk_workers == set(WORKERS)


def test_exported_table_equals_the_in_process_run_exactly(celery_run):
    celery_table, in_process_table = celery_run["celery_table"], celery_run["in_process_table"]
    assert len(celery_table) == ROWS
    assert celery_table["is_anomaly"].astype(bool).any()
    pd.testing.assert_frame_equal(celery_table, in_process_table, check_exact=True)
