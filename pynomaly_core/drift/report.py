"""Drift of one scored partition against its reference: Evidently, PSI, score drift, alert rate.

See :mod:`pynomaly_core.drift` for what is computed how. Evidently is imported only
inside :func:`drift_report` and :func:`evidently_drift`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from pynomaly_core.drift.binning import (
    DriftError,
    bucket_counts,
    category_counts,
    json_scalar,
    numeric_values,
    psi,
    require_columns,
)
from pynomaly_core.drift.reference import DriftReference

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.drift.normal import NormalDays
from pynomaly_core.evaluation.health import alert_rate_test
from pynomaly_core.storage import atomic_write

_EXTRA_HINT = "pip install 'pynomaly[monitoring]'"


def _require_evidently() -> Any:
    try:
        import evidently
    except ImportError as exc:
        raise ImportError(
            f"drift reports need Evidently, which is not installed: {_EXTRA_HINT}"
        ) from exc
    return evidently


#: numeric values Evidently sees are clipped to +-this: its histograms and statistics take
#: differences and squares, which overflow (NaN, "Too many bins") for valid values near 1e308.
#: Order is kept, and a value this far out is drift by any measure.
EVIDENTLY_VALUE_LIMIT = 1e150


def _within_limit(frame: pd.DataFrame, numeric: list[str]) -> pd.DataFrame:
    """``frame`` with its ``numeric`` columns clipped to +-:data:`EVIDENTLY_VALUE_LIMIT` (a copy
    only when some value lies beyond it)."""
    values = {c: frame[c].astype("float64") for c in numeric}
    if not any((v.abs() > EVIDENTLY_VALUE_LIMIT).any() for v in values.values()):
        return frame
    limit = EVIDENTLY_VALUE_LIMIT
    return frame.assign(**{c: v.clip(-limit, limit) for c, v in values.items()})


def evidently_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    drift_share_threshold: float = 0.5,
) -> tuple[pd.DataFrame, Any]:
    """Evidently's ``DataDriftPreset`` on ``current`` vs ``reference`` with its default stattests.

    Returns one row per feature (column, stattest, statistic, threshold, drifted) and the
    Evidently snapshot (``save_html``, ``dict()``). :func:`drift_report` calls it on
    samples; pass full frames to get the full-data decisions.
    """
    evidently = _require_evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    features = [*numeric, *categorical]
    definition = DataDefinition(
        numerical_columns=list(numeric), categorical_columns=list(categorical)
    )
    report = Report(
        [DataDriftPreset(columns=features, drift_share=drift_share_threshold)], include_tests=True
    )
    current, reference = _within_limit(current, numeric), _within_limit(reference, numeric)
    # Evidently's correlation widgets divide by a zero std on constant columns
    with np.errstate(divide="ignore", invalid="ignore"):
        snapshot = report.run(
            current_data=Dataset.from_pandas(current[features], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[features], data_definition=definition),
        )
    return parse_snapshot(snapshot.dict(), features, version=evidently.__version__), snapshot


def parse_snapshot(doc: dict[str, Any], features: list[str], *, version: str = "?") -> pd.DataFrame:
    """Per-column drift results out of ``Snapshot.dict()`` of a ``DataDriftPreset`` run.

    A column's decision is the status of Evidently's own "Value Drift" test of that
    column's ``ValueDrift`` metric (FAIL = drifted), so the stattest's own rule (p-value
    below, or distance at or above, the threshold) decides.
    """
    try:
        metrics = [
            m
            for m in doc["metrics"]
            if str(m.get("config", {}).get("type", "")).endswith(":ValueDrift")
        ]
        status = {
            t["metric_config"]["metric_id"]: t["status"]
            for t in doc["tests"]
            if t.get("id") == "drift"
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise DriftError(
            f"Evidently {version} snapshot has no metrics/tests list as expected: {exc!r}"
        ) from exc
    by_column = {m["config"].get("column"): m for m in metrics}
    rows = []
    for column in features:
        metric = by_column.get(column)
        if metric is None:
            raise DriftError(
                f"Evidently {version} snapshot has no ValueDrift result for feature column {column!r}"
            )
        try:
            config = metric["config"]
            verdict = status[metric["id"]]
            verdict = str(
                getattr(verdict, "value", verdict)
            )  # a TestStatus enum in dict(), a str in JSON
            if verdict not in ("FAIL", "SUCCESS"):
                raise ValueError(f"test status {verdict!r}")
            rows.append(
                {
                    "column": column,
                    "stattest": str(config["method"]),
                    "statistic": float(metric["value"]),
                    "threshold": float(config["threshold"]),
                    "drifted": verdict == "FAIL",
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftError(
                f"cannot read Evidently {version}'s drift result for feature column {column!r}: {exc!r}"
            ) from exc
    return pd.DataFrame(rows, columns=["column", "stattest", "statistic", "threshold", "drifted"])


@dataclass
class DriftResult:
    """Drift of one partition: Evidently's per-column decisions, our PSI, score drift and alert rate."""

    drift_share: float
    dataset_drift: bool
    columns: pd.DataFrame
    score_psi: float
    score_ks: float
    score_ks_pvalue: float
    alert_rate: float
    expected_alert_rate: float
    alert_rate_ratio: float
    alert_rate_pvalue: float
    rows: int
    sampled_rows: int
    seconds: float
    html_path: Path | None
    drift_share_threshold: float = 0.5
    reference_rows: int = 0
    reference_sampled_rows: int = 0
    alerts: int = 0
    #: what the score PSI and KS compared with: ``"holdout"`` (the champion's held-out raw scores) or
    #: ``"normal_days"`` (the pooled out-of-fold normalized scores of the reference days)
    score_reference: str = "holdout"

    @property
    def drifted_columns(self) -> list[str]:
        return cast("list[str]", self.columns.loc[self.columns["drifted"], "column"].tolist())

    def summary(self) -> dict[str, Any]:
        """All fields as plain JSON types (columns as a list of dicts, NaN as None)."""

        def plain(value: Any) -> Any:
            value = json_scalar(value)
            if isinstance(value, float) and not np.isfinite(value):
                return None
            return value

        out = {
            name: plain(getattr(self, name))
            for name in (
                "drift_share",
                "dataset_drift",
                "drift_share_threshold",
                "score_psi",
                "score_ks",
                "score_ks_pvalue",
                "alert_rate",
                "expected_alert_rate",
                "alert_rate_ratio",
                "alert_rate_pvalue",
                "alerts",
                "rows",
                "sampled_rows",
                "reference_rows",
                "reference_sampled_rows",
                "seconds",
                "score_reference",
            )
        }
        out["drifted_columns"] = self.drifted_columns
        out["columns"] = [
            {k: plain(v) for k, v in row.items()} for row in self.columns.to_dict("records")
        ]
        out["html_path"] = str(self.html_path) if self.html_path is not None else None
        return out


