"""Bug 8 (#13): a day that failed a blocking validation check stays out of later runs.

The blocking checks of ``validated`` stop downstream steps only inside the run that evaluated
them. These tests fail a day's ``schema_pass_rate`` in its ingest run, then check that separate
scoring, export and training runs read the verdict from the instance: scoring refuses the day
naming the check, the export writes nothing for it, ``training_window`` leaves it out; and that
the user's override (run tag or run config) uses it anyway, recorded in the metadata and the
event log. A re-ingest that passes lifts the block.
"""

import dagster as dg
import pytest
import sqlalchemy as sa

from pynomaly_assets.defs.validation import SCHEMA_PASS_RATE, failed_validations
from pynomaly_assets.names import ACCEPT_FAILED_VALIDATION_TAG, FAILED_VALIDATION_ACCEPTED_KEY
from tests.assets.helpers import (
    check_results,
    definitions_for,
    failure_message,
    latest_metadata,
    run_job,
    seed_mlflow,
    write_feed,
)

NAME = "gated_csv"
FEED = {
    "name": NAME,
    "source": {"kind": "csv", "path": "landing/{date}.csv"},
    "event_time": "ts",
    "record_key": "id",
    "features": [
        {"name": "temp", "type": "float", "min": -20, "max": 80},
        {"name": "load", "type": "float"},
    ],
    "partitioning": {"start_date": "2026-11-01"},
    "validation": {"min_pass_rate": 0.9, "min_rows": 1},
    "training": {"window_days": 3, "min_rows": 20},
    "detector": {"name": "KNN", "contamination": 0.05},
    # one cheap candidate: the tests are about which days are used, not about model choice
    "lifecycle": {"candidates": ["KNN"], "n_boot": 100, "synthetic_anomalies": 20},
}
HEADER = "id,ts,temp,load\n"
GOOD, BAD, LATER = "2026-11-01", "2026-11-02", "2026-11-03"
VALIDATED = dg.AssetKey([NAME, "validated"])


def rows(day: str, n: int = 48, bad: int = 0) -> str:
    """``n`` rows of ``day``; the first ``bad`` of them have a temperature above the feed's max."""
    return "".join(
        f"{day}-{i},{day}T{i % 24:02d}:{i % 60:02d}:00Z,"
        f"{200 if i < bad else 20 + i % 7}.5,{1 + (i * 7) % 11}.0\n"
        for i in range(n)
    )


def warehouse_rows(home, day: str) -> int:
    engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("anomaly_scores"):
            return 0
        return conn.execute(
            sa.text("SELECT COUNT(*) FROM anomaly_scores WHERE feed = :f AND partition_date = :d"),
            {"f": NAME, "d": day},
        ).scalar_one()


def warnings_of(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        e.message
        for e in instance.all_logs(run_id)
        if e.dagster_event is None and e.level >= 30  # logging.WARNING
    ]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """Days 1 and 3 pass validation, day 2 fails schema_pass_rate; a champion trained on the window."""
    root = tmp_path_factory.mktemp("blocking")
    home = root / "pynomaly_home"
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(home))
    seed_mlflow(home)
    feeds = root / "feeds"
    write_feed(feeds, FEED)
    landing = feeds / "landing"
    landing.mkdir()
    for day, bad in ((GOOD, 0), (BAD, 40), (LATER, 0)):
        (landing / f"{day}.csv").write_text(HEADER + rows(day, bad=bad))
    defs = definitions_for(feeds)
    with dg.instance_for_test(temp_dir=str(root)) as instance:
        ingests = {
            day: run_job(defs, instance, f"{NAME}__ingest", day) for day in (GOOD, BAD, LATER)
        }
        train = run_job(
            defs,
            instance,
            f"{NAME}__train",
            run_config={"ops": {f"{NAME}__training_window": {"config": {"end_date": LATER}}}},
        )
        yield {
            "defs": defs,
            "instance": instance,
            "home": home,
            "landing": landing,
            "ingests": ingests,
            "train": train,
        }
    mp.undo()


@pytest.fixture(autouse=True)
def same_home(graph, monkeypatch):
    """Every test of the module works in the module's PYNOMALY_HOME (conftest gives each its own)."""
    monkeypatch.setenv("PYNOMALY_HOME", str(graph["home"]))


#: the score job's assets that score and export (drift and performance are not under test)
EXPORT_PATH = [dg.AssetKey([NAME, a]) for a in ("anomaly_scores", "explanations", "anomaly_table")]


