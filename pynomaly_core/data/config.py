"""Feed configuration: one YAML file describes one input table, validated with pydantic.

A feed says where its data comes from, which columns it has and what values are
allowed, how it is partitioned, how the training window is chosen and which
detector to fit. Every error names the file and the key at fault.

Example (``feeds/card_payments.yaml``)::

    name: card_payments
    source:
      kind: csv                       # csv | parquet | sql | demo
      path: landing/payments/{date}/*.csv
    event_time: paid_at
    record_key: payment_id
    label: is_fraud                   # optional ground truth (1 = anomaly)
    features:
      - {name: amount, type: float, min: 0, max: 50000}
      - {name: merchant_category, type: category, allowed: [grocery, travel, online]}
    partitioning: {start_date: "2026-01-01"}
    detector: {name: IForest, contamination: 0.01}
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# \Z, not $: "$" also matches before a trailing newline
IDENTIFIER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
#: an environment-variable reference: $NAME or ${NAME}
_ENV_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
FEEDS_DIR_ENV = "PYNOMALY_FEEDS_DIR"  # read by the code location; quoted in errors


class FeedConfigError(ValueError):
    """A feed file is missing, unreadable or invalid; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvSource(_Strict):
    """Files with one partition per day: ``path`` must contain ``{date}`` (YYYY-MM-DD)."""

    kind: Literal["csv"]
    path: str = Field(description="Path or glob with a {date} placeholder, relative to the feed file.")
    delimiter: str = ","
    encoding: str = "utf-8"

    @field_validator("path")
    @classmethod
    def _has_date(cls, value: str) -> str:
        if "{date}" not in value:
            raise ValueError(
                "must contain the placeholder {date} (e.g. landing/telemetry/{date}.csv) so each "
                "daily partition reads only its own files"
            )
        ref = _ENV_REFERENCE.search(value)
        if ref:
            # expanding them would copy secrets into run logs, metadata and check descriptions
            raise ValueError(
                f"environment variables are not expanded in source paths (found ${ref.group(1)}); "
                "write the path literally, relative to the feed file"
            )
        return value


class ParquetSource(CsvSource):
    kind: Literal["parquet"]  # type: ignore[assignment]


#: SQL comments and string literals, where a ``:name`` is not a bind parameter
_SQL_NOT_CODE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.DOTALL)


class SqlSource(_Strict):
    """A query run through SQLAlchemy with the partition window bound as parameters.

    The query must use ``:partition_start`` and ``:partition_end`` (UTC timestamps,
    end exclusive), e.g. ``SELECT * FROM readings WHERE ts >= :partition_start AND
    ts < :partition_end``. The connection URL comes from the environment variable
    named by ``url_env`` so secrets stay out of the file.
    """

    kind: Literal["sql"]
    url_env: str = "PYNOMALY_SOURCE_URL"
    query: str

    @field_validator("query")
    @classmethod
    def _binds_window(cls, value: str) -> str:
        # a bind inside a comment or a string literal binds nothing: the query would read every row
        code = _SQL_NOT_CODE.sub(" ", value)
        missing = [p for p in (":partition_start", ":partition_end") if not re.search(re.escape(p) + r"\b", code)]
        if missing:
            raise ValueError(f"must bind {' and '.join(missing)} so each partition reads only its window")
        return value


class DemoSource(_Strict):
    """The offline demo generator (machine telemetry with labelled anomalies)."""

    kind: Literal["demo"]
    seed: int = 7
    machines: int = Field(6, ge=1, le=200)
    interval_minutes: int = Field(5, ge=1, le=60)
    anomaly_rate: float = Field(0.01, ge=0.0, le=0.2)
    drift_date: dt.date | None = None
    drift_strength: float = Field(1.0, ge=0.0)


Source = Annotated[CsvSource | ParquetSource | SqlSource | DemoSource, Field(discriminator="kind")]


