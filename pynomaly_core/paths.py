"""Where Pynomaly keeps local state: ``$PYNOMALY_HOME`` (default ``./.pynomaly``)."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "PYNOMALY_HOME"


def pynomaly_home() -> Path:
    """Directory for local state (models, frames, reports, the embedded warehouse)."""
    return Path(os.environ.get(HOME_ENV, Path.cwd() / ".pynomaly")).resolve()
