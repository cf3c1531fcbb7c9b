"""Every script in ``benchmarks/`` runs end to end at a tiny size and prints the ratios it promises.

A benchmark is run by hand, rarely, so an API or schema change used to break it silently
(``export_copy.py`` crashed once the anomaly table gained columns). Each test here calls the
script's real entry point, ``main(argv)``, in this process, at a size that takes seconds, and
checks the figures its report promises are there and are numbers (their values mean nothing
at this size, apart from the agreement checks: identical scores, identical stored rows).
Scripts that read the ADBench datasets skip, saying why, when the folder
(``$PYNOMALY_ADBENCH_DIR`` or ``../shared/datasets/adbench``) is absent, and so does
``monitoring_real.py`` without ``../shared/datasets/timeseries/nab``; ``export_copy.py`` needs
the test PostgreSQL server (``tests/pg.py``). A new script fails
``test_every_benchmark_script_has_a_smoke_test`` until a test module in ``tests/benchmarks/``
names it.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.pg import server_url, temporary_database

REPO_ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"([0-9][0-9,]*\.?[0-9]*(?:e[+-]?[0-9]+)?)"


@pytest.fixture(autouse=True)
def environment_is_left_alone():
    """A script run in this process must not leave settings behind for the tests after it.

    It may not change or remove a variable, nor add a Pynomaly or BLAS/OpenMP thread setting
    (the streaming and selection scripts once did); what importing torch or PyOD adds
    (``KMP_*``, ``PYTHONHASHSEED``) is theirs, in any test that imports them.
    """
    watched = re.compile(r"PYNOMALY_|(OMP|OPENBLAS|MKL)_NUM_THREADS$")
    before = dict(os.environ)
    yield
    after = dict(os.environ)
    changed = sorted(k for k in before if k != "PYTEST_CURRENT_TEST" and after.get(k) != before[k])
    added = sorted(k for k in after.keys() - before.keys() if watched.match(k))
    assert not changed and not added, f"changed {changed}, added {added}"


#: every script this module runs, by the module path it is imported under (``benchmarks/<name>.py``)
SCRIPTS = {
    "adbench": "benchmarks.adbench",
    "backfill": "benchmarks.backfill",
    "deep_autoencoder": "benchmarks.deep_autoencoder",
    "drift": "benchmarks.drift",
    "explain": "benchmarks.explain",
    "export_copy": "benchmarks.export_copy",
    "feedback": "benchmarks.feedback",
    "knn": "benchmarks.knn",
    "load_time": "benchmarks.load_time",
    "machine": "benchmarks.machine",
    "monitoring_real": "benchmarks.monitoring_real",
    "real_graph": "benchmarks.real_graph",
    "scoring": "benchmarks.scoring",
    "selection": "benchmarks.selection",
    "streaming": "benchmarks.streaming",
}


def _load(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as ``benchmarks.<name>``: imported when its test runs, not at collection."""
    return importlib.import_module(SCRIPTS[name])


def _run(name: str, argv: list[str], capsys) -> tuple[object, str]:
    """Call ``main(argv)`` of ``benchmarks/<name>.py``; returns its result and what it printed."""
    result = _load(name).main(argv)
    return result, capsys.readouterr().out


def _run_apart(name: str, argv: list[str]) -> str:
    """Run ``benchmarks/<name>.py`` in a process of its own; returns what it printed.

    For scripts that run Dagster jobs: run in a pytest worker that had imported TensorFlow
    (tests/core/detectors), their runs left pytest's captured stderr closed, and every later test
    on that worker erred with "I/O operation on closed file" (cause not found, see the issue note).
    """
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", SCRIPTS[name], *argv],
        check=False,
        cwd=REPO_ROOT,
        # the session's signing key file stays; the scripts set their own homes
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _figures(pattern: str, text: str, count: int = 1) -> list[float]:
    """The numbers ``pattern`` captures in ``text``; fails unless it matches ``count`` times or more."""
    found = re.findall(pattern, text)
    assert len(found) >= count, f"expected {count} x {pattern!r} in the report:\n{text}"
    values = [
        float(v.replace(",", ""))
        for match in found
        for v in (match if isinstance(match, tuple) else (match,))
    ]
    assert all(math.isfinite(v) and v >= 0 for v in values), (pattern, values)
    return values


