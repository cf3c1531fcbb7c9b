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

Whether that drift fails the ``drift_within_bounds`` check is decided by :func:`judge`
(a :class:`DriftVerdict`); the alert-rate and score KS tests are what the performance
check reads too (:func:`health_measurements`), so they are computed once per partition.

What counts as "too different" is learned per feed: :func:`build_normal_days` measures, for
every day of the champion's training window and out of sample, the same statistics a scored
day gets (:class:`NormalDays`), and both checks hold a day to the range those normal days
span (:class:`NormalRanges`), keeping the fixed cut-offs only as the fallback of a reference
with too few days. With such a profile the score PSI and KS compare the day's normalized
scores with the pooled out-of-fold scores of the reference days.

The package's modules: :mod:`~pynomaly_core.drift.binning` (buckets and PSI),
:mod:`~pynomaly_core.drift.reference` (the reference, its files),
:mod:`~pynomaly_core.drift.normal` (the normal-day profile and its limits),
:mod:`~pynomaly_core.drift.report` (Evidently and the report) and
:mod:`~pynomaly_core.drift.verdict` (the rule). Evidently is imported only inside
:func:`drift_report` and :func:`evidently_drift` (``pip install 'pynomaly[monitoring]'``).
"""

from pynomaly_core.drift.binning import (
    PSI_EPSILON,
    DriftError,
    bucket_counts,
    category_counts,
    psi,
    quantile_edges,
)
from pynomaly_core.drift.normal import (
    NormalDays,
    NormalRange,
    NormalRanges,
    build_normal_days,
    normalized_scores,
)
from pynomaly_core.drift.reference import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    MAX_REFERENCE_SCORES,
    DriftReference,
    build_reference,
)
from pynomaly_core.drift.report import (
    HEALTH_KEYS,
    DriftResult,
    drift_report,
    evidently_drift,
    health_measurements,
    parse_snapshot,
)
from pynomaly_core.drift.verdict import DriftVerdict, judge

__all__ = [
    "FORMAT_VERSION",
    "HEALTH_KEYS",
    "MANIFEST_NAME",
    "MAX_REFERENCE_SCORES",
    "PSI_EPSILON",
    "DriftError",
    "DriftReference",
    "DriftResult",
    "DriftVerdict",
    "NormalDays",
    "NormalRange",
    "NormalRanges",
    "bucket_counts",
    "build_normal_days",
    "build_reference",
    "category_counts",
    "drift_report",
    "evidently_drift",
    "health_measurements",
    "judge",
    "normalized_scores",
    "parse_snapshot",
    "psi",
    "quantile_edges",
]
