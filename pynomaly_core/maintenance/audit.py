"""The weekly platform audit: installed packages against a vulnerability database, bandit on our code.

The ``platform_audit`` asset runs it inside the code location, so it audits what runs: the
distributions installed in that interpreter and the installed ``pynomaly_core`` /
``pynomaly_assets`` sources.

Vulnerability data is OSV (https://ossf.github.io/osv-schema/) read from a local directory
(``$PYNOMALY_VULN_DB_DIR``: one OSV record per ``*.json`` file, e.g. the unpacked
``https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip``, refreshed by whoever
deploys). The code location needs no network access. When the directory is not configured,
missing, empty or holds no PyPI records, the audit says that the packages were **not** checked
(status ``warn``): an unavailable database is never reported as "no known vulnerabilities".

Status: ``high`` when a HIGH or CRITICAL vulnerability affects an installed version or bandit
reports a HIGH-severity issue (the report notifies); ``warn`` when a check could not run or the
database is older than ``max_age_days``; else ``ok``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

__all__ = [
    "VULN_DB_ENV",
    "AuditResult",
    "Finding",
    "audit_platform",
    "installed_packages",
    "run_bandit",
    "scan_osv",
]

#: directory of OSV JSON records the audit reads (never fetched over the network)
VULN_DB_ENV = "PYNOMALY_VULN_DB_DIR"
#: severities that make the audit ``high`` (and the weekly report notify)
HIGH = frozenset({"HIGH", "CRITICAL"})
#: the code bandit scans: our installed packages
OWN_PACKAGES = ("pynomaly_core", "pynomaly_assets")
_GHSA_SEVERITY = {"MODERATE": "MEDIUM"}


def _canonical(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Finding:
    """One vulnerability affecting an installed package, or one bandit issue."""

    source: str  # "osv" or "bandit"
    id: str
    severity: str  # CRITICAL / HIGH / MEDIUM / LOW / UNKNOWN
    subject: str  # "package==version" or "path:line"
    summary: str
    fixed_in: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "source": self.source,
            "id": self.id,
            "severity": self.severity,
            "subject": self.subject,
            "summary": self.summary,
            "fixed_in": self.fixed_in,
        }


@dataclass
class AuditResult:
    """What the audit found and what it could not check (``warnings``)."""

    packages: int = 0
    vuln_records: int = 0
    database: str = ""
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bandit_counts: dict[str, int] = field(default_factory=dict)

    @property
    def high(self) -> list[Finding]:
        return [f for f in self.findings if f.severity in HIGH]

    @property
    def status(self) -> str:
        if self.high:
            return "high"
        return "warn" if self.warnings else "ok"

    def summary(self) -> str:
        """One line for the report, the check and the notification."""
        vulns = [f for f in self.findings if f.source == "osv"]
        code = [f for f in self.findings if f.source == "bandit"]
        parts = []
        if self.vuln_records:
            parts.append(
                f"{self.packages} installed packages checked against {self.vuln_records} "
                f"vulnerability records: {len(vulns)} affected"
                + (f" ({sum(f.severity in HIGH for f in vulns)} high or critical)" if vulns else "")
            )
        if self.bandit_counts:
            parts.append(
                f"bandit: {len(code)} issues ({sum(f.severity in HIGH for f in code)} high)"
            )
        parts += [f"WARN: {w}" for w in self.warnings]
        return "; ".join(parts)

    def section(self) -> dict[str, Any]:
        """The ``platform_audit`` section of the weekly report."""
        return {
            "status": self.status,
            "summary": self.summary(),
            "packages_checked": self.packages if self.vuln_records else 0,
            "vulnerability_database": self.database or "not available",
            "vulnerability_records": self.vuln_records,
            "high_findings": len(self.high),
            "bandit_issues_by_severity": dict(self.bandit_counts),
            "warnings": list(self.warnings),
            "findings": [f.as_dict() for f in self.findings],
        }


def installed_packages() -> dict[str, str]:
    """``{canonical name: version}`` of the distributions installed in this interpreter."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[_canonical(name)] = dist.version
    return out


