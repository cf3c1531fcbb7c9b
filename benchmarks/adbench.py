#!/usr/bin/env python
"""Benchmark the Pynomaly detector registry on ADBench's classical datasets.

The ADBench protocol (Han et al., NeurIPS 2022; see ``shared/datasets/adbench/README.md``)
as implemented here, one ``(dataset, seed)`` at a time:

1. load ``X`` and ``y`` (1 = anomaly) from ``<n>_<name>.npz``;
2. datasets with fewer than 1,000 rows are resampled *with replacement* up to 1,000 rows,
   datasets with more than 10,000 rows are subsampled (without replacement) to 10,000 rows;
3. 70 % / 30 % stratified train/test split;
4. MinMax scaling fitted on the training split only (test values may leave [0, 1]);
5. features that are constant on the training split are dropped (not part of ADBench:
   PyOD's PCA returns NaN scores on constant columns, see "Deviations" below);
6. every detector is fitted *unsupervised* on the training split (anomalies included) and
   scores the test split; ROC-AUC and average precision are computed on the test split.

The seed drives the resampling, the split (one ``numpy.random.RandomState(seed)`` consumed in
the same order as ADBench's ``DataGenerator``, which seeds NumPy's global generator), the
detector's ``random_state`` and, in case a detector draws from them, NumPy's and Python's global
generators. ADBench reports the mean over seeds 1, 2 and 3.

For every detector whose registry entry wraps a reference class (``spec.wraps``, e.g.
``"pyod.models.knn:KNN"``) the same job also fits that class *directly*, with the registry's
default parameters and the same seed, on the same scaled arrays, and reports
``|AUC ours - AUC reference|`` and the largest absolute difference between the two score
vectors. An adapter that reproduces its library shows 0 for both. The published ADBench ROC-AUC
(``published_adbench_unsupervised.csv``) is looked up by the registry name, then by the wrapped
class name, then by a small alias table for scikit-learn equivalents.

Deviations from ADBench, all deliberate and reported in the output:

* ``random_state=seed`` is passed to the detector (ADBench seeds the global generator and
  builds PyOD classes with their defaults, which reads the same generator).
* Constant-on-train features are dropped (``--keep-constant`` turns this off).
* Current library versions (ADBench used pyod 0.9.8 and scikit-learn 0.20.3); the published
  ECOD numbers come from a scoring bug PyOD fixed in 2022.

Cost guard: with ``--max-seconds-per-fit S`` (default 300) every fit-and-score runs in a worker
process that is killed after ``S`` seconds; the job is recorded as ``skipped (timeout)`` and the
remaining seeds of that detector on that dataset are skipped too. ``0`` runs everything in this
process without a limit.

Usage::

    python benchmarks/adbench.py --detectors IForest,KNN --datasets cardio,thyroid \\
        --seeds 1,2,3 --out results.csv --markdown docs/benchmarks.md
    python benchmarks/adbench.py --list
    python benchmarks/adbench.py --from-csv results.csv --markdown report.md   # re-render only
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import inspect
import json
import math
import multiprocessing as mp
import os
import platform
import random
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # running as a script from a checkout
    sys.path.insert(0, str(REPO_ROOT))

#: ADBench's row bounds and test share.
N_MIN_ROWS = 1_000
N_MAX_ROWS = 10_000
TEST_SIZE = 0.3
DEFAULT_SEEDS = (1, 2, 3)
DATA_DIR_ENV = "PYNOMALY_ADBENCH_DIR"
PUBLISHED_CSV = "published_adbench_unsupervised.csv"

#: Registry names with no published column of their own, mapped to the published detector
#: that implements the same algorithm (the defaults may differ; the report says so).
PUBLISHED_ALIASES = {
    "IsolationForest": "IForest",
    "LocalOutlierFactor": "LOF",
    "OneClassSVM": "OCSVM",
}

GENERATED_BEGIN = "<!-- BEGIN GENERATED: benchmarks/adbench.py -->"
GENERATED_END = "<!-- END GENERATED: benchmarks/adbench.py -->"


class BenchmarkError(RuntimeError):
    """A problem with the benchmark's inputs; the message names the file or option at fault."""


# --------------------------------------------------------------------------- datasets
def default_data_dir() -> Path:
    """``$PYNOMALY_ADBENCH_DIR`` if set, else ``<repo root>/../shared/datasets/adbench``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return (REPO_ROOT / ".." / "shared" / "datasets" / "adbench").resolve()


def dataset_name(path: str | Path) -> str:
    """ADBench's dataset name from a file name: ``6_cardio.npz`` -> ``cardio``."""
    stem = Path(path).stem
    number, sep, name = stem.partition("_")
    return name if sep and number.isdigit() else stem


def _adbench_number(path: Path) -> int:
    number = path.stem.partition("_")[0]
    return int(number) if number.isdigit() else 10**9


