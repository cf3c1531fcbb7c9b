"""A feed's normal day-to-day variability: what the monitoring checks compare a scored day with.

Fixed cut-offs (a PSI of 0.25, an alert rate five times the contamination) say how different
a day may be from the training data *in general*. A real series is not stationary: its level
moves from day to day, weekends differ from weekdays, a busy day has a wider spread. On such a
feed every normal day crosses a fixed cut-off (measured on a real 5-minute temperature series:
``drift_within_bounds`` failed on 160 of 160 scored days). So the reference of a champion also
records how different a *normal* day is, per statistic the checks judge, and the checks compare
a day with that.

**How it is measured** (:func:`build_normal_days`). The champion's training window is split
into its UTC days, the *reference days*. Every reference day is measured the way a new day is
measured later, out of sample:

* the days are cut into ``folds`` contiguous blocks (blocked cross-fitting); a fresh model with
  the champion's configuration (detector, parameters, contamination, scaling, seed) is fitted on
  the other blocks and scores the block's days, so no day is scored by a model that saw it,
  exactly as the champion scores a day after its window;
* ``psi:<feature>`` — PSI of the day's values against the *other* reference days (buckets
  learned on them: leave one day out), as a scored day's PSI is against the reference;
* ``score_psi``, ``score_ks`` — the day's out-of-fold scores against the other days'
  out-of-fold scores (leave one day out). Scores of different models are compared on the
  *normalized* scale (the share of the model's own training scores below a score,
  :attr:`AnomalyModel.quantiles_`): it is monotone in the raw score, so PSI and KS of one model
  are unchanged by it, and it puts the fold models and the champion on one scale. A scored day's
  normalized scores are then compared with the pooled out-of-fold scores of all reference days
  (:attr:`NormalDays.scores`) — many normal days instead of the single held-out day;
* ``alert_rate`` — the share of the day's rows above the fold model's threshold;
* ``canary_recall`` — recall on canaries injected into the day
  (:class:`pynomaly_core.evaluation.health.Canaries`, the recipe the performance check uses).

Days of the week differ and are all in a window of at least a week (``monitoring.normal_min_days``,
7 by default); seasonality within a day is inside every day's statistics. Days with fewer than
half the median day's rows (a partial first or last day) still train the fold models but are not
measured: a few rows give a PSI that says nothing about a normal day.

**The rule** (:meth:`NormalDays.ranges`). For a statistic where higher is worse, the *normal*
value is the ``normal_quantile`` (0.95) of the reference days and the limit is ``normal_margin``
(1.5) times that, never below a floor (PSI 0.1 — the conventional "no significant change" — and
twice the contamination for the alert rate: a day flagging at most that much is never a
degradation); for canary recall (lower is worse) the normal value is the ``1 - normal_quantile``
quantile and the limit that divided by the margin, or ``canary_recall_tolerance`` below it if
that is lower (a recall measured on a day's few hundred canary rows moves by a few points by
chance: a drop smaller than the tolerance is never material). Why a quantile and not a z-score: the
statistics are skewed and bounded (PSI, rates, recall), a day's PSI across normal days spans an
order of magnitude, and with 7 to 30 reference days a mean and a standard deviation (or a
median absolute deviation on a log scale) describe that tail worse than the days themselves do.
Why a margin: the next days lie further from the reference than the reference days from each
other (the series keeps moving), and the union of several statistics would otherwise fail more
days than each one alone.

**A young feed** (:func:`least_days`). With fewer measured reference days than
``normal_min_days`` but at least ``normal_provisional_days`` (3), the profile is *provisional*:
a statistic's normal value is the largest (for canary recall the smallest) of the days rather
than a quantile, the conservative order statistic when the days are too few to estimate a tail
(a new normal day exceeds the largest of *n* exchangeable ones with probability 1/(n+1) before
the margin), and every check says the profile is provisional and on how many days. Without it a
first champion trained on a week that starts mid-day (six whole days) fell back to the fixed
cut-offs, and on NAB ``ec2_cpu_utilization_5f5533`` Evidently's per-column test called its single
feature drifted on every day the first champion scored, its own training days included. With
fewer than ``normal_provisional_days`` measured days (or ``normal_folds: 0``) there is no profile
and the checks use their fixed cut-offs, saying so.

Stored beside the drift reference (:meth:`NormalDays.save`: a JSON manifest, the per-day table
and the pooled scores as Parquet, digests checked on load).

Derived features (a feed's ``derived`` section) and sequence-aware detectors: the fold models
are built with the champion's derivation and series order (:func:`_unfitted_copy`); a scored
reference day gets the rows before it as warm-up
(:meth:`~pynomaly_core.model.AnomalyModel.history_tail`), as a scored day does; and
``psi:<column>`` covers the derived columns that ``numeric`` names, computed with the champion's
derivation over the whole window in time order (the values the long run has, each from past rows
only). A fold's training rows are the window minus a block of days: the first rows after the
block see the rows before it as their look-back (a gap of a few rows in a long fit). Canaries go
in through the raw feature columns and the model's scoring call
(:func:`pynomaly_core.evaluation.health.series_canary_recall`).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd

from pynomaly_core.drift.binning import (
    DriftError,
    bucket_counts,
    category_counts,
    numeric_values,
    psi,
    quantile_edges,
    require_columns,
    shares,
)
from pynomaly_core.drift.reference import MAX_REFERENCE_SCORES, _read_parquet, _write_parquet
from pynomaly_core.storage import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from pynomaly_core.data.config import FeedConfig
    from pynomaly_core.data.settings import MonitoringSettings
    from pynomaly_core.evaluation.health import Canaries
    from pynomaly_core.model import AnomalyModel

_LOG = logging.getLogger(__name__)

NORMAL_MANIFEST = "normal_days.json"
NORMAL_FORMAT_VERSION = 1
_TABLE_PREFIX = "normal_days-"
_SCORES_PREFIX = "normal_scores-"
#: PSI below this is conventionally "no significant change": no limit is set lower
PSI_FLOOR = 0.1
#: an alert-rate limit is never below this multiple of the contamination
ALERT_RATE_FLOOR_RATIO = 2.0
#: a reference day with fewer rows than this share of the median day is not measured
MIN_DAY_SHARE = 0.5
#: ... nor with fewer rows than this
MIN_DAY_ROWS = 10
#: per-day statistics recorded besides one ``psi:<feature>`` column per feature
DAY_STATISTICS = ("score_psi", "score_ks", "alert_rate", "canary_recall")

Direction = Literal["above", "below"]


# ------------------------------------------------------------------------------ ranges
def least_days(settings: MonitoringSettings) -> int:
    """Fewest measured reference days any profile (full or provisional) is built from."""
    return max(2, min(settings.normal_provisional_days, settings.normal_min_days))


@dataclass(frozen=True)
class NormalRange:
    """How far one statistic goes on normal reference days, and the limit a scored day is held to."""

    statistic: str
    label: str
    direction: Direction  # "above": higher is worse; "below": lower is worse
    normal: float
    limit: float
    quantile: float
    days: int
    floored: bool = False
    provisional: bool = False
    """Fewer days than ``monitoring.normal_min_days``: ``normal`` is the extreme day, not a quantile."""

    def beyond(self, value: float) -> bool:
        """Whether ``value`` lies past the limit (NaN never does: an unmeasured value is not judged)."""
        if not np.isfinite(value):
            return False
        return value > self.limit if self.direction == "above" else value < self.limit

    def describe(self, value: float) -> str:
        """``"alert rate 0.0417 vs normal up to 0.0208 (reference days p95 of 20), limit 0.0312"``."""
        way = "up to" if self.direction == "above" else "down to"
        pct = (self.quantile if self.direction == "above" else 1.0 - self.quantile) * 100
        bound = (
            " (floor)"
            if self.direction == "above"
            else " (monitoring.canary_recall_tolerance below normal)"
        )
        limit = f"limit {self.limit:.3g}" + (bound if self.floored else "")
        basis = (
            f"{'largest' if self.direction == 'above' else 'smallest'} of {self.days} reference days, provisional"
            if self.provisional
            else f"reference days p{pct:.0f} of {self.days}"
        )
        return f"{self.label} {value:.3g} vs normal {way} {self.normal:.3g} ({basis}), {limit}"


@dataclass
class NormalRanges:
    """The limits of every judged statistic, or why there are none (then the fixed cut-offs apply)."""

    ranges: dict[str, NormalRange] = field(default_factory=dict)
    days: int = 0
    reason: str | None = None
    provisional: bool = False
    """Built from fewer days than ``monitoring.normal_min_days`` (see :func:`least_days`)."""
    min_days: int = 0
    """``monitoring.normal_min_days`` when the ranges were made."""

    @property
    def calibrated(self) -> bool:
        return self.reason is None

    def describe(self) -> str:
        """``built`` / ``provisional (6 days < monitoring.normal_min_days 7)`` / ``fixed cut-offs: <reason>``."""
        if not self.calibrated:
            return f"fixed cut-offs: {self.reason}"
        if self.provisional:
            return f"provisional ({self.days} days < monitoring.normal_min_days {self.min_days})"
        return "built"

    @classmethod
    def fixed(cls, reason: str) -> NormalRanges:
        return cls(reason=reason)

    def get(self, statistic: str) -> NormalRange | None:
        return self.ranges.get(statistic) if self.calibrated else None

    def limits(self) -> dict[str, float]:
        """``{statistic}_limit`` per range, for metadata and summaries."""
        return {f"{name.replace(':', '_')}_limit": r.limit for name, r in self.ranges.items()}


def _range(
    statistic: str,
    label: str,
    values: np.ndarray,
    direction: Direction,
    settings: MonitoringSettings,
    floor: float | None,
) -> NormalRange | None:
    values = values[np.isfinite(values)]
    if len(values) < least_days(settings):
        return None
    provisional = len(values) < settings.normal_min_days
    q = 1.0 if provisional else settings.normal_quantile  # the extreme day when the days are few
    if direction == "above":
        normal = float(np.quantile(values, q))
        limit = normal * settings.normal_margin
        floored = floor is not None and limit < floor
        limit = max(limit, floor) if floor is not None else limit
    else:  # canary recall: a drop must also exceed canary_recall_tolerance, or it is estimation noise
        normal = float(np.quantile(values, 1.0 - q))
        by_margin, by_tolerance = (
            normal / settings.normal_margin,
            normal - settings.canary_recall_tolerance,
        )
        limit, floored = min(by_margin, by_tolerance), by_tolerance < by_margin
    return NormalRange(
        statistic,
        label,
        direction,
        normal,
        float(limit),
        q,
        len(values),
        bool(floored),
        provisional,
    )


# ------------------------------------------------------------------------------ the profile
@dataclass(eq=False)
class NormalDays:
    """Per reference day, the statistics the checks judge, measured out of sample; see the module docstring.

    ``table`` has one row per measured day (``day``, ``rows``, ``fold``, one ``psi:<feature>``
    column per feature, then :data:`DAY_STATISTICS`); ``scores`` is a sorted sample of the
    pooled out-of-fold normalized scores, ``score_edges`` / ``score_proportions`` their PSI
    buckets. ``reason`` says why there is no profile (too few days, cross-fitting disabled
    or failed); then ``table`` is empty.
    """

    table: pd.DataFrame
    scores: np.ndarray
    score_edges: np.ndarray
    score_proportions: np.ndarray
    features: list[str]
    expected_alert_rate: float
    folds: int = 0
    canaries: str | None = None
    window_days: int = 0
    skipped_days: list[str] = field(default_factory=list)
    reason: str | None = None
    seconds: float = 0.0

    @property
    def built(self) -> bool:
        return self.reason is None and len(self.table) > 0

    @classmethod
    def unavailable(
        cls,
        reason: str,
        features: list[str],
        expected_alert_rate: float,
        window_days: int = 0,
        folds: int = 0,
    ) -> NormalDays:
        empty = np.empty(0)
        return cls(
            pd.DataFrame(),
            empty,
            empty,
            empty,
            list(features),
            float(expected_alert_rate),
            folds=folds,
            window_days=window_days,
            reason=reason,
        )

    def ranges(self, settings: MonitoringSettings) -> NormalRanges:
        """The limits under the feed's current ``monitoring`` settings (so a changed setting needs no retrain)."""
        if not self.built:
            return NormalRanges.fixed(self.reason or "no normal-day profile")
        if settings.normal_folds == 0:
            return NormalRanges.fixed("monitoring.normal_folds is 0 (no normal-day profile)")
        days = len(self.table)
        if days < least_days(settings):
            return NormalRanges.fixed(
                f"only {days} measured reference day(s) < monitoring.normal_provisional_days="
                f"{least_days(settings)}"
            )
        out: dict[str, NormalRange] = {}
        for name in self.features:
            column = f"psi:{name}"
            r = _range(
                column,
                f"PSI of {name}",
                self.table[column].to_numpy(dtype=float),
                "above",
                settings,
                PSI_FLOOR,
            )
            if r is not None:
                out[column] = r
        specs: tuple[tuple[str, str, Direction, float | None], ...] = (
            ("score_psi", "anomaly-score PSI", "above", PSI_FLOOR),
            (
                "alert_rate",
                "alert rate",
                "above",
                ALERT_RATE_FLOOR_RATIO * self.expected_alert_rate,
            ),
            ("canary_recall", "canary recall", "below", None),
        )
        for name, label, direction, floor in specs:
            r = _range(
                name, label, self.table[name].to_numpy(dtype=float), direction, settings, floor
            )
            if r is not None:
                out[name] = r
        return NormalRanges(
            out,
            days=days,
            provisional=days < settings.normal_min_days,
            min_days=settings.normal_min_days,
        )

    # -------------------------------------------------------------- persistence
    def save(self, directory: Path) -> Path:
        """Write the profile into ``directory`` (beside the drift reference); return the manifest's path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files: dict[str, Any] = {}
        if self.built:
            table_file, table_digest = _write_parquet(self.table, directory, _TABLE_PREFIX)
            scores_file, scores_digest = _write_parquet(
                pd.DataFrame({"score": self.scores}), directory, _SCORES_PREFIX
            )
            files = {
                "table": {"name": table_file, "sha256": table_digest},
                "scores": {"name": scores_file, "sha256": scores_digest},
            }
        manifest = {
            "format_version": NORMAL_FORMAT_VERSION,
            "features": self.features,
            "expected_alert_rate": self.expected_alert_rate,
            "folds": self.folds,
            "canaries": self.canaries,
            "window_days": self.window_days,
            "measured_days": len(self.table),
            "skipped_days": self.skipped_days,
            "reason": self.reason,
            "seconds": self.seconds,
            "score_edges": self.score_edges.tolist(),
            "score_proportions": self.score_proportions.tolist(),
            "files": files,
        }
        path = directory / NORMAL_MANIFEST
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
        keep = {f["name"] for f in files.values()}
        for stale in [
            *directory.glob(f"{_TABLE_PREFIX}*.parquet"),
            *directory.glob(f"{_SCORES_PREFIX}*.parquet"),
        ]:
            if stale.name not in keep:
                stale.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, directory: Path) -> NormalDays | None:
        """The profile saved in ``directory``; None when there is none (a reference built before profiles existed)."""
        directory = Path(directory)
        path = directory / NORMAL_MANIFEST
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DriftError(
                f"{path}: corrupt normal-day profile ({exc}); rebuild the monitoring reference"
            ) from exc
        if not isinstance(doc, dict) or doc.get("format_version") != NORMAL_FORMAT_VERSION:
            found = doc.get("format_version") if isinstance(doc, dict) else type(doc).__name__
            raise DriftError(
                f"{path}: normal-day profile format {found!r}, expected {NORMAL_FORMAT_VERSION}; "
                "rebuild the monitoring reference"
            )
        try:
            features = [str(c) for c in doc["features"]]
            files = doc["files"]
            table = _read_parquet(directory, files["table"], path) if files else pd.DataFrame()
            scores = (
                _read_parquet(directory, files["scores"], path)["score"].to_numpy(dtype=np.float64)
                if files
                else np.empty(0)
            )
            profile = cls(
                table=table,
                scores=scores,
                score_edges=np.asarray(doc["score_edges"], dtype=np.float64),
                score_proportions=np.asarray(doc["score_proportions"], dtype=np.float64),
                features=features,
                expected_alert_rate=float(doc["expected_alert_rate"]),
                folds=int(doc["folds"]),
                canaries=doc.get("canaries"),
                window_days=int(doc["window_days"]),
                skipped_days=[str(d) for d in doc["skipped_days"]],
                reason=doc.get("reason"),
                seconds=float(doc.get("seconds", 0.0)),
            )
        except DriftError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftError(
                f"{path}: corrupt normal-day profile, cannot read {exc!r}; "
                "rebuild the monitoring reference"
            ) from exc
        expected = {"day", "rows", "fold", *DAY_STATISTICS, *(f"psi:{c}" for c in features)}
        if profile.built and not expected <= set(table.columns):
            raise DriftError(
                f"{path}: the per-day table lacks {sorted(expected - set(table.columns))}; "
                "rebuild the monitoring reference"
            )
        return profile


# ------------------------------------------------------------------------------ building
def _unfitted_copy(model: AnomalyModel) -> AnomalyModel:
    """A new, unfitted model with ``model``'s configuration: what a fold fits in its place."""
    from pynomaly_core.model import AnomalyModel

    return AnomalyModel(
        model.features,
        detector=model.detector,
        contamination=model.contamination,
        params=dict(model.params),
        random_state=model.random_state,
        scaling=model.scaling,
        severity_cutoffs=model.severity_cutoffs,
        derivation=getattr(model, "derivation", None),
        series=getattr(model, "series", None),
    )


