"""How long the Dagster code location takes to load, and which heavy frameworks it imports.

Each measurement is a fresh interpreter running ``import pynomaly_assets.definitions``
(what the webserver and daemon do on every reload). For scale, the same is measured
for ``import dagster`` alone: the difference is what Pynomaly adds.

    python benchmarks/load_time.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ["torch", "tensorflow", "shap", "evidently", "mlflow", "great_expectations"]


def timed_import(module: str) -> tuple[float, list[str]]:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, [m for m in proc.stdout.strip().split(",") if m]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    for module in ("dagster", "pynomaly_assets.definitions"):
        runs = [timed_import(module) for _ in range(args.repeats)]
        rows.append(
            (module, statistics.median(t for t, _ in runs), min(t for t, _ in runs), runs[0][1])
        )
    print(f"{'module':30s} {'median s':>9s} {'best s':>7s}  heavy frameworks imported")
    for module, median, best, heavy in rows:
        print(f"{module:30s} {median:9.2f} {best:7.2f}  {heavy or 'none'}")
    print(
        f"ratio code location / dagster alone: {rows[1][1] / rows[0][1]:.2f} (target: location under 3 s)"
    )


if __name__ == "__main__":
    main()
