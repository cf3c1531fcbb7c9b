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
from pydantic import Field, ValidationError, field_validator, model_validator

# the settings sections live in settings.py; re-exported so `from pynomaly_core.data.config import X` works
from pynomaly_core.data.settings import (  # noqa: F401
    IDENTIFIER,
    CalendarFeatures,
    DerivedFeature,
    DerivedSettings,
    DetectorSettings,
    ExplanationSettings,
    FreshnessSettings,
    LifecycleSettings,
    MonitoringSettings,
    NotificationSettings,
    Partitioning,
    RetentionSettings,
    RetrainWindow,
    RetrySettings,
    ScheduleSettings,
    ScoringSettings,
    SeveritySettings,
    Strict,
    TrainingSettings,
    ValidationSettings,
    iana_zone,
)

# imported under this name (not assigned) so the pydantic mypy plugin types subclasses' __init__
from pynomaly_core.data.settings import Strict as _Strict

#: an environment-variable reference: $NAME or ${NAME}
_ENV_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
FEEDS_DIR_ENV = "PYNOMALY_FEEDS_DIR"  # read by the code location; quoted in errors


class FeedConfigError(ValueError):
    """A feed file is missing, unreadable or invalid; the message names the file and key."""


class CsvSource(_Strict):
    """Files with one partition per day: ``path`` must contain ``{date}`` (YYYY-MM-DD)."""

    kind: Literal["csv"]
    path: str = Field(
        description="Path or glob with a {date} placeholder, relative to the feed file."
    )
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
        missing = [
            p
            for p in (":partition_start", ":partition_end")
            if not re.search(re.escape(p) + r"\b", code)
        ]
        if missing:
            raise ValueError(
                f"must bind {' and '.join(missing)} so each partition reads only its window"
            )
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
            raise ValueError(
                f"feature {self.name!r}: min ({self.min}) is greater than max ({self.max})"
            )
        if self.allowed is not None and self.type != "category":
            raise ValueError(f"feature {self.name!r}: 'allowed' only applies to type 'category'")
        if self.type == "category" and (self.min is not None or self.max is not None):
            raise ValueError(f"feature {self.name!r}: min/max do not apply to type 'category'")
        return self


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
    freshness: FreshnessSettings = FreshnessSettings()
    retries: RetrySettings = RetrySettings()
    #: directory of the YAML file; relative source paths resolve against it
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("name", "event_time", "record_key", "label", "entity")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not IDENTIFIER.match(value):
            raise ValueError(
                f"{value!r} is not a valid identifier (letters, digits, underscore; max 63)"
            )
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
        special = {
            "event_time": self.event_time,
            "record_key": self.record_key,
            "label": self.label,
            "entity": self.entity,
        }
        for key, special_col in special.items():
            if special_col is not None and special_col in names:
                raise ValueError(f"{key}: column {special_col!r} is also listed under features")
        self._check_derived(names)
        maskable = {*self.passthrough, *([self.entity] if self.entity else [])}
        for col in self.pii:
            if col not in maskable:
                raise ValueError(
                    f"pii: {col!r} is not a passthrough or entity column (mark a feature with pii: true; "
                    "record_key and event_time identify rows in quarantine and cannot be masked)"
                )
        return self

    @model_validator(mode="after")
    def _arrival_needs_files(self) -> FeedConfig:
        if self.schedules.trigger == "arrival" and not isinstance(
            self.source, (CsvSource, ParquetSource)
        ):
            raise ValueError(
                f"schedules.trigger: 'arrival' watches files; a {self.source.kind} source has none "
                "(use trigger: cron)"
            )
        return self

    def _check_derived(self, names: list[str]) -> None:
        if self.derived is None:
            return
        numeric = {f.name for f in self.features if f.type in ("float", "int")}
        for spec in self.derived.features:
            if spec.source not in numeric:
                raise ValueError(
                    f"derived: source {spec.source!r} is not a numeric feature (float or int) of this feed"
                )
        derived = self.derived_names
        clash = sorted({n for n in derived if derived.count(n) > 1 or n in names})
        if clash:
            raise ValueError(
                f"derived: feature name(s) {clash} are used twice (set a distinct name:)"
            )

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
        return [] if self.derived is None else self.derived.names()

    @property
    def model_feature_names(self) -> list[str]:
        """What detectors see: the declared features, then the derived ones."""
        return [*self.feature_names, *self.derived_names]

    @property
    def expected_columns(self) -> list[str]:
        """Every column a raw partition must have, in order."""
        entity = (
            [self.entity] if self.entity is not None and self.entity not in self.passthrough else []
        )
        cols = [self.record_key, self.event_time, *entity, *self.passthrough, *self.feature_names]
        if self.label is not None:
            cols.append(self.label)
        return cols

    def resolve_path(self, pattern: str) -> str:
        """A local pattern made absolute against the feed file's directory; a URL as it is."""
        if is_url(pattern):
            return pattern
        path = Path(pattern)
        return str(path if path.is_absolute() else self.base_dir / path)


