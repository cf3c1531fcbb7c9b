"""Constants shared by the maintenance tests."""

from __future__ import annotations

import datetime as dt

TODAY = dt.date(2026, 1, 11)
KEY = "test-maintenance-signing-key"


FIRST, SECOND = "20260101T000000Z-aaaa1111", "20260105T000000Z-bbbb2222"
FULL_LAYOUT = {FIRST: ("IForest", "HBOS", "ECOD"), SECOND: ("IForest",)}