def _adbench_dir() -> Path:
    return _load("adbench").default_data_dir()


needs_adbench = pytest.mark.skipif(
    not (_adbench_dir() / "42_WBC.npz").exists(),
    reason=f"ADBench datasets not found at {_adbench_dir()} (set PYNOMALY_ADBENCH_DIR to run this smoke test)",
)
NAB_DIR = REPO_ROOT.parent / "shared" / "datasets" / "timeseries" / "nab"


def test_every_benchmark_script_has_a_smoke_test():
    """A script counts as covered when a test module here names it (``"name"`` or ``name.py``)."""
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    missing = sorted(
        p.name
        for p in (REPO_ROOT / "benchmarks").glob("*.py")
        if f'"{p.stem}"' not in tests and p.name not in tests
    )
    assert not missing, f"no smoke test in tests/benchmarks/ runs {missing}"


def test_backfill_prints_single_run_against_one_run_per_partition():
    out = _run_apart("backfill", ["--hours", "4", "--sample", "2"])
    assert "runs: 4 vs 1" in out
    _figures(r"one run per partition / single run, wall time: " + NUMBER + "x", out)
    assert "extrapolated from 2 measured runs" in out
    assert "4 of 4 validated partitions" in out


def test_machine_describes_cpu_time_and_load():
    machine = _load("machine")
    assert "cores available" in machine.cpu_description()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", machine.utc_stamp())
    assert re.fullmatch(r"(\d+\.\d\d / \d+\.\d\d / \d+\.\d\d|n/a)", machine.load_average())


def test_scoring_prints_pipeline_over_detector_ratios(capsys):
    ratios, out = _run(
        "scoring",
        ["--rows", "3000", "--train-rows", "2000", "--detectors", "IForest,HBOS", "--repeats", "1"],
        capsys,
    )
    assert set(ratios) == {"IForest", "HBOS"} and all(r > 0 for r in ratios.values())
    _figures(r"\n(?:IForest|HBOS)\s+" + NUMBER + r"\s+" + NUMBER + r"\s+" + NUMBER, out, count=2)


def test_streaming_prints_memory_and_throughput_ratios(capsys, tmp_path):
    ratios, out = _run(
        "streaming",
        [
            "--rows",
            "2000",
            "--scale",
            "2",
            "--chunk-rows",
            "1000",
            "--train-rows",
            "1000",
            "--workdir",
            str(tmp_path),
            "--one-process",
        ],
        capsys,
    )
    assert set(ratios) == {
        "rss_streaming",
        "rss_with_metadata",
        "rss_in_memory",
        "streamed_vs_score",
        "streamed_vs_detector",
    }
    _figures(r"streaming " + NUMBER + r"x, with metadata " + NUMBER + r"x", out)
    _figures(NUMBER + r"x AnomalyModel.score on one chunk, " + NUMBER + r"x the detector", out)


def test_drift_prints_floor_and_evidently_ratios_and_agreement(capsys):
    _, out = _run(
        "drift",
        ["--rows", "3000", "--columns", "4", "--drifted", "2", "--repeats", "1", "--skip-demo"],
        capsys,
    )
    _figures(r"ours / floor = " + NUMBER, out)
    _figures(r"evidently / ours = " + NUMBER, out)
    agree, total = _figures(r"ours vs Evidently on all rows: (\d+)/(\d+) agree", out)
    assert total == 4 and agree <= total


def test_explain_prints_explain_over_score_and_method_ratios(capsys):
    _, out = _run(
        "explain",
        [
            "--rows",
            "2000",
            "--train-rows",
            "1000",
            "--compare-rows",
            "3",
            "--background",
            "5",
            "--repeats",
            "1",
            "--no-shap-reference",
            "--no-permutation",
        ],
        capsys,
    )
    assert len(_figures(r"explain/score = " + NUMBER, out, count=2)) == 2  # cold and warm
    _figures(r"tree: explain\(method='tree'\) \[ours\]\s+" + NUMBER + r"\s+" + NUMBER, out)
    (difference,) = _figures(r"max \|difference\| " + NUMBER, out)
    assert difference < 1e-9  # our TreeSHAP equals shap.TreeExplainer


