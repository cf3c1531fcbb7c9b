#!/usr/bin/env python
"""Label-free model selection (the ``auto`` detector) against fixed choices on ADBench.

Per dataset and seed, with the ADBench protocol of ``benchmarks/adbench.py`` (its
``load_dataset`` / ``adbench_split`` / ``evaluate`` are imported, not copied: resample
to 1,000-10,000 rows, 70/30 stratified split, MinMax on train, constant columns
dropped, unsupervised fit on the training split, ROC-AUC and AP on the test split):

* ``auto``: ``create("auto", random_state=seed)`` with its default portfolio for the
  training split's size, fitted on the training split without labels; its choice and
  the evidence of every candidate are recorded;
* every candidate of that portfolio fitted on the training split (registry defaults,
  ``random_state=seed``), which gives
  - **IForest**: always IForest (the registry's default detector),
  - **best fixed**: the single candidate with the best mean ROC-AUC over the datasets
    in the report (chosen in hindsight, with the labels),
  - **oracle**: per dataset, the candidate with the best mean ROC-AUC over the seeds
    (in hindsight, with the labels);
* **PyOD ADEngine**: PyOD 3's own automatic selection, ``ADEngine(random_state=seed)
  .investigate(X_train)`` (profile-based routing to three detectors from PyOD's
  benchmark knowledge base, then the one agreeing most with their consensus), scoring
  the test split with the chosen fitted detector. It runs offline: ``plan_detection``
  only consults an LLM when an ``llm_client`` is passed, and none is.

The summary prints, per dataset and on average, ROC-AUC and AP of each method; then,
for the "dev" half (even ADBench file numbers, on which the selection rule was
decided), the other half ("held-out") and all datasets: mean ROC-AUC, the share of
datasets with auto >= IForest, and the mean per-dataset difference auto - IForest with
a bootstrap 95 % interval over datasets and a Wilcoxon signed-rank p-value. A last
table re-applies alternative rules to the recorded evidence (synthetic detection
alone, consensus alone) to show what each signal contributes.

Cost guard: every fit-and-score step (auto, one candidate, ADEngine) runs in a worker
process killed after ``--max-seconds-per-fit`` seconds (default 300); the step is
recorded as ``skipped (timeout)``.

Usage::

    python benchmarks/selection.py --datasets all --seeds 1,2,3 --out /tmp/selection.csv
    python benchmarks/selection.py --datasets cardio,thyroid --seeds 1 --out /tmp/sel.csv
    python benchmarks/selection.py --from-csv /tmp/selection.csv     # re-print the summary
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
for _p in (str(REPO_ROOT), str(REPO_ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import adbench  # the ADBench protocol functions (benchmarks/ is on sys.path above)

DEFAULT_SEEDS = (1, 2, 3)
CSV_FIELDS = [
    "dataset", "number", "half", "seed", "method", "detector", "status", "roc_auc",
    "avg_precision", "fit_s", "choice", "synthetic_auc", "synthetic_ap", "consensus",
    "selection_score", "rank", "n_train", "n_features",
]  # fmt: skip


# --------------------------------------------------------------------------- jobs
def half_of(path: Path) -> str:
    """``"dev"`` for even ADBench file numbers (where the rule was decided), else ``"held-out"``."""
    number = adbench._adbench_number(Path(path))
    return "dev" if number % 2 == 0 else "held-out"


def _metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not np.all(np.isfinite(scores)):
        return {"status": f"error: {int((~np.isfinite(scores)).sum())} non-finite test scores"}
    return {
        "status": "ok",
        "roc_auc": float(roc_auc_score(y, scores)),
        "avg_precision": float(average_precision_score(y, scores)),
    }


def run_auto(
    split: adbench.Split, seed: int, candidates: list[str] | None = None
) -> dict[str, Any]:
    """Fit ``auto`` on the training split; metrics on the test split plus its evidence.

    ``candidates`` (registry names) replaces auto's default portfolio when given.
    """
    from pynomaly_core.detectors import create

    t0 = time.perf_counter()
    det = create("auto", candidates=candidates, random_state=seed).fit(split.X_train)
    fit_s = time.perf_counter() - t0
    out = _metrics(split.y_test, det.decision_function(split.X_test))
    ev = det.evidence_
    out.update(
        fit_s=fit_s,
        choice=det.choice_,
        candidates=list(det.candidates_),
        failures=dict(det.failures_),
        evidence={
            name: {c: float(ev.loc[name, c]) for c in ev.columns if c in CSV_FIELDS}
            for name in ev.index
        },
    )
    return out


def run_candidate(split: adbench.Split, seed: int, name: str) -> dict[str, Any]:
    """One registry detector, exactly as ``benchmarks/adbench.py`` evaluates it."""
    out = adbench.evaluate(name, "ours", split, seed)
    out.pop("scores", None)
    if "fit_s" in out and "score_s" in out:
        out["fit_s"] = out["fit_s"] + out.pop("score_s")
    return out


def run_pyod_engine(split: adbench.Split, seed: int) -> dict[str, Any]:
    """PyOD 3's ADEngine: ``investigate`` (offline routing + consensus choice), then score."""
    import logging

    from pyod.utils.ad_engine import ADEngine

    logging.getLogger("pyod").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    engine = ADEngine(random_state=seed)
    state = engine.investigate(split.X_train, data_type="tabular")
    if state.analysis is None:
        return {"status": "error: every ADEngine detector failed"}
    idx = state.analysis["best_detector_index"]
    model = state.results[idx]["detector"]
    fit_s = time.perf_counter() - t0
    out = _metrics(split.y_test, model.decision_function(split.X_test))
    out.update(fit_s=fit_s, choice=state.analysis["best_detector"])
    return out