#: directories (os.pathsep-separated) besides the feed file's own directory that file sources may read
DATA_ROOTS_ENV = "PYNOMALY_DATA_ROOTS"
#: URL prefixes (comma- or space-separated) remote file sources may read, e.g. ``s3://landing/feeds/``;
#: unset: no remote source is allowed
REMOTE_SOURCES_ENV = "PYNOMALY_REMOTE_SOURCES"
#: fsspec protocols a file source may name, and the package that implements each
REMOTE_PROTOCOLS = {
    "s3": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "az": "adlfs",
}


def is_url(path: str) -> bool:
    """``scheme://...``: a path fsspec reads from a remote file system."""
    return re.match(r"\A[A-Za-z][A-Za-z0-9+.\-]*://", path) is not None


def remote_prefixes() -> list[str]:
    """The URL prefixes of ``$PYNOMALY_REMOTE_SOURCES``, each ending in ``/``."""
    raw = os.environ.get(REMOTE_SOURCES_ENV, "")
    return [p if p.endswith("/") else p + "/" for p in re.split(r"[,\s]+", raw) if p]


def check_remote(feed: FeedConfig, url: str) -> None:
    """Refuse a URL source the deployment does not allow (protocol, credentials, prefix)."""
    scheme, _, rest = url.partition("://")
    where = f"feed {feed.name!r}: source.path {url!r}"
    if scheme.lower() not in REMOTE_PROTOCOLS:
        raise FeedConfigError(
            f"{where} is a URL with protocol {scheme!r}; file sources read local paths or "
            f"{', '.join(p + '://' for p in REMOTE_PROTOCOLS)}"
        )
    userinfo = rest.split("/", 1)[0].rpartition("@")[0]
    # abfs://container@account.dfs.core.windows.net/ names a container, not credentials
    azure = scheme.lower() in ("abfs", "abfss", "az")
    if (userinfo and (not azure or ":" in userinfo)) or "/../" in f"/{rest}/":
        raise FeedConfigError(
            f"{where}: credentials and '..' segments are not allowed in source URLs; credentials "
            "come from the environment (docs/feeds.md)"
        )
    allowed = remote_prefixes()
    if not any(url.startswith(prefix) for prefix in allowed):
        listed = f"it allows {allowed}" if allowed else "it is unset"
        raise FeedConfigError(
            f"{where} is a URL; remote sources are read only under the URL prefixes listed in "
            f"{REMOTE_SOURCES_ENV} (a deployment setting, e.g. {REMOTE_SOURCES_ENV}=s3://landing/feeds/) "
            f"and {listed}"
        )


def data_roots(feed: FeedConfig) -> list[Path]:
    """Where ``feed``'s files may live: its feed file's directory and ``$PYNOMALY_DATA_ROOTS``."""
    extra = [Path(p) for p in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(os.path.realpath(r)) for r in (feed.base_dir, *extra)]


def path_inside(path: str, roots: list[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real == root or root in real.parents for root in roots)


def check_confined(feed: FeedConfig) -> None:
    """Refuse a file source whose path leaves the allowed directories (or URL prefixes).

    The directory part before the first glob character must lie inside a data root, so a
    glob class (``/etc/passw[d{date}]``) cannot reach an arbitrary file either.
    """
    src = feed.source
    if not isinstance(src, (CsvSource, ParquetSource)):
        return
    if "://" in src.path:
        check_remote(feed, src.path)
        return
    resolved = feed.resolve_path(src.path)
    fixed = resolved[
        : min((resolved.find(c) for c in "*?[{" if c in resolved), default=len(resolved))
    ]
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
        parts = [
            p
            for i, p in enumerate(parts)
            if not (i > 0 and parts[i - 1] == "source" and p in _SOURCE_KINDS)
        ]
        loc = ".".join(parts)
        lines.append(f"  {loc or '<top>'}: {err['msg']}")
    return "\n".join(lines)


def parse_feed(data: Any, *, source: str = "<feed>", base_dir: Path | None = None) -> FeedConfig:
    """Validate a feed mapping; ``source`` (the file name) is quoted in errors."""
    if not isinstance(data, dict):
        raise FeedConfigError(
            f"{source}: a feed file must be a YAML mapping, got {type(data).__name__}"
        )
    if base_dir is not None:
        data = {**data, "base_dir": base_dir}
    try:
        return FeedConfig.model_validate(data)
    except ValidationError as exc:
        raise FeedConfigError(
            f"{source}: invalid feed configuration\n{_format_errors(exc)}"
        ) from None


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
            raise FeedConfigError(
                f"{path}: feed name {feed.name!r} is already used by another file in {directory}"
            )
        feeds[feed.name] = feed
    if not feeds:
        raise FeedConfigError(f"feeds directory {directory} has no *.yaml feed files")
    return list(feeds.values())
