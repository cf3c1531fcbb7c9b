"""Features derived from a feed's own history (lags, differences, rolling statistics, calendar)."""

from pynomaly_core.features.derived import Warmup, derive, history_tail, warmup

__all__ = ["Warmup", "derive", "history_tail", "warmup"]