class FeatureSpec(_Strict):
    """One feature column: its type and what values are allowed."""

    name: str
    type: Literal["float", "int", "bool", "category"] = "float"
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None
    nullable: bool = False
    #: personal data: masked wherever Pynomaly copies raw values (quarantine.row_json, failure_value)
    pii: bool = False
    missing: Literal["median", "mean", "zero", "most_frequent"] = "median"

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError(f"{value!r} is not a valid column name (letters, digits, underscore)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min ({self.min}) is greater than max ({self.max})")
        if self.allowed is not None and self.type != "category":
            raise ValueError(f"feature {self.name!r}: 'allowed' only applies to type 'category'")
        if self.type == "category" and (self.min is not None or self.max is not None):
            raise ValueError(f"feature {self.name!r}: min/max do not apply to type 'category'")
        return self


class Partitioning(_Strict):
    start_date: dt.date
    end_offset: int = Field(0, ge=0, description="Partitions after today that may be materialized.")


_DERIVED_KINDS = ("lag", "diff", "rolling_mean", "rolling_std", "rolling_zscore", "rolling_min", "rolling_max")
_SPAN = re.compile(r"\A\d+\s*(s|sec|min|h|d)\Z")


class DerivedFeature(_Strict):
    """One time-aware feature computed from a numeric feature's past rows (per entity).

    ``lag``/``diff`` use ``periods`` rows back; ``rolling_*`` summarize the ``window`` *previous*
    rows (an int: a count of rows; a string such as ``"1h"`` or ``"30min"``: a time span before the
    row), so the current value never describes itself; ``rolling_zscore`` is how many of those
    rows' standard deviations the current value lies from their mean.
    """

    source: str
    kind: Literal["lag", "diff", "rolling_mean", "rolling_std", "rolling_zscore", "rolling_min", "rolling_max"]
    periods: int = Field(1, ge=1, le=10_000)
    window: int | str | None = None
    name: str | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 2 <= value <= 100_000:
            raise ValueError(f"window of {value} rows: use 2..100000 rows")
        if isinstance(value, str) and not _SPAN.match(value.strip()):
            raise ValueError(f"window {value!r}: a count of rows (e.g. 12) or a span such as 30min, 1h, 2d")
        return value

    @model_validator(mode="after")
    def _needs_window(self) -> DerivedFeature:
        rolling = self.kind.startswith("rolling_")
        if rolling and self.window is None:
            raise ValueError(f"derived feature {self.kind} of {self.source!r} needs a window (rows or a time span)")
        if not rolling and self.window is not None:
            raise ValueError(f"derived feature {self.kind} of {self.source!r} takes periods, not a window")
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


class CalendarFeatures(_Strict):
    """Calendar features of the event time (UTC, or ``zone``): hour of day, day of week, month."""

    fields: list[Literal["hour", "dayofweek", "month"]] = Field(default_factory=lambda: ["hour", "dayofweek"])
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
        raise ValueError(f"{value!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin)") from None
    return value


class DerivedSettings(_Strict):
    """Time-aware features of a feed; see docs/feeds.md."""

    features: list[DerivedFeature] = Field(default_factory=list)
    calendar: CalendarFeatures | None = None
    #: compute lags and windows within each entity (the feed's ``entity`` column); false: across all rows
    per_entity: bool = True


class ValidationSettings(_Strict):
    min_pass_rate: float = Field(0.95, ge=0.0, le=1.0)
    min_rows: int = Field(1, ge=0)
    allow_extra_columns: bool = False


class RetrainWindow(_Strict):
    """The days a retrain (``<feed>__retrain``) is fitted on: the champion's reference plus the recent days.

    Only the latest week would forget what normal looked like before a change and flag every
    return to it; only the old window would never learn the change. So a retrain keeps the
    last ``reference_days`` days the current champion was trained on (its reference) and adds
    the latest ``recent_days`` validated days; its holdout is the last of them.
    """

    reference_days: int | None = Field(
        None, ge=0, le=366,
        description="Last days of the current champion's training window kept in a retrain "
        "(default: training.window_days; 0: none, the recent days only).",
    )
    recent_days: int | None = Field(
        None, ge=1, le=366,
        description="Latest validated days added to a retrain (default: monitoring.retrain_window_days "
        "when set, else training.window_days).",
    )


class TrainingSettings(_Strict):
    window_days: int = Field(14, ge=1, le=366)
    min_rows: int = Field(200, ge=1)
    max_rows: int | None = Field(200_000, ge=1, description="Uniform sample above this size.")
    retrain_window: RetrainWindow = Field(
        default_factory=RetrainWindow, description="The days a retrain is fitted on (docs/monitoring.md)."
    )