@pytest.mark.postgres
def test_export_copy_builds_its_frame_from_the_table_spec_and_prints_its_ratios(capsys):
    with (
        temporary_database()
    ):  # skips (or fails, with PYNOMALY_TEST_PG_URL set) when the server is unreachable
        pass
    code, out = _run(
        "export_copy",
        [
            "--rows",
            "1000",
            "--repeats",
            "1",
            "--to-sql-rows",
            "100",
            "--server-url",
            server_url().render_as_string(hide_password=False),
        ],
        capsys,
    )
    assert code == 0
    _figures(r"ours / reference = " + NUMBER, out)
    _figures(
        r"ours / floor = "
        + NUMBER
        + r"; to_sql / ours = "
        + NUMBER
        + r"; CSV / binary = "
        + NUMBER,
        out,
    )
    assert "(a) and (b) stored identical rows" in out


def test_export_copy_frame_fills_any_column_the_table_gains():
    import datetime as dt

    from pynomaly_core.warehouse import ANOMALY_TABLE, Column, TableSpec
    from pynomaly_core.warehouse.frames import to_arrow

    kinds = ("text", "float", "int", "bool", "timestamp", "date", "json")
    wider = TableSpec(
        name="anomaly_scores_plus",
        columns=ANOMALY_TABLE.columns
        + tuple(
            Column(f"new_{kind}_{int(nullable)}", kind, nullable=nullable)
            for kind in kinds
            for nullable in (False, True)
        )
        + (
            Column("new_choice", "text", allowed=frozenset({"a", "b"})),
            Column("new_share", "float", bounds=(0, 1)),
        ),
        primary_key=ANOMALY_TABLE.primary_key,
    )
    frame = _load("export_copy").synthetic_scores(500, 0.05, seed=1, spec=wider)
    assert list(frame.columns) == [c.name for c in wider.frame_columns]
    assert (
        to_arrow(wider, frame, feed="bench", day=dt.date(2024, 5, 1)).num_rows == 500
    )  # the spec accepts it


def test_knn_prints_speed_ups_at_identical_scores(capsys):
    code, out = _run(
        "knn", ["--n-train", "300", "--n-test", "300", "--features", "4", "--lof"], capsys
    )
    assert code == 0
    assert len(_figures(r"\*\*" + NUMBER + r"x\*\*", out, count=2)) == 2  # KNN and LOF
    differences = _figures(r"\| " + NUMBER + r" \| " + NUMBER + r" \|\n", out, count=2)
    assert max(differences) < 1e-9  # TorchKNN/TorchLOF give PyOD's scores


def test_load_time_prints_location_over_dagster_ratio(capsys):
    _, out = _run("load_time", ["--repeats", "1"], capsys)
    _figures(r"ratio code location / dagster alone: " + NUMBER, out)
    assert re.search(r"pynomaly_assets.definitions\s+\S+\s+\S+\s+none", out), (
        out
    )  # no heavy framework imported


@needs_adbench
def test_adbench_prints_ours_against_the_wrapped_library_and_published(capsys, tmp_path):
    code, out = _run(
        "adbench",
        [
            "--detectors",
            "IForest,HBOS",
            "--datasets",
            "WBC",
            "--seeds",
            "1",
            "--max-seconds-per-fit",
            "0",
            "--out",
            str(tmp_path / "results.csv"),
        ],
        capsys,
    )
    assert code == 0
    for detector in ("IForest", "HBOS"):
        ours, reference, difference, published = _figures(
            detector + r"\s+1/1\s+" + NUMBER + r"\s+" + NUMBER + r"\s+" + NUMBER + r"\s+" + NUMBER,
            out,
        )
        assert ours == reference and difference == 0  # the adapter reproduces the library
        assert 0 < published <= 1  # the published ADBench ROC-AUC is joined


@needs_adbench
def test_deep_autoencoder_prints_time_ratio_and_matmul_fraction(capsys):
    code, out = _run(
        "deep_autoencoder",
        [
            "--datasets",
            "WBC",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--pyod-threads",
            "1",
            "--throughput-features",
            "8",
            "--throughput-rows",
            "2048",
            "--throughput-repeats",
            "1",
            "--peak-size",
            "256",
        ],
        capsys,
    )
    assert code == 0
    _figures(r"time ratio \*\*" + NUMBER + r"\*\*", out)
    _figures(
        r"\| 8 \| 2048 \| \d+ \| " + NUMBER + r" \| " + NUMBER + r" \| " + NUMBER, out, count=2
    )