def drift_report(
    reference: DriftReference,
    current: pd.DataFrame,
    current_scores: np.ndarray,
    current_flags: np.ndarray,
    *,
    html_path: Path | None = None,
    sample_rows: int = 20_000,
    drift_share_threshold: float = 0.5,
    random_state: int = 0,
    normal: NormalDays | None = None,
    current_normalized: np.ndarray | None = None,
) -> DriftResult:
    """Drift of the scored partition ``current`` against ``reference``.

    Parameters
    ----------
    current : DataFrame, shape (rows, >= n_features)
        The partition's validated rows (extra columns are ignored).
    current_scores : array, shape (rows,)
        The champion's raw anomaly scores of those rows.
    current_flags : array of bool, shape (rows,)
        Whether the champion flagged each row.
    html_path : Path, optional
        Where to write Evidently's HTML report (atomically).
    sample_rows : int
        Partition rows Evidently sees (a uniform sample; all rows when fewer).
    drift_share_threshold : float
        ``dataset_drift`` is ``drift_share >= drift_share_threshold``.
    normal, current_normalized : NormalDays, array of shape (rows,), optional
        With a built normal-day profile (:mod:`pynomaly_core.drift.normal`), the score PSI and KS
        compare the partition's *normalized* scores (``current_normalized``, the scoring's
        ``normalized_score``) with the pooled out-of-fold scores of the reference days, the
        statistic the profile measured on every normal day; otherwise the raw scores with the
        champion's held-out scores.
    """
    start = time.perf_counter()
    from scipy import stats

    if sample_rows < 1:
        raise DriftError(f"sample_rows must be at least 1, got {sample_rows}")
    features = reference.features
    require_columns(current, features, "current partition")
    rows = len(current)
    if rows == 0:
        raise DriftError(
            "the current partition is empty (0 rows): its drift is undefined; "
            "check the feed's source for this partition"
        )
    scores = np.asarray(current_scores, dtype=np.float64).ravel()
    flags = np.asarray(current_flags).ravel()
    for name, given in (("current_scores", scores), ("current_flags", flags)):
        if given.size != rows:
            raise DriftError(
                f"{name} has {given.size} values but the current partition has {rows} rows"
            )
    if not np.isfinite(scores).all():
        raise DriftError(
            f"current_scores has {int((~np.isfinite(scores)).sum())} non-finite value(s)"
        )
    if flags.dtype != bool:
        if not np.isin(flags, (0, 1)).all():
            raise DriftError(
                "current_flags must be booleans (or 0/1), one per row of the current partition"
            )
        flags = flags.astype(bool)
    _require_evidently()  # fail before the full-data pass when Evidently is missing

    # full-data PSI, one searchsorted + bincount pass per column
    values: dict[str, Any] = {}
    psi_by_column: dict[str, float] = {}
    for column in reference.numeric:
        array = numeric_values(current, column, "current partition")
        counts = bucket_counts(array, reference.edges[column])
        if counts[-1] == rows:
            raise DriftError(
                f"numeric feature column {column!r} of the current partition has only missing values"
            )
        psi_by_column[column] = psi(reference.proportions[column], counts / rows)
        values[column] = array
    for column in reference.categorical:
        counts = category_counts(current[column], reference.categories[column])
        if counts[-1] == rows:
            raise DriftError(
                f"categorical feature column {column!r} of the current partition has only missing values"
            )
        psi_by_column[column] = psi(reference.proportions[column], counts / rows)
        values[column] = current[column].to_numpy()

    rng = np.random.default_rng(random_state)
    picked = (
        np.sort(rng.choice(rows, size=min(sample_rows, rows), replace=False))
        if sample_rows < rows
        else np.arange(rows)
    )
    sample = pd.DataFrame({c: values[c][picked] for c in features})
    for column in features:
        if sample[column].isna().all():
            raise DriftError(
                f"feature column {column!r} has no non-missing values among the {len(sample)} sampled rows of the "
                "current partition; raise sample_rows"
            )
    columns, snapshot = evidently_drift(
        reference.sample,
        sample,
        reference.numeric,
        reference.categorical,
        drift_share_threshold=drift_share_threshold,
    )
    columns.insert(
        1, "kind", ["numeric" if c in reference.edges else "categorical" for c in columns["column"]]
    )
    columns["psi"] = columns["column"].map(psi_by_column).astype(float)

    score_reference = "holdout"
    score_edges, score_proportions, reference_scores, judged_scores = (
        reference.score_edges,
        reference.score_proportions,
        reference.scores,
        scores,
    )
    if normal is not None and normal.built:
        if current_normalized is None:
            raise DriftError(
                "the reference has a normal-day profile: pass current_normalized (the partition's "
                "normalized_score column) so score drift is measured as on the normal days"
            )
        judged_scores = np.asarray(current_normalized, dtype=np.float64).ravel()
        if judged_scores.size != rows or not np.isfinite(judged_scores).all():
            raise DriftError(
                f"current_normalized has {judged_scores.size} values "
                f"({int((~np.isfinite(judged_scores)).sum())} non-finite) but the current partition "
                f"has {rows} rows"
            )
        score_reference = "normal_days"
        score_edges, score_proportions, reference_scores = (
            normal.score_edges,
            normal.score_proportions,
            normal.scores,
        )
    score_counts = bucket_counts(judged_scores, score_edges)
    ks = stats.ks_2samp(judged_scores, reference_scores)
    alerts = int(flags.sum())
    alert = alert_rate_test(alerts, rows, reference.expected_alert_rate)

    written = None
    if html_path is not None:
        written = Path(html_path)
        # Snapshot.save_html writes only when given a str path
        atomic_write(written, lambda tmp: snapshot.save_html(str(tmp)))
    drift_share = float(columns["drifted"].mean())
    return DriftResult(
        drift_share=drift_share,
        dataset_drift=drift_share >= drift_share_threshold,
        columns=columns,
        score_psi=psi(score_proportions, score_counts / rows),
        score_ks=float(ks.statistic),
        score_ks_pvalue=float(ks.pvalue),
        **alert,
        rows=rows,
        sampled_rows=len(sample),
        seconds=time.perf_counter() - start,
        html_path=written,
        drift_share_threshold=drift_share_threshold,
        reference_rows=reference.n_rows,
        reference_sampled_rows=len(reference.sample),
        alerts=alerts,
        score_reference=score_reference,
    )


#: the measurements of a drift summary that the performance check also reads, in its order
HEALTH_KEYS = (
    "alert_rate",
    "expected_alert_rate",
    "alert_rate_ratio",
    "alert_rate_pvalue",
    "score_ks",
    "score_ks_pvalue",
)


def health_measurements(summary: Mapping[str, Any]) -> dict[str, float]:
    """The alert-rate and score KS tests of a partition, out of its :meth:`DriftResult.summary`.

    :func:`drift_report` computes both once per partition; the performance check
    (:func:`pynomaly_core.evaluation.health.measure_partition`) reads them from here instead of
    testing the same scores again. A value the summary holds as ``None`` (not finite) is left
    out, so :func:`~pynomaly_core.evaluation.health.judge` does not judge it.
    """
    missing = [k for k in HEALTH_KEYS if k not in summary]
    if missing:
        raise DriftError(
            f"the drift summary lacks {missing} (it has {sorted(summary)}); "
            "it was not written by drift_report(...).summary()"
        )
    return {k: float(summary[k]) for k in HEALTH_KEYS if summary[k] is not None}