class DetectorSettings(_Strict):
    name: str = "IForest"
    contamination: float = Field(0.01, gt=0.0, le=0.5)
    params: dict[str, Any] = Field(default_factory=dict)
    random_state: int | None = 42
    scaling: Literal["robust", "standard", "minmax", "none"] = "robust"


class LifecycleSettings(_Strict):
    """How candidates are trained and a champion is chosen (``docs/model_lifecycle.md``)."""

    candidates: list[str] | None = Field(
        None,
        description="Registry detectors trained as candidates; default: a diverse cheap portfolio "
        "from the registry (plus detector.name).",
    )
    max_candidates: int = Field(5, ge=1, le=20)
    holdout_days: int = Field(1, ge=1, description="Last days of the training window held out for evaluation.")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Of the paired bootstrap that promotes a challenger.")
    n_boot: int = Field(1000, ge=100, le=20000)
    synthetic_anomalies: int = Field(
        500, ge=20, description="Synthetic anomalies injected into the holdout when labels are too few."
    )
    min_labelled_anomalies: int = Field(
        10, ge=1, description="Fewer confirmed anomalies in the holdout than this: label-free evaluation."
    )
    min_auc: float = Field(
        0.6, ge=0.0, le=1.0, description="Promotion gate: a champion's ROC-AUC on the evaluation set must reach this."
    )
    max_regression: float = Field(
        0.02, ge=0.0, le=1.0,
        description="Promotion gate: a new champion may trail the previous one's average precision by at most this.",
    )


class ExplanationSettings(_Strict):
    top_k: int = Field(100, ge=0, description="Top anomalies per partition explained with SHAP (0 = off).")
    method: Literal["auto", "tree", "kernel", "permutation"] = "auto"
    max_background: int = Field(100, ge=10, le=2000)


class SeveritySettings(_Strict):
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


class ScoringSettings(_Strict):
    chunk_rows: int = Field(
        250_000, ge=1_000,
        description="A validated partition with more rows than this is scored in chunks of this many rows "
        "(bounded peak memory).",
    )


