"""Model lifecycle: ``detector_candidates`` trains a portfolio; ``champion`` picks the model that scores.

``detector_candidates`` splits the training window into training days and a held-out
slice, fits every candidate, evaluates all of them on the same evaluation set (real
labels and feedback when there are enough, else synthetic anomalies injected into the
holdout), saves each as a signed model directory and logs it as an MLflow run and a
registered model version. ``champion`` compares the best candidate with the current
champion (MLflow alias ``champion``) on the same rows with a paired bootstrap and moves
the alias only on evidence; its blocking ``promotion_gate`` check stops a worse model
(a forced promotion included) from reaching scoring. The rules live in
:mod:`pynomaly_core.lifecycle`; ``docs/model_lifecycle.md`` explains them.
"""


import dagster as dg
import numpy as np
import pandas as pd

from pynomaly_assets.feed_context import FeedContext
from pynomaly_assets.resources import (
    FrameStoreResource,
    MlflowResource,
    ModelStoreResource,
    WarehouseResource,
)

PROMOTION_GATE = "promotion_gate"
#: run tag that carries why a training run was started (sensors set it; shown in MLflow)
REASON_TAG = "pynomaly/reason"
LABEL_COLUMN = "_label"


class ChampionConfig(dg.Config):
    """Run config of ``champion``."""

    candidate: str | None = None
    """Promote this candidate (detector name) instead of the best one; the promotion gate still
    blocks it when it is worse than the current champion."""


def _float_metrics(row: pd.Series) -> dict[str, float]:
    return {
        k: float(v) for k, v in row.items()
        if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and np.isfinite(v)
    }


