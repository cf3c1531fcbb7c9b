"""What a sequence-aware detector promises, and what a caller must do for it.

Most detectors score each row on its own, so the order of the rows does not matter. A
*sequence-aware* detector (the window autoencoders ``ConvAE`` and ``LSTMAE``, see
:mod:`pynomaly_core.detectors.deep.window_models`) treats the rows of ``X`` as consecutive
time steps of ONE series, and a row's score depends on the rows before it:

* the class declares ``sequence_aware = True`` and the instance has an int ``window_size``;
* a row's score is the reconstruction error of the window of ``window_size`` rows ENDING at
  that row, so a score never looks ahead of its row;
* the first ``window_size - 1`` rows of a call have fewer predecessors than the window needs;
  their window is left-padded by repeating the call's first row (edge padding). A caller that
  scores a partition of a longer series therefore passes the ``window_size - 1`` rows before
  the partition first (:func:`warmup_rows`) and drops their scores, so a day scored alone
  equals the same day scored inside a long run, row for row;
* rows must be in time order, one entity (series) at a time: rows of two machines
  interleaved are read as one series jumping between them.

Everything here is plain Python: it tells the model pipeline what to do without importing
torch (reading a class attribute, never fitting anything). The pipeline does it in
:class:`pynomaly_core.model.AnomalyModel` when the model has a
:class:`~pynomaly_core.model.SeriesOrder` (every model the lifecycle trains has the feed's event
time and entity): it fits on the rows sorted by event time, entity after entity; it scores each
entity on its own, in time order, after the previous rows that
:meth:`~pynomaly_core.model.AnomalyModel.history_tail` cut (the derived features' look-back plus
``window_size - 1`` rows); and it returns the scores aligned to the rows as given. The scoring
asset reads that tail from the previous validated partitions and chunked scoring
(:func:`pynomaly_core.streaming.score_parquet`) hands each chunk the tail of the one before, so a
day scored alone equals the same day inside a long run. Training windows are fitted as one
series per call, entity blocks one after the other: the ``window_size - 1`` windows at each
entity boundary span two entities during training only (the training scores that set the
threshold are computed per entity). A time-aware feed (``entity`` or ``derived`` section) gets
ConvAE and LSTMAE in its default portfolio
(:data:`pynomaly_core.lifecycle.candidates.SEQUENCE_CANDIDATE_PARAMS`). A model built without a
``SeriesOrder`` reads the rows as given, first rows edge-padded.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any

from pynomaly_core.detectors.base import DetectorError

#: class attribute that marks a sequence-aware detector
SEQUENCE_AWARE = "sequence_aware"


def is_sequence_aware(detector: Any) -> bool:
    """Whether ``detector`` (an instance or a class) scores rows as a time-ordered series."""
    return bool(getattr(detector, SEQUENCE_AWARE, False))


def warmup_rows(detector: Any) -> int:
    """Rows of history a sequence-aware ``detector`` needs before the first row it scores.

    ``window_size - 1`` for a sequence-aware detector (its ``window_size`` parameter; for a class,
    the constructor's default), 0 for a row-wise one. The caller prepends that many previous rows of the same entity, in time
    order, and discards their scores.
    """
    if not is_sequence_aware(detector):
        return 0
    if isinstance(detector, type):  # a class: its constructor's default window
        size = inspect.signature(detector).parameters["window_size"].default
    else:
        size = getattr(detector, "window_size", None)
    owner = detector.__name__ if isinstance(detector, type) else type(detector).__name__
    check_window_size(owner, size)
    return int(size) - 1


def sequence_aware_names(*, installed_only: bool = True) -> list[str]:
    """Registry names of the sequence-aware detectors (for a time-aware feed's candidates).

    Reads the class attribute of each entry's target; importing the window detectors' module
    does not import torch.
    """
    from pynomaly_core.detectors.registry import available
    from pynomaly_core.detectors.targets import import_target

    return [
        spec.name
        for spec in available(installed_only=installed_only)
        if is_sequence_aware(import_target(spec.target))
    ]


def check_window_size(owner: str, value: Any) -> None:
    """``window_size`` must be an int >= 2 (a window of one row is a row-wise detector)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
        raise DetectorError(
            f"{owner}: window_size must be an int >= 2 (rows per window, the row itself and the "
            f"rows before it), got {value!r}."
        )