class MonitoringSettings(_Strict):
    """Drift, performance checks and the retraining sensor (``docs/monitoring.md``)."""

    drift_sample_rows: int = Field(
        20_000, ge=1_000, description="Rows of a partition (uniform sample) compared with the reference by Evidently."
    )
    reference_sample_rows: int = Field(5_000, ge=500, description="Reference rows stored per champion for Evidently.")
    drift_share_warn: float = Field(
        0.3, ge=0.0, le=1.0, description="drift_within_bounds fails as a warning at this share of drifted features."
    )
    drift_share_error: float = Field(
        0.5, ge=0.0, le=1.0, description="drift_within_bounds fails as an error at this share of drifted features."
    )
    score_psi_error: float = Field(
        0.25, ge=0.0, description="drift_within_bounds also fails as an error when the anomaly-score PSI exceeds this."
    )
    ap_tolerance_warn: float = Field(
        0.10, ge=0.0, le=1.0,
        description="performance_not_degraded warns when average precision falls this far below the champion's baseline.",
    )
    ap_tolerance_error: float = Field(
        0.25, ge=0.0, le=1.0,
        description="performance_not_degraded fails as an error at this drop of average precision.",
    )
    canary_recall_tolerance: float = Field(
        0.15, ge=0.0, le=1.0,
        description="Label-free: error when recall on injected canary anomalies falls this far below the baseline.",
    )
    alert_rate_max_ratio: float = Field(
        5.0, gt=1.0, description="Label-free: error when the observed alert rate exceeds the expected one this many times.",
    )
    min_labelled_anomalies: int = Field(
        5, ge=1, description="A partition with fewer labelled anomalies is judged on label-free health instead.",
    )
    canary_rows: int = Field(200, ge=10, description="Synthetic canary anomalies injected per partition.")
    canaries: Literal["auto", "series", "tabular"] = Field(
        "auto", description="Canary recipe: series (spikes, level shifts, ... injected into the day's series), "
        "tabular (new unusual rows), or auto (series with an entity or derived section or a single numeric feature).",
    )
    normal_folds: int = Field(
        5, ge=0, le=20,
        description="Cross-fitting folds that measure the normal day-to-day variability over the champion's "
        "training window (0: no profile, fixed cut-offs only).",
    )
    normal_min_days: int = Field(
        7, ge=2, le=366,
        description="Reference days needed to judge against the normal days; fewer: the fixed cut-offs apply.",
    )
    normal_quantile: float = Field(
        0.95, ge=0.5, le=1.0,
        description="Quantile of the reference days that is a statistic's normal value (1 - it for canary recall).",
    )
    normal_margin: float = Field(
        1.5, ge=1.0, le=100.0, description="A day fails past this multiple of the normal value (divided, for canary recall).",
    )
    top_k: int = Field(100, ge=1, description="k of precision@k.")
    retrain_on: Literal["error", "warn"] = Field(
        "error", description="Check-failure severity that makes the sensor retrain."
    )
    retrain_on_drift: bool = Field(True, description="A failed drift_within_bounds also triggers a retrain.")
    cooldown_hours: float = Field(
        12.0, ge=0.0, description="Minimum time between two retrains of the feed started by the sensor."
    )
    retrain_window_days: int | None = Field(
        None, ge=1, le=366, description="Older name of training.retrain_window.recent_days (used when that is unset).",
    )
    sensor_interval_seconds: int = Field(60, ge=5, description="How often the daemon evaluates the retraining sensor.")
    sensor_running: bool = Field(True, description="The retraining sensor starts running (default_status RUNNING).")

    @model_validator(mode="after")
    def _ordered(self) -> MonitoringSettings:
        if self.drift_share_warn > self.drift_share_error:
            raise ValueError(f"drift_share_warn ({self.drift_share_warn}) must not exceed drift_share_error "
                             f"({self.drift_share_error})")
        if self.ap_tolerance_warn > self.ap_tolerance_error:
            raise ValueError(f"ap_tolerance_warn ({self.ap_tolerance_warn}) must not exceed ap_tolerance_error "
                             f"({self.ap_tolerance_error})")
        if self.normal_folds == 1:
            raise ValueError("normal_folds: 1 fold leaves no day out of sample; use 0 (no normal-day profile) or "
                             "at least 2")
        return self


