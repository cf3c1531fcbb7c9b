"""The platform audit: installed packages against local OSV data, bandit on code, and the WARN
when the database cannot be used (never a clean "no known vulnerabilities")."""

from __future__ import annotations

import datetime as dt
import json
from importlib import metadata
from pathlib import Path

import pytest

from pynomaly_core.maintenance.audit import (
    VULN_DB_ENV,
    audit_platform,
    installed_packages,
    scan_osv,
)

#: a package certainly installed with the code location (the feed files are YAML)
PACKAGE = "pyyaml"
INSTALLED = metadata.version(PACKAGE)
RECENT = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def osv(record_id: str, affected: dict, severity: str = "HIGH", modified: str = RECENT) -> dict:
    return {
        "schema_version": "1.6.0",
        "id": record_id,
        "modified": modified,
        "summary": f"test advisory {record_id}",
        "affected": [affected],
        "database_specific": {"severity": severity},
    }


@pytest.fixture
def vuln_db(tmp_path) -> Path:
    """A local OSV directory: one HIGH advisory naming the installed PyYAML at its installed
    version, one whose fix predates the installed version, one for a package not installed."""
    db = tmp_path / "osv"
    db.mkdir()
    records = [
        osv(
            "GHSA-test-hit1",
            {"package": {"ecosystem": "PyPI", "name": "PyYAML"}, "versions": [INSTALLED]},
        ),
        osv(
            "GHSA-test-old1",
            {
                "package": {"ecosystem": "PyPI", "name": PACKAGE},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}]}
                ],
            },
            severity="CRITICAL",
        ),
        osv(
            "GHSA-test-none",
            {
                "package": {"ecosystem": "PyPI", "name": "surely-not-installed-pkg"},
                "versions": ["1.0"],
            },
        ),
    ]
    for record in records:
        (db / f"{record['id']}.json").write_text(json.dumps(record))
    return db


def test_a_high_advisory_for_an_installed_version_is_a_high_finding(vuln_db):
    result = audit_platform(vuln_db, code_dirs=[])
    assert result.vuln_records == 3
    assert [(f.id, f.subject, f.severity) for f in result.findings] == [
        ("GHSA-test-hit1", f"{PACKAGE}=={INSTALLED}", "HIGH")
    ]
    assert result.status == "high" and not result.warnings
    section = result.section()
    assert section["high_findings"] == 1 and section["packages_checked"] == len(
        installed_packages()
    )


def test_ecosystem_ranges_follow_introduced_and_fixed(tmp_path):
    db = tmp_path / "osv"
    db.mkdir()
    ranged = {
        "package": {"ecosystem": "PyPI", "name": "demo-pkg"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.2"}, {"fixed": "1.5.1"}]}],
    }
    (db / "r.json").write_text(json.dumps(osv("GHSA-range", ranged, severity="MODERATE")))
    for version, hit in (("1.1", False), ("1.2", True), ("1.5.0", True), ("1.5.1", False)):
        _, findings, _ = scan_osv(db, {"demo-pkg": version})
        assert bool(findings) is hit, version
    _, findings, _ = scan_osv(db, {"demo-pkg": "1.3"})
    assert findings[0].severity == "MEDIUM" and findings[0].fixed_in == "1.5.1"


@pytest.mark.parametrize("setting", ["unset", "missing", "empty"])
def test_an_unusable_database_is_a_warn_never_no_known_vulnerabilities(
    setting, tmp_path, monkeypatch
):
    monkeypatch.delenv(VULN_DB_ENV, raising=False)
    if setting == "missing":
        monkeypatch.setenv(VULN_DB_ENV, str(tmp_path / "nowhere"))
    elif setting == "empty":
        (tmp_path / "empty").mkdir()
        monkeypatch.setenv(VULN_DB_ENV, str(tmp_path / "empty"))
    result = audit_platform(code_dirs=[])
    assert result.status == "warn" and result.findings == []
    text = json.dumps(result.section()).lower()
    assert "not checked" in text
    assert "no known vulnerabilities" not in text
    assert result.section()["packages_checked"] == 0


def test_a_stale_database_is_a_warn(tmp_path):
    db = tmp_path / "osv"
    db.mkdir()
    record = osv(
        "GHSA-old",
        {"package": {"ecosystem": "PyPI", "name": "surely-not-installed-pkg"}, "versions": ["1"]},
        modified="2020-01-01T00:00:00Z",
    )
    (db / "old.json").write_text(json.dumps(record))
    result = audit_platform(db, code_dirs=[], max_age_days=14)
    assert result.status == "warn" and "days old" in result.warnings[0]


def test_bandit_reports_a_high_issue_in_scanned_code(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "bad.py").write_text(
        "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n"
    )
    (code / "ok.py").write_text(
        "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)  # nosec B602\n"
    )
    result = audit_platform(tmp_path / "nowhere", code_dirs=[code])
    bandit = [f for f in result.findings if f.source == "bandit"]
    assert [(f.id, f.severity) for f in bandit] == [("B602", "HIGH")]
    assert bandit[0].subject.endswith("bad.py:5")
    assert result.status == "high" and result.bandit_counts["HIGH"] == 1


def test_the_weekly_asset_fails_its_check_and_the_report_names_high_findings(
    vuln_db, tmp_path, monkeypatch
):
    """``platform_audit`` in a feed's maintenance job: the check is an ERROR on a high finding,
    and the report's notification reasons name it (the rest of the week is not needed)."""
    import dagster as dg

    from pynomaly_assets.defs.maintenance import NO_HIGH_FINDINGS, audit_reasons
    from tests.assets.helpers import SMALL_DEMO, check_results, definitions_for, write_feed

    monkeypatch.setenv(VULN_DB_ENV, str(vuln_db))
    feeds = tmp_path / "feeds"
    write_feed(feeds, SMALL_DEMO)
    defs = definitions_for(feeds)
    key = dg.AssetKey([SMALL_DEMO["name"], "platform_audit"])
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = defs.resolve_job_def(f"{SMALL_DEMO['name']}__maintenance").execute_in_process(
            instance=instance, partition_key="2026-11-02", asset_selection=[key]
        )
        assert result.success
        assert check_results(instance, result.run_id) == {NO_HIGH_FINDINGS: False}
        evaluation = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(key, NO_HIGH_FINDINGS)
        ).event.asset_check_evaluation
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR
        section = result.output_for_node(key.to_python_identifier())
    assert section["status"] == "high" and "GHSA-test-hit1" in json.dumps(section["findings"])
    assert audit_reasons(section) == [
        f"platform_audit: 1 high or critical finding(s): GHSA-test-hit1 ({PACKAGE}=={INSTALLED})"
    ]
