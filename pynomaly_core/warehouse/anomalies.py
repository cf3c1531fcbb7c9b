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
    numbers (10 after 9); ``run_id`` and ``scored_at`` stamp every row; an explained row's
    ``top_features`` are its SHAP features (one explanation source per row). Raises ``ValueError`` if
    the join changed the row count or a model version is not an integer.
    """
    columns = [c.name for c in ANOMALY_TABLE.frame_columns]
    frame = scores.copy()
    frame["record_key"] = frame["record_key"].astype(str)
    for column in ANOMALY_TABLE.frame_columns:  # a day scored before the column existed
        if column.fill_from is not None and column.name not in frame.columns:
            frame[column.name] = frame[column.fill_from]
    explained = explanations.drop_duplicates("record_key").assign(
        record_key=lambda f: f["record_key"].astype(str)
    )
    frame = frame.merge(explained, on="record_key", how="left", validate="many_to_one")
    if len(frame) != len(scores):
        raise ValueError(
            f"joining explanations changed the row count of table {ANOMALY_TABLE.name!r}: "
            f"{len(scores)} scored rows, {len(frame)} after the join"
        )
    frame["top_features"] = _one_explanation_source(frame)
    frame["run_id"] = run_id
    frame["scored_at"] = scored_at
    frame["model_version"] = _integer_versions(frame["model_version"])
    return frame[columns]


def _one_explanation_source(frame: pd.DataFrame) -> pd.Series:
    """``top_features`` with SHAP's ranking wherever a row was explained with SHAP.

    Scoring names every flagged row's most deviating features (a cheap ranking); the
    explanations asset runs SHAP on the day's top rows. Two rankings of one row would answer
    "why" twice, differently, so an explained row's ``top_features`` lists its
    ``feature_1..3`` (non-empty, in order) and the cheap ranking remains only where SHAP did not run.
    """
    names = [c for c in ("feature_1", "feature_2", "feature_3") if c in frame.columns]
    if "explanation_method" not in frame.columns or not names:
        return frame["top_features"]
    explained = frame["explanation_method"].notna().to_numpy()
    tops = frame["top_features"].astype(object).to_numpy(copy=True)
    shap_names = frame.loc[explained, names].to_numpy(dtype=object)
    for row, values in zip(explained.nonzero()[0], shap_names, strict=True):
        tops[row] = [str(v) for v in values if v is not None and not pd.isna(v)]
    return pd.Series(tops, index=frame.index, dtype=object)


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
