"""The settings sections of a feed (everything but its source, columns and name).

Split from :mod:`pynomaly_core.data.config`, which re-exports every name here: a feed file is
one model, but its many sections — partitioning, derived features, validation, training,
detector, lifecycle, explanations, severity, scoring, monitoring, schedules, retention,
notifications — each with its own validation, read better on their own.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# \Z, not $: "$" also matches before a trailing newline
IDENTIFIER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


class Strict(BaseModel):
    """Settings models: unknown keys are errors (a typo never passes silently), values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Partitioning(Strict):
    """How a feed is cut into partitions (UTC days or hours) and how a range of them is backfilled."""

    start_date: dt.date
    end_offset: int = Field(
        0,
        ge=0,
        description="Partitions (days or hours) after the current one that may be materialized.",
    )
    granularity: Literal["daily", "hourly"] = Field(
        "daily",
        description="One partition per UTC day or per UTC hour (keys 2026-01-01 or 2026-01-01-13:00).",
    )
    max_partitions_per_run: int | None = Field(
        None,
        ge=1,
        description="A backfill of ingest, validation, scoring and export runs this many partitions per "
        "run (default: the whole range in one run).",
    )


_SPAN = re.compile(r"\A\d+\s*(s|sec|min|h|d)\Z")


class DerivedFeature(Strict):
    """One time-aware feature computed from a numeric feature's past rows (per entity).

    ``lag``/``diff`` use ``periods`` rows back; ``rolling_*`` summarize the ``window`` *previous*
    rows (an int: a count of rows; a string such as ``"1h"`` or ``"30min"``: a time span before the
    row), so the current value never describes itself; ``rolling_zscore`` is how many of those
    rows' standard deviations the current value lies from their mean.
    """

    source: str
    kind: Literal[
        "lag", "diff", "rolling_mean", "rolling_std", "rolling_zscore", "rolling_min", "rolling_max"
    ]
    periods: int = Field(1, ge=1, le=10_000)
    window: int | str | None = None
    name: str | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 2 <= value <= 100_000:
            raise ValueError(f"window of {value} rows: use 2..100000 rows")
        if isinstance(value, str) and not _SPAN.match(value.strip()):
            raise ValueError(
                f"window {value!r}: a count of rows (e.g. 12) or a span such as 30min, 1h, 2d"
            )
        return value

    @model_validator(mode="after")
    def _needs_window(self) -> DerivedFeature:
        rolling = self.kind.startswith("rolling_")
        if rolling and self.window is None:
            raise ValueError(
                f"derived feature {self.kind} of {self.source!r} needs a window (rows or a time span)"
            )
        if not rolling and self.window is not None:
            raise ValueError(
                f"derived feature {self.kind} of {self.source!r} takes periods, not a window"
            )
        if self.name is not None and not IDENTIFIER.match(self.name):
            raise ValueError(f"derived feature name {self.name!r} is not a valid identifier")
        return self

    @property
    def column(self) -> str:
        """The derived column's name: ``name``, or ``<source>__<kind>_<periods|window>``."""
        if self.name:
            return self.name
        arg = self.periods if self.window is None else str(self.window).replace(" ", "")
        return f"{self.source}__{self.kind}_{arg}"


def _default_calendar_fields() -> list[Literal["hour", "dayofweek", "month"]]:
    return ["hour", "dayofweek"]


class CalendarFeatures(Strict):
    """Calendar features of the event time (UTC, or ``zone``): hour of day, day of week, month."""

    fields: list[Literal["hour", "dayofweek", "month"]] = Field(
        default_factory=_default_calendar_fields
    )
    #: sin/cos pairs instead of integers, so 23:00 and 00:00 are neighbours
    cyclical: bool = True
    #: IANA zone whose local calendar the features describe (a shop's opening hours are local)
    zone: str = "UTC"

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return iana_zone(value)


