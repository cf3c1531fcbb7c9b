"""Fan-out scoring: ``anomaly_scores`` of a feed with ``scoring.fan_out_rows`` as a graph of steps.

One partition becomes ``plan`` -> ``score_chunk`` x N (Dagster dynamic outputs) -> ``combine``:

* ``plan`` runs the same gates as the one-step asset (failed validation, champion, hindsight) and
  splits the validated partition into row ranges of ``fan_out_rows`` rows;
* each ``score_chunk`` step loads the champion and scores its range into a file of its own under
  ``frames/<feed>/anomaly_scores/.chunks/<partition>/<run id>/`` (a retried step overwrites its file);
* ``combine`` joins the files in order into the partition's ``anomaly_scores`` file (replaced
  atomically, so re-running the partition gives the same rows), applies the alert budget over the
  whole partition, records the same metadata as the one-step asset and removes the chunk files.

An executor that runs steps in parallel (multiprocess, ``PYNOMALY_EXECUTOR=celery`` / ``k8s``)
then scores one partition on several processes or machines. Run config is the one-step asset's
(``ops: {<feed>__anomaly_scores: {config: {...}}}``). A run covers one partition (a backfill is one
run per partition): the fan-out is within a partition.
"""

import dataclasses
import functools
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from pynomaly_assets.defs.scoring import (
    ScoringConfig,
    alert_limit,
    hindsight_guard,
    score_metadata,
    validation_gate,
    warmup_history,
)
from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.metadata import report_links, rounded
from pynomaly_assets.resources import (
    FrameStoreResource,
    ModelStoreResource,
    ReportStoreResource,
    home_subdir,
)
from pynomaly_core.severity import budget_metadata
from pynomaly_core.storage import JsonStore
from pynomaly_core.streaming import (
    ScoredChunk,
    ScoringLayout,
    chunk_ranges,
    combine_scored_chunks,
    parquet_rows,
    score_parquet_range,
)

#: resource key of the IO manager that passes the plan and the chunk records between the steps
STEP_IO_MANAGER_KEY = "scoring_step_io_manager"
CHUNKS_DIR = ".chunks"


class StepValueIOManager(dg.ConfigurableIOManager):
    """Small JSON values passed between the steps of the fan-out graph, one document per output
    (run id / step / output / chunk): every process of the run (celery workers included) reads
    them from the shared ``base_dir``."""

    base_dir: str

    def _key(self, identifier: Sequence[str]) -> list[str]:
        return [part.replace("[", "_").replace("]", "") for part in identifier]

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        JsonStore(self.base_dir).write(obj, self._key(context.get_identifier()))

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        if upstream is None:
            raise dg.DagsterInvariantViolationError(
                f"{context.name}: {STEP_IO_MANAGER_KEY} loads only outputs of upstream steps"
            )
        return JsonStore(self.base_dir).read(self._key(upstream.get_identifier()))


@functools.cache
def step_io_manager(base_dir: str) -> dg.IOManagerDefinition:
    # one definition for every feed: Dagster refuses two different ones under one resource key
    return StepValueIOManager(base_dir=base_dir).get_resource_definition()


class _AsScoringAsset:
    """An op's context of the fan-out graph seen as the ``anomaly_scores`` asset's context (its
    key, op name and partition window), for the gates the one-step asset runs."""

    def __init__(self, context: dg.OpExecutionContext, fc: FeedContext, op_name: str) -> None:
        self._context = context
        self.asset_key = fc.key("anomaly_scores")
        self.op_def = _Named(op_name)
        start, end = fc.window(context.partition_key)
        self.partition_time_window = dg.TimeWindow(start, end)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


def _layout(fc: FeedContext, champion: dict) -> ScoringLayout:
    feed = fc.feed
    return ScoringLayout(
        record_key=feed.record_key,
        event_time=feed.event_time,
        passthrough=tuple(feed.passthrough),
        label=feed.label,
        model_name=str(champion["detector"]),
        model_version=str(champion["version"]),
    )