def build_lifecycle_assets(fc: FeedContext) -> list[dg.AssetsDefinition]:
    feed = fc.feed
    candidates_key = fc.key("detector_candidates")
    champion_key = fc.key("champion")

    @dg.asset(
        key=candidates_key,
        ins={"training_window": dg.AssetIn(key=fc.key("training_window"))},
        group_name=feed.name,
        kinds={"scikitlearn", "mlflow"},
        tags=fc.tags,
        description=f"Candidate detectors for `{feed.name}` fitted on the training window minus its last "
        f"{feed.lifecycle.holdout_days} day(s), evaluated on that holdout, each logged to MLflow as a run "
        "and a registered model version.",
    )
    def detector_candidates(
        context: dg.AssetExecutionContext,
        training_window: pd.DataFrame,
        model_store: ModelStoreResource,
        frame_store: FrameStoreResource,
        mlflow: MlflowResource,
        warehouse: WarehouseResource,
    ):
        from pynomaly_core.detectors.persistence import sha256_file
        from pynomaly_core.export import read_feedback
        from pynomaly_core.lifecycle import (
            candidate_names,
            evaluate,
            evaluation_set,
            score_models,
            split_holdout,
            train_candidates,
        )

        try:
            train, holdout = split_holdout(training_window, feed)
            names = candidate_names(feed, len(train))
        except ValueError as exc:
            raise dg.Failure(f"asset {candidates_key.to_user_string()}: {exc}") from exc
        context.log.info(f"training {len(names)} candidates on {len(train)} rows: {', '.join(names)}")
        candidates = train_candidates(feed, train, holdout, names)
        days = pd.to_datetime(holdout[feed.event_time], utc=True).dt.strftime("%Y-%m-%d")
        feedback = read_feedback(warehouse.engine(), feed=feed.name, start=days.min(), end=days.max(),
                                 schema=warehouse.schema_name)
        try:
            evalset = evaluation_set(feed, train, holdout, feedback, random_state=feed.detector.random_state or 0)
        except ValueError as exc:
            raise dg.Failure(f"asset {candidates_key.to_user_string()}: {exc}") from exc
        fitted = {c.name: c.model for c in candidates if c.model is not None}
        if not fitted:
            raise dg.Failure(
                f"feed {feed.name!r}: every candidate failed to fit (lifecycle.candidates): "
                + "; ".join(f"{c.name}: {c.error}" for c in candidates)
            )
        scores = score_models(fitted, evalset)
        table = evaluate(candidates, evalset, scores)

        stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
        batch = f"{stamp}-{context.run.run_id[:8]}"
        store = frame_store.store()
        evaluation_frame = evalset.frame.assign(**{LABEL_COLUMN: evalset.y})
        for name, s in scores.items():
            evaluation_frame[f"_score_{name}"] = s
        evaluation_path = store.write(evaluation_frame, [*candidates_key.path, "evaluation"], batch)

        tracker = mlflow.tracker()
        reason = context.run.tags.get(REASON_TAG, "manual")
        feature_columns = [f.name for f in feed.features]
        records = []
        for c in candidates:
            entry: dict = {"detector": c.name, "error": table.loc[c.name, "error"],
                           "fit_seconds": float(c.fit_seconds)}
            if c.model is None or entry["error"] is not None:
                records.append(entry)
                continue
            version = f"{batch}-{c.name}"
            path = model_store.model_dir(feed.name, version)
            c.model.save(path, info={"feed": feed.name, "version": version, "run_id": context.run.run_id})
            sha = sha256_file(path / "manifest.json")
            metrics = _float_metrics(table.loc[c.name])
            record = tracker.log_candidate(
                feed.name, detector=c.name, model_dir=path, manifest_sha256=sha,
                params={"detector": c.name, "contamination": feed.detector.contamination,
                        "scaling": feed.detector.scaling, "training_rows": len(train),
                        "holdout_rows": len(holdout), "evaluation": evalset.kind,
                        **(c.model.params or {})},
                metrics=metrics,
                tags={"dagster_run_id": context.run.run_id, "feed": feed.name, "reason": reason,
                      "dagster_asset": candidates_key.to_user_string()},
                input_example=train[feature_columns].head(5),
                evaluation=table.reset_index(),
            )
            entry.update({
                "model_dir": str(path), "manifest_sha256": sha, "threshold": float(c.model.threshold_),
                "mlflow_run_id": record.run_id, "mlflow_version": record.version,
                "registered_model": record.registered_model, "run_url": record.run_url,
                "metrics": metrics,
            })
            records.append(entry)

        value = {
            "feed": feed.name, "batch": batch, "dagster_run_id": context.run.run_id,
            "evaluation": {**evalset.describe(), "path": str(evaluation_path)},
            "training_rows": len(train), "holdout_rows": len(holdout), "candidates": records,
        }
        shown = table.drop(columns=[c for c in ("error",) if table[c].isna().all()])
        return dg.MaterializeResult(
            value=value,
            metadata={
                "candidates": dg.MetadataValue.md(shown.to_markdown(floatfmt=".4f")),
                "evaluation": evalset.kind,
                "evaluation_rows": len(evalset.y),
                "evaluation_anomalies": evalset.n_positive,
                "training_rows": len(train),
                "holdout_rows": len(holdout),
                "failed_candidates": int(sum(r["error"] is not None for r in records)),
                "best_average_precision": float(table["average_precision"].max()),
                "best_roc_auc": float(table["roc_auc"].max()),
                "mlflow": tracker.ui_hint(),
            },
        )

    @dg.asset(
        key=champion_key,
        ins={"detector_candidates": dg.AssetIn(key=candidates_key)},
        group_name=feed.name,
        kinds={"mlflow"},
        tags=fc.tags,
        check_specs=[
            dg.AssetCheckSpec(
                PROMOTION_GATE, asset=champion_key, blocking=True,
                description="A new champion must reach lifecycle.min_auc and must not be worse than the "
                "current one; a failed gate keeps the current champion and stops scoring in this run.",
            )
        ],
        description=f"The model that scores `{feed.name}`: the current champion, replaced by the best "
        "candidate only when it is better with statistical confidence (MLflow alias `champion`).",
    )
    def champion(
        context: dg.AssetExecutionContext,
        config: ChampionConfig,
        detector_candidates: dict,
        frame_store: FrameStoreResource,
        mlflow: MlflowResource,
    ):
        from pynomaly_core.detectors import load_object
        from pynomaly_core.evaluation.compare import metrics as eval_metrics
        from pynomaly_core.lifecycle import EvaluationSet, choose_challenger, decide

        records = {r["detector"]: r for r in detector_candidates["candidates"]}
        usable = {n: r for n, r in records.items() if r.get("error") is None}
        described = detector_candidates["evaluation"]
        frame = frame_store.store().read([*candidates_key.path, "evaluation"], detector_candidates["batch"])
        y = frame.pop(LABEL_COLUMN).to_numpy()
        scores = {n: frame.pop(f"_score_{n}").to_numpy() for n in list(usable)}
        frame = frame.drop(columns=[c for c in frame.columns if c.startswith("_score_")])
        evalset = EvaluationSet(frame, y, described["kind"], described["holdout_rows"],
                                described["synthetic_rows"], described["synthetic_kinds"])
        table = pd.DataFrame({n: {**r["metrics"], "fit_seconds": r["fit_seconds"], "error": None}
                              for n, r in usable.items()}).T
        for col in table.columns:
            if col != "error":
                table[col] = pd.to_numeric(table[col])
        if config.candidate is not None:
            if config.candidate not in usable:
                raise dg.Failure(
                    f"asset {champion_key.to_user_string()} config candidate={config.candidate!r} is not a "
                    f"fitted candidate of the latest {candidates_key.to_user_string()} ({sorted(usable)})"
                )
            challenger = config.candidate
        else:
            challenger = choose_challenger(table, evalset.kind)
        chal = usable[challenger]

        tracker = mlflow.tracker()
        incumbent = tracker.get_alias(feed.name, "champion")
        incumbent_model, incumbent_scores, note = None, None, ""
        if incumbent is not None:
            try:
                incumbent_model = load_object(incumbent.model_dir, expected_sha256=incumbent.manifest_sha256)
                incumbent_scores = np.asarray(incumbent_model.decision_function(evalset.frame), dtype=float)
            except Exception as exc:  # noqa: BLE001 - an unreadable or tampered champion cannot defend its title
                note = f"current champion version {incumbent.version} could not be loaded: {exc}"
                context.log.warning(note)
                incumbent_model, incumbent_scores = None, None
        decision = decide(feed, evalset, challenger, scores[challenger], incumbent_scores,
                          forced=config.candidate is not None, incumbent_note=note,
                          random_state=feed.detector.random_state or 0)
        if decision.promote:
            tracker.set_alias(feed.name, "champion", chal["mlflow_version"])
            if incumbent is not None and incumbent.version != chal["mlflow_version"]:
                tracker.set_alias(feed.name, "challenger", incumbent.version)  # the rollback target
            else:
                tracker.delete_alias(feed.name, "challenger")
        else:
            tracker.set_alias(feed.name, "challenger", chal["mlflow_version"])
        cmp = decision.comparison or {}
        tracker.log_decision(
            feed.name, chal["mlflow_run_id"],
            decision="champion" if decision.promote else "rejected", reason=decision.reason,
            metrics={k: cmp.get(k) for k in ("delta", "ci_low", "ci_high", "p_value", "score_a")},
            tags={"pynomaly.gate": "passed" if decision.gate_passed else "failed",
                  "pynomaly.decided_by_dagster_run": context.run.run_id},
        )

        current = tracker.get_alias(feed.name, "champion")
        if current is None:
            value = {"feed": feed.name, "version": None, "path": None, "reason": decision.reason}
            champion_metrics: dict = {}
        else:
            if decision.promote:
                path, sha, detector = chal["model_dir"], chal["manifest_sha256"], challenger
                threshold, champion_metrics, run_url = chal["threshold"], chal["metrics"], chal["run_url"]
            else:
                path, sha, detector = current.model_dir, current.manifest_sha256, current.detector
                # the alias did not move, so the champion is the incumbent loaded above
                model = incumbent_model or load_object(path, expected_sha256=sha)
                threshold, run_url = float(model.threshold_), tracker.run_url(current.run_id)
                champion_metrics = eval_metrics(evalset.y, incumbent_scores) if incumbent_scores is not None else {}
            value = {
                "feed": feed.name, "detector": detector, "version": current.version, "path": path,
                "manifest_sha256": sha, "threshold": threshold, "mlflow_run_id": current.run_id,
                "registered_model": tracker.registered_model_name(feed.name), "run_url": run_url,
                "promoted": decision.promote, "reason": decision.reason,
                "evaluation": evalset.kind, "metrics": champion_metrics,
            }
        metadata = {
            "decision": "promoted" if decision.promote else "kept",
            "reason": decision.reason,
            "champion_detector": value.get("detector") or "none",
            "champion_version": value.get("version") or "none",
            "challenger": challenger,
            "evaluation": evalset.kind,
            "registered_model": tracker.registered_model_name(feed.name),
            "mlflow_model_uri": f"models:/{tracker.registered_model_name(feed.name)}/{value['version']}"
            if value.get("version") else "none",
            "mlflow_run_id": value.get("mlflow_run_id") or "none",
            "mlflow": tracker.ui_hint(),
            **{f"champion_{k}": float(v) for k, v in value.get("metrics", {}).items()
               if k in ("roc_auc", "average_precision")},
            **{f"challenger_{k}": float(chal["metrics"][k]) for k in ("roc_auc", "average_precision")},
            **{f"delta_ap_{k}": float(cmp[k]) for k in ("delta", "ci_low", "ci_high") if k in cmp},
        }
        if value.get("run_url"):
            metadata["mlflow_run"] = dg.MetadataValue.url(value["run_url"])
        if chal.get("run_url"):
            metadata["challenger_mlflow_run"] = dg.MetadataValue.url(chal["run_url"])
        gate = dg.AssetCheckResult(
            check_name=PROMOTION_GATE,
            passed=bool(decision.gate_passed and value["version"] is not None),
            severity=dg.AssetCheckSeverity.ERROR,
            description=decision.gate_reason if value["version"] is not None
            else f"no champion for feed {feed.name!r}: {decision.gate_reason}",
            metadata={"challenger": challenger, "forced": decision.forced, "reason": decision.reason},
        )
        return dg.MaterializeResult(
            value=value, metadata=metadata, check_results=[gate],
            data_version=dg.DataVersion(str(value.get("manifest_sha256") or "none")[:16]),
        )

    return [detector_candidates, champion]
