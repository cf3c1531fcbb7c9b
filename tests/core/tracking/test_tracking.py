"""pynomaly_core.tracking against a real MLflow backend (SQLite + local artifacts in a tmp dir).

One backend per module (the SQLite schema migrations cost seconds); the tests use separate
feeds (= experiments and registered models) where they would otherwise interfere.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mlflow")

from pynomaly_core.data.config import FeatureSpec
from pynomaly_core.detectors import ModelIntegrityError
from pynomaly_core.detectors.persistence import sha256_file
from pynomaly_core.model import AnomalyModel
from pynomaly_core.tracking import (
    EVALUATION_ARTIFACT,
    TRACKING_URI_ENV,
    Tracker,
    TrackingError,
    default_artifact_root,
    default_tracking_uri,
    mask_uri,
)

KEY = "test-tracking-signing-key"
FEED = "machines"


@pytest.fixture(autouse=True)
def _signing_key(monkeypatch):
    """Models saved by the module fixtures verify in every test (conftest gives each its own home)."""
    monkeypatch.setenv("PYNOMALY_SIGNING_KEY", KEY)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYNOMALY_HOME", str(root / "home"))
        mp.setenv("PYNOMALY_SIGNING_KEY", KEY)
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(rng.normal(size=(400, 2)), columns=["a", "b"])
        frame.loc[:4, "a"] += 8  # a few clear outliers so top_features is filled for some rows
        model = AnomalyModel(
            [FeatureSpec(name="a"), FeatureSpec(name="b")], detector="IForest"
        ).fit(frame)
        model_dir = model.save(root / "models" / "v1", info={"feed": FEED})
        tracker = Tracker(
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "artifacts")
        )
        tracker.check()  # creates the schema once for the module
        yield {
            "root": root,
            "frame": frame,
            "model": model,
            "model_dir": model_dir,
            "sha": sha256_file(model_dir / "manifest.json"),
            "tracker": tracker,
        }


def _log(env, feed, *, register=True, reason="scheduled", evaluation=None):
    model = env["model"]
    return env["tracker"].log_candidate(
        feed,
        detector="IForest",
        model_dir=env["model_dir"],
        manifest_sha256=env["sha"],
        params={"contamination": model.contamination, "n_estimators": 100, "features": ["a", "b"]},
        metrics={"fit_seconds": model.fit_seconds_, "training_rows": 400},
        tags={"dagster_run_id": f"dagster-{reason}", "feed": feed, "reason": reason},
        input_example=env["frame"].head(5),
        evaluation=evaluation,
        register=register,
    )


@pytest.fixture(scope="module")
def records(env):
    evaluation = pd.DataFrame({"detector": ["IForest"], "roc_auc": [0.93], "precision_at_k": [0.5]})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYNOMALY_SIGNING_KEY", KEY)
        return [
            _log(env, FEED, reason="first", evaluation=evaluation),
            _log(env, FEED, reason="second"),
        ]


# ---------------------------------------------------------------- settings and errors
def test_importing_the_module_does_not_import_mlflow(tmp_path):
    code = (
        "import sys, pynomaly_core.tracking as t\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'\n"
        "t.Tracker(tracking_uri='sqlite:///x.db')\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported by Tracker()'\n"
        "print(t.default_tracking_uri())\n"
    )
    env = {**os.environ, "PYNOMALY_HOME": str(tmp_path)}
    for var in (TRACKING_URI_ENV, "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"


def test_missing_mlflow_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'pynomaly\[tracking\]'"):
        Tracker(tracking_uri="sqlite:///never.db").check()


def test_default_tracking_uri_precedence(monkeypatch, isolated_home):
    monkeypatch.delenv(TRACKING_URI_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri() == f"sqlite:///{isolated_home / 'mlflow' / 'mlflow.db'}"
    assert (isolated_home / "mlflow").is_dir()
    assert default_artifact_root() == str(isolated_home / "mlflow" / "artifacts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow-b:5000")
    assert default_tracking_uri() == "http://mlflow-b:5000"
    monkeypatch.setenv(TRACKING_URI_ENV, "http://mlflow-a:5000")
    assert default_tracking_uri() == "http://mlflow-a:5000"
    assert Tracker().tracking_uri == "http://mlflow-a:5000"
    assert Tracker().artifact_root is None  # a server chooses its own artifact store


def test_bad_tracking_uri_names_the_setting():
    with pytest.raises(TrackingError, match=TRACKING_URI_ENV) as err:
        Tracker(tracking_uri="bogus://nowhere/x").check()
    assert "bogus://nowhere/x" in str(err.value)


def test_unreachable_server_is_reported_fast_with_the_password_masked(monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"
    )  # belt and braces: never retry for minutes
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tracker = Tracker(tracking_uri=f"http://alice:s3cret@127.0.0.1:{port}")
    with pytest.raises(TrackingError, match="cannot be reached") as err:
        tracker.experiment_id(FEED)
    message = str(err.value)
    assert TRACKING_URI_ENV in message and f"alice:***@127.0.0.1:{port}" in message
    assert "s3cret" not in message and "s3cret" not in repr(tracker)


def test_mask_uri_and_urls():
    assert mask_uri("postgresql://bob:pw@db:5432/mlflow") == "postgresql://bob:***@db:5432/mlflow"
    assert mask_uri("https://host/?token=abc&x=1") == "https://host/?token=***&x=1"
    assert mask_uri("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"
    remote = Tracker(tracking_uri="https://bob:pw@mlflow.example.com/")
    assert remote.run_url("abc", "7") == "https://mlflow.example.com/#/experiments/7/runs/abc"
    assert remote.ui_hint() == "open https://mlflow.example.com"
    local = Tracker(tracking_uri="sqlite:////tmp/m.db")
    assert local.run_url("abc", "7") is None
    assert local.ui_hint() == "mlflow ui --backend-store-uri 'sqlite:////tmp/m.db'"
    assert local.registered_model_name("machines") == "pynomaly-machines"
    assert local.experiment_name("machines") == "pynomaly/machines"


# ---------------------------------------------------------------- candidates
def test_log_candidate_registers_versions_1_then_2(env, records):
    first, second = records
    tracker = env["tracker"]
    assert (first.version, second.version) == ("1", "2")
    assert first.registered_model == second.registered_model == "pynomaly-machines"
    assert first.run_url is None  # local backend
    assert first.model_uri.startswith("models:/m-") and first.model_uri != second.model_uri
    assert first.experiment_id == second.experiment_id == tracker.experiment_id(FEED)
    experiment = tracker.client.get_experiment(first.experiment_id)
    assert experiment.name == "pynomaly/machines"
    assert experiment.artifact_location.startswith((env["root"] / "artifacts").as_uri())

    run = tracker.client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["contamination"] == "0.01"
    assert json.loads(run.data.params["features"]) == ["a", "b"]
    assert run.data.metrics["training_rows"] == 400
    assert run.data.tags["reason"] == "first" and run.data.tags["dagster_run_id"] == "dagster-first"
    assert run.data.tags["pynomaly.detector"] == "IForest"
    assert run.data.tags["pynomaly.manifest_sha256"] == env["sha"]

    evaluation = tracker.client.download_artifacts(
        first.run_id, EVALUATION_ARTIFACT, str(env["root"])
    )
    table = json.loads(Path(evaluation).read_text())
    assert (
        table["columns"] == ["detector", "roc_auc", "precision_at_k"]
        and table["data"][0][1] == 0.93
    )

    versions = tracker.list_versions(FEED)
    assert [v.version for v in versions][:2] == ["1", "2"]
    v1 = versions[0]
    assert (
        v1.run_id == first.run_id and v1.detector == "IForest" and v1.manifest_sha256 == env["sha"]
    )
    assert v1.model_dir == str(env["model_dir"]) and v1.dagster_run_id == "dagster-first"
    assert not v1.archived


def test_log_candidate_without_registering(env):
    record = _log(env, "unregistered", register=False)
    assert record.version is None and record.registered_model is None
    assert env["tracker"].list_versions("unregistered") == []


def test_log_candidate_refuses_a_model_whose_manifest_does_not_match(env):
    tracker = env["tracker"]
    with pytest.raises(ModelIntegrityError):
        tracker.log_candidate(
            "tampered",
            detector="IForest",
            model_dir=env["model_dir"],
            manifest_sha256="0" * 64,
            params={},
            metrics={},
            tags={},
            input_example=env["frame"].head(3),
        )
    assert tracker.client.get_experiment_by_name("pynomaly/tampered") is None


def test_log_candidate_verifies_the_signature_with_the_given_key(env):
    tracker = env["tracker"]
    with pytest.raises(ModelIntegrityError, match="signature does not match"):
        tracker.log_candidate(
            "wrong_key",
            detector="IForest",
            model_dir=env["model_dir"],
            manifest_sha256=env["sha"],
            params={},
            metrics={},
            tags={},
            input_example=env["frame"].head(3),
            signing_key=b"another key",
        )
    assert tracker.client.get_experiment_by_name("pynomaly/wrong_key") is None


def test_pyfunc_load_verifies_the_logged_model_directory(env):
    tracker = env["tracker"]
    record = _log(env, "tamper_check", register=False)
    location = tracker.client.get_logged_model(record.model_id).artifact_location
    calibration = (
        Path(urlsplit(location).path) / "artifacts" / env["model_dir"].name / "calibration.json"
    )
    calibration.write_text(calibration.read_text() + " ")
    with pytest.raises(ModelIntegrityError, match="calibration.json"):
        tracker.load_pyfunc(record.model_uri)


def test_pyfunc_predictions_equal_model_score(env, records):
    import mlflow

    frame = env["frame"].head(60)
    expected = env["model"].score(frame)
    assert expected["top_features"].notna().any()
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(env["tracker"].tracking_uri)
    try:
        loaded = mlflow.pyfunc.load_model(records[0].model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    pd.testing.assert_frame_equal(loaded.predict(frame), expected)
    # by registered version, through the tracker (no global MLflow state needed)
    by_version = env["tracker"].load_pyfunc(f"models:/pynomaly-machines/{records[1].version}")
    pd.testing.assert_frame_equal(by_version.predict(frame), expected)


def test_logging_leaves_mlflow_global_state_alone(env, records):
    import mlflow

    assert mlflow.active_run() is None
    assert os.environ.get("MLFLOW_TRACKING_URI") != env["tracker"].tracking_uri
    assert os.environ.get("MLFLOW_REGISTRY_URI") != env["tracker"].tracking_uri


# ---------------------------------------------------------------- aliases, decisions, archive
def test_aliases_set_get_move_delete(env, records):
    tracker = env["tracker"]
    assert tracker.get_alias(FEED, "champion") is None
    assert tracker.get_alias("no_such_feed", "champion") is None
    tracker.set_alias(FEED, "champion", records[0].version)
    got = tracker.get_alias(FEED, "champion")
    assert (
        got.version == "1" and got.run_id == records[0].run_id and got.manifest_sha256 == env["sha"]
    )
    assert "champion" in got.aliases
    tracker.set_alias(FEED, "champion", 2)  # moves
    assert tracker.get_alias(FEED, "champion").version == "2"
    assert "champion" not in tracker.get_version(FEED, 1).aliases
    loaded = tracker.load_pyfunc("models:/pynomaly-machines@champion")
    assert list(loaded.predict(env["frame"].head(3)).columns[:2]) == ["score", "normalized_score"]
    tracker.delete_alias(FEED, "champion")
    assert tracker.get_alias(FEED, "champion") is None
    tracker.delete_alias(FEED, "champion")  # deleting a missing alias is not an error


def test_list_versions_reports_each_versions_aliases(env, records):
    tracker = env["tracker"]
    tracker.set_alias(FEED, "champion", records[1].version)
    try:
        aliases = {info.version: info.aliases for info in tracker.list_versions(FEED)}
        assert aliases[records[1].version] == ["champion"]
        assert aliases[records[0].version] == []
    finally:
        tracker.delete_alias(FEED, "champion")


def test_log_decision_adds_evidence_to_run_and_version(env, records):
    tracker = env["tracker"]
    tracker.log_decision(
        FEED,
        records[1].run_id,
        decision="champion",
        reason="roc_auc 0.93 > 0.90 (champion v1)",
        metrics={"champion_roc_auc": 0.90, "candidate_roc_auc": 0.93},
        tags={"decided_by": "dagster-xyz"},
    )
    run = tracker.client.get_run(records[1].run_id)
    assert run.data.tags["pynomaly.promotion"] == "champion"
    assert run.data.tags["pynomaly.promotion_reason"].startswith("roc_auc 0.93")
    assert run.data.tags["decided_by"] == "dagster-xyz"
    assert run.data.metrics["candidate_roc_auc"] == 0.93
    assert tracker.get_version(FEED, records[1].version).tags["pynomaly.promotion"] == "champion"
    assert "pynomaly.promotion" not in tracker.get_version(FEED, records[0].version).tags


def test_archive_version_is_a_tag(env, records):
    tracker = env["tracker"]
    tracker.set_alias(FEED, "challenger", records[0].version)
    with pytest.raises(ValueError, match="challenger"):
        tracker.archive_version(FEED, records[0].version, "superseded")
    tracker.delete_alias(FEED, "challenger")
    info = tracker.archive_version(FEED, records[0].version, "superseded by v2")
    assert info.archived and info.tags["pynomaly.archived_reason"] == "superseded by v2"
    assert info.tags["pynomaly.archived"] == "true"
    active = [v.version for v in tracker.list_versions(FEED, include_archived=False)]
    assert records[0].version not in active and records[1].version in active


# ---------------------------------------------------------------- how the MLflow UI shows it
def test_experiment_is_typed_ml_runs_are_named_uniquely_and_versions_carry_few_tags(env, records):
    client = env["tracker"].client
    experiment = client.get_experiment(records[0].experiment_id)
    # MLflow 3 opens an experiment without this tag in its GenAI view
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    names = [client.get_run(r.run_id).info.run_name for r in records]
    assert len(set(names)) == len(names)
    # <feed>-<detector>-<Dagster run id[:8]>-<4 random hex>
    assert names[0].startswith(f"{FEED}-IForest-dagster--") and len(names[0]) == len(FEED) + 22
    version = client.get_model_version(records[0].registered_model, records[0].version)
    # identity and loading tags only (a decision test above may add pynomaly.promotion*)
    assert {
        "pynomaly.detector",
        "pynomaly.manifest_sha256",
        "pynomaly.feed",
        "pynomaly.model_dir",
        "pynomaly.dagster_run_id",
    } <= set(version.tags)
    assert not {"reason", "feed", "dagster_run_id"} & set(version.tags)
    assert all(k.startswith("pynomaly.") for k in version.tags)
    # free text stays on the run
    assert client.get_run(records[0].run_id).data.tags["reason"] == "first"


def test_an_existing_experiment_without_the_kind_tag_gets_it(env):
    tracker = env["tracker"]
    exp_id = tracker.client.create_experiment(tracker.experiment_name("untyped"))
    fresh = Tracker(tracking_uri=tracker.tracking_uri, artifact_root=str(env["root"] / "a2"))
    assert fresh.experiment_id("untyped") == exp_id
    tags = fresh.client.get_experiment(exp_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_model_version_url_links_the_registry_page_of_a_server_without_credentials():
    server = Tracker(tracking_uri="https://bob:secret@mlflow.example.org:5000/")
    assert server.model_version_url(FEED, 7) == (
        "https://mlflow.example.org:5000/#/models/pynomaly-machines/versions/7"
    )
    assert Tracker(tracking_uri="sqlite:///x.db").model_version_url(FEED, 7) is None
