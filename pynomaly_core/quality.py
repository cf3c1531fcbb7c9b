"""Data-quality reports on Great Expectations: a suite derived from the feed and a reference, run over a week.

The suite has two kinds of expectation, each tagged with the rule it comes from:

* ``schema`` — what the feed file declares: every expected column exists, the record key is
  never null and unique, the event time is never null, each feature has its declared type,
  ``min``/``max``, ``allowed`` categories and nullability, the label is 0/1. Validated data
  satisfies these by construction, so a failure means the validation stage let something through.
* ``reference`` — what a reference frame (e.g. the training window) looked like: each numeric
  feature's mean, median and standard deviation stay within ``tolerance`` reference standard
  deviations, its values stay between the reference's low/high quantiles, and each categorical
  feature keeps its reference categories and their proportions. A failure means the data drifted.

:func:`build_suite_spec` returns the suite as plain JSON-able dicts (so it can be stored, diffed
and shown without Great Expectations); :func:`run_quality` runs it with Great Expectations 1.x in a
file-backed context rooted under ``output_dir`` and builds its data docs there.

Great Expectations is the optional extra ``quality`` (``pip install 'pynomaly[quality]'``);
it is imported only inside :func:`run_quality`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from pynomaly_core.data.config import FeatureSpec, FeedConfig
from pynomaly_core.storage import atomic_write_text

RULE_SCHEMA = "schema"
RULE_REFERENCE = "reference"
EXTRA = "quality"

# Pandas dtypes each declared feature type may have in validated data (see data.validation).
# Great Expectations resolves a name with ``np.dtype(name)``, else ``getattr(pandas, name)``: the
# nullable extension dtypes validation produces (Int64, boolean, Float64, string) only match by their
# class names (``Int64Dtype``...); their alias ("Int64") resolves to nothing, and the failure then
# reports the dtype's scalar type ("observed int64"), a false alarm on every int/bool feature.
_TYPE_LISTS: dict[str, list[str]] = {
    "float": ["float64", "float32", "Float64Dtype", "Float32Dtype"],
    "int": ["int64", "int32", "Int64Dtype", "Int32Dtype"],
    "bool": ["bool", "BooleanDtype"],
    "category": ["object", "str", "StringDtype"],
}


class QualitySpecError(ValueError):
    """A suite cannot be built or run; the message names the feed, the column and the expectation."""


def _import_gx() -> Any:
    # older GE 1.x releases send usage statistics unless told not to (the pinned 1.24.1 has no analytics
    # client, but pyproject allows any 1.x)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    try:
        import great_expectations as gx
    except ImportError as exc:
        raise ImportError(
            "data-quality reports need Great Expectations: install it with "
            f"pip install 'pynomaly[{EXTRA}]'"
        ) from exc
    return gx


# --------------------------------------------------------------------------------------------- spec


def _expectation(rule: str, type_: str, description: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": type_, "kwargs": kwargs, "rule": rule, "description": description}


def _schema_expectations(feed: FeedConfig) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for col in feed.expected_columns:
        out.append(
            _expectation(RULE_SCHEMA, "expect_column_to_exist", f"column {col} exists", column=col)
        )
    if not feed.validation.allow_extra_columns:
        out.append(
            _expectation(
                RULE_SCHEMA,
                "expect_table_columns_to_match_set",
                "no columns beyond those the feed declares",
                column_set=list(feed.expected_columns),
                exact_match=True,
            )
        )
    key, time = feed.record_key, feed.event_time
    out += [
        _expectation(
            RULE_SCHEMA,
            "expect_column_values_to_not_be_null",
            f"record key {key} is never null",
            column=key,
        ),
        _expectation(
            RULE_SCHEMA,
            "expect_column_values_to_be_unique",
            f"record key {key} is unique",
            column=key,
        ),
        _expectation(
            RULE_SCHEMA,
            "expect_column_values_to_not_be_null",
            f"event time {time} is never null",
            column=time,
        ),
    ]
    for spec in feed.features:
        out += _feature_schema(spec)
    if feed.label is not None:
        out.append(
            _expectation(
                RULE_SCHEMA,
                "expect_column_values_to_be_in_set",
                f"label {feed.label} is 0 or 1",
                column=feed.label,
                value_set=[0, 1],
            )
        )
    return out


def _feature_schema(spec: FeatureSpec) -> list[dict[str, Any]]:
    col = spec.name
    out = [
        _expectation(
            RULE_SCHEMA,
            "expect_column_values_to_be_in_type_list",
            f"{col} has type {spec.type}",
            column=col,
            type_list=list(_TYPE_LISTS[spec.type]),
        )
    ]
    if not spec.nullable:
        out.append(
            _expectation(
                RULE_SCHEMA,
                "expect_column_values_to_not_be_null",
                f"{col} is not nullable",
                column=col,
            )
        )
    if spec.min is not None or spec.max is not None:
        out.append(
            _expectation(
                RULE_SCHEMA,
                "expect_column_values_to_be_between",
                f"{col} within the feed's min/max [{spec.min}, {spec.max}]",
                column=col,
                min_value=spec.min,
                max_value=spec.max,
            )
        )
    if spec.allowed is not None:
        out.append(
            _expectation(
                RULE_SCHEMA,
                "expect_column_values_to_be_in_set",
                f"{col} in the feed's allowed set",
                column=col,
                value_set=list(spec.allowed),
            )
        )
    if spec.type == "bool":
        out.append(
            _expectation(
                RULE_SCHEMA,
                "expect_column_values_to_be_in_set",
                f"{col} is true or false",
                column=col,
                value_set=[False, True],
            )
        )
    return out


def _reference_numeric(
    feed: FeedConfig,
    spec: FeatureSpec,
    values: pd.Series,
    quantiles: tuple[float, float],
    mostly: float,
    tolerance: float,
) -> list[dict[str, Any]]:
    col = spec.name
    values = values.astype("float64")
    values = values[np.isfinite(values)]
    if len(values) < 2:
        raise QualitySpecError(
            f"feed {feed.name!r}, column {col!r}: the reference frame has {len(values)} finite value(s); "
            "expect_column_mean_to_be_between and the other reference expectations need at least 2"
        )
    mean, median, std = float(values.mean()), float(values.median()), float(values.std(ddof=1))
    low, high = (float(q) for q in values.quantile(list(quantiles)))
    margin = tolerance * std
    lower, upper = low - margin, high + margin
    # the week may have at most (1 - mostly) more of its rows outside the bounds than the reference has
    inside = float(((values >= lower) & (values <= upper)).mean())
    required = float(np.floor(max(inside - (1.0 - mostly), 0.0) * 1e4) / 1e4)
    return [
        _expectation(
            RULE_REFERENCE,
            "expect_column_mean_to_be_between",
            f"{col} mean within {tolerance} reference stdev of the reference mean {mean:.6g}",
            column=col,
            min_value=mean - margin,
            max_value=mean + margin,
        ),
        _expectation(
            RULE_REFERENCE,
            "expect_column_median_to_be_between",
            f"{col} median within {tolerance} reference stdev of the reference median {median:.6g}",
            column=col,
            min_value=median - margin,
            max_value=median + margin,
        ),
        _expectation(
            RULE_REFERENCE,
            "expect_column_stdev_to_be_between",
            f"{col} stdev within a factor {1 + tolerance} of the reference stdev {std:.6g}",
            column=col,
            min_value=std / (1 + tolerance),
            max_value=std * (1 + tolerance),
        ),
        # A tail quantile of a few thousand rows is a noisy estimate, so the bounds are widened by
        # the tolerance and compared with the share of the reference itself inside them.
        _expectation(
            RULE_REFERENCE,
            "expect_column_values_to_be_between",
            f"at least {required:g} of {col} (the reference's {inside:.4g} less {1 - mostly:.4g}) within "
            f"its {quantiles[0]:g}..{quantiles[1]:g} quantiles widened by {tolerance} reference stdev",
            column=col,
            min_value=lower,
            max_value=upper,
            mostly=required,
        ),
    ]


def _reference_categorical(
    feed: FeedConfig,
    spec: FeatureSpec,
    values: pd.Series,
    mostly: float,
    max_kl_divergence: float,
) -> list[dict[str, Any]]:
    col = spec.name
    counts = values.dropna().value_counts(normalize=True).sort_index()
    if counts.empty:
        raise QualitySpecError(
            f"feed {feed.name!r}, column {col!r}: the reference frame has no non-null values; "
            "expect_column_values_to_be_in_set needs the reference categories"
        )
    categories = [bool(v) if spec.type == "bool" else str(v) for v in counts.index]
    weights = [float(w) for w in counts.to_numpy()]
    return [
        _expectation(
            RULE_REFERENCE,
            "expect_column_values_to_be_in_set",
            f"at least {mostly:g} of {col} in the reference's categories",
            column=col,
            value_set=categories,
            mostly=mostly,
        ),
        _expectation(
            RULE_REFERENCE,
            "expect_column_kl_divergence_to_be_less_than",
            f"{col} category proportions within KL divergence {max_kl_divergence:g} of the reference's",
            column=col,
            partition_object={"values": categories, "weights": weights},
            threshold=max_kl_divergence,
        ),
    ]


def build_suite_spec(
    feed: FeedConfig,
    reference: pd.DataFrame,
    *,
    quantiles: tuple[float, float] = (0.01, 0.99),
    mostly: float = 0.99,
    tolerance: float = 0.5,
    max_kl_divergence: float = 0.05,
) -> list[dict[str, Any]]:
    """The data-quality suite of ``feed`` as JSON-able expectation dicts.

    Parameters
    ----------
    feed
        The feed whose schema gives the ``schema`` expectations.
    reference : DataFrame of shape (n_rows, n_columns)
        Validated rows the ``reference`` expectations are learned from (e.g. the training window);
        it must have every feature column.
    quantiles
        Low and high reference quantiles that, widened by ``tolerance`` reference standard
        deviations, bound each numeric feature's values.
    mostly
        A categorical feature needs this share of its values in the reference's categories; a
        numeric feature may have at most ``1 - mostly`` more of its values outside its bounds than
        the reference has (its expectation's ``mostly`` is the reference's share inside them less
        ``1 - mostly``).
    tolerance
        How far, in reference standard deviations, a numeric feature's mean and median may move
        and its quantile bounds are widened; its standard deviation may change by a factor of
        ``1 + tolerance``.
    max_kl_divergence
        Largest KL divergence (nats) of a categorical feature's proportions from the reference's.

    Returns
    -------
    list of dict
        One dict per expectation: ``type`` (the Great Expectations expectation type), ``kwargs``,
        ``rule`` (``"schema"`` or ``"reference"``) and a human ``description``.

    Examples
    --------
    >>> from pynomaly_core.data.config import parse_feed
    >>> feed = parse_feed({"name": "f", "source": {"kind": "demo"}, "event_time": "t", "record_key": "id",
    ...                    "features": [{"name": "x", "min": 0}], "partitioning": {"start_date": "2026-01-01"}})
    >>> spec = build_suite_spec(feed, pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}))
    >>> sorted({e["rule"] for e in spec}), spec[0]["type"]
    (['reference', 'schema'], 'expect_column_to_exist')
    """
    low_q, high_q = quantiles
    if not 0.0 <= low_q < high_q <= 1.0:
        raise QualitySpecError(
            f"feed {feed.name!r}: quantiles must satisfy 0 <= low < high <= 1, got {quantiles}"
        )
    if not 0.0 < mostly <= 1.0:
        raise QualitySpecError(f"feed {feed.name!r}: mostly must be in (0, 1], got {mostly}")
    if tolerance <= 0.0 or max_kl_divergence <= 0.0:
        raise QualitySpecError(
            f"feed {feed.name!r}: tolerance and max_kl_divergence must be positive, "
            f"got {tolerance} and {max_kl_divergence}"
        )
    missing = [c for c in feed.feature_names if c not in reference.columns]
    if missing:
        raise QualitySpecError(
            f"feed {feed.name!r}: the reference frame lacks feature column(s) {missing}, "
            "which the reference expectations are learned from"
        )
    spec = _schema_expectations(feed)
    for feature in feed.features:
        values = reference[feature.name]
        if feature.type in ("float", "int"):
            spec += _reference_numeric(feed, feature, values, (low_q, high_q), mostly, tolerance)
        else:
            spec += _reference_categorical(feed, feature, values, mostly, max_kl_divergence)
    return spec


# ---------------------------------------------------------------------------------------------- run


@dataclass
class QualityResult:
    """Outcome of one data-quality run (what the report asset shows and stores)."""

    feed: str
    run_name: str
    success: bool
    evaluated: int
    successful: int
    failed: int
    success_percent: float
    #: one dict per failed expectation: type, rule, column, kwargs, observed value, unexpected count
    failures: list[dict[str, Any]] = field(default_factory=list[Any])
    rows: int = 0
    suite_name: str = ""
    #: index.html of the data docs site under output_dir
    docs_path: Path | None = None
    #: this run's validation page in the data docs
    page_path: Path | None = None
    #: the full Great Expectations validation result of this run
    json_path: Path | None = None

    @property
    def failed_by_rule(self) -> dict[str, int]:
        counts = {RULE_SCHEMA: 0, RULE_REFERENCE: 0}
        for failure in self.failures:
            counts[failure["rule"]] = counts.get(failure["rule"], 0) + 1
        return counts

    def summary(self) -> dict[str, Any]:
        """JSON-able headline numbers (e.g. for asset metadata)."""
        return {
            "feed": self.feed,
            "run_name": self.run_name,
            "suite": self.suite_name,
            "success": self.success,
            "rows": self.rows,
            "evaluated": self.evaluated,
            "successful": self.successful,
            "failed": self.failed,
            "success_percent": self.success_percent,
            "failed_schema": self.failed_by_rule[RULE_SCHEMA],
            "failed_reference": self.failed_by_rule[RULE_REFERENCE],
            "failures": [_failure_line(f) for f in self.failures],
            "docs_path": str(self.docs_path) if self.docs_path else None,
            "page_path": str(self.page_path) if self.page_path else None,
            "json_path": str(self.json_path) if self.json_path else None,
        }


def _failure_line(failure: dict[str, Any]) -> str:
    where = f"{failure['rule']}: {failure['type']} on {failure['column'] or 'the table'}"
    if failure["exception"]:
        return f"{where}: error {failure['exception']}"
    if failure["unexpected_count"] is not None:
        examples = (failure["partial_unexpected_list"] or [])[:3]
        return f"{where}: {failure['unexpected_count']} of {failure['element_count']} rows unexpected, e.g. {examples}"
    return f"{where}: observed {failure['observed_value']!r}"


def _build_suite(
    gx: Any, feed: FeedConfig, suite_name: str, suite_spec: list[dict[str, Any]]
) -> Any:
    from great_expectations.exceptions.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    expectations = []
    for i, item in enumerate(suite_spec):
        type_ = item.get("type")
        kwargs = dict(item.get("kwargs") or {})
        column = kwargs.get("column")
        where = f"feed {feed.name!r}, suite_spec[{i}] ({type_}" + (
            f" on column {column!r})" if column else ")"
        )
        try:
            cls = get_expectation_impl(str(type_))
        except ExpectationNotFoundError:
            raise QualitySpecError(
                f"{where}: Great Expectations {gx.__version__} has no expectation {type_!r}"
            ) from None
        try:
            expectation = cls(
                **kwargs,
                meta={"rule": item.get("rule"), "feed": feed.name},
                description=item.get("description"),
            )
        except Exception as exc:  # noqa: BLE001 - pydantic errors of any expectation class
            raise QualitySpecError(f"{where}: invalid kwargs {kwargs}: {exc}") from None
        expectations.append(expectation)
    # passed to the constructor, not add_expectation: that one writes to the store per expectation
    # once a suite of this name exists
    return gx.ExpectationSuite(name=suite_name, expectations=expectations, meta={"feed": feed.name})


def _context(gx: Any, project_root: Path) -> Any:
    context = gx.get_context(mode="file", project_root_dir=str(project_root))
    variables = context.variables
    changed = False
    if context.config.analytics_enabled is not False:
        context.config.analytics_enabled = False
        changed = True
    if not variables.progress_bars or variables.progress_bars.get("globally") is not False:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        changed = True
    if changed:
        variables.save()
    return context


def _batch_definition(context: Any, feed: FeedConfig) -> Any:
    name = f"pynomaly_{feed.name}"
    try:
        datasource = context.data_sources.get(name)
    except KeyError:
        datasource = context.data_sources.add_pandas(name=name)
    if "validated" in datasource.get_asset_names():
        asset = datasource.get_asset("validated")
    else:
        asset = datasource.add_dataframe_asset(name="validated")
    if "whole_frame" in {b.name for b in asset.batch_definitions}:
        return asset.get_batch_definition("whole_frame")
    return asset.add_batch_definition_whole_dataframe("whole_frame")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _exception_messages(info: Any) -> list[str]:
    """Messages of the errors GE caught: one flat record, or one per metric that failed."""
    if not isinstance(info, dict):
        return []
    if "raised_exception" in info:
        message = info.get("exception_message")
        return [str(message)] if info.get("raised_exception") and message else []
    return sorted({m for value in info.values() for m in _exception_messages(value)})


def _failure(feed: FeedConfig, result: Any) -> dict[str, Any]:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    details = result.result or {}
    exception = result.exception_info or {}
    messages = _exception_messages(exception)
    observed = details.get("observed_value")
    partition = (details.get("details") or {}).get("observed_partition")
    if observed is None and partition:
        # KL divergence: GE reports an infinite divergence (a category the reference never had) as None
        observed = {"proportions": dict(zip(partition["values"], partition["weights"]))}
    return cast(
        "dict[str, Any]",
        _jsonable(
            {
                "feed": feed.name,
                "type": config.type,
                "rule": (config.meta or {}).get("rule"),
                "column": kwargs.get("column"),
                "description": getattr(config, "description", None),
                "kwargs": kwargs,
                "observed_value": observed,
                "element_count": details.get("element_count"),
                "unexpected_count": details.get("unexpected_count"),
                "unexpected_percent": details.get("unexpected_percent"),
                "partial_unexpected_list": details.get("partial_unexpected_list"),
                "unexpected_record_keys": [
                    row.get(feed.record_key)
                    for row in details.get("partial_unexpected_index_list") or []
                    if isinstance(row, dict)
                ]
                or None,
                "exception": "; ".join(messages) if messages else None,
            }
        ),
    )


def _file_path(url: str | None) -> Path | None:
    if not url:
        return None
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme in ("file", "") else None


def _docs_page(context: Any, resource_identifier: Any = None) -> Path | None:
    """The local data-docs page of a resource (the site's index.html when None), if it exists."""
    for site in context.get_docs_sites_urls(resource_identifier=resource_identifier):
        path = _file_path(site.get("site_url"))
        if path is not None and path.exists():
            return path
    return None


def run_quality(
    feed: FeedConfig,
    frame: pd.DataFrame,
    suite_spec: list[dict[str, Any]],
    *,
    run_name: str,
    output_dir: Path,
) -> QualityResult:
    """Run ``suite_spec`` over ``frame`` with Great Expectations and build its data docs.

    Parameters
    ----------
    feed
        The feed the rows belong to (names the suite, datasource and checkpoint).
    frame : DataFrame of shape (n_rows, n_columns)
        The rows to check, e.g. the week's validated data.
    suite_spec
        Expectations from :func:`build_suite_spec`.
    run_name
        Names this run in the data docs and the result file (e.g. ``2026-W47``).
    output_dir
        Root of the Great Expectations project (``output_dir/gx``: suites, validation results,
        data docs under ``gx/uncommitted/data_docs/local_site``) and of the result JSON
        ``output_dir/results/<run_name>.json``. Re-running with the same names updates the
        suite, datasource and checkpoint in place.

    Returns
    -------
    QualityResult
    """
    gx = _import_gx()
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"feed {feed.name!r}: run_quality needs a pandas DataFrame, got {type(frame).__name__}"
        )
    if not suite_spec:
        raise QualitySpecError(
            f"feed {feed.name!r}: the suite spec is empty; build it with build_suite_spec"
        )
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_name)
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    # GE logs every store and data-docs step at INFO/WARNING; the report carries what matters
    logging.getLogger("great_expectations").setLevel(logging.ERROR)

    suite_name = f"{feed.name}_data_quality"
    suite = _build_suite(
        gx, feed, suite_name, suite_spec
    )  # a bad spec fails before anything is written
    context = _context(gx, output_dir)
    checkpoint = _checkpoint(gx, context, feed, context.suites.add_or_update(suite))
    run_id = gx.RunIdentifier(run_name=safe_run)
    try:
        checkpoint_result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)
    except Exception as exc:  # GE raises many unrelated types; say which feed and run failed
        raise RuntimeError(
            f"feed {feed.name!r}: Great Expectations checkpoint {checkpoint.name!r} failed on run {run_name!r} "
            f"(project {output_dir / 'gx'}): {type(exc).__name__}: {exc}"
        ) from exc
    ((identifier, validation_result),) = checkpoint_result.run_results.items()

    stats = validation_result.statistics
    failures = [_failure(feed, r) for r in validation_result.results if not r.success]
    json_path = output_dir / "results" / f"{safe_run}.json"
    atomic_write_text(
        json_path, json.dumps(validation_result.to_json_dict(), indent=2, default=str)
    )
    docs_path, page_path = _docs_pages(context, identifier)
    return QualityResult(
        feed=feed.name,
        run_name=run_name,
        success=bool(validation_result.success),
        evaluated=int(stats["evaluated_expectations"]),
        successful=int(stats["successful_expectations"]),
        failed=int(stats["unsuccessful_expectations"]),
        success_percent=float(stats["success_percent"] or 0.0),
        failures=failures,
        rows=len(frame),
        suite_name=suite_name,
        docs_path=docs_path,
        page_path=page_path,
        json_path=json_path,
    )


def _checkpoint(gx: Any, context: Any, feed: FeedConfig, suite: Any) -> Any:
    """The feed's weekly validation and checkpoint (created or updated), which renders the data docs."""
    from great_expectations.checkpoint.actions import UpdateDataDocsAction

    batch_definition = _batch_definition(context, feed)
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{feed.name}_weekly", data=batch_definition, suite=suite)
    )
    return context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{feed.name}_data_quality_report",
            validation_definitions=[validation],
            actions=[UpdateDataDocsAction(name="update_data_docs")],
            result_format={
                "result_format": "SUMMARY",
                "unexpected_index_column_names": [feed.record_key],
                "partial_unexpected_count": 20,
            },
        )
    )


def _docs_pages(context: Any, identifier: Any) -> tuple[Path | None, Path | None]:
    """The data docs' index page and this run's validation page."""
    # UpdateDataDocsAction has rendered this run's page and the index; rebuild only if absent
    docs_path = _docs_page(context)
    if docs_path is None:
        context.build_data_docs()
        docs_path = _docs_page(context)
    return docs_path, _docs_page(context, identifier)
