"""Data and score drift of a scored partition against the champion's training reference.

A :class:`DriftReference` is built once per champion from its training window
(:func:`build_reference`) and stored next to it (:meth:`DriftReference.save`, Parquet +
JSON, no pickles). :func:`drift_report` then judges every scored daily partition
against it, in three parts:

* **Per-column drift decisions and the HTML report come from Evidently** (0.7,
  ``DataDriftPreset`` with its own default stattests and thresholds; numerical and
  categorical columns declared through ``DataDefinition``). Evidently compares the
  reference's stored sample (``sample_rows`` rows, 5,000 by default) with a uniform
  random sample of the partition (``sample_rows`` in :func:`drift_report`, 20,000 by
  default), so a 1e6-row partition takes seconds, not minutes. With a reference sample
  above 1,000 rows Evidently's defaults are distances (normed Wasserstein for numerical
  columns, Jensen-Shannon for categorical ones and for numerical ones with at most 5
  distinct values), whose sampling error at these sizes is small next to their 0.1
  thresholds, so the sampled decisions match the full-data ones for any shift that
  matters (``benchmarks/drift.py`` measures the agreement). With 1,000 reference rows
  or fewer Evidently switches to p-value tests (KS, chi-square, Z), whose decisions
  depend on the sample size.
* **PSI per feature is ours**, over the *full* partition in one vectorised pass per
  column: ``np.searchsorted`` against the reference's quantile edges and
  ``np.bincount``. Numerical buckets are the reference's ``bins`` quantile bins plus
  one for values below the reference minimum, one for values above its maximum and one
  for missing values; categorical buckets are the reference categories plus one for
  unseen categories and one for missing values. Shares are floored at
  :data:`PSI_EPSILON` so empty buckets stay finite. A constant reference column gets
  three buckets (below, at, above the constant), so a shift away from it still shows.
* **Score drift and alert rate need no labels**: PSI and the two-sample KS test
  (``scipy.stats.ks_2samp``) of the partition's anomaly scores against the reference
  scores, and a two-sided binomial test (``scipy.stats.binomtest``) of the number of
  flagged rows against the detector's contamination.

Errors are :class:`DriftError` (a ``ValueError``) naming the column, file or argument
at fault: a feature column missing from the partition, a column with no non-missing
values, scores or flags whose length differs from the partition. An empty partition
raises too (drift of zero rows is undefined, and a silent "no drift" would hide a
broken feed); the feed's ``validation.min_rows`` normally stops such a partition first.

Evidently is imported only inside :func:`drift_report` and :func:`evidently_drift`
(``pip install 'pynomaly[monitoring]'``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pynomaly_core.evaluation.health import alert_rate_test
from pynomaly_core.storage import atomic_write

#: floor of a bucket share in PSI, so buckets empty on one side stay finite
PSI_EPSILON = 1e-4
#: reference anomaly scores kept (a uniform sample, sorted) for the KS test
MAX_REFERENCE_SCORES = 100_000
#: file written by :meth:`DriftReference.save`; it names the Parquet files it goes with
MANIFEST_NAME = "drift_reference.json"
FORMAT_VERSION = 1
_SAMPLE_PREFIX = "drift_reference_sample-"
_SCORES_PREFIX = "drift_reference_scores-"
_EXTRA_HINT = "pip install 'pynomaly[monitoring]'"


class DriftError(ValueError):
    """Drift cannot be computed as asked; the message names the column, file or argument."""


# ------------------------------------------------------------------ binning and PSI
def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Bucket edges learned on finite ``values``: distinct quantiles plus one just above the max.

    Buckets (see :func:`bucket_counts`) are ``< edges[0]``, ``[edges[i], edges[i+1])``,
    ``>= edges[-1]`` and missing. The extra edge ``nextafter(max)`` gives the reference
    maximum its own bucket and values above it another, so a constant column still has
    "below", "at" and "above" buckets.
    """
    distinct = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    return np.append(distinct, np.nextafter(distinct[-1], np.inf))