@needs_adbench
def test_selection_prints_auto_against_iforest(capsys, tmp_path):
    code, out = _run(
        "selection",
        [
            "--datasets",
            "WBC",
            "--seeds",
            "1",
            "--no-pyod",
            "--candidates",
            "IForest,HBOS",
            "--out",
            str(tmp_path / "selection.csv"),
        ],
        capsys,
    )
    assert code == 0
    _figures(r"\nall\s+1\s+" + NUMBER + r"\s+" + NUMBER, out)  # auto and IForest, mean ROC-AUC
    _figures(r"mean \(1 datasets\)\s+" + NUMBER, out, count=2)


@needs_adbench
def test_feedback_prints_ours_against_the_baselines_side_by_side(capsys, tmp_path):
    code, out = _run(
        "feedback",
        [
            "--datasets",
            "WBC",
            "--budgets",
            "0.1",
            "--rounds",
            "1",
            "--per-round",
            "8",
            "--baselines",
            "DevNet",
            "--devnet-epochs",
            "1",
            "--out",
            str(tmp_path / "feedback.csv"),
        ],
        capsys,
    )
    assert code == 0
    # best label-free, ours, DevNet, then ours minus each
    _figures(r"\| 10% \| 1 \| ROC-AUC \| " + NUMBER + r" \| " + NUMBER + r" \| " + NUMBER, out)
    _figures(r"\| 1 \| 8 \| AP \| " + NUMBER + r" \| " + NUMBER + r" \| " + NUMBER, out)
    assert "Targets:" in out


@pytest.mark.skipif(not NAB_DIR.is_dir(), reason=f"NAB series not found at {NAB_DIR}")
def test_monitoring_real_prints_failing_days_under_both_rules(capsys):
    code, out = _run(
        "monitoring_real",
        ["--series", "realTweets/Twitter_volume_AAPL.csv", "--days", "5", "--train-days", "3"],
        capsys,
    )
    assert code == 0
    figures = _figures(
        r"normal days failing a check (\d+)/(\d+) \(normal-day profile\) vs (\d+)/(\d+)", out
    )
    assert figures[1] == figures[3] > 0  # both rules judge the same normal days


@pytest.mark.slow
@pytest.mark.skipif(
    not NAB_DIR.is_dir() or not (NAB_DIR.parent / "skab").is_dir(),
    reason=f"NAB or SKAB not found under {NAB_DIR.parent}",
)
def test_real_graph_prints_graph_against_direct_for_nab_and_skab():
    out = _run_apart("real_graph", ["--smoke"])
    nab_scores = re.search(r"all NAB rows: graph (-?[0-9.]+) vs direct (-?[0-9.]+)", out)
    assert nab_scores, out  # NAB scores may be negative (worse than detecting nothing)
    assert all(math.isfinite(float(v)) for v in nab_scores.groups())
    _figures(r"SKAB graph/direct F1 ratio " + NUMBER + ", FAR ratio " + NUMBER, out)
    assert "graph (exported table)" in out and "direct (benchmarks/skab.py)" in out
    assert "FAILED" not in out


SCRIPTS["celery_workers"] = "benchmarks.celery_workers"


@pytest.mark.postgres
def test_celery_workers_prints_one_against_two_workers():
    pytest.importorskip("dagster_celery", reason="dagster-celery is not installed (extra 'deploy')")
    from tests.system.celery_cluster import rabbitmq_unavailable

    reason = rabbitmq_unavailable()
    if reason:
        pytest.skip(reason)
    with temporary_database():  # skips, saying why, without the test PostgreSQL server
        pass
    out = _run_apart(
        "celery_workers",
        ["--machines", "12", "--interval-minutes", "15", "--fan-out-rows", "1000"],
    )
    assert "1,152 rows (12 machines every 15 min), 2 chunks" in out
    _figures(r"\n1\s+" + NUMBER + r"\s+" + NUMBER + r"\s+" + NUMBER + r"\s+" + NUMBER, out)
    _figures(r"\n2\s+" + NUMBER + r"\s+" + NUMBER + r"\s+" + NUMBER + r"\s+" + NUMBER, out)
    _figures(r"2 workers / 1 worker throughput: run " + NUMBER + r"x, chunk phase " + NUMBER, out)
    assert "identical scored partitions (1 vs 2 workers): yes" in out