def _warm(model: AnomalyModel, window: pd.DataFrame, day: str) -> pd.DataFrame | None:
    """The rows of ``window`` before ``day`` that ``model`` needs as warm-up (None: none)."""
    if not getattr(model, "needs_history", False):
        return None
    # history_tail keeps the rows before the day only
    return model.history_tail(window, pd.Timestamp(str(day), tz="UTC"))


def derived_columns(model: AnomalyModel, numeric: list[str]) -> list[str]:
    """The columns of ``numeric`` that ``model``'s derivation computes (not in the feed's rows)."""
    derivation = getattr(model, "derivation", None)
    names = set(derivation.derived_names) if derivation is not None else set()
    return [c for c in numeric if c in names]


def normalized_scores(model: AnomalyModel, scores: np.ndarray) -> np.ndarray:
    """Raw ``scores`` of ``model`` as the share of its training scores below them (``normalized_score``)."""
    from pynomaly_core.model import QUANTILE_LEVELS

    return cast(
        "np.ndarray", np.interp(np.asarray(scores, dtype=float), model.quantiles_, QUANTILE_LEVELS)
    )


def _feature_psi(
    values: dict[str, Any],
    day_rows: np.ndarray,
    numeric: list[str],
    categorical: list[str],
    bins: int,
) -> dict[str, float]:
    """PSI of each feature on the rows ``day_rows`` against all the other rows (buckets learned on those)."""
    out = {}
    for column in numeric:
        day, rest = values[column][day_rows], values[column][~day_rows]
        finite = rest[np.isfinite(rest)]
        if finite.size == 0 or day.size == 0:
            out[f"psi:{column}"] = float("nan")
            continue
        edges = quantile_edges(finite, bins)
        out[f"psi:{column}"] = psi(
            shares(bucket_counts(rest, edges)), shares(bucket_counts(day, edges))
        )
    for column in categorical:
        day, rest = values[column][day_rows], values[column][~day_rows]
        categories = list(rest.dropna().value_counts().index)
        out[f"psi:{column}"] = psi(
            shares(category_counts(rest, categories)), shares(category_counts(day, categories))
        )
    return out


