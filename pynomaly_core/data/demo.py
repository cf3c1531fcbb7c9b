"""The offline demo feed: seeded machine telemetry with labelled anomalies and a drift event.

Each day, every machine reports every ``interval_minutes``: ``rpm``, ``power_kw``,
``temperature_c``, ``vibration_mm_s``, ``pressure_bar`` (correlated through the
machine's load, which follows a daily cycle) and its ``machine_type``. Three kinds of
anomaly are injected and labelled ``is_anomaly = 1``:

* **point** — one reading with a spike in one sensor (vibration, temperature or pressure);
* **contextual** — daytime load levels in the middle of the night, or power and
  temperature that contradict each other (each value is normal on its own);
* **collective** — an hour-long run of one machine with rising vibration and falling
  pressure, each reading only mildly unusual.

From ``drift_date`` on, the plant runs hotter and vibrates more (a sensor recalibration
and a new duty cycle): the data shifts without being labelled anomalous, which is what
drift monitoring and retraining must catch.

The same (seed, date) always yields the same frame.

>>> import datetime as dt
>>> from pynomaly_core.data.demo import DemoSettings, generate_day
>>> day = generate_day(dt.date(2026, 11, 1), DemoSettings(machines=2, interval_minutes=30))
>>> len(day), sorted(day["machine_type"].unique())[:1]
(96, ['lathe'])
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

MACHINE_TYPES = ("press", "lathe", "mill")
# per type: nominal rpm, power per unit load, base temperature
_TYPE_PROFILE = {
    "press": (900.0, 42.0, 48.0),
    "lathe": (1800.0, 18.0, 41.0),
    "mill": (1400.0, 27.0, 44.0),
}


@dataclass(frozen=True)
class DemoSettings:
    """Generator settings (mirrors the demo feed's ``source`` block)."""

    seed: int = 7
    machines: int = 6
    interval_minutes: int = 5
    anomaly_rate: float = 0.01
    drift_date: dt.date | None = None
    drift_strength: float = 1.0


def _load_profile(hours: np.ndarray, shift: float) -> np.ndarray:
    """Daily duty cycle: low at night, peak mid-afternoon (0.15 .. 0.95)."""
    cycle = 0.55 + 0.4 * np.sin(2 * np.pi * (hours - 9.0 - shift) / 24.0)
    return np.clip(cycle, 0.15, 0.95)


def generate_day(day: dt.date, settings: DemoSettings = DemoSettings()) -> pd.DataFrame:
    """All readings of ``day`` (UTC) as a DataFrame with an ``is_anomaly`` label column."""
    rng = np.random.default_rng([settings.seed, day.toordinal()])
    steps = (24 * 60) // settings.interval_minutes
    start = pd.Timestamp(day, tz="UTC")
    times = start + pd.to_timedelta(np.arange(steps) * settings.interval_minutes, unit="min")
    hours = times.hour.to_numpy() + times.minute.to_numpy() / 60.0
    drifted = settings.drift_date is not None and day >= settings.drift_date
    drift = settings.drift_strength if drifted else 0.0

    frames = []
    for m in range(settings.machines):
        mtype = MACHINE_TYPES[m % len(MACHINE_TYPES)]
        rpm0, kw_per_load, temp0 = _TYPE_PROFILE[mtype]
        # each machine has its own fixed character, independent of the day
        char = np.random.default_rng([settings.seed, 1_000 + m])
        shift = char.uniform(-1.5, 1.5)
        efficiency = char.uniform(0.9, 1.1)
        load = _load_profile(hours, shift) + rng.normal(0, 0.04, steps)
        load = np.clip(load, 0.05, 1.0)
        rpm = rpm0 * (0.4 + 0.6 * load) + rng.normal(0, 15, steps)
        power = kw_per_load * load * efficiency + rng.normal(0, 0.8, steps)
        ambient = 18 + 5 * np.sin(2 * np.pi * (hours - 14.0) / 24.0)
        temperature = (
            temp0 + 0.35 * (ambient - 18) + 14 * load + rng.normal(0, 0.9, steps) + 6.0 * drift
        )
        vibration = 1.2 + 2.2 * load + rng.normal(0, 0.18, steps)
        vibration = vibration * (1.0 + 0.35 * drift)
        pressure = 6.0 + 0.8 * load + rng.normal(0, 0.08, steps)
        frames.append(
            pd.DataFrame(
                {
                    "reading_id": [f"m{m + 1:02d}-{t:%Y%m%dT%H%M}" for t in times],
                    "event_time": times,
                    "machine_id": f"m{m + 1:02d}",
                    "machine_type": mtype,
                    "rpm": rpm,
                    "power_kw": power,
                    "temperature_c": temperature,
                    "vibration_mm_s": vibration,
                    "pressure_bar": pressure,
                    "is_anomaly": 0,
                    "anomaly_kind": "",
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    _inject(frame, rng, settings, hours_of=lambda idx: frame.loc[idx, "event_time"].dt.hour)
    frame = frame.sort_values(["event_time", "machine_id"], kind="stable").reset_index(drop=True)
    return frame


def _inject(
    frame: pd.DataFrame,
    rng: np.random.Generator,
    settings: DemoSettings,
    hours_of: Callable[[np.ndarray], pd.Series],
) -> None:
    n = len(frame)
    budget = round(settings.anomaly_rate * n)
    if budget == 0:
        return
    run_len = 8
    n_collective_runs = max(1, budget // (3 * run_len))
    n_point = max(1, (budget - n_collective_runs * run_len) // 2)
    n_context = max(1, budget - n_collective_runs * run_len - n_point)

    taken = np.zeros(n, dtype=bool)

    def pick(count: int, candidates: np.ndarray) -> np.ndarray:
        free = candidates[~taken[candidates]]
        chosen = rng.choice(free, size=min(count, free.size), replace=False)
        taken[chosen] = True
        return cast("np.ndarray", chosen)

    # point anomalies: a spike in one sensor
    idx = pick(n_point, np.arange(n))
    for i in idx:
        col = rng.choice(["vibration_mm_s", "temperature_c", "pressure_bar"])
        if col == "vibration_mm_s":
            frame.loc[i, col] = frame.loc[i, col] * rng.uniform(2.2, 3.5)
        elif col == "temperature_c":
            frame.loc[i, col] = frame.loc[i, col] + rng.uniform(14, 25)
        else:
            frame.loc[i, col] = frame.loc[i, col] - rng.uniform(1.2, 2.0)
    frame.loc[idx, ["is_anomaly", "anomaly_kind"]] = [1, "point"]

    # contextual: night-time full load, or power that the temperature contradicts
    night = np.where(hours_of(np.arange(n)).isin([1, 2, 3, 4]).to_numpy())[0]
    idx = pick(n_context, night)
    for i in idx:
        mtype = frame.loc[i, "machine_type"]
        rpm0, kw_per_load, _ = _TYPE_PROFILE[mtype]
        if rng.random() < 0.5:
            frame.loc[i, "rpm"] = rpm0 * 0.95
            frame.loc[i, "power_kw"] = kw_per_load * 0.92
        else:
            frame.loc[i, "power_kw"] = kw_per_load * 0.9
            frame.loc[i, "temperature_c"] = frame.loc[i, "temperature_c"] - 6.0
    frame.loc[idx, ["is_anomaly", "anomaly_kind"]] = [1, "contextual"]

    # collective: an hour of one machine degrading
    machines = frame["machine_id"].unique()
    placed, attempts = 0, 0
    while placed < n_collective_runs and attempts < 50 * n_collective_runs:
        attempts += 1
        machine = rng.choice(machines)
        rows = np.where(frame["machine_id"].to_numpy() == machine)[0]
        start = rng.integers(0, rows.size - run_len)
        run = rows[start : start + run_len]
        if taken[run].any():
            continue  # overlaps an earlier anomaly: draw another place
        taken[run] = True
        placed += 1
        ramp = np.linspace(0.6, 1.6, run_len)
        frame.loc[run, "vibration_mm_s"] = frame.loc[run, "vibration_mm_s"].to_numpy() + ramp
        frame.loc[run, "pressure_bar"] = frame.loc[run, "pressure_bar"].to_numpy() - 0.35 * ramp
        frame.loc[run, ["is_anomaly", "anomaly_kind"]] = [1, "collective"]
