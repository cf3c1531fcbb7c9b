"""Model payloads read back without general unpickling.

A signed model directory is verified before anything in it is read
(:mod:`pynomaly_core.detectors.persistence`); this module makes what is read afterwards safe to
read even if a file slipped past that check (a stolen key), wherever the format allows:

* the feature preprocessor is plain JSON plus ``.npz`` arrays loaded with ``allow_pickle=False``
  (:func:`save_preprocessor` / :func:`load_preprocessor`);
* scikit-learn and PyOD estimators, and the shells of our ensembles and auto-selector, are
  `skops <https://skops.readthedocs.io>`_ files: loading constructs only types from the
  :data:`TRUSTED_MODULES` allow-list and calls no code from the file (:func:`dump_estimator` /
  :func:`load_estimator`);
* what skops cannot represent (PyOD's torch-based detectors) is written with joblib and so is
  unpickled after the signature check: :func:`dump_estimator` says which format it used, the
  manifest records it, and ``docs/security.md`` lists these as trusted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

PREPROCESSOR_JSON = "preprocessor.json"
PREPROCESSOR_ARRAYS = "preprocessor.npz"
#: the pickled preprocessor of models saved before format 2 (loaded only for those)
LEGACY_PREPROCESSOR = "preprocessor.joblib"

#: top-level packages whose types a skops file may construct; anything else is refused
TRUSTED_MODULES = ("sklearn", "pyod", "numpy", "scipy", "pynomaly_core", "collections")
#: builtins a skops file may name (plain containers and numbers; no callables)
TRUSTED_BUILTINS = frozenset(
    f"builtins.{name}"
    for name in ("int", "float", "str", "bool", "list", "dict", "tuple", "set", "slice", "bytes")
)
#: names inside trusted packages that a model never needs and that could load or run code
REFUSED_NAMES = frozenset({"load", "loads", "fromfile", "eval", "exec", "system", "call"})


class UntrustedPayloadError(RuntimeError):
    """A model file names a type outside the allow-list; it is not loaded."""


# ------------------------------------------------------------------ preprocessor
def save_preprocessor(preprocessor: Any, directory: Path) -> None:
    """Write a fitted :class:`~pynomaly_core.data.preprocess.FeaturePreprocessor` as JSON + arrays."""
    specs = preprocessor._specs()
    doc = {
        "features": [spec.model_dump(mode="json") for spec in specs],
        "scaling": preprocessor.scaling,
        "fill": {name: float(value) for name, value in preprocessor.fill_.items()},
        "categories": {name: list(cats) for name, cats in preprocessor.categories_.items()},
        "dropped_constant": list(preprocessor.dropped_constant_),
        "feature_names_out": list(preprocessor.feature_names_out_),
        "n_features_in": int(preprocessor.n_features_in_),
    }
    (Path(directory) / PREPROCESSOR_JSON).write_text(json.dumps(doc))
    with open(Path(directory) / PREPROCESSOR_ARRAYS, "wb") as fh:
        np.savez(
            fh,
            keep=np.asarray(preprocessor.keep_, dtype=bool),
            center=np.asarray(preprocessor.center_, dtype=np.float64),
            scale=np.asarray(preprocessor.scale_, dtype=np.float64),
        )


def load_preprocessor(directory: Path) -> Any:
    """Rebuild the preprocessor written by :func:`save_preprocessor` (nothing is unpickled)."""
    from pynomaly_core.data.config import FeatureSpec
    from pynomaly_core.data.preprocess import FeaturePreprocessor

    doc = json.loads((Path(directory) / PREPROCESSOR_JSON).read_text())
    specs = [FeatureSpec.model_validate(f) for f in doc["features"]]
    preprocessor = FeaturePreprocessor(specs, scaling=str(doc["scaling"]))
    preprocessor.fill_ = {str(k): float(v) for k, v in doc["fill"].items()}
    preprocessor.categories_ = {
        str(k): [str(c) for c in cats] for k, cats in doc["categories"].items()
    }
    preprocessor.dropped_constant_ = [str(n) for n in doc["dropped_constant"]]
    preprocessor.feature_names_out_ = [str(n) for n in doc["feature_names_out"]]
    preprocessor.n_features_in_ = int(doc["n_features_in"])
    with np.load(Path(directory) / PREPROCESSOR_ARRAYS, allow_pickle=False) as arrays:
        preprocessor.keep_ = arrays["keep"].astype(bool)
        preprocessor.center_ = arrays["center"].astype(np.float64)
        preprocessor.scale_ = arrays["scale"].astype(np.float64)
    _check_preprocessor_shapes(preprocessor, directory)
    return preprocessor


def _check_preprocessor_shapes(preprocessor: Any, directory: Path) -> None:
    kept = int(preprocessor.keep_.sum())
    if not (
        kept == len(preprocessor.feature_names_out_)
        and preprocessor.center_.shape == preprocessor.scale_.shape == (kept,)
    ):
        raise ValueError(
            f"{Path(directory) / PREPROCESSOR_ARRAYS}: array shapes do not match "
            f"{PREPROCESSOR_JSON} ({kept} kept columns, {len(preprocessor.feature_names_out_)} "
            "names); the model directory is inconsistent"
        )


# ------------------------------------------------------------------ estimators
def dump_estimator(obj: Any, directory: Path, stem: str) -> str:
    """Write ``obj`` as ``<stem>.skops``, or ``<stem>.joblib`` when skops cannot represent it.

    Returns the file name written. The skops file's types are checked against the allow-list
    here, so a model that would be refused at load is never saved in that format.
    """
    import joblib
    import skops.io as sio

    path = Path(directory) / f"{stem}.skops"
    try:
        sio.dump(obj, path)
        if untrusted_types(list(sio.get_untrusted_types(file=path))):
            raise UntrustedPayloadError(f"{path}: types outside the allow-list")
    except Exception:  # noqa: BLE001 - skops fails in many ways on what it cannot represent (torch modules); pickle that, trusted once signed
        path.unlink(missing_ok=True)
        joblib_path = Path(directory) / f"{stem}.joblib"
        joblib.dump(obj, joblib_path)
        return joblib_path.name
    return path.name


def untrusted_types(types: list[str]) -> list[str]:
    """The entries of ``types`` (skops' unknown types) that the allow-list does not cover."""
    refused = []
    for name in types:
        top = name.split(".", 1)[0]
        leaf = name.rsplit(".", 1)[-1]
        allowed = name in TRUSTED_BUILTINS or (top in TRUSTED_MODULES and leaf not in REFUSED_NAMES)
        if not allowed:
            refused.append(name)
    return refused


def load_estimator(path: Path) -> Any:
    """Load a skops file, constructing only allow-listed types; refuse the file otherwise."""
    import skops.io as sio

    unknown = list(sio.get_untrusted_types(file=path))
    refused = untrusted_types(unknown)
    if refused:
        raise UntrustedPayloadError(
            f"{path}: names types outside the allow-list of pynomaly_core.detectors.safe_io "
            f"({', '.join(sorted(refused))}); refusing to load it."
        )
    return sio.load(path, trusted=unknown)


def load_payload_file(path: Path) -> Any:
    """Load a file written by :func:`dump_estimator`: skops with the allow-list, else joblib.

    Joblib files are unpickled: only call this after the model's signature was verified.
    """
    if path.suffix == ".skops":
        return load_estimator(path)
    if path.suffix == ".joblib":
        import joblib

        return joblib.load(path)
    raise UntrustedPayloadError(f"{path}: not a model payload this version can read")
