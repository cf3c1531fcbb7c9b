"""Local storage of frames and small documents under the project home.

DataFrames are stored as Parquet (never pickled), one file per asset partition;
small documents (model references, metric dicts) as JSON. Writes are atomic
(write to a temporary file, then rename), so a crashed run never leaves a
half-written partition behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Write ``path`` through ``write(tmp)`` on a temporary file beside it, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


class FrameStore:
    """Parquet files at ``<root>/<key...>/<partition>.parquet`` (or ``<key...>.parquet``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: list[str], partition: str | None = None) -> Path:
        base = self.root.joinpath(*key)
        return (
            base / f"{partition}.parquet" if partition is not None else base.with_suffix(".parquet")
        )

    def write(self, frame: pd.DataFrame, key: list[str], partition: str | None = None) -> Path:
        path = self.path(key, partition)
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
        return path

    def read(self, key: list[str], partition: str | None = None) -> pd.DataFrame:
        path = self.path(key, partition)
        if not path.exists():
            where = f"partition {partition} of " if partition else ""
            raise FileNotFoundError(
                f"{path}: no stored data for {where}asset {'/'.join(key)}; materialize it first"
            )
        return pd.read_parquet(path)

    def exists(self, key: list[str], partition: str | None = None) -> bool:
        return self.path(key, partition).exists()


class JsonStore:
    """JSON documents at ``<root>/<key...>[/<partition>].json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: list[str], partition: str | None = None) -> Path:
        base = self.root.joinpath(*key)
        return base / f"{partition}.json" if partition is not None else base.with_suffix(".json")

    def write(self, doc: Any, key: list[str], partition: str | None = None) -> Path:
        path = self.path(key, partition)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=2, default=str)))
        return path

    def read(self, key: list[str], partition: str | None = None) -> Any:
        path = self.path(key, partition)
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no stored value for asset {'/'.join(key)}; materialize it first"
            )
        return json.loads(path.read_text())
