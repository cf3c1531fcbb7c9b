"""The analysts' question of docs/anomaly_table.md, run as printed on the demo feed's data.

"Which machines had critical anomalies last week, and why?" is one SQL block of the page. A
warehouse (SQLite and PostgreSQL) gets the demo feed's second week exactly as the export writes
it: the demo's settings and detector, a champion trained on the first week, each day scored,
its top anomalies explained with SHAP, and the rows built by ``anomaly_rows`` and
``attribute_rows``. The query must return every critical row of the week, no other, with the
machine it came from, the SHAP features that ``top_features`` also names, and their values.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from pynomaly_core.data.config import FeedConfig
from pynomaly_core.data.demo import DemoSettings, generate_day
from pynomaly_core.explain import explain
from pynomaly_core.model import AnomalyModel
from pynomaly_core.streaming import ScoringLayout, score_frame
from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    ATTRIBUTE_TABLE,
    anomaly_rows,
    attribute_rows,
    ensure_warehouse,
    make_engine,
    replace_partition,
)
from tests.core.warehouse.test_docs_sql import for_sqlite
from tests.pg import temporary_database

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "anomaly_table.md"
FEED_FILE = ROOT / "pynomaly_assets" / "feeds" / "demo_telemetry.yaml"
WEEK = 7


def analyst_query() -> str:
    """The page's one SQL block that opens with ``-- Demo feed``."""
    found = [
        b
        for b in re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.DOTALL)
        if b.startswith("-- Demo feed")
    ]
    assert len(found) == 1, "docs/anomaly_table.md must hold the analysts' query once"
    return found[0]


def demo_feed() -> FeedConfig:
    return FeedConfig.model_validate(yaml.safe_load(FEED_FILE.read_text()))


def _explained(model, day: pd.DataFrame, scored: pd.DataFrame, feed: FeedConfig) -> pd.DataFrame:
    """What the explanations asset stores for a day: SHAP's top three features of its top rows."""
    flagged = scored[scored["is_anomaly"]]
    top = flagged.sort_values("score", ascending=False).head(feed.explanations.top_k)
    result = explain(
        model,
        day.loc[top.index],
        method=feed.explanations.method,
        background=day.loc[~scored["is_anomaly"].to_numpy()],
        max_background=feed.explanations.max_background,
        random_state=0,
    )
    out = result.top(3).reset_index(drop=True)
    out.insert(0, "explanation_method", result.method)
    out.insert(0, "record_key", top["record_key"].astype(str).to_numpy())
    return out


@pytest.fixture(scope="module")
def demo_export() -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """The demo's second week as exported: ``{day: (anomaly_scores rows, anomaly_attributes rows)}``."""
    feed = demo_feed()
    source = feed.source
    settings = DemoSettings(
        seed=source.seed,
        machines=source.machines,
        interval_minutes=source.interval_minutes,
        anomaly_rate=source.anomaly_rate,
        drift_date=source.drift_date,
        drift_strength=source.drift_strength,
    )
    start = dt.date.fromisoformat(str(feed.partitioning.start_date))
    days = [start + dt.timedelta(days=i) for i in range(2 * WEEK)]
    frames = {d: generate_day(d, settings) for d in days}
    train = pd.concat([frames[d] for d in days[:WEEK]], ignore_index=True)
    model = AnomalyModel(
        feed.features,
        feed.detector.name,
        contamination=feed.detector.contamination,
        params=feed.detector.params,
    ).fit(train)
    layout = ScoringLayout(
        record_key=feed.record_key,
        event_time=feed.event_time,
        passthrough=tuple(feed.passthrough),
        label=feed.label,
        model_name=feed.detector.name,
        model_version="1",
    )
    out = {}
    for day in days[WEEK:]:
        scored = score_frame(model, frames[day], layout)
        explained = _explained(model, frames[day], scored, feed)
        rows = anomaly_rows(
            scored, explained, run_id="run-1", scored_at=pd.Timestamp("2026-11-15", tz="UTC")
        )
        attributes = attribute_rows(
            scored,
            frames[day],
            entity=feed.entity,
            passthrough=feed.passthrough,
            features=feed.feature_names,
            masked=feed.pii_columns,
        )
        out[str(day)] = (rows, attributes, frames[day])
    return out


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
        yield engine
        engine.dispose()
        return
    with temporary_database() as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def test_which_machines_had_critical_anomalies_last_week_and_why(demo_export, warehouse) -> None:
    ensure_warehouse(warehouse)
    for day, (rows, attributes, _) in demo_export.items():
        replace_partition(
            warehouse, ATTRIBUTE_TABLE, attributes, feed="demo_telemetry", partition_date=day
        )
        replace_partition(warehouse, ANOMALY_TABLE, rows, feed="demo_telemetry", partition_date=day)
    sql = analyst_query()
    if warehouse.dialect.name == "sqlite":
        sql = for_sqlite(sql)
    with warehouse.connect() as conn:
        answer = pd.DataFrame(conn.execute(sa.text(sql.strip().rstrip(";"))).mappings().all())

    expected = []
    for rows, _, source in demo_export.values():
        critical = rows.index[rows["severity"] == "critical"]
        for i in critical:
            expected.append((source.loc[i, "machine_id"], rows.loc[i, "record_key"]))
    assert len(expected) >= 3, "the demo's second week must have critical anomalies"
    got = list(zip(answer["machine_id"], answer["record_key"], strict=True))
    assert sorted(got) == sorted(expected)
    assert answer["machine_id"].tolist() == sorted(answer["machine_id"])  # ordered by machine

    exported = pd.concat([r for r, _, _ in demo_export.values()]).set_index("record_key")
    sources = pd.concat([s for _, _, s in demo_export.values()]).set_index("reading_id")
    for _, row in answer.iterrows():
        stored = exported.loc[row["record_key"]]
        shap_names = [row["feature_1"], row["feature_2"], row["feature_3"]]
        assert all(shap_names), "every critical row is among the day's SHAP-explained top rows"
        # one explanation source: top_features names SHAP's features, in SHAP's order
        top = stored["top_features"]
        assert (json.loads(top) if isinstance(top, str) else list(top)) == shap_names
        for k, name in enumerate(shap_names, start=1):
            value = sources.loc[row["record_key"], name]
            if isinstance(value, str):
                assert pd.isna(row[f"value_{k}"])  # categorical: in text_value
            else:
                assert row[f"value_{k}"] == pytest.approx(float(value))
