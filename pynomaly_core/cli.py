"""``pynomaly``: what the Dagster CLI does not cover (checking a feed file, the registry, offline scoring).

* ``pynomaly feed check FEED.yaml`` parses the feed and validates a sample of one day of its
  source against it, printing what ingestion would quarantine, by rule, with example rows, and
  when the day passes the feed's partition keys and the commands that launch its first runs;
* ``pynomaly detectors`` prints the detector registry as a table;
* ``pynomaly score --feed FEED.yaml FILE`` scores a CSV or Parquet file with the feed's champion
  (as the last training run in ``$PYNOMALY_HOME`` recorded it), offline, and writes a CSV with
  score, p-value and severity per row.

Exit status: 0 done, 1 the check found problems (rows quarantined above the feed's tolerance,
no champion), 2 bad input (a feed file or data file that cannot be used). Dagster is not
imported (this is ``pynomaly_core``); the runs themselves go through ``dagster``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import pandas as pd

if TYPE_CHECKING:
    from pynomaly_core.data.config import FeedConfig

__all__ = ["main"]

#: rows of the source day ``feed check`` validates by default
SAMPLE_ROWS = 10_000
#: quarantined rows ``feed check`` shows
SHOWN_ROWS = 5


class CliError(Exception):
    """Bad input: printed as one line on stderr, exit status 2."""


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line ``argv`` (None: ``sys.argv[1:]``); returns the exit status."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args, out))
    except CliError as exc:
        print(f"pynomaly: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pynomaly", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    feed = commands.add_parser("feed", help="work with a feed file").add_subparsers(
        required=True, metavar="ACTION"
    )
    check = feed.add_parser("check", help="validate a feed file and a sample of its source")
    check.add_argument("file", type=Path, help="the feed's YAML file")
    check.add_argument("--day", help="source day to sample, YYYY-MM-DD (default: start_date)")
    check.add_argument("--rows", type=int, default=SAMPLE_ROWS, help="rows to validate")
    check.set_defaults(run=_feed_check)

    detectors = commands.add_parser("detectors", help="the detector registry as a table")
    detectors.add_argument("--installed", action="store_true", help="only usable detectors")
    detectors.set_defaults(run=_detectors)

    score = commands.add_parser("score", help="score a file with a feed's champion, offline")
    score.add_argument("--feed", type=Path, required=True, help="the feed's YAML file")
    score.add_argument("file", type=Path, help="CSV or Parquet file with the feed's columns")
    score.add_argument("--output", type=Path, help="CSV to write (default: <file>.scores.csv)")
    score.set_defaults(run=_score)
    return parser


# ---------------------------------------------------------------------------- feed check
def _load_feed(path: Path) -> FeedConfig:
    from pynomaly_core.data.config import FeedConfigError, load_feed

    try:
        return load_feed(path)
    except (FeedConfigError, OSError) as exc:
        raise CliError(str(exc)) from exc


def _feed_check(args: argparse.Namespace, out: TextIO) -> int:
    from pynomaly_core.data.sources import SourceReadError, partition_window, read_partition
    from pynomaly_core.data.validation import SchemaMismatchError, validate_partition

    feed = _load_feed(args.file)
    print(f"{args.file}: feed {feed.name!r} is valid ({len(feed.features)} features)", file=out)
    day = _day(args.day) if args.day else feed.partitioning.start_date
    if args.rows < 1:
        raise CliError(f"--rows must be at least 1, got {args.rows}")
    try:
        part = read_partition(feed, day)
    except (SourceReadError, OSError, ValueError) as exc:
        raise CliError(f"feed {feed.name!r}, day {day}: cannot read the source: {exc}") from exc
    raw = part.frame.head(args.rows)
    start, end = partition_window(day)
    try:
        result = validate_partition(
            raw, feed, source=part.source, partition_start=start, partition_end=end
        )
    except SchemaMismatchError as exc:
        raise CliError(str(exc)) from exc
    rate = result.pass_rate
    print(
        f"day {day}: {result.raw_rows} rows sampled from {part.source}, {result.valid_rows} valid, "
        f"{result.quarantined_rows} would be quarantined"
        + (
            f" (pass rate {rate:.1%}, minimum {feed.validation.min_pass_rate:.0%})"
            if rate is not None
            else ""
        ),
        file=out,
    )
    if result.quarantined_rows:
        print("\nfailures by rule (column: rule  count):", file=out)
        for rule, count in result.failures_by_rule().items():
            print(f"  {rule}  {count}", file=out)
        shown = result.quarantine.drop_duplicates("row_number").head(SHOWN_ROWS)
        print(f"\nfirst {len(shown)} quarantined rows:", file=out)
        for row in shown.itertuples(index=False):
            print(
                f"  row {row.row_number} (key {row.record_key}): {row.column_name or '<row>'} "
                f"{row.rule}, value {row.failure_value!r}",
                file=out,
            )
    too_few = result.raw_rows < feed.validation.min_rows
    failing = rate is not None and rate < feed.validation.min_pass_rate
    if too_few:
        print(f"\nfewer rows than validation.min_rows ({feed.validation.min_rows})", file=out)
    if failing or too_few:
        return 1
    _print_next_steps(feed, args.file, day, out)
    return 0


def _print_next_steps(feed: FeedConfig, path: Path, day: dt.date, out: TextIO) -> None:
    """The partition keys of the feed and the commands that launch its first runs (docs/run_a_feed.md)."""
    start = feed.partitioning.start_date
    if feed.partitioning.granularity == "hourly":
        key, first = f"{day}-00:00", f"{start}-00:00"
        unit, this = "UTC hour (keys YYYY-MM-DD-HH:MM)", "this day's first hour"
    else:
        key, first, unit, this = str(day), str(start), "UTC day (keys YYYY-MM-DD)", "this day"
    launch = "dagster job launch -w workspace.yaml -j"
    tags = f'--tags \'{{"dagster/partition": "{key}"}}\''
    print(
        f"\npartitions: one per {unit} from {first}; {this}: {key}\n"
        f"next (docs/run_a_feed.md): with PYNOMALY_FEEDS_DIR={path.resolve().parent}, from the "
        "directory of workspace.yaml:\n"
        f"  ingest it:   {launch} {feed.name}__ingest {tags}\n"
        f"  train:       {launch} {feed.name}__train\n"
        f"  score it:    {launch} {feed.name}__score {tags}",
        file=out,
    )


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise CliError(f"--day {text!r} is not a date (YYYY-MM-DD)") from exc


# ---------------------------------------------------------------------------- detectors
def _detectors(args: argparse.Namespace, out: TextIO) -> int:
    from pynomaly_core.detectors.registry import available

    specs = available(installed_only=args.installed)
    rows = [
        (s.name, s.family, s.framework, "yes" if s.installed else f"no ({s.extra})", s.description)
        for s in specs
    ]
    header = ("name", "family", "framework", "installed", "description")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        print("  ".join([*cells, str(row[4])]).rstrip(), file=out)
    return 0


# ---------------------------------------------------------------------------- score
def _score(args: argparse.Namespace, out: TextIO) -> int:
    from pynomaly_core.data.validation import SchemaMismatchError, validate_partition
    from pynomaly_core.lifecycle import ChampionRecord, NoChampionError
    from pynomaly_core.paths import pynomaly_home
    from pynomaly_core.signing import resolve_signing_key
    from pynomaly_core.storage import JsonStore
    from pynomaly_core.streaming import ScoringLayout, score_frame

    feed = _load_feed(args.feed)
    home = pynomaly_home()
    champion = JsonStore(home / "values").path([feed.name, "champion"])
    if not champion.exists():
        print(
            f"feed {feed.name!r} has no champion in {home} ({champion} is missing): train it first "
            f"(job {feed.name}__train)",
            file=out,
        )
        return 1
    record = ChampionRecord.from_value(JsonStore(home / "values").read([feed.name, "champion"]))
    try:
        model = record.load(resolve_signing_key(home, stores=[home / "models"]))
    except NoChampionError as exc:
        print(f"feed {feed.name!r} has no champion: {exc}", file=out)
        return 1
    raw = _read_table(args.file)
    try:
        result = validate_partition(raw, feed, source=str(args.file))
    except SchemaMismatchError as exc:
        raise CliError(str(exc)) from exc
    layout = ScoringLayout(
        record_key=feed.record_key,
        event_time=feed.event_time,
        passthrough=tuple(feed.passthrough),
        label=None,
        model_name=str(record.detector),
        model_version=str(record.version),
    )
    scored = score_frame(model, result.valid, layout)
    output = args.output or args.file.with_name(f"{args.file.name}.scores.csv")
    columns = [
        "record_key",
        "event_time",
        *feed.passthrough,
        "score",
        "normalized_score",
        "p_value",
        "severity",
        "is_anomaly",
        "top_features",
        "model_version",
    ]
    scored[[c for c in dict.fromkeys(columns) if c in scored.columns]].to_csv(output, index=False)
    print(
        f"{output}: {len(scored)} rows scored with {record.detector} version {record.version}, "
        f"{int(scored['is_anomaly'].sum())} anomalies; {result.quarantined_rows} rows failed "
        "validation and were not scored",
        file=out,
    )
    return 0


def _read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file, by its suffix; ``CliError`` naming the file otherwise."""
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        if path.suffix.lower() in {".csv", ".gz"}:
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    except (ValueError, OSError) as exc:
        raise CliError(f"{path}: cannot read it: {exc}") from exc
    raise CliError(f"{path}: expected a .csv or .parquet file")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
