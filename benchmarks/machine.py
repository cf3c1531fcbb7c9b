"""What a benchmark report says about the machine it ran on (shared by the benchmark scripts)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path


def cpu_description() -> str:
    """CPU model and the cores this process may use."""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores available"


def utc_stamp() -> str:
    return f"{_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC"


def load_average() -> str:
    """1/5/15-minute load averages, or ``n/a`` where the OS has none."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
