"""Frames and counts shared by the warehouse tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

DAY = "2024-05-01"


def scores(n: int = 6, *, run_id: str = "run-1", seed: int = 0) -> pd.DataFrame:
    """A valid frame for ANOMALY_TABLE with ``n`` rows."""
    rng = np.random.default_rng(seed)
    score = rng.gamma(2.0, 1.0, n)
    is_anomaly = score > np.quantile(score, 0.7)
    return pd.DataFrame(
        {
            "record_key": [f"rec-{i:06d}" for i in range(n)],
            "event_time": pd.Timestamp(DAY, tz="UTC")
            + pd.to_timedelta(rng.integers(0, 86_400_000_000, n), unit="us"),
            "score": score,
            "normalized_score": score / score.max(),
            "is_anomaly": is_anomaly,
            "severity": np.where(is_anomaly, "high", "none"),
            "model_name": "IForest",
            "model_version": 1,
            "run_id": run_id,
            "top_features": [{"amount": 0.7} if a else None for a in is_anomaly],
            "scored_at": pd.Timestamp("2024-05-02 03:00", tz="UTC"),
            **explanation_columns(is_anomaly),
        }
    )


def explanation_columns(is_anomaly) -> dict:
    """p-value and SHAP columns: explained anomalies name amount/country/hour."""
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    out: dict = {
        "p_value": np.where(is_anomaly, 0.001, 0.5),
        "explanation_method": np.where(is_anomaly, "tree", None),
    }
    for i, (name, value) in enumerate([("amount", 0.7), ("country", 0.2), ("hour", -0.1)], start=1):
        out[f"feature_{i}"] = np.where(is_anomaly, name, None)
        out[f"contribution_{i}"] = np.where(is_anomaly, value, np.nan)
    return out


def count(engine: sa.Engine, table: str = "anomaly_scores") -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