def list_datasets(data_dir: str | Path) -> list[Path]:
    """The ``.npz`` files in ``data_dir``, in ADBench's numbering order."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise BenchmarkError(
            f"ADBench data directory {data_dir} does not exist; pass --data-dir or set "
            f"{DATA_DIR_ENV}."
        )
    files = sorted(data_dir.glob("*.npz"), key=lambda p: (_adbench_number(p), p.name))
    if not files:
        raise BenchmarkError(f"no .npz files in ADBench data directory {data_dir}.")
    return files


def select_datasets(spec: str, data_dir: str | Path) -> list[Path]:
    """Files named by ``spec``: ``"all"`` or comma-separated names (``cardio``, ``6_cardio``,
    ``6_cardio.npz``; case-insensitive)."""
    files = list_datasets(data_dir)
    if spec.strip().lower() == "all":
        return files
    by_key: dict[str, Path] = {}
    for f in files:
        for key in (f.name, f.stem, dataset_name(f)):
            by_key.setdefault(key.lower(), f)
    chosen: list[Path] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        path = by_key.get(token.lower())
        if path is None:
            names = ", ".join(dataset_name(f) for f in files)
            raise BenchmarkError(f"unknown dataset {token!r} in {data_dir}; available: {names}.")
        if path not in chosen:
            chosen.append(path)
    if not chosen:
        raise BenchmarkError("--datasets selected nothing.")
    return chosen


def load_dataset(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from an ADBench ``.npz``: ``X`` float64 ``(n, d)``, ``y`` int ``(n,)`` in {0, 1}.

    Every check raises :class:`BenchmarkError` naming ``path``.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"X", "y"} - set(data.files)
            if missing:
                raise BenchmarkError(
                    f"{path}: missing array(s) {sorted(missing)}; found {sorted(data.files)}."
                )
            X, y = data["X"], data["y"]
    except BenchmarkError:
        raise
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"{path}: cannot read as an ADBench .npz ({exc}).") from exc
    if X.ndim != 2:
        raise BenchmarkError(f"{path}: X must be 2-D, got shape {X.shape}.")
    y = np.asarray(y).ravel()
    if y.shape[0] != X.shape[0]:
        raise BenchmarkError(f"{path}: X has {X.shape[0]} rows but y has {y.shape[0]} labels.")
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BenchmarkError(f"{path}: X is not numeric ({exc}).") from exc
    if not np.all(np.isfinite(X)):
        raise BenchmarkError(f"{path}: X contains NaN or infinite values.")
    labels = set(np.unique(y).tolist())
    if not labels <= {0, 1}:
        raise BenchmarkError(
            f"{path}: y must hold 0/1 labels (1 = anomaly), found {sorted(labels)}."
        )
    if labels != {0, 1}:
        raise BenchmarkError(
            f"{path}: y needs both classes for ROC-AUC, found only {sorted(labels)}."
        )
    return X, y.astype(np.int64)


# --------------------------------------------------------------------------- protocol
@dataclass
class Split:
    """One ADBench train/test split, already scaled and ready to fit."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    seed: int
    n_rows_original: int
    dropped_features: list[int] = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    def describe(self) -> dict[str, Any]:
        return {
            "n_rows_original": self.n_rows_original,
            "n_train": int(self.X_train.shape[0]),
            "n_test": int(self.X_test.shape[0]),
            "n_features": self.n_features,
            "n_dropped_constant": len(self.dropped_features),
            "train_anomaly_ratio": float(self.y_train.mean()),
            "test_anomaly_ratio": float(self.y_test.mean()),
        }


def resample_rows(
    X: np.ndarray,
    y: np.ndarray,
    rng: np.random.RandomState,
    *,
    n_min: int = N_MIN_ROWS,
    n_max: int = N_MAX_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """ADBench's size rule: fewer than ``n_min`` rows are drawn *with replacement* up to
    ``n_min``; more than ``n_max`` rows are subsampled *without replacement* to ``n_max``;
    anything in between is returned unchanged (same objects)."""
    n = len(y)
    if n < n_min:
        idx = rng.choice(n, n_min, replace=True)
    elif n > n_max:
        idx = rng.choice(n, n_max, replace=False)
    else:
        return X, y
    return X[idx], y[idx]


def minmax_fit_transform(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MinMax scaling fitted on ``X_train`` only, applied to both (test values may leave [0, 1])."""
    from sklearn.preprocessing import MinMaxScaler

    scaler = MinMaxScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test)


def constant_columns(X_train: np.ndarray) -> list[int]:
    """Indices of the columns of ``X_train`` with zero range."""
    return np.flatnonzero(np.ptp(X_train, axis=0) == 0).tolist()


def adbench_split(
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    *,
    test_size: float = TEST_SIZE,
    n_min: int = N_MIN_ROWS,
    n_max: int = N_MAX_ROWS,
    drop_constant: bool = True,
) -> Split:
    """The ADBench split of ``(X, y)`` for ``seed``: resample, stratified split, MinMax on train,
    then (unless ``drop_constant`` is false) drop the features constant on the training split.

    One ``RandomState(seed)`` is consumed in ADBench's order (resampling draw, then the split),
    so the same seed always gives the same split.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).ravel()
    from sklearn.model_selection import train_test_split

    rng = np.random.RandomState(seed)
    n_original = len(y)
    X, y = resample_rows(X, y, rng, n_min=n_min, n_max=n_max)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, shuffle=True, stratify=y, random_state=rng
    )
    X_train, X_test = minmax_fit_transform(X_train, X_test)
    dropped: list[int] = []
    if drop_constant:
        dropped = constant_columns(X_train)
        if dropped:
            keep = np.setdiff1d(np.arange(X_train.shape[1]), dropped)
            X_train, X_test = X_train[:, keep], X_test[:, keep]
    return Split(
        X_train=np.ascontiguousarray(X_train),
        X_test=np.ascontiguousarray(X_test),
        y_train=np.asarray(y_train, dtype=np.int64),
        y_test=np.asarray(y_test, dtype=np.int64),
        seed=int(seed),
        n_rows_original=n_original,
        dropped_features=dropped,
    )


# --------------------------------------------------------------------------- detectors
def _spec(name: str):
    from pynomaly_core.detectors import DetectorError, get_spec

    try:
        return get_spec(name)
    except DetectorError as exc:
        raise BenchmarkError(str(exc)) from None


def select_detectors(spec: str) -> list[str]:
    """Registry names from ``spec``: ``"all"`` = every installed unsupervised detector."""
    from pynomaly_core.detectors import available

    if spec.strip().lower() == "all":
        return [s.name for s in available(installed_only=True) if s.supervision == "unsupervised"]
    names = [t.strip() for t in spec.split(",") if t.strip()]
    if not names:
        raise BenchmarkError("--detectors selected nothing.")
    for name in names:
        s = _spec(name)  # unknown names raise BenchmarkError with close matches
        if s.supervision != "unsupervised":
            raise BenchmarkError(
                f"detector {name!r} is {s.supervision}; ADBench's unsupervised protocol fits "
                "without labels."
            )
        if not s.installed:
            raise BenchmarkError(
                f"detector {name!r} needs {s.framework} ({s.requires_module}), not installed."
            )
    return names


def reference_library(name: str) -> str | None:
    """``"pyod"`` or ``"sklearn"`` when the registry entry wraps a class of that library."""
    wraps = _spec(name).wraps or ""
    module = wraps.partition(":")[0]
    if module.startswith("pyod."):
        return "pyod"
    if module.startswith("sklearn."):
        return "sklearn"
    return None


