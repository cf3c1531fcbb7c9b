"""The rows of the anomaly table: a day's scores joined with their explanations.

Kept apart from the Dagster asset that writes them so the join's rules (one explanation per
record key, keys compared as text, the row count unchanged) hold wherever rows are exported.
"""

from __future__ import annotations

import pandas as pd

from pynomaly_core.warehouse.tables import ANOMALY_TABLE

__all__ = ["anomaly_rows"]


def anomaly_rows(
    scores: pd.DataFrame, explanations: pd.DataFrame, *, run_id: str, scored_at: pd.Timestamp
) -> pd.DataFrame:
    """The frame :data:`~pynomaly_core.warehouse.tables.ANOMALY_TABLE` stores for one scored partition.

    ``scores`` holds one row per scored record (``record_key``, scores, severity, p-value, model);
    ``explanations`` the explained records' method and top features (a record explained twice
    counts once). Record keys are compared and stored as text; ``model_version`` (the MLflow
    registered model version, text in the scores) is stored as an integer, so versions sort as
    numbers (10 after 9); ``run_id`` and ``scored_at`` stamp every row. Raises ``ValueError`` if
    the join changed the row count or a model version is not an integer.
    """
    columns = [c.name for c in ANOMALY_TABLE.frame_columns]
    frame = scores.copy()
    frame["record_key"] = frame["record_key"].astype(str)
    explained = explanations.drop_duplicates("record_key").assign(
        record_key=lambda f: f["record_key"].astype(str)
    )
    frame = frame.merge(explained, on="record_key", how="left", validate="many_to_one")
    if len(frame) != len(scores):
        raise ValueError(
            f"joining explanations changed the row count of table {ANOMALY_TABLE.name!r}: "
            f"{len(scores)} scored rows, {len(frame)} after the join"
        )
    frame["run_id"] = run_id
    frame["scored_at"] = scored_at
    frame["model_version"] = _integer_versions(frame["model_version"])
    return frame[columns]


def _integer_versions(versions: pd.Series) -> pd.Series:
    """Registered model versions (``"3"``, ``3``) as ``Int64``; ``ValueError`` naming the first that is not one."""
    text = versions.astype("string").str.strip()
    valid = text.str.fullmatch(r"-?\d{1,18}").fillna(False)
    if not valid.all():
        label = valid.index[~valid.to_numpy()][0]
        raise ValueError(
            f"column 'model_version' of table {ANOMALY_TABLE.name!r} holds MLflow registered model "
            f"versions, which are integers; got {versions[label]!r} at index {label}"
        )
    return text.astype("Int64")
