"""A scored day in a real warehouse (SQLite file or fresh PostgreSQL database) for the review tests.

Feed ``plant``, entity ``machine_id``, one day of 240 rows (4 machines, every 24 minutes):
12 flagged rows with known severities and scores, their feature values in ``anomaly_attributes``,
and the day's validated rows as the pipeline stores them (``frames/plant/validated/<day>.parquet``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    ATTRIBUTE_TABLE,
    ensure_warehouse,
    make_engine,
    replace_partition,
)
from tests.pg import temporary_database

FEED = "plant"
DAY = "2026-11-10"
ROWS = 240
MACHINES = ("m-01", "m-02", "m-03", "m-04")
# the flagged rows: record index -> (severity, score); scores of the other rows are below 1.0
FLAGGED = {
    7: ("low", 1.20),
    19: ("critical", 3.10),
    33: ("medium", 1.80),
    48: ("high", 2.40),
    61: ("low", 1.05),
    77: ("critical", 2.90),
    90: ("medium", 1.60),
    104: ("high", 2.60),
    131: ("low", 1.10),
    150: ("medium", 1.70),
    172: ("low", 1.15),
    199: ("high", 2.20),
}


def key(i: int) -> str:
    return f"r-{i:04d}"


def scored_day(
    rows: int = ROWS, flagged: dict[int, tuple[str, float]] | None = None
) -> pd.DataFrame:
    flagged = FLAGGED if flagged is None else flagged
    rng = np.random.default_rng(7)
    score = rng.uniform(0.1, 0.95, rows)
    severity = np.array(["none"] * rows, dtype=object)
    is_anomaly = np.zeros(rows, dtype=bool)
    for i, (level, value) in flagged.items():
        score[i], severity[i], is_anomaly[i] = value, level, True
    p_value = np.where(is_anomaly, 1.0 / (1.0 + score * 1000), 0.5)
    frame = pd.DataFrame(
        {
            "record_key": [key(i) for i in range(rows)],
            "event_time": pd.Timestamp(DAY, tz="UTC") + pd.to_timedelta(np.arange(rows) * 6, "min"),
            "score": score,
            "normalized_score": np.clip(score / score.max(), 0, 1),
            "is_anomaly": is_anomaly,
            "severity": severity,
            "model_name": "IForest",
            "model_version": 3,
            "run_id": "run-review",
            "top_features": [["temp_c", "vibration"] if a else None for a in is_anomaly],
            "scored_at": pd.Timestamp(f"{DAY} 23:59", tz="UTC"),
            "p_value": p_value,
            "explanation_method": np.where(is_anomaly, "tree", None),
            "feature_1": np.where(is_anomaly, "temp_c", None),
            "contribution_1": np.where(is_anomaly, 0.8, np.nan),
            "feature_2": np.where(is_anomaly, "vibration", None),
            "contribution_2": np.where(is_anomaly, 0.3, np.nan),
            "feature_3": np.where(is_anomaly, "load", None),
            "contribution_3": np.where(is_anomaly, -0.1, np.nan),
            "is_alert": is_anomaly,
        }
    )
    return frame


def validated_day(rows: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    temp = rng.normal(60.0, 2.0, rows)
    for i in FLAGGED:
        temp[i] = 95.0
    return pd.DataFrame(
        {
            "record_key": [key(i) for i in range(rows)],
            "machine_id": [MACHINES[i % len(MACHINES)] for i in range(rows)],
            "temp_c": temp,
            "vibration": rng.normal(2.0, 0.2, rows),
        }
    )


def attributes(scores: pd.DataFrame, validated: pd.DataFrame) -> pd.DataFrame:
    entity = pd.DataFrame(
        {
            "record_key": scores["record_key"],
            "event_time": scores["event_time"],
            "attribute": "machine_id",
            "role": "entity",
            "text_value": validated["machine_id"],
            "number_value": np.nan,
        }
    )
    flagged = scores["is_anomaly"].to_numpy()
    features = [
        pd.DataFrame(
            {
                "record_key": scores["record_key"][flagged],
                "event_time": scores["event_time"][flagged],
                "attribute": name,
                "role": "feature",
                "text_value": None,
                "number_value": validated[name][flagged],
            }
        )
        for name in ("temp_c", "vibration")
    ]
    frame = pd.concat([entity, *features], ignore_index=True)
    return frame[[c.name for c in ATTRIBUTE_TABLE.frame_columns]]


@dataclass
class Warehouse:
    engine: sa.Engine
    url: str
    frames: Path


def export_day(engine: sa.Engine, frames: Path, feed: str = FEED) -> None:
    ensure_warehouse(engine)
    scores, validated = scored_day(), validated_day()
    replace_partition(
        engine, ATTRIBUTE_TABLE, attributes(scores, validated), feed=feed, partition_date=DAY
    )
    replace_partition(engine, ANOMALY_TABLE, scores, feed=feed, partition_date=DAY)
    path = frames / feed / "validated" / f"{DAY}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    validated.to_parquet(path, index=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """The scored day in a SQLite file or a fresh PostgreSQL database."""
    frames = tmp_path / "frames"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        engine = make_engine(url)
        export_day(engine, frames)
        yield Warehouse(engine, url, frames)
        engine.dispose()
    else:
        with temporary_database() as url:
            engine = make_engine(url)
            export_day(engine, frames)
            yield Warehouse(engine, url, frames)
            engine.dispose()


@pytest.fixture
def sqlite_warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    """The scored day in a SQLite file (for the tests that start processes around it)."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = make_engine(url)
    export_day(engine, tmp_path / "frames")
    yield Warehouse(engine, url, tmp_path / "frames")
    engine.dispose()