def _import_class(target: str) -> type:
    import importlib

    module, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _accepts(cls: type, name: str) -> bool:
    params = inspect.signature(cls.__init__).parameters
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def make_ours(name: str, seed: int):
    """The registry detector ``name`` with its defaults and ``random_state=seed`` when it takes one."""
    from pynomaly_core.detectors import create

    target = _import_class(_spec(name).target)
    return create(name, **({"random_state": seed} if _accepts(target, "random_state") else {}))


def make_reference(name: str, seed: int):
    """The wrapped library class of ``name`` built directly, without the adapter.

    Constructor arguments: the registry's default parameters (``spec.defaults``; a nested
    ``params`` dict is flattened) that the class accepts, and ``random_state=seed`` when the
    class takes one. scikit-learn's ``LocalOutlierFactor`` gets ``novelty=True`` because
    scoring a held-out split requires it.
    """
    spec = _spec(name)
    if spec.wraps is None:
        raise BenchmarkError(f"detector {name!r} wraps no reference class.")
    cls = _import_class(spec.wraps)
    defaults = dict(spec.defaults)
    defaults.update(defaults.pop("params", None) or {})
    kwargs = {k: v for k, v in defaults.items() if _accepts(cls, k)}
    if _accepts(cls, "random_state"):
        kwargs["random_state"] = seed
    if spec.wraps.endswith(":LocalOutlierFactor"):
        kwargs["novelty"] = True
    return cls(**kwargs)


def reference_scores(estimator: Any, X: np.ndarray) -> np.ndarray:
    """Scores of a reference estimator, higher = more anomalous (PyOD ``decision_function``;
    scikit-learn ``-score_samples``)."""
    module = type(estimator).__module__
    if module.startswith("sklearn."):
        return -np.asarray(estimator.score_samples(X), dtype=np.float64)
    return np.asarray(estimator.decision_function(X), dtype=np.float64)


def _seed_globals(seed: int) -> None:
    np.random.seed(seed)
    random.seed(seed)


_WARMED: set[tuple[str, str]] = set()


def warm_up(name: str, impl: str) -> None:
    """Fit and score ``name`` once on a tiny random matrix, untimed, so that one-off costs
    (lazy imports, numba compilation) do not land in the first measured fit. Failures are
    ignored here; the measured run reports them."""
    if (name, impl) in _WARMED:
        return
    _WARMED.add((name, impl))
    X = np.random.RandomState(0).rand(64, 3)
    try:
        model = make_ours(name, 0) if impl == "ours" else make_reference(name, 0)
        model.fit(X)
        model.decision_function(X) if impl == "ours" else reference_scores(model, X)
    except Exception:  # noqa: BLE001, S110 - the measured run that follows reports the error
        pass


def evaluate(name: str, impl: str, split: Split, seed: int) -> dict[str, Any]:
    """Fit ``name`` (``impl`` = ``"ours"`` registry detector or ``"reference"`` library class) on
    ``split.X_train`` and score ``split.X_test``.

    Returns ``status`` (``"ok"`` or ``"error: ..."``), ``roc_auc``, ``avg_precision``, ``fit_s``,
    ``score_s`` and the test ``scores``. The first call for a ``(name, impl)`` in a process
    is preceded by an untimed :func:`warm_up`.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    if impl not in ("ours", "reference"):
        raise ValueError(f"impl must be 'ours' or 'reference', got {impl!r}")
    try:
        warm_up(name, impl)
        _seed_globals(seed)
        model = make_ours(name, seed) if impl == "ours" else make_reference(name, seed)
        t0 = time.perf_counter()
        model.fit(split.X_train)
        t1 = time.perf_counter()
        scores = (
            model.decision_function(split.X_test)
            if impl == "ours"
            else reference_scores(model, split.X_test)
        )
        t2 = time.perf_counter()
    except Exception as exc:  # noqa: BLE001 - recorded in the results, the run goes on
        return {"status": f"error: {type(exc).__name__}: {exc}".replace("\n", " ")[:300]}
    scores = np.asarray(scores, dtype=np.float64).ravel()
    bad = int((~np.isfinite(scores)).sum())
    if bad:
        return {
            "status": f"error: {bad} non-finite test scores",
            "fit_s": t1 - t0,
            "score_s": t2 - t1,
        }
    return {
        "status": "ok",
        "roc_auc": float(roc_auc_score(split.y_test, scores)),
        "avg_precision": float(average_precision_score(split.y_test, scores)),
        "fit_s": t1 - t0,
        "score_s": t2 - t1,
        "scores": scores,
    }


# --------------------------------------------------------------------------- published
def load_published(path: str | Path) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(dataset, algorithm): (roc_auc, pr_auc)}`` from ``published_adbench_unsupervised.csv``."""
    path = Path(path)
    table: dict[tuple[str, str], tuple[float, float]] = {}
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"dataset", "algorithm", "roc_auc", "pr_auc"}
            if not need <= set(reader.fieldnames or []):
                raise BenchmarkError(
                    f"{path}: expected columns {sorted(need)}, found {reader.fieldnames}."
                )
            for line, row in enumerate(reader, start=2):
                if not (row["roc_auc"] or "").strip():
                    continue  # no published number (e.g. DAGMM on some datasets)
                try:
                    table[(row["dataset"], row["algorithm"])] = (
                        float(row["roc_auc"]),
                        float(row["pr_auc"]) if (row["pr_auc"] or "").strip() else float("nan"),
                    )
                except ValueError as exc:
                    raise BenchmarkError(f"{path}, line {line}: {exc}.") from exc
    except OSError as exc:
        raise BenchmarkError(f"cannot read published results {path} ({exc}).") from exc
    return table


def published_name(name: str, algorithms: Iterable[str]) -> tuple[str | None, str]:
    """The published column for registry detector ``name`` and how it was matched
    (``"name"``, ``"wrapped class"``, ``"alias"`` or ``""`` when none)."""
    algorithms = set(algorithms)
    if name in algorithms:
        return name, "name"
    wraps = _spec(name).wraps
    if wraps and wraps.startswith("pyod."):
        cls = wraps.rpartition(":")[2]
        if cls in algorithms:
            return cls, "wrapped class"
    alias = PUBLISHED_ALIASES.get(name)
    if alias in algorithms:
        return alias, "alias"
    return None, ""