JOBS = {"auto": run_auto, "candidate": run_candidate, "pyod": run_pyod_engine}


def _worker(conn, threads: int) -> None:  # pragma: no cover - runs in a subprocess
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    warnings.filterwarnings("ignore")
    split_key, split = None, None
    while True:
        try:
            req = conn.recv()
        except EOFError:
            return
        if req is None:
            return
        try:
            key = (req["path"], req["seed"])
            if key != split_key:
                X, y = adbench.load_dataset(req["path"])
                split, split_key = adbench.adbench_split(X, y, req["seed"]), key
            if req["op"] == "prepare":
                conn.send({"status": "ok", **split.describe()})
                continue
            adbench._seed_globals(req["seed"])
            conn.send(JOBS[req["op"]](split, req["seed"], *req.get("args", ())))
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            conn.send({"status": f"error: {type(exc).__name__}: {exc}".replace("\n", " ")[:300]})


class Worker:
    """One persistent worker process; a step that outlives ``max_seconds`` kills it."""

    def __init__(self, max_seconds: float, threads: int) -> None:
        self.max_seconds, self.threads = max_seconds, threads
        self.proc = self.conn = None
        self.prepared: dict[str, Any] | None = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, self.threads), daemon=True)
        with adbench.worker_threads(self.threads):
            self.proc.start()
        child.close()
        self.conn = parent

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.conn.send(None)
                self.proc.join(5)
            except (OSError, BrokenPipeError):
                pass
            if self.proc.is_alive():
                self.proc.kill()
            self.proc = self.conn = None

    def call(self, req: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        if self.proc is None or not self.proc.is_alive():
            self.close()
            self._start()
            if req["op"] != "prepare" and self.prepared is not None:
                self.conn.send(self.prepared)
                self.conn.recv()
        self.conn.send(req)
        try:
            if self.conn.poll(timeout or None):
                return self.conn.recv()
        except (EOFError, OSError):
            code = self.proc.exitcode
            self.proc.kill()
            self.proc = self.conn = None
            return {"status": f"error: worker died (exit code {code})"}
        self.proc.kill()
        self.proc.join(10)
        self.proc = self.conn = None
        return {"status": "skipped (timeout)"}

    def prepare(self, path: Path, seed: int) -> dict[str, Any]:
        self.prepared = {"op": "prepare", "path": str(path), "seed": seed}
        return self.call(self.prepared, None)

    def run(self, op: str, *args: Any) -> dict[str, Any]:
        return self.call({**self.prepared, "op": op, "args": args}, self.max_seconds)


# --------------------------------------------------------------------------- results
def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})


