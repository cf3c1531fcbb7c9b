"""The drift reference of a champion: built once from its training window, stored next to it.

:func:`build_reference` learns the PSI buckets (:mod:`pynomaly_core.drift.binning`) of every
feature and of the anomaly scores, keeps a uniform sample for Evidently and a sorted
sample of the scores for the KS test. :meth:`DriftReference.save` writes it as Parquet
plus a JSON manifest (no pickles); :meth:`DriftReference.load` reads it back and checks
the files against the manifest's SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pynomaly_core.drift.binning import (
    DriftError,
    bucket_counts,
    category_counts,
    json_scalar,
    numeric_values,
    quantile_edges,
    require_columns,
    shares,
)
from pynomaly_core.storage import atomic_write

#: reference anomaly scores kept (a uniform sample, sorted) for the KS test
MAX_REFERENCE_SCORES = 100_000
#: file written by :meth:`DriftReference.save`; it names the Parquet files it goes with
MANIFEST_NAME = "drift_reference.json"
FORMAT_VERSION = 1
_SAMPLE_PREFIX = "drift_reference_sample-"
_SCORES_PREFIX = "drift_reference_scores-"


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
            and (self.n_rows, self.bins, self.n_scores)
            == (other.n_rows, other.bins, other.n_scores)
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
        scores_file, scores_digest = _write_parquet(
            pd.DataFrame({"score": self.scores}), directory, _SCORES_PREFIX
        )
        manifest = {
            "format_version": FORMAT_VERSION,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "categories": {
                c: [json_scalar(v) for v in cats] for c, cats in self.categories.items()
            },
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
        for stale in [
            *directory.glob(f"{_SAMPLE_PREFIX}*.parquet"),
            *directory.glob(f"{_SCORES_PREFIX}*.parquet"),
        ]:
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
            raise DriftError(
                f"{path}: corrupt drift reference manifest ({exc}); rebuild the reference"
            ) from exc
        if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
            found = doc.get("format_version") if isinstance(doc, dict) else type(doc).__name__
            raise DriftError(
                f"{path}: drift reference format {found!r}, expected {FORMAT_VERSION}; rebuild it"
            )
        try:
            numeric = [str(c) for c in doc["numeric"]]
            categorical = [str(c) for c in doc["categorical"]]
            sample = _read_parquet(directory, doc["files"]["sample"], path)
            scores = _read_parquet(directory, doc["files"]["scores"], path)["score"].to_numpy(
                dtype=np.float64
            )
            reference = cls(
                numeric=numeric,
                categorical=categorical,
                sample=sample,
                edges={c: np.asarray(doc["edges"][c], dtype=np.float64) for c in numeric},
                proportions={
                    c: np.asarray(doc["proportions"][c], dtype=np.float64)
                    for c in numeric + categorical
                },
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
            raise DriftError(
                f"{path}: corrupt drift reference manifest, cannot read {exc!r}; rebuild it"
            ) from exc
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
        raise FileNotFoundError(
            f"{file}: missing, but named by the drift reference manifest {manifest}; rebuild it"
        )
    data = file.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise DriftError(
            f"{file}: content does not match its SHA-256 in {manifest} (corrupt); rebuild the reference"
        )
    try:
        return pd.read_parquet(file)
    except Exception as exc:
        raise DriftError(
            f"{file}: unreadable Parquet ({exc}); rebuild the drift reference"
        ) from exc


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
        raise DriftError(
            f"feature column(s) {overlap or features} listed more than once (numeric and categorical)"
        )
    if not 0.0 < expected_alert_rate < 1.0:
        raise DriftError(
            f"expected_alert_rate must be in (0, 1) (the detector's contamination), got {expected_alert_rate}"
        )
    if sample_rows < 1 or bins < 1:
        raise DriftError(
            f"sample_rows and bins must be at least 1, got sample_rows={sample_rows}, bins={bins}"
        )
    require_columns(frame, features, "reference frame")
    if len(frame) == 0:
        raise DriftError(
            "the reference frame is empty (0 rows): a drift reference needs the training rows"
        )
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0 or not np.isfinite(scores).all():
        raise DriftError(
            f"reference scores must be non-empty and finite (got {scores.size} scores, "
            f"{int((~np.isfinite(scores)).sum())} non-finite)"
        )

    edges, proportions, categories = {}, {}, {}
    columns: dict[str, Any] = {}
    for column in numeric:
        values = numeric_values(frame, column, "reference frame")
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise DriftError(
                f"numeric feature column {column!r} of the reference frame has no finite values"
            )
        edges[column] = quantile_edges(finite, bins)
        proportions[column] = shares(bucket_counts(values, edges[column]))
        columns[column] = values
    for column in categorical:
        counts = frame[column].value_counts(dropna=True)
        if counts.empty:
            raise DriftError(
                f"categorical feature column {column!r} of the reference frame has no values"
            )
        categories[column] = [json_scalar(v) for v in counts.index]
        proportions[column] = shares(category_counts(frame[column], categories[column]))
        columns[column] = frame[column].to_numpy()

    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(len(frame), size=min(sample_rows, len(frame)), replace=False))
    sample = pd.DataFrame({c: columns[c][rows] for c in features})
    kept = (
        np.sort(rng.choice(scores, size=MAX_REFERENCE_SCORES, replace=False))
        if scores.size > MAX_REFERENCE_SCORES
        else np.sort(scores)
    )
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
        score_proportions=shares(bucket_counts(scores, score_edges)),
        bins=bins,
        n_scores=int(scores.size),
    )


#: the champion's derivation, stored beside its drift reference (JSON)
DERIVATION_FILE = "derivation.json"


def save_derivation(directory: Path, derivation: Any) -> None:
    """Store the champion's :class:`~pynomaly_core.features.derived.Derivation` (or its absence)
    beside its reference, so a day's drift derives its columns exactly as the champion did, even
    after the feed file changes."""
    from pynomaly_core.storage import atomic_write_text

    payload = derivation.to_dict() if derivation is not None else None
    atomic_write_text(Path(directory) / DERIVATION_FILE, json.dumps(payload))


def load_derivation(directory: Path) -> Any:
    """The derivation :func:`save_derivation` stored (None: none stored, or the champion has none)."""
    from pynomaly_core.features.derived import Derivation

    path = Path(directory) / DERIVATION_FILE
    if not path.exists():
        return None
    payload = json.loads(path.read_text())
    return Derivation.from_dict(payload) if payload else None
