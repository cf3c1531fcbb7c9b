"""The one arrow of the architecture: ``pynomaly_assets`` imports ``pynomaly_core``, never the reverse,
and ``pynomaly_core`` never imports dagster — checked for every module at once, so a new module
cannot slip past a per-module test."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pynomaly_core

CORE = Path(pynomaly_core.__file__).parent
FORBIDDEN = ("dagster", "pynomaly_assets")


def core_modules() -> list[str]:
    names = []
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(CORE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imported_roots(path: Path) -> set[str]:
    """Top-level packages named by every import statement in a file, lazy imports inside functions included."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_walk_finds_the_packages():
    modules = core_modules()
    # the walk reaches nested packages, not only top-level modules
    assert {
        "pynomaly_core.lifecycle",
        "pynomaly_core.detectors.persistence",
        "pynomaly_core.detectors.deep.device",
        "pynomaly_core.data.config",
    } <= set(modules)
    assert len(modules) > 40


def test_no_core_source_file_names_dagster_or_the_assets_package():
    offenders = {
        str(path.relative_to(CORE.parent)): sorted(imported_roots(path) & set(FORBIDDEN))
        for path in sorted(CORE.rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_core_module_loads_no_dagster():
    script = (
        "import importlib, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
