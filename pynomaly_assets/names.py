"""Names shared across stages: asset check names, run tag keys and metadata keys.

One stage writes them and another reads them (the retraining sensor reads the checks'
metadata and the champion's materialization; the weekly report reads run tags), so each
lives here once instead of being spelled in two modules.
"""

from __future__ import annotations

# --- asset checks -------------------------------------------------------------------------
#: blocking check on ``champion``
PROMOTION_GATE = "promotion_gate"
#: non-blocking check on ``drift_report``
DRIFT_WITHIN_BOUNDS = "drift_within_bounds"
#: non-blocking check on ``detector_performance``
PERFORMANCE_NOT_DEGRADED = "performance_not_degraded"

# --- run tags -----------------------------------------------------------------------------
#: why a training run was started (sensors set it; the candidates' MLflow runs record it)
REASON_TAG = "pynomaly/reason"
#: one training run per feed at a time (a tag concurrency limit in dagster.yaml)
RETRAIN_TAG = "pynomaly/retrain"
#: the days a retrain was asked for; rescored once it promotes a champion
AFFECTED_TAG = "pynomaly/affected_partitions"
#: what launched a run: ``daily_schedule``, ``maintenance_schedule``, ``rescore``
TRIGGER_TAG = "pynomaly/trigger"
#: on a rescoring run: the retrain run whose champion it scores with
RETRAIN_RUN_TAG = "pynomaly/retrain_run"
#: partitions whose failed blocking validation checks the user accepts for this run
#: (comma-separated partition keys, or ``*``): they are scored, exported and trained on anyway
ACCEPT_FAILED_VALIDATION_TAG = "pynomaly/accept_failed_validation"

# --- metadata keys read by another stage ----------------------------------------------------
#: on ``champion`` materializations: ``promoted`` or ``kept``
DECISION_KEY = "decision"
#: on ``champion`` materializations: the MLflow version now champion, or ``none``
CHAMPION_VERSION_KEY = "champion_version"
#: on ``champion`` materializations: the UTC days the champion was trained on (``2026-11-01..2026-11-07``);
#: a retrain keeps the last of them, the sensor rescores only the days after them
CHAMPION_TRAINING_DAYS_KEY = "champion_training_days"
#: on ``anomaly_scores`` materializations: the version whose scores the partition held before (``none``)
PREVIOUS_MODEL_VERSION_KEY = "previous_model_version"
#: on monitoring check evaluations: the model version that scored the partition
MODEL_VERSION_KEY = "model_version"
#: on monitoring check evaluations: the partition the evaluation judged
PARTITION_KEY = "partition"
#: on ``anomaly_scores``/``anomaly_table``/``training_window`` materializations: the partitions used
#: although a blocking validation check failed (the user's override), with the failed checks
FAILED_VALIDATION_ACCEPTED_KEY = "failed_validation_accepted"
