"""Weekly maintenance of a feed: model health, retention, notifications and the weekly report.

Plain functions the Dagster assets ``model_health``, ``retention_cleanup`` and
``maintenance_report`` call; this package never imports dagster (nor mlflow: the tracker
passed in does that).

``health``     :func:`check_model_versions` reloads and re-scores every active registered
               version, archiving those without an alias; :func:`champion_week`
``retention``  :func:`retention_cleanup` deletes a feed's old warehouse rows and files
``notify``     :func:`notify` records a notification in the warehouse and posts it to a
               webhook, at most once per feed and kind within a cooldown
``report``     :func:`weekly_sections`, :func:`render_report`, :func:`crossed_thresholds`
``audit``      :func:`~pynomaly_core.maintenance.audit.audit_platform`: installed packages
               against local OSV data and bandit on our code (imported by its asset only)
"""

from __future__ import annotations

from pynomaly_core.maintenance.health import (
    VersionHealth,
    candidate_batch,
    champion_rows,
    champion_week,
    check_model_versions,
    health_section,
    recorded_scores_from_frame_store,
)
from pynomaly_core.maintenance.notify import WEBHOOK_URL_ENV, NotifyResult, notify
from pynomaly_core.maintenance.report import (
    crossed_thresholds,
    render_report,
    weekly_sections,
)
from pynomaly_core.maintenance.retention import CleanupResult, cleanup_section, retention_cleanup

__all__ = [
    "WEBHOOK_URL_ENV",
    "CleanupResult",
    "NotifyResult",
    "VersionHealth",
    "candidate_batch",
    "champion_rows",
    "champion_week",
    "check_model_versions",
    "cleanup_section",
    "crossed_thresholds",
    "health_section",
    "notify",
    "recorded_scores_from_frame_store",
    "render_report",
    "retention_cleanup",
    "weekly_sections",
]
