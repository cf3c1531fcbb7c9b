"""Event times to UTC without guessing.

A timestamp with a UTC offset (``+05:30``, ``-0500``) or a UTC designator (``Z``, ``UTC``,
``GMT``) is converted exactly. A timestamp that names any other zone (``EST``, ``CET``,
``Europe/Berlin``) is refused: abbreviations are ambiguous (``IST`` is three zones) and
pandas would silently drop the name and read the clock time as UTC. A naive timestamp is
local time in the feed's ``event_time_zone`` (default UTC); a local time that does not exist
(the hour skipped when clocks go forward) or exists twice (the hour repeated when they go back)
is refused rather than shifted.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd

#: designators that mean UTC itself
UTC_NAMES = frozenset({"Z", "UTC", "GMT", "UT"})
#: trailing words that are part of the clock, not a zone
_CLOCK_WORDS = frozenset({"AM", "PM"})
# a trailing zone name: letters (and '/', '_' for IANA names) after a space or directly after a digit
_ZONE_TOKEN = r"(?:(?<=\d)|\s)([A-Za-z][A-Za-z_/]*(?:[+-]\d{1,2})?)$"
# an explicit numeric offset after a clock time: 10:00+05:30, 10:00:00.5 -0500, 10:00+05
_OFFSET = r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*[+-]\d{2}(?::?\d{2})?$"


@dataclass
class ParsedTimes:
    """UTC timestamps (NaT where refused) and, per refused row, the rule it broke."""

    times: pd.Series
    failures: pd.Series  # the rule text where refused, None elsewhere


def to_utc(values: pd.Series, *, zone: str = "UTC") -> ParsedTimes:
    """Parse event times to UTC; ``zone`` is the IANA zone of naive values."""
    failures = pd.Series(None, index=values.index, dtype=object)
    if pd.api.types.is_datetime64_any_dtype(values):
        times = (
            values
            if getattr(values.dt, "tz", None) is not None
            else _localize(values, zone, failures)
        )
        return ParsedTimes(times.dt.tz_convert("UTC"), failures)
    if pd.api.types.is_numeric_dtype(values):
        return ParsedTimes(pd.to_datetime(values, utc=True, errors="coerce"), failures)

    present = values.notna()
    text = (
        values.where(present)
        .astype(object)
        .map(lambda v: None if v is None or v is pd.NaT else str(v).strip())
    )
    token = text.str.extract(_ZONE_TOKEN, expand=False)
    upper = token.str.upper()
    named = token.notna() & ~upper.isin(UTC_NAMES | _CLOCK_WORDS)
    if named.any():
        failures[named] = [
            f"named time zone {t!r} is ambiguous: write a UTC offset (e.g. 2026-03-06 10:00:00-05:00) "
            f"or declare event_time_zone for naive local times"
            for t in token[named]
        ]
    utc_marked = upper.isin(UTC_NAMES) | text.str.contains(_OFFSET, regex=True, na=False)
    usable = text.notna() & ~named
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    aware = usable & utc_marked
    if aware.any():
        out[aware] = _parse(text[aware], utc=True)
    naive = usable & ~utc_marked
    if naive.any():
        parsed = _parse(text[naive], utc=False)
        if (
            getattr(parsed.dt, "tz", None) is not None
        ):  # e.g. ISO strings pandas read as aware anyway
            out[naive] = parsed.dt.tz_convert("UTC")
        else:
            out[naive] = _localize(parsed, zone, failures).dt.tz_convert("UTC")
    return ParsedTimes(out, failures)


def _parse(text: pd.Series, *, utc: bool) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": mixed formats are allowed
        try:
            return pd.to_datetime(text, utc=utc, errors="coerce", format="mixed")
        except (ValueError, TypeError):  # mixed aware and naive values among the naive ones
            return pd.to_datetime(text, utc=True, errors="coerce", format="mixed")


def _localize(naive: pd.Series, zone: str, failures: pd.Series) -> pd.Series:
    if zone == "UTC":
        return naive.dt.tz_localize("UTC")
    local = naive.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    refused = naive.notna() & local.isna()
    if refused.any():
        failures.loc[refused[refused].index] = (
            f"local time does not exist or is ambiguous in event_time_zone {zone!r} (a daylight-saving change)"
        )
    return local
