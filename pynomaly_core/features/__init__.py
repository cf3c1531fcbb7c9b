"""Features derived from a feed's own history (lags, differences, rolling statistics, calendar)."""

from pynomaly_core.features.derived import (
    Derivation,
    Warmup,
    derive,
    history_tail,
    warmup,
    warmup_covered,
)

__all__ = ["Derivation", "Warmup", "derive", "history_tail", "warmup", "warmup_covered"]