def _score_drift(day: np.ndarray, rest: np.ndarray, bins: int) -> tuple[float, float]:
    from scipy import stats

    if day.size == 0 or rest.size == 0:
        return float("nan"), float("nan")
    edges = quantile_edges(rest, bins)
    return (
        psi(shares(bucket_counts(rest, edges)), shares(bucket_counts(day, edges))),
        float(stats.ks_2samp(day, rest).statistic),
    )


def build_normal_days(
    window: pd.DataFrame,
    feed: FeedConfig,
    model: AnomalyModel,
    *,
    numeric: list[str],
    categorical: list[str],
    canaries: Canaries | None,
    bins: int = 20,
    random_state: int = 0,
) -> NormalDays:
    """Measure the normal day-to-day variability of ``feed`` over the champion's training ``window``.

    ``model`` is the champion; only its configuration is used (fresh copies are fitted per
    fold). ``canaries`` is the recipe the performance check injects (None: no canary recall).
    Returns a profile whose ``reason`` says why it is empty when the window has fewer than
    :func:`least_days` measured days, ``monitoring.normal_folds`` is 0, or a fold's fit failed
    (monitoring then falls back to the fixed cut-offs rather than failing the training run).
    """
    start = time.perf_counter()
    settings = feed.monitoring
    features = [*numeric, *categorical]
    expected = float(feed.detector.contamination)
    derived = derived_columns(model, numeric)
    require_columns(
        window,
        [*(c for c in features if c not in derived), feed.event_time],
        f"training window of feed {feed.name!r}",
    )
    days = pd.to_datetime(window[feed.event_time], utc=True).dt.strftime("%Y-%m-%d").to_numpy()
    unique = sorted(pd.unique(days[pd.notna(days)]))

    def unavailable(reason: str) -> NormalDays:
        return NormalDays.unavailable(
            reason, features, expected, window_days=len(unique), folds=settings.normal_folds
        )

    if settings.normal_folds == 0:
        return unavailable("monitoring.normal_folds is 0 (no normal-day profile)")
    if len(unique) < least_days(settings):
        return unavailable(
            f"the training window has {len(unique)} day(s) < monitoring.normal_provisional_days="
            f"{least_days(settings)}"
        )
    counts = pd.Series(days).value_counts()
    least = max(MIN_DAY_ROWS, MIN_DAY_SHARE * float(counts.median()))
    measured = [d for d in unique if counts[d] >= least]
    skipped = [d for d in unique if counts[d] < least]
    if len(measured) < least_days(settings):
        return unavailable(
            f"only {len(measured)} day(s) of the training window have at least {least:.0f} rows "
            f"(< monitoring.normal_provisional_days={least_days(settings)})"
        )

    folds = min(settings.normal_folds, len(unique))
    blocks = np.array_split(np.array(unique), folds)
    labels = (
        pd.to_numeric(window[feed.label], errors="coerce").fillna(0).astype(int).to_numpy()
        if feed.label is not None and feed.label in window.columns
        else None
    )
    window = window.reset_index(drop=True)
    with_derived = model.derive(window) if derived else window
    values: dict[str, Any] = {
        c: numeric_values(with_derived, c, "training window") for c in numeric
    }
    values.update({c: window[c] for c in categorical})
    oof = np.full(len(window), np.nan)
    per_day: dict[str, dict[str, float]] = {}
    for k, block in enumerate(blocks):
        inside = np.isin(days, block)
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                fold_model = _unfitted_copy(model).fit(
                    window[~inside].reset_index(drop=True),
                    None if labels is None else labels[~inside],
                )
        except Exception as exc:  # noqa: BLE001 - the profile is optional; the reason is shown on every check
            _LOG.warning(
                "feed %s: normal-day profile not built: fold %d (days %s..%s) failed: %s",
                feed.name,
                k,
                block[0],
                block[-1],
                exc,
            )
            return unavailable(
                f"fitting fold {k + 1} of {folds} (days {block[0]}..{block[-1]}) failed: "
                f"{type(exc).__name__}: {exc}"
            )
        for day in block:
            rows = days == day
            frame = window[rows].reset_index(drop=True)
            history = _warm(fold_model, window, day)
            raw = np.asarray(
                fold_model.decision_function(frame)
                if history is None
                else fold_model.decision_function(frame, history),
                dtype=float,
            )
            oof[rows] = normalized_scores(fold_model, raw)
            if day not in measured:
                continue
            seed = random_state + int(day.replace("-", "")) % 10_000
            recall = (
                canaries.recall(fold_model, frame, random_state=seed)
                if canaries is not None
                else float("nan")
            )
            per_day[day] = {
                "fold": k,
                "rows": int(rows.sum()),
                "alert_rate": float(np.mean(raw > fold_model.threshold_)),
                "canary_recall": recall,
            }

    rows_out = []
    for day in measured:
        rows = days == day
        score_psi, score_ks = _score_drift(oof[rows], oof[~rows & np.isfinite(oof)], bins)
        rows_out.append(
            {
                "day": day,
                **per_day[day],
                **_feature_psi(values, rows, numeric, categorical, bins),
                "score_psi": score_psi,
                "score_ks": score_ks,
            }
        )
    table = pd.DataFrame(rows_out)
    table = table[["day", "rows", "fold", *(f"psi:{c}" for c in features), *DAY_STATISTICS]]
    pooled = oof[np.isfinite(oof)]
    edges = quantile_edges(pooled, bins)
    rng = np.random.default_rng(random_state)
    kept = (
        np.sort(rng.choice(pooled, size=MAX_REFERENCE_SCORES, replace=False))
        if pooled.size > MAX_REFERENCE_SCORES
        else np.sort(pooled)
    )
    return NormalDays(
        table=table,
        scores=kept,
        score_edges=edges,
        score_proportions=shares(bucket_counts(pooled, edges)),
        features=features,
        expected_alert_rate=expected,
        folds=folds,
        canaries=canaries.kind if canaries is not None else None,
        window_days=len(unique),
        skipped_days=skipped,
        seconds=time.perf_counter() - start,
    )