# --------------------------------------------------------------------------- worker
def _worker_main(conn, threads: int | None) -> None:  # pragma: no cover - runs in a subprocess
    """Serve ``prepare``, ``warmup`` and ``evaluate`` requests over ``conn`` until told to stop."""
    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    cache: dict[tuple[str, int, bool], Split] = {}
    while True:
        try:
            req = conn.recv()
        except EOFError:
            return
        if req is None:
            return
        try:
            key = (req["path"], req["seed"], req["drop_constant"])
            if key not in cache:
                cache.clear()
                X, y = load_dataset(req["path"])
                cache[key] = adbench_split(X, y, req["seed"], drop_constant=req["drop_constant"])
            split = cache[key]
            if req["op"] == "prepare":
                conn.send({"status": "ok", **split.describe()})
            elif req["op"] == "warmup":
                warm_up(req["detector"], req["impl"])
                conn.send({"status": "ok"})
            else:
                conn.send(evaluate(req["detector"], req["impl"], split, req["seed"]))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            conn.send({"status": f"error: {type(exc).__name__}: {exc}"})


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def worker_threads(threads: int | None) -> Iterator[None]:
    """Set the BLAS/OpenMP thread variables to ``threads`` while a worker process starts.

    The worker reads them when it imports numpy; this process gets its own values back
    afterwards (it may be a test process that runs other things next). ``None`` or 0 leaves
    the libraries' defaults.
    """
    saved = {v: os.environ.get(v) for v in _THREAD_VARS}
    if threads:
        os.environ.update({v: str(threads) for v in _THREAD_VARS})
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


class Runner:
    """Runs jobs in one worker process and kills it when a job outlives ``max_seconds``.

    ``max_seconds`` of 0 (or None) runs every job in this process without a limit.
    """

    def __init__(self, max_seconds: float | None, threads: int | None) -> None:
        self.max_seconds = max_seconds or 0
        self.threads = threads
        self._proc = None
        self._conn = None
        self._prepared: dict[str, Any] | None = None
        self._local: dict[tuple[str, int, bool], Split] = {}
        self._warm: set[tuple[str, str]] = set()  # warmed up in the current worker

    # -- process management
    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker_main, args=(child, self.threads), daemon=True)
        with worker_threads(self.threads):
            self._proc.start()
        child.close()
        self._conn = parent

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(10)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(5)
            except (OSError, BrokenPipeError):
                pass
        self._kill()

    def _call(self, req: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        if self._proc is None or not self._proc.is_alive():
            self._kill()
            self._start()
            self._warm = set()
            if req["op"] != "prepare" and self._prepared is not None:
                self._conn.send(self._prepared)  # rebuild the split outside the time limit
                self._conn.recv()
        self._conn.send(req)
        try:
            if self._conn.poll(timeout):
                return self._conn.recv()
        except (EOFError, OSError):
            code = self._proc.exitcode if self._proc is not None else None
            self._kill()
            return {"status": f"error: worker died (exit code {code})"}
        self._kill()
        return {"status": "skipped (timeout)"}

    # -- API
    def prepare(self, path: Path, seed: int, drop_constant: bool) -> dict[str, Any]:
        """Build the split for ``(path, seed)``; returns its description."""
        if not self.max_seconds:
            X, y = load_dataset(path)
            split = adbench_split(X, y, seed, drop_constant=drop_constant)
            self._local = {(str(path), seed, drop_constant): split}
            return {"status": "ok", **split.describe()}
        self._prepared = {
            "op": "prepare",
            "path": str(path),
            "seed": seed,
            "drop_constant": drop_constant,
        }
        out = self._call(self._prepared, None)
        if out["status"] != "ok":
            raise BenchmarkError(
                f"{path}: could not build the split for seed {seed}: {out['status']}"
            )
        return out

    def evaluate(self, detector: str, impl: str) -> dict[str, Any]:
        """Fit and score ``detector`` on the prepared split (within the time limit)."""
        if not self.max_seconds:
            (((_, seed, _), split),) = self._local.items()
            return evaluate(detector, impl, split, seed)
        req = {**self._prepared, "op": "evaluate", "detector": detector, "impl": impl}
        if (detector, impl) not in self._warm:  # untimed warm-up, but still under the limit
            out = self._call({**req, "op": "warmup"}, self.max_seconds)
            if out["status"] != "ok":
                return {"status": out["status"].replace("(timeout)", "(timeout in warm-up)")}
            self._warm.add((detector, impl))
        return self._call(req, self.max_seconds)


# --------------------------------------------------------------------------- results
CSV_FIELDS = [
    "detector", "framework", "wraps", "dataset", "file", "seed", "status",
    "n_rows_original", "n_train", "n_test", "n_features", "n_dropped_constant",
    "train_anomaly_ratio", "test_anomaly_ratio",
    "roc_auc", "avg_precision", "fit_s", "score_s",
    "ref_library", "ref_status", "ref_roc_auc", "ref_avg_precision", "ref_fit_s", "ref_score_s",
    "abs_diff_auc_vs_ref", "max_abs_score_diff_vs_ref",
    "published_name", "published_match", "published_roc_auc", "published_pr_auc",
    "diff_auc_vs_published",
]  # fmt: skip


def _fmt_csv(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else value


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt_csv(row.get(k)) for k in CSV_FIELDS})


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows written by :func:`write_csv`, numbers parsed back."""
    rows = []
    with Path(path).open(newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if v == "":
                    row[k] = None
                elif k == "seed" or k.startswith("n_"):
                    row[k] = int(v)
                else:
                    try:
                        row[k] = (
                            float(v)
                            if k
                            not in (
                                "detector",
                                "dataset",
                                "file",
                                "status",
                                "ref_status",
                                "published_name",
                                "wraps",
                                "framework",
                                "ref_library",
                                "published_match",
                            )
                            else v
                        )
                    except ValueError:
                        row[k] = v
            rows.append(row)
    return rows


def _mean(values: Iterable[float | None]) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else float("nan")


def _max(values: Iterable[float | None]) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.max(vals)) if vals else float("nan")


@dataclass
class Cell:
    """One detector on one dataset, aggregated over seeds."""

    detector: str
    dataset: str
    seeds: list[int]
    ok: bool  # every seed ran
    statuses: list[str]
    roc_auc: float
    avg_precision: float
    fit_s: float
    score_s: float
    ref_roc_auc: float
    ref_ok: bool
    max_abs_diff_auc: float
    max_abs_score_diff: float
    published_roc_auc: float
    published_pr_auc: float
    published_name: str | None


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], Cell]:
    """Group rows by ``(detector, dataset)`` and average over seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["detector"], row["dataset"]), []).append(row)
    cells = {}
    for (det, ds), rs in groups.items():
        ok = all(r["status"] == "ok" for r in rs)
        ref_ok = ok and all(r.get("ref_status") == "ok" for r in rs)
        good = [r for r in rs if r["status"] == "ok"]
        cells[(det, ds)] = Cell(
            detector=det,
            dataset=ds,
            seeds=[r["seed"] for r in rs],
            ok=ok,
            statuses=[r["status"] for r in rs],
            roc_auc=_mean(r["roc_auc"] for r in good) if ok else float("nan"),
            avg_precision=_mean(r["avg_precision"] for r in good) if ok else float("nan"),
            fit_s=_mean(r.get("fit_s") for r in good),
            score_s=_mean(r.get("score_s") for r in good),
            ref_roc_auc=_mean(r.get("ref_roc_auc") for r in rs) if ref_ok else float("nan"),
            ref_ok=ref_ok,
            max_abs_diff_auc=_max(r.get("abs_diff_auc_vs_ref") for r in rs),
            max_abs_score_diff=_max(r.get("max_abs_score_diff_vs_ref") for r in rs),
            published_roc_auc=(
                float(rs[0]["published_roc_auc"])
                if rs[0].get("published_roc_auc") is not None
                else float("nan")
            ),
            published_pr_auc=(
                float(rs[0]["published_pr_auc"])
                if rs[0].get("published_pr_auc") is not None
                else float("nan")
            ),
            published_name=rs[0].get("published_name"),
        )
    return cells


