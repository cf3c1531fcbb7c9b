"""The anomaly table's rows from scores and explanations (pynomaly_core.warehouse.anomalies)."""

from __future__ import annotations

import pandas as pd
import pytest

from pynomaly_core.warehouse import ANOMALY_TABLE, anomaly_rows
from tests.core.warehouse.helpers import explanation_columns, scores

EXPLANATION = [
    "explanation_method",
    *[f"{p}_{i}" for i in (1, 2, 3) for p in ("feature", "contribution")],
]


def test_anomaly_rows_join_explanations_by_text_key() -> None:
    scored = scores(4).drop(columns=["run_id", "scored_at", *EXPLANATION])
    scored["record_key"] = [1, 2, 3, 4]  # integer keys in the scores, text in the explanations
    explained = pd.DataFrame(explanation_columns([True, True, True]))[EXPLANATION]
    explained.insert(0, "record_key", ["2", "2", "4"])  # record 2 explained twice: counted once
    when = pd.Timestamp("2024-05-02 03:00", tz="UTC")

    rows = anomaly_rows(scored, explained, run_id="run-9", scored_at=when)

    assert list(rows.columns) == [c.name for c in ANOMALY_TABLE.frame_columns]
    assert rows["record_key"].tolist() == ["1", "2", "3", "4"]
    assert rows["explanation_method"].fillna("-").tolist() == ["-", "tree", "-", "tree"]
    assert rows["feature_1"].fillna("-").tolist() == ["-", "amount", "-", "amount"]
    assert set(rows["run_id"]) == {"run-9"} and (rows["scored_at"] == when).all()


def test_model_versions_are_stored_as_integers() -> None:
    """MLflow's registered model versions arrive as text ("9", "10") and are stored as numbers, so 10 sorts after 9."""
    scored = (
        scores(3)
        .drop(columns=["run_id", "scored_at", *EXPLANATION])
        .assign(model_version=["9", "10", " 10"])
    )
    rows = anomaly_rows(
        scored,
        pd.DataFrame(columns=["record_key", *EXPLANATION]),
        run_id="r",
        scored_at=pd.Timestamp("2024-05-02", tz="UTC"),
    )
    assert rows["model_version"].tolist() == [9, 10, 10] and rows["model_version"].max() == 10
    for bad in ("v1", "3.5", None):
        with pytest.raises(
            ValueError,
            match=rf"column 'model_version' of table 'anomaly_scores'.*got {bad!r} at index 1",
        ):
            anomaly_rows(
                scored.assign(model_version=["3", bad, "3"]),
                pd.DataFrame(columns=["record_key", *EXPLANATION]),
                run_id="r",
                scored_at=pd.Timestamp("2024-05-02", tz="UTC"),
            )