def _load_champion(fc: FeedContext, champion: dict, model_store: ModelStoreResource):
    from pynomaly_core.lifecycle import ChampionRecord, NoChampionError

    record = ChampionRecord.from_value(champion)
    try:
        return record, record.load(model_store.signing_key())
    except NoChampionError as exc:
        raise dg.Failure(
            f"feed {fc.name!r} has no champion to score with ({exc.reason}); "
            f"materialize {fc.key('champion').to_user_string()} (job {fc.name}__train) first"
        ) from exc


def _plain(metadata: dict) -> dict:
    """Metadata entries as JSON values (a ``MetadataValue.json`` becomes its data)."""
    return {k: (v.value if isinstance(v, dg.MetadataValue) else v) for k, v in metadata.items()}


def chunk_dir(
    frame_store: FrameStoreResource, fc: FeedContext, partition: str, run_id: str
) -> Path:
    """Where the chunk files of one run's partition are written (shared by every step)."""
    base = frame_store.store().path(list(fc.key("anomaly_scores").path), partition).parent
    return base / CHUNKS_DIR / partition / run_id


def build_fan_out_scoring_asset(fc: FeedContext) -> dg.AssetsDefinition:
    """``anomaly_scores`` of ``fc`` as plan -> score_chunk (one step per row range) -> combine."""
    feed = fc.feed
    fan_out_rows = feed.scoring.fan_out_rows
    if fan_out_rows is None:
        raise ValueError(f"feed {feed.name!r}: scoring.fan_out_rows is not set")
    asset_key = fc.key("anomaly_scores")
    name = asset_key.to_python_identifier()
    io = STEP_IO_MANAGER_KEY

    @dg.op(
        name=f"{name}__plan",
        out={"plan": dg.Out(io_manager_key=io), "chunks": dg.DynamicOut(io_manager_key=io)},
        tags=fc.tags,
    )
    def plan(
        context: dg.OpExecutionContext,
        config: ScoringConfig,
        champion: dict,
        frame_store: FrameStoreResource,
        model_store: ModelStoreResource,
    ):
        """Gates of the partition and its row ranges of ``scoring.fan_out_rows`` rows."""
        asset_context: Any = _AsScoringAsset(context, fc, name)
        accepted = validation_gate(asset_context, fc, config.accept_failed_validation)
        record, _ = _load_champion(fc, champion, model_store)
        versions = hindsight_guard(asset_context, record, config.allow_hindsight)
        partition = context.partition_key
        source = frame_store.store().path(list(fc.key("validated").path), partition)
        if not source.exists():
            raise dg.Failure(
                f"{source}: no stored data for partition {partition} of asset "
                f"{fc.key('validated').to_user_string()}; materialize it first (job {feed.name}__ingest)"
            )
        ranges = chunk_ranges(parquet_rows(source), fan_out_rows)
        context.log.info(f"{partition}: {len(ranges)} chunks of at most {fan_out_rows} rows")
        yield dg.Output({**_plain(versions), **_plain(accepted)}, "plan")
        for index, (start, stop) in enumerate(ranges):
            yield dg.DynamicOutput(
                {"index": index, "start": start, "stop": stop},
                mapping_key=f"chunk_{index:05d}",
                output_name="chunks",
            )

    @dg.op(name=f"{name}__score_chunk", out=dg.Out(io_manager_key=io), tags=fc.tags)
    def score_chunk(
        context: dg.OpExecutionContext,
        chunk: dict,
        champion: dict,
        frame_store: FrameStoreResource,
        model_store: ModelStoreResource,
    ) -> dict:
        """Score one row range of the partition with the champion into a file of its own."""
        _, model = _load_champion(fc, champion, model_store)
        store = frame_store.store()
        partition = context.partition_key
        source = store.path(list(fc.key("validated").path), partition)
        history = warmup_history(_AsScoringAsset(context, fc, name), fc, store, model)  # type: ignore[arg-type]
        path = (
            chunk_dir(frame_store, fc, partition, context.run_id) / f"{chunk['index']:05d}.parquet"
        )
        scored = score_parquet_range(
            model,
            source,
            path,
            _layout(fc, champion),
            start=chunk["start"],
            stop=chunk["stop"],
            index=chunk["index"],
            history=history,
        )
        context.add_output_metadata(
            {"rows": scored.rows, "scoring_seconds": scored.scoring_seconds, "path": str(path)}
        )
        return {
            "index": scored.index,
            "path": str(scored.path),
            "rows": scored.rows,
            "scoring_seconds": scored.scoring_seconds,
        }

    @dg.op(
        name=f"{name}__combine",
        out=dg.Out(io_manager_key="frame_io_manager"),
        tags=fc.tags,
    )
    def combine(
        context: dg.OpExecutionContext,
        plan: dict,
        chunks: list[dict],
        champion: dict,
        frame_store: FrameStoreResource,
        reports: ReportStoreResource,
    ):
        """Join the scored chunks in order into the partition's ``anomaly_scores`` file."""
        partition = context.partition_key
        rows = sum(int(c["rows"]) for c in chunks)
        limit = alert_limit(_AsScoringAsset(context, fc, name), fc, rows)  # type: ignore[arg-type]
        layout = dataclasses.replace(_layout(fc, champion), alert_limit=limit)
        destination = frame_store.store().path(list(asset_key.path), partition)
        result = combine_scored_chunks(
            [
                ScoredChunk(
                    index=int(c["index"]),
                    path=Path(c["path"]),
                    rows=int(c["rows"]),
                    scoring_seconds=float(c["scoring_seconds"]),
                )
                for c in chunks
            ],
            destination,
            layout,
        )
        shutil.rmtree(chunk_dir(frame_store, fc, partition, context.run_id), ignore_errors=True)
        # as the one-step asset: one plot per day and model version, a rescore keeps the first
        png = (
            reports.feed_dir(feed.name, "scores")
            / f"{partition}.model-{champion['version']}.hist.png"
        )
        metadata = score_metadata(
            result.scores,
            result.flags,
            result.severity_counts,
            result.labels,
            result.scoring_seconds,
            champion,
            f"{feed.name} {partition}",
            png,
        )
        recorded = {
            k: (dg.MetadataValue.json(v) if isinstance(v, dict | list) else v)
            for k, v in plan.items()
        }
        metadata.update(
            {
                **report_links(reports.base_dir, reports.base_url, score_histogram_png=png),
                **recorded,
                **budget_metadata(result.flags, result.alerts, limit),
                "path": dg.MetadataValue.path(str(destination)),
                "scoring_chunks": result.chunks,
                "fan_out_rows": fan_out_rows,
            }
        )
        # the file is written; the frame IO manager stores nothing for a None value
        return dg.Output(None, metadata=rounded(metadata))

    def one_step_config(config: ScoringConfig) -> dict:
        # the one-step asset's run config, handed to the step that runs its gates
        values = config.model_dump() if isinstance(config, ScoringConfig) else dict(config)
        return {plan.name: {"config": values}}

    @dg.graph_asset(
        key=asset_key,
        ins={"champion": dg.AssetIn(key=fc.key("champion"))},
        partitions_def=fc.partitions_def,
        # the fan-out is within one partition: a backfill is one run per partition
        backfill_policy=dg.BackfillPolicy.multi_run(1),
        group_name=feed.name,
        kinds={"parquet"},
        tags=fc.tags,
        config=dg.ConfigMapping(config_fn=one_step_config),
        resource_defs={io: step_io_manager(home_subdir("steps"))},
        description=f"Per-row anomaly score, normalized score, flag, p-value, severity and top features "
        f"for one day of `{feed.name}`, scored by the current champion in chunks of {fan_out_rows} rows, "
        "one step each, with the model version that scored it.",
    )
    def anomaly_scores(champion):
        planned, chunks = plan(champion)
        scored = chunks.map(lambda chunk: score_chunk(chunk, champion))
        return combine(planned, scored.collect(), champion)

    return anomaly_scores