def _f(x: float, nd: int = 3, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}"


def _g(x: float) -> str:
    """Compact format for differences that should be 0."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return "0" if x == 0 else f"{x:.1e}"


def summary_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-detector means over the datasets where every seed ran."""
    cells = aggregate(rows)
    detectors = list(dict.fromkeys(r["detector"] for r in rows))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    out = []
    for det in detectors:
        mine = [cells[(det, ds)] for ds in datasets if (det, ds) in cells]
        done = [c for c in mine if c.ok]
        with_ref = [c for c in done if c.ref_ok]
        with_pub = [c for c in done if not math.isnan(c.published_roc_auc)]
        lib = next((r.get("ref_library") for r in rows if r["detector"] == det), None)
        out.append(
            {
                "detector": det,
                "ref_library": lib,
                "published_name": next((c.published_name for c in mine if c.published_name), None),
                "n_datasets": len(mine),
                "n_done": len(done),
                "roc_auc": _mean(c.roc_auc for c in done),
                "avg_precision": _mean(c.avg_precision for c in done),
                "n_ref": len(with_ref),
                "ref_roc_auc_same": _mean(c.ref_roc_auc for c in with_ref),
                "roc_auc_on_ref": _mean(c.roc_auc for c in with_ref),
                "max_abs_diff_auc": _max(c.max_abs_diff_auc for c in with_ref),
                "max_abs_score_diff": _max(c.max_abs_score_diff for c in with_ref),
                "n_pub": len(with_pub),
                "roc_auc_on_pub": _mean(c.roc_auc for c in with_pub),
                "published_roc_auc": _mean(c.published_roc_auc for c in with_pub),
                "ap_on_pub": _mean(c.avg_precision for c in with_pub),
                "published_pr_auc": _mean(c.published_pr_auc for c in with_pub),
                "fit_s": _mean(c.fit_s for c in done),
                "score_s": _mean(c.score_s for c in done),
                "not_done": [
                    f"{c.dataset} ({'; '.join(sorted({s for s in c.statuses if s != 'ok'}))})"
                    for c in mine
                    if not c.ok
                ],
            }
        )
    return out


def render_text_summary(rows: Sequence[dict[str, Any]]) -> str:
    """Side-by-side plain-text summary for the terminal."""
    header = (
        f"{'detector':<20} {'done':>6} {'AUC ours':>9} {'AUC ref':>8} {'max|d|':>8} "
        f"{'AUC pub':>8} {'ours-pub':>9} {'AP ours':>8} {'fit s':>7} {'score s':>8}"
    )
    lines = [header]
    for s in summary_rows(rows):
        lines.append(
            f"{s['detector']:<20} {s['n_done']:>3}/{s['n_datasets']:<2} {_f(s['roc_auc']):>9} "
            f"{_f(s['ref_roc_auc_same']):>8} {_g(s['max_abs_diff_auc']):>8} "
            f"{_f(s['published_roc_auc']):>8} "
            f"{_f(s['roc_auc_on_pub'] - s['published_roc_auc'], signed=True):>9} "
            f"{_f(s['avg_precision']):>8} {_f(s['fit_s'], 2):>7} {_f(s['score_s'], 2):>8}"
        )
        for nd in s["not_done"]:
            lines.append(f"{'':<20} not done: {nd}")
    return "\n".join(lines)