def score(graph, day: str, tags: dict | None = None) -> dg.ExecuteInProcessResult:
    return (
        graph["defs"]
        .resolve_job_def(f"{NAME}__score")
        .execute_in_process(
            instance=graph["instance"],
            partition_key=day,
            tags=tags or {},
            asset_selection=EXPORT_PATH,
            raise_on_error=False,
        )
    )


def test_the_bad_day_fails_its_blocking_check_in_the_ingest_run(graph):
    result = graph["ingests"][BAD]
    assert check_results(graph["instance"], result.run_id)[SCHEMA_PASS_RATE] is False
    # a failed check is no transient error: the step's retry policy does not run it again
    retries = graph["instance"].all_logs(
        result.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
    )
    assert retries == []
    # the failing day is materialized all the same: that is why later runs used to pick it up
    assert BAD in graph["instance"].get_materialized_partitions(VALIDATED)
    failed = failed_validations(graph["instance"], VALIDATED, [GOOD, BAD, LATER])
    assert list(failed) == [BAD] and list(failed[BAD].checks) == [SCHEMA_PASS_RATE]
    assert failed[BAD].run_id == result.run_id


def test_training_window_leaves_the_failed_day_out(graph):
    assert graph["train"].success, failure_message(graph["train"])
    meta = latest_metadata(graph["instance"], [NAME, "training_window"])
    assert meta["partitions_used"] == [GOOD, LATER]
    assert meta["partitions_blocked"] == {BAD: [SCHEMA_PASS_RATE]}
    assert meta[FAILED_VALIDATION_ACCEPTED_KEY] == {}
    assert meta["dagster/row_count"] == 2 * 48


def test_a_separate_scoring_run_refuses_the_failed_day_and_exports_nothing(graph):
    result = score(graph, BAD)
    assert not result.success
    message = failure_message(result)
    assert f"partition {BAD} failed blocking check(s)" in message
    assert SCHEMA_PASS_RATE in message and graph["ingests"][BAD].run_id in message
    assert "accept_failed_validation" in message and ACCEPT_FAILED_VALIDATION_TAG in message
    assert warehouse_rows(graph["home"], BAD) == 0
    # a day that passed is scored and exported as usual
    good = score(graph, GOOD)
    assert good.success, failure_message(good)
    assert warehouse_rows(graph["home"], GOOD) == 48


def test_the_override_tag_scores_and_exports_the_day_and_records_it(graph):
    result = score(graph, BAD, tags={ACCEPT_FAILED_VALIDATION_TAG: BAD})
    assert result.success, failure_message(result)
    for asset in ("anomaly_scores", "anomaly_table"):
        meta = latest_metadata(graph["instance"], [NAME, asset], BAD)
        assert meta[FAILED_VALIDATION_ACCEPTED_KEY] == {BAD: [SCHEMA_PASS_RATE]}
    assert warehouse_rows(graph["home"], BAD) == 48 - 40  # the valid rows of the day
    logged = warnings_of(graph["instance"], result.run_id)
    assert any(
        f"partition {BAD} failed blocking check(s)" in m and "used anyway" in m for m in logged
    )


def test_the_override_config_trains_on_the_day(graph):
    # only the window decides which days a training uses: the train job's run of that one asset
    result = (
        graph["defs"]
        .resolve_job_def(f"{NAME}__train")
        .execute_in_process(
            instance=graph["instance"],
            run_config={
                "ops": {
                    f"{NAME}__training_window": {
                        "config": {"end_date": LATER, "accept_failed_validation": [BAD]}
                    }
                }
            },
            asset_selection=[dg.AssetKey([NAME, "training_window"])],
            raise_on_error=False,
        )
    )
    assert result.success, failure_message(result)
    meta = latest_metadata(graph["instance"], [NAME, "training_window"])
    assert meta["partitions_used"] == [GOOD, BAD, LATER], failure_message(result)
    assert meta["partitions_blocked"] == {}
    assert meta[FAILED_VALIDATION_ACCEPTED_KEY] == {BAD: [SCHEMA_PASS_RATE]}


def test_a_passing_reingest_lifts_the_block(graph):
    (graph["landing"] / f"{BAD}.csv").write_text(HEADER + rows(BAD))
    ingest = run_job(graph["defs"], graph["instance"], f"{NAME}__ingest", BAD)
    assert ingest.success, failure_message(ingest)
    assert failed_validations(graph["instance"], VALIDATED, [BAD]) == {}
    # without an override, the day is scored again (by the same version: no hindsight involved)
    rescored = score(graph, BAD)
    assert rescored.success, failure_message(rescored)
    assert warehouse_rows(graph["home"], BAD) == 48
