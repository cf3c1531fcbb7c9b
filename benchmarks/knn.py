#!/usr/bin/env python
"""TorchKNN (and optionally TorchLOF) against PyOD's KNN / LOF on random data: time and agreement.

Both detectors fit on ``--n-train`` standard-normal rows of ``--features`` columns (training
scores use the k nearest *other* rows) and then score ``--n-test`` new rows. Reported per
detector: fit seconds, scoring seconds, their sum, the speed-up (PyOD time / ours) and the
largest absolute difference between the two detectors' training scores and test scores.
Timings are the best of ``--repeats`` runs.

``--crossover 2,4,6,8`` instead times TorchKNN's KD-tree against its brute force (new-row
scoring, CPU) at each feature count: the measurement behind ``TREE_MAX_FEATURES``.

Usage::

    python benchmarks/knn.py                                   # 1e5 x 20, k=5, method=largest
    python benchmarks/knn.py --n-train 20000 --n-test 20000 --features 8 --lof
    python benchmarks/knn.py --n-train 50000 --n-test 20000 --crossover 2,4,6,8,10,12
    python benchmarks/knn.py --out /tmp/knn.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.machine import cpu_description, load_average, utc_stamp


def timed_fit_score(
    make: Any, X: np.ndarray, X_test: np.ndarray, repeats: int
) -> tuple[float, float, np.ndarray, np.ndarray, Any]:
    """Best fit and scoring seconds over ``repeats``, with the scores of the last run."""
    best_fit = best_score = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model = make().fit(X)
        best_fit = min(best_fit, time.perf_counter() - start)
        start = time.perf_counter()
        test_scores = model.decision_function(X_test)
        best_score = min(best_score, time.perf_counter() - start)
    return best_fit, best_score, np.asarray(model.decision_scores_), test_scores, model


def crossover(args: argparse.Namespace) -> list[str]:
    """Markdown rows: KD-tree vs brute-force scoring seconds per feature count (CPU; fit untimed)."""
    from pynomaly_core.detectors.proximity import TorchKNN

    lines = ["| features | kd_tree (s) | brute (s) | faster |", "|---:|---:|---:|---|"]
    rng = np.random.default_rng(args.seed)
    for n_features in (int(f) for f in args.crossover.split(",")):
        X = rng.normal(size=(args.n_train, n_features))
        X_test = rng.normal(size=(args.n_test, n_features))
        seconds = {}
        for algorithm in ("kd_tree", "brute"):
            model = TorchKNN(n_neighbors=args.neighbors, algorithm=algorithm, device="cpu").fit(X)
            start = time.perf_counter()
            model.decision_function(X_test)
            seconds[algorithm] = time.perf_counter() - start
        faster = min(seconds, key=seconds.get)
        lines.append(
            f"| {n_features} | {seconds['kd_tree']:.2f} | {seconds['brute']:.2f} | {faster} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def environment() -> str:
    import sklearn
    import torch

    return (
        f"{cpu_description()}; torch {torch.__version__}, scikit-learn "
        f"{sklearn.__version__}, pyod {__import__('pyod').__version__}; {utc_stamp()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=100_000)
    parser.add_argument("--n-test", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--neighbors", type=int, default=5)
    parser.add_argument("--method", default="largest", choices=("largest", "mean", "median"))
    parser.add_argument("--algorithm", default="auto", help="TorchKNN algorithm")
    parser.add_argument("--device", default="auto", help="TorchKNN device")
    parser.add_argument("--lof", action="store_true", help="also compare TorchLOF with PyOD LOF")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crossover", help="comma-separated feature counts: tree vs brute only")
    parser.add_argument("--out", type=Path, help="write the Markdown report here (default stdout)")
    args = parser.parse_args(argv)
    command = "python benchmarks/knn.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.crossover:
        load_start = load_average()
        rows = crossover(args)
        report = (
            "\n".join(
                [
                    "### TorchKNN: KD-tree vs brute force on CPU",
                    "",
                    f"Command: `{command.strip()}`",
                    "",
                    (
                        f"Environment: {environment()}. Load average at start {load_start}, at end "
                        f"{load_average()}."
                    ),
                    "",
                    (
                        f"Scoring {args.n_test} new standard-normal rows against {args.n_train} reference "
                        f"rows, k = {args.neighbors}."
                    ),
                    "",
                    *rows,
                ]
            )
            + "\n"
        )
        if args.out:
            args.out.write_text(report)
        print(report)
        return 0

    from pyod.models.knn import KNN
    from pyod.models.lof import LOF

    from pynomaly_core.detectors.proximity import TorchKNN, TorchLOF

    rng = np.random.default_rng(args.seed)
    X = rng.normal(size=(args.n_train, args.features))
    X_test = rng.normal(size=(args.n_test, args.features))
    pairs = [
        (
            "KNN",
            lambda: KNN(n_neighbors=args.neighbors, method=args.method),
            lambda: TorchKNN(
                n_neighbors=args.neighbors,
                method=args.method,
                algorithm=args.algorithm,
                device=args.device,
            ),
        )
    ]
    if args.lof:
        pairs.append(
            (
                "LOF",
                lambda: LOF(n_neighbors=args.neighbors),
                lambda: TorchLOF(
                    n_neighbors=args.neighbors, algorithm=args.algorithm, device=args.device
                ),
            )
        )
    warm = rng.normal(size=(300, args.features))  # imports and first calls stay out of timings
    for make_pyod, make_ours in ((p, o) for _, p, o in pairs):
        make_pyod().fit(warm).decision_function(warm)
        make_ours().fit(warm).decision_function(warm)

    load_start = load_average()
    rows = []
    for name, make_pyod, make_ours in pairs:
        p_fit, p_score, p_train, p_test, _ = timed_fit_score(make_pyod, X, X_test, args.repeats)
        print(f"PyOD {name}: fit {p_fit:.2f}s, score {p_score:.2f}s", file=sys.stderr, flush=True)
        o_fit, o_score, o_train, o_test, ours = timed_fit_score(make_ours, X, X_test, args.repeats)
        print(f"Torch{name}: fit {o_fit:.2f}s, score {o_score:.2f}s", file=sys.stderr, flush=True)
        rows.append(
            (
                name,
                ours,
                (p_fit, p_score),
                (o_fit, o_score),
                float(np.max(np.abs(o_train - p_train))),
                float(np.max(np.abs(o_test - p_test))),
            )
        )
    lines = [
        f"### Torch{' / '.join(r[0] for r in rows)} vs PyOD on random data",
        "",
        f"Command: `{command.strip()}`",
        "",
        (
            f"Environment: {environment()}. Load average (1/5/15 min) at start {load_start}, "
            f"at end {load_average()}."
        ),
        "",
        (
            f"Data: {args.n_train} training rows and {args.n_test} new rows, {args.features} "
            f"standard-normal features; k = {args.neighbors}, KNN method = {args.method}; best of "
            f"{args.repeats} run(s)."
        ),
        "",
        (
            "| detector | search | PyOD fit + score (s) | ours fit + score (s) | speed-up | "
            "max abs diff, training scores | max abs diff, new-row scores |"
        ),
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, ours, p, o, d_train, d_test in rows:
        lines.append(
            f"| {name} | {ours.algorithm_} on {ours.device_} | {p[0]:.2f} + {p[1]:.2f} = "
            f"{sum(p):.2f} | {o[0]:.2f} + {o[1]:.2f} = {sum(o):.2f} | **{sum(p) / sum(o):.1f}x** "
            f"| {d_train:.2e} | {d_test:.2e} |"
        )
    report = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