def render_markdown(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The generated report: run metadata, summary, per-dataset tables, skips and errors."""
    cells = aggregate(rows)
    detectors = list(dict.fromkeys(r["detector"] for r in rows))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    summ = summary_rows(rows)
    seeds = sorted({r["seed"] for r in rows})
    out: list[str] = []
    w = out.append

    w("### Run")
    w("")
    w(
        f"* Date (UTC): {meta.get('date', '?')}; wall time {meta.get('wall_s', float('nan')) / 60:.1f} min."
    )
    w(f"* Command: `{meta.get('command', '?')}`")
    w(f"* Machine: {meta.get('machine', '?')}")
    w(f"* Software: {meta.get('versions', '?')}")
    w(f"* Code: {meta.get('git', '?')}")
    w(
        f"* Protocol: {len(datasets)} datasets, seeds {', '.join(map(str, seeds))}; "
        f"< {N_MIN_ROWS} rows resampled with replacement, > {N_MAX_ROWS} subsampled; "
        f"{int((1 - TEST_SIZE) * 100)}/{int(TEST_SIZE * 100)} stratified split; MinMax fitted on "
        f"train; {meta.get('constant_policy', '?')}; `random_state=seed`; "
        f"per-fit limit {meta.get('max_seconds', '?')} s; {meta.get('threads_note', '')}."
    )
    w("")
    w("### Summary: accuracy (mean over the datasets on which every seed ran)")
    w("")
    w(
        "| detector | datasets | ROC-AUC ours | ROC-AUC reference (library) | ROC-AUC published "
        "(column, datasets) | ours − published | AP ours | AP published | ours − published "
        "| fit s | score s |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in summ:
        ref = f"{_f(s['ref_roc_auc_same'])} ({s['ref_library']})" if s["n_ref"] else "–"
        if s["n_ref"] and s["n_ref"] != s["n_done"]:
            ref += f" on {s['n_ref']}"
        pub = (
            f"{_f(s['published_roc_auc'])} ({s['published_name']}, {s['n_pub']})"
            if s["n_pub"]
            else "–"
        )
        w(
            f"| {s['detector']} | {s['n_done']}/{s['n_datasets']} | {_f(s['roc_auc'])} | {ref} | "
            f"{pub} | {_f(s['roc_auc_on_pub'] - s['published_roc_auc'], signed=True)} | "
            f"{_f(s['avg_precision'])} | {_f(s['published_pr_auc'])} | "
            f"{_f(s['ap_on_pub'] - s['published_pr_auc'], signed=True)} | "
            f"{_f(s['fit_s'], 2)} | {_f(s['score_s'], 2)} |"
        )
    w("")
    w(
        "ROC-AUC and AP (average precision) on the test split, mean over seeds, then over "
        "datasets. Reference = the wrapped library class built directly with the registry "
        "defaults and the same seed on the same scaled split. Published = ADBench Table D4/D5 "
        '(pyod 0.9.8), matched by the named column; the "ours − published" columns compare '
        "means over the same datasets. fit s / score s = mean seconds per fit on the training "
        "split / per scoring of the test split (our adapter, one thread)."
    )
    w("")
    w("### Summary: our adapter against the library run directly")
    w("")
    w(
        "| detector | reference class | runs compared | runs with identical scores | "
        "max \\|Δ ROC-AUC\\| | max \\|Δ score\\| | fit s ours / direct | "
        "score s ours / direct |"
    )
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for det in detectors:
        compared = [
            r for r in rows if r["detector"] == det and r.get("abs_diff_auc_vs_ref") is not None
        ]
        wraps = next(
            (r.get("wraps") for r in rows if r["detector"] == det and r.get("wraps")), None
        )
        identical = sum(1 for r in compared if r.get("max_abs_score_diff_vs_ref") == 0)
        w(
            f"| {det} | {f'`{wraps}`' if wraps else '–'} | {len(compared)} | {identical} | "
            f"{_g(_max(r['abs_diff_auc_vs_ref'] for r in compared))} | "
            f"{_g(_max(r.get('max_abs_score_diff_vs_ref') for r in compared))} | "
            f"{_total(r.get('fit_s') for r in compared)} / "
            f"{_total(r.get('ref_fit_s') for r in compared)} | "
            f"{_total(r.get('score_s') for r in compared)} / "
            f"{_total(r.get('ref_score_s') for r in compared)} |"
        )
    w("")
    w(
        "A run is one dataset and seed. Identical = the two test-score vectors are equal element "
        "by element (difference exactly 0). Times are totals over the compared runs; our fit "
        "includes what the contract adds after the library's fit (input validation, training "
        "scores and `threshold_`)."
    )
    w("")
    w("### ROC-AUC per dataset: ours (ours − published)")
    w("")
    w("| dataset | " + " | ".join(detectors) + " |")
    w("|---|" + "---:|" * len(detectors))
    for ds in datasets:
        cells_txt = []
        for det in detectors:
            c = cells.get((det, ds))
            if c is None:
                cells_txt.append("")
            elif not c.ok:
                cells_txt.append(_short_status(c))
            elif math.isnan(c.published_roc_auc):
                cells_txt.append(_f(c.roc_auc))
            else:
                cells_txt.append(
                    f"{_f(c.roc_auc)} ({_f(c.roc_auc - c.published_roc_auc, 2, signed=True)})"
                )
        w(f"| {ds} | " + " | ".join(cells_txt) + " |")
    w("| **mean** | " + " | ".join(_f(s["roc_auc"]) for s in summ) + " |")
    w("")
    w("### Average precision per dataset (ours)")
    w("")
    w("| dataset | " + " | ".join(detectors) + " |")
    w("|---|" + "---:|" * len(detectors))
    for ds in datasets:
        vals = []
        for det in detectors:
            c = cells.get((det, ds))
            vals.append("" if c is None else (_f(c.avg_precision) if c.ok else _short_status(c)))
        w(f"| {ds} | " + " | ".join(vals) + " |")
    w("| **mean** | " + " | ".join(_f(s["avg_precision"]) for s in summ) + " |")
    w("")
    big = sorted(
        (
            c
            for c in cells.values()
            if c.ok
            and not math.isnan(c.published_roc_auc)
            and abs(c.roc_auc - c.published_roc_auc) >= 0.05
        ),
        key=lambda c: -abs(c.roc_auc - c.published_roc_auc),
    )
    w("### Differences from published of 0.05 or more")
    w("")
    if big:
        w("| detector | dataset | ours | reference | published | ours − published |")
        w("|---|---|---:|---:|---:|---:|")
        for c in big:
            w(
                f"| {c.detector} | {c.dataset} | {_f(c.roc_auc)} | {_f(c.ref_roc_auc)} | "
                f"{_f(c.published_roc_auc)} | {_f(c.roc_auc - c.published_roc_auc, signed=True)} |"
            )
    else:
        w("None.")
    w("")
    w("### Timings per dataset (mean fit s / score s, ours)")
    w("")
    w("| dataset | n train / test / features (dropped) | " + " | ".join(detectors) + " |")
    w("|---|---|" + "---:|" * len(detectors))
    for ds in datasets:
        shape = _shape_text([r for r in rows if r["dataset"] == ds])
        vals = []
        for det in detectors:
            c = cells.get((det, ds))
            vals.append(
                ""
                if c is None
                else (f"{_f(c.fit_s, 2)} / {_f(c.score_s, 2)}" if c.ok else _short_status(c))
            )
        w(f"| {ds} | {shape} | " + " | ".join(vals) + " |")
    w("")
    problems = [r for r in rows if r["status"] != "ok" or (r.get("ref_status") not in (None, "ok"))]
    w("### Skipped and failed runs")
    w("")
    if problems:
        w("| detector | dataset | seed | ours | reference |")
        w("|---|---|---:|---|---|")
        for r in problems:
            w(
                f"| {r['detector']} | {r['dataset']} | {r['seed']} | {r['status']} | {r.get('ref_status') or '–'} |"
            )
    else:
        w("None.")
    return "\n".join(out) + "\n"


def _total(values: Iterable[float | None]) -> str:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return f"{sum(vals):.1f}" if vals else "–"


def _shape_text(rows: Sequence[dict[str, Any]]) -> str:
    """``train / test / features`` of a dataset's rows, with the range of dropped constant
    features over its seeds (e.g. ``1376 / 590 / 1555 (−16…38 const)``)."""
    r0 = next((r for r in rows if r.get("n_features") is not None), None)
    if r0 is None:
        return "?"
    dropped = sorted(
        {r.get("n_dropped_constant") or 0 for r in rows if r.get("n_features") is not None}
    )
    text = f"{r0['n_train']} / {r0['n_test']} / {r0['n_features'] + (r0.get('n_dropped_constant') or 0)}"
    if dropped[-1]:
        span = f"{dropped[0]}" if dropped[0] == dropped[-1] else f"{dropped[0]}…{dropped[-1]}"
        text += f" (−{span} const)"
    return text


def _short_status(cell: Cell) -> str:
    """``timeout`` or ``error``, with the seeds concerned, for a cell that did not complete."""
    bad = [seed for seed, st in zip(cell.seeds, cell.statuses) if st != "ok"]
    kind = "timeout" if any("timeout" in st for st in cell.statuses) else "error"
    return f"{kind} (seed {', '.join(map(str, bad))})" if bad else ""


def write_markdown(text: str, path: str | Path, title: str = "ADBench benchmark") -> None:
    """Write ``text`` between the generated-section markers of ``path``; text outside the
    markers (hand-written notes) is kept. A new file gets a title and the markers."""
    path = Path(path)
    block = f"{GENERATED_BEGIN}\n{text.rstrip()}\n{GENERATED_END}"
    if path.exists():
        old = path.read_text()
        if GENERATED_BEGIN in old and GENERATED_END in old:
            pattern = re.compile(
                re.escape(GENERATED_BEGIN) + r".*?" + re.escape(GENERATED_END), re.DOTALL
            )
            path.write_text(pattern.sub(lambda _: block, old, count=1))
            return
        raise BenchmarkError(
            f"{path} exists without the generated-section markers; refusing to overwrite it "
            "(add the markers or pick another --markdown path)."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\n{block}\n")


# --------------------------------------------------------------------------- metadata
def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f", {kb / 1024**2:.0f} GiB RAM"
    except (OSError, IndexError, ValueError):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average at start {:.2f}/{:.2f}/{:.2f}".format(*os.getloadavg())
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} logical CPUs{mem}{load}"
    )


def software_versions() -> str:
    import pyod
    import scipy
    import sklearn

    return (
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"scikit-learn {sklearn.__version__}, pyod {pyod.__version__}"
    )


def git_description() -> str:
    """The checkout's commit, and which of the code paths that shape the results are modified."""

    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", *cmd], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.rstrip("\n")  # keep the leading blank of porcelain's status column

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        dirty = git("status", "--porcelain", "--", "pynomaly_core", "benchmarks/adbench.py")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    if not dirty:
        return f"commit {commit}, clean"
    paths = [line[3:] for line in dirty.splitlines()]
    shown = ", ".join(paths[:6]) + (f" and {len(paths) - 6} more" if len(paths) > 6 else "")
    return f"commit {commit} plus uncommitted changes to {shown}"


# --------------------------------------------------------------------------- CLI
def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise BenchmarkError(f"--seeds must be comma-separated integers, got {text!r}.") from None
    if not seeds:
        raise BenchmarkError("--seeds selected nothing.")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Run Pynomaly registry detectors over ADBench datasets with the ADBench "
        "protocol, compare with the wrapped library run directly and with published numbers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--detectors",
        default="all",
        help="comma-separated registry names, or 'all' (installed unsupervised ones)",
    )
    p.add_argument(
        "--datasets", default="all", help="comma-separated names (cardio, 6_cardio), or 'all'"
    )
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)))
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"ADBench .npz folder (default ${DATA_DIR_ENV} or ../shared/datasets/adbench)",
    )
    p.add_argument(
        "--published",
        type=Path,
        default=None,
        help=f"published results CSV (default <data-dir>/{PUBLISHED_CSV})",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("adbench_results.csv"),
        help="per-run CSV (rewritten after every job); run metadata goes to <out>.meta.json",
    )
    p.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="write the report between the generated-section markers of this file",
    )
    p.add_argument(
        "--max-seconds-per-fit",
        type=float,
        default=300.0,
        help="kill a fit+score that runs longer and record 'skipped (timeout)'; 0 = no limit, in-process",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads in the worker (0 = library default)",
    )
    p.add_argument(
        "--keep-constant",
        action="store_true",
        help="keep features that are constant on the training split (ADBench does)",
    )
    p.add_argument("--no-reference", action="store_true", help="skip the direct library runs")
    p.add_argument(
        "--from-csv",
        type=Path,
        default=None,
        help="do not run; re-render the summary/markdown from a CSV of an earlier run",
    )
    p.add_argument("--list", action="store_true", help="list detectors and datasets, then exit")
    return p


