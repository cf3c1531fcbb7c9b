"""What the export adds for analysts: the scored rows' context, one explanation per row, reachable tiers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pynomaly_core.severity import SeverityCutoffs, reachable_cutoffs, severity
from pynomaly_core.warehouse import (
    ANOMALY_TABLE,
    ATTRIBUTE_TABLE,
    anomaly_rows,
    attribute_rows,
    ensure_table,
    ensure_warehouse,
    make_engine,
    read_partition,
    replace_partition,
)
from tests.core.warehouse.helpers import DAY, scores


def _scored(n: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = scores(n)
    source = pd.DataFrame(
        {
            "machine_id": [f"m{i % 2:02d}" for i in range(n)],
            "site": np.arange(n),  # a numeric passthrough column
            "owner_email": [f"user{i}@example.com" for i in range(n)],
            "rpm": np.linspace(1000.0, 1500.0, n),
            "machine_type": ["press", "lathe"] * (n // 2),
        }
    )
    return frame, source


def test_entity_and_passthrough_for_every_row_features_for_flagged_rows_pii_left_out() -> None:
    frame, source = _scored()
    out = attribute_rows(
        frame,
        source,
        entity="machine_id",
        passthrough=["site", "owner_email", "machine_id"],
        features=["rpm", "machine_type"],
        masked={"owner_email"},
    )
    assert list(out.columns) == [c.name for c in ATTRIBUTE_TABLE.frame_columns]
    flagged = frame["record_key"][frame["is_anomaly"]].tolist()
    by = {name: part for name, part in out.groupby("attribute")}
    assert set(by) == {"machine_id", "site", "rpm", "machine_type"}  # no personal data
    assert by["machine_id"]["role"].unique().tolist() == ["entity"]
    assert by["machine_id"]["text_value"].tolist() == source["machine_id"].tolist()
    assert by["site"]["role"].unique().tolist() == ["passthrough"]
    assert by["site"]["text_value"].tolist() == [str(i) for i in range(6)]
    assert by["site"]["number_value"].tolist() == list(range(6))
    assert by["rpm"]["record_key"].tolist() == flagged
    assert by["rpm"]["text_value"].isna().all()
    rows = frame["is_anomaly"].to_numpy()
    assert by["rpm"]["number_value"].tolist() == pytest.approx(source["rpm"][rows].tolist())
    assert by["machine_type"]["text_value"].tolist() == source["machine_type"][rows].tolist()
    assert (out["event_time"].dtype == frame["event_time"].dtype) and out[
        "event_time"
    ].notna().all()


def test_attributes_refuse_rows_that_were_not_scored() -> None:
    frame, source = _scored()
    with pytest.raises(ValueError, match="6 scored rows but 5 validated rows"):
        attribute_rows(frame, source.head(5), entity=None, passthrough=[], features=["rpm"])
    with pytest.raises(ValueError, match="lack passthrough column 'plant'"):
        attribute_rows(frame, source, entity=None, passthrough=["plant"], features=[])


def test_attributes_round_trip_and_replace_per_partition(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    ensure_warehouse(engine)
    frame, source = _scored()
    out = attribute_rows(frame, source, entity="machine_id", passthrough=[], features=["rpm"])
    for _ in range(2):  # idempotent: a re-export replaces the day
        replace_partition(engine, ATTRIBUTE_TABLE, out, feed="f", partition_date=DAY)
    back = read_partition(engine, ATTRIBUTE_TABLE, feed="f", partition_date=DAY)
    assert len(back) == len(out) == 6 + int(frame["is_anomaly"].sum())
    engine.dispose()


def test_an_existing_warehouse_gains_the_attribute_table(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    ensure_table(engine, ANOMALY_TABLE)  # a warehouse of an earlier release: no attributes
    replace_partition(engine, ANOMALY_TABLE, scores(), feed="f", partition_date=DAY)
    assert ATTRIBUTE_TABLE.name not in sa.inspect(engine).get_table_names()
    ensure_warehouse(engine)
    assert ATTRIBUTE_TABLE.name in sa.inspect(engine).get_table_names()
    assert len(read_partition(engine, ANOMALY_TABLE, feed="f", partition_date=DAY)) == 6
    engine.dispose()


def test_top_features_name_the_shap_features_of_an_explained_row() -> None:
    frame = scores(6).drop(
        columns=[
            c
            for c in scores(1).columns
            if c.startswith(("feature_", "contribution_")) or c == "explanation_method"
        ]
    )
    frame = frame.drop(columns=["run_id", "scored_at"])
    flagged = frame.index[frame["is_anomaly"]].tolist()
    frame["top_features"] = [
        json.dumps(["rpm", "power_kw"]) if f else None for f in frame["is_anomaly"]
    ]
    explained_key = frame.loc[flagged[0], "record_key"]
    explanations = pd.DataFrame(
        {
            "record_key": [explained_key],
            "explanation_method": ["tree"],
            "feature_1": ["vibration_mm_s"],
            "contribution_1": [0.4],
            "feature_2": ["pressure_bar"],
            "contribution_2": [0.2],
            "feature_3": [None],
            "contribution_3": [np.nan],
        }
    )
    rows = anomaly_rows(frame, explanations, run_id="r", scored_at=pd.Timestamp.now(tz="UTC"))
    assert rows.loc[flagged[0], "top_features"] == ["vibration_mm_s", "pressure_bar"]
    for other in flagged[1:]:  # not explained with SHAP: the scoring ranking stays
        assert rows.loc[other, "top_features"] == json.dumps(["rpm", "power_kw"])


@pytest.mark.parametrize("n", [50, 500, 2_000])
def test_every_tier_is_reachable_with_the_calibration_size(n: int) -> None:
    # a flagged row above every calibration score, one with 1 and one with 2 at or above it
    p = np.array([1, 2, 3, 10]) / (n + 1)
    levels = severity(p, np.ones(4, dtype=bool), n)
    assert levels[:3].tolist() == ["critical", "high", "medium"]
    medium, high, critical = reachable_cutoffs(n)
    assert critical < high < medium


def test_large_calibration_sets_keep_the_configured_cut_offs() -> None:
    cut = SeverityCutoffs(medium=0.003, high=0.001, critical=0.0001)
    assert reachable_cutoffs(12_096, cut) == (0.003, 0.001, 0.0001)  # the demo's week
    assert severity(np.array([1 / 12_097]), np.array([True]), 12_096).tolist() == ["critical"]
    assert reachable_cutoffs(100_000, cut) == (0.003, 0.001, 0.0001)