def read_csv(path: Path) -> list[dict[str, Any]]:
    rows = []
    with Path(path).open(newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = dict(raw)
            for k in ("roc_auc", "avg_precision", "fit_s", "synthetic_auc", "synthetic_ap",
                      "consensus", "selection_score", "rank"):  # fmt: skip
                row[k] = float(raw[k]) if raw.get(k) not in (None, "") else None
            for k in ("seed", "number", "n_train", "n_features"):
                row[k] = int(raw[k]) if raw.get(k) not in (None, "") else None
            rows.append(row)
    return rows


def _mean(values) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else float("nan")


def _tables(rows: Sequence[dict[str, Any]]):
    """Per-dataset means over seeds: ``{method key: {dataset: (roc, ap)}}`` plus metadata."""
    import pandas as pd

    df = pd.DataFrame(rows)
    ok = df[df["status"] == "ok"]
    datasets = list(dict.fromkeys(df.sort_values("number")["dataset"]))
    halves = dict(zip(df["dataset"], df["half"], strict=False))
    cand = ok[ok["method"] == "candidate"]
    per_cand = cand.groupby(["detector", "dataset"])[["roc_auc", "avg_precision"]].mean()
    # a candidate must have run on every seed of a dataset to count there
    n_seeds = df[df["method"] == "auto"].groupby("dataset")["seed"].nunique()
    cand_runs = cand.groupby(["detector", "dataset"])["seed"].nunique()
    complete = cand_runs[
        cand_runs.values == n_seeds.reindex(cand_runs.index.get_level_values(1)).values
    ]
    per_cand = per_cand.loc[complete.index]
    roc = per_cand["roc_auc"].unstack("dataset")
    ap = per_cand["avg_precision"].unstack("dataset")
    methods: dict[str, dict[str, tuple[float, float]]] = {}

    def method_table(name: str, sub) -> None:
        if (
            sub.empty
        ):  # not run (--no-pyod) or failed everywhere: no column, and no mean over 0 datasets
            return
        g = sub.groupby("dataset")
        full = g["seed"].nunique() == n_seeds.reindex(g["seed"].nunique().index)
        m = g[["roc_auc", "avg_precision"]].mean()[full]
        methods[name] = {ds: (r.roc_auc, r.avg_precision) for ds, r in m.iterrows()}

    method_table("auto", ok[ok["method"] == "auto"])
    method_table("PyOD ADEngine", ok[ok["method"] == "pyod"])
    methods["IForest"] = {
        ds: (roc.loc["IForest", ds], ap.loc["IForest", ds])
        for ds in datasets
        if "IForest" in roc.index and ds in roc.columns and not math.isnan(roc.loc["IForest", ds])
    }
    # best fixed: among the candidates that ran on every dataset (a detector that fails
    # or is left out of the portfolio somewhere is no usable fixed choice)
    complete_rows = roc.reindex(columns=datasets).dropna(axis=0, how="any")
    best_fixed = complete_rows.mean(axis=1).idxmax() if len(complete_rows) else None
    if best_fixed is not None:
        methods["best fixed"] = {
            ds: (roc.loc[best_fixed, ds], ap.loc[best_fixed, ds])
            for ds in datasets
            if ds in roc.columns and not math.isnan(roc.loc[best_fixed, ds])
        }
    oracle_name = {}
    methods["oracle"] = {}
    for ds in roc.columns:
        col = roc[ds].dropna()
        if len(col):
            best = col.idxmax()
            oracle_name[ds] = best
            methods["oracle"][ds] = (col.loc[best], ap.loc[best, ds])
    choices = (
        df[df["method"] == "auto"].groupby("dataset")["choice"]
        .agg(lambda s: "/".join(dict.fromkeys(x for x in s if isinstance(x, str) and x)))
    )  # fmt: skip
    pyod_choices = (
        df[df["method"] == "pyod"].groupby("dataset")["choice"]
        .agg(lambda s: "/".join(dict.fromkeys(x for x in s if isinstance(x, str) and x)))
    )  # fmt: skip
    coverage = roc.notna().sum(axis=1)
    fixed_means = {name: (float(roc.loc[name].mean()), int(coverage[name])) for name in roc.index}
    return (
        datasets,
        halves,
        methods,
        best_fixed,
        oracle_name,
        choices,
        pyod_choices,
        df,
        fixed_means,
    )


def _f(x: float | None, nd: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def paired_stats(diffs: Sequence[float], seed: int = 0, n_boot: int = 10_000):
    """Mean of per-dataset differences, bootstrap 95 % CI over datasets, Wilcoxon p-value."""
    from scipy.stats import wilcoxon

    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return float("nan"), float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    try:
        p = float(wilcoxon(d, zero_method="zsplit").pvalue) if np.any(d != 0) else 1.0
    except ValueError:
        p = float("nan")
    return float(d.mean()), float(lo), float(hi), p


def render_summary(rows: Sequence[dict[str, Any]]) -> str:
    datasets, halves, methods, best_fixed, oracle_name, choices, pyod_choices, df, fixed = _tables(
        rows
    )
    order = ["auto", "IForest", "best fixed", "oracle", "PyOD ADEngine"]
    order = [m for m in order if m in methods]
    out = []
    head = "dataset          half     " + "".join(f"{m:>15}" for m in order)
    out.append(
        f"best fixed = {best_fixed} (best mean ROC-AUC, in hindsight, among the candidates "
        "that ran on every dataset)"
    )
    out.append(
        "candidates' mean ROC-AUC (datasets where every seed ran): "
        + ", ".join(
            f"{n} {m:.3f} ({c})" for n, (m, c) in sorted(fixed.items(), key=lambda kv: -kv[1][0])
        )
    )
    for label, idx in (("ROC-AUC", 0), ("average precision", 1)):
        out.append(f"\n{label} on the test split, mean over seeds")
        out.append(head + "   auto's choice(s) | oracle | PyOD's choice(s)" * (idx == 0))
        for ds in datasets:
            cells = "".join(f"{_f(methods[m].get(ds, (None, None))[idx]):>15}" for m in order)
            extra = ""
            if idx == 0:
                extra = (
                    f"   {choices.get(ds, '')} | {oracle_name.get(ds, '')} | "
                    f"{pyod_choices.get(ds, '')}"
                )
            out.append(f"{ds:<16} {halves.get(ds, ''):<8} {cells}{extra}")
        # means over the datasets where every method has a value
        common = [ds for ds in datasets if all(ds in methods[m] for m in order)]
        cells = "".join(f"{_mean(methods[m][ds][idx] for ds in common):>15.3f}" for m in order)
        out.append(f"{'mean (' + str(len(common)) + ' datasets)':<25} {cells}")

    out.append("\nauto vs IForest, ROC-AUC per dataset (mean over seeds)")
    out.append(
        f"{'datasets':<10}{'n':>4}{'auto':>8}{'IForest':>9}{'best fixed':>11}{'oracle':>8}"
        f"{'PyOD':>8}{'auto>=IF':>10}{'mean diff':>11}{'95% CI (bootstrap)':>20}{'Wilcoxon p':>12}"
    )
    for name, keep in (("dev", "dev"), ("held-out", "held-out"), ("all", None)):
        ds_list = [
            ds for ds in datasets
            if (keep is None or halves.get(ds) == keep) and ds in methods["auto"]
            and ds in methods["IForest"]
        ]  # fmt: skip
        if not ds_list:
            continue
        diffs = [methods["auto"][ds][0] - methods["IForest"][ds][0] for ds in ds_list]
        mean, lo, hi, p = paired_stats(diffs)
        share = np.mean([d >= 0 for d in diffs])

        def avg(m: str, ds_list: list[str] = ds_list) -> str:
            vals = [methods[m][ds][0] for ds in ds_list if ds in methods.get(m, {})]
            return _f(_mean(vals)) if len(vals) == len(ds_list) else "—"

        out.append(
            f"{name:<10}{len(ds_list):>4}{avg('auto'):>8}{avg('IForest'):>9}{avg('best fixed'):>11}"
            f"{avg('oracle'):>8}{avg('PyOD ADEngine'):>8}{share:>10.2f}{mean:>+11.4f}"
            f"  [{lo:+.4f}, {hi:+.4f}]{p:>12.3g}"
        )
    out.append(_rule_ablation(df, halves))
    out.append(_consistency(df))
    timing = df[(df["status"] == "ok")].groupby("method")["fit_s"].sum()
    out.append(
        "\nseconds (fit + score, summed over jobs): "
        + ", ".join(f"{k} {v:.0f}" for k, v in timing.items())
    )
    bad = df[df["status"] != "ok"]
    if len(bad):
        out.append("not ok: " + "; ".join(
            f"{r.method}/{r.detector or ''} {r.dataset} s{r.seed}: {r.status[:60]}"
            for r in bad.itertuples()
        ))  # fmt: skip
    return "\n".join(out)


def _consistency(df) -> str:
    """auto refits its choice with the same seed and defaults, so its test ROC-AUC must
    equal that candidate's own run; say in how many jobs it does."""
    auto = df[(df["method"] == "auto") & (df["status"] == "ok")]
    cand = df[(df["method"] == "candidate") & (df["status"] == "ok")]
    lookup = {(r.dataset, r.seed, r.detector): r.roc_auc for r in cand.itertuples()}
    same = [
        abs(lookup[(r.dataset, r.seed, r.choice)] - r.roc_auc) < 1e-12
        for r in auto.itertuples()
        if (r.dataset, r.seed, r.choice) in lookup
    ]
    return (
        f"\nauto's test ROC-AUC equals its chosen candidate's own run in {sum(same)} of "
        f"{len(same)} jobs"
    )


def _rule_ablation(df, halves) -> str:
    """Re-apply alternative rules to the recorded evidence: what does each signal add?"""
    ev = df[(df["method"] == "candidate") & df["synthetic_auc"].notna() & (df["status"] == "ok")]
    if ev.empty:
        return ""

    def z(x):
        sd = x.std(ddof=0)
        return (x - x.mean()) / sd if sd > 0 else x * 0.0

    rules = {
        "z(synthetic_auc) + z(consensus)  [auto]": lambda g: z(g.synthetic_auc) + z(g.consensus),
        "synthetic_auc only": lambda g: g.synthetic_auc,
        "synthetic_ap only": lambda g: g.synthetic_ap,
        "consensus only": lambda g: g.consensus,
    }
    per = {name: {} for name in rules}
    for (ds, _seed), g in ev.groupby(["dataset", "seed"]):
        g = g.reset_index(drop=True)
        for name, f in rules.items():
            pick = int(np.argmax(np.asarray(f(g), dtype=float)))  # first max = earlier candidate
            per[name].setdefault(ds, []).append(g.roc_auc[pick])
    lines = ["\nselection rules re-applied to the recorded evidence (mean ROC-AUC of the pick)"]
    lines.append(f"{'rule':<42}{'dev':>8}{'held-out':>10}{'all':>8}")
    for name, by_ds in per.items():
        cells = []
        for keep in ("dev", "held-out", None):
            vals = [np.mean(v) for ds, v in by_ds.items() if keep is None or halves.get(ds) == keep]
            cells.append(_f(_mean(vals)))
        lines.append(f"{name:<42}{cells[0]:>8}{cells[1]:>10}{cells[2]:>8}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="all", help="'all' or comma-separated names")
    ap.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)))
    ap.add_argument("--out", type=Path, default=Path("selection_results.csv"))
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--max-seconds-per-fit", type=float, default=300.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-pyod", action="store_true", help="skip PyOD's ADEngine")
    ap.add_argument(
        "--candidates",
        default=None,
        help="comma-separated registry names: auto's portfolio (default: its own for the data's size)",
    )
    ap.add_argument("--from-csv", type=Path, default=None, help="only re-print a run's summary")
    args = ap.parse_args(argv)

    if args.from_csv:
        print(render_summary(read_csv(args.from_csv)))
        return 0
    from pynomaly_core.detectors.auto import default_portfolio

    data_dir = args.data_dir or adbench.default_data_dir()
    paths = adbench.select_datasets(args.datasets, data_dir)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    portfolio = (
        [c.strip() for c in args.candidates.split(",") if c.strip()] if args.candidates else None
    )
    worker = Worker(args.max_seconds_per_fit, args.threads)
    rows: list[dict[str, Any]] = []
    t_start = time.time()
    try:
        for path in paths:
            ds, number, half = (
                adbench.dataset_name(path),
                adbench._adbench_number(path),
                half_of(path),
            )
            for seed in seeds:
                t0 = time.time()
                info = worker.prepare(path, seed)
                base = {"dataset": ds, "number": number, "half": half, "seed": seed,
                        "n_train": info.get("n_train"), "n_features": info.get("n_features")}  # fmt: skip
                res = worker.run("auto", portfolio)
                auto_row = {**base, "method": "auto", "detector": "auto", **res}
                rows.append(auto_row)
                candidates = res.get("candidates") or default_portfolio(
                    info.get("n_train") or 1, info.get("n_features") or 1
                )
                if "IForest" not in candidates:
                    candidates = ["IForest", *candidates]
                evidence = res.get("evidence") or {}
                for name in candidates:
                    r = worker.run("candidate", name)
                    rows.append(
                        {**base, "method": "candidate", "detector": name, **r,
                         **evidence.get(name, {})}
                    )  # fmt: skip
                if not args.no_pyod:
                    r = worker.run("pyod")
                    rows.append({**base, "method": "pyod", "detector": "ADEngine", **r})
                write_csv(rows, args.out)
                print(
                    f"{ds:<14} seed {seed}: auto {_f(auto_row.get('roc_auc'))} "
                    f"({auto_row.get('choice', auto_row['status'])}), "
                    f"{time.time() - t0:.0f}s",
                    flush=True,
                )
    finally:
        worker.close()
    print(f"\n{len(paths)} datasets x {len(seeds)} seeds in {time.time() - t_start:.0f}s; "
          f"rows in {args.out}\n")  # fmt: skip
    print(render_summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
