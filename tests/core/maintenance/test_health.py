"""Model health (pynomaly_core.maintenance.health) on a real MLflow registry on SQLite with signed models."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.maintenance import (
    champion_rows,
    champion_week,
    check_model_versions,
    crossed_thresholds,
    health_section,
    recorded_scores_from_frame_store,
)
from tests.core.maintenance.helpers import FIRST, SECOND


def test_importing_the_module_imports_neither_dagster_nor_mlflow():
    code = (
        "import sys, pynomaly_core.maintenance\n"
        "print([m for m in ('dagster', 'mlflow') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_model_health_reports_reproduction_errors_and_archives_the_rest(registry):
    tracker, store, versions, feed = (
        registry["tracker"],
        registry["store"],
        registry["versions"],
        registry["feed"],
    )
    champion, challenger = versions[(SECOND, "IForest")], versions[(FIRST, "IForest")]
    altered, deleted = versions[(FIRST, "HBOS")], versions[(FIRST, "ECOD")]
    tracker.set_alias(feed, "champion", champion)
    tracker.set_alias(feed, "challenger", challenger)
    # the recorded scores of HBOS no longer match what the model gives
    key = [feed, "detector_candidates", "evaluation"]
    frame = store.read(key, FIRST)
    frame.loc[5, "_score_HBOS"] += 0.5
    store.write(frame, key, FIRST)
    # ECOD's model files are gone
    shutil.rmtree(registry["models_root"] / f"{FIRST}-ECOD")

    results = check_model_versions(
        tracker, feed, recorded_scores_from_frame_store(store, feed), sample_rows=50
    )
    by_version = {r.version: r for r in results}
    assert sorted(by_version) == sorted(versions.values())

    for version in (champion, challenger):
        health = by_version[version]
        assert health.loaded and health.reproducible and health.error is None
        assert health.rows_compared == 50 and health.max_abs_diff <= 1e-9
        assert not health.archived_now
    assert by_version[champion].aliases == ["champion"]
    assert by_version[challenger].aliases == ["challenger"]

    hbos = by_version[altered]
    assert hbos.loaded and not hbos.reproducible and hbos.error is None
    assert hbos.max_abs_diff == pytest.approx(0.5)

    ecod = by_version[deleted]
    assert not ecod.loaded and not ecod.reproducible and ecod.rows_compared == 0
    assert f"{FIRST}-ECOD" in ecod.error and "could not be loaded" in ecod.error

    assert by_version[altered].archived_now and by_version[deleted].archived_now
    assert tracker.get_version(feed, altered).archived
    assert not tracker.get_version(feed, champion).archived
    active = {v.version for v in tracker.list_versions(feed, include_archived=False)}
    assert active == {champion, challenger}

    section = health_section(results)
    assert (
        section["versions_checked"],
        section["unreproducible"],
        section["failed_to_load"],
        section["archived_now"],
    ) == (4, 2, 1, 2)
    assert crossed_thresholds({"model_health": section}, {}) == [
        "model_health.unreproducible 2 is above max_unreproducible_versions = 0"
    ]

    # next week: the archived versions are not checked again, nothing more is archived
    again = check_model_versions(tracker, feed, recorded_scores_from_frame_store(store, feed))
    assert {r.version for r in again} == {champion, challenger}
    assert all(r.reproducible and not r.archived_now for r in again)


@pytest.mark.parametrize("registry", [{SECOND: ("IForest",)}], indirect=True)
def test_model_health_refuses_a_tampered_model_directory(registry):
    tracker, store, feed = registry["tracker"], registry["store"], registry["feed"]
    calibration = registry["models_root"] / f"{SECOND}-IForest" / "calibration.json"
    calibration.write_text(calibration.read_text() + " ")
    results = check_model_versions(
        tracker, feed, recorded_scores_from_frame_store(store, feed), archive=False
    )
    assert len(results) == 1
    tampered = results[0]
    assert (
        not tampered.loaded
        and "ModelIntegrityError" in tampered.error
        and "calibration.json" in tampered.error
    )
    assert not tampered.archived_now and not tracker.get_version(feed, tampered.version).archived


def test_champion_week_scores_the_champions_labelled_rows():
    monday = pd.DataFrame(
        {"record_key": ["a", "b", "c"], "score": [0.9, 0.1, 0.5], "model_version": [3, 3, 3]}
    )
    tuesday = pd.DataFrame(
        {"record_key": ["d", "e"], "score": [0.2, 0.8], "model_version": ["2", "3"]}
    )
    scored = champion_rows([monday, tuesday], "3")
    assert scored["record_key"].tolist() == ["a", "b", "c", "e"]
    assert scored.index.tolist() == [0, 1, 2, 3]

    labels = pd.Series([1, 0, np.nan, np.nan])
    week = champion_week(scored, labels, "3", top_k=1)
    assert {
        k: week[k] for k in ("champion_version", "rows", "labelled_rows", "labelled_anomalies")
    } == {"champion_version": "3", "rows": 4, "labelled_rows": 2, "labelled_anomalies": 1}
    assert week["average_precision"] == pytest.approx(1.0) and week["roc_auc"] == pytest.approx(1.0)

    one_class = champion_week(scored, pd.Series([1, 1, np.nan, np.nan]), "3", top_k=1)
    assert "average_precision" not in one_class and one_class["labelled_anomalies"] == 2
