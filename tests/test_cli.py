"""The ``pynomaly`` command line: feed check, the detector registry, offline scoring with the champion."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pynomaly_core.cli import main
from pynomaly_core.data.config import load_feed
from pynomaly_core.data.demo import DemoSettings, generate_day
from pynomaly_core.detectors.persistence import sha256_file
from pynomaly_core.lifecycle import ChampionRecord
from pynomaly_core.model import AnomalyModel
from pynomaly_core.storage import JsonStore

ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 11, 2)
FEED = {
    "name": "telemetry",
    "source": {"kind": "csv", "path": "landing/{date}.csv"},
    "event_time": "event_time",
    "record_key": "reading_id",
    "passthrough": ["machine_id"],
    "features": [
        {"name": "machine_type", "type": "category", "allowed": ["press", "lathe", "mill"]},
        {"name": "rpm", "type": "float", "min": 0, "max": 5000},
        {"name": "temperature_c", "type": "float"},
        {"name": "vibration_mm_s", "type": "float", "min": 0},
    ],
    "partitioning": {"start_date": str(DAY)},
    "validation": {"min_rows": 10, "min_pass_rate": 0.99},
}
COLUMNS = [
    "reading_id",
    "event_time",
    "machine_id",
    "machine_type",
    "rpm",
    "temperature_c",
    "vibration_mm_s",
]


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.fixture
def feed_file(tmp_path: Path) -> Path:
    day = generate_day(DAY, DemoSettings(machines=2, interval_minutes=60))[COLUMNS]
    day = day.astype({"rpm": object})
    day.loc[3, "rpm"] = "fast"  # does not parse as a float
    day.loc[7, "rpm"] = -10.0  # below min
    (tmp_path / "landing").mkdir()
    day.to_csv(tmp_path / "landing" / f"{DAY}.csv", index=False)
    path = tmp_path / "telemetry.yaml"
    path.write_text(yaml.safe_dump(FEED))
    return path


def test_feed_check_prints_what_would_be_quarantined_and_why(feed_file: Path) -> None:
    status, text = run("feed", "check", str(feed_file))
    assert status == 1  # 46 of 48 rows pass: under the feed's 99 %
    assert "feed 'telemetry' is valid (4 features)" in text
    assert "48 rows sampled" in text and "46 valid, 2 would be quarantined" in text
    failures = text.split("failures by rule")[1]
    assert "rpm: " in failures and failures.count("  1\n") == 2  # two rules, one row each
    assert "row 3 (key m01-" in text or "row 3 (key m02-" in text
    assert "'fast'" in text


def test_feed_check_flags_a_short_sample_and_refuses_bad_input(feed_file: Path) -> None:
    status, text = run("feed", "check", str(feed_file), "--rows", "3")
    assert status == 1 and "fewer rows than validation.min_rows (10)" in text
    status, text = run("feed", "check", str(feed_file), "--day", "2026-11-03")
    assert status == 1 and "day 2026-11-03: 0 rows sampled" in text  # no file landed that day
    status, text = run("feed", "check", str(feed_file), "--day", "2026-13-01")
    assert status == 2
    bad = feed_file.with_name("bad.yaml")
    bad.write_text(yaml.safe_dump({**FEED, "features": [{"name": "rpm", "type": "floaty"}]}))
    proc = subprocess.run(
        [sys.executable, "-m", "pynomaly_core.cli", "feed", "check", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "bad.yaml" in proc.stderr and "features.0.type" in proc.stderr


def test_detectors_prints_the_registry_as_a_table() -> None:
    status, text = run("detectors")
    lines = text.splitlines()
    assert status == 0 and lines[0].split()[:4] == ["name", "family", "framework", "installed"]
    names = {line.split()[0] for line in lines[1:]}
    assert {"IForest", "KNN", "ECOD"} <= names


def test_score_writes_scores_p_values_and_severity_with_the_champion(
    feed_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("PYNOMALY_HOME", str(home))
    monkeypatch.setenv("PYNOMALY_SIGNING_KEY", "test-key-for-the-cli")
    status, text = run("score", "--feed", str(feed_file), str(feed_file))
    assert status == 1 and "has no champion" in text  # nothing trained yet
    feed = load_feed(feed_file)
    train = pd.concat(
        [
            generate_day(DAY - dt.timedelta(days=i), DemoSettings(machines=2, interval_minutes=15))
            for i in (1, 2)
        ]
    )
    model = AnomalyModel(feed.features, "IForest", contamination=0.02).fit(train)
    path = home / "models" / "telemetry" / "1"
    model.save(path, key=b"test-key-for-the-cli")
    record = ChampionRecord(
        feed="telemetry",
        version="1",
        path=str(path),
        detector="IForest",
        manifest_sha256=sha256_file(path / "manifest.json"),
    )
    JsonStore(home / "values").write(record.to_value(), ["telemetry", "champion"])
    data = tmp_path / "landing" / f"{DAY}.csv"
    status, text = run(
        "score", "--feed", str(feed_file), str(data), "--output", str(tmp_path / "s.csv")
    )
    assert status == 0, text
    scored = pd.read_csv(tmp_path / "s.csv")
    assert len(scored) == 46 and "2 rows failed validation" in text
    assert {"record_key", "machine_id", "score", "p_value", "severity"} <= set(scored.columns)
    assert scored["p_value"].between(0, 1).all()
    assert set(scored["severity"]) <= {"none", "low", "medium", "high", "critical"}
    assert (scored["model_version"] == 1).all()


def test_the_command_is_installed_as_pynomaly() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"pynomaly": "pynomaly_core.cli:main"}


def test_feed_check_prints_the_partition_keys_and_the_commands_to_launch(feed_file: Path) -> None:
    feed_file.write_text(yaml.safe_dump({**FEED, "validation": {"min_rows": 10}}))
    (feed_file.parent / "landing" / f"{DAY}.csv").write_text(
        generate_day(DAY, DemoSettings(machines=2, interval_minutes=60))[COLUMNS].to_csv(
            index=False
        )
    )
    status, text = run("feed", "check", str(feed_file))
    assert status == 0, text
    assert f"partitions: one per UTC day (keys YYYY-MM-DD) from {DAY}; this day: {DAY}" in text
    assert f"PYNOMALY_FEEDS_DIR={feed_file.parent.resolve()}" in text
    tags = f'--tags \'{{"dagster/partition": "{DAY}"}}\''
    launch = "dagster job launch -w workspace.yaml -j telemetry"
    assert f"{launch}__ingest {tags}" in text and f"{launch}__score {tags}" in text
    assert f"{launch}__train\n" in text
    hourly = {**FEED, "partitioning": {"start_date": str(DAY), "granularity": "hourly"}}
    feed_file.write_text(yaml.safe_dump({**hourly, "validation": {"min_rows": 10}}))
    status, text = run("feed", "check", str(feed_file))
    assert status == 0, text
    assert f"one per UTC hour (keys YYYY-MM-DD-HH:MM) from {DAY}-00:00" in text
    assert f'"dagster/partition": "{DAY}-00:00"' in text


def test_feed_check_prints_no_commands_when_the_day_fails(feed_file: Path) -> None:
    status, text = run("feed", "check", str(feed_file))
    assert status == 1 and "partitions:" not in text and "dagster job launch" not in text
