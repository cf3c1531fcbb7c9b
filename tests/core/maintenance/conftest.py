"""Fixtures of the maintenance tests: a real MLflow registry on SQLite with signed models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import FeatureSpec
from pynomaly_core.detectors.persistence import sha256_file
from pynomaly_core.model import AnomalyModel
from pynomaly_core.storage import FrameStore
from pynomaly_core.tracking import Tracker
from tests.core.maintenance.helpers import FULL_LAYOUT, KEY


@pytest.fixture(scope="module")
def mlflow_backend(tmp_path_factory):
    """One MLflow registry on SQLite for the module (its schema migrations cost seconds); tests use own feeds."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow")
    tracker = Tracker(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "artifacts")
    )
    tracker.check()
    return tracker


@pytest.fixture
def registry(mlflow_backend, tmp_path, monkeypatch, request):
    """Registered versions of a feed of its own as the lifecycle logs them, with their evaluation frames.

    The layout (batch -> detectors) is the indirect parameter, default :data:`FULL_LAYOUT` (four
    versions from two batches).
    """
    monkeypatch.setenv("PYNOMALY_SIGNING_KEY", KEY)
    feed = request.node.originalname.removeprefix("test_")[:40]
    layout = getattr(request, "param", FULL_LAYOUT)
    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.normal(size=(300, 2)), columns=["a", "b"])
    sample = pd.DataFrame(rng.normal(size=(80, 2)), columns=["a", "b"])
    features = [FeatureSpec(name="a"), FeatureSpec(name="b")]
    store = FrameStore(tmp_path / "frames")
    models_root = tmp_path / "models" / feed
    versions = {}
    for batch, detectors in layout.items():
        frame = sample.assign(_label=0)
        for detector in detectors:
            params = {"n_estimators": 25} if detector == "IForest" else {}
            model = AnomalyModel(features, detector=detector, params=params).fit(train)
            frame[f"_score_{detector}"] = model.decision_function(sample)
            model_dir = model.save(models_root / f"{batch}-{detector}")
            record = mlflow_backend.log_candidate(
                feed,
                detector=detector,
                model_dir=model_dir,
                manifest_sha256=sha256_file(model_dir / "manifest.json"),
                params={},
                metrics={},
                tags={"dagster_run_id": batch},
                input_example=sample.head(3),
            )
            versions[(batch, detector)] = record.version
        store.write(frame, [feed, "detector_candidates", "evaluation"], batch)
    return {
        "tracker": mlflow_backend,
        "feed": feed,
        "store": store,
        "versions": versions,
        "models_root": models_root,
    }