class ScheduleSettings(_Strict):
    daily_cron: str = Field("0 1 * * *", description="When the daily job runs (UTC); it processes the previous day.")
    daily_running: bool = Field(False, description="Start the daily schedule running (default: stopped).")
    maintenance_cron: str = Field("0 3 * * 1", description="Weekly maintenance (UTC), for the week that ended.")
    maintenance_running: bool = Field(False, description="Start the weekly maintenance schedule running.")

    @field_validator("daily_cron", "maintenance_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(re.fullmatch(r"[0-9*/,\-A-Za-z]+", f) for f in fields):
            raise ValueError(f"{value!r} is not a five-field cron expression (minute hour day month weekday)")
        return value


class RetentionSettings(_Strict):
    """How long maintenance keeps things (``retention_cleanup``)."""

    anomaly_days: int = Field(365, ge=1, description="Rows of the warehouse table anomaly_scores.")
    quarantine_days: int = Field(90, ge=1, description="Rows of the warehouse table quarantine.")
    notifications_days: int = Field(180, ge=1, description="Rows of the warehouse table notifications.")
    reports_days: int = Field(90, ge=1, description="Drift, quality and maintenance reports on disk.")
    frames_days: int = Field(120, ge=1, description="Parquet frames of daily partitions on disk.")
    models_days: int = Field(
        180, ge=1, description="Model directories of archived versions (never the champion's or challenger's).",
    )


class NotificationSettings(_Strict):
    """When the weekly maintenance report notifies (webhook from ``$PYNOMALY_NOTIFY_WEBHOOK_URL``)."""

    max_drift_share: float = Field(0.5, ge=0.0, le=1.0)
    min_quality_success_percent: float = Field(95.0, ge=0.0, le=100.0)
    max_retrains: int = Field(2, ge=0)
    min_average_precision: float = Field(0.3, ge=0.0, le=1.0)
    cooldown_hours: float = Field(24.0, ge=0.0)


class FeedConfig(_Strict):
    """One feed. See the module docstring for an example."""

    name: str
    description: str = ""
    source: Source
    event_time: str
    #: IANA zone of event times written without an offset (naive local times); default UTC.
    #: Times with an offset or ``Z``/``UTC`` are converted exactly; other zone names are refused.
    event_time_zone: str = "UTC"
    #: optional series key (machine, host, merchant): lags, windows and thresholds per entity
    entity: str | None = None
    record_key: str
    label: str | None = None
    #: columns carried through to the validated data and reports but not used as features
    passthrough: list[str] = Field(default_factory=list)
    #: passthrough (or entity) columns holding personal data; features use ``pii: true`` on the feature
    pii: list[str] = Field(default_factory=list)
    features: list[FeatureSpec] = Field(min_length=1)
    partitioning: Partitioning
    validation: ValidationSettings = ValidationSettings()
    derived: DerivedSettings | None = None
    training: TrainingSettings = TrainingSettings()
    detector: DetectorSettings = DetectorSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    explanations: ExplanationSettings = ExplanationSettings()
    severity: SeveritySettings = SeveritySettings()
    scoring: ScoringSettings = ScoringSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    schedules: ScheduleSettings = ScheduleSettings()
    retention: RetentionSettings = RetentionSettings()
    notifications: NotificationSettings = NotificationSettings()
    #: directory of the YAML file; relative source paths resolve against it
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("name", "event_time", "record_key", "label", "entity")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not IDENTIFIER.match(value):
            raise ValueError(f"{value!r} is not a valid identifier (letters, digits, underscore; max 63)")
        return value

    @field_validator("event_time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return iana_zone(value)

    @model_validator(mode="after")
    def _columns_distinct(self) -> FeedConfig:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features: duplicate column(s) {dupes}")
        for col in self.passthrough:
            if not IDENTIFIER.match(col):
                raise ValueError(f"passthrough: {col!r} is not a valid column name")
            if col in names:
                raise ValueError(f"passthrough: column {col!r} is also listed under features")
        special = {"event_time": self.event_time, "record_key": self.record_key, "label": self.label,
                   "entity": self.entity}
        for key, col in special.items():
            if col is not None and col in names:
                raise ValueError(f"{key}: column {col!r} is also listed under features")
        self._check_derived(names)
        maskable = {*self.passthrough, *([self.entity] if self.entity else [])}
        for col in self.pii:
            if col not in maskable:
                raise ValueError(
                    f"pii: {col!r} is not a passthrough or entity column (mark a feature with pii: true; "
                    "record_key and event_time identify rows in quarantine and cannot be masked)"
                )
        return self

    def _check_derived(self, names: list[str]) -> None:
        if self.derived is None:
            return
        numeric = {f.name for f in self.features if f.type in ("float", "int")}
        for spec in self.derived.features:
            if spec.source not in numeric:
                raise ValueError(f"derived: source {spec.source!r} is not a numeric feature (float or int) of this feed")
        derived = self.derived_names
        clash = sorted({n for n in derived if derived.count(n) > 1 or n in names})
        if clash:
            raise ValueError(f"derived: feature name(s) {clash} are used twice (set a distinct name:)")

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def pii_columns(self) -> set[str]:
        """Columns whose values are masked where raw rows are copied (``pii`` and features with ``pii: true``)."""
        return {*self.pii, *(f.name for f in self.features if f.pii)}

    @property
    def derived_names(self) -> list[str]:
        """Names of the derived columns, in order: the declared features, then calendar columns."""
        if self.derived is None:
            return []
        names = [spec.column for spec in self.derived.features]
        calendar = self.derived.calendar
        for field in calendar.fields if calendar is not None else []:
            names += [f"{field}_sin", f"{field}_cos"] if calendar.cyclical else [field]
        return names

    @property
    def model_feature_names(self) -> list[str]:
        """What detectors see: the declared features, then the derived ones."""
        return [*self.feature_names, *self.derived_names]

    @property
    def expected_columns(self) -> list[str]:
        """Every column a raw partition must have, in order."""
        entity = [self.entity] if self.entity is not None and self.entity not in self.passthrough else []
        cols = [self.record_key, self.event_time, *entity, *self.passthrough, *self.feature_names]
        if self.label is not None:
            cols.append(self.label)
        return cols

    def resolve_path(self, pattern: str) -> str:
        path = Path(pattern)
        return str(path if path.is_absolute() else self.base_dir / path)


#: directories (os.pathsep-separated) besides the feed file's own directory that file sources may read
DATA_ROOTS_ENV = "PYNOMALY_DATA_ROOTS"


def data_roots(feed: FeedConfig) -> list[Path]:
    """Where ``feed``'s files may live: its feed file's directory and ``$PYNOMALY_DATA_ROOTS``."""
    extra = [Path(p) for p in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(os.path.realpath(r)) for r in (feed.base_dir, *extra)]


def path_inside(path: str, roots: list[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real == root or root in real.parents for root in roots)


def check_confined(feed: FeedConfig) -> None:
    """Refuse a file source whose path leaves the allowed directories (or is a URL).

    The directory part before the first glob character must lie inside a data root, so a
    glob class (``/etc/passw[d{date}]``) cannot reach an arbitrary file either.
    """
    src = feed.source
    if not isinstance(src, (CsvSource, ParquetSource)):
        return
    if "://" in src.path:
        raise FeedConfigError(
            f"feed {feed.name!r}: source.path {src.path!r} is a URL; this version reads local files only"
        )
    resolved = feed.resolve_path(src.path)
    fixed = resolved[: min((resolved.find(c) for c in "*?[{" if c in resolved), default=len(resolved))]
    anchor = fixed if fixed.endswith(os.sep) else os.path.dirname(fixed)
    if not path_inside(anchor or os.sep, data_roots(feed)):
        raise FeedConfigError(
            f"feed {feed.name!r}: source.path {src.path!r} resolves outside the feed file's directory "
            f"{feed.base_dir} and the directories in {DATA_ROOTS_ENV}; add its directory to {DATA_ROOTS_ENV} "
            "(a deployment setting) to allow it"
        )


_SOURCE_KINDS = {"csv", "parquet", "sql", "demo"}


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        parts = [str(p) for p in err["loc"]]
        # pydantic puts the union's tag ("csv", "sql", ...) after "source"; users never write it
        parts = [p for i, p in enumerate(parts) if not (i > 0 and parts[i - 1] == "source" and p in _SOURCE_KINDS)]
        loc = ".".join(parts)
        lines.append(f"  {loc or '<top>'}: {err['msg']}")
    return "\n".join(lines)


def parse_feed(data: Any, *, source: str = "<feed>", base_dir: Path | None = None) -> FeedConfig:
    """Validate a feed mapping; ``source`` (the file name) is quoted in errors."""
    if not isinstance(data, dict):
        raise FeedConfigError(f"{source}: a feed file must be a YAML mapping, got {type(data).__name__}")
    if base_dir is not None:
        data = {**data, "base_dir": base_dir}
    try:
        return FeedConfig.model_validate(data)
    except ValidationError as exc:
        raise FeedConfigError(f"{source}: invalid feed configuration\n{_format_errors(exc)}") from None


def load_feed(path: str | Path) -> FeedConfig:
    """Read and validate one feed YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise FeedConfigError(f"{path}: cannot read feed file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise FeedConfigError(f"{path}: not valid YAML ({exc})") from None
    feed = parse_feed(data, source=str(path), base_dir=path.parent.resolve())
    try:
        check_confined(feed)
    except FeedConfigError as exc:
        raise FeedConfigError(f"{path}: {exc}") from None
    return feed


def load_feeds(directory: str | Path) -> list[FeedConfig]:
    """Every ``*.yaml``/``*.yml`` feed in ``directory``; names must be unique."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FeedConfigError(
            f"feeds directory {directory} does not exist (set {FEEDS_DIR_ENV} to a directory of feed YAML files)"
        )
    feeds: dict[str, FeedConfig] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        feed = load_feed(path)
        if feed.name in feeds:
            raise FeedConfigError(f"{path}: feed name {feed.name!r} is already used by another file in {directory}")
        feeds[feed.name] = feed
    if not feeds:
        raise FeedConfigError(f"feeds directory {directory} has no *.yaml feed files")
    return list(feeds.values())
