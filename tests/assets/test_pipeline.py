"""The whole graph materializes in-process on a fresh Dagster instance and leaves a queryable table."""

import json

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.assets.helpers import (
    SMALL_DEMO,
    check_results,
    definitions_for,
    failure_message,
    latest_metadata,
    run_job,
    write_feed,
)

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
FEED = SMALL_DEMO["name"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Ingest 4 days, train on the first 3, score all 4 — once for the module."""
    root = tmp_path_factory.mktemp("pipeline")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYNOMALY_HOME", str(root / "home"))
    mp.delenv("PYNOMALY_WAREHOUSE_URL", raising=False)
    # label-free champion selection end to end (the labelled path runs in test_lifecycle.py)
    write_feed(root / "feeds", {**SMALL_DEMO, "lifecycle": {"min_labelled_anomalies": 10_000}})
    defs = definitions_for(root / "feeds")
    with dg.instance_for_test(temp_dir=str(root)) as instance:
        results = {}
        for day in DAYS:
            results[("ingest", day)] = run_job(defs, instance, f"{FEED}__ingest", day)
        results["train"] = run_job(
            defs,
            instance,
            f"{FEED}__train",
            run_config={
                "ops": {f"{FEED}__training_window": {"config": {"end_date": "2026-11-03"}}}
            },
        )
        for day in DAYS:
            results[("score", day)] = run_job(defs, instance, f"{FEED}__score", day)
        from pynomaly_core.storage import JsonStore

        def values(stage):
            return JsonStore(root / "home" / "values").read([FEED, stage])

        yield {
            "defs": defs,
            "instance": instance,
            "results": results,
            "home": root / "home",
            "values": values,
        }
    mp.undo()


def warehouse(home) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")


def test_every_run_succeeds(pipeline):
    failed = {k: failure_message(r) for k, r in pipeline["results"].items() if not r.success}
    assert failed == {}


def test_validated_checks_pass_on_clean_demo_data(pipeline):
    result = pipeline["results"][("ingest", DAYS[0])]
    assert check_results(pipeline["instance"], result.run_id) == {
        "row_accounting": True,
        "schema_pass_rate": True,
        "min_rows": True,
    }


def test_training_window_reads_only_its_window(pipeline):
    meta = latest_metadata(pipeline["instance"], [FEED, "training_window"])
    assert meta["partitions_used"] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert meta["window_end"] == "2026-11-03"


def test_candidates_are_evaluated_on_the_holdout_and_logged_to_mlflow(pipeline):
    meta = latest_metadata(pipeline["instance"], [FEED, "detector_candidates"])
    assert meta["training_rows"] == 2 * 2 * 96 and meta["holdout_rows"] == 2 * 96
    assert (
        meta["evaluation"] == "synthetic"
    )  # labels are fewer than lifecycle.min_labelled_anomalies
    assert meta["evaluation_rows"] == 2 * 96 + 500 and meta["evaluation_anomalies"] == 500
    assert "| KNN" in meta["candidates"] and "roc_auc" in meta["candidates"]
    # a candidate that cannot score (PyOD's PCA divides by a zero-variance component here) is
    # reported with its reason and left out; the others go on
    value = pipeline["values"]("detector_candidates")
    failed = [c for c in value["candidates"] if c["error"] is not None]
    assert meta["failed_candidates"] == len(failed) < len(value["candidates"])
    assert all(c["error"] for c in failed)
    from pynomaly_core.tracking import Tracker

    tracker = Tracker(f"sqlite:///{pipeline['home'] / 'mlflow' / 'mlflow.db'}")
    versions = tracker.list_versions(FEED)
    assert len(versions) >= 2 and {v.detector for v in versions} >= {"KNN"}
    assert all(v.dagster_run_id == pipeline["results"]["train"].run_id for v in versions)


def test_champion_is_registered_in_mlflow_and_passes_the_gate(pipeline):
    meta = latest_metadata(pipeline["instance"], [FEED, "champion"])
    assert meta["decision"] == "promoted" and meta["reason"].startswith("no current champion")
    assert check_results(pipeline["instance"], pipeline["results"]["train"].run_id) == {
        "promotion_gate": True
    }
    from pynomaly_core.tracking import Tracker

    champion = Tracker(f"sqlite:///{pipeline['home'] / 'mlflow' / 'mlflow.db'}").get_alias(
        FEED, "champion"
    )
    assert champion is not None and champion.version == meta["champion_version"]
    assert champion.detector == meta["champion_detector"]
    # the champion records the days it was trained on: the days it may not rescore with hindsight
    assert meta["champion_training_days"] == "2026-11-01..2026-11-03"
    value = pipeline["values"]("champion")
    assert value["training_days"] == DAYS[:3] and (value["window_first"], value["window_last"]) == (
        DAYS[0],
        DAYS[2],
    )


def test_scores_metadata_has_rates_histogram_and_label_metrics(pipeline):
    meta = latest_metadata(pipeline["instance"], [FEED, "anomaly_scores"], DAYS[-1])
    assert meta["dagster/row_count"] == 2 * 96
    assert 0 < meta["anomaly_rate"] < 0.2
    histogram = meta["score_histogram"].records  # a table the UI shows inline
    assert sum(r.data["rows"] for r in histogram) == meta["dagster/row_count"]
    assert sum(r.data["rows"] for r in histogram if r.data["flagged"]) == meta["anomalies"]
    assert isinstance(meta["roc_auc"], float) and meta["roc_auc"] > 0.8
    assert isinstance(meta["average_precision"], float)
    champion = latest_metadata(pipeline["instance"], [FEED, "champion"])
    assert (
        meta["model_version"] == champion["champion_version"]
        and meta["previous_model_version"] == "none"
    )


def test_anomaly_table_has_one_row_per_scored_record_for_every_day(pipeline):
    with warehouse(pipeline["home"]).connect() as conn:
        counts = dict(
            conn.execute(
                sa.text(
                    "SELECT partition_date, COUNT(*) FROM anomaly_scores WHERE feed = :f GROUP BY partition_date"
                ),
                {"f": FEED},
            ).all()
        )
    assert {str(k): v for k, v in counts.items()} == {d: 2 * 96 for d in DAYS}
    meta = latest_metadata(pipeline["instance"], [FEED, "anomaly_table"], DAYS[0])
    assert meta["dagster/row_count"] == 2 * 96
    assert {c.name for c in meta["dagster/column_schema"].columns} >= {
        "score",
        "is_anomaly",
        "record_key",
    }


def test_anomaly_table_rows_carry_model_identity_and_run(pipeline):
    frame = pd.read_sql("SELECT * FROM anomaly_scores", warehouse(pipeline["home"]))
    meta = latest_metadata(pipeline["instance"], [FEED, "champion"])
    assert set(frame["model_name"]) == {meta["champion_detector"]}
    assert set(frame["model_version"]) == {int(meta["champion_version"])}  # an integer column
    assert frame["run_id"].nunique() == len(DAYS)


def test_rerunning_a_partition_leaves_exactly_one_copy(pipeline, monkeypatch):
    monkeypatch.setenv(
        "PYNOMALY_HOME", str(pipeline["home"])
    )  # the module's home holds the signing key
    rerun = run_job(pipeline["defs"], pipeline["instance"], f"{FEED}__score", DAYS[1])
    assert rerun.success, failure_message(rerun)
    with warehouse(pipeline["home"]).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT COUNT(*), COUNT(DISTINCT record_key), MAX(run_id) FROM anomaly_scores "
                "WHERE feed = :f AND partition_date = :d"
            ),
            {"f": FEED, "d": DAYS[1]},
        ).one()
    assert rows[0] == rows[1] == 2 * 96
    assert rows[2] == rerun.run_id
    # the same champion scoring a day again is no hindsight; the metadata names the version it replaced
    meta = latest_metadata(pipeline["instance"], [FEED, "anomaly_scores"], DAYS[1])
    assert meta["previous_model_version"] == meta["model_version"] and meta["hindsight"] is False


def test_views_summarize_the_exported_days(pipeline):
    summary = pd.read_sql(
        "SELECT * FROM anomaly_daily_summary WHERE feed = 'demo_small'", warehouse(pipeline["home"])
    )
    assert len(summary) == len(DAYS)
    assert (summary["rows"] == 2 * 96).all()


def test_top_anomalies_carry_shap_explanations_p_values_and_severity(pipeline):
    frame = pd.read_sql("SELECT * FROM anomaly_scores", warehouse(pipeline["home"]))
    flagged = frame[frame["is_anomaly"].astype(bool)]
    assert len(flagged) and flagged["explanation_method"].notna().all()  # fewer than top_k per day
    features = {f["name"] for f in SMALL_DEMO["features"]}
    assert set(flagged["feature_1"]) <= features
    assert (flagged["contribution_1"] >= flagged["contribution_2"]).all()
    assert frame.loc[~frame["is_anomaly"].astype(bool), "explanation_method"].isna().all()
    assert frame["p_value"].between(0, 1).all()
    assert set(flagged["severity"]) <= {"low", "medium", "high", "critical"}
    assert set(frame.loc[~frame["is_anomaly"].astype(bool), "severity"]) == {"none"}
    meta = latest_metadata(pipeline["instance"], [FEED, "explanations"], DAYS[-1])
    assert meta["summary_plot"].startswith("![")
    assert meta["explained_rows"] == int(flagged["partition_date"].astype(str).eq(DAYS[-1]).sum())


def test_export_carries_the_machine_feature_values_and_one_explanation(pipeline):
    """anomaly_attributes: machine_id of every row, feature values of the flagged rows; top_features = SHAP's."""
    engine = warehouse(pipeline["home"])
    scores = pd.read_sql("SELECT * FROM anomaly_scores", engine)
    attributes = pd.read_sql("SELECT * FROM anomaly_attributes", engine)
    machines = attributes[attributes["attribute"] == "machine_id"]
    assert len(machines) == len(scores) and set(machines["role"]) == {"passthrough"}
    assert (
        machines["record_key"].str[:3] == machines["text_value"]
    ).all()  # reading_id m01-... belongs to m01
    features = attributes[attributes["role"] == "feature"]
    flagged = scores[scores["is_anomaly"].astype(bool)]
    assert len(features) == len(flagged) * len(SMALL_DEMO["features"])
    explained = flagged[flagged["explanation_method"].notna()]
    tops = explained["top_features"].map(json.loads)
    assert (
        len(tops)
        and tops.tolist() == explained[["feature_1", "feature_2", "feature_3"]].values.tolist()
    )
