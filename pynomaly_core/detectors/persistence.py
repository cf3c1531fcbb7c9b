"""Signed, checksummed persistence for detectors and fitted pipelines.

A saved model is a directory::

    manifest.json   # what it is, library versions, sha256 and HMAC of every payload file
    model.skops     # or framework-native files (torch state_dict, Keras .keras, .npy + JSON)

Loading recomputes the sha256 of every payload file and verifies the HMAC of the
manifest with the signing key *before* anything is read. A file changed by
anyone who does not hold the key is refused with an error naming the file.

What is read afterwards avoids general unpickling where the format allows
(:mod:`pynomaly_core.detectors.safe_io`): scikit-learn/PyOD estimators are skops files that may
construct only allow-listed types; only what skops cannot represent (PyOD's torch-based
detectors) is a joblib pickle, listed under ``pickled_files`` in the manifest. Models saved before
format 2 (``model.joblib``, ``preprocessor.joblib``) still load after the signature check.

The key is an argument (``key=``) of every function here: the Dagster code location
passes its model store's key. ``key=None`` resolves the default now, once per call, with
:func:`pynomaly_core.signing.default_signing_key` (``PYNOMALY_SIGNING_KEY``, else the
per-installation ``$PYNOMALY_HOME/.signing_key``); this module reads no settings itself.

Deep detectors (torch, Keras) store weights in their framework's safe formats
(``torch.load(weights_only=True)`` / ``.keras``) plus a JSON config; they implement
``_save_payload(dirpath, key)`` / ``_load_payload(dirpath, key)`` and are never pickled.
Composite objects (ensembles, the auto-selector, :class:`~pynomaly_core.model.AnomalyModel`)
save their parts with :func:`save_object` under the same ``key``.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

from pynomaly_core.detectors.safe_io import dump_estimator, load_estimator, load_payload_file
from pynomaly_core.detectors.targets import import_target
from pynomaly_core.signing import SigningKey, default_signing_key

#: 2: skops / JSON + arrays payloads instead of joblib pickles (1 still loads)
FORMAT_VERSION = 2
MANIFEST = "manifest.json"


class ModelIntegrityError(RuntimeError):
    """A saved model failed its checksum or signature check; it is not loaded."""


def _key(key: bytes | None) -> bytes:
    """``key``, or the default signing key resolved now when the caller passed none."""
    return default_signing_key() if key is None else key


def _key_source(key: bytes) -> str:
    """Where ``key`` came from, for the signature error: the setting and key file, if known."""
    return key.source if isinstance(key, SigningKey) else "the key passed in by the caller"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sign(manifest: dict[str, Any], key: bytes) -> str:
    body = json.dumps({k: v for k, v in manifest.items() if k != "signature"}, sort_keys=True)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("numpy", "sklearn", "pyod"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except ImportError:  # pragma: no cover - core dependencies
            pass
    return out


def save_object(
    obj: Any,
    path: str | Path,
    *,
    kind: str,
    info: dict[str, Any] | None = None,
    key: bytes | None = None,
) -> Path:
    """Save ``obj`` into directory ``path`` atomically and sign it with ``key``.

    Objects with ``_save_payload`` write framework-native files (and save their parts with
    the same key); anything else is written with skops (joblib only where skops cannot represent
    it, see :func:`~pynomaly_core.detectors.safe_io.dump_estimator`). Returns the directory path.
    """
    key = _key(key)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        if hasattr(obj, "_save_payload"):
            obj._save_payload(tmp, key)
            loader = f"{type(obj).__module__}:{type(obj).__qualname__}"
        else:
            written = dump_estimator(obj, tmp, "model")
            loader = "skops" if written.endswith(".skops") else "joblib"
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "class": f"{type(obj).__module__}:{type(obj).__qualname__}",
            "loader": loader,
            "files": files,
            "pickled_files": sorted(name for name in files if name.endswith(".joblib")),
            "versions": _versions(),
            "info": info or {},
        }
        manifest["signature"] = _sign(manifest, key)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | Path, *, key: bytes | None = None) -> dict[str, Any]:
    """Read and verify the manifest of a saved model (signature with ``key``, file checksums)."""
    key = _key(key)
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise ModelIntegrityError(
            f"{manifest_path} does not exist: {path} is not a saved Pynomaly model."
        )
    manifest = json.loads(manifest_path.read_text())
    expected = _sign(manifest, key)
    if not hmac.compare_digest(expected, str(manifest.get("signature", ""))):
        raise ModelIntegrityError(
            f"{manifest_path}: signature does not match the signing key ({_key_source(key)}); "
            "refusing to load a model that may have been tampered with."
        )
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.exists():
            raise ModelIntegrityError(f"{file} is listed in {manifest_path} but missing.")
        if sha256_file(file) != digest:
            raise ModelIntegrityError(
                f"{file}: sha256 does not match {manifest_path}; refusing to load a modified model file."
            )
    return cast("dict[str, Any]", manifest)


def load_object(
    path: str | Path, *, expected_sha256: str | None = None, key: bytes | None = None
) -> Any:
    """Load an object saved with :func:`save_object` after verifying it with ``key``.

    ``expected_sha256`` optionally pins the manifest digest recorded elsewhere
    (the Dagster asset value), so a re-signed replacement is refused too.
    """
    key = _key(key)
    path = Path(path)
    if expected_sha256 is not None and sha256_file(path / MANIFEST) != expected_sha256:
        raise ModelIntegrityError(
            f"{path / MANIFEST}: sha256 differs from the one recorded when the model was trained."
        )
    manifest = read_manifest(path, key=key)
    if manifest["loader"] == "skops":
        return load_estimator(path / "model.skops")
    if manifest["loader"] == "joblib":  # verified above; skops could not represent it
        return load_payload_file(path / "model.joblib")
    return import_target(manifest["loader"])._load_payload(path, key)


def save_detector(detector: Any, path: str | Path, *, key: bytes | None = None) -> Path:
    """Save a fitted detector (see :func:`save_object`)."""
    return save_object(
        detector, path, kind="detector", info={"name": type(detector).__name__}, key=key
    )


def load_detector(path: str | Path, *, key: bytes | None = None) -> Any:
    """Load a detector saved with :func:`save_detector`."""
    return load_object(path, key=key)