def bucket_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of float ``values`` in the ``len(edges) + 2`` buckets of ``edges`` (last: missing)."""
    index = np.searchsorted(edges, values, side="right")
    index[np.isnan(values)] = len(edges) + 1  # NaN sorts last: give it its own bucket
    return np.bincount(index, minlength=len(edges) + 2)


def category_counts(values: pd.Series, categories: list[Any]) -> np.ndarray:
    """Counts of ``values`` per reference category, then unseen categories, then missing."""
    codes = pd.Categorical(values, categories=categories).codes.astype(np.int64)
    missing = values.isna().to_numpy()
    codes[codes < 0] = len(categories)  # not a reference category ...
    codes[missing] = len(categories) + 1  # ... unless it is missing altogether
    return np.bincount(codes, minlength=len(categories) + 2)


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of bucket shares ``actual`` against ``expected``."""
    e = np.maximum(np.asarray(expected, dtype=float), epsilon)
    a = np.maximum(np.asarray(actual, dtype=float), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def _numeric_values(frame: pd.DataFrame, column: str, where: str) -> np.ndarray:
    try:
        return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DriftError(
            f"numeric feature column {column!r} of the {where} is not numeric "
            f"(dtype {frame[column].dtype}): {exc}"
        ) from exc


def _missing_columns(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DriftError(
            f"the {where} lacks feature column(s) {missing}; it has {list(map(str, frame.columns))}"
        )


def _json_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ------------------------------------------------------------------ the reference
@dataclass(eq=False)
class DriftReference:
    """Precomputed once per champion from its training data; stored next to it; reused for every partition.

    ``edges[c]`` and ``proportions[c]`` describe numerical column ``c`` on the full
    reference (buckets as in :func:`bucket_counts`); for categorical ``c``,
    ``categories[c]`` lists the reference categories (most frequent first) and
    ``proportions[c]`` their shares, then the unseen and missing shares (0 and the
    reference's missing share). ``score_edges`` / ``score_proportions`` do the same for
    the reference anomaly scores, ``scores`` keeps a sorted sample of them.
    """

    numeric: list[str]
    categorical: list[str]
    sample: pd.DataFrame
    edges: dict[str, np.ndarray]
    proportions: dict[str, np.ndarray]
    scores: np.ndarray
    expected_alert_rate: float
    n_rows: int
    categories: dict[str, list[Any]] = field(default_factory=dict)
    score_edges: np.ndarray = field(default_factory=lambda: np.empty(0))
    score_proportions: np.ndarray = field(default_factory=lambda: np.empty(0))
    bins: int = 20
    n_scores: int = 0

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DriftReference):
            return NotImplemented
        return (
            self.numeric == other.numeric
            and self.categorical == other.categorical
            and self.categories == other.categories
            and self.expected_alert_rate == other.expected_alert_rate
            and (self.n_rows, self.bins, self.n_scores) == (other.n_rows, other.bins, other.n_scores)
            and self.sample.equals(other.sample)
            and list(self.sample.columns) == list(other.sample.columns)
            and np.array_equal(self.scores, other.scores)
            and np.array_equal(self.score_edges, other.score_edges)
            and np.array_equal(self.score_proportions, other.score_proportions)
            and self.edges.keys() == other.edges.keys()
            and all(np.array_equal(v, other.edges[k]) for k, v in self.edges.items())
            and self.proportions.keys() == other.proportions.keys()
            and all(np.array_equal(v, other.proportions[k]) for k, v in self.proportions.items())
        )

    # -------------------------------------------------------------- persistence
    def save(self, directory: Path) -> Path:
        """Write the reference into ``directory``; return the manifest's path.

        The sample and the scores go to Parquet files named by their content hash, then
        the JSON manifest (edges, shares, settings, file names and SHA-256 digests) is
        replaced atomically, and only then are files of an earlier reference removed:
        a reader sees the old reference or the new one, never a mix. Saving the same
        reference twice writes the same files.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sample_file, sample_digest = _write_parquet(self.sample, directory, _SAMPLE_PREFIX)
        scores_file, scores_digest = _write_parquet(pd.DataFrame({"score": self.scores}), directory, _SCORES_PREFIX)
        manifest = {
            "format_version": FORMAT_VERSION,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "categories": {c: [_json_scalar(v) for v in cats] for c, cats in self.categories.items()},
            "edges": {c: self.edges[c].tolist() for c in self.numeric},
            "proportions": {c: self.proportions[c].tolist() for c in self.features},
            "score_edges": self.score_edges.tolist(),
            "score_proportions": self.score_proportions.tolist(),
            "expected_alert_rate": self.expected_alert_rate,
            "n_rows": self.n_rows,
            "n_scores": self.n_scores,
            "bins": self.bins,
            "files": {
                "sample": {"name": sample_file, "sha256": sample_digest},
                "scores": {"name": scores_file, "sha256": scores_digest},
            },
        }
        path = directory / MANIFEST_NAME
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
        for stale in [*directory.glob(f"{_SAMPLE_PREFIX}*.parquet"), *directory.glob(f"{_SCORES_PREFIX}*.parquet")]:
            if stale.name not in (sample_file, scores_file):
                stale.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, directory: Path) -> DriftReference:
        """Read a reference written by :meth:`save`; errors name the directory or file at fault."""
        directory = Path(directory)
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no drift reference in {directory}; build one with "
                "build_reference(...) and save it there"
            )
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DriftError(f"{path}: corrupt drift reference manifest ({exc}); rebuild the reference") from exc
        if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
            found = doc.get("format_version") if isinstance(doc, dict) else type(doc).__name__
            raise DriftError(f"{path}: drift reference format {found!r}, expected {FORMAT_VERSION}; rebuild it")
        try:
            numeric = [str(c) for c in doc["numeric"]]
            categorical = [str(c) for c in doc["categorical"]]
            sample = _read_parquet(directory, doc["files"]["sample"], path)
            scores = _read_parquet(directory, doc["files"]["scores"], path)["score"].to_numpy(dtype=np.float64)
            reference = cls(
                numeric=numeric,
                categorical=categorical,
                sample=sample,
                edges={c: np.asarray(doc["edges"][c], dtype=np.float64) for c in numeric},
                proportions={c: np.asarray(doc["proportions"][c], dtype=np.float64) for c in numeric + categorical},
                scores=scores,
                expected_alert_rate=float(doc["expected_alert_rate"]),
                n_rows=int(doc["n_rows"]),
                categories={c: list(doc["categories"][c]) for c in categorical},
                score_edges=np.asarray(doc["score_edges"], dtype=np.float64),
                score_proportions=np.asarray(doc["score_proportions"], dtype=np.float64),
                bins=int(doc["bins"]),
                n_scores=int(doc["n_scores"]),
            )
        except DriftError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftError(f"{path}: corrupt drift reference manifest, cannot read {exc!r}; rebuild it") from exc
        if list(sample.columns) != reference.features:
            raise DriftError(
                f"{directory / doc['files']['sample']['name']}: sample columns {list(sample.columns)} "
                f"differ from the manifest's features {reference.features}; rebuild the reference"
            )
        return reference


def _write_parquet(frame: pd.DataFrame, directory: Path, prefix: str) -> tuple[str, str]:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=directory)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        name = f"{prefix}{digest[:16]}.parquet"
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return name, digest


def _read_parquet(directory: Path, entry: dict[str, str], manifest: Path) -> pd.DataFrame:
    file = directory / entry["name"]
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing, but named by the drift reference manifest {manifest}; rebuild it")
    data = file.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise DriftError(f"{file}: content does not match its SHA-256 in {manifest} (corrupt); rebuild the reference")
    try:
        return pd.read_parquet(file)
    except Exception as exc:
        raise DriftError(f"{file}: unreadable Parquet ({exc}); rebuild the drift reference") from exc


def build_reference(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    scores: np.ndarray,
    expected_alert_rate: float,
    *,
    sample_rows: int = 5000,
    bins: int = 20,
    random_state: int = 0,
) -> DriftReference:
    """Drift reference of a champion from its training ``frame`` and training ``scores``.

    Parameters
    ----------
    frame : DataFrame, shape (n_rows, >= n_features)
        The champion's training window (validated rows).
    numeric, categorical : list of str
        Feature columns, as the feed declares them.
    scores : array, shape (n_scores,)
        Raw anomaly scores the champion gave the reference rows (higher = more anomalous).
    expected_alert_rate : float
        Share of rows the detector is expected to flag (its contamination), in (0, 1).
    sample_rows : int
        Reference rows kept for Evidently (a uniform sample without replacement).
    bins : int
        Quantile bins per numerical column (and for the scores) for PSI.
    """
    features = [*numeric, *categorical]
    if not features:
        raise DriftError("build_reference needs at least one numeric or categorical feature column")
    overlap = sorted(set(numeric) & set(categorical))
    if overlap or len(set(features)) != len(features):
        raise DriftError(f"feature column(s) {overlap or features} listed more than once (numeric and categorical)")
    if not 0.0 < expected_alert_rate < 1.0:
        raise DriftError(f"expected_alert_rate must be in (0, 1) (the detector's contamination), got {expected_alert_rate}")
    if sample_rows < 1 or bins < 1:
        raise DriftError(f"sample_rows and bins must be at least 1, got sample_rows={sample_rows}, bins={bins}")
    _missing_columns(frame, features, "reference frame")
    if len(frame) == 0:
        raise DriftError("the reference frame is empty (0 rows): a drift reference needs the training rows")
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0 or not np.isfinite(scores).all():
        raise DriftError(f"reference scores must be non-empty and finite (got {scores.size} scores, "
                         f"{int((~np.isfinite(scores)).sum())} non-finite)")

    edges, proportions, categories = {}, {}, {}
    columns: dict[str, Any] = {}
    for column in numeric:
        values = _numeric_values(frame, column, "reference frame")
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise DriftError(f"numeric feature column {column!r} of the reference frame has no finite values")
        edges[column] = quantile_edges(finite, bins)
        proportions[column] = _shares(bucket_counts(values, edges[column]))
        columns[column] = values
    for column in categorical:
        counts = frame[column].value_counts(dropna=True)
        if counts.empty:
            raise DriftError(f"categorical feature column {column!r} of the reference frame has no values")
        categories[column] = [_json_scalar(v) for v in counts.index]
        proportions[column] = _shares(category_counts(frame[column], categories[column]))
        columns[column] = frame[column].to_numpy()

    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(len(frame), size=min(sample_rows, len(frame)), replace=False))
    sample = pd.DataFrame({c: columns[c][rows] for c in features})
    kept = np.sort(rng.choice(scores, size=MAX_REFERENCE_SCORES, replace=False)) if scores.size > MAX_REFERENCE_SCORES \
        else np.sort(scores)
    score_edges = quantile_edges(scores, bins)
    return DriftReference(
        numeric=list(numeric),
        categorical=list(categorical),
        sample=sample,
        edges=edges,
        proportions=proportions,
        scores=kept,
        expected_alert_rate=float(expected_alert_rate),
        n_rows=len(frame),
        categories=categories,
        score_edges=score_edges,
        score_proportions=_shares(bucket_counts(scores, score_edges)),
        bins=bins,
        n_scores=int(scores.size),
    )


# ------------------------------------------------------------------ Evidently
def _require_evidently() -> Any:
    try:
        import evidently
    except ImportError as exc:
        raise ImportError(f"drift reports need Evidently, which is not installed: {_EXTRA_HINT}") from exc
    return evidently


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
    definition = DataDefinition(numerical_columns=list(numeric), categorical_columns=list(categorical))
    report = Report([DataDriftPreset(columns=features, drift_share=drift_share_threshold)], include_tests=True)
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
        metrics = [m for m in doc["metrics"] if str(m.get("config", {}).get("type", "")).endswith(":ValueDrift")]
        status = {t["metric_config"]["metric_id"]: t["status"] for t in doc["tests"] if t.get("id") == "drift"}
    except (KeyError, TypeError, AttributeError) as exc:
        raise DriftError(f"Evidently {version} snapshot has no metrics/tests list as expected: {exc!r}") from exc
    by_column = {m["config"].get("column"): m for m in metrics}
    rows = []
    for column in features:
        metric = by_column.get(column)
        if metric is None:
            raise DriftError(f"Evidently {version} snapshot has no ValueDrift result for feature column {column!r}")
        try:
            config = metric["config"]
            verdict = status[metric["id"]]
            verdict = str(getattr(verdict, "value", verdict))  # a TestStatus enum in dict(), a str in JSON
            if verdict not in ("FAIL", "SUCCESS"):
                raise ValueError(f"test status {verdict!r}")
            rows.append({
                "column": column,
                "stattest": str(config["method"]),
                "statistic": float(metric["value"]),
                "threshold": float(config["threshold"]),
                "drifted": verdict == "FAIL",
            })
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftError(
                f"cannot read Evidently {version}'s drift result for feature column {column!r}: {exc!r}"
            ) from exc
    return pd.DataFrame(rows, columns=["column", "stattest", "statistic", "threshold", "drifted"])


# ------------------------------------------------------------------ the report
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

    @property
    def drifted_columns(self) -> list[str]:
        return self.columns.loc[self.columns["drifted"], "column"].tolist()

    def summary(self) -> dict[str, Any]:
        """All fields as plain JSON types (columns as a list of dicts, NaN as None)."""

        def plain(value: Any) -> Any:
            value = _json_scalar(value)
            if isinstance(value, float) and not np.isfinite(value):
                return None
            return value

        out = {
            name: plain(getattr(self, name))
            for name in (
                "drift_share", "dataset_drift", "drift_share_threshold", "score_psi", "score_ks",
                "score_ks_pvalue", "alert_rate", "expected_alert_rate", "alert_rate_ratio",
                "alert_rate_pvalue", "alerts", "rows", "sampled_rows", "reference_rows",
                "reference_sampled_rows", "seconds",
            )
        }
        out["drifted_columns"] = self.drifted_columns
        out["columns"] = [{k: plain(v) for k, v in row.items()} for row in self.columns.to_dict("records")]
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
    """
    start = time.perf_counter()
    from scipy import stats

    if sample_rows < 1:
        raise DriftError(f"sample_rows must be at least 1, got {sample_rows}")
    features = reference.features
    _missing_columns(current, features, "current partition")
    rows = len(current)
    if rows == 0:
        raise DriftError("the current partition is empty (0 rows): its drift is undefined; "
                         "check the feed's source for this partition")
    scores = np.asarray(current_scores, dtype=np.float64).ravel()
    flags = np.asarray(current_flags).ravel()
    for name, values in (("current_scores", scores), ("current_flags", flags)):
        if values.size != rows:
            raise DriftError(f"{name} has {values.size} values but the current partition has {rows} rows")
    if not np.isfinite(scores).all():
        raise DriftError(f"current_scores has {int((~np.isfinite(scores)).sum())} non-finite value(s)")
    if flags.dtype != bool:
        if not np.isin(flags, (0, 1)).all():
            raise DriftError("current_flags must be booleans (or 0/1), one per row of the current partition")
        flags = flags.astype(bool)
    _require_evidently()  # fail before the full-data pass when Evidently is missing

    # full-data PSI, one searchsorted + bincount pass per column
    values: dict[str, Any] = {}
    psi_by_column: dict[str, float] = {}
    for column in reference.numeric:
        array = _numeric_values(current, column, "current partition")
        counts = bucket_counts(array, reference.edges[column])
        if counts[-1] == rows:
            raise DriftError(f"numeric feature column {column!r} of the current partition has only missing values")
        psi_by_column[column] = psi(reference.proportions[column], counts / rows)
        values[column] = array
    for column in reference.categorical:
        counts = category_counts(current[column], reference.categories[column])
        if counts[-1] == rows:
            raise DriftError(f"categorical feature column {column!r} of the current partition has only missing values")
        psi_by_column[column] = psi(reference.proportions[column], counts / rows)
        values[column] = current[column].to_numpy()

    rng = np.random.default_rng(random_state)
    picked = np.sort(rng.choice(rows, size=min(sample_rows, rows), replace=False)) if sample_rows < rows \
        else np.arange(rows)
    sample = pd.DataFrame({c: values[c][picked] for c in features})
    for column in features:
        if sample[column].isna().all():
            raise DriftError(
                f"feature column {column!r} has no non-missing values among the {len(sample)} sampled rows of the "
                "current partition; raise sample_rows"
            )
    columns, snapshot = evidently_drift(
        reference.sample, sample, reference.numeric, reference.categorical,
        drift_share_threshold=drift_share_threshold,
    )
    columns.insert(1, "kind", ["numeric" if c in reference.edges else "categorical" for c in columns["column"]])
    columns["psi"] = columns["column"].map(psi_by_column).astype(float)

    score_counts = bucket_counts(scores, reference.score_edges)
    ks = stats.ks_2samp(scores, reference.scores)
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
        score_psi=psi(reference.score_proportions, score_counts / rows),
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
    )
