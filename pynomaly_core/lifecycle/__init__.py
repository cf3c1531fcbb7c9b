"""Candidates, evaluation and the champion decision: the model lifecycle without Dagster.

1. :func:`split_holdout` keeps the last ``lifecycle.holdout_days`` days of the training
   window out of training (a one-day window holds out its last 20 % by event time).
2. :func:`train_candidates` fits every candidate detector on the rest, sharing one fitted
   preprocessor, and calibrates each on its training scores plus its out-of-sample
   holdout scores (:meth:`AnomalyModel.calibrate`). With ``lifecycle.refit_on_window`` the
   candidate the evaluation picks is then refitted on the whole window, holdout included,
   and calibrated on cross-fitted scores (:mod:`~pynomaly_core.lifecycle.refit`) before it is
   registered.
3. :func:`evaluation_set` labels the holdout: the feed's label column and the BI users'
   feedback (confirmed = 1, rejected = 0) when they hold at least
   ``lifecycle.min_labelled_anomalies`` anomalies and as many normal rows; otherwise the
   holdout counts as normal and ``lifecycle.synthetic_anomalies`` synthetic anomalies
   (:func:`pynomaly_core.evaluation.synthetic.inject_frame`) are added.
4. :func:`evaluate` scores every model on that set (ROC-AUC, average precision,
   precision at k, plus the label-free evidence on synthetic sets) and
   :func:`choose_challenger` picks the best candidate.
5. :func:`decide` compares the challenger with the current champion on the *same* rows
   with a stratified paired bootstrap of average precision: the challenger replaces the
   champion only when the lower confidence bound of the difference is above zero.
   :func:`promotion_gate` then blocks any promotion whose ROC-AUC is below
   ``lifecycle.min_auc``, or whose average precision trails the champion's by more than
   ``lifecycle.max_regression`` or with statistical confidence (a forced promotion
   included); below ``min_auc`` it still passes a champion whose ROC-AUC is lower and
   which the challenger beats with confidence. With no champion to defend, the best candidate is promoted whatever its
   evidence; a weak one fails the gate as a warning (it scores, and says why it is weak).
6. The champion records the days it was trained on; :mod:`~pynomaly_core.lifecycle.window`
   holds the window of a retrain (the champion's reference days plus the recent ones) and
   the no-hindsight rule (:func:`rescoring_verdict`): a day already scored is not rescored by
   a model whose training window contains it or lies after it, unless asked for.

Two functions run the stages whole: :func:`train_candidate_batch` (steps 1-4, saving and
logging every candidate to MLflow) and :func:`promote` (step 5, moving the MLflow aliases);
the champion they leave is a :class:`ChampionRecord`, which every consumer loads through.

Modules: :mod:`~pynomaly_core.lifecycle.candidates`, :mod:`~pynomaly_core.lifecycle.evaluation`
(with the stored evaluation frame), :mod:`~pynomaly_core.lifecycle.decision`,
:mod:`~pynomaly_core.lifecycle.promotion`, :mod:`~pynomaly_core.lifecycle.record`,
:mod:`~pynomaly_core.lifecycle.window`.
"""

from __future__ import annotations

from pynomaly_core.lifecycle.candidates import (
    ONE_DAY_HOLDOUT_FRACTION,
    TAG_TRAINING_DAYS,
    Candidate,
    CandidateBatch,
    FeedbackReader,
    candidate_names,
    float_metrics,
    severity_cutoffs,
    split_holdout,
    train_candidate_batch,
    train_candidates,
)
from pynomaly_core.lifecycle.decision import Decision, decide, promotion_gate
from pynomaly_core.lifecycle.evaluation import (
    EVALUATION_STAGE,
    LABEL_COLUMN,
    SCORE_PREFIX,
    EvaluationKind,
    EvaluationSet,
    StoredEvaluation,
    choose_challenger,
    evaluate,
    evaluation_set,
    labels_with_feedback,
    read_evaluation_frame,
    score_models,
    write_evaluation_frame,
)
from pynomaly_core.lifecycle.promotion import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    PREVIOUS_ALIAS,
    Promotion,
    promote,
)
from pynomaly_core.lifecycle.record import ChampionRecord, LifecycleError, NoChampionError
from pynomaly_core.lifecycle.window import (
    RescoringVerdict,
    WindowPlan,
    day_of,
    format_days,
    frame_days,
    parse_days,
    rescoring_verdict,
    retrain_days,
    retrain_window,
    training_window,
)

__all__ = [
    "CHALLENGER_ALIAS",
    "CHAMPION_ALIAS",
    "EVALUATION_STAGE",
    "LABEL_COLUMN",
    "ONE_DAY_HOLDOUT_FRACTION",
    "PREVIOUS_ALIAS",
    "SCORE_PREFIX",
    "TAG_TRAINING_DAYS",
    "Candidate",
    "CandidateBatch",
    "ChampionRecord",
    "Decision",
    "EvaluationKind",
    "EvaluationSet",
    "FeedbackReader",
    "LifecycleError",
    "NoChampionError",
    "Promotion",
    "RescoringVerdict",
    "StoredEvaluation",
    "WindowPlan",
    "candidate_names",
    "choose_challenger",
    "day_of",
    "decide",
    "evaluate",
    "evaluation_set",
    "float_metrics",
    "format_days",
    "frame_days",
    "labels_with_feedback",
    "parse_days",
    "promote",
    "promotion_gate",
    "read_evaluation_frame",
    "rescoring_verdict",
    "retrain_days",
    "retrain_window",
    "score_models",
    "severity_cutoffs",
    "split_holdout",
    "train_candidate_batch",
    "train_candidates",
    "training_window",
    "write_evaluation_frame",
]