def run_job(
    runner: Runner,
    detector: str,
    path: Path,
    seed: int,
    split_info: dict[str, Any],
    published: dict[tuple[str, str], tuple[float, float]],
    *,
    with_reference: bool = True,
) -> dict[str, Any]:
    """One CSV row: ``detector`` on the prepared split of ``path`` for ``seed``, our adapter
    first, then (if it succeeded and the entry wraps a library class) the library directly."""
    spec = _spec(detector)
    ds = dataset_name(path)
    pub_name, pub_match = published_name(detector, {alg for _, alg in published})
    pub = published.get((ds, pub_name)) if pub_name else None
    row: dict[str, Any] = {
        "detector": detector, "framework": spec.framework, "wraps": spec.wraps,
        "dataset": ds, "file": path.name, "seed": seed,
        **{k: v for k, v in split_info.items() if k != "status"},
        "published_name": pub_name if pub else None,
        "published_match": pub_match if pub else None,
        "published_roc_auc": pub[0] if pub else None,
        "published_pr_auc": pub[1] if pub else None,
    }  # fmt: skip
    ours = runner.evaluate(detector, "ours")
    row["status"] = ours["status"]
    row.update({k: ours.get(k) for k in ("roc_auc", "avg_precision", "fit_s", "score_s")})
    lib = reference_library(detector)
    # The reference also runs when ours failed with an error: that tells an adapter bug from a
    # failure of the library itself. It does not run after a timeout (it would take as long).
    if lib and with_reference and (ours["status"] == "ok" or ours["status"].startswith("error")):
        ref = runner.evaluate(detector, "reference")
        row.update({
            "ref_library": lib, "ref_status": ref["status"],
            "ref_roc_auc": ref.get("roc_auc"), "ref_avg_precision": ref.get("avg_precision"),
            "ref_fit_s": ref.get("fit_s"), "ref_score_s": ref.get("score_s"),
        })  # fmt: skip
        if ref["status"] == "ok" and ours["status"] == "ok":
            row["abs_diff_auc_vs_ref"] = abs(ours["roc_auc"] - ref["roc_auc"])
            row["max_abs_score_diff_vs_ref"] = float(np.max(np.abs(ours["scores"] - ref["scores"])))
    if pub and row.get("roc_auc") is not None:
        row["diff_auc_vs_published"] = row["roc_auc"] - pub[0]
    return row