# ------------------------------------------------------------------ OSV
def _records(directory: Path) -> Iterable[dict[str, Any]]:
    for path in sorted(directory.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        yield from (data if isinstance(data, list) else [data])


def _in_range(version: Version, events: Sequence[dict[str, Any]]) -> bool:
    """OSV ``ECOSYSTEM`` range semantics: introduced <= v < fixed (or <= last_affected)."""
    affected = False
    for event in sorted(events, key=lambda e: _event_version(e) or Version("0")):
        if "introduced" in event:
            start = _event_version(event)
            affected = start is None or version >= start
        elif "fixed" in event and affected:
            fixed = _event_version(event)
            if fixed is not None and version >= fixed:
                affected = False
        elif "last_affected" in event and affected:
            last = _event_version(event)
            if last is not None and version > last:
                affected = False
    return affected


def _event_version(event: dict[str, Any]) -> Version | None:
    value = next(iter(event.values()), None)
    if value in (None, "0"):
        return None
    try:
        return Version(str(value))
    except InvalidVersion:
        return None


def _severity(record: dict[str, Any]) -> str:
    """GHSA's ``database_specific.severity`` (the PyPI advisories carry it), else UNKNOWN."""
    text = str((record.get("database_specific") or {}).get("severity") or "").upper()
    text = _GHSA_SEVERITY.get(text, text)
    return text if text in {"CRITICAL", "HIGH", "MEDIUM", "LOW"} else "UNKNOWN"


def _fixed(affected: dict[str, Any]) -> str:
    return ", ".join(
        str(e["fixed"])
        for r in affected.get("ranges") or []
        for e in r.get("events") or []
        if "fixed" in e
    )


def scan_osv(
    directory: Path, packages: dict[str, str]
) -> tuple[int, list[Finding], dt.datetime | None]:
    """(PyPI records read, findings for ``packages``, newest ``modified`` in the data)."""
    count, findings, newest = 0, [], None
    for record in _records(directory):
        affected_list = [
            a
            for a in record.get("affected") or []
            if str((a.get("package") or {}).get("ecosystem", "")).startswith("PyPI")
        ]
        if not affected_list:
            continue
        count += 1
        modified = _timestamp(record.get("modified"))
        if modified is not None and (newest is None or modified > newest):
            newest = modified
        for affected in affected_list:
            name = _canonical(str(affected["package"].get("name", "")))
            installed = packages.get(name)
            if installed is None or not _affects(affected, installed):
                continue
            findings.append(
                Finding(
                    source="osv",
                    id=str(record.get("id", "?")),
                    severity=_severity(record),
                    subject=f"{name}=={installed}",
                    summary=str(record.get("summary") or record.get("details") or "")[:300],
                    fixed_in=_fixed(affected),
                )
            )
    return count, findings, newest


def _affects(affected: dict[str, Any], installed: str) -> bool:
    if installed in {str(v) for v in affected.get("versions") or []}:
        return True
    try:
        version = Version(installed)
    except InvalidVersion:
        return False
    return any(
        _in_range(version, r.get("events") or [])
        for r in affected.get("ranges") or []
        if r.get("type") == "ECOSYSTEM"
    )


def _timestamp(value: Any) -> dt.datetime | None:
    try:
        stamp = dt.datetime.fromisoformat(str(value))  # 3.11 reads a trailing Z
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


# ------------------------------------------------------------------ bandit
def own_code_dirs() -> list[Path]:
    """The installed directories of our packages (what the code location imports)."""
    import importlib.util

    dirs = []
    for name in OWN_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            dirs += [Path(p) for p in spec.submodule_search_locations]
    return dirs


def run_bandit(
    paths: Sequence[Path], timeout: float = 600.0
) -> tuple[dict[str, int], list[Finding]]:
    """Bandit on ``paths`` (lines marked ``nosec`` with a test id and reason are skipped by bandit).

    Raises ``FileNotFoundError`` when bandit is not installed in this interpreter.
    """
    argv = [sys.executable, "-m", "bandit", "-q", "-r", *map(str, paths), "-f", "json"]
    done = subprocess.run(  # nosec B603: our interpreter and paths, no shell, no user input
        argv, capture_output=True, text=True, timeout=timeout, check=False
    )
    if "No module named bandit" in done.stderr:
        raise FileNotFoundError("bandit is not installed in this code location")
    try:
        report = json.loads(done.stdout)
    except ValueError as exc:
        raise RuntimeError(f"bandit exited {done.returncode}: {done.stderr[-500:]}") from exc
    counts: dict[str, int] = {}
    findings = []
    for issue in report.get("results", []):
        severity = str(issue.get("issue_severity", "UNDEFINED")).upper()
        counts[severity] = counts.get(severity, 0) + 1
        if severity in ("MEDIUM", "HIGH"):
            findings.append(
                Finding(
                    source="bandit",
                    id=str(issue.get("test_id", "?")),
                    severity=severity,
                    subject=f"{issue.get('filename')}:{issue.get('line_number')}",
                    summary=str(issue.get("issue_text", ""))[:300],
                )
            )
    return counts, findings


# ------------------------------------------------------------------ the audit
def audit_platform(
    vuln_db_dir: str | Path | None = None,
    *,
    packages: dict[str, str] | None = None,
    code_dirs: Sequence[Path] | None = None,
    max_age_days: int = 14,
    now: dt.datetime | None = None,
) -> AuditResult:
    """Audit the running interpreter's packages and our installed code.

    ``vuln_db_dir`` defaults to ``$PYNOMALY_VULN_DB_DIR``; ``packages`` to
    :func:`installed_packages`; ``code_dirs`` to :func:`own_code_dirs` (``[]``: no code scan).
    """
    result = AuditResult()
    packages = installed_packages() if packages is None else packages
    result.packages = len(packages)
    directory = vuln_db_dir if vuln_db_dir is not None else os.environ.get(VULN_DB_ENV)
    not_checked = f"the {len(packages)} installed packages were NOT checked for vulnerabilities"
    if not directory:
        result.warnings.append(
            f"vulnerability database not configured (set {VULN_DB_ENV} to a directory of OSV "
            f"records); {not_checked}"
        )
    elif not Path(directory).is_dir():
        result.warnings.append(
            f"vulnerability database {directory} ({VULN_DB_ENV}) cannot be read: no such "
            f"directory; {not_checked}"
        )
    else:
        result.database = str(directory)
        count, findings, newest = scan_osv(Path(directory), packages)
        result.vuln_records, result.findings = count, findings
        if count == 0:
            result.warnings.append(
                f"vulnerability database {directory} holds no PyPI OSV records; {not_checked}"
            )
        elif newest is not None:
            age = ((now or dt.datetime.now(dt.UTC)) - newest).days
            if age > max_age_days:
                result.warnings.append(
                    f"vulnerability database {directory} is {age} days old (newest record "
                    f"{newest.date()}); vulnerabilities published since are not known to it"
                )
    dirs = own_code_dirs() if code_dirs is None else list(code_dirs)
    if dirs:
        try:
            result.bandit_counts, code = run_bandit(dirs)
            result.findings += code
            if not result.bandit_counts:
                result.bandit_counts = {"HIGH": 0, "MEDIUM": 0, "LOW": 0}
        except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
            result.warnings.append(
                f"bandit did not run ({exc}); the installed code was NOT scanned"
            )
    return result
