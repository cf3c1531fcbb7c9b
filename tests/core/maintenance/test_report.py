"""The weekly report (pynomaly_core.maintenance.report)."""

from __future__ import annotations

import json

import pytest

from pynomaly_core.maintenance import crossed_thresholds, render_report, weekly_sections


def test_render_report_writes_json_and_escaped_html(tmp_path):
    sections = {
        "model_health": {
            "unreproducible": 1,
            "versions": [
                {"version": "3", "detector": "HBOS", "error": "<script>alert('x')</script>"}
            ],
        },
        "quality": {"success_percent": 97.5, "note": "<script>alert(1)</script>"},
        "drift": {"drift_share": [0.1, float("nan"), 0.6]},
    }
    html_path, json_path = render_report("alpha", "2026-01-05", sections, tmp_path / "reports")
    assert html_path.name == "maintenance_alpha_2026-01-05.html"
    document = json.loads(json_path.read_text())
    assert document["feed"] == "alpha" and document["week"] == "2026-01-05"
    assert document["sections"]["drift"]["drift_share"] == [0.1, None, 0.6]
    assert list(document["sections"]) == ["quality", "drift", "model_health"]
    page = html_path.read_text()
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.index('id="quality"') < page.index('id="drift"') < page.index('id="model_health"')
    assert not [p for p in html_path.parent.iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(ValueError, match="week"):
        render_report("alpha", "../escape", sections, tmp_path)


def test_crossed_thresholds_name_each_crossing():
    thresholds = {
        "max_drift_share": 0.5,
        "min_quality_success_percent": 95.0,
        "max_retrains": 2,
        "min_average_precision": 0.3,
        "cooldown_hours": 24.0,
    }
    calm = {
        "drift": {"drift_share": [0.1, 0.2]},
        "quality": {"success_percent": 99.0},
        "retrains": {"count": 1},
        "performance": {"average_precision": 0.8},
        "model_health": {"unreproducible": 0},
    }
    assert crossed_thresholds(calm, thresholds) == []
    bad = {
        "drift": {"drift_share": [0.1, 0.7]},
        "quality": {"success_percent": [99.0, 90.0]},
        "retrains": {"count": 3},
        "performance": {"average_precision": 0.2},
        "model_health": {"unreproducible": 1},
    }
    reasons = crossed_thresholds(bad, thresholds)
    assert len(reasons) == 5
    assert any("drift_share 0.7" in r and "max_drift_share" in r for r in reasons)
    assert any("success_percent 90" in r for r in reasons)
    assert any("unreproducible 1" in r for r in reasons)
    assert crossed_thresholds({}, thresholds) == []  # a week without data crosses nothing
    with pytest.raises(ValueError, match="max_drift_shares"):
        crossed_thresholds(calm, {"max_drift_shares": 0.5})


def test_weekly_sections_collect_the_week_for_the_thresholds():
    drift = [
        {"partition": "2026-01-05", "drift_share": 0.2, "score_psi": 0.1, "drifted_columns": ["a"]},
        {"partition": "2026-01-06", "drift_share": None, "score_psi": float("nan")},
    ]
    performance = [
        {"partition": "2026-01-05", "severity": "ok", "average_precision": 0.8},
        {
            "partition": "2026-01-06",
            "severity": "degraded",
            "average_precision": 0.2,
            "mode": "labels",
        },
    ]
    health = {"unreproducible": 1, "versions": [], "champion_week": {"rows": 10}}
    sections = weekly_sections(
        quality={"success": True, "success_percent": 99.0, "suite": "not kept"},
        model_health=health,
        cleanup={"freed_bytes": 3},
        drift_days=drift,
        performance_days=performance,
        retrains=[{"run_id": "r1"}],
    )
    assert list(sections) == [
        "quality",
        "drift",
        "performance",
        "retrains",
        "cleanup",
        "model_health",
        "champion_week",
    ]
    assert sections["quality"]["success_percent"] == 99.0 and "suite" not in sections["quality"]
    assert sections["quality"]["docs_path"] is None
    assert sections["drift"]["drift_share"] == [0.2] and sections["drift"]["score_psi"] == [0.1]
    assert sections["drift"]["per_day"][0] == {
        "day": "2026-01-05",
        "drift_share": 0.2,
        "score_psi": 0.1,
        "alert_rate": None,
        "drifted": "a",
    }
    assert sections["performance"]["average_precision"] == [0.8, 0.2]
    assert sections["performance"]["degraded_days"] == ["2026-01-06"]
    assert sections["retrains"] == {"count": 1, "runs": [{"run_id": "r1"}]}
    assert sections["model_health"] == {"unreproducible": 1, "versions": []}
    assert sections["champion_week"] == {"rows": 10}
    thresholds = {"min_average_precision": 0.3, "max_retrains": 0}
    assert len(crossed_thresholds(sections, thresholds)) == 3  # and one unreproducible version


def test_the_weekly_drift_share_is_the_one_the_daily_check_judged():
    # a day judged against the feed's normal days: Evidently flags 80 % of features on a moving
    # series, but only one feature left its normal range; a fixed-rule day keeps Evidently's share
    drift = [
        {
            "partition": "2026-01-05",
            "drift_share": 0.8,
            "drifted_columns": ["a", "b", "c", "d"],
            "abnormal_feature_share": 0.2,
            "abnormal_features": ["b"],
            "rule": "normal_days",
        },
        {
            "partition": "2026-01-06",
            "drift_share": 0.4,
            "drifted_columns": ["a", "c"],
            "abnormal_feature_share": None,
            "abnormal_features": [],
            "rule": "fixed",
        },
    ]
    sections = weekly_sections(
        quality={}, model_health={}, cleanup={}, drift_days=drift, performance_days=[], retrains=[]
    )
    assert sections["drift"]["drift_share"] == [0.2, 0.4]
    assert [d["drifted"] for d in sections["drift"]["per_day"]] == ["b", "a, c"]
    assert crossed_thresholds(sections, {"max_drift_share": 0.5}) == []
