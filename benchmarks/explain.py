"""SHAP explanations of IForest anomalies: explained rows/s per method, and explain vs score time.

Data: the demo feed's generator (``pynomaly_core.data.demo``, 24 machines at one reading a
minute, 5 numeric sensors and ``machine_type``), the same as ``benchmarks/scoring.py``.
One IForest ``AnomalyModel`` (registry defaults: 100 trees, 256 rows each, contamination
0.01) is fitted on ``--train-rows`` and scores a partition of ``--rows``; everything below
uses that one fitted model, in one process:

(a) the ``--compare-rows`` highest-scoring rows are explained with each method —
    ``explain(method="tree")`` (our isolation-tree TreeSHAP), ``shap.TreeExplainer`` on the
    same forest (same values: the largest difference is printed), ``explain(method=
    "kernel")`` and ``explain(method="permutation")`` (background: ``--background`` rows
    of the training frame) — and rows/s and ratios to Kernel are printed;
(b) the whole partition is scored with ``AnomalyModel.score`` (best of ``--repeats``), the
    top ``--top-fraction`` of rows by score are explained with ``explain(method="auto")``,
    cold (the first call in the process: numba's compiled-code cache is loaded and the
    forest's tables built) and warm (best of ``--repeats``), and so, once, does
    ``shap.TreeExplainer`` (the reference); explain/score time ratios are printed
    (target: < 0.5). The very first run after installing or editing
    ``pynomaly_core/explain/forest.py`` also JIT-compiles the numba kernels (~5 s; the cold line
    says whether the cache was hit).

``--fidelity`` adds the measurement behind the Kernel-vs-Permutation choice of
``explain(method="auto")`` for non-tree detectors: relative error against a reference and
rows/s for both, at M = 8 (the demo features) and M = 32 (``machine_id`` one-hot too).

    python benchmarks/explain.py --rows 1000000
    python benchmarks/explain.py --rows 100000 --compare-rows 10 --repeats 2   # quick look
    python benchmarks/explain.py --rows 100000 --fidelity
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import cpu_description, load_average, utc_stamp
from benchmarks.scoring import FEATURES, best_of, demo_rows
from pynomaly_core.data.config import FeatureSpec
from pynomaly_core.explain import explain, isolation_forest_of
from pynomaly_core.model import AnomalyModel


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def compare_methods(model, rows, background, args) -> None:
    import shap

    forest = isolation_forest_of(model.detector_)
    X = model.preprocessor_.transform(rows)
    n = len(rows)
    explain(model, rows.iloc[:2], method="tree")  # compile/load numba code and build tables first
    ours = best_of(args.repeats, lambda: explain(model, rows, method="tree"))
    tree_explainer = shap.TreeExplainer(forest)
    reference = np.asarray(tree_explainer.shap_values(X))
    shap_tree = best_of(args.repeats, lambda: tree_explainer.shap_values(X))
    ours_raw = explain(model, rows, method="tree")
    groups = np.array(
        [
            [c.split("=", 1)[0] == f for f in ours_raw.features]
            for c in model.preprocessor_.feature_names_out_
        ],
        dtype=float,
    )
    diff = np.abs(ours_raw.values - (-reference) @ groups).max()
    sampled = {}
    for method in ("kernel", *(["permutation"] if args.permutation else [])):
        # the first call in a process also JIT-compiles shap's numba maskers: timed apart
        _, first = timed(
            lambda m=method: explain(
                model,
                rows.iloc[:1],
                method=m,
                background=background,
                max_background=args.background,
            )
        )
        result, seconds = timed(
            lambda m=method: explain(
                model, rows, method=m, background=background, max_background=args.background
            )
        )
        sampled[method] = (result, seconds, first)
    kernel_result, kernel, _ = sampled["kernel"]
    print(
        f"\n(a) the {n} highest-scoring rows, one fitted IForest, {args.background} background rows "
        f"for {'/'.join(sampled)}"
    )
    print(f"{'method':44s} {'rows/s':>10s} {'x kernel':>9s}")
    lines = [("tree: explain(method='tree') [ours]", ours), ("tree: shap.TreeExplainer", shap_tree)]
    lines += [
        (f"{method}: explain(method='{method}')", seconds)
        for method, (_, seconds, _) in sampled.items()
    ]
    for label, seconds in lines:
        print(f"{label:44s} {n / seconds:10,.1f} {kernel / seconds:9.1f}")
    print(f"ours vs shap.TreeExplainer: max |difference| {diff:.2e} (tree levels)")
    print(
        "first call in the process, 1 row: "
        + ", ".join(f"{method} {first:.2f} s" for method, (_, _, first) in sampled.items())
    )
    for method, (result, _, _) in sampled.items():
        print(f"{method + ':':12s} {result.note}")
    top_tree = explain(model, rows, method="tree").top(1)["feature_1"]
    top_kernel = kernel_result.top(1)["feature_1"]
    print(f"rows whose top feature agrees, tree vs kernel: {(top_tree == top_kernel).mean():.0%}")


def explain_vs_score(model, partition, args) -> None:
    scored, score_s = timed(lambda: model.score(partition))
    if args.repeats > 1:
        score_s = min(score_s, best_of(args.repeats - 1, lambda: model.score(partition)))
    k = max(1, round(args.top_fraction * len(partition)))
    top = partition.loc[scored["score"].nlargest(k).index]
    cold_result, cold = timed(lambda: explain(model, top, method="auto"))
    warm = best_of(args.repeats, lambda: explain(model, top, method="auto"))
    print(
        f"\n(b) score {len(partition):,} rows, explain the top {args.top_fraction:.1%} "
        f"({k:,} rows) with method='auto' -> {cold_result.method!r}"
    )
    print(
        f"score (AnomalyModel.score, best of {args.repeats}) {score_s:8.2f} s   "
        f"{len(partition) / score_s:12,.0f} rows/s"
    )
    from pynomaly_core.explain.forest import _compile

    stats = [kernel.stats for kernel in _compile().values()]
    compiled = (
        "numba cache hit"
        if not any(s.cache_misses for s in stats)
        else "JIT-compiled: no numba cache yet"
    )
    print(
        f"explain, cold (first call in process)      {cold:8.2f} s   {k / cold:12,.0f} rows/s   "
        f"explain/score = {cold / score_s:.3f}  ({compiled})"
    )
    print(
        f"explain, warm (best of {args.repeats})                {warm:8.2f} s   {k / warm:12,.0f} rows/s   "
        f"explain/score = {warm / score_s:.3f}"
    )
    if args.shap_reference:
        import shap

        forest = isolation_forest_of(model.detector_)
        X = model.preprocessor_.transform(top)
        explainer, init = timed(lambda: shap.TreeExplainer(forest))
        _, reference = timed(lambda: explainer.shap_values(X))
        reference += init
        print(
            f"reference: shap.TreeExplainer, same rows      {reference:8.2f} s   {k / reference:12,.0f} rows/s   "
            f"explain/score = {reference / score_s:.3f}"
        )
    print("target: explain/score < 0.5")


def fidelity(train, partition, args) -> None:
    """Kernel vs Permutation: relative error and rows/s at equal budgets, M = 8 and M = 32."""
    import shap

    logging.getLogger("shap").setLevel(logging.ERROR)
    print(
        "\nfidelity: mean |phi - reference| / mean |reference| over the top rows, IForest, "
        f"{args.background} background rows"
    )
    for label, features in [
        ("M=8", FEATURES),
        ("M=32", FEATURES + [FeatureSpec(name="machine_id", type="category")]),
    ]:
        model = AnomalyModel(features, "IForest", contamination=0.01).fit(train)
        scores = model.decision_function(partition)
        rows = partition.iloc[np.argsort(-scores)[: args.fidelity_rows]]
        X = model.preprocessor_.transform(rows)
        rng = np.random.default_rng(0)
        B = model.preprocessor_.transform(
            train.iloc[rng.choice(len(train), args.background, replace=False)]
        )
        f = model.detector_.decision_function
        M = X.shape[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if M <= 10:  # every coalition: exact Shapley values of the background game
                np.random.seed(1)
                reference = shap.KernelExplainer(f, B).shap_values(
                    X, nsamples=2**M - 2, l1_reg=False, silent=True
                )
                ref_label = "exact (all coalitions)"
            else:
                explainer = shap.PermutationExplainer(
                    f, shap.maskers.Independent(B, max_samples=len(B)), seed=1
                )
                reference = explainer(X, max_evals=150 * (2 * M + 1), silent=True).values
                ref_label = "150 antithetic permutations, another seed"
            scale = np.abs(reference).mean()
            print(f"{label} ({M} preprocessed columns), reference: {ref_label}")
            print(f"  {'method':12s} {'evals':>6s} {'rows/s':>8s} {'rel.err':>8s}")
            budgets = [2 * M + 1, 4 * (2 * M + 1), 8 * (2 * M + 1)]
            for evals in budgets:
                explainer = shap.PermutationExplainer(
                    f, shap.maskers.Independent(B, max_samples=len(B)), seed=0
                )
                values, s = timed(
                    lambda e=explainer, x=X, n=evals: e(x, max_evals=n, silent=True).values
                )
                print(
                    f"  {'permutation':12s} {evals:6d} {len(X) / s:8.1f} "
                    f"{np.abs(values - reference).mean() / scale:8.4f}"
                )
            for evals in budgets + ([2**M - 2] if M <= 10 else [2 * M + 2048]):
                np.random.seed(0)
                values, s = timed(
                    lambda f=f, b=B, x=X, n=evals: shap.KernelExplainer(f, b).shap_values(
                        x, nsamples=n, l1_reg=False, silent=True
                    )
                )
                print(
                    f"  {'kernel':12s} {evals:6d} {len(X) / s:8.1f} "
                    f"{np.abs(values - reference).mean() / scale:8.4f}"
                )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the scored partition")
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument(
        "--top-fraction", type=float, default=0.01, help="share of rows explained in (b)"
    )
    parser.add_argument(
        "--compare-rows", type=int, default=20, help="rows explained by every method in (a)"
    )
    parser.add_argument(
        "--background", type=int, default=100, help="background rows for kernel/permutation"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=0, help="numba threads for the tree method (0: all)"
    )
    parser.add_argument(
        "--no-shap-reference",
        dest="shap_reference",
        action="store_false",
        help="skip timing shap.TreeExplainer on the rows of (b)",
    )
    parser.add_argument(
        "--no-permutation",
        dest="permutation",
        action="store_false",
        help="leave permutation SHAP out of (a) (its first call JIT-compiles shap's maskers, ~10 s)",
    )
    parser.add_argument(
        "--fidelity", action="store_true", help="also run the kernel-vs-permutation fidelity table"
    )
    parser.add_argument("--fidelity-rows", type=int, default=8)
    args = parser.parse_args(argv)

    import numba
    import shap

    if args.threads:
        numba.set_num_threads(args.threads)
    print(f"{utc_stamp()}; {cpu_description()}; load average {load_average()}")
    print(
        f"shap {shap.__version__}, numba {numba.__version__} ({numba.get_num_threads()} threads for the "
        f"tree method; scoring runs on 1 thread); OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    train = demo_rows(args.train_rows, dt.date(2026, 11, 1), seed=1)
    partition = demo_rows(args.rows, dt.date(2026, 12, 1), seed=2)
    print(
        f"data: demo generator, trained on {len(train):,} rows, partition {len(partition):,} rows x "
        f"{len(FEATURES)} features (8 preprocessed columns)"
    )
    model = AnomalyModel(FEATURES, "IForest", contamination=0.01).fit(train)

    explain_vs_score(model, partition, args)
    scores = model.decision_function(partition.iloc[: min(len(partition), 200_000)])
    rows = partition.iloc[np.argsort(-scores)[: args.compare_rows]]
    compare_methods(model, rows, train, args)
    if args.fidelity:
        fidelity(train, partition.iloc[: min(len(partition), 100_000)], args)


if __name__ == "__main__":
    main()