def iana_zone(value: str) -> str:
    """``value`` when it names an IANA time zone, else a ValueError that says so."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin)"
        ) from None
    return value


class DerivedSettings(Strict):
    """Time-aware features of a feed; see docs/feeds.md."""

    features: list[DerivedFeature] = Field(default_factory=list)
    calendar: CalendarFeatures | None = None
    #: compute lags and windows within each entity (the feed's ``entity`` column); false: across all rows
    per_entity: bool = True

    def names(self) -> list[str]:
        """Names of the derived columns, in order: the declared features, then calendar columns."""
        names = [spec.column for spec in self.features]
        if self.calendar is not None:
            for field in self.calendar.fields:
                names += [f"{field}_sin", f"{field}_cos"] if self.calendar.cyclical else [field]
        return names

    def inputs(self, event_time: str, entity: str | None) -> list[str]:
        """The columns deriving reads: the event time, the entity and every source column."""
        return list(
            dict.fromkeys(c for c in (event_time, entity, *(s.source for s in self.features)) if c)
        )


class ValidationSettings(Strict):
    min_pass_rate: float = Field(0.95, ge=0.0, le=1.0)
    min_rows: int = Field(1, ge=0)
    allow_extra_columns: bool = False


class RetrainWindow(Strict):
    """The days a retrain (``<feed>__retrain``) is fitted on: the champion's reference plus the recent days.

    Only the latest week would forget what normal looked like before a change and flag every
    return to it; only the old window would never learn the change. So a retrain keeps the
    last ``reference_days`` days the current champion was trained on (its reference) and adds
    the latest ``recent_days`` validated days; its holdout is the last of them.
    """

    reference_days: int | None = Field(
        None,
        ge=0,
        le=366,
        description="Last days of the current champion's training window kept in a retrain "
        "(default: training.window_days; 0: none, the recent days only).",
    )
    recent_days: int | None = Field(
        None,
        ge=1,
        le=366,
        description="Latest validated days added to a retrain (default: monitoring.retrain_window_days "
        "when set, else training.window_days).",
    )


class TrainingSettings(Strict):
    window_days: int = Field(14, ge=1, le=366)
    min_rows: int = Field(200, ge=1)
    max_rows: int | None = Field(200_000, ge=1, description="Uniform sample above this size.")
    retrain_window: RetrainWindow = Field(
        default_factory=RetrainWindow,
        description="The days a retrain is fitted on (docs/monitoring.md).",
    )


class DetectorSettings(Strict):
    name: str = "IForest"
    contamination: float = Field(0.01, gt=0.0, le=0.5)
    params: dict[str, Any] = Field(default_factory=dict)
    random_state: int | None = 42
    scaling: Literal["robust", "standard", "minmax", "none"] = "robust"


class LifecycleSettings(Strict):
    """How candidates are trained and a champion is chosen (``docs/model_lifecycle.md``)."""

    candidates: list[str] | None = Field(
        None,
        description="Registry detectors trained as candidates; default: a diverse cheap portfolio "
        "from the registry (plus detector.name).",
    )
    max_candidates: int = Field(5, ge=1, le=20)
    holdout_days: int = Field(
        1, ge=1, description="Last days of the training window held out for evaluation."
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Of the paired bootstrap that promotes a challenger."
    )
    n_boot: int = Field(1000, ge=100, le=20000)
    synthetic_anomalies: int = Field(
        500,
        ge=20,
        description="Synthetic anomalies injected into the holdout when labels are too few.",
    )
    min_labelled_anomalies: int = Field(
        10,
        ge=1,
        description="Fewer confirmed anomalies in the holdout than this: label-free evaluation.",
    )
    min_auc: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="Promotion gate: a champion's ROC-AUC on the evaluation set must reach this.",
    )
    max_regression: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="Promotion gate: a new champion may trail the previous one's average precision by at most this.",
    )
    refit_on_window: bool = Field(
        True,
        description="Refit the candidate the evaluation picked on the whole training window (holdout "
        "included) before it is registered, so a retrain learns the day that triggered it; its p-values "
        "are calibrated on cross-fitted out-of-fold scores (lifecycle.calibration_folds). False: the "
        "registered model is the evaluated one, fitted without the holdout.",
    )
    replace_failing_champion: bool = Field(
        True,
        description="A retrain the retraining sensor launched because the champion failed its checks on "
        "newer days promotes a challenger that is not worse with confidence (the promotion gate still "
        "applies) and was fitted on days after the champion's: at par on the evaluation set, the failed "
        "checks are the evidence. False: the champion is kept unless the challenger is better with confidence.",
    )
    calibration_folds: int = Field(
        5,
        ge=2,
        le=20,
        description="Contiguous blocks of days of the out-of-fold scores a refitted model is calibrated on.",
    )


class ExplanationSettings(Strict):
    top_k: int = Field(
        100, ge=0, description="Top anomalies per partition explained with SHAP (0 = off)."
    )
    method: Literal["auto", "tree", "kernel", "permutation"] = "auto"
    max_background: int = Field(100, ge=10, le=2000)


class SeveritySettings(Strict):
    """p-value cut-offs of the severity levels (see ``pynomaly_core.severity``)."""

    medium: float = Field(0.003, gt=0.0, lt=1.0)
    high: float = Field(0.001, gt=0.0, lt=1.0)
    critical: float = Field(0.0001, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> SeveritySettings:
        if not self.critical <= self.high <= self.medium:
            raise ValueError(
                f"cut-offs must satisfy critical <= high <= medium, got critical={self.critical}, "
                f"high={self.high}, medium={self.medium}"
            )
        return self


class ScoringSettings(Strict):
    chunk_rows: int = Field(
        250_000,
        ge=1_000,
        description="A validated partition with more rows than this is scored in chunks of this many rows "
        "(bounded peak memory).",
    )
    fan_out_rows: int | None = Field(
        None,
        ge=1_000,
        description="Score a partition as chunks of this many rows, each in its own step (Dagster "
        "dynamic outputs), so an executor that runs steps in parallel (multiprocess, celery, k8s) "
        "spreads one partition over processes or machines; the chunks are combined in order into "
        "the same anomaly_scores file. Each chunk is held in memory. Default: off (one step).",
    )
    max_alerts_per_day: int | None = Field(
        None,
        ge=0,
        description="Alert budget: at most this many alerts per day; flagged rows beyond it (the lowest "
        "scores) stay scored and flagged but are not alerts (is_alert false). Default: no budget.",
    )
    max_alert_rate: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Alert budget as a share of the day's rows (rounded up); with max_alerts_per_day "
        "the smaller applies.",
    )


class MonitoringSettings(Strict):
    """Drift, performance checks and the retraining sensor (``docs/monitoring.md``)."""

    drift_sample_rows: int = Field(
        20_000,
        ge=1_000,
        description="Rows of a partition (uniform sample) compared with the reference by Evidently.",
    )
    reference_sample_rows: int = Field(
        5_000, ge=500, description="Reference rows stored per champion for Evidently."
    )
    drift_share_warn: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="drift_within_bounds fails as a warning at this share of drifted features.",
    )
    drift_share_error: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="drift_within_bounds fails as an error at this share of drifted features.",
    )
    score_psi_error: float = Field(
        0.25,
        ge=0.0,
        description="drift_within_bounds also fails as an error when the anomaly-score PSI exceeds this.",
    )
    ap_tolerance_warn: float = Field(
        0.10,
        ge=0.0,
        le=1.0,
        description="performance_not_degraded warns when average precision falls this far below the champion's baseline.",
    )
    ap_tolerance_error: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="performance_not_degraded fails as an error at this drop of average precision.",
    )
    canary_recall_tolerance: float = Field(
        0.15,
        ge=0.0,
        le=1.0,
        description="Label-free: error when recall on injected canary anomalies falls this far below the baseline.",
    )
    alert_rate_max_ratio: float = Field(
        5.0,
        gt=1.0,
        description="Label-free: error when the observed alert rate exceeds the expected one this many times.",
    )
    min_labelled_anomalies: int = Field(
        5,
        ge=1,
        description="A partition with fewer labelled anomalies is judged on label-free health instead.",
    )
    canary_rows: int = Field(
        200, ge=10, description="Synthetic canary anomalies injected per partition."
    )
    canaries: Literal["auto", "series", "tabular"] = Field(
        "auto",
        description="Canary recipe: series (spikes, level shifts, ... injected into the day's series), "
        "tabular (new unusual rows), or auto (series with an entity or derived section or a single numeric feature).",
    )
    normal_folds: int = Field(
        5,
        ge=0,
        le=20,
        description="Cross-fitting folds that measure the normal day-to-day variability over the champion's "
        "training window (0: no profile, fixed cut-offs only).",
    )
    normal_min_days: int = Field(
        7,
        ge=2,
        le=366,
        description="Reference days for a full normal-day profile (a week covers the days of the week); with "
        "fewer, but at least monitoring.normal_provisional_days, the profile is provisional (a statistic's normal "
        "value is the largest of the days).",
    )
    normal_provisional_days: int = Field(
        3,
        ge=2,
        le=366,
        description="Fewest measured reference days a (provisional) normal-day profile is built from; fewer: the "
        "fixed cut-offs apply. Set it to normal_min_days to use the fixed cut-offs below a full profile.",
    )
    normal_quantile: float = Field(
        0.95,
        ge=0.5,
        le=1.0,
        description="Quantile of the reference days that is a statistic's normal value (1 - it for canary recall).",
    )
    normal_margin: float = Field(
        1.5,
        ge=1.0,
        le=100.0,
        description="A day fails past this multiple of the normal value (divided, for canary recall).",
    )
    top_k: int = Field(100, ge=1, description="k of precision@k.")
    retrain_on: Literal["error", "warn"] = Field(
        "error", description="Check-failure severity that makes the sensor retrain."
    )
    retrain_on_drift: bool = Field(
        True, description="A failed drift_within_bounds also triggers a retrain."
    )
    cooldown_hours: float = Field(
        12.0,
        ge=0.0,
        description="Minimum time between two retrains of the feed started by the sensor.",
    )
    retrain_window_days: int | None = Field(
        None,
        ge=1,
        le=366,
        description="Older name of training.retrain_window.recent_days (used when that is unset).",
    )
    sensor_interval_seconds: int = Field(
        60, ge=5, description="How often the daemon evaluates the retraining sensor."
    )
    sensor_running: bool = Field(
        True, description="The retraining sensor starts running (default_status RUNNING)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> MonitoringSettings:
        if self.drift_share_warn > self.drift_share_error:
            raise ValueError(
                f"drift_share_warn ({self.drift_share_warn}) must not exceed drift_share_error "
                f"({self.drift_share_error})"
            )
        if self.ap_tolerance_warn > self.ap_tolerance_error:
            raise ValueError(
                f"ap_tolerance_warn ({self.ap_tolerance_warn}) must not exceed ap_tolerance_error "
                f"({self.ap_tolerance_error})"
            )
        if self.normal_folds == 1:
            raise ValueError(
                "normal_folds: 1 fold leaves no day out of sample; use 0 (no normal-day profile) or "
                "at least 2"
            )
        return self


class RetrySettings(Strict):
    """Step retries of the I/O steps (``raw``, ``validated``, ``anomaly_table``): a warehouse or
    source that restarts or drops a connection fails one attempt, not the run. Each retry waits
    ``delay_seconds`` times 2 per earlier retry, with random jitter (so the steps of many runs
    do not reconnect at once). Errors that retrying cannot fix (bad data, a missing file, a
    failed check) are never retried."""

    max_retries: int = Field(
        3, ge=0, le=20, description="Retries of a failed I/O step (0: no retries)."
    )
    delay_seconds: float = Field(
        2.0, ge=0.0, le=600.0, description="Wait before the first retry; doubled for each next one."
    )
    jitter: bool = Field(True, description="Randomize each wait by up to +/- its length.")


class ScheduleSettings(Strict):
    daily_cron: str = Field(
        "0 1 * * *", description="When the daily job runs (UTC); it processes the previous day."
    )
    daily_running: bool = Field(
        False, description="Start the daily schedule running (default: stopped)."
    )
    hourly_cron: str = Field(
        "10 * * * *",
        description="Hourly feeds (partitioning.granularity: hourly): when the daily job's schedule runs "
        "(UTC); it processes the hour that ended. daily_cron is not used by them.",
    )
    maintenance_cron: str = Field(
        "0 3 * * 1", description="Weekly maintenance (UTC), for the week that ended."
    )
    maintenance_running: bool = Field(
        False, description="Start the weekly maintenance schedule running."
    )
    trigger: Literal["cron", "arrival", "automation"] = Field(
        "cron",
        description="cron: the daily schedule runs each ended day; arrival: <feed>__arrival_sensor "
        "runs a day when its files land or change (csv/parquet sources, local or remote); "
        "automation: declarative automation (<feed>__automation_sensor) materializes raw on "
        "daily_cron and each later stage of a day when its upstream partition updates.",
    )
    arrival_interval_seconds: int = Field(
        60, ge=10, description="How often the arrival sensor lists the source."
    )
    arrival_lookback_days: int = Field(
        3, ge=1, le=366, description="Days (ending today, UTC) the arrival sensor lists each tick."
    )

    @field_validator("daily_cron", "hourly_cron", "maintenance_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(re.fullmatch(r"[0-9*/,\-A-Za-z]+", f) for f in fields):
            raise ValueError(
                f"{value!r} is not a five-field cron expression (minute hour day month weekday)"
            )
        return value


class RetentionSettings(Strict):
    """How long maintenance keeps things (``retention_cleanup``)."""

    anomaly_days: int = Field(365, ge=1, description="Rows of the warehouse table anomaly_scores.")
    quarantine_days: int = Field(90, ge=1, description="Rows of the warehouse table quarantine.")
    notifications_days: int = Field(
        180, ge=1, description="Rows of the warehouse table notifications."
    )
    reports_days: int = Field(
        90, ge=1, description="Drift, quality and maintenance reports on disk."
    )
    frames_days: int = Field(120, ge=1, description="Parquet frames of daily partitions on disk.")
    models_days: int = Field(
        180,
        ge=1,
        description="Model directories of archived versions (never the champion's or challenger's).",
    )


class NotificationSettings(Strict):
    """When the weekly maintenance report notifies (webhook from ``$PYNOMALY_NOTIFY_WEBHOOK_URL``)."""

    max_drift_share: float = Field(0.5, ge=0.0, le=1.0)
    min_quality_success_percent: float = Field(95.0, ge=0.0, le=100.0)
    max_retrains: int = Field(2, ge=0)
    min_average_precision: float = Field(0.3, ge=0.0, le=1.0)
    cooldown_hours: float = Field(24.0, ge=0.0)
    #: the alert sensors (docs/operations.md): run failures and days with critical anomalies
    alerts_running: bool = Field(True, description="Start the alert sensors running.")
    alert_on_run_failure: bool = True
    alert_min_critical_rows: int = Field(
        1, ge=0, description="Critical rows in a scored day that send an alert (0 = never)."
    )
    alert_cooldown_hours: float = Field(
        6.0, ge=0.0, description="At most one alert of a kind per feed within this time."
    )


class FreshnessSettings(Strict):
    """When a day's data must have landed: ``expected_by`` (``HH:MM``, UTC) on the next day."""

    expected_by: str | None = None

    @field_validator("expected_by")
    @classmethod
    def _clock(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f"{value!r} is not a time of day HH:MM (UTC), e.g. 06:00")
        return value

    def deadline_cron(self) -> str | None:
        """The cron of the deadline (``expected_by`` every day)."""
        if self.expected_by is None:
            return None
        hour, minute = self.expected_by.split(":")
        return f"{int(minute)} {int(hour)} * * *"
