"""The MLflow pyfunc wrapper of a saved :class:`~pynomaly_core.model.AnomalyModel`.

Imported only by :mod:`pynomaly_core.tracking` (importing it imports mlflow). The pyfunc
is logged as MLflow "models from code": this file is copied into the logged model and
executed on load (then it calls ``mlflow.models.set_model``), so nothing is pickled. The
model itself is the signed directory logged as the pyfunc's ``pynomaly_model`` artifact,
verified on load against the manifest sha256 kept in the pyfunc's ``model_config``.
"""

from __future__ import annotations

from typing import Any

import mlflow.models
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

ARTIFACT_KEY = "pynomaly_model"
SHA_KEY = "manifest_sha256"


class PynomalyPyfunc(PythonModel):
    """``predict(frame)`` returns :meth:`AnomalyModel.score` of the frame.

    ``load_context`` loads the artifact directory with
    ``load_object(path, expected_sha256=..., key=...)``: the manifest must match the sha256
    recorded at logging time and its HMAC signature must verify with the signing key of the
    loading process (:func:`pynomaly_core.signing.default_signing_key`:
    ``PYNOMALY_SIGNING_KEY`` or ``$PYNOMALY_HOME/.signing_key``).
    """

    def load_context(self, context: PythonModelContext) -> None:
        from pynomaly_core.detectors.persistence import load_object
        from pynomaly_core.signing import default_signing_key

        config = context.model_config or {}
        self._model = load_object(
            context.artifacts[ARTIFACT_KEY],
            expected_sha256=config.get(SHA_KEY),
            key=default_signing_key(),
        )

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self._model.score(frame)


if __name__ != "pynomaly_core._mlflow_pyfunc":  # executed by MLflow as the logged model's code file
    mlflow.models.set_model(PynomalyPyfunc())
