"""benchmarks/nab.py runs on 3 shared NAB files and prints ours next to the published detectors,
all normalized on the same files (skips when the shared NAB data is absent)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NAB = REPO_ROOT.parent / "shared" / "datasets" / "timeseries" / "nab"


@pytest.mark.skipif(not NAB.is_dir(), reason=f"shared NAB data not found at {NAB}")
def test_nab_smoke_prints_ours_and_the_published_scores(capsys):
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks import nab as script

    table = script.main(["--smoke", "--detectors", "IForest"])
    out = capsys.readouterr().out
    assert "NAB standard profile on 3 shared files" in out
    rows = dict(zip(table["detector"], table["nab_standard"], strict=True))
    assert {"IForest (derived)", "IForest (raw value)", "Numenta HTM (published)"} <= set(rows)
    assert all(math.isfinite(v) for v in rows.values())
    # the published detectors normalized on these files stay within the scale's bounds
    assert all(v <= 100.0 for k, v in rows.items() if k.endswith("(published)"))
