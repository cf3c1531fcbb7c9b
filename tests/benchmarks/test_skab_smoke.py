"""``benchmarks/skab.py``: the SKAB outlier protocol runs end to end and its rules hold.

The metric and false-alarm bookkeeping are checked on hand-made labels (always run); the smoke
run and the no-label-leak check read the shared SKAB files and skip, saying why, when
``../shared/datasets/timeseries/skab`` (or ``$PYNOMALY_SKAB_DIR``) is absent.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re

import numpy as np
import pytest

skab = importlib.import_module("benchmarks.skab")

DATA_DIR = skab.default_data_dir()
needs_skab = pytest.mark.skipif(
    not (DATA_DIR / "valve1").is_dir() or not (DATA_DIR / "anomaly-free").is_dir(),
    reason=f"SKAB files not found at {DATA_DIR} (set {skab.DATA_DIR_ENV}; see "
    "../shared/datasets/timeseries/README.md)",
)


def test_pooled_f1_far_and_mar_follow_their_definitions():
    counts = skab.Counts()
    counts.add(np.array([1, 1, 1, 0, 0, 0, 0, 0]), np.array([1, 1, 0, 1, 0, 0, 0, 0]))
    counts.add(np.array([0, 1]), np.array([0, 1]))
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == (3, 1, 1, 5)
    assert counts.f1 == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert counts.far == pytest.approx(100 * 1 / 6)  # % of normal rows detected
    assert counts.mar == pytest.approx(100 * 1 / 4)  # % of anomalous rows missed


def test_false_alarms_are_attributed_to_padding_a_lingering_window_or_the_rest():
    y = np.zeros(450, int)
    y[420:425] = 1
    detected = np.zeros(450, bool)
    detected[[0, 1, 2, 100, 422, 426, 427, 428, 440]] = True
    causes = skab.false_alarm_causes(y, detected, window=4)
    # head: rows 0-2 (window - 1 padded rows); after: 426 and 427, whose 4-row windows reach
    # back to row 424; 428's window (425-428) is clean; 422 is a hit, not a false alarm
    assert causes == {"head": 3, "after anomaly": 2, "training": 1, "later": 2}
    assert skab.false_alarm_causes(y, detected, window=1)["after anomaly"] == 0


@needs_skab
def test_smoke_run_prints_ours_next_to_the_baselines_and_the_leaderboard(capsys):
    grouped = skab.main(["--smoke"])
    out = capsys.readouterr().out
    number = r"([0-9]+\.[0-9]+)"
    for detector in ("ConvAE", "LSTMAE", "PCA_TQ"):
        for rule in ("training", "normal-run"):
            found = re.search(
                rf"\| {detector} \(ours\) \| 0\.01 \| {rule} \| {number} \| {number} \| "
                rf"{number} \|",
                out,
            )
            assert found, f"no {detector} {rule} line in:\n{out}"
            f1, far, mar = map(float, found.groups())
            assert 0 <= f1 <= 1 and 0 <= far <= 100 and 0 <= mar <= 100
    assert re.search(rf"\| IForest \(ours\) \| 0\.1 \| training \| {number}", out)
    assert "| Conv-AE (published, all SKAB folders) | — | — | 0.78 | 13.55 | 28.02 |" in out
    assert re.search(r"Target F1 >= 0\.78 at FAR <= 13\.6 %: ", out)
    assert ("ConvAE", 0.01, "normal-run") in grouped
    for results in grouped.values():
        for result in results:
            assert result.counts.tp + result.counts.fp + result.counts.fn + result.counts.tn == 1892
            assert math.isfinite(result.factor) and result.factor > 0


@needs_skab
def test_detections_do_not_depend_on_the_labels():
    """The thresholds come from training rows and anomaly-free runs only: shuffling the labels of
    the evaluated rows changes the metrics, never which rows are detected."""
    files = skab.experiment_files(DATA_DIR)[:2]
    runs = [skab.read_run(p, labelled=True) for p in files]
    rng = np.random.default_rng(0)
    shuffled = [dataclasses.replace(r, y=rng.permutation(r.y)) for r in runs]
    calibration = skab.normal_runs(DATA_DIR, skab.RUN_ROWS, limit=2)
    for rule in ("training", "normal-run"):
        config = skab.Config("PCA_TQ", "PCA_TQ", {"contamination": 0.01}, rule)
        real = skab.evaluate(config, runs, calibration, 0, {})
        fake = skab.evaluate(config, shuffled, calibration, 0, {})
        assert real.factor == fake.factor
        assert [n for n, _ in real.per_file.values()] == [n for n, _ in fake.per_file.values()]
        assert real.counts.tp + real.counts.fp == fake.counts.tp + fake.counts.fp
