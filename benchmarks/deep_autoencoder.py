#!/usr/bin/env python
"""Our torch AutoEncoder against PyOD's AutoEncoder on ADBench datasets, plus scoring throughput.

Part 1 — accuracy and wall time, ADBench protocol (see ``shared/datasets/adbench/README.md``),
per dataset and seed: resample to at least 1,000 / at most 10,000 rows with one
``numpy.random.RandomState(seed)``, 70/30 stratified split with the same generator, MinMax
fitted on the training split. Every method is fitted on the training split (anomalies
included) with the *same* epochs and batch size, then scores the test split; the table gives
mean ROC-AUC, average precision and the summed wall time (fit + test scoring) over all
datasets and seeds. Methods:

* ``pyod`` — ``pyod.models.auto_encoder.AutoEncoder(epoch_num=E, batch_size=B)``, PyOD's
  defaults otherwise (``[64, 32]``, batch-norm, dropout 0.2, Adam 1e-3, weight decay 1e-5),
  run once per ``--pyod-threads`` setting (``default`` = torch's own thread count);
* ``ours`` — :class:`pynomaly_core.detectors.deep.AutoEncoder` with its defaults (same
  architecture; 10 % validation split with early stopping, so it may run fewer epochs);
* ``ours-full`` — the same with ``validation_fraction=0``: exactly ``E`` epochs on all
  training rows, i.e. the same work as PyOD (the like-for-like speed comparison).

Part 2 — scoring throughput: a model of the same architecture scores ``--throughput-rows``
random rows for each width in ``--throughput-features``; achieved GFLOP/s = forward FLOPs
(2·Σ in·out over the linear layers) / wall time of ``decision_function`` (float64 input to
float64 scores, standardization included), divided by the GFLOP/s of a ``--peak-size``² (2048²) float32
``torch.mm`` measured in the same run with the same thread count. The plain
``nn.Module`` forward of the same network on the whole array is shown for reference.

Usage::

    python benchmarks/deep_autoencoder.py                           # all 29 datasets, seeds 1-3
    python benchmarks/deep_autoencoder.py --datasets cardio,thyroid --seeds 1 --epochs 5
    python benchmarks/deep_autoencoder.py --out docs/deep_autoencoder_results.md
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.machine import cpu_description, load_average, utc_stamp

DEFAULT_DATA_DIR = REPO_ROOT / ".." / "shared" / "datasets" / "adbench"
N_MIN_ROWS, N_MAX_ROWS, TEST_SIZE = 1_000, 10_000, 0.3


# ----------------------------------------------------------------------------- data
def dataset_files(data_dir: Path, names: str) -> list[Path]:
    """``.npz`` files in ``data_dir`` matching comma-separated ``names`` (``all`` = every file)."""
    files = sorted(data_dir.glob("*.npz"), key=lambda p: int(p.stem.split("_")[0]))
    if not files:
        raise SystemExit(f"no ADBench .npz files in {data_dir}; pass --data-dir.")
    if names == "all":
        return files
    by_name = {p.stem.split("_", 1)[1].lower(): p for p in files}
    wanted = [n.strip().lower() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown dataset(s) {unknown}; choose from {sorted(by_name)}.")
    return [by_name[n] for n in wanted]


def adbench_split(
    X: np.ndarray, y: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ADBench's split for ``seed``: size rule, 70/30 stratified split, MinMax fitted on train."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    rng = np.random.RandomState(seed)
    if len(y) < N_MIN_ROWS:
        idx = rng.choice(len(y), N_MIN_ROWS, replace=True)
        X, y = X[idx], y[idx]
    elif len(y) > N_MAX_ROWS:
        idx = rng.choice(len(y), N_MAX_ROWS, replace=False)
        X, y = X[idx], y[idx]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, shuffle=True, stratify=y, random_state=rng
    )
    scaler = MinMaxScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


# -------------------------------------------------------------------------- methods
@contextmanager
def torch_threads(n: int | None):
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n or previous)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class Method:
    name: str
    label: str
    threads: int | None = None  # torch threads around the call; None = leave as is
    results: list[dict[str, Any]] = field(default_factory=list)

    def fit_score(
        self,
        X_train: np.ndarray,
        X_test: np.ndarray,
        seed: int,
        epochs: int,
        batch_size: int,
        device: str,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        with torch_threads(self.threads):
            if self.name == "pyod":
                from pyod.models.auto_encoder import AutoEncoder as PyODAutoEncoder

                model = PyODAutoEncoder(
                    epoch_num=epochs,
                    batch_size=batch_size,
                    verbose=0,
                    random_state=seed,
                    device=None if device == "auto" else device,
                )
                model.fit(X_train)
                return model.decision_function(X_test), {"epochs": epochs}
            from pynomaly_core.detectors.deep import AutoEncoder

            extra = {"validation_fraction": 0.0} if self.name == "ours-full" else {}
            model = AutoEncoder(
                epochs=epochs, batch_size=batch_size, random_state=seed, device=device, **extra
            ).fit(X_train)
            return model.decision_function(X_test), {"epochs": model.n_epochs_}


def make_methods(pyod_threads: str) -> list[Method]:
    methods = []
    for setting in pyod_threads.split(","):
        setting = setting.strip()
        if setting == "default":
            methods.append(Method("pyod", "PyOD AutoEncoder (torch default threads)"))
        else:
            methods.append(
                Method("pyod", f"PyOD AutoEncoder ({int(setting)} thread(s))", threads=int(setting))
            )
    methods.append(Method("ours-full", "Pynomaly AutoEncoder, no early stopping (same work)"))
    methods.append(Method("ours", "Pynomaly AutoEncoder, defaults (early stopping)"))
    return methods


# ---------------------------------------------------------------------- throughput
def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an ``n x n`` float32 ``torch.mm`` with torch's current thread count."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def forward_flops(n_features: int, hidden: tuple[int, ...]) -> int:
    """Multiply-add FLOPs per row of the folded network (2·Σ in·out over the linear layers)."""
    widths = [n_features, *hidden, *hidden[-2::-1], n_features]
    return 2 * sum(a * b for a, b in itertools.pairwise(widths))


def throughput(
    n_features: int, n_rows: int, n_jobs: int | None, repeats: int, peak_size: int = 2048
) -> dict[str, float]:
    """Scoring GFLOP/s of ours and of a plain ``nn.Module`` forward, and the matmul peak."""
    import torch

    from pynomaly_core.detectors.deep import AutoEncoder
    from pynomaly_core.detectors.deep.device import cpu_threads

    rng = np.random.default_rng(0)
    model = AutoEncoder(epochs=1, random_state=0, n_jobs=n_jobs, device="cpu").fit(
        rng.normal(size=(2_000, n_features))
    )
    X = rng.normal(size=(n_rows, n_features))
    flops = forward_flops(n_features, tuple(model.hidden_neurons)) * n_rows
    threads = cpu_threads(n_jobs)
    best_ours = best_plain = float("inf")
    peaks = []
    network = model.network_
    with torch_threads(threads):
        model.decision_function(X[:10_000])
        for _ in range(repeats):  # interleaved, so load changes hit all three alike
            start = time.perf_counter()
            model.decision_function(X)
            best_ours = min(best_ours, time.perf_counter() - start)
            with torch.inference_mode():
                start = time.perf_counter()
                x = torch.from_numpy(X).float()
                torch.linalg.vector_norm(network(x) - x, dim=1).double().numpy()
                best_plain = min(best_plain, time.perf_counter() - start)
            peaks.append(matmul_gflops(peak_size))
    peak = max(peaks)
    return {
        "features": n_features,
        "rows": n_rows,
        "threads": threads,
        "peak": peak,
        "ours_gflops": flops / best_ours / 1e9,
        "ours_seconds": best_ours,
        "plain_gflops": flops / best_plain / 1e9,
        "plain_seconds": best_plain,
    }


# --------------------------------------------------------------------------- report
def environment() -> str:
    import torch

    return (
        f"{cpu_description()}; Python {platform.python_version()}, torch "
        f"{torch.__version__} (default threads {torch.get_num_threads()}), "
        f"pyod {__import__('pyod').__version__}; {utc_stamp()}"
    )


def render_accuracy(args: argparse.Namespace, methods: list[Method], names: list[str]) -> list[str]:
    """Markdown for part 1: summary, ratios, headline and per-dataset tables."""
    lines = [
        (
            f"{len(names)} datasets x seeds {args.seeds}; epochs {args.epochs}, batch size "
            f"{args.batch_size}, device `{args.device}`. Time = fit + scoring of the test split, "
            "summed over all jobs."
        ),
        "",
        "| method | mean ROC-AUC | mean AP | total time (s) | epochs run (mean) |",
        "|---|---:|---:|---:|---:|",
    ]
    summary = {}
    for m in methods:
        auc = np.mean([r["auc"] for r in m.results])
        ap = np.mean([r["ap"] for r in m.results])
        seconds = sum(r["seconds"] for r in m.results)
        epochs = np.mean([r["epochs"] for r in m.results])
        summary[m.label] = (auc, ap, seconds)
        lines.append(f"| {m.label} | {auc:.4f} | {ap:.4f} | {seconds:.1f} | {epochs:.1f} |")
    pyod = [m for m in methods if m.name == "pyod"]
    lines += [
        "",
        ("Ratios (ours / PyOD; time ratio <= 0.5 and ROC-AUC difference >= 0 meet the target):"),
        "",
        (
            "| ours | vs PyOD | time ratio | ROC-AUC difference ± s.e. | jobs ours better / "
            "worse | AP difference |"
        ),
        "|---|---|---:|---:|---:|---:|",
    ]
    for ours in (m for m in methods if m.name != "pyod"):
        for ref in pyod:
            o, r = summary[ours.label], summary[ref.label]
            # Paired over the same (dataset, seed) jobs: the spread across datasets is large.
            diffs = np.array(
                [a["auc"] - b["auc"] for a, b in zip(ours.results, ref.results, strict=True)]
            )
            stderr = diffs.std(ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
            lines.append(
                f"| {ours.label} | {ref.label} | {o[2] / r[2]:.3f} | "
                f"{o[0] - r[0]:+.4f} ± {stderr:.4f} | {(diffs > 0).sum()} / "
                f"{(diffs < 0).sum()} | {o[1] - r[1]:+.4f} |"
            )
    if pyod:
        full = summary[next(m.label for m in methods if m.name == "ours-full")]
        ref = summary[min(pyod, key=lambda m: summary[m.label][2]).label]
        lines += [
            "",
            (
                f"Headline (like-for-like, against the fastest PyOD setting): time "
                f"ratio **{full[2] / ref[2]:.3f}**, ROC-AUC {full[0]:.4f} vs {ref[0]:.4f} "
                f"({full[0] - ref[0]:+.4f})."
            ),
        ]
    lines += [
        "",
        "Per dataset (mean over seeds; time in seconds, summed over seeds):",
        "",
        "| dataset | " + " | ".join(f"{m.label} AUC / time" for m in methods) + " |",
        "|---|" + "---:|" * len(methods),
    ]
    for name in names:
        cells = []
        for m in methods:
            rows = [r for r in m.results if r["dataset"] == name]
            cells.append(
                f"{np.mean([r['auc'] for r in rows]):.3f} / {sum(r['seconds'] for r in rows):.1f}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def render_throughput(args: argparse.Namespace, rows: list[dict[str, float]]) -> list[str]:
    """Markdown for part 2: achieved scoring GFLOP/s as a fraction of the matmul GFLOP/s."""
    lines = [
        "### Scoring throughput vs matrix-multiply throughput (CPU)",
        "",
        (
            "FLOPs = 2·Σ in·out of the linear layers per row; peak = best "
            f"{args.peak_size}² float32 "
            "`torch.mm` with the same thread count, measured between the scoring runs (best of "
            f"{args.throughput_repeats})."
        ),
        "",
        (
            "| features | rows | threads | matmul GFLOP/s | ours GFLOP/s | ours fraction | "
            "plain nn.Module GFLOP/s | plain fraction |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in rows:
        lines.append(
            f"| {t['features']} | {t['rows']} | {t['threads']} | {t['peak']:.1f} | "
            f"{t['ours_gflops']:.1f} | {t['ours_gflops'] / t['peak']:.2f} | "
            f"{t['plain_gflops']:.1f} | {t['plain_gflops'] / t['peak']:.2f} |"
        )
    return lines


def render(
    args: argparse.Namespace,
    methods: list[Method],
    names: list[str],
    throughput_rows: list[dict[str, float]],
    load: tuple[str, str],
    command: str,
) -> str:
    lines = [
        "### Torch AutoEncoder vs PyOD AutoEncoder (ADBench protocol)"
        if names
        else "### Torch AutoEncoder scoring throughput",
        "",
        f"Command: `{command}`",
        "",
        (
            f"Environment: {environment()}. Load average (1/5/15 min) at start {load[0]}, "
            f"at end {load[1]}."
        ),
        "",
    ]
    if names:
        lines += render_accuracy(args, methods, names) + [""]
    if throughput_rows:
        lines += render_throughput(args, throughput_rows)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("PYNOMALY_ADBENCH_DIR", DEFAULT_DATA_DIR)),
    )
    parser.add_argument(
        "--datasets",
        default="all",
        help="comma-separated names, 'all', or 'none' (throughput part only)",
    )
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=10, help="PyOD's default is 10")
    parser.add_argument("--batch-size", type=int, default=32, help="PyOD's default is 32")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument(
        "--pyod-threads",
        default="default,1",
        help="comma-separated torch thread settings for PyOD ('default' or ints)",
    )
    parser.add_argument(
        "--throughput-features",
        default="21,100",
        help="feature counts for the throughput part; empty to skip it",
    )
    parser.add_argument("--throughput-rows", type=int, default=262_144)
    parser.add_argument("--throughput-repeats", type=int, default=5)
    parser.add_argument(
        "--peak-size",
        type=int,
        default=2048,
        help="side of the square float32 matmul that measures the peak GFLOP/s",
    )
    parser.add_argument("--out", type=Path, help="write the Markdown report here (default stdout)")
    args = parser.parse_args(argv)

    from sklearn.metrics import average_precision_score, roc_auc_score

    files = [] if args.datasets == "none" else dataset_files(args.data_dir.resolve(), args.datasets)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = make_methods(args.pyod_threads)
    warm = np.random.default_rng(0).random((256, 8))
    for method in methods if files else []:  # imports and first calls stay out of the timings
        method.fit_score(warm, warm, 0, 1, args.batch_size, args.device)
    load_start = load_average()
    names = []
    for path in files:
        name = path.stem.split("_", 1)[1]
        names.append(name)
        with np.load(path, allow_pickle=False) as data:
            X, y = np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"]).astype(int)
        for seed in seeds:
            X_train, X_test, _, y_test = adbench_split(X, y, seed)
            for method in methods:
                start = time.perf_counter()
                scores, info = method.fit_score(
                    X_train, X_test, seed, args.epochs, args.batch_size, args.device
                )
                seconds = time.perf_counter() - start
                method.results.append(
                    {
                        "dataset": name,
                        "seed": seed,
                        "seconds": seconds,
                        "auc": roc_auc_score(y_test, scores),
                        "ap": average_precision_score(y_test, scores),
                        **info,
                    }
                )
            print(
                f"{name} seed {seed}: "
                + ", ".join(
                    f"{m.name}{'' if m.threads is None else m.threads} "
                    f"{m.results[-1]['auc']:.3f}/{m.results[-1]['seconds']:.1f}s"
                    for m in methods
                ),
                file=sys.stderr,
                flush=True,
            )
    throughput_rows = []
    for n_features in filter(None, args.throughput_features.split(",")):
        for n_jobs in (None, 1):
            throughput_rows.append(
                throughput(
                    int(n_features),
                    args.throughput_rows,
                    n_jobs,
                    args.throughput_repeats,
                    args.peak_size,
                )
            )
    command = "python benchmarks/deep_autoencoder.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    report = render(
        args, methods, names, throughput_rows, (load_start, load_average()), command.strip()
    )
    if args.out:
        args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