def run(args: argparse.Namespace, command: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the benchmark described by ``args``; returns the per-run rows and the run metadata.

    Rows are written to ``args.out`` after every job, so an interrupted run keeps its results.
    """
    data_dir = args.data_dir or default_data_dir()
    files = select_datasets(args.datasets, data_dir)
    detectors = select_detectors(args.detectors)
    seeds = _parse_seeds(args.seeds)
    published_path = args.published or Path(data_dir) / PUBLISHED_CSV
    published = load_published(published_path) if published_path.exists() else {}
    if not published:
        print(f"note: no published results at {published_path}", file=sys.stderr)
    drop_constant = not args.keep_constant
    meta: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "command": command,
        "machine": machine_description(),
        "versions": software_versions(),
        "git": git_description(),
        "max_seconds": args.max_seconds_per_fit or "no",
        "threads_note": (
            f"{args.threads} BLAS/OpenMP thread(s)" if args.threads else "library-default threads"
        ),
        "constant_policy": (
            "features constant on the training split dropped"
            if drop_constant
            else "constant features kept"
        ),
    }
    rows: list[dict[str, Any]] = []
    timed_out: set[tuple[str, str]] = set()
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        runner = Runner(args.max_seconds_per_fit, args.threads or None)
        stack.callback(runner.close)
        if not args.max_seconds_per_fit and args.threads:  # in-process: limit threads here
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(args.threads))
        try:
            for path in files:
                X, y = load_dataset(path)  # fail early, naming the file
                print(
                    f"== {path.name}: {X.shape[0]} rows x {X.shape[1]} features, "
                    f"{int(y.sum())} anomalies",
                    flush=True,
                )
                del X, y
                for seed in seeds:
                    info = runner.prepare(path, seed, drop_constant)
                    for det in detectors:
                        key = (det, dataset_name(path))
                        if key in timed_out:
                            row = {
                                "detector": det, "dataset": key[1], "file": path.name,
                                "seed": seed, "status": "skipped (timeout on an earlier seed)",
                            }  # fmt: skip
                        else:
                            row = run_job(
                                runner,
                                det,
                                path,
                                seed,
                                info,
                                published,
                                with_reference=not args.no_reference,
                            )
                            if "timeout" in row["status"]:
                                timed_out.add(key)
                        rows.append(row)
                        write_csv(rows, args.out)
                        print(
                            f"{key[1]:<14} seed {seed} {det:<20} {row['status']:<8} "
                            f"AUC {_f(row.get('roc_auc'))} ref {_f(row.get('ref_roc_auc'))} "
                            f"pub {_f(row.get('published_roc_auc'))} "
                            f"fit {_f(row.get('fit_s'), 2)}s score {_f(row.get('score_s'), 2)}s "
                            f"[{(time.perf_counter() - start) / 60:.1f} min]",
                            flush=True,
                        )
        finally:
            meta["wall_s"] = time.perf_counter() - start
            meta["completed"] = len(rows) == len(files) * len(seeds) * len(detectors)
            Path(str(args.out) + ".meta.json").write_text(json.dumps(meta, indent=2))
    return rows, meta


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list:
            from pynomaly_core.detectors import available

            print("detectors (installed, unsupervised; * = wraps a library class):")
            for s in available(installed_only=True):
                if s.supervision == "unsupervised":
                    print(
                        f"  {s.name:<22} {s.framework:<8} {'*' if s.wraps else ' '} {s.cost_class}"
                    )
            data_dir = args.data_dir or default_data_dir()
            print(f"datasets in {data_dir}:")
            for f in list_datasets(data_dir):
                print(f"  {dataset_name(f):<14} {f.name}")
            return 0
        if args.from_csv:
            rows = read_csv(args.from_csv)
            meta_path = Path(str(args.from_csv) + ".meta.json")
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        else:
            argv = list(sys.argv[1:] if argv is None else argv)
            command = "python benchmarks/adbench.py " + " ".join(shlex.quote(a) for a in argv)
            rows, meta = run(args, command)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("no results", file=sys.stderr)
        return 1
    print()
    print(render_text_summary(rows))
    if args.markdown:
        write_markdown(render_markdown(rows, meta), args.markdown)
        print(f"\nreport written to {args.markdown}")
    if not args.from_csv:
        print(f"per-run results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
