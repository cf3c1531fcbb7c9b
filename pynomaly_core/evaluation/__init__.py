"""Evaluating detectors: synthetic anomalies, label-free model selection, paired comparisons.

* :mod:`~pynomaly_core.evaluation.synthetic` — ADBench-style synthetic anomalies relative
  to reference data (arrays or frames);
* :mod:`~pynomaly_core.evaluation.labelfree` — label-free evidence per candidate detector
  and the selection rule used by the ``auto`` detector;
* :mod:`~pynomaly_core.evaluation.compare` — metrics on labelled rows and a stratified
  paired bootstrap to compare two detectors.
"""

from pynomaly_core.evaluation.compare import ComparisonResult, metrics, paired_bootstrap
from pynomaly_core.evaluation.labelfree import label_free_evidence, select, select_top
from pynomaly_core.evaluation.synthetic import KINDS, inject_anomalies, inject_frame

__all__ = [
    "KINDS",
    "ComparisonResult",
    "inject_anomalies",
    "inject_frame",
    "label_free_evidence",
    "metrics",
    "paired_bootstrap",
    "select",
    "select_top",
]
